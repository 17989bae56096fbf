"""tf-keras-vis 0.8.7 as a reference backend (the oracle of the tests and the benchmark baseline).

:func:`reference_cam` runs tf-keras-vis's ``Gradcam``, ``GradcamPlusPlus``, ``Scorecam`` or
``Layercam`` on an in-process Keras model with ``ReplaceToLinear`` (the classifier's softmax is
replaced by the identity, so scores are logits and Score-CAM's ``softmax`` of the output is the class
probability), ``normalize_cam=False`` and ``expand_cam=False``: the raw map at the target layer's
``h×w`` resolution, before any resizing (tf-keras-vis resizes corner-aligned with
``scipy.ndimage.zoom``, the project with half-pixel centres, so maps are compared at ``h×w``).

Not for production use: tf-keras-vis runs eagerly, builds a sub-model on every call and, for
Score-CAM, materialises all ``N·K`` masked images at once.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from explain.view import ExplainError

__all__ = ["REFERENCE_METHODS", "reference_cam", "reference_visualizer"]

REFERENCE_METHODS = ("gradcam", "gradcam_plus_plus", "scorecam", "layercam")

_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def reference_visualizer(method_name: str, model: Any) -> Any:
    """The tf-keras-vis visualiser for ``method_name`` over a linearised clone of ``model`` (cached)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    classes = {"gradcam": Gradcam, "gradcam_plus_plus": GradcamPlusPlus, "scorecam": Scorecam, "layercam": Layercam}
    if method_name not in classes:
        raise ExplainError(f"unknown reference method {method_name!r}; accepted: {list(REFERENCE_METHODS)}")
    per_model = _CACHE.setdefault(model, {})
    if method_name not in per_model:
        # clone=True: tf-keras-vis clones the model before ReplaceToLinear, the original keeps its softmax.
        per_model[method_name] = classes[method_name](model, model_modifier=ReplaceToLinear(), clone=True)
    return per_model[method_name]


def reference_cam(
    method_name: str,
    model: Any,
    images: np.ndarray,
    class_index: Any,
    target_layer: str,
    relu: bool = True,
    batch_size: int = 32,
) -> np.ndarray:
    """tf-keras-vis's map ``(N, h, w)`` at the target layer, not normalised, not resized.

    Args:
        method_name: ``gradcam``, ``gradcam_plus_plus``, ``scorecam`` or ``layercam``.
        model: A Keras classifier (top-level ``target_layer``; tf-keras-vis does not look into nested
            models).
        images: float32 ``(N, H, W, 3)`` in ``[0, 1]``.
        class_index: An int or ``(N,)`` ints; ``-1`` = the predicted class.
        target_layer: Name of the target layer (no search for a convolution is made).
        relu: Apply tf-keras-vis's default ``activation_modifier`` (ReLU of the map); ``False``
            passes ``activation_modifier=None``. For Grad-CAM++ this also drops the ReLU of the
            first derivative (tf-keras-vis uses the same modifier for both).
        batch_size: Score-CAM's prediction batch size.
    """
    from tf_keras_vis.utils.scores import CategoricalScore

    images = np.asarray(images, np.float32)
    n = images.shape[0]
    idx = np.broadcast_to(np.asarray(class_index if class_index is not None else -1, np.int64).reshape(-1), (n,))
    if np.any(idx < 0):
        predicted = np.argmax(np.asarray(model(images, training=False)), axis=-1)
        idx = np.where(idx < 0, predicted, idx)
    vis = reference_visualizer(method_name, model)
    kwargs: dict[str, Any] = dict(
        penultimate_layer=target_layer,
        seek_penultimate_conv_layer=False,
        expand_cam=False,
        normalize_cam=False,
    )
    if not relu:
        kwargs["activation_modifier"] = None
    if method_name == "scorecam":
        kwargs["batch_size"] = batch_size
    cam = vis(CategoricalScore([int(i) for i in idx]), images, **kwargs)
    cam = np.asarray(cam, np.float32)
    return cam.reshape(n, *cam.shape[-2:])
