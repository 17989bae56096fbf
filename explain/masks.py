"""Importance-mask utilities: normalisation, thresholding, top-ρ masks, dilation, intersections.

Pure numpy on purpose (no TensorFlow, no gRPC): the evaluation package, the service and the
tests all use these on numpy arrays that came back from a model.

Conventions
-----------
* A *map* (heat map, localisation map) is a real array ``(N, H, W)``: one map per image, batched
  over the leading axis.
* A *mask* is a boolean array ``(N, H, W)``.
* Every function validates its parameters up front and raises ``ValueError`` naming the bad value
  and the accepted ones.

Sources
-------
* ``normalize``: ``mask_norm = (L - min L) / (max L - min L + 1e-7)`` per image (seeds 000, 001;
  SPEC §2 "Grad-CAM").
* ``threshold`` / ``visual_explanation``: keep the pixels with ``mask_norm >= θ``, the rest black
  (seeds 000 §3.2, 001 §2.1; SPEC §2 "Importance masks").
* ``top_rho``: ``M = 1`` on the ρ·N highest pixels (seed 003 §5, "simple thresholding to ensure that
  ρ% of the top features"), ties broken in a seeded random order (not row-major: issue 12).
* ``dilate``: the 3×3 dilation that grows masks (seed 003 §4.3, Algorithm 1 ``DilateGrow``).
* ``dilate_heatmap``: seed 003 §5 dilates the *raw* ``grad`` heat map 0, 2 or 5 times with a 3×3
  kernel; on a grey-scale image that is the 3×3 max filter (OpenCV ``cv2.dilate`` semantics).
* ``intersect``: agreement between importance functions (seed 003 §4.4).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "normalize",
    "threshold",
    "top_rho",
    "top_rho_count",
    "tie_break_ranks",
    "TIE_BREAKS",
    "dilate",
    "dilate_heatmap",
    "intersect",
    "visual_explanation",
]


def _as_maps(maps: np.ndarray, name: str = "maps", ndim: int = 3) -> np.ndarray:
    """Return ``maps`` as a float64 array ``(N, H, W)`` (or ``ndim`` axes); reject other ranks,
    non-numeric and non-finite values."""
    arr = np.asarray(maps)
    if arr.ndim != ndim:
        want = "(N, H, W)" if ndim == 3 else f"{ndim} axes"
        raise ValueError(f"{name} must have shape {want}; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; found NaN or infinity")
    return arr


def _as_masks(masks: np.ndarray, name: str = "masks") -> np.ndarray:
    """Return ``masks`` as a boolean array ``(N, H, W)``.

    Boolean arrays pass through; numeric arrays are accepted only if every value is 0 or 1.
    """
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (N, H, W); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be boolean or 0/1 numbers; got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)].flat[0]
        raise ValueError(f"{name} must be binary (0/1 or bool); found value {bad!r}")
    return arr.astype(bool)


def normalize(maps: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Min-max normalise each map of a batch.

    ``mask_norm = (L - min L) / (max L - min L + eps)`` per image (seeds 000, 001; SPEC §2).

    Parameters
    ----------
    maps : array (N, H, W) (any trailing rank >= 1 is accepted: the statistics are per leading index)
        Raw maps, for example Grad-CAM ``L`` at ``h×w`` or at input size.
    eps : float, default 1e-7
        Added to the range so that a constant map becomes all zeros instead of dividing by zero.

    Returns
    -------
    array (N, H, W), float32 if the input is float32, else float64
        Values in ``[0, 1)``; the maximum of a non-constant map is ``range / (range + eps)``.
    """
    arr = np.asarray(maps)
    if arr.ndim < 2:
        raise ValueError(f"maps must have a leading batch axis, e.g. (N, H, W); got shape {arr.shape}")
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0; got {eps!r}")
    out_dtype = np.float32 if arr.dtype == np.float32 else np.float64
    x = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("maps must be finite; found NaN or infinity")
    axes = tuple(range(1, x.ndim))
    lo = x.min(axis=axes, keepdims=True)
    hi = x.max(axis=axes, keepdims=True)
    return ((x - lo) / (hi - lo + eps)).astype(out_dtype)


def threshold(maps: np.ndarray, theta: float) -> np.ndarray:
    """Binary mask of the pixels whose value is at least ``theta``.

    ``M = [mask_norm >= θ]`` (seeds 000 §3.2, 001 §2.1: θ ∈ {0.5, 0.6}).

    Parameters
    ----------
    maps : array (N, H, W)
        Normalised maps (any real values are accepted).
    theta : float
        Threshold; any finite number.

    Returns
    -------
    bool array (N, H, W)
        Exactly the pixels with ``maps >= theta``.
    """
    arr = _as_maps(maps)
    if isinstance(theta, bool) or not np.isscalar(theta) or not np.isfinite(theta):
        raise ValueError(f"theta must be a finite number (e.g. 0.5 or 0.6); got {theta!r}")
    return arr >= float(theta)


def top_rho_count(rho: float, num_pixels: int) -> int:
    """Number of pixels a top-ρ mask keeps: ``ceil(ρ · num_pixels)``.

    The product is rounded to 9 decimals before the ceiling so that floating-point noise such as
    ``0.7 * 10 = 7.000000000000001`` does not add a pixel.
    """
    if isinstance(rho, bool) or not np.isscalar(rho) or not np.isfinite(rho) or not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1] (e.g. 0.05 or 0.25); got {rho!r}")
    if num_pixels < 1:
        raise ValueError(f"num_pixels must be >= 1; got {num_pixels!r}")
    return min(int(num_pixels), int(math.ceil(round(float(rho) * num_pixels, 9))))


TIE_BREAKS = ("random", "row_major")


def tie_break_ranks(num_pixels: int, seed: int = 0) -> np.ndarray:
    """The seeded random order among tied pixels used by :func:`top_rho`: a permutation of
    ``range(num_pixels)`` drawn with ``np.random.default_rng(seed)``; ``ranks[i]`` is pixel ``i``'s place.

    The same permutation serves every map of a batch (it depends only on ``(seed, H·W)``), so a map's
    mask does not depend on the other maps it is batched with.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    ranks = np.empty(int(num_pixels), dtype=np.int64)
    ranks[np.random.default_rng(int(seed)).permutation(int(num_pixels))] = np.arange(int(num_pixels))
    return ranks


def top_rho(maps: np.ndarray, rho: float, tie_break: str = "random", seed: int = 0) -> np.ndarray:
    """Binary mask of the ρ·N highest pixels of each map (seed 003 §5).

    ``k = ceil(ρ·H·W)`` pixels are set per image: the pixels are ordered by value, descending, and the
    first ``k`` kept. Ties (plateaus: dilated gradients, upsampled coarse maps, saturated maps) are
    broken by ``tie_break``:

    * ``"random"`` (default): a seeded random order among equal values (:func:`tie_break_ranks`,
      ``np.random.default_rng(seed)``), so a plateau that straddles the k-th value is sampled
      uniformly over its area instead of filling from the top rows. Deterministic for a seed.
    * ``"row_major"``: among equal values by flat (row-major) index, ascending (the behaviour before
      issue 12; it favours the image's top rows).

    Parameters
    ----------
    maps : array (N, H, W)
        Heat maps; must be finite.
    rho : float in (0, 1]
        Fraction of pixels to keep (seed 003 uses 0.05 and 0.25).
    tie_break : {"random", "row_major"}, default "random"
    seed : int >= 0, default 0
        Seed of the random order among ties (``tie_break="random"`` only).

    Returns
    -------
    bool array (N, H, W)
        Exactly ``ceil(rho*H*W)`` True values per image.
    """
    arr = _as_maps(maps)
    n, h, w = arr.shape
    k = top_rho_count(rho, h * w)
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {', '.join(repr(t) for t in TIE_BREAKS)}; got {tie_break!r}")
    flat = arr.reshape(n, h * w)
    if tie_break == "row_major":
        # Stable sort of -value: descending by value, ascending flat index among ties.
        order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    else:
        ranks = tie_break_ranks(h * w, seed)
        perm = np.argsort(ranks)  # pixels in their random tie order
        # stable sort of -value over the permuted pixels: ties keep the random order
        order = perm[np.argsort(-flat[:, perm], axis=1, kind="stable")[:, :k]]
    out = np.zeros((n, h * w), dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out.reshape(n, h, w)


def _check_iterations(iterations: int) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0; got {iterations!r}")
    return int(iterations)


def dilate(masks: np.ndarray, iterations: int = 1) -> np.ndarray:
    """3×3 binary dilation, repeated ``iterations`` times (seed 003, Algorithm 1 ``DilateGrow``).

    A pixel is set if any pixel of its 3×3 neighbourhood (8-connectivity) is set; outside the image
    counts as unset (zero padding), so the image border never creates pixels. One iteration grows an
    isolated pixel to a 3×3 block, ``n`` iterations to a ``(2n+1)×(2n+1)`` block (clipped at the
    border).

    Parameters
    ----------
    masks : bool or 0/1 array (N, H, W)
    iterations : int >= 0
        0 returns a copy.

    Returns
    -------
    bool array (N, H, W)
    """
    m = _as_masks(masks).copy()
    iterations = _check_iterations(iterations)
    for _ in range(iterations):
        if m.all():
            break
        # Separable: a 3×3 box max = 1×3 max then 3×1 max.
        row = m.copy()
        row[:, :, 1:] |= m[:, :, :-1]
        row[:, :, :-1] |= m[:, :, 1:]
        col = row.copy()
        col[:, 1:, :] |= row[:, :-1, :]
        col[:, :-1, :] |= row[:, 1:, :]
        m = col
    return m


def dilate_heatmap(maps: np.ndarray, iterations: int) -> np.ndarray:
    """Grey-scale 3×3 dilation (max filter) of a heat map, repeated ``iterations`` times.

    ``H'(i, j) = max_{|di|<=1, |dj|<=1} H(i+di, j+dj)``, neighbours outside the image ignored (the same
    as OpenCV's ``cv2.dilate`` default border). Seed 003 §5 dilates the raw ``grad`` heat map 0, 2 and
    5 times with a 3×3 kernel to smooth it before the top-ρ threshold.

    Parameters
    ----------
    maps : array (N, H, W)
    iterations : int >= 0

    Returns
    -------
    array (N, H, W), same dtype as a float input (float64 otherwise)
    """
    src = np.asarray(maps)
    out_dtype = src.dtype if np.issubdtype(src.dtype, np.floating) else np.float64
    x = _as_maps(maps).copy()
    iterations = _check_iterations(iterations)
    for _ in range(iterations):
        # Edge padding is equivalent to ignoring outside pixels for a max filter.
        row = x.copy()
        np.maximum(row[:, :, 1:], x[:, :, :-1], out=row[:, :, 1:])
        np.maximum(row[:, :, :-1], x[:, :, 1:], out=row[:, :, :-1])
        col = row.copy()
        np.maximum(col[:, 1:, :], row[:, :-1, :], out=col[:, 1:, :])
        np.maximum(col[:, :-1, :], row[:, 1:, :], out=col[:, :-1, :])
        x = col
    return x.astype(out_dtype, copy=False)


def intersect(*masks: np.ndarray) -> np.ndarray:
    """Pixels set in every one of several binary masks (agreement, seed 003 §4.4).

    Parameters
    ----------
    *masks : bool or 0/1 arrays (N, H, W), all the same shape; at least one.

    Returns
    -------
    bool array (N, H, W)
    """
    if len(masks) == 0:
        raise ValueError("intersect needs at least one mask; got none")
    arrays = [_as_masks(m, name=f"masks[{i}]") for i, m in enumerate(masks)]
    shape = arrays[0].shape
    for i, a in enumerate(arrays[1:], start=1):
        if a.shape != shape:
            raise ValueError(f"masks[{i}] has shape {a.shape}; expected {shape} like masks[0]")
    out = arrays[0].copy()
    for a in arrays[1:]:
        out &= a
    return out


def visual_explanation(images: np.ndarray, maps: np.ndarray, theta: float) -> np.ndarray:
    """Thresholded visual explanation: the image where ``map >= θ``, black elsewhere.

    Seeds 000 §3.2 and 001 §2.1: "visual explanations ... generated from original image by
    thresholding localization maps with value as θ".

    Parameters
    ----------
    images : uint8 array (N, H, W, C)
    maps : array (N, H, W)
        Normalised maps at the image size.
    theta : float

    Returns
    -------
    array (N, H, W, C), same dtype as ``images``
        ``images`` with the pixels where ``maps < theta`` set to 0.
    """
    imgs = np.asarray(images)
    if imgs.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got shape {imgs.shape}")
    keep = threshold(maps, theta)
    if keep.shape != imgs.shape[:3]:
        raise ValueError(
            f"maps have shape {keep.shape}; expected {imgs.shape[:3]} to match images {imgs.shape}"
        )
    return np.where(keep[..., None], imgs, np.zeros((), dtype=imgs.dtype)).astype(imgs.dtype, copy=False)
