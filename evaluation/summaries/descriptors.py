"""Visual summaries, steps 2 and 3: region descriptors (target-layer appearance and box geometry)
and their similarity. See :mod:`evaluation.summaries`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from evaluation.summaries.regions import Region

__all__ = ["RegionDescriptors", "SIMILARITY_DEFAULTS", "region_descriptors", "region_similarity"]

#: Default weights of :func:`region_similarity` (w_f, w_p, σ).
SIMILARITY_DEFAULTS: dict[str, float] = {"feature_weight": 0.6, "position_weight": 0.4, "sigma": 0.5}


# ------------------------------------------------------------------------------------ descriptors
@dataclass
class RegionDescriptors:
    """Descriptors of ``R`` regions (see the module docstring, step 2).

    Attributes:
        features: ``(R, K)`` pooled activations, centred by ``center`` when given, L2-normalised.
        geometry: ``(R, 4)`` ``(cy, cx, size, aspect)``.
        pooled: ``(R, K)`` the pooled activations before centring and normalisation.
        center: ``(K,)`` the vector subtracted before normalising, or ``None``.
    """

    features: np.ndarray
    geometry: np.ndarray
    pooled: np.ndarray
    center: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, idx: Sequence[int] | np.ndarray) -> "RegionDescriptors":
        idx = np.asarray(idx, dtype=np.int64)
        return RegionDescriptors(self.features[idx], self.geometry[idx], self.pooled[idx], self.center)


def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``(n_out, n_in)``: the share of input pixel ``j`` that falls into output cell ``i``, cell
    ``i`` covering ``[i·n_in/n_out, (i+1)·n_in/n_out)``."""
    edges = np.arange(n_out + 1, dtype=np.float64) * n_in / n_out
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n_in)[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None)


def _l2n(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(norm > 1e-12, x / np.maximum(norm, 1e-12), 0.0)


def _geometry(box: Sequence[int], image_size: tuple[int, int]) -> np.ndarray:
    H, W = image_size
    y0, x0, y1, x1 = box
    bh, bw = max(1, y1 - y0), max(1, x1 - x0)
    return np.array([(y0 + y1) / 2.0 / H, (x0 + x1) / 2.0 / W, math.sqrt(bh * bw / (H * W)),
                     math.log2(bw / bh) / 4.0], np.float64)


def region_descriptors(
    regions: Sequence[Region],
    activations: np.ndarray,
    image_size: Sequence[int],
    center: np.ndarray | None = None,
) -> RegionDescriptors:
    """Appearance and geometry descriptors of regions (module docstring, step 2).

    Args:
        regions: Regions whose ``image`` indexes ``activations``.
        activations: ``(N, h, w, K)`` target-layer activations of the images.
        image_size: ``(H, W)`` (or ``(H, W, 3)``) of the images the regions come from.
        center: ``(K,)`` subtracted from the pooled activations before L2 normalisation.

    Returns:
        A :class:`RegionDescriptors` with one row per region, in the order of ``regions``.
    """
    A = np.asarray(activations, dtype=np.float64)
    if A.ndim != 4:
        raise ValueError(f"activations must have shape (N, h, w, K); got {A.shape}")
    H, W = int(image_size[0]), int(image_size[1])
    _, h, w, K = A.shape
    ry, rx = _area_matrix(h, H), _area_matrix(w, W)
    pooled = np.zeros((len(regions), K))
    geometry = np.zeros((len(regions), 4))
    for j, r in enumerate(regions):
        if not 0 <= r.image < A.shape[0]:
            raise ValueError(f"region {j} refers to image {r.image}; activations hold {A.shape[0]} images")
        fp = r.footprint().astype(np.float64)
        if fp.shape != (H, W):
            raise ValueError(f"region {j} has a footprint of shape {fp.shape}; image_size is {(H, W)}")
        weights = ry @ fp @ rx.T  # pixels of the region in each target cell
        total = weights.sum()
        pooled[j] = np.tensordot(weights, A[r.image], axes=([0, 1], [0, 1])) / max(total, 1e-12)
        geometry[j] = _geometry(r.box, (H, W))
    c = None if center is None else np.asarray(center, np.float64).reshape(K)
    feats = _l2n(pooled - c if c is not None else pooled)
    return RegionDescriptors(feats, geometry, pooled, c)


def _as_fg(d: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(d, RegionDescriptors):
        return d.features, d.geometry
    f, g = d
    f, g = np.asarray(f, np.float64), np.asarray(g, np.float64)
    return (f[None] if f.ndim == 1 else f), (g[None] if g.ndim == 1 else g)


def region_similarity(
    desc_a: RegionDescriptors | tuple[np.ndarray, np.ndarray],
    desc_b: RegionDescriptors | tuple[np.ndarray, np.ndarray],
    feature_weight: float = SIMILARITY_DEFAULTS["feature_weight"],
    position_weight: float = SIMILARITY_DEFAULTS["position_weight"],
    sigma: float = SIMILARITY_DEFAULTS["sigma"],
) -> np.ndarray:
    """Pairwise ``S = w_f · cos(f_a, f_b) + w_p · exp(−‖g_a − g_b‖² / σ²)``, shape ``(R_a, R_b)``.

    Descriptors are :class:`RegionDescriptors` or ``(features, geometry)`` pairs (rows or single
    vectors); the features are taken as already L2-normalised.
    """
    if sigma <= 0:
        raise ValueError(f"sigma {sigma!r} must be > 0")
    fa, ga = _as_fg(desc_a)
    fb, gb = _as_fg(desc_b)
    cos = fa @ fb.T
    d2 = ((ga[:, None, :] - gb[None, :, :]) ** 2).sum(-1)
    return feature_weight * cos + position_weight * np.exp(-d2 / sigma**2)
