"""Similarity maps (seed 002): values checked against a plain-numpy implementation of the formulas."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import registry
from explain.similarity import (
    class_similarity_map,
    embed,
    region_retrieval,
    similarity_map,
    similarity_maps,
    topk_component_share,
)
from explain.view import ExplainError, ModelView
from models.architectures import embedding_net


# ----------------------------------------------------------------------------- numpy reference
def _np_maps(a_i, a_j, pooling, kernel):
    """Seed 002 eqs. 3 and 6 in float64 for one pair of activations (h, w, K)."""
    a_i = a_i.astype(np.float64)
    a_j = a_j.astype(np.float64)
    p = np.eye(a_i.shape[-1]) if kernel is None else kernel.astype(np.float64)

    def contrib(a):
        h, w, _ = a.shape
        if pooling == "avg":
            beta = a.mean(axis=(0, 1))
            c = a / (h * w)
        else:
            beta = a.max(axis=(0, 1))
            ties = a == beta  # exact equality
            n = ties.sum(axis=(0, 1))
            c = np.where(ties, beta / n, 0.0)
        return c @ p, beta @ p

    c_i, e_i = contrib(a_i)
    c_j, e_j = contrib(a_j)
    z = np.linalg.norm(e_i) * np.linalg.norm(e_j)
    return c_i @ e_j / z, c_j @ e_i / z, e_i @ e_j / z


def _blocky(rng, n, size, blocks=4):
    """Images made of constant blocks (so activations tie inside them)."""
    colours = rng.integers(0, 256, size=(n, blocks, blocks, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, size // blocks, axis=1), size // blocks, axis=2)


def _tie_model(size=16):
    """Conv 1x1 with hand-set weights: channels 0-2 = RGB, 3-4 constant (bias only, zero kernel:
    every location ties for the max), 5 = R + G; then global max pool and L2 normalisation."""
    inp = keras.Input((size, size, 3))
    conv = keras.layers.Conv2D(6, 1, activation="relu", name="feat")
    x = conv(inp)
    x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
    out = keras.layers.UnitNormalization(name="l2norm")(x)
    model = keras.Model(inp, out, name="tie_model")
    k = np.zeros((1, 1, 3, 6), np.float32)
    k[0, 0, 0, 0] = k[0, 0, 1, 1] = k[0, 0, 2, 2] = 1.0
    k[0, 0, 0, 5] = k[0, 0, 1, 5] = 1.0
    b = np.array([0, 0, 0, 0.5, 0.25, 0], np.float32)
    conv.set_weights([k, b])
    return model


def _colour_model(size=32, pool=4):
    """Subsample, then identity 1x1 conv on RGB (A_xy = the colour), global average pool, L2."""
    inp = keras.Input((size, size, 3))
    x = keras.layers.AveragePooling2D(pool, name="down")(inp)
    conv = keras.layers.Conv2D(3, 1, activation="relu", name="feat")
    x = conv(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.UnitNormalization(name="l2norm")(x)
    model = keras.Model(inp, out, name="colour_model")
    conv.set_weights([np.eye(3, dtype=np.float32).reshape(1, 1, 3, 3), np.zeros(3, np.float32)])
    return model


_MODELS: dict = {}


def _net(pooling, dim):
    key = (pooling, dim)
    if key not in _MODELS:
        keras.utils.set_random_seed(1)
        _MODELS[key] = embedding_net(64, pooling, dim, width=0.125)
    return _MODELS[key]


def _check_against_numpy(model, q_u8, r_u8, atol=1e-5):
    view = ModelView(model)
    out = similarity_maps(view, q_u8, r_u8, batch_size=3)
    q = q_u8.astype(np.float32) / 255.0
    r = r_u8.astype(np.float32) / 255.0
    a_q = view.run(tf.constant(q)).activations.numpy()
    a_r = view.run(tf.constant(r)).activations.numpy()
    kernel = None if view.projection_kernel is None else view.projection_kernel.numpy()
    # cosine similarity from the model's own output embedding
    eq = model(q).numpy().astype(np.float64)
    er = model(r).numpy().astype(np.float64)
    s_model = (eq * er).sum(-1) / (np.linalg.norm(eq, axis=-1) * np.linalg.norm(er, axis=-1))
    for i in range(len(q)):
        m_q, m_r, s = _np_maps(a_q[i], a_r[i], view.pooling, kernel)
        np.testing.assert_allclose(out["query_map"][i], m_q, atol=atol, rtol=0)
        np.testing.assert_allclose(out["reference_map"][i], m_r, atol=atol, rtol=0)
        assert abs(s - s_model[i]) < atol
    np.testing.assert_allclose(out["similarity"], s_model, atol=atol, rtol=0)
    # each map sums to the cosine similarity, both directions (float32 sums)
    np.testing.assert_allclose(out["query_map"].sum(axis=(1, 2)), s_model, atol=atol, rtol=0)
    np.testing.assert_allclose(out["reference_map"].sum(axis=(1, 2)), s_model, atol=atol, rtol=0)
    h, w, _ = view.target_shape
    H, W, _ = view.input_shape
    assert out["query_map"].shape == (len(q), h, w)
    assert out["query_map_upsampled"].shape == (len(q), H, W)
    for key, raw in (("query_map_upsampled", "query_map"), ("reference_map_upsampled", "reference_map")):
        # normalised per example at h x w, then bilinear (half-pixel centres), clipped to [0, 1]
        m = out[raw]
        lo = m.min(axis=(1, 2), keepdims=True)
        hi = m.max(axis=(1, 2), keepdims=True)
        norm = (m - lo) / (hi - lo + 1e-7)
        ref = np.clip(tf.image.resize(norm[..., None], (H, W), method="bilinear").numpy()[..., 0], 0, 1)
        np.testing.assert_allclose(out[key], ref, atol=1e-5)
    return view, out, a_q, a_r


@pytest.mark.parametrize("pooling,dim", [("avg", None), ("max", None), ("avg", 16), ("max", 16)])
def test_maps_sum_to_cosine_and_match_numpy(pooling, dim):
    rng = np.random.default_rng(0)
    model = _net(pooling, dim)
    if pooling == "max":  # constant blocks: activations repeat inside them, so maxima can tie
        q, r = _blocky(rng, 4, 64), _blocky(rng, 4, 64)
    else:
        q = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        r = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    view, out, a_q, _ = _check_against_numpy(model, q, r)
    if dim is not None:
        assert view.projection_kernel is not None and out["topk_share"].shape == (4, dim)


def test_max_pooling_forced_ties():
    model = _tie_model()
    rng = np.random.default_rng(3)
    q = _blocky(rng, 3, 16, blocks=2)
    r = _blocky(rng, 3, 16, blocks=4)
    view, out, a_q, a_r = _check_against_numpy(model, q, r)
    # ties really happen: the bias-only channels tie at all 256 locations, the colour channels
    # tie across each constant block
    beta = a_q.max(axis=(1, 2))
    n = (a_q == beta[:, None, None, :]).sum(axis=(1, 2))
    assert np.all(n[:, 3:5] == 256)
    assert np.all(n[:, :3][beta[:, :3] > 0] >= 64)
    # with ties split evenly, a constant-channel-only contribution is spread uniformly: a pair of
    # identical images has similarity 1 and the map still sums to 1
    same = similarity_maps(view, q[:1], q[:1])
    assert abs(same["similarity"][0] - 1.0) < 1e-6
    assert abs(same["query_map"][0].sum() - 1.0) < 1e-5


def test_max_pooling_forced_ties_with_projection():
    inp = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(4, 1, activation="relu", name="feat")
    x = keras.layers.GlobalMaxPooling2D(name="pool")(conv(inp))
    proj = keras.layers.Dense(3, use_bias=False, name="projection")
    out_t = keras.layers.UnitNormalization(name="l2norm")(proj(x))
    model = keras.Model(inp, out_t)
    k = np.zeros((1, 1, 3, 4), np.float32)
    k[0, 0, :, 0] = [1.0, -0.5, 0.2]
    k[0, 0, :, 1] = [0.0, 1.0, 0.0]
    conv.set_weights([k, np.array([0, 0, 0.7, 0.1], np.float32)])  # channels 2, 3: constant
    proj.set_weights([np.array([[1, -1, 0.5], [0.3, 2, -1], [-1, 0.5, 1], [2, 0, 1]], np.float32)])
    rng = np.random.default_rng(5)
    q, r = _blocky(rng, 3, 16, blocks=2), _blocky(rng, 3, 16, blocks=2)
    _, out, _, _ = _check_against_numpy(model, q, r)
    assert out["query_map"].min() < 0  # a projection can make contributions negative


def test_single_pass_signature_uint8_matches_eager():
    model = _net("avg", 16)
    view = ModelView(model)
    method = registry.get("similarity_map")
    assert method.kind == "single_pass" and method.applies_to == "embedding"
    specs = {k: f() for k, f in method.signature_inputs.items()}
    assert set(specs) == {"query_images", "reference_images"}
    assert all(s.dtype == tf.uint8 for s in specs.values())

    fn = tf.function(
        lambda q, r: method.fn(view, query_images=q, reference_images=r),
        input_signature=[specs["query_images"], specs["reference_images"]],
    )
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    r = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    graph = {k: v.numpy() for k, v in fn(tf.constant(q), tf.constant(r)).items()}
    eager = similarity_maps(view, q.astype(np.float32) / 255.0, r.astype(np.float32) / 255.0)
    assert set(graph) == {
        "query_map", "reference_map", "similarity", "query_map_upsampled", "reference_map_upsampled", "topk_share",
    }
    for k in graph:
        np.testing.assert_allclose(graph[k], eager[k], atol=1e-5, rtol=0)


def test_broadcast_single_query_and_errors():
    model = _net("avg", None)
    rng = np.random.default_rng(2)
    q = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    db = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    out = similarity_maps(model, q, db, batch_size=2)
    assert out["query_map"].shape[0] == 5
    pair = similarity_maps(model, q[None], db[3:4])
    np.testing.assert_allclose(out["query_map"][3], pair["query_map"][0], atol=1e-6)
    with pytest.raises(ExplainError, match="must match"):
        similarity_maps(model, db[:2], db[:3])
    with pytest.raises(ExplainError, match="accepts"):
        similarity_maps(model, db[:, :32], db[:, :32])
    flat = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    with pytest.raises(ExplainError, match="pooling"):
        similarity_maps(flat, np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)))


def test_embed_matches_model_output():
    model = _net("max", 16)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    e = embed(model, x, batch_size=2)
    np.testing.assert_allclose(e, model(x.astype(np.float32) / 255.0).numpy(), atol=1e-5)
    raw = embed(model, x, normalize=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=-1, keepdims=True), e, atol=1e-5)


def test_class_similarity_map_is_sum_of_pairwise_maps():
    model = _net("avg", None)
    rng = np.random.default_rng(6)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    others = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    out = class_similarity_map(model, image, others, batch_size=3)
    pairs = similarity_maps(model, image, others)
    np.testing.assert_allclose(out["map"], pairs["query_map"].sum(axis=0), atol=1e-5)
    np.testing.assert_allclose(out["similarities"], pairs["similarity"], atol=1e-5)
    assert abs(out["map"].sum() - out["similarities"].sum()) < 1e-5
    assert out["map_upsampled"].shape == (64, 64)


def test_region_retrieval_planted():
    model = _colour_model()
    red, green, blue = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    query = np.zeros((32, 32, 3), np.uint8)
    query[:, :16] = red
    query[:, 16:] = green
    database = np.zeros((4, 32, 32, 3), np.uint8)
    database[0] = blue
    database[1] = green
    database[2] = red
    database[3, :, :16] = blue
    database[3, :, 16:] = (128, 128, 0)

    left = np.zeros((32, 32), bool)
    left[:, :16] = True
    out = region_retrieval(model, query, left, database, top_k=2)
    assert list(out["ranking"]) == [2, 3]  # the red image first, then the one with some red
    np.testing.assert_allclose(out["region_weights"][:, :4], 1.0)
    np.testing.assert_allclose(out["region_weights"][:, 4:], 0.0)

    right = ~left
    out_r = region_retrieval(model, query, right, database, top_k=None)
    assert out_r["ranking"][0] == 1  # the green image
    np.testing.assert_allclose(out_r["all_scores"][[0, 2]], 0.0, atol=1e-7)  # no green in blue or red
    assert list(out_r["ranking"][-2:]) == [0, 2]  # ties keep the lower index first
    # a feature-resolution mask gives the same; the two halves add up to the whole similarity
    out_hw = region_retrieval(model, query, np.asarray(right[::4, ::4]), database, top_k=None)
    np.testing.assert_allclose(out_hw["all_scores"], out_r["all_scores"], atol=1e-6)
    full = region_retrieval(model, query, np.ones((32, 32), bool), database, top_k=None)
    np.testing.assert_allclose(full["all_scores"], full["similarity"], atol=1e-5)
    np.testing.assert_allclose(out["all_scores"] + out_r["all_scores"], full["similarity"], atol=1e-5)
    # region scores equal the masked sum of the pairwise query maps
    maps = similarity_maps(model, query, database)["query_map"]
    np.testing.assert_allclose(maps[:, :, 4:].sum(axis=(1, 2)), out_r["all_scores"], atol=1e-5)
    with pytest.raises(ExplainError, match="region_mask"):
        region_retrieval(model, query, np.ones((5, 5), bool), database)


def test_topk_component_share():
    rng = np.random.default_rng(7)
    bi = rng.random((6, 32))
    bj = rng.random((6, 32))
    share = topk_component_share(bi, bj)
    assert share.shape == (6, 32)
    np.testing.assert_allclose(share[:, -1], 1.0, atol=1e-12)
    assert np.all(np.diff(share, axis=1) >= -1e-12)
    # k = 1: the largest product over s
    p = (bi / np.linalg.norm(bi, axis=1, keepdims=True)) * (bj / np.linalg.norm(bj, axis=1, keepdims=True))
    np.testing.assert_allclose(share[:, 0], p.max(axis=1) / p.sum(axis=1), atol=1e-12)
    one = topk_component_share(bi[0], bj[0], [1, 10, 32])
    np.testing.assert_allclose(one, share[0, [0, 9, 31]])
    with pytest.raises(ExplainError, match="ks"):
        topk_component_share(bi, bj, [0])
    # the single-pass output carries the same curve
    model = _net("avg", None)
    x = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = similarity_maps(model, x, y)
    ref = topk_component_share(embed(model, x), embed(model, y))
    np.testing.assert_allclose(out["topk_share"], ref, atol=1e-5)
    np.testing.assert_allclose(out["topk_share"][:, -1], 1.0, atol=1e-5)
    assert np.all(np.diff(out["topk_share"], axis=1) >= -1e-6)
