"""Optimised perturbation masks (seed 004 / Fong & Vedaldi 2017) on a hand-built model whose
class evidence lives in one image quadrant only."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest
import tensorflow as tf

from explain import registry
from explain.backend import Cancelled, KerasBackend
from explain.perturbation import gaussian_blur, gaussian_kernel, perturbation_mask
from explain.view import ExplainError, ModelView

SIZE = 64
HALF = SIZE // 2
ITER = 100


def _quadrant_model(size=SIZE):
    """Sees only the top-left quadrant (Cropping2D); feature = mean ReLU(r − (g + b)/2 − 0.3),
    i.e. the area of saturated red there; class 0 = "red dots present" with fixed weights.

    Small red dots on grey survive a mean-colour test but not the blur (σ ≈ 2.9 px at 64 px),
    so p_0 can only be lowered by blurring the dots inside that quadrant."""
    inp = keras.Input((size, size, 3))
    half = size // 2
    x = keras.layers.Cropping2D(((0, half), (0, half)), name="crop")(inp)
    conv = keras.layers.Conv2D(1, 1, activation="relu", name="redness")
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv(x))
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inp, dense(x), name="quadrant")
    conv.set_weights([np.array([1, -0.5, -0.5], np.float32).reshape(1, 1, 3, 1), np.array([-0.3], np.float32)])
    dense.set_weights([np.array([[400.0, 0.0]], np.float32), np.array([-4.0, 0.0], np.float32)])
    return model


def _dotted(seed, size=SIZE, per_quadrant=4):
    """Grey image with 3x3 red dots in every quadrant (the other quadrants are distractors)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 0.5, np.float32)
    half = size // 2
    for qy in range(2):
        for qx in range(2):
            for _ in range(per_quadrant):
                y = rng.integers(4, half - 7) + qy * half
                x = rng.integers(4, half - 7) + qx * half
                img[y:y + 3, x:x + 3] = (1.0, 0.0, 0.0)
    return img


@pytest.fixture(scope="module")
def backend():
    return KerasBackend(ModelView(_quadrant_model()))


@pytest.fixture(scope="module")
def images():
    return np.stack([_dotted(0), _dotted(1)])


@pytest.fixture(scope="module")
def batch_result(backend, images):
    return perturbation_mask(backend, images, class_index=-1, iterations=ITER, seed=0)


def test_mask_concentrates_in_the_quadrant_the_model_sees(backend, images, batch_result):
    out = batch_result
    assert out["heatmap"].shape == (2, SIZE, SIZE) and out["mask_lowres"].shape == (2, SIZE // 8, SIZE // 8)
    np.testing.assert_array_equal(out["class_index"], [0, 0])  # predicted class: the dots are there
    assert np.all(out["probabilities"][:, 0] > 0.99)
    # deleting the top-left dots destroys the evidence
    assert np.all(out["probability_perturbed"] < 0.1)
    raw = out["raw"]
    np.testing.assert_allclose(raw, 1.0 - out["mask"])
    for i in range(2):
        share = raw[i, :HALF, :HALF].sum() / raw[i].sum()
        assert share > 0.9, share
        assert raw[i, :HALF, :HALF].max() > 0.9  # something in the quadrant is fully deleted
        assert raw[i, HALF:, :].max() < 0.5 and raw[i, :, HALF + 4:].max() < 0.5
        # the deleted cells are the ones holding top-left dots
        dots = (images[i, :HALF, :HALF, 0] == 1.0) & (images[i, :HALF, :HALF, 1] == 0.0)
        assert out["heatmap"][i, :HALF, :HALF][dots].mean() > 0.8
    assert out["heatmap"].min() >= 0.0 and out["heatmap"].max() <= 1.0


def test_deterministic_and_batch_independent(backend, images, batch_result):
    again = perturbation_mask(backend, images, class_index=-1, iterations=ITER, seed=0)
    for key in ("mask", "mask_lowres", "heatmap", "loss"):
        np.testing.assert_array_equal(again[key], batch_result[key])
    for i in range(2):
        alone = perturbation_mask(backend, images[i:i + 1], class_index=-1, iterations=ITER, seed=0)
        for key in ("mask", "mask_lowres", "raw", "probability_perturbed"):
            np.testing.assert_allclose(alone[key][0], batch_result[key][i], atol=1e-5, rtol=0)
    # batch_size splits the request; same result
    split = perturbation_mask(backend, images, iterations=ITER, batch_size=1)
    np.testing.assert_allclose(split["mask"], batch_result["mask"], atol=1e-5, rtol=0)


def test_noise_comes_from_the_seed_and_refinement_runs(backend, images):
    kw = dict(class_index=0, iterations=20, refine_iterations=10, noise_std=0.05)
    a = perturbation_mask(backend, images, seed=3, **kw)
    b = perturbation_mask(backend, images, seed=3, **kw)
    c = perturbation_mask(backend, images, seed=4, **kw)
    np.testing.assert_array_equal(a["mask"], b["mask"])
    assert np.abs(a["mask"] - c["mask"]).max() > 0
    assert a["mask"].shape == (2, SIZE, SIZE) and a["mask_lowres"].shape == (2, SIZE // 8, SIZE // 8)
    assert a["mask"].min() >= 0.0 and a["mask"].max() <= 1.0


def test_cancel_and_errors(backend, images):
    calls = []

    def stop_after_two():
        calls.append(1)
        return len(calls) < 3

    with pytest.raises(Cancelled):
        perturbation_mask(backend, images, iterations=50, should_continue=stop_after_two)
    assert len(calls) == 3  # checked before the start, then every 10 steps
    with pytest.raises(Cancelled):
        perturbation_mask(backend, images, iterations=5, should_continue=lambda: False)
    with pytest.raises(ExplainError, match="class_index 2 is out of range"):
        perturbation_mask(backend, images, class_index=2, iterations=1)
    with pytest.raises(ExplainError, match="accepts"):
        perturbation_mask(backend, images[:, :32], iterations=1)
    with pytest.raises(ExplainError, match="iterations"):
        perturbation_mask(backend, images, iterations=-1)


def test_registry_entry_and_blur():
    method = registry.get("perturbation_mask")
    assert method.kind == "iterative" and method.applies_to == "classifier"
    assert method.params["iterations"] == 300 and method.params["l1_coeff"] == 0.5
    assert method.params["tv_coeff"] == 0.01 and method.params["tv_beta"] == 3.0
    k = gaussian_kernel(2.0, 100)
    assert len(k) == 13 and abs(k.sum() - 1.0) < 1e-6
    # mirror padding: a constant image stays constant (no darkening at the borders)
    x = tf.fill([1, 10, 12, 3], 0.3)
    np.testing.assert_allclose(gaussian_blur(x, tf.constant(k), tf.constant(k)).numpy(), 0.3, atol=1e-6)


# ----------------------------------------------------------------------------------------- score and perturbation options
def _saturated_backend():
    """The quadrant model with 20x the class weights: p_0 of a dotted image rounds to 1.0 in float32."""
    model = _quadrant_model()
    dense = model.get_layer("predictions")
    w, b = dense.get_weights()
    dense.set_weights([w * 20.0, b * 20.0])
    return KerasBackend(ModelView(model))


def test_log_odds_score_escapes_a_saturated_probability(images):
    be = _saturated_backend()
    assert np.all(be.predict(images)[:, 0] == 1.0)  # saturated: d p_0 / d x underflows
    by_p = perturbation_mask(be, images, class_index=0, iterations=ITER, seed=0)
    by_odds = perturbation_mask(be, images, class_index=0, iterations=ITER, seed=0, score="log_odds")
    # probability: the L1 term wins everywhere and the mask keeps (almost) the whole image
    assert np.all(by_p["probability_perturbed"] > 0.99) and by_p["raw"].max() < 0.5
    # log-odds: the evidence in the seen quadrant is deleted, the class probability falls
    assert np.all(by_odds["probability_perturbed"] < 0.5)
    raw = by_odds["raw"]
    tl = raw[:, :HALF, :HALF].sum(axis=(1, 2))
    assert np.all(tl > 0.7 * raw.sum(axis=(1, 2)))


def test_log_odds_of_two_classes_is_the_logit_margin():
    from explain.perturbation import _functions  # the compiled objective

    be = KerasBackend(ModelView(_quadrant_model()))
    x = tf.constant(np.stack([_dotted(3)]))
    z = be.logits_tf(x).numpy()[0]
    fn = _functions(be)["objective"]
    one = tf.ones([1, 8, 8, 1])
    zero3 = tf.zeros([1, SIZE, SIZE, 3])
    k = tf.constant(np.ones(1, np.float32))
    f = lambda v: tf.constant(v, tf.float32)  # noqa: E731
    per, pc = fn(one, x, x, tf.constant([0]), zero3, f(0.0), f(0.0), f(3.0), f(0.0), k, k, False, True, f(-50.0))
    assert per.numpy()[0] == pytest.approx(z[0] - z[1], abs=1e-4)  # m = 1: the clean image, no penalty
    assert pc.numpy()[0] == pytest.approx(be.predict(x.numpy())[0, 0], abs=1e-5)
    per, _ = fn(one, x, x, tf.constant([0]), zero3, f(0.0), f(0.0), f(3.0), f(0.0), k, k, False, True, f(z[0] - z[1] + 1))
    assert per.numpy()[0] == pytest.approx(z[0] - z[1] + 1, abs=1e-4)  # floored


def _red_square(size=SIZE):
    """Grey image with one 14x14 red square in the top-left quadrant: a blur (σ ≈ 2.9 px) keeps
    its centre red, the image's mean colour does not."""
    img = np.full((size, size, 3), 0.5, np.float32)
    img[8:22, 8:22] = (1.0, 0.0, 0.0)
    return img


def test_constant_perturbation_deletes_what_a_blur_keeps():
    be = KerasBackend(ModelView(_quadrant_model()))
    x = np.stack([_red_square()])
    p0 = be.predict(x)[0, 0]
    blur = perturbation_mask(be, x, class_index=0, iterations=ITER, seed=0, score="log_odds")
    const = perturbation_mask(be, x, class_index=0, iterations=ITER, seed=0, score="log_odds",
                              perturbation="constant")
    assert p0 > 0.99
    assert const["probability_perturbed"][0] < 0.2
    assert const["probability_perturbed"][0] < blur["probability_perturbed"][0]
    raw = const["raw"][0]
    on_square = raw[8:22, 8:22].mean()
    assert on_square > 0.5 and on_square > 3 * raw[SIZE // 2:, :].mean()


def test_option_errors_name_the_accepted_values(backend, images):
    with pytest.raises(ExplainError, match=r"score 'prob' is not one of \['probability', 'log_odds'\]"):
        perturbation_mask(backend, images, iterations=1, score="prob")
    with pytest.raises(ExplainError, match=r"perturbation 'noise' is not one of \['blur', 'constant'\]"):
        perturbation_mask(backend, images, iterations=1, perturbation="noise")
    with pytest.raises(ExplainError, match="log_odds_floor must be finite"):
        perturbation_mask(backend, images, iterations=1, score="log_odds", log_odds_floor=float("-inf"))
