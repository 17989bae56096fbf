"""Issue 13's new methods against their definitions, on tiny hand-built models.

HiResCAM, XGrad-CAM, Eigen-CAM, Ablation-CAM, Integrated Gradients, Guided Backpropagation /
Guided Grad-CAM and RISE; every expected value is computed here by hand (numpy) from the model's
weights, not by the project's code. The models are a few units wide so the whole file runs in
seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain import cam, guided, registry  # noqa: E402
from explain import integrated_gradients as ig  # noqa: E402
from explain.ablationcam import ablationcam  # noqa: E402
from explain.backend import Backend, Cancelled, KerasBackend  # noqa: E402
from explain.rise import MASK_BLOCK, rise, rise_masks  # noqa: E402
from explain.view import ExplainError, ModelView  # noqa: E402

L = keras.layers


def conv_model(size: int, channels: int, head: str = "gap", seed: int = 0, classes: int = 3,
               hidden: int = 0) -> keras.Model:
    """Input → [1×1 conv 'hidden' (relu)] → 1×1 conv 'conv' (relu) → GAP or Flatten → Dense (softmax)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = inp
    if hidden:
        x = L.Conv2D(hidden, 1, activation="relu", name="hidden")(x)
    x = L.Conv2D(channels, 1, activation="relu", name="conv")(x)
    x = L.GlobalAveragePooling2D()(x) if head == "gap" else L.Flatten()(x)
    out = L.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.weights:
            k, b = layer.get_weights()
            layer.set_weights([rng.normal(0, 1, k.shape).astype(np.float32), rng.normal(0, 0.3, b.shape).astype(np.float32)])
    return model


def weights(model: keras.Model, name: str) -> tuple[np.ndarray, np.ndarray]:
    k, b = model.get_layer(name).get_weights()
    return k.astype(np.float64), b.astype(np.float64)


def conv1x1(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("nhwc,cd->nhwd", x, k[0, 0]) + b


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def images(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- CAMs
def test_hirescam_equals_cam_for_a_gap_dense_head():
    model = conv_model(6, 4, "gap")
    x = images(2, 6)
    a = relu(conv1x1(x.astype(np.float64), *weights(model, "conv")))
    w, _ = weights(model, "predictions")
    c = np.array([0, 2])
    cam_map = np.einsum("nhwk,nk->nhw", a, w[:, c].T)                      # CAM: Σ_k W_kc A_k
    out = cam.hirescam(model, x, class_index=c, relu=False)
    np.testing.assert_allclose(out["raw"] * 36, cam_map, rtol=1e-4, atol=1e-5)  # g = W_kc/(h·w)
    np.testing.assert_allclose(cam.hirescam(model, x, class_index=c)["raw"], relu(cam_map) / 36, rtol=1e-4, atol=1e-6)
    # For a GAP head Grad-CAM has the same raw map (α_k = W_kc/(h·w)).
    np.testing.assert_allclose(cam.gradcam(model, x, class_index=c, relu=False)["raw"], out["raw"], rtol=1e-4, atol=1e-6)


def test_hirescam_is_the_gradient_times_activation_summed_per_channel():
    model = conv_model(3, 2, "flatten")  # a spatially varying gradient, unlike the GAP head
    x = images(2, 3)
    a = relu(conv1x1(x.astype(np.float64), *weights(model, "conv")))
    w, _ = weights(model, "predictions")
    c = np.array([1, 0])
    g = w[:, c].T.reshape(2, 3, 3, 2)                                       # ∂y_c/∂A for Flatten→Dense
    out = cam.hirescam(model, x, class_index=c, relu=False)
    np.testing.assert_allclose(out["raw"], (g * a).sum(-1), rtol=1e-4, atol=1e-6)
    grad = cam.gradcam(model, x, class_index=c, relu=False)
    assert not np.allclose(grad["raw"], out["raw"], atol=1e-3)              # Grad-CAM averages g first
    np.testing.assert_allclose(out["weights"], g, rtol=1e-4, atol=1e-6)


def test_xgradcam_weights_by_hand_on_a_3x3_map():
    model = conv_model(3, 2, "flatten", seed=3)
    x = images(1, 3, seed=4)
    a = relu(conv1x1(x.astype(np.float64), *weights(model, "conv")))[0]    # (3, 3, 2)
    w, _ = weights(model, "predictions")
    c = 1
    g = w[:, c].reshape(3, 3, 2)
    alpha = [sum(a[i, j, k] / (a[:, :, k].sum() + 1e-7) * g[i, j, k] for i in range(3) for j in range(3)) for k in range(2)]
    expected = sum(alpha[k] * a[:, :, k] for k in range(2))
    out = cam.xgradcam(model, x, class_index=c, relu=False)
    np.testing.assert_allclose(out["weights"].reshape(2), alpha, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["raw"][0], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cam.xgradcam(model, x, class_index=c)["raw"][0], relu(expected), rtol=1e-4, atol=1e-6)


def test_eigencam_is_the_first_principal_component_projection():
    model = conv_model(5, 4, "gap", seed=5)
    x = images(3, 5, seed=6)
    a = relu(conv1x1(x.astype(np.float64), *weights(model, "conv")))
    out = cam.eigencam(model, x, relu=False)
    for n in range(3):
        flat = a[n].reshape(25, 4)
        centred = flat - flat.mean(axis=0)
        v1 = np.linalg.svd(centred)[2][0]
        proj = centred @ v1
        if proj @ flat.sum(axis=1) < 0:                                   # the project's sign convention
            proj = -proj
        np.testing.assert_allclose(out["raw"][n].reshape(-1), proj, rtol=1e-3, atol=1e-4)
    assert np.all(cam.eigencam(model, x)["raw"] >= 0)
    # class-agnostic: the class index changes nothing but the echo
    other = cam.eigencam(model, x, class_index=2, relu=False)
    np.testing.assert_allclose(other["raw"], out["raw"], atol=1e-6)
    assert other["class_index"].tolist() == [2, 2, 2]


# ---------------------------------------------------------------------------------------------- Ablation-CAM
def test_ablationcam_by_hand_on_a_two_channel_model():
    model = conv_model(4, 2, "gap", seed=7, classes=2)
    x = images(2, 4, seed=8)
    a = relu(conv1x1(x.astype(np.float64), *weights(model, "conv")))
    w, b = weights(model, "predictions")
    logits = a.mean(axis=(1, 2)) @ w + b
    c = np.array([0, 1])
    y = logits[[0, 1], c]
    expected_w = np.empty((2, 2))
    for k in range(2):
        ablated = a.copy()
        ablated[..., k] = 0
        yk = (ablated.mean(axis=(1, 2)) @ w + b)[[0, 1], c]
        expected_w[:, k] = (y - yk) / np.abs(y)
    out = ablationcam(KerasBackend(ModelView(model)), x, class_index=c, batch_size=3, relu=False)
    np.testing.assert_allclose(out["weights"], expected_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["raw"], np.einsum("nhwk,nk->nhw", a, expected_w), rtol=1e-4, atol=1e-6)
    # GAP head: y_c − y_c^k = mean(A_k)·W_kc
    np.testing.assert_allclose(out["weights"] * np.abs(y)[:, None], a.mean(axis=(1, 2)) * w[:, c].T, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------- IG
@pytest.fixture(scope="module")
def ig_model():
    """Two 3×3 ReLU convolutions and a GAP→Dense head (a path with few kinks, as in real CNNs)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
    out = L.Dense(3, activation="softmax", name="predictions")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.weights:
            k, b = layer.get_weights()
            layer.set_weights([k * 2, rng.normal(0, 0.2, b.shape).astype(np.float32)])
    return model


def test_integrated_gradients_completeness_at_64_steps(ig_model):
    x = images(4, 8, seed=10)
    out = ig.integrated_gradients(ig_model, x, steps=64, baseline="black")
    probs = ig_model(x).numpy()
    np.testing.assert_array_equal(out["class_index"], probs.argmax(1))
    logits = out["logits"][np.arange(4), out["class_index"]]
    np.testing.assert_allclose(out["instance_output"], logits, rtol=1e-6)
    zero_logits = ModelView(ig_model).run(tf.zeros((1, 8, 8, 3))).logits.numpy()[0]
    np.testing.assert_allclose(out["baseline_output"], zero_logits[out["class_index"]], rtol=1e-5)
    delta = out["instance_output"] - out["baseline_output"]
    gap = np.abs(out["attributions"].sum(axis=(1, 2, 3)) - delta) / np.abs(delta)
    assert np.all(gap < 0.01), gap
    np.testing.assert_allclose(out["approximation_error"], gap, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(out["raw"], np.abs(out["attributions"].sum(-1)), rtol=1e-6)
    # completeness holds for the other baselines too (the uniform one, closer to x, has a smaller
    # f(x) − f(x') and needs more steps for 1 %: 1.4 % at 64 steps on one of these images)
    for baseline, steps in (("blurred", 64), ("uniform", 256)):
        other = ig.integrated_gradients(ig_model, x, steps=steps, baseline=baseline)
        assert np.all(other["approximation_error"] < 0.01), (baseline, other["approximation_error"])


def test_integrated_gradients_is_the_trapezoid_sum_and_independent_of_the_chunking(ig_model):
    x = images(2, 8, seed=11)
    steps = 5
    out = ig.integrated_gradients(ig_model, x, class_index=1, steps=steps)
    view = ModelView(ig_model)
    total = np.zeros_like(x, np.float64)
    for s in range(steps + 1):  # the plain loop, one interpolation point at a time
        xs = tf.constant(x * (s / steps))
        with tf.GradientTape() as tape:
            tape.watch(xs)
            y = view.run(xs).logits[:, 1]
        w = (0.5 if s in (0, steps) else 1.0) / steps
        total += w * tape.gradient(y, xs).numpy()
    np.testing.assert_allclose(out["attributions"], x * total, rtol=1e-4, atol=1e-6)
    single = ig.integrated_gradients(ig_model, x[1:], class_index=1, steps=steps)
    np.testing.assert_allclose(single["attributions"][0], out["attributions"][1], rtol=1e-4, atol=1e-6)
    coarse = ig.integrated_gradients(ig_model, x, class_index=1, steps=2)["approximation_error"]
    fine = ig.integrated_gradients(ig_model, x, class_index=1, steps=256)["approximation_error"]
    assert np.all(fine < coarse) and np.all(fine < 0.01)


def test_integrated_gradients_baselines():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    x = images(2, 12, seed=12)
    blurred = ig.baseline_images(tf.constant(x), "blurred").numpy()
    sigma = max(1.0, ig.BLUR_SIGMA_AT_224 * 12 / 224)
    for n in range(2):
        want = scipy_ndimage.gaussian_filter(x[n].astype(np.float64), sigma=(sigma, sigma, 0), mode="mirror", truncate=3.0)
        np.testing.assert_allclose(blurred[n], want, atol=1e-5)
    u0 = ig.baseline_images(tf.constant(x), "uniform", seed=0).numpy()
    np.testing.assert_array_equal(u0[0], u0[1])  # one noise image shared by the batch
    np.testing.assert_array_equal(u0[:1], ig.baseline_images(tf.constant(x[:1]), "uniform", seed=0).numpy())
    assert not np.allclose(u0, ig.baseline_images(tf.constant(x), "uniform", seed=1).numpy())
    assert 0.0 <= u0.min() and u0.max() < 1.0 and abs(u0.mean() - 0.5) < 0.1
    np.testing.assert_array_equal(ig.baseline_images(tf.constant(x), "black").numpy(), 0.0)


def test_integrated_gradients_errors(ig_model):
    x = images(1, 8)
    for kwargs, text in (({"steps": 0}, "steps 0 is out of range; accepted: 1..1024"),
                         ({"steps": 5000}, "steps 5000 is out of range; accepted: 1..1024"),
                         ({"baseline": "pink"}, "baseline 'pink' is not supported; accepted: ['black', 'blurred', 'uniform']"),
                         ({"seed": -1}, "seed -1 is out of range")):
        with pytest.raises(ExplainError, match=text.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            ig.integrated_gradients(ig_model, x, **kwargs)
    # inside the graph (a SavedModel signature input) the same message comes from an assertion
    fn = tf.function(lambda s: ig.integrated_gradients_single_pass(ModelView(ig_model), tf.constant(x), -1, s),
                     input_signature=[tf.TensorSpec([], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="steps 0 is out of range; accepted: 1..1024"):
        fn(tf.constant(0))


# ---------------------------------------------------------------------------------------------- guided
def test_guided_backprop_passes_only_positive_gradients_through_relus():
    model = conv_model(3, 3, "flatten", seed=13, classes=2, hidden=4)
    x = images(2, 3, seed=14).astype(np.float64)
    k1, b1 = weights(model, "hidden")
    k2, b2 = weights(model, "conv")
    w, _ = weights(model, "predictions")
    z1 = conv1x1(x, k1, b1)
    z2 = conv1x1(relu(z1), k2, b2)
    c = 1
    r2 = np.broadcast_to(w[:, c].reshape(1, 3, 3, 3), z2.shape)               # ∂y_c/∂(relu z2)
    guided_r1 = np.einsum("nhwd,cd->nhwc", relu(r2) * (z2 > 0), k2[0, 0])     # guided rule at ReLU 2
    guided_x = np.einsum("nhwd,cd->nhwc", relu(guided_r1) * (z1 > 0), k1[0, 0])
    plain_r1 = np.einsum("nhwd,cd->nhwc", r2 * (z2 > 0), k2[0, 0])
    plain_x = np.einsum("nhwd,cd->nhwc", plain_r1 * (z1 > 0), k1[0, 0])
    out = guided.guided_backprop(model, x.astype(np.float32), class_index=c)
    np.testing.assert_allclose(out["gradients"], guided_x, rtol=1e-4, atol=1e-6)
    assert not np.allclose(guided_x, plain_x, atol=1e-3)                      # the rule matters here
    np.testing.assert_allclose(out["raw"], np.abs(guided_x).max(-1), rtol=1e-4, atol=1e-6)
    gg = guided.guided_gradcam(model, x.astype(np.float32), class_index=c)
    cam_up = cam.gradcam(model, x.astype(np.float32), class_index=c)["heatmap_upsampled"]
    np.testing.assert_allclose(gg["gradcam"], cam_up, atol=1e-6)
    np.testing.assert_allclose(gg["gradients"], guided_x * cam_up[..., None], rtol=1e-4, atol=1e-6)


def test_guided_methods_refuse_non_relu_models():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(2, 1, activation="swish", name="conv_swish")(inp)
    model = keras.Model(inp, L.Dense(2, activation="softmax")(L.GlobalAveragePooling2D()(x)))
    reason = registry.unavailable_reason(registry.get("guided_backprop"), ModelView(model))
    assert reason is not None and "conv_swish" in reason and "swish" in reason and "accepted: relu" in reason
    with pytest.raises(ExplainError, match="conv_swish"):
        guided.guided_gradcam(model, images(1, 4))
    assert registry.unavailable_reason(registry.get("guided_backprop"), ModelView(conv_model(3, 2))) is None


# ---------------------------------------------------------------------------------------------- RISE
class CountingBackend(KerasBackend):
    """The real in-process backend, recording the batch size of every call."""

    def __init__(self, view: ModelView) -> None:
        super().__init__(view)
        self.sizes: list[int] = []

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.sizes.append(len(images))
        return super().predict(images)


def test_rise_equals_a_plain_loop_over_the_same_seeded_masks():
    model = conv_model(10, 3, "flatten", seed=15)
    backend = CountingBackend(ModelView(model))
    x = images(2, 10, seed=16)
    out = rise(backend, x, class_index=[0, 2], n_masks=13, grid=3, p1=0.4, seed=5, batch_size=6)
    assert max(backend.sizes) <= 6 and sum(backend.sizes) == 2 + 2 * 13
    expected = np.zeros((2, 10, 10))
    for n, c in enumerate([0, 2]):
        for i in range(13):
            m = rise_masks([i], 5, 3, 0.4, 10, 10)[0]
            expected[n] += backend.predict(x[n:n + 1] * m[None, ..., None])[0, c] * m
    expected /= 13 * 0.4
    np.testing.assert_allclose(out["raw"], expected, rtol=1e-5, atol=1e-6)
    again = rise(KerasBackend(ModelView(model)), x, class_index=[0, 2], n_masks=13, grid=3, p1=0.4, seed=5, batch_size=32)
    np.testing.assert_allclose(again["raw"], out["raw"], rtol=1e-5, atol=1e-6)


def test_rise_masks_follow_the_papers_construction():
    masks = rise_masks(np.arange(400), 0, 4, 0.5, 16, 16)
    assert masks.shape == (400, 16, 16) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.5) < 0.03
    np.testing.assert_array_equal(masks[7], rise_masks([7], 0, 4, 0.5, 16, 16)[0])
    assert not np.array_equal(masks[7], rise_masks([7], 1, 4, 0.5, 16, 16)[0])
    # cell 4 px, upsampled to 20 px: a grid of all ones stays 1, p1 = 1 keeps everything
    np.testing.assert_allclose(rise_masks([0, 1], 3, 4, 1.0, 16, 16), 1.0)


def test_rise_masks_are_the_seeded_grids_resized_bilinearly_and_cropped():
    # the documented stream: block b = i // MASK_BLOCK drawn by default_rng([seed, b]) (grids, row
    # offsets, column offsets), each grid resized by tf.image.resize and cropped; across blocks
    grid, height, width, seed = 5, 17, 23, 9
    ch, cw = -(-height // grid), -(-width // grid)
    indices = [0, MASK_BLOCK - 1, MASK_BLOCK, 2 * MASK_BLOCK + 44]
    got = rise_masks(indices, seed, grid, 0.3, height, width)
    for k, i in enumerate(indices):
        rng = np.random.default_rng([seed, i // MASK_BLOCK])
        cells = rng.random((MASK_BLOCK, grid, grid)) < 0.3
        dh = rng.integers(0, ch, MASK_BLOCK)[i % MASK_BLOCK]
        dw = rng.integers(0, cw, MASK_BLOCK)[i % MASK_BLOCK]
        up = tf.image.resize(cells[i % MASK_BLOCK, :, :, None].astype(np.float32),
                             ((grid + 1) * ch, (grid + 1) * cw), method="bilinear").numpy()[..., 0]
        np.testing.assert_allclose(got[k], up[dh:dh + height, dw:dw + width], rtol=0, atol=1e-6)
    assert np.ptp(got, axis=(1, 2)).min() > 0.5  # real masks, not constants
    np.testing.assert_array_equal(rise_masks(indices[::-1], seed, grid, 0.3, height, width), got[::-1])


def test_rise_memory_does_not_grow_with_the_number_of_masks():
    import tracemalloc

    backend = KerasBackend(ModelView(conv_model(32, 2, "flatten", seed=3)))
    x = images(2, 32, seed=4)
    peaks = {}
    for n_masks in (16, 16, 512):  # the first run traces the function
        tracemalloc.start()
        out = rise(backend, x, 0, n_masks=n_masks, grid=4, batch_size=16)
        peaks[n_masks] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert int(out["n_masks"]) == n_masks
    chunk = 16 * 32 * 32 * 3 * 4  # one chunk of masked float32 images: 196 KB
    # 32× the masks: the same peak within a few chunks (the 512 masks alone would be 2 MB)
    assert peaks[512] < peaks[16] + 3 * chunk, peaks


def test_rise_errors_and_cancellation():
    backend = KerasBackend(ModelView(conv_model(8, 2)))
    x = images(1, 8)
    for kwargs, text in (({"n_masks": 0}, r"n_masks 0 is out of range; accepted: 1\.\.100000"),
                         ({"p1": 1.5}, r"p1 1\.5 is out of range; accepted: \(0\.0, 1\.0\]"),
                         ({"grid": 9}, r"grid 9 is out of range; accepted: 1\.\.8")):
        with pytest.raises(ExplainError, match=text):
            rise(backend, x, **kwargs)
    calls = iter([True, True, False])
    with pytest.raises(Cancelled):
        rise(backend, x, n_masks=50, batch_size=4, should_continue=lambda: next(calls))


def test_ablationcam_needs_the_ablation_signature():
    from explain.backend import MethodUnavailable

    class FeaturesOnly(Backend):
        input_shape = (4, 4, 3)
        num_classes = 2

        def __init__(self, view):
            self.inner = KerasBackend(view)

        def features(self, images):
            return self.inner.features(images)

    with pytest.raises(MethodUnavailable, match="ablate_channels"):
        ablationcam(FeaturesOnly(ModelView(conv_model(4, 2, classes=2))), images(1, 4))
