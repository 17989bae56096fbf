"""Grad-CAM, Grad-CAM++, Layer-CAM and Score-CAM: values against tf-keras-vis 0.8.7 and formulas.

Models are the project's architectures at 96 px, width 0.125, untrained (equality with the reference
needs no training) with the classifier kernel scaled up so the logits are not degenerate; images are
smooth random colour fields from fixed seeds.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain import cam, registry  # noqa: E402
from explain.backend import Backend, Cancelled, KerasBackend  # noqa: E402
from explain.reference import reference_cam  # noqa: E402
from explain.scorecam import scorecam  # noqa: E402
from explain.view import ExplainError, ModelView  # noqa: E402
from models.architectures import TARGET_LAYERS, build_classifier  # noqa: E402

SIZE = 96
ARCHS = ("vgg11", "resnet18", "simple", "simpler")
SEEDS = {"vgg11": 3, "resnet18": 11, "simple": 5, "simpler": 7}


def smooth_images(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """Smooth random colour fields in [0, 1] (bilinear upsampling of 6×6 noise)."""
    rng = np.random.default_rng(seed)
    low = rng.random((n, 6, 6, 3)).astype(np.float32)
    return np.clip(tf.image.resize(low, (size, size)).numpy(), 0.0, 1.0).astype(np.float32)


def make_model(arch: str, seed: int, num_classes: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = build_classifier(arch, SIZE, num_classes, 0.125)
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    rng = np.random.default_rng(seed)
    # Untrained heads give near-uniform softmax outputs; scale the kernel for logits a few units apart.
    dense.set_weights([kernel * 10.0, rng.normal(0.0, 0.5, bias.shape).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def zoo():
    out = {}
    for arch in ARCHS:
        model = make_model(arch, SEEDS[arch])
        images = smooth_images(3, SEEDS[arch] + 100)
        out[arch] = (model, ModelView(model), images)
    return out


class EagerBackend(Backend):
    """A backend running the view eagerly (no tracing: fast for tiny models in tests)."""

    def __init__(self, view: ModelView):
        self.view = view
        self.input_shape = view.input_shape
        self.num_classes = view.num_classes

    def predict(self, images):
        return self.view.run(tf.constant(images)).probabilities.numpy()

    def features(self, images):
        r = self.view.run(tf.constant(images))
        return r.activations.numpy(), r.logits.numpy()


class CountingBackend(Backend):
    """Wraps a backend and records the number of images of every call."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.input_shape = inner.input_shape
        self.num_classes = inner.num_classes
        self.predict_sizes: list[int] = []
        self.feature_sizes: list[int] = []

    def predict(self, images):
        self.predict_sizes.append(len(images))
        return self.inner.predict(images)

    def features(self, images):
        self.feature_sizes.append(len(images))
        return self.inner.features(images)


def assert_close_maps(ours: np.ndarray, ref: np.ndarray, tol: float = 1e-4) -> None:
    """Raw maps within ``tol`` relative to the map's scale, and normalised maps within ``tol``."""
    assert ours.shape == ref.shape
    scale = max(float(np.abs(ref).max()), 1e-12)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * scale)
    norm = lambda m: (m - m.min(axis=(1, 2), keepdims=True)) / (  # noqa: E731
        m.max(axis=(1, 2), keepdims=True) - m.min(axis=(1, 2), keepdims=True) + 1e-7)
    np.testing.assert_allclose(norm(ours), norm(ref), rtol=0, atol=tol)


def assert_not_degenerate(ref: np.ndarray) -> None:
    """At least one image has a map with spatial structure (not constant, not all zero)."""
    spread = ref.max(axis=(1, 2)) - ref.min(axis=(1, 2))
    assert spread.max() > 0, "reference map is constant: the test would compare nothing"


# ------------------------------------------------------------------------------------------------
# Equality with tf-keras-vis at target-layer resolution


def test_logits_are_not_degenerate(zoo):
    for arch, (model, view, images) in zoo.items():
        logits = view.run(tf.constant(images)).logits.numpy()
        assert logits.std() > 0.3, (arch, logits)
        assert np.ptp(logits, axis=0).max() > 1e-3, (arch, "logits identical across images")


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_equals_tf_keras_vis(zoo, arch):
    model, view, images = zoo[arch]
    classes = np.array([0, 1, 2], np.int32)
    for relu in (True, False):
        ours = cam.GRADCAM.single_pass(view, images, classes, relu=relu)
        ref = reference_cam("gradcam", model, images, classes, TARGET_LAYERS[arch], relu=relu)
        assert_not_degenerate(ref)
        assert_close_maps(ours["raw"].numpy(), ref)
    # The predicted class (-1) resolves like the reference's argmax.
    ours = cam.GRADCAM.single_pass(view, images, -1)
    ref = reference_cam("gradcam", model, images, -1, TARGET_LAYERS[arch])
    np.testing.assert_array_equal(ours["class_index"].numpy(), np.argmax(model(images).numpy(), -1))
    assert_close_maps(ours["raw"].numpy(), ref)


@pytest.mark.parametrize("method", ["gradcam_plus_plus", "layercam"])
@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_variants_equal_tf_keras_vis(zoo, method, arch):
    model, view, images = zoo[arch]
    classes = np.array([2, 0, 1], np.int32)
    ours = cam.METHODS[method].single_pass(view, images, classes)
    ref = reference_cam(method, model, images, classes, TARGET_LAYERS[arch])
    assert_not_degenerate(ref)
    assert_close_maps(ours["raw"].numpy(), ref)


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_scorecam_equals_tf_keras_vis_and_is_batch_size_invariant(zoo, arch):
    model, view, images = zoo[arch]
    images = images[:2]
    classes = np.array([1, 2])
    k = view.target_shape[-1]
    counting = CountingBackend(EagerBackend(view))
    ours = scorecam(counting, images, classes, batch_size=16)
    ref = reference_cam("scorecam", model, images, classes, TARGET_LAYERS[arch])
    assert_not_degenerate(ref)
    assert_close_maps(ours["raw"], ref)
    # Bounded memory: every backend call sees at most batch_size images, N·K in total.
    assert max(counting.predict_sizes) <= 16 and max(counting.feature_sizes) <= 16
    assert sum(counting.predict_sizes) == 2 * k
    assert len(counting.predict_sizes) == -(-2 * k // 16)
    # The batch size does not change the result (7 does not divide K, so batches straddle images).
    other = CountingBackend(EagerBackend(view))
    again = scorecam(other, images, classes, batch_size=7)
    assert max(other.predict_sizes) <= 7
    np.testing.assert_allclose(again["weights"], ours["weights"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(again["raw"], ours["raw"], rtol=0, atol=1e-6 * np.abs(ours["raw"]).max())
    # Weights are the masked-image probabilities of the class.
    assert np.all((ours["weights"] >= 0) & (ours["weights"] <= 1))
    assert ours["heatmap"].shape == (2, SIZE, SIZE) and ours["heatmap_lowres"].shape == (2, *view.target_shape[:2])


def test_scorecam_on_compiled_backend_and_cancel(zoo):
    model, view, images = zoo["simpler"]
    backend = KerasBackend(view)
    ours = scorecam(backend, images, [0, 1, 2], batch_size=8)
    ref = reference_cam("scorecam", model, images, [0, 1, 2], TARGET_LAYERS["simpler"])
    assert_close_maps(ours["raw"], ref)
    calls = []

    def should_continue():
        calls.append(1)
        return len(calls) <= 2

    with pytest.raises(Cancelled):
        scorecam(backend, images, None, batch_size=8, should_continue=should_continue)
    assert len(calls) == 3


# ------------------------------------------------------------------------------------------------
# Formulas


@pytest.mark.parametrize("seed", [0, 1])
def test_gap_dense_head_precam_sums_to_logit_minus_bias(seed):
    """ResNet18 head: y = Σ_k w_k mean_ij A_ijk + b  ⇒  α_k = w_k/(hw) and Σ_ij Σ_k α_k A_ijk = y_c − b_c."""
    model = make_model("resnet18", 20 + seed)
    images = smooth_images(4, seed)
    out = cam.GRADCAM.single_pass(ModelView(model), images, np.array([0, 1, 2, -1], np.int32), relu=False)
    out = {k: v.numpy() for k, v in out.items()}
    bias = model.get_layer("predictions").bias.numpy()
    c = out["class_index"]
    expected = out["logits"][np.arange(4), c] - bias[c]
    total = out["raw"].sum(axis=(1, 2))
    np.testing.assert_allclose(total, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    assert np.abs(expected).min() > 1e-3  # a non-trivial identity
    # α_k = w_k / (h·w) exactly.
    h, w, _ = ModelView(model).target_shape
    kernel = model.get_layer("predictions").kernel.numpy()
    np.testing.assert_allclose(out["weights"][:, 0, 0, :], kernel[:, c].T / (h * w), rtol=1e-4, atol=1e-8)


def test_heatmap_outputs_are_normalised_and_upsampled(zoo):
    model, view, images = zoo["vgg11"]
    out = cam.gradcam(model, images, [0, 1, 2])
    raw, heat, up = out["raw"], out["heatmap"], out["heatmap_upsampled"]
    lo, hi = raw.min(axis=(1, 2), keepdims=True), raw.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(heat, (raw - lo) / (hi - lo + 1e-7), atol=1e-6)
    expected_up = tf.image.resize(heat[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(up, np.clip(expected_up, 0, 1), atol=1e-6)
    assert up.shape == (3, SIZE, SIZE) and up.min() >= 0 and up.max() <= 1
    np.testing.assert_allclose(out["probabilities"], model(images).numpy(), atol=1e-5)


def test_eager_entry_point_compiles_once_and_matches_graph(zoo):
    model, view, images = zoo["simpler"]
    a = cam.gradcam(model, images, [0, 1, 2])
    b = cam.gradcam(model, images[1:2], 1)
    c = cam.gradcam(model, (images[:2] * 255).astype(np.uint8), -1)
    fn = cam.get_view(model).__dict__["_explain_compiled"][("gradcam", True)]
    assert fn.experimental_get_tracing_count() == 1
    eager = cam.GRADCAM.single_pass(view, images, np.array([0, 1, 2], np.int32))
    np.testing.assert_allclose(a["raw"], eager["raw"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b["raw"][0], a["raw"][1], rtol=1e-5, atol=1e-7)
    assert c["heatmap"].shape == (2, *view.target_shape[:2])
    # Passing the view or the model hits the same cache entry.
    assert cam.get_view(model) is cam.get_view(model)


def test_registered_single_pass_methods_run_in_a_graph(zoo):
    model, view, images = zoo["simpler"]
    for name in ("gradcam", "gradcam_plus_plus", "layercam"):
        method = registry.get(name)
        assert method.kind == "single_pass" and method.applies_to == "classifier"
        spec = method.signature_inputs["class_index"]()
        assert spec.dtype == tf.int32 and spec.shape.as_list() == [None]
        fn = tf.function(lambda x, c: method.fn(view, x, class_index=c),
                         input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3]), spec])
        out = fn(tf.constant(images), tf.constant([-1, 0, 2]))
        eager = method.fn(view, images, class_index=tf.constant([-1, 0, 2]))
        np.testing.assert_allclose(out["heatmap"].numpy(), eager["heatmap"].numpy(), atol=1e-4)
        assert set(out) >= {"heatmap", "heatmap_upsampled", "raw", "logits", "probabilities", "class_index"}


# ------------------------------------------------------------------------------------------------
# Errors name the bad value and the accepted ones


def test_errors(zoo):
    model, view, images = zoo["simpler"]
    with pytest.raises(ExplainError, match=r"rank 4"):
        cam.gradcam(model, images[0])
    with pytest.raises(ExplainError, match=r"dtype int32 .*accepted: uint8"):
        cam.gradcam(model, images.astype(np.int32))
    with pytest.raises(ExplainError, match=r"accepts \(N, 96, 96, 3\)"):
        cam.gradcam(model, images[:, :64])
    with pytest.raises(ExplainError, match=r"class_index 3 is out of range .* 3 classes; accepted: -1 \(predicted\) or 0..2"):
        cam.gradcam_plus_plus(model, images, 3)
    with pytest.raises(ExplainError, match=r"class_index -2 is out of range"):
        cam.layercam(model, images, [0, -2, 1])
    with pytest.raises(ExplainError, match=r"must be an integer"):
        cam.gradcam(model, images, 1.5)
    with pytest.raises(ExplainError, match=r"2 entries for 3 images"):
        cam.gradcam(model, images, [0, 1])
    with pytest.raises(ExplainError, match=r"unknown layer 'nope' .*accepted: \[.*'conv3'"):
        cam.gradcam(model, images, target_layer="nope")
    with pytest.raises(ExplainError, match=r"'fc1' has a 2-D output"):
        cam.gradcam(model, images, target_layer="fc1")
    with pytest.raises(KeyError, match=r"unknown method 'gradcam_minus'; accepted: \[.*'gradcam'"):
        registry.get("gradcam_minus")
    inputs = keras.Input((8, 8, 3))
    flat_model = keras.Model(inputs, keras.layers.Dense(2, name="predictions")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ExplainError, match=r"no layer with a 4-D output"):
        cam.gradcam(flat_model, np.zeros((1, 8, 8, 3), np.float32))
    backend = EagerBackend(view)
    with pytest.raises(ExplainError, match=r"batch_size 0 must be an integer >= 1"):
        scorecam(backend, images, batch_size=0)
    with pytest.raises(ExplainError, match=r"mask_resize 'cubic' .*accepted"):
        scorecam(backend, images, mask_resize="cubic")
    with pytest.raises(ExplainError, match=r"class_index 9 is out of range"):
        scorecam(backend, images, 9)


def test_other_target_layer(zoo):
    model, view, images = zoo["vgg11"]
    out = cam.gradcam(model, images, [0, 1, 2], target_layer="block4_conv2")
    ref = reference_cam("gradcam", model, images, [0, 1, 2], "block4_conv2")
    assert out["raw"].shape == ref.shape == (3, 12, 12)
    assert_close_maps(out["raw"], ref)


# ------------------------------------------------------------------------------------------------
# On the synthetic cities with trained models: Grad-CAM looks at the planted objects


def _trained(request):
    try:
        classifiers = request.getfixturevalue("tiny_classifiers")
        _, _, test = request.getfixturevalue("tiny_cities")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py does not provide tiny_classifiers / tiny_cities yet")
    return classifiers, test


def planted_masks(data) -> np.ndarray:
    """``(N, H, W)`` True where the pixel's object is planted in (discriminative for) the image's class."""
    masks = np.zeros(data.label_maps.shape, bool)
    for i, label in enumerate(data.labels):
        names = set(data.discriminative[data.class_names[int(label)]])
        indices = [idx for idx, name in data.object_names.items() if name in names]
        masks[i] = np.isin(data.label_maps[i], indices)
    return masks


MIN_ACCURACY = 0.7


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_mass_is_on_the_planted_objects(request, arch):
    """Share of the (upsampled, normalised) Grad-CAM mass on the planted objects of the true class
    exceeds their share of the image area, on average over the test images."""
    classifiers, test = _trained(request)
    model = classifiers[arch]
    accuracy = float(np.mean(np.argmax(model.predict(test.images.astype(np.float32) / 255.0, verbose=0), -1) == test.labels))
    if accuracy < MIN_ACCURACY:
        pytest.xfail(f"{arch} reaches only {accuracy:.2f} test accuracy on the tiny cities (< {MIN_ACCURACY}): "
                     "a model that has not learned the classes cannot be expected to look at the planted objects")
    masks = planted_masks(test)
    heat = np.concatenate([
        cam.gradcam(model, test.images[s:s + 32], test.labels[s:s + 32].astype(np.int32))["heatmap_upsampled"]
        for s in range(0, len(test.images), 32)
    ])
    total = heat.sum(axis=(1, 2))
    keep = (total > 0) & masks.any(axis=(1, 2))
    mass_share = (heat * masks).sum(axis=(1, 2))[keep] / total[keep]
    area_share = masks.mean(axis=(1, 2))[keep]
    assert keep.sum() >= max(4, len(keep) // 2)
    assert mass_share.mean() > area_share.mean(), (arch, mass_share.mean(), area_share.mean())
