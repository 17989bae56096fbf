"""Visual summaries, steps 4 and 5: affinity-propagation clustering of the regions of a class into
summaries, their JSON form, and the assignment of new images' regions. See :mod:`evaluation.summaries`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation.summaries.descriptors import SIMILARITY_DEFAULTS, region_descriptors, region_similarity
from evaluation.summaries.regions import Region, extract_regions

__all__ = [
    "Summary",
    "cluster_coherence",
    "one_region_per_image",
    "summarize_class",
    "assign_regions",
    "summaries_to_json",
    "summaries_from_json",
]

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


def _checked_inputs(heatmaps: np.ndarray, activations: np.ndarray, label_maps: np.ndarray | None,
                    images: np.ndarray | None, image_ids: Sequence[Any] | None,
                    min_regularity: float) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """:func:`summarize_class`'s inputs checked: ``(heat float32 (N, H, W), activations, image ids)``."""
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
    return heat, A, ids


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
    heat, A, ids = _checked_inputs(heatmaps, activations, label_maps, images, image_ids, min_regularity)
    n, H, W = heat.shape
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
