"""Export trained Keras models as versioned SavedModels in TF Serving's layout (the only writer).

Layout::

    <model_root>/<name>/<version>/saved_model.pb
                                 /variables/
                                 /assets.extra/model_card.json

``export_dir`` is ``<model_root>/<name>``; a new export gets version ``max(existing) + 1`` (1 for
the first). Versions are written into a temporary folder ``<name>/.tmp-<version>-<pid>`` and
renamed into place when complete, so a crash never leaves a half-written version (TF Serving and
:mod:`serving.registry` only consider all-digit folder names, so the temporary folder is never
picked up; it is removed on failure).

Signatures (all take ``images``: uint8 ``(N, H, W, 3)``; inside the graph they become ``[0, 1]``
floats, and the model's *input preprocessing* (:mod:`models.preprocessing`: ``unit``, ``raw``,
``tf``, ``caffe``, ``torch`` or an explicit per-channel ``mean``/``std``) maps those to the scale
the model expects, as the first step of every signature and every iterative method):

Classifiers
    ``serving_default`` → ``probabilities`` ``(N, C)`` = softmax of ``logits`` ``(N, C)`` (the
    pre-activation of the classifier ``Dense``); ``predict_float`` (``images`` float32 in
    ``[0, 1]``) → the same, differentiable, for optimised perturbation masks; ``features`` →
    ``activations`` ``(N, h, w, K)`` at the target layer and ``logits``; ``ablate_channels``
    (``images`` and ``channel_mask`` float32 ``(N, K)``) → ``logits`` and ``probabilities`` with the
    target activations multiplied by the mask (Ablation-CAM); and one signature per
    registered single-pass classifier method (``gradcam``, ``gradcam_plus_plus``, ``saliency``,
    …; :func:`explain.registry.names`), with the method's own extra inputs (e.g. ``class_index``
    int32 ``(N,)``, −1 = predicted).
Embedding networks
    ``serving_default`` → ``embedding`` ``(N, D)``; ``embed`` → ``embedding`` and
    ``activations``; and one signature per single-pass embedding method (``similarity_map``
    takes ``query_images`` and ``reference_images`` uint8 instead of ``images``).

No method takes an export down: a method whose ``check`` refuses the model (e.g. excitation
backprop on a model with swish activations) or whose graph cannot be traced is left out, and the
card's ``methods_left_out`` says why; only a failure of ``serving_default`` fails the export.

Each method signature is a ``tf.function`` over :class:`explain.view.ModelView` that calls
``method.fn(view, tf.cast(images, tf.float32) / 255, **inputs)``; methods whose declared inputs
are image batches themselves (names ending in ``_images``) receive only those, cast to float32
in ``[0, 1]`` when uint8.

The saved object is a ``tf.Module`` that tracks the Keras model's variables (all weights,
trainable or not), as ``keras.export.ExportArchive`` does. It deliberately does not hold the
Keras model object itself: that would also save the optimizer's slot variables (three times the
weights for Adam) and Keras' own traced functions.

The model card (``assets.extra/model_card.json``, ignored by TF Serving) holds: ``name``,
``kind``, ``architecture``, ``class_names``, ``input_size`` ``[H, W, 3]``, ``target_layer``,
``target_shape``, ``classifier_layer``, ``pooling``, ``projection_layer``, ``seed``,
``train_accuracy``, ``val_accuracy``, ``test_accuracy``, ``created`` (ISO 8601, UTC),
``signatures``, ``methods`` (registry names usable on this model), ``methods_left_out`` (name →
reason), ``preprocessing`` (mode and the resolved per-channel affine map), ``preset``, ``version``,
plus whatever extra keys the caller passes in ``card`` (e.g. ``dataset``, ``training``).

This module is the only one in :mod:`models` that imports :mod:`explain`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from explain import registry
from explain.backend import ablated_run
from models.preprocessing import MODES as PREPROCESSING_MODES
from models.preprocessing import PreprocessingError, resolve_preprocessing
from explain.view import ExplainError, ModelView, iter_layers

__all__ = [
    "CARD_KEYS",
    "CARD_PATH",
    "ExportError",
    "export_classifier",
    "export_embedding",
    "list_versions",
    "next_version",
    "read_card",
    "build_signatures",
    "leading_scaling_layers",
    "PREPROCESSING_MODES",
]

#: Where the model card lives inside a version directory.
CARD_PATH = Path("assets.extra") / "model_card.json"
#: The keys every model card has (the contract's list).
CARD_KEYS: tuple[str, ...] = (
    "name",
    "kind",
    "architecture",
    "class_names",
    "input_size",
    "target_layer",
    "target_shape",
    "classifier_layer",
    "pooling",
    "projection_layer",
    "seed",
    "train_accuracy",
    "val_accuracy",
    "test_accuracy",
    "created",
    "signatures",
    "methods",
    "methods_left_out",
    "preprocessing",
    "preset",
)
_VERSION_RE = re.compile(r"^[0-9]+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ExportError(ValueError):
    """A bad argument to an export (the message names the value and the accepted ones)."""


# ------------------------------------------------------------------------------------ versions
def list_versions(export_dir: str | Path) -> list[int]:
    """The existing versions under ``export_dir`` (all-digit folder names), sorted."""
    d = Path(export_dir)
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and _VERSION_RE.match(p.name))


def next_version(export_dir: str | Path) -> int:
    """``max(existing versions) + 1``, or 1 for an empty or missing ``export_dir``."""
    versions = list_versions(export_dir)
    return versions[-1] + 1 if versions else 1


def read_card(version_dir: str | Path) -> dict[str, Any]:
    """The model card of an exported version directory.

    Raises:
        FileNotFoundError: the directory has no card.
    """
    with open(Path(version_dir) / CARD_PATH, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------- signatures
class _ExportModule(tf.Module):
    """What gets saved: the model's variables (so the signatures' captures are tracked)."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="exported_model")
        self.model_variables = list(model.weights)


def _image_spec(view: ModelView, dtype: tf.DType = tf.uint8, name: str = "images") -> tf.TensorSpec:
    return tf.TensorSpec([None, *view.input_shape], dtype, name=name)


def _to_float(images: tf.Tensor) -> tf.Tensor:
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


def _method_specs(method: registry.Method, view: ModelView) -> dict[str, tf.TensorSpec]:
    """The method's extra inputs as named specs; image batches get the model's ``H, W``."""
    specs: dict[str, tf.TensorSpec] = {}
    for key, factory in method.signature_inputs.items():
        spec = factory()
        shape = spec.shape
        if key.endswith("_images") and shape.rank == 4:
            h, w, c = view.input_shape
            dims = shape.as_list()
            shape = tf.TensorShape([dims[0], dims[1] or h, dims[2] or w, dims[3] or c])
        specs[key] = tf.TensorSpec(shape, spec.dtype, name=key)
    return specs


def _method_function(method: registry.Method, view: ModelView) -> tf.types.experimental.GenericFunction:
    """A ``tf.function`` with a fixed input signature running ``method`` on ``view``."""
    extra = _method_specs(method, view)
    takes_images = not any(k.endswith("_images") for k in extra)
    names = (["images"] if takes_images else []) + list(extra)
    specs = ([_image_spec(view)] if takes_images else []) + list(extra.values())

    def run(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        inputs = dict(zip(names, args))
        kwargs = {k: (_to_float(v) if k.endswith("_images") else v) for k, v in inputs.items() if k != "images"}
        if takes_images:
            out = method.fn(view, _to_float(inputs["images"]), **kwargs)
        else:
            out = method.fn(view, **kwargs)
        return {k: v for k, v in dict(out).items() if v is not None}

    run.__name__ = method.name
    return tf.function(run, input_signature=specs, autograph=False)


def _builtin_signatures(view: ModelView, kind: str) -> dict[str, Any]:
    img = _image_spec(view)
    if kind == "classifier":

        @tf.function(input_signature=[img], autograph=False)
        def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
            r = view.run(_to_float(images))
            return {"probabilities": r.probabilities, "logits": r.logits}

        @tf.function(input_signature=[_image_spec(view, tf.float32)], autograph=False)
        def predict_float(images: tf.Tensor) -> dict[str, tf.Tensor]:
            r = view.run(images)
            return {"probabilities": r.probabilities, "logits": r.logits}

        @tf.function(input_signature=[img], autograph=False)
        def features(images: tf.Tensor) -> dict[str, tf.Tensor]:
            r = view.run(_to_float(images))
            return {"activations": r.activations, "logits": r.logits}

        k = view.target_shape[-1]

        @tf.function(input_signature=[img, tf.TensorSpec([None, k], tf.float32, name="channel_mask")],
                     autograph=False)
        def ablate_channels(images: tf.Tensor, channel_mask: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = ablated_run(view, _to_float(images), channel_mask)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

        return {"serving_default": serving_default, "predict_float": predict_float, "features": features,
                "ablate_channels": ablate_channels}

    @tf.function(input_signature=[img], autograph=False)
    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:  # type: ignore[no-redef]
        r = view.run(_to_float(images))
        return {"embedding": _single(r.outputs)}

    @tf.function(input_signature=[img], autograph=False)
    def embed(images: tf.Tensor) -> dict[str, tf.Tensor]:
        r = view.run(_to_float(images))
        return {"embedding": _single(r.outputs), "activations": r.activations}

    return {"serving_default": serving_default, "embed": embed}


def _trace_failure(err: BaseException) -> str:
    """A one-line reason from a tracing error (ExplainError messages are already user-facing)."""
    if isinstance(err, ExplainError):
        return str(err)
    first = (str(err).strip().splitlines() or [""])[0]
    return f"the method's graph cannot be built for this model ({type(err).__name__}: {first[:300]})"


def build_signatures(
    view: ModelView, kind: str, methods: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[str], dict[str, str]]:
    """The signature functions of an export, each traced once.

    Args:
        view: The model view (target layer, classifier, pooling and preprocessing resolved).
        kind: ``"classifier"`` or ``"embedding"``.
        methods: Single-pass registry methods to include; ``None`` = every registered one that
            applies to ``kind``.

    Returns:
        ``(signatures, method_names, left_out)``: name → ``tf.function`` (with an input
        signature); the registry methods that were included; and method name → the reason it
        was left out (its ``check`` refused the model, or its graph could not be traced).

    Raises:
        ExportError: unknown kind or method names (the message lists the accepted ones), or the
            model's own ``serving_default`` cannot be built.
    """
    if kind not in ("classifier", "embedding"):
        raise ExportError(f"kind {kind!r} is not supported; accepted: ['classifier', 'embedding']")
    available = registry.names(kind="single_pass", applies_to=kind)
    if methods is None:
        chosen = available
    else:
        bad = [m for m in methods if m not in available]
        if bad:
            raise ExportError(f"method {bad[0]!r} cannot be exported for a {kind}; accepted: {available}")
        chosen = list(methods)
    sigs = _builtin_signatures(view, kind)
    try:
        for fn in sigs.values():
            fn.get_concrete_function()
    except Exception as err:  # noqa: BLE001 - the model itself cannot be exported
        raise ExportError(f"model {view.model.name!r} cannot be exported: {_trace_failure(err)}") from err
    used: list[str] = []
    left_out: dict[str, str] = {}
    for name in chosen:
        if name in sigs:
            raise ExportError(f"method name {name!r} clashes with a built-in signature")
        method = registry.get(name)
        reason = registry.unavailable_reason(method, view)
        if reason is None:
            fn = _method_function(method, view)
            try:
                fn.get_concrete_function()
            except Exception as err:  # noqa: BLE001 - no method takes the export down
                reason = _trace_failure(err)
            else:
                sigs[name] = fn
                used.append(name)
        if reason is not None:
            left_out[name] = reason
    return sigs, used, left_out


def _single(outputs: Any) -> tf.Tensor:
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ExportError(f"an embedding model must have one output; this one has {len(outputs)}")
        return outputs[0]
    return outputs


# -------------------------------------------------------------------------------------- export
def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        raise ExportError(f"model must be a keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1:
        raise ExportError(f"model {model.name!r} must have one image input; it has {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] != 3 or None in shape:
        raise ExportError(f"model {model.name!r} must take (N, H, W, 3) images with fixed H, W; its input is {shape}")


def leading_scaling_layers(model: keras.Model) -> list[str]:
    """Paths of the ``Rescaling``/``Normalization`` layers a model starts with (nested too).

    Such a model scales its own input, so exporting it with the default ``unit`` preprocessing
    would scale twice; :func:`export_classifier` asks for an explicit choice instead.
    """
    found: list[str] = []
    for path, layer in iter_layers(model):
        if isinstance(layer, keras.Model):
            continue
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            found.append(path)
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        break
    return found


def _resolve_preprocessing(model: keras.Model, preprocessing: Any) -> Any:
    if preprocessing is None:
        scaling = leading_scaling_layers(model)
        if scaling:
            raise ExportError(
                f"model {model.name!r} starts with {scaling} (it scales its own input), so the input "
                "preprocessing must be chosen explicitly: preprocessing='raw' when the model expects "
                "0-255 pixels (keras.applications EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3), "
                "'unit' when it expects [0, 1], or the mode of the preprocess_input it was trained with; "
                f"accepted: {list(PREPROCESSING_MODES)} or {{'mean': [r, g, b], 'std': [r, g, b]}}"
            )
        preprocessing = "unit"
    try:
        return resolve_preprocessing(preprocessing)
    except PreprocessingError as err:
        raise ExportError(str(err)) from None


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def _make_card(
    view: ModelView, kind: str, export_dir: Path, class_names: list[str] | None, signatures: list[str],
    methods: list[str], left_out: Mapping[str, str], card: Mapping[str, Any] | None, version: int,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": export_dir.name,
        "kind": kind,
        "architecture": view.model.name,
        "class_names": class_names,
        "input_size": list(view.input_shape),
        "target_layer": view.target_layer,
        "target_shape": list(view.target_shape),
        "classifier_layer": view.classifier_layer,
        "pooling": view.pooling,
        "projection_layer": view.projection_layer,
        "seed": None,
        "train_accuracy": None,
        "val_accuracy": None,
        "test_accuracy": None,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "signatures": sorted(signatures),
        "methods": sorted(methods),
        "methods_left_out": dict(sorted(left_out.items())),
        "preprocessing": view.preprocessing.to_card(),
        "preset": None,
    }
    fixed = {"kind", "input_size", "target_layer", "target_shape", "classifier_layer", "pooling",
             "projection_layer", "signatures", "methods", "methods_left_out", "preprocessing", "created"}
    if kind == "classifier":
        fixed.add("class_names")
    for key, value in (card or {}).items():
        if key in fixed and value is not None and _jsonable(value) != base[key]:
            raise ExportError(
                f"card key {key!r} is computed by the export ({base[key]!r}) and cannot be set to {value!r}"
            )
        if key not in fixed:
            base[key] = value
    base["version"] = version
    return _jsonable(base)


def _export(
    model: keras.Model,
    export_dir: str | Path,
    kind: str,
    class_names: Sequence[str] | None,
    target_layer: str | None,
    card: Mapping[str, Any] | None,
    methods: Sequence[str] | None,
    preprocessing: Any = None,
) -> Path:
    _check_model(model)
    export_dir = Path(export_dir)
    if not _NAME_RE.match(export_dir.name or ""):
        raise ExportError(
            f"export_dir {str(export_dir)!r} must end in a model name (letters, digits, '.', '_', '-'; "
            "not starting with '.'), e.g. runs/models/vgg11"
        )
    if card is not None and not isinstance(card, Mapping):
        raise ExportError(f"card must be a dict or None, got {type(card).__name__}")
    prep = _resolve_preprocessing(model, preprocessing)
    try:
        view = ModelView(model, target_layer=target_layer, preprocessing=prep)
    except ExplainError as err:
        raise ExportError(str(err)) from None
    if kind == "classifier":
        if view.classifier_layer is None:
            raise ExportError(
                f"model {model.name!r} has no classifier Dense layer after its target layer "
                f"{view.target_layer!r}; export it with export_embedding or pick another target_layer"
            )
        n = view.num_classes
        if class_names is None:
            names = [f"class_{i}" for i in range(n)]
        else:
            names = [str(c) for c in class_names]
            if len(names) != n:
                raise ExportError(f"class_names {names!r} has {len(names)} entries; model {model.name!r} has {n} classes")
    else:
        if view.classifier_layer is not None:
            raise ExportError(
                f"model {model.name!r} has a classifier layer {view.classifier_layer!r}; export it with export_classifier"
            )
        if view.pooling is None:
            raise ExportError(
                f"model {model.name!r} has no global pooling after its target layer {view.target_layer!r}; "
                "an embedding network is conv body -> global avg/max pool -> (projection) -> L2"
            )
        names = None

    signatures, used, left_out = build_signatures(view, kind, methods)
    module = _ExportModule(model)
    export_dir.mkdir(parents=True, exist_ok=True)
    while True:
        version = next_version(export_dir)
        tmp = export_dir / f".tmp-{version}-{os.getpid()}"
        final = export_dir / str(version)
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            # Concrete functions (traced once by build_signatures): given the tf.functions
            # themselves, tf.saved_model.save traces every signature a second time.
            concrete = {k: fn.get_concrete_function() for k, fn in signatures.items()}
            tf.saved_model.save(module, str(tmp), signatures=concrete)
            meta = _make_card(view, kind, export_dir, names, list(signatures), used, left_out, card, version)
            (tmp / CARD_PATH).parent.mkdir(parents=True, exist_ok=True)
            with open(tmp / CARD_PATH, "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2, sort_keys=False)
                f.write("\n")
            if final.exists():  # another process took this version meanwhile: take the next
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            os.rename(tmp, final)
            return final
        except OSError:
            if final.exists() and tmp.exists():  # lost a race on the rename
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def export_classifier(
    model: keras.Model,
    export_dir: str | Path,
    class_names: Sequence[str] | None = None,
    target_layer: str | None = None,
    card: Mapping[str, Any] | None = None,
    methods: Sequence[str] | None = None,
    preprocessing: str | Mapping[str, Any] | None = None,
) -> Path:
    """Export a classifier as the next version under ``export_dir`` (= ``<model_root>/<name>``).

    Args:
        model: Keras model mapping float32 ``(N, H, W, 3)`` images (on the scale that
            ``preprocessing`` gives) to ``(N, C)``, ending in a ``Dense`` classifier (softmax or
            linear; the signatures use its pre-activation as the logits and their softmax as the
            probabilities). Nested models are fine.
        export_dir: ``<model_root>/<name>``; created if missing.
        class_names: ``C`` names (default ``class_0 …``).
        target_layer: Layer name or path (``backbone/block5_conv2``) of the explained feature map;
            ``None`` = the last 4-D layer output (the last convolution after its ReLU), found
            also inside nested models (:class:`explain.view.ModelView`).
        card: Extra model-card fields (``seed``, accuracies, ``preset``, ``architecture``,
            ``dataset``, …); fields the export computes itself cannot be overridden.
        methods: Single-pass methods to export (default: every registered classifier method
            that applies; the others are listed with their reason in ``methods_left_out``).
        preprocessing: The model's input scale: ``"unit"`` (``[0, 1]``, the project's models),
            ``"raw"`` (0–255 floats), ``"tf"``, ``"caffe"``, ``"torch"`` (the modes of
            ``keras.applications.imagenet_utils.preprocess_input``) or ``{"mean": [r, g, b],
            "std": [r, g, b]}`` in pixel units. ``None`` = ``"unit"``, except for a model that
            starts with a ``Rescaling``/``Normalization`` layer, which must say (an error
            explains the choice instead of a silent double scaling).

    Returns:
        The new version directory ``<export_dir>/<version>``.

    Raises:
        ExportError: a bad model, name, class list, target layer, preprocessing or card (naming
            the value), or a model whose ``serving_default`` cannot be built.
    """
    return _export(model, export_dir, "classifier", class_names, target_layer, card, methods, preprocessing)


def export_embedding(
    model: keras.Model,
    export_dir: str | Path,
    target_layer: str | None = None,
    card: Mapping[str, Any] | None = None,
    methods: Sequence[str] | None = None,
    preprocessing: str | Mapping[str, Any] | None = None,
) -> Path:
    """Export an embedding network (conv body → global pool → optional projection → L2).

    Arguments and result as in :func:`export_classifier`; the card's ``class_names`` is ``None``
    unless given in ``card`` (e.g. the landmark classes the network was trained on).
    """
    return _export(model, export_dir, "embedding", None, target_layer, card, methods, preprocessing)
