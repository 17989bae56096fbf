"""Gradient saliency (with dilation and SmoothGrad) and occlusion: values, batching, cancellation, errors."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain import registry  # noqa: E402
from explain.backend import Backend, Cancelled, KerasBackend  # noqa: E402
from explain.cam import get_view  # noqa: E402
from explain.occlusion import occlusion, patch_positions, patch_side  # noqa: E402
from explain.resize import dilate_tf, normalize_tf, upsample  # noqa: E402
from explain.saliency import saliency, saliency_single_pass  # noqa: E402
from explain.view import ExplainError, ModelView  # noqa: E402
from models.architectures import build_classifier  # noqa: E402

SIZE = 96


def smooth_images(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.random((n, 6, 6, 3)).astype(np.float32)
    return np.clip(tf.image.resize(low, (size, size)).numpy(), 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def simpler():
    keras.utils.set_random_seed(4)
    model = build_classifier("simpler", SIZE, 3, 0.125)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 10.0, bias + np.array([0.2, -0.3, 0.1], np.float32)])
    return model, ModelView(model), smooth_images(2, 9)


def peak_model(size: int = 16, peak: tuple[int, int] = (7, 8)) -> keras.Model:
    """Logits depend on one pixel only: conv 1×1 (sum of colours) → flatten → Dense with one non-zero row."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="ones", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    dense = keras.layers.Dense(2, activation="softmax", name="predictions")
    model = keras.Model(inputs, dense(x))
    kernel = np.zeros((size * size, 2), np.float32)
    kernel[peak[0] * size + peak[1]] = [1.0, -1.0]
    dense.set_weights([kernel, np.zeros(2, np.float32)])
    return model


class RegionBackend(Backend):
    """p(class 0) = mean of channel 0 over a fixed square region; p(class 1) = 1 − that."""

    def __init__(self, size: int, region: tuple[slice, slice]):
        self.input_shape = (size, size, 3)
        self.num_classes = 2
        self.region = region
        self.sizes: list[int] = []

    def predict(self, images):
        self.sizes.append(len(images))
        p0 = images[:, self.region[0], self.region[1], 0].mean(axis=(1, 2))
        return np.stack([p0, 1 - p0], axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Saliency


def test_dilation_of_an_isolated_peak_is_a_square_plateau():
    m = np.zeros((1, 21, 21), np.float32)
    m[0, 10, 10] = 2.0
    for times in (0, 1, 2, 5):
        out = dilate_tf(m, times).numpy()[0]
        side = 2 * times + 1
        expected = np.zeros((21, 21), np.float32)
        expected[10 - times:10 + times + 1, 10 - times:10 + times + 1] = 2.0
        np.testing.assert_array_equal(out, expected, err_msg=f"{times} dilations, {side}×{side}")
    # Border: the maximum over the neighbours inside the image (no padding value leaks in).
    m = np.full((1, 5, 5), -1.0, np.float32)
    m[0, 0, 0] = 3.0
    out = dilate_tf(m, 1).numpy()[0]
    assert out[0, 0] == out[1, 1] == 3.0 and out[2, 2] == -1.0


def test_saliency_of_a_one_pixel_model_is_a_plateau_with_the_analytic_gradient():
    model = peak_model()
    x = np.full((1, 16, 16, 3), 0.2, np.float32)
    x[0, 7, 8] = [0.1, 0.3, 0.05]
    for d in (0, 1, 2, 5):
        out = saliency(model, x, class_index=0, dilations=d)
        expected = np.zeros((16, 16), np.float32)
        expected[7 - d:7 + d + 1, 8 - d:8 + d + 1] = 1.0
        np.testing.assert_allclose(out["heatmap"][0], expected, atol=1e-5)
        np.testing.assert_allclose(out["heatmap_upsampled"][0], expected, atol=1e-5)
    # default target, the logit: z0 = Σ_c x_c at the pixel ⇒ ∂z0/∂x_c = 1.
    np.testing.assert_allclose(out["gradient"][0, 7, 8], 1.0, rtol=1e-6)
    assert np.count_nonzero(out["gradient"]) == 1
    # |∂p_0/∂x_c| at the pixel: z0 − z1 = 2·Σ_c x_c, p0 = σ(z0 − z1) ⇒ ∂p0/∂x_c = 2·p0·(1 − p0).
    out = saliency(model, x, class_index=0, dilations=5, target="probability")
    s = 2.0 * float(x[0, 7, 8].sum())
    p0 = 1.0 / (1.0 + np.exp(-s))
    np.testing.assert_allclose(out["gradient"][0, 7, 8], 2 * p0 * (1 - p0), rtol=1e-5)
    assert np.count_nonzero(out["gradient"]) == 1
    np.testing.assert_allclose(out["raw"][0].max(), 2 * p0 * (1 - p0), rtol=1e-5)
    # One compiled function served all dilation counts.
    fn = get_view(model).__dict__["_explain_compiled"][("saliency",)]
    assert fn.experimental_get_tracing_count() == 1


def test_saliency_of_a_saturated_softmax_is_not_zero():
    # z0 − z1 = 2·Σ x at the pixel = 180: p0 is exactly 1.0 in float32, so ∂p0/∂x = 2·p0·(1 − p0) = 0
    model = peak_model()
    x = np.full((1, 16, 16, 3), 0.2, np.float32)
    x[0, 7, 8] = 30.0
    assert float(model(x).numpy()[0, 0]) == 1.0
    old = saliency(model, x, class_index=0, target="probability")
    assert not np.any(old["gradient"]) and not np.any(old["heatmap"])
    new = saliency(model, x, class_index=0)
    np.testing.assert_allclose(new["gradient"][0, 7, 8], 1.0, rtol=1e-6)  # |∂z0/∂x_c| = 1
    assert np.count_nonzero(new["gradient"]) == 1 and new["heatmap"][0, 7, 8] > 0.99
    with pytest.raises(ExplainError, match="saliency target 'log' is not one of 'logit', 'probability'"):
        saliency(model, x, target="log")


def test_saliency_equals_tape_gradient_of_probability(simpler):
    model, view, images = simpler
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        p = model(x)[:, 2]
    expected = np.abs(tape.gradient(p, x).numpy()).max(axis=-1)
    old = saliency(model, images, class_index=2, dilations=0, target="probability")
    np.testing.assert_allclose(old["gradient"], expected, rtol=1e-4, atol=1e-6 * expected.max())
    # the default differentiates the logit: the pre-softmax output of the classifier layer
    dense = model.get_layer("predictions")
    logit_model = keras.Model(model.inputs, dense.output if dense.activation is None else
                              keras.ops.matmul(dense.input, dense.kernel) + dense.bias)
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = logit_model(x)[:, 2]
    expected = np.abs(tape.gradient(z, x).numpy()).max(axis=-1)
    out = saliency(model, images, class_index=2, dilations=0)
    np.testing.assert_allclose(out["gradient"], expected, rtol=1e-4, atol=1e-6 * expected.max())
    np.testing.assert_allclose(out["raw"], expected, rtol=1e-4, atol=1e-6 * expected.max())
    two = saliency(model, images, class_index=2, dilations=2)
    np.testing.assert_allclose(two["raw"], dilate_tf(out["raw"], 2).numpy(), rtol=1e-6)
    # Registered as a graph-compatible signature with a scalar dilations input.
    method = registry.get("saliency")
    assert method.signature_inputs["dilations"]().shape.rank == 0
    g = saliency_single_pass(view, images, tf.constant([2, 2]), tf.constant(2))
    np.testing.assert_allclose(g["raw"].numpy(), two["raw"], rtol=1e-4, atol=1e-7)


def test_smoothgrad_is_deterministic_and_reduces_to_plain_with_zero_noise(simpler):
    model, view, images = simpler
    a = saliency(model, images, class_index=-1, smooth_samples=3, smooth_noise=0.2, seed=7)
    b = saliency(model, images, class_index=-1, smooth_samples=3, smooth_noise=0.2, seed=7)
    c = saliency(model, images, class_index=-1, smooth_samples=3, smooth_noise=0.2, seed=8)
    np.testing.assert_array_equal(a["raw"], b["raw"])
    assert not np.allclose(a["raw"], c["raw"])
    plain = saliency(model, images, class_index=-1)
    zero = saliency(model, images, class_index=-1, smooth_samples=2, smooth_noise=0.0, seed=1)
    np.testing.assert_allclose(zero["raw"], plain["raw"], rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(a["class_index"], plain["class_index"])


def test_saliency_errors(simpler):
    model, _, images = simpler
    with pytest.raises(ExplainError, match=r"dilations -1 must be an integer >= 0"):
        saliency(model, images, dilations=-1)
    with pytest.raises(ExplainError, match=r"smooth_noise -0.1"):
        saliency(model, images, smooth_samples=2, smooth_noise=-0.1)
    with pytest.raises(ExplainError, match=r"class_index 5 is out of range"):
        saliency(model, images, class_index=5)
    with pytest.raises(ExplainError, match=r"rank 4"):
        saliency(model, images[0, 0])


def test_resize_helpers():
    maps = np.array([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]]], np.float32)
    norm = normalize_tf(maps).numpy()
    np.testing.assert_allclose(norm[0], (maps[0] - 1) / (8 + 1e-7), rtol=1e-6)
    np.testing.assert_array_equal(norm[1], 0.0)
    # Half-pixel centres: the 2×2 → 4×4 upsampling keeps the corner values, interpolates at 1/4, 3/4.
    up = upsample(maps[:1], (4, 4)).numpy()[0]
    np.testing.assert_allclose(up[0], [1.0, 1.5, 2.5, 3.0], rtol=1e-6)
    # Corner-aligned (tf-keras-vis / scipy.ndimage.zoom order 1): 2×2 → 3×3 has the mean at the centre.
    up = upsample(maps[:1], (3, 3), align_corners=True).numpy()[0]
    np.testing.assert_allclose(up, [[1, 2, 3], [3, 4.5, 6], [5, 7, 9]], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Occlusion


def test_patch_geometry_covers_the_border():
    assert patch_side(10, 224) == 10 and patch_side(50, 96) == 21 and patch_side(10, 96) == 4
    assert patch_side(100, 32) == 14 and patch_side(1, 32) == 1 and patch_side(500, 96) == 96
    np.testing.assert_array_equal(patch_positions(96, 21, 10), [0, 10, 20, 30, 40, 50, 60, 70, 75])
    np.testing.assert_array_equal(patch_positions(10, 4, 2), [0, 2, 4, 6])   # already flush
    np.testing.assert_array_equal(patch_positions(10, 10, 5), [0])
    np.testing.assert_array_equal(patch_positions(7, 1, 3), [0, 3, 6])
    for length, side, stride in [(96, 21, 10), (97, 4, 2), (13, 5, 5), (13, 5, 4), (50, 3, 1)]:
        pos = patch_positions(length, side, stride)
        covered = np.zeros(length, bool)
        for p in pos:
            covered[p:p + side] = True
        assert covered.all() and pos[-1] + side == length and np.all(np.diff(pos) <= stride)


def test_occlusion_hand_computed_quadrants():
    """4×4 white image, patch 2 stride 2 (4 disjoint patches), p(0) = mean of channel 0 in the top-left 2×2."""
    backend = RegionBackend(4, (slice(0, 2), slice(0, 2)))
    x = np.ones((1, 4, 4, 3), np.float32)
    out = occlusion(backend, x, class_index=0, patch_size_at_224=112, batch_size=3)
    assert int(out["patch_size"]) == 2 and int(out["stride"]) == 1  # default stride = side // 2
    backend.sizes.clear()
    out = occlusion(backend, x, class_index=0, patch_size_at_224=112, stride=2, batch_size=3)
    expected = np.zeros((4, 4))
    expected[:2, :2] = 0.5  # p = 1, grey patch over the region: p_j = 0.5
    np.testing.assert_allclose(out["raw"][0], expected, atol=1e-7)
    np.testing.assert_allclose(out["heatmap"][0], expected / (0.5 + 1e-7), atol=1e-6)
    # eq. 1 literally: J = 4, Σ_j p_j V_j = 3·1 + 0.5 − (p of the patch covering the pixel).
    eq1 = 1 - (3.5 - np.where(expected > 0, 0.5, 1.0)) / 4
    np.testing.assert_allclose(out["eq1"][0], eq1, atol=1e-7)
    assert backend.sizes == [1, 3, 1]  # the original image, then 4 occluded images in batches of 3


def test_occlusion_with_a_patch_equal_to_the_image_gives_the_probability_drop(simpler):
    model, view, images = simpler
    backend = KerasBackend(view)
    out = occlusion(backend, images, class_index=[0, 2], patch_size_at_224=224)
    assert int(out["patch_size"]) == SIZE and out["occluded_probabilities"].shape == (2, 1)
    probs = model(images).numpy()
    grey = model(np.full((1, SIZE, SIZE, 3), 0.5, np.float32)).numpy()[0]
    drop = probs[[0, 1], [0, 2]] - grey[[0, 2]]
    np.testing.assert_allclose(out["raw"], np.broadcast_to(drop[:, None, None], (2, SIZE, SIZE)), atol=1e-6)
    assert np.abs(drop).max() > 1e-3
    np.testing.assert_array_equal(out["eq1"], 1.0)  # eq. 1 as printed: V = 0 everywhere ⇒ H = 1


def test_batched_occlusion_equals_the_one_at_a_time_loop(simpler):
    model, view, images = simpler
    backend = KerasBackend(view)
    out = occlusion(backend, images, class_index=None, patch_size_at_224=50, batch_size=32)
    side, stride = int(out["patch_size"]), int(out["stride"])
    assert (side, stride) == (21, 10)
    # The loop: one occluded image per forward pass, the formula evaluated pixel by pixel.
    for i in range(len(images)):
        p_all = backend.predict(images[i:i + 1])[0]
        y = int(np.argmax(p_all))
        assert y == out["class_index"][i]
        total = np.zeros((SIZE, SIZE))
        count = np.zeros((SIZE, SIZE))
        literal = np.zeros((SIZE, SIZE))
        positions = [(r, c) for r in patch_positions(SIZE, side, stride) for c in patch_positions(SIZE, side, stride)]
        for j, (r, c) in enumerate(positions):
            occluded = images[i].copy()
            occluded[r:r + side, c:c + side] = 0.5
            p_j = float(backend.predict(occluded[None])[0, y])
            assert abs(p_j - out["occluded_probabilities"][i, j]) <= 1e-6
            under = np.zeros((SIZE, SIZE), bool)
            under[r:r + side, c:c + side] = True
            total += (p_all[y] - p_j) * under
            count += under
            literal += p_j * ~under
        np.testing.assert_allclose(out["raw"][i], total / count, rtol=0, atol=1e-6)
        np.testing.assert_allclose(out["eq1"][i], 1 - literal / len(positions), rtol=0, atol=1e-6)
    # Another batch size, another stride: still the same as the loop's building blocks.
    small = occlusion(backend, images, class_index=None, patch_size_at_224=50, batch_size=5)
    np.testing.assert_allclose(small["raw"], out["raw"], rtol=0, atol=1e-6)


def test_occlusion_batches_are_bounded_and_cancellable():
    backend = RegionBackend(32, (slice(4, 12), slice(20, 30)))
    x = smooth_images(3, 1, size=32)
    out = occlusion(backend, x, class_index=1, patch_size_at_224=50, stride=3, batch_size=10)
    j = len(patch_positions(32, 7, 3)) ** 2
    assert out["occluded_probabilities"].shape == (3, j)
    assert max(backend.sizes) <= 10 and sum(backend.sizes) == 3 + 3 * j
    # The occluded images that miss the region leave p unchanged: zero drop far from the region.
    np.testing.assert_allclose(out["raw"][:, 24:, :12], 0.0, atol=1e-12)
    assert np.abs(out["raw"]).max() > 0.01
    calls = []

    def should_continue():
        calls.append(1)
        return len(calls) < 4

    backend.sizes.clear()
    with pytest.raises(Cancelled):
        occlusion(backend, x, patch_size_at_224=50, stride=3, batch_size=10, should_continue=should_continue)
    assert len(backend.sizes) == 3 and len(calls) == 4  # checked before every batch, stopped before the 4th


def test_occlusion_errors():
    backend = RegionBackend(8, (slice(0, 2), slice(0, 2)))
    x = np.ones((1, 8, 8, 3), np.float32)
    with pytest.raises(ExplainError, match=r"patch_size_at_224 0 must be a positive number"):
        occlusion(backend, x, patch_size_at_224=0)
    with pytest.raises(ExplainError, match=r"stride 0 must be an integer >= 1"):
        occlusion(backend, x, stride=0)
    with pytest.raises(ExplainError, match=r"stride 5 is larger than the patch side 2"):
        occlusion(backend, x, patch_size_at_224=56, stride=5)
    np.testing.assert_array_equal(occlusion(backend, x, 0, patch_size_at_224=56, stride=2.0)["raw"],
                                  occlusion(backend, x, 0, patch_size_at_224=56, stride=2)["raw"])
    with pytest.raises(ExplainError, match=r"batch_size -1 must be an integer >= 1"):
        occlusion(backend, x, batch_size=-1)
    with pytest.raises(ExplainError, match=r"accepts \(N, 8, 8, 3\)"):
        occlusion(backend, np.ones((1, 9, 8, 3), np.float32))
    with pytest.raises(ExplainError, match=r"in \[0, 1\]"):
        occlusion(backend, x * 2)
    with pytest.raises(ExplainError, match=r"class_index 2 is out of range .* 2 classes"):
        occlusion(backend, x, class_index=2)
    with pytest.raises(ExplainError, match=r"dtype int64"):
        occlusion(backend, x.astype(np.int64))
    assert registry.get("occlusion").params["patch_size_at_224"] == 10
    assert registry.get("occlusion").params["stride"] is None
