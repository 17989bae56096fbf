"""Occlusion heat maps (``occ``; seed 003 eq. 1, after Zeiler & Fergus 2014), batched over any backend.

Patches
-------
A grey square (value ``fill = 0.5``) of side ``s_px = max(1, round(s·H/224))`` pixels, where
``s = patch_size_at_224`` ∈ {10, 50, 100} is the side at 224×224 in the paper, scaled with the input
height (``min(s_px, H, W)`` when larger than the image). The square's top-left corner takes the
positions ``0, t, 2t, …`` along each axis, with stride ``t = stride`` (``1 ≤ t ≤ s_px``, so no pixel is skipped) or, by default,
``max(1, s_px // 2)``, and one more position ``L − s_px`` flush with the bottom/right edge when the
regular grid does not end there. So every pixel is covered by at least one patch, the border
included. ``J = J_rows·J_cols`` occluded images ``I_o,j`` per input image.

Formula
-------
With ``p = p(y | I)``, ``p_j = p(y | I_o,j)`` and ``O_j[i] = 1 − V_j[i]`` (1 under patch ``j``, 0
elsewhere), the map implemented (``raw``) is the **mean probability drop of the patches that cover
pixel i**::

    H[i] = Σ_j (p − p_j)·O_j[i] / Σ_j O_j[i]

Eq. 1 of seed 003, ``H = 1 − Σ_j p_j·V_j / J``, is also returned, literally, as ``eq1``. Why the
default is the former:

* eq. 1 as printed (``V_j = 1`` *outside* the patch) equals ``1 − S/J + Σ_j p_j·O_j[i]/J`` with
  ``S = Σ_j p_j``: it grows with the confidence that remains when pixel ``i`` is hidden, i.e. it
  ranks pixels in the *reverse* order of importance, contradicting the paper's own text ("regions
  that cause large confidence drops [are] more important"); with a single patch covering the image
  it is 1 everywhere whatever the model does;
* read with ``V_j`` as the occlusion indicator (``O_j``), eq. 1 is ``1 − Σ_j p_j·O_j[i]/J``; where
  every pixel is covered by the same number ``n`` of patches this is
  ``1 − (n/J)·p + (n/J)·H[i]``, an increasing affine function of ``H`` — the same heat map after
  per-image normalisation. ``H`` divides by the per-pixel coverage ``n_i`` instead of ``J`` (so
  the border, covered by fewer patches, is not biased) and measures the drop from ``p`` instead of
  from 1;
* with one patch equal to the image, ``H = p(y|I) − p(y|grey image)`` everywhere: the predicted
  probability drop, as the project's issue requires.

``heatmap`` is ``H`` normalised per image, ``(H − min)/(max − min + 1e-7)`` (all zeros when
``H`` is constant).

Batching
--------
All ``N·J`` occluded images of a request are generated lazily and sent through
``backend.predict`` in batches of ``batch_size`` (crossing image boundaries, so batches are full);
``should_continue()`` is checked before every batch (:class:`~explain.backend.Cancelled` when
False). The result equals the one-image-at-a-time loop up to the backend's batch-size round-off:
the per-patch probabilities are accumulated in float64 in the same patch order either way.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from explain import registry
from explain.backend import Backend
from explain.checks import check_batch_size, resolve_classes
from explain.iterative import PairwiseMethod, check_batch
from explain.view import ExplainError

__all__ = [
    "occlusion",
    "Occlusion",
    "patch_side",
    "patch_positions",
    "check_batch",
    "check_batch_size",
    "resolve_classes",
]


# ---------------------------------------------------------------------------------------------
# Patch geometry


def patch_side(patch_size_at_224: Any, height: int, width: int | None = None) -> int:
    """``max(1, round(s·H/224))``, at most ``min(H, W)``."""
    if isinstance(patch_size_at_224, bool) or not isinstance(patch_size_at_224, (int, float, np.integer, np.floating)) \
            or not patch_size_at_224 > 0:
        raise ExplainError(f"patch_size_at_224 {patch_size_at_224!r} must be a positive number (e.g. 10, 50, 100)")
    side = max(1, int(round(float(patch_size_at_224) * height / 224.0)))
    return min(side, height, width if width is not None else height)


def patch_positions(length: int, side: int, stride: int) -> np.ndarray:
    """Top-left offsets ``0, stride, 2·stride, …`` plus ``length − side`` (flush with the edge)."""
    last = length - side
    pos = list(range(0, last + 1, stride))
    if pos[-1] != last:
        pos.append(last)
    return np.asarray(pos, np.int64)


# ---------------------------------------------------------------------------------------------
# The method


def occlusion(
    backend: Backend,
    images: np.ndarray,
    class_index: Any = None,
    patch_size_at_224: float = 10,
    stride: int | None = None,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
    fill: float = 0.5,
) -> dict[str, np.ndarray]:
    """Occlusion heat maps of ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]`` (iterative convention).

    Args:
        backend: Any backend (only ``predict`` is used, so a black-box SavedModel works).
        class_index: ``None``/``-1`` = predicted class, an int, or ``(N,)`` ints.
        patch_size_at_224: Patch side at 224 px (10, 50, 100 in seed 003), scaled with the input.
        stride: Patch stride in pixels; ``None`` = ``max(1, side // 2)``.
        batch_size: Occluded images per ``backend.predict`` call.
        should_continue: Checked before every batch; ``False`` raises :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the batches.
        fill: Grey value of the patch.

    Returns:
        ``heatmap`` (N,H,W) normalised ``raw``; ``raw`` (N,H,W) the mean probability drop ``H``;
        ``eq1`` (N,H,W) eq. 1 of seed 003 taken literally; ``class_index`` (N,); ``probabilities``
        (N,C) of the unoccluded images; ``occluded_probabilities`` (N,J) ``p(y|I_o,j)``;
        ``patch_positions`` (J,2) top-left (row, col); ``patch_size`` and ``stride`` in pixels.
    """
    return Occlusion(backend, patch_size_at_224, stride, fill, batch_size=batch_size,
                     should_continue=should_continue, progress=progress).explain(images, class_index)


class Occlusion(PairwiseMethod):
    """Occlusion on the iterative base: the pairs are ``(image, patch)``; see :func:`occlusion`."""

    name = "occlusion"
    unit = "occluded images"

    def __init__(self, backend: Backend, patch_size_at_224: float = 10, stride: int | None = None,
                 fill: float = 0.5, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.patch_size_at_224, self.stride, self.fill = patch_size_at_224, stride, fill

    def check_images(self, images: Any) -> np.ndarray:
        """The images, then the patch geometry (side, stride, fill) they imply."""
        images = super().check_images(images)
        _, height, width, _ = images.shape
        self.side = side = patch_side(self.patch_size_at_224, height, width)
        stride = max(1, side // 2) if self.stride is None else self.stride
        if isinstance(stride, (float, np.floating)) and float(stride).is_integer():
            stride = int(stride)  # e.g. 5.0 from a JSON/protobuf request
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ExplainError(f"stride {stride!r} must be an integer >= 1 (pixels) or None (= patch side // 2)")
        if stride > side:
            raise ExplainError(
                f"stride {stride} is larger than the patch side {side}: pixels between patches would never be "
                f"occluded; accepted: 1..{side}"
            )
        if not (0.0 <= float(self.fill) <= 1.0):
            raise ExplainError(f"fill {self.fill!r} must be a grey value in [0, 1]")
        self.stride = int(stride)
        return images

    def compute(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        n, height, width, _ = images.shape
        rows = patch_positions(height, self.side, self.stride)
        cols = patch_positions(width, self.side, self.stride)
        self.grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
        j_count = len(self.grid)
        self.images, self.classes = images, classes
        self.occluded = np.empty((n, j_count), np.float64)
        self.buf = np.empty((min(self.batch_size, n * j_count), height, width, 3), np.float32)
        self.stream(n, j_count)
        p0 = self.probabilities[np.arange(n), classes]
        raw, eq1 = _accumulate(self.occluded, p0, self.grid, self.side, height, width)
        self.extras.update({
            "eq1": eq1.astype(np.float32),
            "occluded_probabilities": self.occluded.astype(np.float32),
            "patch_positions": self.grid,
            "patch_size": np.int64(self.side),
            "stride": np.int64(self.stride),
        })
        return raw

    def reference(self, images: np.ndarray) -> np.ndarray:
        self.probabilities = self.predict_all(images, np.float64)
        return self.probabilities

    def on_pairs(self, sl: slice, image_index: np.ndarray, item_index: np.ndarray) -> None:
        batch = self.buf[: len(image_index)]
        np.take(self.images, image_index, axis=0, out=batch)
        for b, j in enumerate(item_index):
            r, c = self.grid[j]
            batch[b, r:r + self.side, c:c + self.side, :] = self.fill
        probs = np.asarray(self.backend.predict(batch), np.float64)
        self.occluded[image_index, item_index] = probs[np.arange(len(image_index)), self.classes[image_index]]


def _accumulate(occluded: np.ndarray, p0: np.ndarray, grid: np.ndarray, side: int, height: int, width: int):
    """``H`` and literal eq. 1 from the per-patch probabilities, with box sums via 2-D prefix sums.

    Returns float64 ``(N, H, W)`` arrays.
    """
    j_count = occluded.shape[1]
    # Difference arrays: +v at (r, c), −v at (r, c+s), −v at (r+s, c), +v at (r+s, c+s).
    r, c = grid[:, 0], grid[:, 1]
    corners = [(r, c, 1.0), (r, c + side, -1.0), (r + side, c, -1.0), (r + side, c + side, 1.0)]

    def box_sum(values: np.ndarray) -> np.ndarray:  # values (N, J) -> Σ_j values_j·O_j  (N, H, W)
        rows = values.shape[0]
        diff = np.zeros((rows, height + 1, width + 1), np.float64)
        for rr, cc, sign in corners:
            for i in range(rows):
                np.add.at(diff[i], (rr, cc), sign * values[i])
        return np.cumsum(np.cumsum(diff, axis=1), axis=2)[:, :height, :width]

    coverage = box_sum(np.ones((1, j_count)))                            # n_i = Σ_j O_j[i]
    covered_p = box_sum(occluded)                                        # Σ_j p_j O_j[i]
    raw = p0[:, None, None] - covered_p / coverage                       # Σ_j (p − p_j) O_j / Σ_j O_j
    total = occluded.sum(axis=1)[:, None, None]
    eq1 = 1.0 - (total - covered_p) / j_count                           # 1 − Σ_j p_j V_j / J
    return raw, eq1


registry.register(
    registry.Method(
        name="occlusion",
        fn=occlusion,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            registry.Param("patch_size_at_224", float, 10, lo=0.0, lo_open=True, unit="px at 224",
                           doc="patch side at 224 px (10, 50, 100 in seed 003), scaled with the input"),
            registry.Param("stride", int, None, lo=1, unit="px", doc="patch stride (None = half the patch side; at most the side)"),
            registry.Param("batch_size", int, 32, lo=1, unit="images", doc="occluded images per forward pass"),
            registry.Param("fill", float, 0.5, lo=0.0, hi=1.0, doc="grey value of the patch"),
        ),
        label="occlusion",
        label_for_params=lambda p: f"occlusion {p['patch_size_at_224']:g}",
        cost="costly",
        description="Occlusion (seed 003 eq. 1): mean drop of p(y) under the grey patches covering each pixel",
    )
)
