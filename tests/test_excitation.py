"""Excitation backprop / contrastive MWP (SPEC §2, seed 003, Zhang et al. 2016): values, not shapes.

* two hand-built networks whose signals are written out by hand (Dense→ReLU→Dense; a 1×1 conv
  net with BatchNorm and a residual ``Add`` with a negative summand);
* a small conv net against a loop-by-loop numpy implementation of the rules (conv, max pool,
  average pool, bias + ReLU masks);
* conservation on all four classifiers (tiny width, 96 px, untrained): the non-contrastive signal
  sums to 1 at every layer that all paths go through, the contrastive one to 0 at the contrast
  layer. Why the check is exact there: Keras initialises biases to 0 and BN's moving mean/beta to
  0, so a unit with a positive output has a positive ``W⁺x⁺`` (``Wx > 0`` with ``x ≥ 0`` needs a
  positive ``w·x`` term) — no unit that receives signal has ``z = 0``, so no mass can be lost;
  the tests assert that the networks are alive (the signal at the classifier's input sums to 1);
* the registry's graph entry equals the eager one; bad arguments raise ``ExplainError``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import excitation, registry
from explain.excitation import excitation_backprop, resolve_layers
from explain.view import ExplainError, ModelView
from models.architectures import build_classifier, embedding_net

L = keras.layers
X3 = np.array([0.2, 0.5, 0.9], np.float32)


def _pixel(x3: np.ndarray) -> np.ndarray:
    return np.asarray(x3, np.float32).reshape(1, 1, 1, 3)


def _relu(a):
    return np.maximum(a, 0.0)


# ---------------------------------------------------------------------------------------------
# 1. Dense 3→2 (ReLU) → Dense 2→2, by hand


def _mlp(b1=(0.1, -0.2)) -> keras.Model:
    inp = keras.Input((1, 1, 3), name="images")
    x = L.Activation("linear", name="pixels")(inp)
    x = L.Flatten(name="flat")(x)
    h = L.Dense(2, activation="relu", name="hidden")(x)
    out = L.Dense(2, activation="softmax", name="predictions")(h)
    m = keras.Model(inp, out, name="mlp")
    m.get_layer("hidden").set_weights([np.array([[1, -1], [0.5, 2], [-0.5, 1]], np.float32), np.array(b1, np.float32)])
    m.get_layer("predictions").set_weights([np.array([[1, -2], [-0.5, 1]], np.float32), np.array([0, 0.3], np.float32)])
    return m


def test_hand_computed_two_layer_network():
    m = _mlp()
    assert resolve_layers(m) == ("pixels", "hidden")
    layers = ("pixels", "hidden")
    # h = relu(x W1 + b1) = [0.1, 1.5]; logits = h W2 + b2 = [-0.65, 1.6].
    r0 = excitation_backprop(m, _pixel(X3), class_index=0, return_layers=layers)
    np.testing.assert_allclose(r0["logits"], [[-0.65, 1.6]], atol=1e-6)
    # Class 0: W2⁺[:, 0] = [1, 0] → all of the target's mass goes to hidden unit 0.
    np.testing.assert_allclose(r0["layers"]["hidden"], [[1.0, 0.0]], atol=1e-6)
    # W1⁺ = [[1, 0], [0.5, 2], [0, 1]], z = x W1⁺ = [0.45, 1.9]: p_x = x ⊙ W1⁺[:, 0] / 0.45.
    np.testing.assert_allclose(r0["layers"]["pixels"].reshape(3), [0.2 / 0.45, 0.25 / 0.45, 0.0], atol=1e-6)
    # The map at the 1×1 saliency layer is the channel sum: all the mass.
    np.testing.assert_allclose(r0["raw"].reshape(()), 1.0, atol=1e-6)

    # Class 1 (also the predicted one): W2⁺[:, 1] = [0, 1] → unit 1, then x ⊙ W1⁺[:, 1] / 1.9.
    r1 = excitation_backprop(m, _pixel(X3), class_index=-1, return_layers=layers)
    assert r1["class_index"].tolist() == [1]
    np.testing.assert_allclose(r1["layers"]["hidden"], [[0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(r1["layers"]["pixels"].reshape(3), [0.0, 1.0 / 1.9, 0.9 / 1.9], atol=1e-6)

    # Contrastive, class 0: dual unit weights −W2[:, 0] = [-1, 0.5] → (·)⁺ = [0, 0.5] → dual
    # signal [0, 1]; difference at the contrast layer (input of the classifier) = [1, −1].
    c0 = excitation_backprop(m, _pixel(X3), class_index=0, contrastive=True, return_layers=layers)
    np.testing.assert_allclose(c0["layers"]["hidden"], [[1.0, -1.0]], atol=1e-6)
    expected = [0.2 * (1 / 0.45), 0.5 * (0.5 / 0.45 - 2 / 1.9), 0.9 * (-1 / 1.9)]
    np.testing.assert_allclose(c0["layers"]["pixels"].reshape(3), expected, atol=1e-6)
    assert abs(sum(expected)) < 1e-6
    # raw = max(Σ_k P, 0) = max(0, 0).
    np.testing.assert_allclose(c0["raw"].reshape(()), 0.0, atol=1e-6)

    # Contrastive, class 1: dual weights (−[−2, 1])⁺ = [2, 0] → dual [1, 0]; difference [−1, 1].
    c1 = excitation_backprop(m, _pixel(X3), class_index=1, contrastive=True, return_layers=layers)
    np.testing.assert_allclose(c1["layers"]["hidden"], [[-1.0, 1.0]], atol=1e-6)
    expected = [0.2 * (-1 / 0.45), 0.5 * (-0.5 / 0.45 + 2 / 1.9), 0.9 * (1 / 1.9)]
    np.testing.assert_allclose(c1["layers"]["pixels"].reshape(3), expected, atol=1e-6)
    np.testing.assert_allclose(c1["raw"].reshape(()), max(sum(expected), 0.0), atol=1e-6)


def test_dead_unit_receives_nothing_and_zero_z_gives_zero_share():
    m = _mlp(b1=(-0.2, -0.2))  # h = [relu(-0.2), relu(1.5)] = [0, 1.5]
    r = excitation_backprop(m, _pixel(X3), class_index=0, return_layers=("hidden", "pixels"))
    # Class 0 only has a positive weight from the dead unit: z = 0·1 = 0 → the share is 0, no NaN.
    np.testing.assert_array_equal(r["layers"]["hidden"], [[0.0, 0.0]])
    np.testing.assert_array_equal(r["layers"]["pixels"].reshape(3), [0.0, 0.0, 0.0])
    r = excitation_backprop(m, _pixel(X3), class_index=1, return_layers=("hidden", "pixels"))
    np.testing.assert_allclose(r["layers"]["hidden"], [[0.0, 1.0]], atol=1e-6)
    assert np.isfinite(r["heatmap"]).all()


# ---------------------------------------------------------------------------------------------
# 2. 1×1 convolutions with BatchNorm and a residual Add, by hand

WA = np.array([[1, 0.5], [-1, 1], [0.5, -1]], np.float32)
WB = np.array([[0.5, 1], [1, -0.5], [0, 1]], np.float32)
BB = np.array([0.0, 0.1], np.float32)
BN = dict(gamma=np.array([2.0, 1.0]), beta=np.array([0.1, -0.2]), mean=np.array([0.05, 0.0]), var=np.array([1.0, 4.0]))
BN_EPS = 1e-3
W2 = np.array([[1, 0.5], [-0.5, 1]], np.float32)


def _residual_net() -> keras.Model:
    inp = keras.Input((1, 1, 3), name="images")
    px = L.Activation("linear", name="pixels")(inp)
    a = L.Conv2D(2, 1, use_bias=False, name="conv_a")(px)
    a = L.BatchNormalization(epsilon=BN_EPS, name="bn_a")(a)
    b = L.Conv2D(2, 1, activation="relu", name="conv_b")(px)
    s = L.Add(name="add")([a, b])
    x = L.Activation("relu", name="out")(s)
    x = L.Flatten(name="flat")(x)
    y = L.Dense(2, activation="softmax", name="predictions")(x)
    m = keras.Model(inp, y, name="residual")
    m.get_layer("conv_a").set_weights([WA.reshape(1, 1, 3, 2)])
    m.get_layer("bn_a").set_weights([BN["gamma"], BN["beta"], BN["mean"], BN["var"]])
    m.get_layer("conv_b").set_weights([WB.reshape(1, 1, 3, 2), BB])
    m.get_layer("predictions").set_weights([W2, np.zeros(2, np.float32)])
    return m


def _residual_by_hand(x, c, contrastive):
    """The rules of SPEC §2 written out for the residual net (numpy, one pixel)."""
    conv_a = x @ WA
    bn = BN["gamma"] * (conv_a - BN["mean"]) / np.sqrt(BN["var"] + BN_EPS) + BN["beta"]
    b_pre = x @ WB + BB
    b = _relu(b_pre)
    s = bn + b
    out = _relu(s)

    def top(w):
        wp = _relu(w)
        z = out @ wp
        return out * wp / z if z > 0 else np.zeros_like(out)

    p_out = top(W2[:, c]) - (top(-W2[:, c]) if contrastive else 0.0)
    p_s = p_out * (s > 0)  # ReLU: the plain gradient
    ap, bp = _relu(bn), _relu(b)  # residual split by the summands' positive parts
    p_bn = np.where(ap + bp > 0, ap / (ap + bp) * p_s, 0.0)
    p_b = np.where(ap + bp > 0, bp / (ap + bp) * p_s, 0.0)
    p_conv_a = p_bn  # BatchNorm: unchanged
    wap, wbp = _relu(WA), _relu(WB)
    p_x = x * (wap @ (p_conv_a / (x @ wap)))
    p_x = p_x + x * (wbp @ ((p_b * (b_pre > 0)) / (x @ wbp)))
    return {"out": p_out, "add": p_s, "bn_a": p_bn, "conv_a": p_conv_a, "conv_b": p_b, "pixels": p_x}, (bn, b)


@pytest.mark.parametrize("c,contrastive", [(0, False), (1, False), (0, True), (1, True)])
def test_hand_computed_residual_split_and_batchnorm(c, contrastive):
    m = _residual_net()
    layers = ("out", "add", "bn_a", "conv_a", "conv_b", "pixels")
    r = excitation_backprop(m, _pixel(X3), class_index=c, contrastive=contrastive, return_layers=layers)
    ref, (bn, b) = _residual_by_hand(X3.astype(np.float64), c, contrastive)
    # The case the rules are about: unit 0 has two positive summands, unit 1 a negative BN output.
    assert bn[0] > 0 and b[0] > 0 and bn[1] < 0 < bn[1] + b[1]
    for name in layers:
        np.testing.assert_allclose(r["layers"][name].reshape(-1), ref[name], atol=1e-6, err_msg=name)
    if not contrastive:  # layers on every path carry all the mass; the two branches share it
        for name in ("out", "add", "pixels"):
            np.testing.assert_allclose(r["layers"][name].sum(), 1.0, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(r["layers"]["bn_a"].sum() + r["layers"]["conv_b"].sum(), 1.0, atol=1e-6)
    if c == 1 and not contrastive:
        # Written out: out = s = [0.8999, 0.6], W2⁺[:, 1] = [0.5, 1] → p_out ∝ [0.45, 0.6];
        # unit 0 splits BN : conv_b = 0.2999 : 0.6; unit 1 goes to conv_b only (BN output < 0).
        s0 = bn[0] + b[0]
        p_out = np.array([0.5 * s0, bn[1] + b[1]]) / (0.5 * s0 + bn[1] + b[1])
        np.testing.assert_allclose(r["layers"]["bn_a"].reshape(-1), [p_out[0] * bn[0] / s0, 0.0], atol=1e-6)
        np.testing.assert_allclose(r["layers"]["conv_b"].reshape(-1), [p_out[0] * b[0] / s0, p_out[1]], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# 3. A small conv net against a loop-by-loop numpy implementation


def _conv_valid(x, w):
    k, _, _, o = w.shape
    h, wd = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((h, wd, o))
    for i in range(h):
        for j in range(wd):
            out[i, j] = np.tensordot(x[i:i + k, j:j + k, :], w, axes=3)
    return out


def _conv_mwp(x, w, p):
    k = w.shape[0]
    wp = _relu(w)
    z = _conv_valid(x, wp)
    s = np.where(z > 0, p / np.where(z > 0, z, 1), 0.0)
    pin = np.zeros_like(x)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            for o in range(z.shape[2]):
                pin[i:i + k, j:j + k, :] += x[i:i + k, j:j + k, :] * wp[:, :, :, o] * s[i, j, o]
    return pin


def test_conv_pool_net_matches_numpy_loops():
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3), name="images")
    a = L.Conv2D(4, 3, activation="relu", name="c1")(inp)  # 6×6×4
    b = L.MaxPooling2D(2, name="mp")(a)  # 3×3×4
    c = L.Conv2D(3, 2, activation="relu", name="c2")(b)  # 2×2×3
    d = L.AveragePooling2D(2, name="ap")(c)  # 1×1×3
    e = L.Flatten(name="flat")(d)
    out = L.Dense(2, activation="softmax", name="predictions")(e)
    m = keras.Model(inp, out)
    rng = np.random.default_rng(5)
    for name in ("c1", "c2"):
        kernel, bias = m.get_layer(name).get_weights()
        m.get_layer(name).set_weights([kernel, rng.uniform(-0.05, 0.1, bias.shape).astype(np.float32)])
    x = rng.random((1, 8, 8, 3)).astype(np.float32)
    layers = ("c1", "mp", "c2", "ap")
    assert resolve_layers(m) == ("ap", "flat")  # the second pooling layer
    r = excitation_backprop(m, x, class_index=1, saliency_layer="mp", return_layers=layers)

    w1, b1 = (v.astype(np.float64) for v in m.get_layer("c1").get_weights())
    w2, b2 = (v.astype(np.float64) for v in m.get_layer("c2").get_weights())
    wd = m.get_layer("predictions").get_weights()[0].astype(np.float64)
    x0 = x[0].astype(np.float64)
    a_pre = _conv_valid(x0, w1) + b1
    a_ = _relu(a_pre)
    b_ = a_.reshape(3, 2, 3, 2, 4).max(axis=(1, 3))
    c_pre = _conv_valid(b_, w2) + b2
    c_ = _relu(c_pre)
    d_ = c_.mean(axis=(0, 1))
    # classifier
    wp = _relu(wd[:, 1])
    p_d = d_ * wp / (d_ @ wp)
    # average pool 2×2 → 1×1: p_c = c ⊙ (1/4) · p_d / mean(c)
    p_c = c_ * 0.25 * np.where(d_ > 0, p_d / np.where(d_ > 0, d_, 1), 0)
    p_b = _conv_mwp(b_, w2, p_c * (c_pre > 0))
    # max pool: to the argmax of each window
    p_a = np.zeros_like(a_)
    for i in range(3):
        for j in range(3):
            for k in range(4):
                win = a_[2 * i:2 * i + 2, 2 * j:2 * j + 2, k]
                u, v = np.unravel_index(np.argmax(win), (2, 2))
                p_a[2 * i + u, 2 * j + v, k] += p_b[i, j, k]
    np.testing.assert_allclose(r["layers"]["ap"][0].reshape(-1), p_d, atol=1e-6)
    np.testing.assert_allclose(r["layers"]["c2"][0], p_c, atol=1e-6)
    np.testing.assert_allclose(r["layers"]["mp"][0], p_b, atol=1e-6)
    np.testing.assert_allclose(r["layers"]["c1"][0], p_a, atol=1e-6)
    # The map at the saliency layer is the channel sum.
    np.testing.assert_allclose(r["raw"][0], p_b.sum(-1), atol=1e-6)
    # Pixels: one more conv step; mass conserved unless a unit with signal had z = 0.
    p_x = _conv_mwp(x0, w1, p_a * (a_pre > 0))
    assert p_x.sum() <= 1 + 1e-9 and p_x.min() >= 0


# ---------------------------------------------------------------------------------------------
# 4. The four classifiers: conservation, contrastive sum, shapes, finiteness

ARCHS = {
    # name: (width, layers on every path to check, default saliency layer)
    "vgg11": (1 / 16, ("block1_conv1", "block1_pool", "block2_pool", "block3_conv2", "block5_pool",
                       "flatten", "fc1", "fc2_dropout"), "block2_pool"),
    "simple": (1 / 8, ("conv1", "pool1", "pool2", "conv3", "pool4", "flatten", "fc1_dropout"), "pool2"),
    "simpler": (1 / 4, ("conv1", "pool1", "pool2", "conv3", "flatten", "fc1", "fc1_dropout"), "pool2"),
    "resnet18": (1 / 16, ("conv1_pad", "conv1_conv", "conv1_bn", "conv1_relu", "pool1_pool",
                          "conv2_block1_add", "conv2_block2_out", "conv3_block1_out", "conv4_block2_out",
                          "conv5_block2_out", "avg_pool"), "conv2_block2_out"),
}
_CONTRAST = {"vgg11": "fc2_dropout", "simple": "fc1_dropout", "simpler": "fc1_dropout", "resnet18": "avg_pool"}


@pytest.fixture(scope="module")
def models():
    out = {}
    for i, name in enumerate(ARCHS):
        keras.utils.set_random_seed(10 + i)
        m = build_classifier(name, input_size=96, num_classes=3, width=ARCHS[name][0])
        if name == "resnet18":
            # Non-trivial BN that keeps signs (γ > 0, β = 0, mean 0): identity for MWP, a per-channel
            # scaling for the plain gradient — so conservation tells the two apart.
            rng = np.random.default_rng(0)
            for layer in m.layers:
                if isinstance(layer, L.BatchNormalization):
                    k = layer.gamma.shape[0]
                    layer.set_weights([rng.uniform(0.5, 1.5, k), np.zeros(k), np.zeros(k), rng.uniform(0.5, 2.0, k)])
        out[name] = m
    return out


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).random((2, 96, 96, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list(ARCHS))
def test_architectures_conserve_mass(models, images, name):
    m = models[name]
    width, layers, default_sal = ARCHS[name]
    assert resolve_layers(m) == (default_sal, _CONTRAST[name])
    contrast = _CONTRAST[name]
    ret = tuple(dict.fromkeys((*layers, contrast)))
    r = excitation_backprop(m, images, class_index=[0, 2], return_layers=ret)
    sal_shape = m.get_layer(default_sal).output.shape[1:3]
    assert r["raw"].shape == (2, *sal_shape) and r["heatmap"].shape == (2, *sal_shape)
    assert r["heatmap_upsampled"].shape == (2, 96, 96)
    assert r["class_index"].tolist() == [0, 2]
    np.testing.assert_allclose(r["probabilities"].sum(-1), 1.0, atol=1e-5)
    for key in ("raw", "heatmap", "heatmap_upsampled"):
        assert np.isfinite(r[key]).all(), key
    assert r["raw"].min() >= 0
    assert 0 <= r["heatmap"].min() and r["heatmap"].max() <= 1 and r["heatmap"].max() > 0.99
    assert 0 <= r["heatmap_upsampled"].min() and r["heatmap_upsampled"].max() <= 1
    for layer, sig in r["layers"].items():
        assert np.isfinite(sig).all() and sig.min() >= 0, layer
        np.testing.assert_allclose(sig.reshape(2, -1).sum(1), 1.0, atol=1e-4, err_msg=layer)
    np.testing.assert_allclose(r["raw"].sum((1, 2)), 1.0, atol=1e-4)

    c = excitation_backprop(m, images, class_index=[0, 2], contrastive=True, return_layers=ret)
    np.testing.assert_allclose(c["layers"][contrast].reshape(2, -1).sum(1), 0.0, atol=1e-5)
    # Below the contrast layer the signed difference is still conserved (every rule is linear).
    for layer in layers:
        np.testing.assert_allclose(c["layers"][layer].reshape(2, -1).sum(1), 0.0, atol=1e-4, err_msg=layer)
    assert np.isfinite(c["raw"]).all() and c["raw"].min() >= 0 and c["raw"].max() > 0
    # c-MWP = max(Σ_k (MWP_target − MWP_dual), 0), and it is not the plain map.
    assert not np.allclose(c["heatmap"], r["heatmap"])
    np.testing.assert_allclose(c["logits"], r["logits"], rtol=1e-6)


def test_configurable_layers_and_uint8(models, images):
    m = models["vgg11"]
    r = excitation_backprop(m, images, contrastive=True, saliency_layer="block3_conv2", contrast_layer="fc1",
                            return_layers=("fc1", "block4_pool"))
    assert r["raw"].shape == (2, 24, 24)
    np.testing.assert_allclose(r["layers"]["fc1"].sum(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(r["layers"]["block4_pool"].reshape(2, -1).sum(1), 0.0, atol=1e-4)
    u8 = (images * 255).round().astype(np.uint8)
    a = excitation_backprop(m, u8)
    b = excitation_backprop(m, u8.astype(np.float32) / 255.0)
    np.testing.assert_allclose(a["raw"], b["raw"], atol=1e-6)


def test_registry_graph_entry_matches_eager(models, images):
    m = models["simple"]
    method = registry.METHODS["excitation_backprop"]
    assert method.fn is excitation.excitation_backprop_graph and method.kind == "single_pass"
    specs = {k: f() for k, f in method.signature_inputs.items()}
    assert specs["class_index"].shape.as_list() == [None] and specs["class_index"].dtype == tf.int32
    assert specs["contrastive"].shape.as_list() == [] and specs["contrastive"].dtype == tf.bool
    view = ModelView(m)
    fn = tf.function(
        lambda x, c, k: method.fn(view, x, class_index=c, contrastive=k),
        input_signature=[tf.TensorSpec([None, 96, 96, 3], tf.float32), specs["class_index"], specs["contrastive"]],
    )
    for contrastive in (False, True):
        g = fn(tf.constant(images), tf.constant([-1, 1], tf.int32), tf.constant(contrastive))
        e = excitation_backprop(m, images, class_index=[-1, 1], contrastive=contrastive)
        assert set(g) >= {"heatmap", "heatmap_upsampled", "raw", "logits", "probabilities", "class_index"}
        for key in ("heatmap", "heatmap_upsampled", "raw", "logits", "probabilities", "class_index"):
            np.testing.assert_allclose(g[key].numpy(), e[key], atol=1e-6, err_msg=key)


def test_bad_arguments_raise_explain_error(models, images):
    vgg, res = models["vgg11"], models["resnet18"]
    with pytest.raises(ExplainError, match=r"saliency_layer 'nope'.*block2_pool"):
        resolve_layers(vgg, saliency_layer="nope")
    with pytest.raises(ExplainError, match=r"saliency_layer 'fc1'.*accepted.*block2_pool"):
        excitation_backprop(vgg, images, saliency_layer="fc1")
    with pytest.raises(ExplainError, match=r"saliency_layer 'block4_conv1'.*'block3_pool'"):
        resolve_layers(vgg, saliency_layer="block4_conv1", contrast_layer="block3_pool")
    with pytest.raises(ExplainError, match=r"contrast_layer 'nope'.*fc2_dropout"):
        excitation_backprop(vgg, images, contrast_layer="nope")
    with pytest.raises(ExplainError, match=r"contrast_layer 'conv2_block1_1_conv'.*avg_pool"):
        resolve_layers(res, contrast_layer="conv2_block1_1_conv")
    with pytest.raises(ExplainError, match=r"return_layers entry 'nope'"):
        excitation_backprop(vgg, images, return_layers=("nope",))
    with pytest.raises(ExplainError, match=r"class_index 3 is out of range.*3 classes"):
        excitation_backprop(vgg, images, class_index=3)
    with pytest.raises(ExplainError, match=r"no classifier layer"):
        excitation_backprop(embedding_net(32, "avg", width=1 / 16), np.zeros((1, 32, 32, 3), np.float32))
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(2, 3, activation="sigmoid", name="squash")(inp)
    x = L.Flatten()(x)
    bad = keras.Model(inp, L.Dense(2, activation="softmax", name="predictions")(x))
    with pytest.raises(ExplainError, match=r"'squash'.*sigmoid.*supported"):
        excitation_backprop(bad, np.zeros((1, 8, 8, 3), np.float32))
