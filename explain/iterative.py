"""One base for the iterative methods: batching, cancellation, progress and normalisation.

An iterative method runs the model forward many times on modified inputs (occluded, masked,
ablated or optimised images) through a :class:`~explain.backend.Backend`. What every such method
needs, and what this module owns once:

* **checks**: the images (:func:`check_batch`), ``batch_size`` (:func:`check_batch_size`) and the
  class index (:func:`resolve_classes`), all from :mod:`explain.checks`;
* **the reference pass**: the probabilities (or target-layer features) of the unmodified images,
  in batches of at most ``batch_size`` (:meth:`IterativeMethod.predict_all`,
  :meth:`IterativeMethod.features_all`);
* **batching, cancellation and progress**: :meth:`IterativeMethod.chunks` yields slices of at
  most ``batch_size`` items, calls ``should_continue()`` before each one (``False`` raises
  :class:`~explain.backend.Cancelled`, which the service maps to ``DEADLINE_EXCEEDED`` or
  ``CANCELLED``) and drives a tqdm bar when ``progress`` is set;
* **normalisation**: :meth:`IterativeMethod.normalize`, :func:`explain.masks.normalize` per image.

:class:`PairwiseMethod` streams the ``N·J`` ``(image, perturbation)`` pairs of a request (``J``
patches for occlusion, masks for RISE, channels for Score-CAM and Ablation-CAM) in chunks that
cross image boundaries, so every backend call but the last is full; a subclass says only what
one chunk of pairs does (:meth:`PairwiseMethod.on_pairs`). :class:`ChannelCAM` is the CAM family's
iterative member (``L = ReLU(Σ_k w_k A_k)``): Score-CAM and Ablation-CAM override only how a
pair is scored and how the scores become channel weights, as pytorch-grad-cam's ``ScoreCAM``
overrides only ``get_cam_weights`` of its ``BaseCAM``.

The template is :meth:`IterativeMethod.explain`: check the images, run the reference pass,
resolve the classes, :meth:`~IterativeMethod.compute` the raw map, and build the outputs. Every
method returns ``heatmap`` at input size (normalised per image), ``raw``, ``class_index`` and
``probabilities``; the CAM family adds ``heatmap_lowres`` at the target layer's size.
See ``docs/methods/perturbation.md``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from explain import checks, masks
from explain.backend import Backend, Cancelled, batches
from explain.resize import heatmap_outputs
from explain.checks import check_batch_size, resolve_classes

__all__ = [
    "IterativeMethod",
    "PairwiseMethod",
    "ChannelCAM",
    "check_batch",
    "check_batch_size",
    "resolve_classes",
]


# ---------------------------------------------------------------------------------------------
# Shared checks


def check_batch(images: Any, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Validate a batch for a backend; return float32 ``(N, H, W, 3)`` (uint8 is scaled by 1/255).

    :func:`explain.checks.check_images`, kept under this name for its callers.

    Raises:
        ExplainError: wrong rank or shape, unsupported dtype, empty batch, values outside [0, 1].
    """
    return checks.check_images(images, input_shape)


# ---------------------------------------------------------------------------------------------
# The base


class IterativeMethod:
    """Base of the iterative methods (see the module docstring).

    Args:
        backend: The model's forward passes.
        batch_size: At most this many images per ``backend`` call.
        should_continue: Checked before every batch; ``False`` raises :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the batches.

    An instance explains one request (it keeps the request's arrays while it runs); the method
    functions (:func:`explain.occlusion.occlusion`, …) build one per call.

    Attributes:
        name: The registry name (in messages and on the progress bar).
        unit: What one streamed item is, for the cancellation message (e.g. ``"occluded images"``).
    """

    name: str = "iterative"
    unit: str = "items"

    def __init__(
        self,
        backend: Backend,
        batch_size: int = 32,
        should_continue: Callable[[], bool] | None = None,
        progress: bool = False,
    ) -> None:
        self.backend = backend
        self.batch_size = check_batch_size(batch_size)
        self.should_continue = should_continue or (lambda: True)
        self.progress = progress
        self.extras: dict[str, Any] = {}

    # -- the template -------------------------------------------------------------------------
    def explain(self, images: Any, class_index: Any = None) -> dict[str, np.ndarray]:
        """Check, run the reference pass, resolve the classes, compute and build the outputs."""
        x = self.check_images(images)
        probabilities = self.reference(x)
        classes = self.resolve_classes(class_index, probabilities)
        raw = self.compute(x, classes)
        return self.outputs(raw, classes, probabilities)

    def check_images(self, images: Any) -> np.ndarray:
        """Float32 ``(N, H, W, 3)`` images in ``[0, 1]`` (:func:`check_batch`)."""
        return check_batch(images, self.backend.input_shape)

    def reference(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, C)`` of the unmodified images (float64 by default)."""
        return self.predict_all(images, np.float64)

    def resolve_classes(self, class_index: Any, probabilities: np.ndarray) -> np.ndarray:
        """The class of each image (:func:`resolve_classes`)."""
        return resolve_classes(class_index, probabilities)

    def compute(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The raw map of each image; extra outputs go to :attr:`extras`."""
        raise NotImplementedError

    def outputs(self, raw: np.ndarray, classes: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """``heatmap`` (normalised ``raw``), ``raw``, ``class_index``, ``probabilities`` and :attr:`extras`."""
        return {
            "heatmap": self.normalize(raw).astype(np.float32),
            "raw": np.asarray(raw).astype(np.float32),
            "class_index": classes,
            "probabilities": probabilities.astype(np.float32, copy=False),
            **self.extras,
        }

    # -- the shared machinery -----------------------------------------------------------------
    def keep_going(self, where: str) -> None:
        """Raise :class:`~explain.backend.Cancelled` when ``should_continue()`` returns False."""
        if not self.should_continue():
            raise Cancelled(f"{self.name} cancelled {where}")

    def chunks(self, total: int) -> Iterator[slice]:
        """Slices of ``range(total)`` of at most ``batch_size``, each after ``should_continue()``."""
        slices: Any = list(batches(total, self.batch_size))
        if self.progress:
            from tqdm.auto import tqdm

            slices = tqdm(slices, desc=self.name, unit="batch")
        for sl in slices:
            self.keep_going(f"after {sl.start} of {total} {self.unit}")
            yield sl

    def predict_all(self, images: np.ndarray, dtype: Any = np.float64) -> np.ndarray:
        """``backend.predict`` over ``images`` in batches, ``should_continue()`` before each."""
        out = []
        for sl in batches(images.shape[0], self.batch_size):
            self.keep_going("while predicting the original images")
            out.append(np.asarray(self.backend.predict(images[sl]), dtype))
        return np.concatenate(out)

    def features_all(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``backend.features`` (activations, logits) in batches, ``should_continue()`` before each."""
        acts, logits = [], []
        for sl in batches(images.shape[0], self.batch_size):
            self.keep_going("while computing features")
            a, y = self.backend.features(images[sl])
            acts.append(np.asarray(a, np.float32))
            logits.append(np.asarray(y, np.float32))
        return np.concatenate(acts), np.concatenate(logits)

    @staticmethod
    def normalize(raw: np.ndarray) -> np.ndarray:
        """Per-image min–max normalisation, :func:`explain.masks.normalize` (empty batches pass)."""
        raw = np.asarray(raw)
        return raw.copy() if raw.size == 0 else masks.normalize(raw)


class PairwiseMethod(IterativeMethod):
    """An iterative method over the ``N·J`` ``(image, j)`` pairs of a request.

    :meth:`stream` cuts ``range(N·J)`` into chunks of at most ``batch_size`` pairs (pair ``p`` is
    image ``p // J``, item ``p % J``), checks ``should_continue()`` before each and hands the
    chunk to :meth:`on_pairs`.
    """

    def stream(self, n: int, per_image: int) -> None:
        """Call :meth:`on_pairs` on every chunk of the ``n·per_image`` pairs."""
        for sl in self.chunks(n * per_image):
            pairs = np.arange(sl.start, sl.stop)
            self.on_pairs(sl, pairs // per_image, pairs % per_image)

    def on_pairs(self, sl: slice, image_index: np.ndarray, item_index: np.ndarray) -> None:
        """Process one chunk: pairs ``sl`` of images ``image_index`` and items ``item_index``."""
        raise NotImplementedError


class ChannelCAM(PairwiseMethod):
    """The iterative CAM family: ``L = ReLU(Σ_k w_k A_k)`` with weights from ``N·K`` forward passes.

    The reference pass computes the target activations ``A`` and logits; the pairs are
    ``(image, channel)``; a subclass gives the score of each pair (:meth:`pair_scores`) and turns
    the ``(N, K)`` scores into weights (:meth:`channel_weights`). The map is resized and normalised
    as the single-pass CAMs (:func:`explain.resize.heatmap_outputs`): ``heatmap`` at input size,
    ``heatmap_lowres`` at the target layer's size.

    Args:
        relu: ReLU of the weighted sum.
        **kwargs: :class:`IterativeMethod`'s.
    """

    unit = "masked images"

    def __init__(self, backend: Backend, relu: bool = True, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.relu = relu

    def reference(self, images: np.ndarray) -> np.ndarray:
        self.activations, self.logits = self.features_all(images)
        return tf.nn.softmax(self.logits, axis=-1).numpy()

    def compute(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        n, _, _, k = self.activations.shape
        self.images, self.classes = images, classes
        self.scores = np.empty(n * k, np.float32)
        self.stream(n, k)
        weights = self.channel_weights(self.scores.reshape(n, k), classes)
        self.extras["weights"] = weights.astype(np.float32, copy=False)
        cam = tf.einsum("nhwk,nk->nhw", self.activations, weights)
        return tf.nn.relu(cam) if self.relu else cam

    def on_pairs(self, sl: slice, image_index: np.ndarray, item_index: np.ndarray) -> None:
        self.scores[sl] = self.pair_scores(sl, image_index, item_index)

    def pair_scores(self, sl: slice, image_index: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """The score of each ``(image, channel)`` pair of the chunk, ``(len(sl),)``."""
        raise NotImplementedError

    def channel_weights(self, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Channel weights ``(N, K)`` from the pair scores ``(N, K)``; by default the scores."""
        return scores

    def outputs(self, raw: Any, classes: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        out = heatmap_outputs(raw, self.backend.input_shape[:2])
        return {
            "heatmap": out["heatmap_upsampled"].numpy(),
            "heatmap_lowres": out["heatmap"].numpy(),
            "raw": out["raw"].numpy(),
            **self.extras,
            "class_index": classes,
            "probabilities": probabilities,
        }
