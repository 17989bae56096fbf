"""Guided Backpropagation (Springenberg et al. 2014) and Guided Grad-CAM (Selvaraju et al. 2016).

Guided Backpropagation is the gradient of the class **logit** with respect to the image in which
every ReLU passes back only positive signals: at a ReLU with input ``z`` and incoming gradient
``R``, ``R_in = [z > 0]·[R > 0]·R`` (the plain gradient is ``[z > 0]·R``; the "deconvnet" rule
would be ``[R > 0]·R``). It is implemented with :meth:`explain.view.ModelView.run`'s
``call_wrapper``: the output of every ReLU-activated layer (``Conv2D``/``Dense``/… with
``activation="relu"`` or ``"relu6"``, ``Activation('relu')``, ``ReLU``) goes through an identity
whose gradient is ``max(R, 0)``; the layer's own ReLU gradient then applies ``[z > 0]``. For ReLU6
the layer's gradient is ``[0 < z < 6]``. The classifier's logit computation is linear and is left
alone.

Guided Grad-CAM is the element-wise product of the guided gradient ``(N, H, W, 3)`` with the
**normalised, upsampled** Grad-CAM map ``heatmap_upsampled`` ``(N, H, W)`` of the same class (the
paper multiplies by the upsampled map; normalising it first, as pytorch-grad-cam does, changes only
a per-image scale).

Both methods need ReLU networks: a model with another non-linear activation before the
classifier (swish, GELU, sigmoid gates, tanh, …) is refused by the ``check``
(:func:`check_relu`), so the exporter leaves the methods out with the reason.

Outputs (single-pass convention): ``gradients`` ``(N, H, W, 3)`` the guided gradient (Guided
Grad-CAM: the product); ``raw`` ``(N, H, W)`` = ``max_colour |gradients|`` (as gradient
saliency); ``heatmap`` = ``heatmap_upsampled`` = ``raw`` normalised per image; ``logits``,
``probabilities``, ``class_index``; Guided Grad-CAM adds ``gradcam`` ``(N, H, W)``.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from explain import registry
from explain.cam import GRADCAM, check_class_index, compiled, get_view
from explain.resize import normalize_tf
from explain.view import ExplainError, ModelView, check_images

__all__ = ["guided_backprop", "guided_gradcam", "guided_backprop_single_pass", "guided_gradcam_single_pass",
           "check_relu"]

L = keras.layers
_RELU_NAMES = ("relu", "relu6")
_LINEAR_NAMES = ("linear", None)


def _activation_name(layer: Any) -> str | None:
    act = getattr(layer, "activation", None)
    return None if act is None else getattr(act, "__name__", str(act))


def _is_relu(layer: Any) -> bool:
    if isinstance(layer, L.ReLU):
        return float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0
    return _activation_name(layer) in _RELU_NAMES


@tf.custom_gradient
def _positive_gradient(y: tf.Tensor) -> tuple[tf.Tensor, Callable[[tf.Tensor], tf.Tensor]]:
    def grad(dy: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(dy)

    return tf.identity(y), grad


def _guided_wrapper(view: ModelView) -> Callable[..., Any]:
    def wrap(path: str, layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
        if path == view.classifier_layer or not _is_relu(layer):
            return call

        def wrapped(*args: Any, **kwargs: Any) -> tf.Tensor:
            return _positive_gradient(call(*args, **kwargs))

        return wrapped

    return wrap


def check_relu(view: ModelView) -> None:
    """Raise :class:`ExplainError` unless the layers before the classifier use ReLU non-linearities only."""
    found = False
    for path, layer in view.layer_paths_and_layers():
        if path == view.classifier_layer:
            break
        if isinstance(layer, L.ReLU) and not _is_relu(layer):
            raise ExplainError(f"guided backpropagation needs plain ReLUs; layer {path!r} is a ReLU with "
                               "negative_slope or threshold != 0 (accepted: relu, relu6)")
        name = _activation_name(layer)
        if hasattr(layer, "activation") and name not in _RELU_NAMES + _LINEAR_NAMES:
            raise ExplainError(f"guided backpropagation needs ReLU networks; layer {path!r} has activation "
                               f"{name!r} (accepted: relu, relu6, linear)")
        found = found or _is_relu(layer)
    if not found:
        raise ExplainError(f"guided backpropagation needs ReLU activations; model {view.model.name!r} has none "
                           "before its classifier")


def _outputs(grads: tf.Tensor, logits: tf.Tensor, idx: tf.Tensor) -> dict[str, tf.Tensor]:
    raw = tf.reduce_max(tf.abs(grads), axis=-1)
    heatmap = normalize_tf(raw)
    return {"heatmap": heatmap, "heatmap_upsampled": heatmap, "raw": raw, "gradients": grads,
            "logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1), "class_index": idx}


def _guided(view: ModelView, images: tf.Tensor, class_index: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(images)
        result = view.run(images, call_wrapper=_guided_wrapper(view))
        if result.logits is None:
            raise ExplainError(f"guided backpropagation needs a classifier; model {view.model.name!r} has none")
        idx = view.resolve_class_index(class_index, result.logits)
        score = tf.gather(result.logits, idx, axis=1, batch_dims=1)
    return tape.gradient(score, images), result.logits, idx


def guided_backprop_single_pass(view: ModelView, images: tf.Tensor,
                                class_index: tf.Tensor | int | None = -1) -> dict[str, tf.Tensor]:
    """Graph-compatible Guided Backpropagation of the class logit (see the module docstring)."""
    grads, logits, idx = _guided(view, images, class_index)
    return _outputs(grads, logits, idx)


def guided_gradcam_single_pass(view: ModelView, images: tf.Tensor,
                               class_index: tf.Tensor | int | None = -1) -> dict[str, tf.Tensor]:
    """Graph-compatible Guided Grad-CAM: guided gradient × normalised upsampled Grad-CAM."""
    grads, logits, idx = _guided(view, images, class_index)
    cam = GRADCAM.single_pass(view, images, idx)["heatmap_upsampled"]
    out = _outputs(grads * cam[..., tf.newaxis], logits, idx)
    out["gradcam"] = cam
    return out


def _eager(name: str, fn: Callable[..., dict], model_or_view: Any, images: Any, class_index: Any,
           target_layer: str | None) -> dict[str, np.ndarray]:
    view = get_view(model_or_view, target_layer)
    if not view.is_classifier:
        raise ExplainError(f"{name} explains a class logit; model {view.model.name!r} has no classifier layer")
    check_relu(view)
    x = check_images(images, view)
    idx = check_class_index(class_index, int(x.shape[0]), view.num_classes, view.model.name)
    spec = [tf.TensorSpec([None, *view.input_shape], tf.float32), tf.TensorSpec([None], tf.int32)]
    graph = compiled(view, (name,), lambda: tf.function(lambda a, c: fn(view, a, c), input_signature=spec))
    return {k: v.numpy() for k, v in graph(x, idx).items()}


def guided_backprop(model_or_view: Any, images: Any, class_index: Any = -1,
                    target_layer: str | None = None) -> dict[str, np.ndarray]:
    """Eager Guided Backpropagation; numpy out.

    Raises:
        ExplainError: bad images or class index; a model that is not a ReLU classifier.
    """
    return _eager("guided_backprop", guided_backprop_single_pass, model_or_view, images, class_index, target_layer)


def guided_gradcam(model_or_view: Any, images: Any, class_index: Any = -1,
                   target_layer: str | None = None) -> dict[str, np.ndarray]:
    """Eager Guided Grad-CAM (Grad-CAM at ``target_layer``); numpy out."""
    return _eager("guided_gradcam", guided_gradcam_single_pass, model_or_view, images, class_index, target_layer)


for _name, _fn, _desc in (
    ("guided_backprop", guided_backprop_single_pass,
     "Guided Backpropagation: ∂y_c/∂x with ReLUs passing back positive gradients only (max over colour)"),
    ("guided_gradcam", guided_gradcam_single_pass,
     "Guided Grad-CAM: guided backpropagation × upsampled normalised Grad-CAM"),
):
    registry.register(
        registry.Method(
            name=_name,
            fn=_fn,
            kind="single_pass",
            applies_to="classifier",
            signature_inputs={"class_index": lambda: tf.TensorSpec([None], tf.int32)},
            description=_desc,
            label={"guided_backprop": "Guided Backprop", "guided_gradcam": "Guided Grad-CAM"}[_name],
            cost="cheap",
            check=check_relu,
        )
    )
