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

from evaluation.summaries.clustering import (
    Summary,
    assign_regions,
    cluster_coherence,
    one_region_per_image,
    summaries_from_json,
    summaries_to_json,
    summarize_class,
)
from evaluation.summaries.descriptors import (
    SIMILARITY_DEFAULTS,
    RegionDescriptors,
    _area_matrix,  # noqa: F401 (tests check the area weights)
    region_descriptors,
    region_similarity,
)
from evaluation.summaries.regions import Region, extract_regions, label_components, nms, region_iou

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
