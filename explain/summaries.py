"""Visual summaries of a classifier (seed 004, Godi et al., "Understanding Deep Architectures by
Interpretable Visual Summaries").

A *summary* of a class is a cluster of crisp image regions, taken from the optimised perturbation
masks of many images of the class, that the network uses with high regularity. The pipeline
(numpy + scikit-learn; no TensorFlow, the masks and activations are passed in):

1. **Regions** (:func:`extract_regions`). Each importance map ``heatmap = 1 − M`` (high =
   deleted by the optimisation = important) is thresholded (``heatmap ≥ threshold``) and split into
   connected components (``scipy.ndimage.label``, 4- or 8-connectivity). Optionally
   (``proposals="boxes"``/``"both"``) square box proposals of a few sizes, sliding with half
   their side, are added when at least ``box_fill`` of their pixels are masked. Candidates smaller
   than ``min_area_frac`` of the image are dropped; the rest are ranked by their importance mass
   (sum of the heat map over the region) and pruned by greedy non-maximum suppression on the IoU
   of the region footprints (``nms_iou``); at most ``max_regions`` per image are kept.

2. **Descriptors** (:func:`region_descriptors`). Seed 004 compares regions with Proposal Flow,
   which has no package. The project's stated replacement (SPEC.md §2 "Visual summaries") uses
   the network's own evidence plus the region's place in the image:

   * *appearance*: the target-layer activations ``A (h, w, K)`` averaged over the region's
     footprint at target resolution — the footprint is area-averaged down to ``h × w`` (each
     cell weighted by the fraction of its pixels inside the region, exact also when ``H/h`` is not
     an integer) and ``A`` is averaged with those weights — then optionally centred (minus the
     mean over the class's regions, ``center_features``) and L2-normalised;
   * *geometry*: ``g = (cy, cx, size, aspect)`` of the region's bounding box, with the centre
     relative to the image size, ``size = sqrt(box area / image area)`` and
     ``aspect = log2(box width / box height) / 4`` (a 2:1 box differs from a square one by 0.25,
     as much as a shift of the centre by a quarter of the image).

3. **Similarity** (:func:`region_similarity`)::

       S(a, b) = w_f · cos(f_a, f_b) + w_p · exp(−‖g_a − g_b‖² / σ²)

   with ``w_f = 0.6``, ``w_p = 0.4`` and ``σ = 0.5`` by default: appearance matters most, and
   two regions in "corresponding positions" (Proposal Flow's other ingredient) gain up to 0.4; a
   shift of the centre by a quarter of the image costs ``0.4 · (1 − e^{−1/4}) ≈ 0.09``, by half
   the image ``≈ 0.25`` (σ = 0.25 split regions of one object that were jittered by a few pixels
   into separate clusters). ``S ≤ 1``; ``S = 1`` for identical descriptors.

4. **Clustering** (:func:`summarize_class`). Affinity propagation on ``S``
   (``sklearn.cluster.AffinityPropagation(affinity="precomputed", random_state=seed)``), damping
   0.7 (0.9 on a retry when it does not converge) and a fixed preference 0.3 (roughly: a region
   would rather found its own cluster than join an exemplar less similar to it than 0.3; the
   median similarity of two regions of one class of the synthetic cities was 0.35–0.5 for the
   trained tiny VGG11 and ResNet18, the lower quartile 0.25–0.37). A fixed value keeps the
   number of summaries on one similarity scale across architectures, which is what seed 004
   compares; scikit-learn's default (``preference="median"`` here: the median of the input
   similarities) adapts to each class's own spread and splits even a homogeneous set of regions
   into several clusters. In each cluster at most **one region per image** is kept: the member
   most similar to the exemplar (the exemplar itself for its own image). A cluster is dropped when
   fewer than ``min_images`` images (or fewer than ``min_regularity`` of the class's images)
   contribute or when it is **incoherent**: the mean similarity
   over the pairs of its kept members is below ``coherence_threshold`` (0.5 by default).

5. **The summary** (:class:`Summary`): its members (image, box, footprint), their crops (when the
   images are given), their mean footprint (``mean_mask``), the objects they cover (with label
   maps: the pixel count per object name over the members' footprints, the majority object of each
   member and of the whole summary) and its **regularity**: the share of the class's images that
   contribute a member. Summaries are sorted by regularity, then coherence.

New images are mapped onto computed summaries with :func:`assign_regions` (nearest exemplar
above a similarity threshold, at most one region per summary and image); summaries round-trip
through JSON (:func:`summaries_to_json`, :func:`summaries_from_json`) with the exemplar
descriptors, so an assignment needs no recomputation.

Everything is deterministic for a seed: the region order is fixed (mass, then position) and the
only randomness is affinity propagation's tie-breaking noise, seeded by ``seed``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "Region",
    "RegionDescriptors",
    "Summary",
    "SIMILARITY_DEFAULTS",
    "label_components",
    "region_iou",
    "nms",
    "extract_regions",
    "region_descriptors",
    "region_similarity",
    "cluster_coherence",
    "one_region_per_image",
    "summarize_class",
    "assign_regions",
    "summaries_to_json",
    "summaries_from_json",
]

#: Default weights of :func:`region_similarity` (w_f, w_p, σ).
SIMILARITY_DEFAULTS: dict[str, float] = {"feature_weight": 0.6, "position_weight": 0.4, "sigma": 0.5}

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


# ------------------------------------------------------------------------------------ summaries
@dataclass
class Summary:
    """One visual summary of a class (module docstring, step 5).

    Attributes:
        index: Rank among the class's summaries (0 = most regular).
        members: One region per contributing image (``region.image`` indexes the class batch).
        image_ids: An id per member (the ``image_ids`` given, else the batch index).
        exemplar: Position of the exemplar in ``members``.
        similarity: ``(n,)`` similarity of each member to the exemplar.
        coherence: Mean similarity over the pairs of members (1 for a single member).
        regularity: Contributing images / images of the class.
        n_images: Images of the class that were summarised.
        mean_mask: ``(H, W)`` mean of the members' footprints (``None`` when loaded from JSON).
        crops: The members' image crops (boxes, pixels outside the footprint dimmed) when images
            were given.
        object_pixels: Object name -> pixels over the members' footprints (with label maps).
        member_objects: Majority object of each member's footprint (``None`` without label maps).
        exemplar_features: ``(K,)`` the exemplar's normalised feature descriptor.
        exemplar_geometry: ``(4,)`` the exemplar's geometry.
        feature_center: ``(K,)`` centre subtracted from the features (``None`` = none).
        similarity_params: The ``feature_weight``, ``position_weight`` and ``sigma`` used.
        class_name: Name of the class (optional).
    """

    index: int
    members: list[Region]
    image_ids: list[Any]
    exemplar: int
    similarity: np.ndarray
    coherence: float
    regularity: float
    n_images: int
    mean_mask: np.ndarray | None
    crops: list[np.ndarray] = field(default_factory=list)
    object_pixels: dict[str, int] = field(default_factory=dict)
    member_objects: list[str | None] = field(default_factory=list)
    exemplar_features: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exemplar_geometry: np.ndarray = field(default_factory=lambda: np.zeros(4))
    feature_center: np.ndarray | None = None
    similarity_params: dict[str, float] = field(default_factory=lambda: dict(SIMILARITY_DEFAULTS))
    class_name: str | None = None

    @property
    def size(self) -> int:
        """Number of members (= contributing images)."""
        return len(self.members)

    @property
    def object_shares(self) -> dict[str, float]:
        """Object name -> share of the members' footprint pixels, largest first."""
        total = sum(self.object_pixels.values())
        if not total:
            return {}
        return {k: v / total for k, v in sorted(self.object_pixels.items(), key=lambda kv: (-kv[1], kv[0]))}

    @property
    def majority_object(self) -> str | None:
        """The object with the most pixels over the members' footprints (``None`` without labels)."""
        shares = self.object_shares
        return next(iter(shares)) if shares else None

    def to_json(self, include_mean_mask: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (no crops or footprints; the mean mask on request)."""
        d: dict[str, Any] = {
            "index": int(self.index),
            "class_name": self.class_name,
            "regularity": float(self.regularity),
            "coherence": float(self.coherence),
            "n_images": int(self.n_images),
            "size": self.size,
            "exemplar": int(self.exemplar),
            "members": [
                {**r.to_json(), "image_id": _jsonable(i), "similarity": float(s), "object": o}
                for r, i, s, o in zip(self.members, self.image_ids, self.similarity,
                                      self.member_objects or [None] * self.size)
            ],
            "majority_object": self.majority_object,
            "object_pixels": {k: int(v) for k, v in self.object_pixels.items()},
            "object_shares": {k: round(float(v), 6) for k, v in self.object_shares.items()},
            "exemplar_descriptor": {"features": [float(v) for v in self.exemplar_features],
                                    "geometry": [float(v) for v in self.exemplar_geometry]},
            "feature_center": None if self.feature_center is None else [float(v) for v in self.feature_center],
            "similarity_params": {k: float(v) for k, v in self.similarity_params.items()},
        }
        if include_mean_mask and self.mean_mask is not None:
            d["mean_mask"] = np.round(self.mean_mask, 4).tolist()
        return d

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> "Summary":
        members = [Region(int(m["image"]), tuple(int(v) for v in m["box"]), None, float(m["score"]),
                          int(m["area"]), m.get("kind", "component"), tuple(m.get("image_size", (0, 0))))
                   for m in d["members"]]
        center = d.get("feature_center")
        return Summary(
            index=int(d["index"]), members=members, image_ids=[m.get("image_id") for m in d["members"]],
            exemplar=int(d["exemplar"]), similarity=np.array([m["similarity"] for m in d["members"]], np.float64),
            coherence=float(d["coherence"]), regularity=float(d["regularity"]), n_images=int(d["n_images"]),
            mean_mask=np.asarray(d["mean_mask"], np.float32) if "mean_mask" in d else None,
            object_pixels={k: int(v) for k, v in d.get("object_pixels", {}).items()},
            member_objects=[m.get("object") for m in d["members"]],
            exemplar_features=np.asarray(d["exemplar_descriptor"]["features"], np.float64),
            exemplar_geometry=np.asarray(d["exemplar_descriptor"]["geometry"], np.float64),
            feature_center=None if center is None else np.asarray(center, np.float64),
            similarity_params={k: float(v) for k, v in d.get("similarity_params", SIMILARITY_DEFAULTS).items()},
            class_name=d.get("class_name"),
        )


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item") and callable(v.item):
        try:
            return v.item()
        except (ValueError, TypeError):
            pass
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)


def summaries_to_json(summaries: Sequence[Summary], include_mean_mask: bool = False) -> list[dict[str, Any]]:
    """The summaries as JSON-serialisable dicts (exemplar descriptors included)."""
    return [s.to_json(include_mean_mask) for s in summaries]


def summaries_from_json(data: Sequence[Mapping[str, Any]]) -> list[Summary]:
    """Summaries rebuilt from :func:`summaries_to_json` (enough for :func:`assign_regions`)."""
    return [Summary.from_json(d) for d in data]


def cluster_coherence(similarity: np.ndarray, members: Sequence[int]) -> float:
    """Mean of ``similarity[i, j]`` over the ordered pairs ``i ≠ j`` of ``members`` (1 for one member)."""
    idx = np.asarray(members, dtype=np.int64)
    if idx.size < 2:
        return 1.0
    sub = np.asarray(similarity, np.float64)[np.ix_(idx, idx)]
    return float((sub.sum() - np.trace(sub)) / (idx.size * (idx.size - 1)))


def one_region_per_image(members: Sequence[int], exemplar: int, images: Sequence[int], similarity: np.ndarray) -> list[int]:
    """Keep at most one member per image: the exemplar for its own image, else the member most
    similar to the exemplar (ties: the lower index).

    Args:
        members: Indices of the cluster's regions.
        exemplar: Index of the exemplar (one of ``members``).
        images: Image of every region (indexed by region index).
        similarity: The region similarity matrix.

    Returns:
        The kept region indices, sorted by image.
    """
    S = np.asarray(similarity)
    by_image: dict[int, int] = {}
    for j in sorted(int(m) for m in members):
        img = int(images[j])
        cur = by_image.get(img)
        if cur is None or j == exemplar or (cur != exemplar and S[exemplar, j] > S[exemplar, cur]):
            by_image[img] = j
    return sorted(by_image.values(), key=lambda j: (int(images[j]), j))


def _affinity_propagation(S: np.ndarray, seed: int, preference: float | str, damping: float) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, exemplar indices)``; labels -1 when it did not converge at any damping."""
    from sklearn.cluster import AffinityPropagation
    from sklearn.exceptions import ConvergenceWarning

    n = S.shape[0]
    if n == 1:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    if isinstance(preference, str):
        if preference != "median":
            raise ValueError(f"preference {preference!r} must be a number or 'median'")
        preference = float(np.median(S[~np.eye(n, dtype=bool)]))
    for d in (damping, 0.9):
        ap = AffinityPropagation(affinity="precomputed", damping=d, preference=preference, max_iter=1000,
                                 convergence_iter=50, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="All samples have mutually equal similarities")
            ap.fit(S)
        centres = np.asarray(ap.cluster_centers_indices_, dtype=np.int64)
        labels = np.asarray(ap.labels_, dtype=np.int64)
        if centres.size and (labels >= 0).all():
            return labels, centres
    return np.full(n, -1, np.int64), np.zeros(0, np.int64)


def _member_objects(regions: Sequence[Region], label_maps: np.ndarray | None,
                    object_names: Mapping[int, str] | None) -> tuple[dict[str, int], list[str | None]]:
    if label_maps is None:
        return {}, [None] * len(regions)
    names = dict(object_names or {})
    pixels: dict[str, int] = {}
    majority: list[str | None] = []
    for r in regions:
        labs = np.asarray(label_maps[r.image])[r.footprint()].astype(np.int64)
        counts = np.bincount(labs, minlength=1)
        counts[0] = 0  # 0 = unlabelled, never an object
        nz = np.flatnonzero(counts)
        for k in nz:
            name = names.get(int(k), f"object_{int(k)}")
            pixels[name] = pixels.get(name, 0) + int(counts[k])
        majority.append(names.get(int(counts.argmax()), f"object_{int(counts.argmax())}") if nz.size else None)
    return pixels, majority


def _crop(image: np.ndarray, r: Region, dim: float = 0.3) -> np.ndarray:
    y0, x0, y1, x1 = r.box
    im = np.asarray(image)
    crop = im[y0:y1, x0:x1].astype(np.float32)
    fp = r.footprint()[y0:y1, x0:x1]
    crop = np.where(fp[..., None], crop, crop * dim)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8) if im.dtype == np.uint8 else crop.astype(np.float32)


def summarize_class(
    heatmaps: np.ndarray,
    activations: np.ndarray,
    label_maps: np.ndarray | None = None,
    object_names: Mapping[int, str] | None = None,
    seed: int = 0,
    *,
    images: np.ndarray | None = None,
    image_ids: Sequence[Any] | None = None,
    class_name: str | None = None,
    threshold: float = 0.5,
    min_area_frac: float = 0.005,
    max_regions: int = 5,
    connectivity: int = 8,
    proposals: str = "components",
    nms_iou: float = 0.5,
    feature_weight: float = SIMILARITY_DEFAULTS["feature_weight"],
    position_weight: float = SIMILARITY_DEFAULTS["position_weight"],
    sigma: float = SIMILARITY_DEFAULTS["sigma"],
    center_features: bool = False,
    preference: float | str = 0.3,
    damping: float = 0.7,
    coherence_threshold: float = 0.5,
    min_images: int = 2,
    min_regularity: float = 0.0,
) -> list[Summary]:
    """The visual summaries of one class (module docstring, steps 1–5).

    Args:
        heatmaps: ``(N, H, W)`` importance maps of the class's images (``1 − M``, high = important).
        activations: ``(N, h, w, K)`` target-layer activations of the same images.
        label_maps: ``(N, H, W)`` object indices (0 = unlabelled), optional.
        object_names: Object index -> name.
        seed: ``random_state`` of affinity propagation.
        images: ``(N, H, W, 3)`` images for the crops (optional).
        image_ids: An id per image recorded in the summaries (default: the batch index).
        class_name: Recorded in the summaries.
        threshold, min_area_frac, max_regions, connectivity, proposals, nms_iou: See
            :func:`extract_regions`.
        feature_weight, position_weight, sigma: See :func:`region_similarity`.
        center_features: Subtract the mean pooled activation of the class's regions before
            normalising (stored in each summary's ``feature_center``).
        preference: Affinity propagation's preference, or ``"median"`` for the median of the
            off-diagonal similarities.
        damping: Affinity propagation's damping (0.9 is tried when it does not converge).
        coherence_threshold: Clusters whose mean pairwise member similarity is below are dropped.
        min_images: Clusters to which fewer images contribute are dropped.
        min_regularity: Clusters to which fewer than this share of the ``N`` images contribute
            are dropped (seed 004's summaries are parts used "with high regularity").

    Returns:
        The summaries, most regular first.
    """
    heat = np.asarray(heatmaps, np.float32)
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must have shape (N, H, W); got {heat.shape}")
    n, H, W = heat.shape
    A = np.asarray(activations)
    if A.ndim != 4 or A.shape[0] != n:
        raise ValueError(f"activations must have shape ({n}, h, w, K); got {A.shape}")
    if not 0.0 <= float(min_regularity) <= 1.0:
        raise ValueError(f"min_regularity {min_regularity!r} must lie in [0, 1]")
    if label_maps is not None and np.asarray(label_maps).shape != (n, H, W):
        raise ValueError(f"label_maps must have shape {(n, H, W)}; got {np.asarray(label_maps).shape}")
    if images is not None and np.asarray(images).shape[:3] != (n, H, W):
        raise ValueError(f"images must have shape ({n}, {H}, {W}, 3); got {np.asarray(images).shape}")
    ids = list(range(n)) if image_ids is None else list(image_ids)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} image_ids for {n} images")
    params = {"feature_weight": float(feature_weight), "position_weight": float(position_weight), "sigma": float(sigma)}

    regions = extract_regions(heat, threshold, min_area_frac, max_regions, connectivity=connectivity,
                              proposals=proposals, nms_iou=nms_iou)
    if not regions:
        return []
    desc = region_descriptors(regions, A, (H, W))
    if center_features:
        desc = region_descriptors(regions, A, (H, W), center=desc.pooled.mean(0))
    S = region_similarity(desc, desc, **params)
    labels, centres = _affinity_propagation(S, seed, preference, damping)

    summaries: list[Summary] = []
    for k, e in enumerate(centres):
        kept = one_region_per_image(np.flatnonzero(labels == k), int(e), [r.image for r in regions], S)
        if len(kept) < min_images or len(kept) < min_regularity * n - 1e-9:
            continue
        coherence = cluster_coherence(S, kept)
        if coherence < coherence_threshold:
            continue
        members = [regions[j] for j in kept]
        pixels, majority = _member_objects(members, label_maps, object_names)
        crops = [_crop(np.asarray(images)[r.image], r) for r in members] if images is not None else []
        summaries.append(Summary(
            index=-1, members=members, image_ids=[ids[r.image] for r in members], exemplar=kept.index(int(e)),
            similarity=S[e, kept].astype(np.float64), coherence=coherence, regularity=len(kept) / n, n_images=n,
            mean_mask=np.mean([r.footprint() for r in members], axis=0).astype(np.float32), crops=crops,
            object_pixels=pixels, member_objects=majority, exemplar_features=desc.features[e].copy(),
            exemplar_geometry=desc.geometry[e].copy(), feature_center=desc.center, similarity_params=dict(params),
            class_name=class_name,
        ))
    summaries.sort(key=lambda s: (-s.regularity, -s.coherence, s.exemplar_geometry.tolist()))
    for i, s in enumerate(summaries):
        s.index = i
    return summaries


def assign_regions(
    regions: Sequence[Region],
    activations: np.ndarray,
    image_size: Sequence[int],
    summaries: Sequence[Summary],
    threshold: float = 0.5,
    one_per_summary: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Map new regions to computed summaries: each region goes to the summary whose exemplar is
    most similar, when that similarity is at least ``threshold``.

    The descriptors are computed as for the summaries (same feature centre and similarity weights,
    read from the summaries). With ``one_per_summary``, an image contributes at most one region
    to a summary (the most similar one; the others are left unassigned), as in the clustering.

    Args:
        regions: Regions of new images (e.g. from :func:`extract_regions`).
        activations: ``(N, h, w, K)`` target-layer activations of those images.
        image_size: ``(H, W)`` of those images.
        summaries: Summaries of one model and class (computed, or from :func:`summaries_from_json`).
        threshold: Least similarity for an assignment.
        one_per_summary: Keep at most one region per image and summary.

    Returns:
        ``(assigned, score)``: ``(R,)`` int summary ``index`` or -1, and ``(R,)`` the best
        similarity (``-inf`` without summaries).
    """
    R = len(regions)
    if R == 0 or not summaries:
        return np.full(R, -1, np.int64), np.full(R, -np.inf)
    params = dict(summaries[0].similarity_params)
    desc = region_descriptors(regions, activations, image_size, center=summaries[0].feature_center)
    ex_f = np.stack([s.exemplar_features for s in summaries])
    ex_g = np.stack([s.exemplar_geometry for s in summaries])
    if ex_f.shape[1] != desc.features.shape[1]:
        raise ValueError(f"summaries have {ex_f.shape[1]} feature channels; the activations have {desc.features.shape[1]}")
    S = region_similarity(desc, (ex_f, ex_g), **params)
    best = S.argmax(1)
    score = S[np.arange(R), best]
    assigned = np.where(score >= threshold, np.array([s.index for s in summaries])[best], -1).astype(np.int64)
    if one_per_summary:
        taken: set[tuple[int, int]] = set()
        for j in np.argsort(-score, kind="stable"):  # most similar first, ties by order
            if assigned[j] < 0:
                continue
            key = (regions[j].image, int(assigned[j]))
            if key in taken:
                assigned[j] = -1
            else:
                taken.add(key)
    return assigned, score
