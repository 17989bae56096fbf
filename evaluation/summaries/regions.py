"""Visual summaries, step 1: crisp regions of importance maps (connected components, box
proposals, non-maximum suppression). See :mod:`evaluation.summaries`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Region", "label_components", "region_iou", "nms", "extract_regions"]

_PROPOSALS = ("components", "boxes", "both")


# ------------------------------------------------------------------------------------ regions
@dataclass
class Region:
    """One crisp region of one image's importance mask.

    Attributes:
        image: Index of the image in the batch the region was extracted from.
        box: ``(y0, x0, y1, x1)`` bounding box in pixels, ends exclusive.
        mask: bool ``(H, W)`` footprint (``None`` for regions loaded from JSON).
        score: Importance mass: the sum of the heat map over the footprint.
        area: Pixels in the footprint.
        kind: ``"component"`` (connected component) or ``"box"`` (box proposal).
        image_size: ``(H, W)``.
    """

    image: int
    box: tuple[int, int, int, int]
    mask: np.ndarray | None
    score: float
    area: int
    kind: str = "component"
    image_size: tuple[int, int] = (0, 0)

    @property
    def centre(self) -> tuple[float, float]:
        """Centre ``(y, x)`` of the bounding box in pixels."""
        y0, x0, y1, x1 = self.box
        return ((y0 + y1) / 2.0, (x0 + x1) / 2.0)

    def footprint(self) -> np.ndarray:
        """The footprint; the bounding box when no mask is stored."""
        if self.mask is not None:
            return self.mask
        m = np.zeros(self.image_size, bool)
        y0, x0, y1, x1 = self.box
        m[y0:y1, x0:x1] = True
        return m

    def to_json(self) -> dict[str, Any]:
        return {"image": int(self.image), "box": [int(v) for v in self.box], "score": float(self.score),
                "area": int(self.area), "kind": self.kind, "image_size": [int(v) for v in self.image_size]}


def label_components(binary: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, int]:
    """Connected components of a 2-D boolean array.

    Args:
        binary: ``(H, W)`` bool.
        connectivity: 4 (edge neighbours) or 8 (edge and corner neighbours).

    Returns:
        ``(labels, n)``: int32 ``(H, W)`` with 0 = background and components numbered 1..n in
        raster order of their first pixel, and the number of components.
    """
    from scipy import ndimage

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity {connectivity!r} must be 4 or 8")
    binary = np.asarray(binary, bool)
    if binary.ndim != 2:
        raise ValueError(f"binary must be 2-D; got shape {binary.shape}")
    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(binary, structure=structure)
    return labels.astype(np.int32), int(n)


def region_iou(a: Region, b: Region) -> float:
    """Intersection over union of two regions' footprints (0 for different images)."""
    if a.image != b.image:
        return 0.0
    ay0, ax0, ay1, ax1 = a.box
    by0, bx0, by1, bx1 = b.box
    if min(ay1, by1) <= max(ay0, by0) or min(ax1, bx1) <= max(ax0, bx0):
        return 0.0
    if a.mask is None and b.mask is None:  # two rectangles
        inter = (min(ay1, by1) - max(ay0, by0)) * (min(ax1, bx1) - max(ax0, bx0))
        union = (ay1 - ay0) * (ax1 - ax0) + (by1 - by0) * (bx1 - bx0) - inter
        return float(inter / union) if union else 0.0
    fa, fb = a.footprint(), b.footprint()
    inter = int(np.count_nonzero(fa & fb))
    union = int(np.count_nonzero(fa | fb))
    return inter / union if union else 0.0


def _order_key(r: Region) -> tuple:
    return (-r.score, r.kind != "component", r.box)


def nms(regions: Sequence[Region], iou_threshold: float = 0.5) -> list[Region]:
    """Greedy non-maximum suppression: regions in decreasing importance mass (ties by kind and
    box), each kept when its footprint IoU with every kept region of the same image is below
    ``iou_threshold``."""
    kept: list[Region] = []
    for r in sorted(regions, key=_order_key):
        if all(region_iou(r, k) < iou_threshold for k in kept if k.image == r.image):
            kept.append(r)
    return kept


def _box_candidates(heat: np.ndarray, binary: np.ndarray, image: int, scales: Sequence[float],
                    fill: float, min_area: int) -> list[Region]:
    H, W = binary.shape
    ib = np.pad(np.cumsum(np.cumsum(binary.astype(np.int64), 0), 1), ((1, 0), (1, 0)))
    ih = np.pad(np.cumsum(np.cumsum(heat.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    out: list[Region] = []
    for s in scales:
        side = max(2, int(round(s * min(H, W))))
        if side > min(H, W) or side * side < min_area:
            continue
        stride = max(1, side // 2)
        ys = sorted(set(list(range(0, H - side + 1, stride)) + [H - side]))
        xs = sorted(set(list(range(0, W - side + 1, stride)) + [W - side]))
        for y0 in ys:
            for x0 in xs:
                y1, x1 = y0 + side, x0 + side
                count = ib[y1, x1] - ib[y0, x1] - ib[y1, x0] + ib[y0, x0]
                if count < fill * side * side:
                    continue
                mass = ih[y1, x1] - ih[y0, x1] - ih[y1, x0] + ih[y0, x0]
                out.append(Region(image, (y0, x0, y1, x1), None, float(mass), side * side, "box", (H, W)))
    return out


def extract_regions(
    masks: np.ndarray,
    threshold: float = 0.5,
    min_area_frac: float = 0.005,
    max_regions: int = 5,
    *,
    connectivity: int = 8,
    proposals: str = "components",
    nms_iou: float = 0.5,
    box_fill: float = 0.7,
    box_scales: Sequence[float] = (0.125, 0.25, 0.5),
) -> list[Region]:
    """Crisp regions of importance maps (see the module docstring, step 1).

    Args:
        masks: ``(N, H, W)`` or ``(H, W)`` importance maps, high = important (for a perturbation
            mask ``M``: ``1 − M``).
        threshold: A pixel is masked when its importance is ``≥ threshold``.
        min_area_frac: Regions smaller than this share of the image (``ceil``, at least one pixel)
            are dropped.
        max_regions: At most this many regions per image (the most important after NMS).
        connectivity: 4 or 8 for the connected components.
        proposals: ``"components"``, ``"boxes"`` (square boxes mostly inside the mask) or
            ``"both"``.
        nms_iou: Footprint IoU above which the less important of two regions is dropped.
        box_fill: Least share of masked pixels inside a box proposal.
        box_scales: Box sides as fractions of ``min(H, W)``; stride = half the side.

    Returns:
        Regions of all images, image by image, each image's in decreasing importance mass.
    """
    arr = np.asarray(masks, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W); got {arr.shape}")
    if proposals not in _PROPOSALS:
        raise ValueError(f"proposals {proposals!r} must be one of {_PROPOSALS}")
    if max_regions < 1:
        raise ValueError(f"max_regions {max_regions!r} must be >= 1")
    if not 0.0 <= min_area_frac <= 1.0:
        raise ValueError(f"min_area_frac {min_area_frac!r} must be in [0, 1]")
    n, H, W = arr.shape
    min_area = max(1, int(math.ceil(min_area_frac * H * W - 1e-9)))
    out: list[Region] = []
    for i in range(n):
        heat = np.nan_to_num(arr[i])
        binary = heat >= threshold
        cands: list[Region] = []
        if proposals in ("components", "both") and binary.any():
            labels, k = label_components(binary, connectivity)
            if k:
                areas = np.bincount(labels.ravel(), minlength=k + 1)
                masses = np.bincount(labels.ravel(), weights=heat.ravel().astype(np.float64), minlength=k + 1)
                for lab in range(1, k + 1):
                    if areas[lab] < min_area:
                        continue
                    fp = labels == lab
                    rows = np.flatnonzero(fp.any(1))
                    cols = np.flatnonzero(fp.any(0))
                    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
                    cands.append(Region(i, box, fp, float(masses[lab]), int(areas[lab]), "component", (H, W)))
        if proposals in ("boxes", "both") and binary.any():
            cands.extend(_box_candidates(heat, binary, i, box_scales, box_fill, min_area))
        out.extend(nms(cands, nms_iou)[:max_regions])
    return out
