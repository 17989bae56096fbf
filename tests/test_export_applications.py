"""Any Keras image model exports correctly: a matrix over ``keras.applications`` families.

Each family is built with ``weights=None`` at a small input (nothing is downloaded), its
BatchNormalization statistics are set from one batch (an untrained network's responses otherwise
shrink to ~1e-11 and every probability is 1/C, which would make the comparisons vacuous), and it
is exported with its own preprocessing mode. Then:

* ``serving_default`` of the loaded SavedModel (uint8 in) equals ``model(preprocess_input(x))``
  within 1e-4;
* the ``gradcam`` signature equals tf-keras-vis's Grad-CAM at the card's target layer, fed with
  the same preprocessed input, within 1e-4 of the map's scale;
* the card names the target layer, the preprocessing, the exported methods and the methods left
  out with the reason (excitation backprop on swish, hard-swish, GELU or LayerNorm networks).

Every family is ``slow`` (30–200 s each on two cores): ``make test-apps``, which ``.ci/run`` runs
after the default suite. The Sequential model and the refusal of a scaling model without a
choice run in the default suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from explain.reference import reference_cam  # noqa: E402
from models.export import export_classifier, read_card  # noqa: E402

NUM_CLASSES = 3


@dataclass(frozen=True)
class App:
    """One ``keras.applications`` family in the matrix."""

    builder: str
    mode: str  # the family's preprocess_input mode, or "raw" when the model scales inside
    size: int = 64
    eb_reason: str | None = None  # a fragment of the reason excitation backprop is left out
    include_top: bool = True  # False: pooling="avg" + a Dense head (the family's top is not a Dense)
    kwargs: tuple[tuple[str, Any], ...] = ()
    #: An explicit target layer where the automatic one is not a Keras layer tf-keras-vis can address.
    target: str | None = None


APPS = [
    App("MobileNetV2", "tf", kwargs=(("alpha", 0.35),)),
    App("VGG16", "caffe", size=32),
    App("ResNet50", "caffe"),
    App("ResNet50V2", "tf"),
    App("MobileNetV3Small", "raw", eb_reason="hard_silu", include_top=False),
    App("EfficientNetB0", "raw", eb_reason="'silu'"),
    App("EfficientNetV2B0", "raw", eb_reason="'silu'"),
    App("DenseNet121", "torch"),
    # Keras 3 builds ConvNeXt's residual sums as graph operations (``x + y``), not layers: the
    # automatic target (the last sum, e.g. ``add_17``) is fine for the project, but tf-keras-vis
    # can only address layers, so the comparison uses the last block's branch output.
    App("ConvNeXtTiny", "raw", eb_reason="LayerNormalization", target="convnext_tiny_stage_3_block_2_identity"),
    App("InceptionV3", "tf", size=139),  # its last map is 1x1 below ~139 px
    App("Xception", "tf", size=96),
]
DEFAULT_SUITE: set[str] = set()  # every family takes 30-200 s: all run under `make test-apps`


def build_app(app: App, seed: int = 0) -> keras.Model:
    """The family at ``app.size`` with a ``NUM_CLASSES``-way Dense classifier, BN calibrated."""
    keras.utils.set_random_seed(seed)
    builder: Callable[..., keras.Model] = getattr(keras.applications, app.builder)
    shape = (app.size, app.size, 3)
    if app.include_top:
        model = builder(weights=None, input_shape=shape, classes=NUM_CLASSES, **dict(app.kwargs))
    else:
        base = builder(weights=None, input_shape=shape, include_top=False, pooling="avg", **dict(app.kwargs))
        out = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(base.output)
        model = keras.Model(base.input, out, name=base.name)
    calibrate_batchnorm(model, preprocess(app, pixels(app.size, 8, seed=seed + 100)))
    return model


def calibrate_batchnorm(model: keras.Model, batch: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to the batch statistics of ``batch``."""
    bns = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(tf.constant(batch), training=True)
    for bn, m in zip(bns, momenta):
        bn.momentum = m


def _all_layers(model: keras.Model) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_all_layers(layer))
    return out


def pixels(size: int, n: int = 4, seed: int = 1) -> np.ndarray:
    """Smooth random images (uint8), so feature maps have spatial structure."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 4, 4, 3)).astype(np.float32)
    smooth = tf.image.resize(coarse, (size, size), method="bilinear").numpy()
    noise = rng.normal(0, 12, (n, size, size, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def preprocess(app: App, images_uint8: np.ndarray) -> np.ndarray:
    from keras.applications import imagenet_utils

    x = images_uint8.astype(np.float32)
    if app.mode == "raw":
        return x
    return imagenet_utils.preprocess_input(x, mode=app.mode)


def assert_close_maps(ours: np.ndarray, ref: np.ndarray, tol: float = 1e-4) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    spread = ref.max(axis=(1, 2)) - ref.min(axis=(1, 2))
    assert spread.max() > 0, "reference map is constant: the comparison would be vacuous"
    scale = max(float(np.abs(ref).max()), 1e-12)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=tol * scale)


def check_export(app: App, model: keras.Model, root: Path) -> dict[str, Any]:
    """Export ``model``, compare predictions and Grad-CAM, return the card."""
    version = export_classifier(model, root / app.builder.lower(), class_names=["a", "b", "c"],
                                preprocessing=app.mode, target_layer=app.target)
    card = read_card(version)
    assert app.target is None or card["target_layer"] == app.target
    loaded = tf.saved_model.load(str(version))
    x = pixels(app.size)
    pre = preprocess(app, x)
    expected = model(tf.constant(pre)).numpy()
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    probs = out["probabilities"].numpy()
    assert np.ptp(expected, axis=0).max() > 1e-3, f"{app.builder}: probabilities identical across images"
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-4)
    assert card["preprocessing"]["mode"] == app.mode

    target = card["target_layer"]
    classes = np.arange(len(x), dtype=np.int32) % NUM_CLASSES
    cam = loaded.signatures["gradcam"](images=tf.constant(x), class_index=tf.constant(classes))
    ref = reference_cam("gradcam", model, pre, classes, target)
    assert_close_maps(cam["raw"].numpy(), ref)
    return card


@pytest.mark.parametrize(
    "app",
    [pytest.param(a, id=a.builder, marks=() if a.builder in DEFAULT_SUITE else pytest.mark.slow) for a in APPS],
)
def test_applications_export_and_explain(app, tmp_path):
    model = build_app(app)
    card = check_export(app, model, tmp_path)
    assert {"gradcam", "gradcam_plus_plus", "layercam", "saliency"} <= set(card["methods"])
    left_out = card["methods_left_out"]
    if app.eb_reason is None:
        assert "excitation_backprop" in card["methods"], left_out
        assert left_out == {}
    else:
        assert "excitation_backprop" not in card["methods"]
        assert app.eb_reason in left_out["excitation_backprop"], left_out
        assert "has no excitation backprop rule" in left_out["excitation_backprop"]
    # The automatic target layer is a 4-D map before the pooling head, wider than 1x1 here.
    h, w, k = card["target_shape"]
    assert h * w > 1 and k > 1


def _transfer_models(seed: int = 0) -> tuple[keras.Model, keras.Model]:
    """A MobileNetV2 nested in a Sequential head (transfer learning), and the same network with
    every layer at the top level (same weights), which tf-keras-vis can read."""
    app = APPS[0]
    keras.utils.set_random_seed(seed)
    shape = (app.size, app.size, 3)
    base = keras.applications.MobileNetV2(weights=None, input_shape=shape, include_top=False, alpha=0.35)
    nested = keras.Sequential([
        keras.Input(shape), base, keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head"),
    ], name="transfer")
    calibrate_batchnorm(nested, preprocess(app, pixels(app.size, 8, seed=7)))
    flat_base = keras.applications.MobileNetV2(weights=None, input_shape=shape, include_top=False, alpha=0.35)
    flat_base.set_weights(base.get_weights())
    y = keras.layers.GlobalAveragePooling2D(name="gap")(flat_base.output)
    y = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")(y)
    flat = keras.Model(flat_base.input, y, name="transfer_flat")
    flat.get_layer("head").set_weights(nested.get_layer("head").get_weights())
    return nested, flat


@pytest.mark.slow  # exports a MobileNetV2 (~60 s); `make test-apps`
def test_transfer_learning_model_exports_and_explains(tmp_path):
    app = APPS[0]
    nested, flat = _transfer_models()
    version = export_classifier(nested, tmp_path / "transfer", preprocessing="tf")
    card = read_card(version)
    assert card["target_layer"].endswith("/out_relu"), card["target_layer"]
    loaded = tf.saved_model.load(str(version))
    x = pixels(app.size)
    pre = preprocess(app, x)
    np.testing.assert_allclose(flat(pre).numpy(), nested(pre).numpy(), atol=1e-6)
    probs = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probs, nested(pre).numpy(), rtol=0, atol=1e-4)
    classes = np.array([0, 1, 2, 0], np.int32)
    cam = loaded.signatures["gradcam"](images=tf.constant(x), class_index=tf.constant(classes))
    ref = reference_cam("gradcam", flat, pre, classes, "out_relu")
    assert_close_maps(cam["raw"].numpy(), ref)
    assert "excitation_backprop" in card["methods"]


def test_sequential_model_exports_and_explains(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255.0, name="scale"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(12, 3, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions"),
    ], name="plain_sequential")
    version = export_classifier(model, tmp_path / "seq", preprocessing="raw")
    card = read_card(version)
    assert card["target_layer"] == "conv2"
    assert set(card["methods"]) >= {"gradcam", "excitation_backprop", "saliency"}
    loaded = tf.saved_model.load(str(version))
    x = pixels(32)
    probs = loaded.signatures["serving_default"](images=tf.constant(x))["probabilities"].numpy()
    np.testing.assert_allclose(probs, model(x.astype(np.float32)).numpy(), rtol=0, atol=1e-5)
    classes = np.array([0, 1, 2, 1], np.int32)
    cam = loaded.signatures["gradcam"](images=tf.constant(x), class_index=tf.constant(classes))
    # tf-keras-vis 0.8.7 cannot read a Keras 3 Sequential (no ``output_names``): it gets the same
    # layers as a Functional model.
    functional = keras.Model(model.inputs, model.outputs)
    ref = reference_cam("gradcam", functional, x.astype(np.float32), classes, "conv2")
    assert_close_maps(cam["raw"].numpy(), ref)


def test_scaling_model_without_a_choice_is_refused(tmp_path):
    from models.export import ExportError

    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255.0, name="scale"),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    with pytest.raises(ExportError, match=r"starts with \['scale'\] \(it scales its own input\).*preprocessing='raw'"):
        export_classifier(model, tmp_path / "m")
    with pytest.raises(ExportError, match=r"preprocessing 'imagenet' is not supported; accepted: \['unit'"):
        export_classifier(model, tmp_path / "m", preprocessing="imagenet")
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
