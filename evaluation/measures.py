"""Pure measure functions of the evaluation: residuals, descriptors, object ratios, agreement.

Numpy only: no TensorFlow, no gRPC. Every input is a numpy array that came back from the service;
every function is batched over images (leading axis ``N``) and validates its parameters up front.

Sources (the seed papers of ``docs/papers.md``, SPEC §3):

* Average residual AR: seed 000 eq. 5, seed 001 eq. 2.
* Descriptors ``D_cam`` and ``D_short``: seed 000 eqs. 3, 4 (§3.3).
* Object ratio ``R_pc``: seed 001 eq. 1; the 100-pixel selection rule: seed 000 §4.3.3, seed 001 §3.4.
* Annotation agreement: seed 000 §4.3.3, Figs. 11 and 12.
* Pointing game / mass share: standard localisation checks for the planted objects of the
  synthetic data (not from the seeds; SPEC §4).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explain.masks import _as_maps

__all__ = [
    "average_residual",
    "resize_maps",
    "descriptor_cam",
    "descriptor_short",
    "object_pixels_in_masks",
    "object_ratios",
    "mean_pixels_per_object",
    "selected_objects",
    "top_labels",
    "annotation_agreement",
    "agreement_curve",
    "pointing_game",
    "peak_points",
    "pointing_chance",
    "mass_share",
    "area_share",
]

# Range check tolerance for maps that should lie in [0, 1] (float32 round-off of a resize).
_UNIT_TOL = 1e-6


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _float_maps(maps: np.ndarray, name: str, ndim: int = 3) -> np.ndarray:
    return _as_maps(maps, name, ndim)


def _bool_masks(masks: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.all((arr == 0) | (arr == 1)):
        raise ValueError(f"{name} must be boolean or 0/1 numbers")
    return arr.astype(bool)


def _int_labels(labels: np.ndarray, num_classes: int, n: int) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1; got {num_classes!r}")
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one class per image; got shape {lab.shape}")
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers; got dtype {lab.dtype}")
    if n and (lab.min() < 0 or lab.max() >= num_classes):
        bad = lab[(lab < 0) | (lab >= num_classes)][0]
        raise ValueError(f"label {int(bad)} is out of range for num_classes={num_classes} (0..{num_classes - 1})")
    return lab.astype(np.int64)


def _counts(counts: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (N, num_objects); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return arr


# ---------------------------------------------------------------------------------------------
# average residual and resizing
# ---------------------------------------------------------------------------------------------
def average_residual(map_a: np.ndarray, map_b: np.ndarray) -> np.ndarray:
    """Average residual between two models' normalised maps of the same images.

    ``AR(m1, m2) = Σ_ij |mask_norm_m1(i, j) − mask_norm_m2(i, j)| / (H·W)``
    (seed 000 eq. 5, seed 001 eq. 2). Both maps must already be at the same size (SPEC §3: resized to
    the input size first, see :func:`resize_maps`) and normalised to ``[0, 1]``; AR is then in
    ``[0, 1]``: 0 for identical maps, 1 for complementary binary maps.

    Parameters
    ----------
    map_a, map_b : arrays (N, H, W) with values in [0, 1]

    Returns
    -------
    float64 array (N,)
        AR per image.
    """
    a = _float_maps(map_a, "map_a")
    b = _float_maps(map_b, "map_b")
    if a.shape != b.shape:
        raise ValueError(
            f"map_a has shape {a.shape} and map_b {b.shape}; resize both to the input size first (resize_maps)"
        )
    for name, x in (("map_a", a), ("map_b", b)):
        if x.size and (x.min() < -_UNIT_TOL or x.max() > 1 + _UNIT_TOL):
            raise ValueError(
                f"{name} must be normalised to [0, 1]; got values in [{x.min():.6g}, {x.max():.6g}]"
            )
    return np.abs(a - b).mean(axis=(1, 2))


def _bilinear_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-pixel-centre bilinear source indices and weights along one axis.

    As TensorFlow's ``ResizeBilinear(half_pixel_centers=True)`` (what ``tf.image.resize`` with
    ``method="bilinear", antialias=False`` runs): ``x = (i + 0.5)·in/out − 0.5``,
    ``lower = max(floor(x), 0)``, ``upper = min(ceil(x), in − 1)``, ``lerp = x − floor(x)``.
    """
    scale = in_size / out_size
    x = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    xf = np.floor(x)
    lower = np.maximum(xf, 0).astype(np.int64)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.int64)
    lerp = x - xf
    return lower, upper, lerp


def resize_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a batch of maps with half-pixel centres.

    Matches ``tf.image.resize(maps[..., None], size, method="bilinear", antialias=False)`` (TF's
    ``ResizeBilinear`` with ``half_pixel_centers=True``; no anti-aliasing when shrinking): output pixel
    ``i`` samples the input at ``x = (i + 0.5)·in/out − 0.5``, clamped to the border. This is *not*
    ``scipy.ndimage.zoom`` (corner-aligned, what tf-keras-vis uses); see SPEC §2 "Grad-CAM".
    Computed in float64; TF computes in float32, so agreement is to ~1e-6.

    Parameters
    ----------
    maps : array (N, h, w)
    size : (H, W), positive integers

    Returns
    -------
    float64 array (N, H, W)
    """
    x = _float_maps(maps, "maps")
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive integers (H, W); got {size!r}")
    out_h, out_w = int(size[0]), int(size[1])
    _, in_h, in_w = x.shape
    if in_h < 1 or in_w < 1:
        raise ValueError(f"maps must have a non-empty spatial size; got shape {x.shape}")
    ty, by, ly = _bilinear_weights(in_h, out_h)
    lx, rx, wx = _bilinear_weights(in_w, out_w)
    top = x[:, ty, :]
    bottom = x[:, by, :]
    rows = top + (bottom - top) * ly[None, :, None]
    left = rows[:, :, lx]
    right = rows[:, :, rx]
    return left + (right - left) * wx[None, None, :]


# ---------------------------------------------------------------------------------------------
# descriptors
# ---------------------------------------------------------------------------------------------
def descriptor_cam(cam: np.ndarray) -> np.ndarray:
    """``D_cam = L^c_Grad-CAM`` flattened (seed 000 eq. 3).

    Parameters
    ----------
    cam : array (N, h, w)
        Grad-CAM localisation maps at the target-layer size.

    Returns
    -------
    float64 array (N, h·w), row-major.
    """
    x = _float_maps(cam, "cam")
    return x.reshape(x.shape[0], -1)


def descriptor_short(cam: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """``D_short = Σ_k (L^c ∘ A^k)`` flattened (seed 000 eq. 4).

    The element-wise product of the localisation map with every channel, summed over channels: a map
    of the target-layer size, reshaped "as above" (seed 000 §3.3), so a vector of length ``h·w``, not
    ``K``. Equivalently ``L ∘ Σ_k A^k``.

    Parameters
    ----------
    cam : array (N, h, w)
    activations : array (N, h, w, K)
        The target-layer activations ``A``.

    Returns
    -------
    float64 array (N, h·w)
    """
    L = _float_maps(cam, "cam")
    A = _float_maps(activations, "activations", ndim=4)
    if A.shape[:3] != L.shape:
        raise ValueError(
            f"activations have shape {A.shape}; expected (N, h, w, K) with (N, h, w) = {L.shape} like cam"
        )
    d = np.einsum("nhw,nhwk->nhw", L, A)
    return d.reshape(d.shape[0], -1)


# ---------------------------------------------------------------------------------------------
# object ratios R_pc
# ---------------------------------------------------------------------------------------------
def object_pixels_in_masks(
    masks: np.ndarray, label_maps: np.ndarray, num_objects: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Per image and object, the pixels inside the explanation and in the whole image.

    ``M_{p,i} = #{(x, y): label_i(x, y) = p and mask_i(x, y)}``,
    ``N_{p,i} = #{(x, y): label_i(x, y) = p}`` (the terms of seed 001 eq. 1).

    Parameters
    ----------
    masks : bool array (N, H, W)
        Visual explanations as binary masks (``mask_norm >= θ``), at the label-map size.
    label_maps : integer array (N, H, W)
        Per-pixel object index in ``[0, num_objects)``.
    num_objects : int, default 256

    Returns
    -------
    (inside, total) : int64 arrays (N, num_objects)
        ``M_{p,i}`` and ``N_{p,i}``.
    """
    m = _bool_masks(masks, "masks")
    lab = np.asarray(label_maps)
    if lab.shape != m.shape:
        raise ValueError(f"label_maps have shape {lab.shape}; expected {m.shape} like masks")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"label_maps must be integers; got dtype {lab.dtype}")
    if isinstance(num_objects, bool) or not isinstance(num_objects, (int, np.integer)) or num_objects < 1:
        raise ValueError(f"num_objects must be an integer >= 1; got {num_objects!r}")
    n = m.shape[0]
    if lab.size and (lab.min() < 0 or lab.max() >= num_objects):
        bad = lab[(lab < 0) | (lab >= num_objects)].flat[0]
        raise ValueError(f"label {int(bad)} is out of range for num_objects={num_objects} (0..{num_objects - 1})")
    flat = lab.reshape(n, -1).astype(np.int64) + (np.arange(n, dtype=np.int64) * num_objects)[:, None]
    total = np.bincount(flat.ravel(), minlength=n * num_objects).reshape(n, num_objects)
    inside = np.bincount(flat[m.reshape(n, -1)], minlength=n * num_objects).reshape(n, num_objects)
    return inside.astype(np.int64), total.astype(np.int64)


def object_ratios(inside: np.ndarray, total: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``R_pc = Σ_{i∈c} M_{p,i} / Σ_{i∈c} N_{p,i}`` (seed 001 eq. 1).

    The share of all pixels of object ``p`` in the images of class ``c`` that fall inside the visual
    explanations; in ``[0, 1]``.

    Parameters
    ----------
    inside, total : arrays (N, num_objects)
        ``M_{p,i}`` and ``N_{p,i}`` from :func:`object_pixels_in_masks`; ``inside <= total``.
    labels : integer array (N,)
        Class of each image (the ground-truth class ``c``).
    num_classes : int

    Returns
    -------
    float64 array (num_classes, num_objects)
        ``R_pc``; NaN where object ``p`` never appears in an image of class ``c``.
    """
    M = _counts(inside, "inside")
    Nt = _counts(total, "total")
    if M.shape != Nt.shape:
        raise ValueError(f"inside has shape {M.shape} and total {Nt.shape}; they must match")
    if np.any(M > Nt):
        raise ValueError("inside must not exceed total for any image and object")
    lab = _int_labels(labels, num_classes, M.shape[0])
    num = np.zeros((num_classes, M.shape[1]))
    den = np.zeros((num_classes, M.shape[1]))
    np.add.at(num, lab, M)
    np.add.at(den, lab, Nt)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def mean_pixels_per_object(inside: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean over the images of each class of the pixels of each object inside the explanation.

    ``mean_{c,p} = (1/N_c) Σ_{i∈c} M_{p,i}`` — the per-class histogram of seed 000 Fig. 7 and the
    quantity of the 100-pixel selection rule (seed 000 §4.3.3, seed 001 §3.4).

    Parameters
    ----------
    inside : array (N, num_objects)
    labels : integer array (N,)
    num_classes : int

    Returns
    -------
    float64 array (num_classes, num_objects)
        NaN rows for classes without images.
    """
    M = _counts(inside, "inside")
    lab = _int_labels(labels, num_classes, M.shape[0])
    sums = np.zeros((num_classes, M.shape[1]))
    np.add.at(sums, lab, M)
    n_c = np.bincount(lab, minlength=num_classes).astype(np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_c > 0, sums / np.where(n_c > 0, n_c, 1.0), np.nan)


def selected_objects(mean_pixels: np.ndarray, image_area: int, min_pixels_at_224: float = 100.0) -> np.ndarray:
    """Objects reported for a class: mean pixels inside the explanations above 100 at 224×224.

    ``selected_{c,p} = mean_{c,p} > min_pixels_at_224 · image_area / 224²`` (seed 000 §4.3.3: "Only if
    the number of average pixels is larger than 100, the object will be selected"; SPEC §3 scales the
    threshold with the image area). NaN means (classes without images) are never selected.

    Parameters
    ----------
    mean_pixels : array (num_classes, num_objects)
    image_area : int
        ``H·W`` of the label maps the counts were taken on.
    min_pixels_at_224 : float, default 100

    Returns
    -------
    bool array (num_classes, num_objects)
    """
    mp = np.asarray(mean_pixels, dtype=np.float64)
    if mp.ndim != 2:
        raise ValueError(f"mean_pixels must have shape (num_classes, num_objects); got shape {mp.shape}")
    if isinstance(image_area, bool) or not isinstance(image_area, (int, np.integer)) or image_area < 1:
        raise ValueError(f"image_area must be a positive integer (H*W); got {image_area!r}")
    if not np.isfinite(min_pixels_at_224) or min_pixels_at_224 < 0:
        raise ValueError(f"min_pixels_at_224 must be a finite number >= 0; got {min_pixels_at_224!r}")
    limit = float(min_pixels_at_224) * float(image_area) / (224.0 * 224.0)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(mp, nan=-np.inf) > limit


# ---------------------------------------------------------------------------------------------
# annotation agreement (seed 000 Figs. 11, 12)
# ---------------------------------------------------------------------------------------------
def _counts_from_input(label_maps_or_counts: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    arr = np.asarray(label_maps_or_counts)
    if arr.ndim == 2:
        if masks is not None:
            raise ValueError("masks apply to label maps (N, H, W) only; got counts (N, num_objects) and masks")
        return _counts(arr, "counts")
    if arr.ndim == 3:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"label maps must be integers; got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise ValueError(f"label maps must be >= 0; found {int(arr.min())}")
        m = np.ones(arr.shape, dtype=bool) if masks is None else masks
        num_objects = int(arr.max()) + 1 if arr.size else 1
        inside, _ = object_pixels_in_masks(m, arr, num_objects=num_objects)
        return inside.astype(np.float64)
    raise ValueError(
        f"label_maps_or_counts must be counts (N, num_objects) or label maps (N, H, W); got shape {arr.shape}"
    )


def top_labels(
    label_maps_or_counts: np.ndarray, threshold: float, masks: np.ndarray | None = None
) -> list[tuple[int, ...]]:
    """One or two object labels per image from the pixel counts inside its visual explanation.

    Reading of seed 000 §4.3.3 (the text around Figs. 11, 12), stated exactly:

    * the counts are the pixels of each object *inside the visual explanation* ("the number of total
      pixels of all objects appearing in the visual explanations"), i.e. ``M_{p,i}``;
    * the top object ``p1`` is the one with the most pixels (ties: the lower object index);
    * the runner-up ``p2`` is added when ``(n_{p1} + n_{p2}) / Σ_p n_p > t`` — *strictly* greater,
      as written ("is larger than this threshold"), and only if ``n_{p2} > 0``.

    Taken literally the rule is monotone in ``t``: a low ``t`` (0.5) almost always selects a second
    label, ``t = 1.0`` never does (the ratio cannot exceed 1). This reproduces the trends the seed
    describes (Fig. 11 strict accuracy rises with ``t``, Fig. 12 lenient accuracy falls). Note that the
    literal ratio is *high* when the top two dominate the explanation, so it also adds a tiny second
    object when the top one covers nearly everything; we keep the literal reading because it is what
    the paper states and what its figures' trends need.

    Parameters
    ----------
    label_maps_or_counts : array (N, num_objects) of counts, or integer label maps (N, H, W)
        Counts are used as given (pass ``inside`` of :func:`object_pixels_in_masks`). Label maps are
        counted over ``masks`` (the visual explanations) when given, else over the whole map.
    threshold : float
        ``t``; any finite number (the seed sweeps ``[0.5, 1.0]``).
    masks : bool array (N, H, W), optional
        Only with label maps.

    Returns
    -------
    list of N tuples
        ``(p1,)`` or ``(p1, p2)``; ``()`` for an image whose explanation contains no pixel.
    """
    if isinstance(threshold, bool) or not np.isscalar(threshold) or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number (e.g. in [0.5, 1.0]); got {threshold!r}")
    counts = _counts_from_input(label_maps_or_counts, masks)
    n, p = counts.shape
    if p == 0:
        return [() for _ in range(n)]
    # Descending by count, ascending by object index among ties.
    order = np.argsort(-counts, axis=1, kind="stable")
    rows = np.arange(n)
    n1 = counts[rows, order[:, 0]]
    n2 = counts[rows, order[:, 1]] if p > 1 else np.zeros(n)
    total = counts.sum(axis=1)
    out: list[tuple[int, ...]] = []
    for i in range(n):
        if total[i] <= 0:
            out.append(())
        elif n2[i] > 0 and (n1[i] + n2[i]) / total[i] > threshold:
            out.append((int(order[i, 0]), int(order[i, 1])))
        else:
            out.append((int(order[i, 0]),))
    return out


def annotation_agreement(
    selected: Sequence[tuple[int, ...]],
    annotated: Sequence[tuple[int, ...]],
    strict_mode: str = "subset",
) -> tuple[float, float]:
    """Accuracy of the selected labels against the human annotation (seed 000 Figs. 11, 12).

    * strict (Fig. 11, "correct only if all the selected labels are the same as human annotations"):
      with ``strict_mode="subset"`` (SPEC §3, the default) an image is correct when every selected
      label is among the annotated ones, ``S ⊆ A``; ``strict_mode="exact"`` requires ``S = A`` as sets
      (the other possible reading of the sentence).
    * lenient (Fig. 12, "when one of two selected labels is consistent with human annotations"): an
      image is correct when any selected label is annotated, ``S ∩ A ≠ ∅``.

    An empty selection (explanation without pixels) is wrong in both.

    Parameters
    ----------
    selected : sequence of N tuples of object indices (from :func:`top_labels`)
    annotated : sequence of N tuples (one or two annotated objects per image)
    strict_mode : {"subset", "exact"}

    Returns
    -------
    (strict, lenient) : floats in [0, 1]
    """
    if strict_mode not in ("subset", "exact"):
        raise ValueError(f"strict_mode must be one of 'subset', 'exact'; got {strict_mode!r}")
    if len(selected) != len(annotated):
        raise ValueError(f"selected has {len(selected)} images and annotated {len(annotated)}; they must match")
    if len(selected) == 0:
        raise ValueError("annotation_agreement needs at least one image; got none")
    strict_hits = 0
    lenient_hits = 0
    for s, a in zip(selected, annotated):
        s_set = {int(v) for v in s}
        a_set = {int(v) for v in a}
        if not s_set:
            continue
        if strict_mode == "subset":
            strict_hits += s_set <= a_set
        else:
            strict_hits += s_set == a_set
        lenient_hits += bool(s_set & a_set)
    n = len(selected)
    return strict_hits / n, lenient_hits / n


def agreement_curve(
    counts: np.ndarray,
    annotated: Sequence[tuple[int, ...]],
    thresholds: np.ndarray | Sequence[float] = np.linspace(0.5, 1.0, 11),
    masks: np.ndarray | None = None,
    strict_mode: str = "subset",
) -> dict[str, np.ndarray]:
    """Strict and lenient agreement as a function of the second-label threshold ``t``.

    The curves of seed 000 Figs. 11 (strict) and 12 (lenient): for each ``t``,
    ``selected = top_labels(counts, t)`` and ``annotation_agreement(selected, annotated)``.

    Parameters
    ----------
    counts : array (N, num_objects) or integer label maps (N, H, W) (see :func:`top_labels`)
    annotated : sequence of N tuples
    thresholds : 1-D array of floats, default ``0.5, 0.55, ..., 1.0``
    masks : bool array (N, H, W), optional, with label maps
    strict_mode : {"subset", "exact"}

    Returns
    -------
    dict with float64 arrays ``threshold``, ``strict``, ``lenient``, each (T,)
    """
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"thresholds must be a non-empty 1-D array of finite numbers; got {thresholds!r}")
    c = _counts_from_input(counts, masks)
    strict = np.empty(t.size)
    lenient = np.empty(t.size)
    for j, tj in enumerate(t):
        strict[j], lenient[j] = annotation_agreement(top_labels(c, float(tj)), annotated, strict_mode=strict_mode)
    return {"threshold": t, "strict": strict, "lenient": lenient}


# ---------------------------------------------------------------------------------------------
# localisation checks against known (planted) objects
# ---------------------------------------------------------------------------------------------
def _maps_and_targets(maps: np.ndarray, target_masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = _float_maps(maps, "maps")
    m = _bool_masks(target_masks, "target_masks")
    if x.shape != m.shape:
        raise ValueError(f"maps have shape {x.shape} and target_masks {m.shape}; they must match")
    return x, m


_PEAKS = ("first", "plateau_centre")


def peak_points(maps: np.ndarray, peak: str = "first", atol: float = 1e-6) -> np.ndarray:
    """The point each map points to: ``(N, 2)`` int ``(y, x)``.

    Parameters
    ----------
    maps : array (N, H, W)
    peak : ``"first"``: the first maximum in row-major order (``np.argmax``).
        ``"plateau_centre"``: among the pixels within ``atol`` of the maximum, the innermost one
        (largest Euclidean distance to the plateau's border), and among equally deep pixels the
        one nearest their centroid (then the first in row-major order). A saturated map (e.g. a
        perturbation mask's ``1 − M = 1``) then points to the middle of its plateau, not to its
        top-left corner.
    atol : Plateau tolerance for ``"plateau_centre"``.
    """
    x = _float_maps(maps, "maps")
    if peak not in _PEAKS:
        raise ValueError(f"peak {peak!r} is not one of {list(_PEAKS)}")
    n = x.shape[0]
    if peak == "first":
        return np.stack(np.unravel_index(np.argmax(x.reshape(n, -1), axis=1), x.shape[1:]), axis=1)
    from scipy import ndimage

    out = np.zeros((n, 2), np.int64)
    for i in range(n):
        top = x[i] >= x[i].max() - atol
        depth = np.where(top, ndimage.distance_transform_edt(np.pad(top, 1))[1:-1, 1:-1], -1.0)
        deepest = np.argwhere(depth == depth.max())  # row-major order
        out[i] = deepest[int(np.argmin(((deepest - deepest.mean(axis=0)) ** 2).sum(axis=1)))]
    return out


def _distance_to_targets(m: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest target pixel (inf without targets)."""
    from scipy import ndimage

    out = np.full(m.shape, np.inf)
    for i in range(m.shape[0]):
        if m[i].any():
            out[i] = ndimage.distance_transform_edt(~m[i])
    return out


def pointing_game(maps: np.ndarray, target_masks: np.ndarray, tolerance: float = 0.0,
                  peak: str = "first") -> np.ndarray:
    """Whether the point of each map (:func:`peak_points`) lies within ``tolerance`` pixels of
    its target mask (Zhang et al. 2016's pointing game; they use 15 px at 224 px).

    With ``tolerance=0`` (the default) the point must lie inside the mask. An image without any
    target pixel never hits.

    Parameters
    ----------
    maps : array (N, H, W)
    target_masks : bool array (N, H, W)
    tolerance : Euclidean distance in pixels, >= 0.
    peak : ``"first"`` or ``"plateau_centre"`` (see :func:`peak_points`).

    Returns
    -------
    bool array (N,)
    """
    x, m = _maps_and_targets(maps, target_masks)
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance {tolerance!r} must be a finite number >= 0")
    pts = peak_points(x, peak)
    n = x.shape[0]
    if tolerance == 0:
        return m[np.arange(n), pts[:, 0], pts[:, 1]]
    return _distance_to_targets(m)[np.arange(n), pts[:, 0], pts[:, 1]] <= tolerance


def pointing_chance(target_masks: np.ndarray, tolerance: float = 0.0) -> float:
    """Chance level of :func:`pointing_game`: the mean share of pixels within ``tolerance`` of a
    target pixel (the hit rate of a point drawn uniformly at random).

    Parameters
    ----------
    target_masks : bool array (N, H, W)
    tolerance : as in :func:`pointing_game`.
    """
    m = _bool_masks(target_masks, "target_masks")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance {tolerance!r} must be a finite number >= 0")
    if m.shape[0] == 0:
        return float("nan")
    return float((_distance_to_targets(m) <= tolerance).mean())


def mass_share(maps: np.ndarray, target_masks: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its target mask: ``Σ_{mask} L / Σ L``.

    Parameters
    ----------
    maps : array (N, H, W), non-negative
    target_masks : bool array (N, H, W)

    Returns
    -------
    float64 array (N,) in [0, 1]; NaN where a map sums to 0.
    """
    x, m = _maps_and_targets(maps, target_masks)
    if x.size and x.min() < 0:
        raise ValueError(f"maps must be non-negative for a mass share; found {x.min():.6g}")
    tot = x.sum(axis=(1, 2))
    ins = (x * m).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, ins / np.where(tot > 0, tot, 1.0), np.nan)


def area_share(target_masks: np.ndarray) -> np.ndarray:
    """Fraction of each image covered by its target mask, the chance level of :func:`mass_share`.

    Parameters
    ----------
    target_masks : bool array (N, H, W)

    Returns
    -------
    float64 array (N,)
    """
    m = _bool_masks(target_masks, "target_masks")
    return m.reshape(m.shape[0], -1).mean(axis=1)
