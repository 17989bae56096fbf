"""Score-CAM (Wang et al. 2020), batched with bounded memory, over any :class:`~explain.backend.Backend`.

For image ``x`` with target-layer activations ``A`` ``(h, w, K)`` and class ``c``:

1. ``M_k = norm(up(A_k))``: each channel is resized bilinearly to the input size and min–max
   normalised, ``(a − min)/(max − min + 1e-7)``;
2. ``s_k = softmax(y(x ⊙ M_k))_c = p_c(x ⊙ M_k)``, the class probability of the masked image;
3. ``L = ReLU(Σ_k s_k A_k)`` at ``h×w``; ``heatmap`` is ``L`` normalised per image and resized to the
   input size with half-pixel centres (:mod:`explain.resize`).

This is tf-keras-vis 0.8.7 ``Scorecam``'s exact formula (run with ``ReplaceToLinear``, so its
``softmax(model output)`` is the class probability), and the two agree to float round-off at
``h×w``. Two consequences worth stating:

* the weights are the masked-image probabilities themselves — a softmax over **classes** of the
  masked image's logits, not a softmax over channels; the paper's baseline subtraction
  ``p_c(x ⊙ M_k) − p_c(x_b)`` is not applied (neither tf-keras-vis nor the authors' code does);
* the masks ``up(A_k)`` are resized **corner-aligned** (``scipy.ndimage.zoom(order=1)`` in
  tf-keras-vis; ``mask_resize="align_corners"`` here, the default). ``mask_resize="half_pixel"``
  uses the project's convention instead and no longer matches tf-keras-vis exactly.

Memory: the ``N·K`` masked images are never materialised. The ``(image, channel)`` pairs are
streamed in chunks of at most ``batch_size``; each chunk's masks are built by a compiled
``tf.function`` from the small ``(B, h, w)`` activation slices, and every call to
``backend.predict`` and ``backend.features`` receives at most ``batch_size`` images. Peak memory
is ``O(batch_size·H·W + N·h·w·K)``, independent of ``N·K``.

Works on an in-process model (:class:`~explain.backend.KerasBackend`) and on a SavedModel with a
``features`` signature (:class:`~explain.backend.SavedModelBackend`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain import registry
from explain.backend import Backend
from explain.iterative import ChannelCAM
from explain.resize import EPSILON, upsample
from explain.view import ExplainError

__all__ = ["scorecam", "ScoreCAM", "masked_inputs"]

_MASK_RESIZE = ("align_corners", "half_pixel")


def masked_inputs(activations: tf.Tensor, images: tf.Tensor, align_corners: bool = True) -> tf.Tensor:
    """``x ⊙ norm(up(A_k))`` for a chunk of pairs: ``activations`` ``(B, h, w)``, ``images`` ``(B, H, W, 3)``."""
    size = tf.shape(images)[1:3]
    masks = upsample(activations, size, align_corners=align_corners)
    lo = tf.reduce_min(masks, axis=(1, 2), keepdims=True)
    hi = tf.reduce_max(masks, axis=(1, 2), keepdims=True)
    masks = (masks - lo) / (hi - lo + EPSILON)
    return images * masks[..., tf.newaxis]


_COMPILED: dict[tuple[tuple[int, ...], tuple[int, ...], bool], Callable[..., tf.Tensor]] = {}


def _masker(target_hw: tuple[int, int], input_shape: tuple[int, int, int], align_corners: bool):
    key = (tuple(target_hw), tuple(input_shape), align_corners)
    if key not in _COMPILED:
        spec = [tf.TensorSpec([None, *target_hw], tf.float32), tf.TensorSpec([None, *input_shape], tf.float32)]
        _COMPILED[key] = tf.function(lambda a, x: masked_inputs(a, x, align_corners), input_signature=spec)
    return _COMPILED[key]


def scorecam(
    backend: Backend,
    images: np.ndarray,
    class_index: Any = None,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
    relu: bool = True,
    mask_resize: str = "align_corners",
) -> dict[str, np.ndarray]:
    """Score-CAM of ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]`` (iterative convention).

    Args:
        backend: Needs ``features`` (target activations and logits) and ``predict``.
        class_index: ``None``/``-1`` = predicted class, an int, or ``(N,)`` ints.
        batch_size: At most this many images per ``backend`` call.
        should_continue: Checked before every batch; ``False`` raises :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the batches.
        relu: ReLU of the weighted sum (as tf-keras-vis's default ``activation_modifier``).
        mask_resize: ``"align_corners"`` (tf-keras-vis) or ``"half_pixel"``.

    Returns:
        ``heatmap`` (N,H,W) normalised and upsampled; ``heatmap_lowres`` (N,h,w) normalised;
        ``raw`` (N,h,w) the map ``L`` before normalisation; ``weights`` (N,K) the scores ``s_k``;
        ``class_index`` (N,); ``probabilities`` (N,C) of the unmasked images.

    Raises:
        ExplainError: bad images, class index, batch size or ``mask_resize``.
        MethodUnavailable: the backend has no ``features``.
        Cancelled: ``should_continue()`` returned False.
    """
    if mask_resize not in _MASK_RESIZE:
        raise ExplainError(f"mask_resize {mask_resize!r} is not supported; accepted: {list(_MASK_RESIZE)}")
    return ScoreCAM(backend, relu=relu, mask_resize=mask_resize, batch_size=batch_size,
                    should_continue=should_continue, progress=progress).explain(images, class_index)


class ScoreCAM(ChannelCAM):
    """Score-CAM on the iterative base: a pair's score is ``p_c(x ⊙ norm(up(A_k)))``, the weight itself."""

    name = "scorecam"
    unit = "masked images"

    def __init__(self, backend: Backend, mask_resize: str = "align_corners", **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.align_corners = mask_resize == "align_corners"

    def compute(self, images: np.ndarray, classes: np.ndarray) -> Any:
        n, h, w, k = self.activations.shape
        self.masker = _masker((h, w), self.backend.input_shape, self.align_corners)
        # (N, h, w, K) -> (N·K, h, w), pair p = image p // K, channel p % K.
        self.flat = np.ascontiguousarray(np.transpose(self.activations, (0, 3, 1, 2)).reshape(n * k, h, w))
        return super().compute(images, classes)

    def pair_scores(self, sl: slice, image_index: np.ndarray, channel: np.ndarray) -> np.ndarray:
        masked = self.masker(tf.constant(self.flat[sl]), tf.constant(self.images[image_index])).numpy()
        probs = np.asarray(self.backend.predict(masked))
        return probs[np.arange(len(image_index)), self.classes[image_index]]


registry.register(
    registry.Method(
        name="scorecam",
        fn=scorecam,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            registry.Param("batch_size", int, 32, lo=1, unit="images", doc="masked images per forward pass"),
            registry.Param("relu", bool, True, doc="ReLU of the weighted sum"),
            registry.Param("mask_resize", str, "align_corners", choices=_MASK_RESIZE,
                           doc="upsampling of the activation masks (align_corners = tf-keras-vis)"),
        ),
        label="Score-CAM",
        cost="costly",
        description="Score-CAM: ReLU(Σ_k p_c(x ⊙ norm(up(A_k)))·A_k), streamed in bounded batches",
    )
)
