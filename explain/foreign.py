"""Single-pass methods on a SavedModel that does not have them as signatures (a model without a card).

The project's exports carry ``saliency``, ``integrated_gradients``, ``gradcam`` ... as signatures.
A foreign SavedModel (explanation metadata, no card) has only its serving signature, so the
service runs the same method functions here, over a :class:`BackendView` — the part of
:class:`explain.view.ModelView` that the gradient methods read (``run(x).logits``, the class
index, the input shape), backed by :class:`explain.backend.SavedModelBackend`:

* ``saliency``, ``smoothgrad``, ``integrated_gradients`` (and XRAI, an iterative method on the backend) need a
  differentiable signature: :meth:`SavedModelBackend.gradient_reason` is ``None``;
* the Grad-CAM family (``gradcam``, ``gradcam_plus_plus``, ``layercam``, ``hirescam``,
  ``xgradcam``) also needs the activation output named by the metadata; ``∂y_c/∂A`` comes from
  :meth:`SavedModelBackend.activation_gradients` and the weights from the method's own
  :meth:`explain.cam.BaseCAM.weights`; ``eigencam`` needs only the activations.

:func:`applicable` says which of these apply to a backend and why the others do not.

Integrated Gradients starts from the metadata's ``inputBaselines`` when the request chooses no
``baseline`` (:func:`declared_baselines` converts them from the model's input units to ``[0, 1]``;
several baselines: the attributions and the baseline output are averaged over them, as Vertex does).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from explain.backend import MethodUnavailable, SavedModelBackend
from explain.checks import resolve_class_tensor
from explain.view import ForwardResult

__all__ = ["BackendView", "GRADIENT_METHODS", "CAM_METHODS", "applicable", "run_single_pass", "declared_baselines"]

#: Single-pass methods that need only input gradients of the score.
GRADIENT_METHODS = ("saliency", "smoothgrad", "integrated_gradients")
#: Single-pass methods that need the activation output.
CAM_METHODS = ("gradcam", "gradcam_plus_plus", "layercam", "hirescam", "xgradcam", "eigencam")


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


class BackendView:
    """What the gradient methods read from a :class:`~explain.view.ModelView`, over a backend.

    Args:
        backend: A differentiable :class:`SavedModelBackend`.
        name: The model's name (for messages).
    """

    def __init__(self, backend: SavedModelBackend, name: str = "model") -> None:
        self.backend = backend
        self.model = _Named(name)
        self.input_shape = tuple(backend.input_shape)
        self.num_classes = backend.num_classes
        self.is_classifier = backend.num_classes is not None

    def run(self, images: tf.Tensor, **_: Any) -> ForwardResult:
        """Scores and logits of ``[0, 1]`` images, differentiable with respect to ``images``."""
        logits = self.backend.logits_tf(images)
        return ForwardResult(outputs=tf.nn.softmax(logits, axis=-1), logits=logits)

    def resolve_class_index(self, class_index: Any, logits: tf.Tensor) -> tf.Tensor:
        """Per-example classes ``(N,)`` int32, ``-1`` = predicted (checked by the service before)."""
        return resolve_class_tensor(class_index, logits, check_range=False)


def applicable(backend: SavedModelBackend) -> tuple[list[str], dict[str, str]]:
    """``(methods, {method: why not})`` among :data:`GRADIENT_METHODS` and :data:`CAM_METHODS`."""
    ok: list[str] = []
    left_out: dict[str, str] = {}
    reason = backend.gradient_reason()
    for name in GRADIENT_METHODS + CAM_METHODS:
        if name in CAM_METHODS and backend.activation_key is None:
            left_out[name] = ("the model has no card and its explanation metadata names no activation output "
                              "(cnnExplain.activationOutputName: a signature output with the target layer's "
                              "activations), so the Grad-CAM family has no layer to weight")
        elif reason is not None and name != "eigencam":
            left_out[name] = reason
        else:
            ok.append(name)
    return ok, left_out


def _cam(name: str, backend: SavedModelBackend, view: BackendView, images: tf.Tensor, class_index: Any,
         relu: bool = True) -> dict[str, tf.Tensor]:
    from explain.cam import EIGENCAM, METHODS, _finish

    if name == "eigencam":
        return EIGENCAM.single_pass(_ActivationView(view), images, class_index, relu=relu)
    a, grads, logits, idx = backend.activation_gradients(images, class_index)
    score = tf.gather(logits, idx, axis=1, batch_dims=1)
    w = METHODS[name].weights(grads, a, score)
    return _finish(view, tf.reduce_sum(w * a, axis=-1), w, logits, idx, relu)


class _ActivationView(BackendView):
    """A :class:`BackendView` whose ``run`` also returns the activations (no gradient needed)."""

    def __init__(self, view: BackendView) -> None:
        self.__dict__.update(view.__dict__)

    def run(self, images: tf.Tensor, **_: Any) -> ForwardResult:
        a, logits = self.backend.features(np.asarray(images))
        logits = tf.constant(logits)
        return ForwardResult(outputs=tf.nn.softmax(logits, axis=-1), activations=tf.constant(a), logits=logits)


def declared_baselines(baselines: list[Any], backend: SavedModelBackend,
                       where: str = "inputs.image.inputBaselines") -> np.ndarray:
    """Vertex's ``inputBaselines`` (each a scalar, a per-channel triple, or an image ``(H, W, 3)``
    or ``(1, H, W, 3)`` in the model's input units) as float32 ``(K, H, W, 3)`` in ``[0, 1]``.

    Raises:
        MethodUnavailable: a baseline that is not numeric or does not broadcast to the input
            shape (the field and index named), or a float input of unknown range.
    """
    shape = tuple(backend.input_shape)
    out = []
    for i, value in enumerate(baselines):
        try:
            arr = np.asarray(value, np.float64)
        except (TypeError, ValueError):
            arr = np.asarray(None)
        if arr.dtype != np.float64 or not np.all(np.isfinite(arr)):
            raise MethodUnavailable(f"{where}[{i}] must be a finite number or a nested list of numbers")
        if arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        try:
            arr = np.broadcast_to(arr, shape)
        except ValueError:
            raise MethodUnavailable(f"{where}[{i}] has shape {list(arr.shape)}; accepted: a scalar, [3] or "
                                    f"{list(shape)} (the input's height, width, channels)") from None
        out.append(backend.from_model(arr))
    return np.stack(out).astype(np.float32)


def _integrated_gradients(view: BackendView, x: tf.Tensor, idx: tf.Tensor, baselines: np.ndarray,
                          **params: Any) -> dict[str, Any]:
    """IG from each declared baseline; with several, attributions and baseline outputs averaged."""
    from explain import registry
    from explain.resize import normalize_tf

    fn = registry.get("integrated_gradients").fn
    runs = [fn(view, x, idx, baseline_image=tf.constant(b), **params) for b in baselines]
    if len(runs) == 1:
        return runs[0]
    out = dict(runs[0])
    attributions = tf.add_n([r["attributions"] for r in runs]) / len(runs)
    base_out = tf.add_n([r["baseline_output"] for r in runs]) / len(runs)
    delta = out["instance_output"] - base_out
    raw = tf.abs(tf.reduce_sum(attributions, axis=-1))
    gap = tf.abs(tf.reduce_sum(attributions, axis=(1, 2, 3)) - delta)
    out.update(attributions=attributions, baseline_output=base_out, raw=raw, heatmap=normalize_tf(raw),
               heatmap_upsampled=normalize_tf(raw), approximation_error=gap / tf.maximum(tf.abs(delta), 1e-12))
    return out


def run_single_pass(name: str, backend: SavedModelBackend, images: np.ndarray, class_index: np.ndarray,
                    model_name: str = "model", baselines: np.ndarray | None = None,
                    **params: Any) -> dict[str, np.ndarray]:
    """Run single-pass method ``name`` on ``[0, 1]`` float ``images`` through ``backend``; numpy out.

    ``baselines`` (``(K, H, W, 3)`` in ``[0, 1]``, from :func:`declared_baselines`): the starting
    points of Integrated Gradients instead of its ``baseline`` parameter.

    Raises:
        MethodUnavailable: the method does not apply (the reason, as :func:`applicable` gives it).
    """
    from explain import registry

    methods, left_out = applicable(backend)
    if name not in methods:
        raise MethodUnavailable(left_out.get(name) or f"method {name!r} needs a signature of its name")
    view = BackendView(backend, model_name)
    x = tf.convert_to_tensor(images, tf.float32)
    idx = tf.convert_to_tensor(class_index, tf.int32)
    if name in CAM_METHODS:
        out = _cam(name, backend, view, x, idx)
    elif name == "integrated_gradients" and baselines is not None and len(baselines):
        out = _integrated_gradients(view, x, idx, baselines, **params)
    else:
        out = registry.get(name).fn(view, x, idx, **params)
    return {k: np.asarray(v) for k, v in out.items()}
