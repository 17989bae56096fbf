"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko 2018), over any backend.

Masks (the authors' construction): for mask ``i``, a binary grid ``g_i`` of ``s×s`` cells
(``s = grid``), each cell 1 with probability ``p1``, is upsampled bilinearly (half-pixel centres)
to ``(s + 1)·c_h × (s + 1)·c_w`` pixels with ``c_h = ⌈H/s⌉``, ``c_w = ⌈W/s⌉``, and cropped to
``H×W`` at a random offset ``(δ_h, δ_w) ∈ [0, c_h) × [0, c_w)``. The saliency of class ``c`` is
the mask average weighted by the class **probability** of the masked image::

    S = 1 / (M · p1) · Σ_{i<M} p_c(x ⊙ M_i) · M_i            (M = n_masks)

``raw`` is ``S``; ``heatmap`` is ``S`` normalised per image, ``(S − min)/(max − min + 1e-7)``.

Seeding: mask ``i`` is drawn with its block of ``MASK_BLOCK`` masks by one generator,
``numpy.random.default_rng([seed, i // MASK_BLOCK])`` (see :func:`rise_masks`), so it depends on
``(seed, i)`` only — not on the batch size, the number of images or the order of the
batches — and :func:`rise_masks` regenerates any of them.

Memory: the ``N·M`` masked images are streamed as ``(mask, image)`` pairs, mask-major, in chunks
of at most ``batch_size``; each chunk's masks are made once from their indices for all the images
of the chunk, so peak memory is ``O(batch_size·H·W + N·H·W)``, independent of ``M``.
``should_continue()`` is checked before every batch.

Defaults follow the paper's ImageNet setting: ``n_masks = 4000``, ``grid = 7``, ``p1 = 0.5``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from explain import registry
from explain.backend import Backend
from explain.iterative import PairwiseMethod
from explain.params import check_float, check_int

__all__ = ["rise", "Rise", "rise_masks", "MAX_MASKS", "MASK_BLOCK"]

MAX_MASKS = 100_000
MASK_BLOCK = 128  # masks drawn by one generator (a constant: the stream must not depend on batching)


def _interpolation(n_out: int, n_in: int, offsets: np.ndarray, length: int) -> np.ndarray:
    """Rows ``offsets[b] .. offsets[b] + length`` of the bilinear resize matrix ``n_in -> n_out``.

    The resize is ``tf.image.resize(..., method="bilinear")``'s (half-pixel centres, edges
    clamped): output pixel ``o`` reads input ``t = (o + 0.5)·n_in/n_out − 0.5`` as
    ``(1 − f)·g[⌊t⌋₊] + f·g[min(⌈t⌉, n_in − 1)]`` with ``f = t − ⌊t⌋``. Returns float64
    ``(B, length, n_in)`` whose rows sum to 1.
    """
    t = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    lower = np.floor(t)
    frac = t - lower
    full = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(full, (rows, np.maximum(lower, 0).astype(np.int64)), 1.0 - frac)
    np.add.at(full, (rows, np.minimum(np.ceil(t), n_in - 1).astype(np.int64)), frac)
    return full[np.asarray(offsets)[:, None] + np.arange(length)[None, :]]


def _mask_blocks(blocks: np.ndarray, seed: int, grid: int, p1: float, ch: int,
                 cw: int) -> tuple[np.ndarray, np.ndarray]:
    """Grids ``(len(blocks)·MASK_BLOCK, s, s)`` and offsets ``(…, 2)`` of whole blocks of masks."""
    cells, offsets = [], []
    for block in blocks:
        rng = np.random.default_rng([int(seed), int(block)])
        cells.append(rng.random((MASK_BLOCK, grid, grid)) < p1)
        offsets.append(np.stack([rng.integers(0, ch, MASK_BLOCK), rng.integers(0, cw, MASK_BLOCK)], axis=1))
    return np.concatenate(cells), np.concatenate(offsets)


def rise_masks(indices: Any, seed: int, grid: int, p1: float, height: int, width: int) -> np.ndarray:
    """The masks of the given indices, float32 ``(len(indices), H, W)`` in ``[0, 1]``.

    Mask ``i`` belongs to block ``b = i // MASK_BLOCK``; one generator
    ``numpy.random.default_rng([seed, b])`` draws the block's ``MASK_BLOCK`` grids, then their
    row offsets, then their column offsets. The upsampling and the crop are one product per mask,
    ``R_h[δ_h : δ_h + H] · g_i · R_w[δ_w : δ_w + W]ᵀ`` with ``R`` the bilinear resize matrices
    (:func:`_interpolation`), computed for all the indices at once.
    """
    indices = np.asarray(indices, np.int64).reshape(-1)
    if indices.size == 0:
        return np.zeros((0, height, width), np.float32)
    ch, cw = math.ceil(height / grid), math.ceil(width / grid)
    blocks, where = np.unique(indices // MASK_BLOCK, return_inverse=True)
    cells, offsets = _mask_blocks(blocks, seed, grid, p1, ch, cw)
    pick = where.reshape(-1) * MASK_BLOCK + indices % MASK_BLOCK
    cells, offsets = cells[pick].astype(np.float64), offsets[pick]
    rows = _interpolation((grid + 1) * ch, grid, offsets[:, 0], height)  # (B, H, s)
    cols = _interpolation((grid + 1) * cw, grid, offsets[:, 1], width)  # (B, W, s)
    return np.matmul(np.matmul(rows, cells), cols.transpose(0, 2, 1)).astype(np.float32)


def rise(
    backend: Backend,
    images: np.ndarray,
    class_index: Any = None,
    n_masks: int = 4000,
    grid: int = 7,
    p1: float = 0.5,
    seed: int = 0,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """RISE saliency of ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]`` (iterative convention).

    Args:
        backend: Any backend (only ``predict`` is used, so a black-box SavedModel works).
        class_index: ``None``/``-1`` = predicted class, an int, or ``(N,)`` ints.
        n_masks: Number of masks ``M`` (``1..100000``).
        grid: Cells per side of the random grid ``s`` (``1..min(H, W)``).
        p1: Probability that a cell is kept (``(0, 1]``).
        seed: Seed of the masks (``>= 0``).
        batch_size: At most this many masked images per ``backend.predict`` call.
        should_continue: Checked before every batch; ``False`` raises :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the batches.

    Returns:
        ``heatmap`` (N,H,W) normalised; ``raw`` (N,H,W) the saliency ``S``; ``class_index`` (N,);
        ``probabilities`` (N,C) of the unmasked images; ``n_masks`` the number of masks used.

    Raises:
        ExplainError: a parameter out of its accepted range (the message names it, the value and the range).
        Cancelled: ``should_continue()`` returned False.
    """
    return Rise(backend, n_masks, grid, p1, seed, batch_size=batch_size, should_continue=should_continue,
                progress=progress).explain(images, class_index)


class Rise(PairwiseMethod):
    """RISE on the iterative base: the pairs are ``(image, mask)``; see :func:`rise`."""

    name = "rise"
    unit = "masked images"

    def __init__(self, backend: Backend, n_masks: int = 4000, grid: int = 7, p1: float = 0.5, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.n_masks, self.grid, self.p1, self.seed = n_masks, grid, p1, seed

    def check_images(self, images: Any) -> np.ndarray:
        """The images, then the parameters whose range depends on their size."""
        images = super().check_images(images)
        _, height, width, _ = images.shape
        self.n_masks = check_int("n_masks", self.n_masks, 1, MAX_MASKS)
        self.grid = check_int("grid", self.grid, 1, min(height, width))
        self.p1 = check_float("p1", self.p1, 0.0, 1.0, lo_open=True)
        self.seed = check_int("seed", self.seed, 0, 2**63 - 1)
        return images

    def reference(self, images: np.ndarray) -> np.ndarray:
        return self.predict_all(images, np.float32)

    def compute(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        n, height, width, _ = images.shape
        self.images, self.classes = images, classes
        self.total = np.zeros((n, height * width), np.float64)
        # mask-major pairs (pair p = mask p // N, image p % N): a chunk makes each of its masks once
        self.stream(self.n_masks, n)
        self.extras["n_masks"] = np.int64(self.n_masks)
        return self.total.reshape(n, height, width) / (self.n_masks * self.p1)

    def on_pairs(self, sl: slice, mask_index: np.ndarray, image_index: np.ndarray) -> None:
        n, height, width, _ = self.images.shape
        first = int(mask_index[0])
        masks = rise_masks(np.arange(first, int(mask_index[-1]) + 1), self.seed, self.grid, self.p1, height, width)
        local = mask_index - first
        # one product per mask of the chunk, over its contiguous run of images (no gather)
        masked = np.empty((len(local), *self.images.shape[1:]), np.float32)
        starts = np.flatnonzero(np.r_[True, local[1:] != local[:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(local)]):
            np.multiply(masks[local[a], :, :, None], self.images[image_index[a]:image_index[b - 1] + 1],
                        out=masked[a:b])
        probs = np.asarray(self.backend.predict(masked), np.float64)
        weights = np.zeros((n, len(masks)), np.float64)  # weights[i, m]: p_c(x_i ⊙ M_m), 0 off the chunk
        weights[image_index, local] = probs[np.arange(len(image_index)), self.classes[image_index]]
        self.total += weights @ masks.reshape(len(masks), -1)


registry.register(
    registry.Method(
        name="rise",
        fn=rise,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            registry.Param("n_masks", int, 4000, lo=1, hi=MAX_MASKS, unit="masks", doc="number of random masks"),
            registry.Param("grid", int, 7, lo=1, unit="cells", doc="cells per side of the random grid (at most the image side)"),
            registry.Param("p1", float, 0.5, lo=0.0, hi=1.0, lo_open=True, doc="probability that a cell is kept"),
            registry.Param("seed", int, 0, lo=0, hi=2**63 - 1, doc="seed of the masks"),
            registry.Param("batch_size", int, 32, lo=1, unit="images", doc="masked images per forward pass"),
        ),
        label="RISE",
        cost="costly",
        description="RISE: probability-weighted average of seeded random upsampled grid masks (Petsiuk et al. 2018)",
    )
)
