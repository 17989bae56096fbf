"""Confidence gains SCG and CCG of importance masks (seed 003 §4, eqs. 2 and 3, Algorithm 1).

Numpy only. The model is reached through a caller-supplied, batched ``classify`` function
``classify(images float32 (B, H, W, C)) -> probabilities (B, num_classes)``, so the same code runs
against the gRPC service, an in-process Keras model or a hand-written test classifier.

Definitions (``y`` the label of the image, ``p(X) = p(X = y | w)`` the softmax probability of ``y``):

* Base image ``I_K``: the image under a kernel ``K`` that makes it uninformative: a 17×17 Gaussian
  blur ``G_k`` or the zero kernel ``Z_k`` (seed 003 §4.1, §5). The seed does not give σ; SPEC §3 fixes
  OpenCV's rule for a 17-tap kernel, ``σ = 0.3·((17 − 1)·0.5 − 1) + 0.8 = 2.9``, reflect-101 borders
  (OpenCV's default ``BORDER_REFLECT_101``). The seed's images are 224 px; at another size ``s``
  (the shorter side) the kernel scales with the image (:func:`blur_params`, issue 12): radius
  ``r = round(8·s/224)`` (at least 1), size ``2r + 1`` (odd), ``σ = 2.9·s/224`` — 17 and 2.9 at 224,
  7 and 1.24 at 96, 5 and 0.83 at 64, 37 and 6.6 at 512.
* Hybrid ``I_{M,K} = M·I + (1 − M)·I_K`` (seed 003 §4.1). Algorithm 1 starts from ``M`` itself
  (``dilate_first=False``, the default since issue 12); ``dilate_first=True`` grows it once with a
  3×3 dilation before blending (SPEC §3's earlier reading), for SCG and as the start of CCG alike.
* ``SCG = (p(I_{M,K}) − p(I_K)) / (p(I) − p(I_K))`` (seed 003 eq. 2).
* ``CCG = (p(I_{AM,K}) − p(I_K))·N / ((p(I) − p(I_K))·A_AM)`` (seed 003 eq. 3) with ``AM`` the mask grown
  by 3×3 dilations until the hybrid is classified as ``y`` (Algorithm 1), ``N`` the number of pixels
  and ``A_AM`` the area of ``AM``. Images that need more than 50 growths are left out (seed 003 §5).
* Left out (NaN, and counted by :func:`summarize`): ``p(I) − p(I_K) <= 0`` ("not_confident") and a
  negative gain ``p(I_{M,K}) − p(I_K) < 0`` ("negative_gain"), SPEC §3 / seed 003 §5. For CCG the gain
  is that of the accurate mask ``AM``, the hybrid that enters eq. 3.
* Left out of CCG also: images whose base image ``I_K`` is itself classified as ``y``
  ("base_is_y"): any mask, even an empty one, would stop Algorithm 1 at once, so eq. 3 measures the
  mask's area, not its content. Known when ``p_base`` is given as ``(N, num_classes)`` probabilities,
  or through ``base_is_y``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from explain.masks import dilate

__all__ = [
    "gaussian_kernel_1d",
    "blur_base",
    "zero_base",
    "base_images",
    "blur_params",
    "hybrid",
    "scg",
    "CCGResult",
    "ccg",
    "scg_for_masks",
    "base_classified_as_y",
    "summarize",
    "KERNELS",
]

KERNELS = ("gaussian", "zero")

# OpenCV's fixed tables for small kernels with sigma <= 0 (imgproc/src/smooth.dispatch.cpp).
_SMALL_GAUSSIAN_TAB = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}

Classify = Callable[[np.ndarray], np.ndarray]


# ---------------------------------------------------------------------------------------------
# base images and hybrids
# ---------------------------------------------------------------------------------------------
def gaussian_kernel_1d(size: int = 17, sigma: float | None = None) -> np.ndarray:
    """1-D Gaussian kernel exactly as OpenCV's ``cv2.getGaussianKernel(size, sigma)``.

    ``g_i = exp(−(i − (size − 1)/2)² / (2σ²))``, normalised so ``Σ g_i = 1``. When ``sigma`` is None or
    ``<= 0``: ``σ = 0.3·((size − 1)·0.5 − 1) + 0.8`` (2.9 for size 17), and for sizes 1, 3, 5, 7 OpenCV's
    fixed binomial tables.

    Parameters
    ----------
    size : odd int >= 1, default 17 (seed 003 §5: "a Gaussian kernel G_k of size 17*17")
    sigma : float or None

    Returns
    -------
    float64 array (size,)
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 1 (e.g. 17); got {size!r}")
    size = int(size)
    if sigma is not None and (isinstance(sigma, bool) or not np.isscalar(sigma) or not np.isfinite(sigma)):
        raise ValueError(f"sigma must be None or a finite number (<= 0 means OpenCV's rule); got {sigma!r}")
    if sigma is None or sigma <= 0:
        if size in _SMALL_GAUSSIAN_TAB:
            return np.array(_SMALL_GAUSSIAN_TAB[size], dtype=np.float64)
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    i = np.arange(size, dtype=np.float64) - (size - 1) * 0.5
    g = np.exp(-(i**2) / (2.0 * float(sigma) ** 2))
    return g / g.sum()


def _as_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W, C); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    return arr


def blur_base(images: np.ndarray, size: int = 17, sigma: float | None = None) -> np.ndarray:
    """Gaussian base image ``I_{G_k}`` (seed 003 §4.1, §5), as ``cv2.GaussianBlur(img, (size, size), σ)``.

    Separable correlation with :func:`gaussian_kernel_1d` along rows then columns, borders
    reflect-101 (``BORDER_REFLECT_101``: ``[1 2 3 4]`` padded by 2 is ``3 2 | 1 2 3 4 | 3 2``; larger pads
    keep reflecting). Computed in float64 and returned as float32 without rounding (OpenCV rounds a
    uint8 input back to uint8; callers that need that round themselves).

    Parameters
    ----------
    images : array (N, H, W, C), any numeric dtype, in its own value range
    size : odd int, default 17
    sigma : float or None (None/<= 0: OpenCV's rule, 2.9 for 17)

    Returns
    -------
    float32 array (N, H, W, C)
    """
    x = _as_images(images).astype(np.float64)
    g = gaussian_kernel_1d(size, sigma)
    r = (g.size - 1) // 2
    if r == 0:
        return (x * g[0]).astype(np.float32)
    # Rows (axis 2 = W), then columns (axis 1 = H).
    for axis in (2, 1):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        xp = np.pad(x, pad, mode="reflect")  # numpy "reflect" == OpenCV BORDER_REFLECT_101
        n = x.shape[axis]
        acc = np.zeros_like(x)
        for k in range(g.size):
            sl = [slice(None)] * 4
            sl[axis] = slice(k, k + n)
            acc += g[k] * xp[tuple(sl)]
        x = acc
    return x.astype(np.float32)


def zero_base(images: np.ndarray) -> np.ndarray:
    """Zero-kernel base image ``I_{Z_k}``: all zeros (black), float32, shape of ``images`` (seed 003 §4.1)."""
    x = _as_images(images)
    return np.zeros(x.shape, dtype=np.float32)


#: The seed's input side and its Gaussian kernel: 17×17, σ = OpenCV's rule for 17 taps (2.9).
REFERENCE_SIDE = 224
REFERENCE_RADIUS = 8
REFERENCE_SIGMA = 0.3 * ((17 - 1) * 0.5 - 1) + 0.8


def blur_params(side: int) -> tuple[int, float]:
    """Gaussian kernel ``(size, σ)`` for images whose shorter side is ``side`` pixels.

    Seed 003 blurs 224 px images with a 17×17 kernel (σ = 2.9, SPEC §3). Scaled with the image so the
    base image is equally uninformative at any size: ``r = max(1, round(8·side/224))``,
    ``size = 2r + 1`` (always odd), ``σ = 2.9·side/224`` (OpenCV's rule for 17 taps, scaled).
    ``side = 224`` gives exactly (17, 2.9); 96 gives (7, 1.243); 64 gives (5, 0.829).
    """
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 1:
        raise ValueError(f"side must be an integer >= 1 (the shorter image side in pixels); got {side!r}")
    scale = int(side) / REFERENCE_SIDE
    r = max(1, int(math.floor(REFERENCE_RADIUS * scale + 0.5)))
    return 2 * r + 1, REFERENCE_SIGMA * scale


def base_images(images: np.ndarray, kernel: str) -> np.ndarray:
    """Base images for a kernel name.

    Parameters
    ----------
    images : array (N, H, W, C)
    kernel : {"gaussian", "zero"}
        ``"gaussian"``: :func:`blur_base` with ``blur_params(min(H, W))`` (17×17, σ = 2.9 at 224 px);
        ``"zero"``: :func:`zero_base`.

    Returns
    -------
    float32 array (N, H, W, C)
    """
    if kernel == "gaussian":
        x = _as_images(images)
        size, sigma = blur_params(int(min(x.shape[1], x.shape[2])))
        return blur_base(x, size, sigma)
    if kernel == "zero":
        return zero_base(images)
    raise ValueError(f"kernel must be one of {', '.join(repr(k) for k in KERNELS)}; got {kernel!r}")


def _as_bool_masks(masks: np.ndarray, shape: tuple[int, int, int], name: str = "masks") -> np.ndarray:
    m = np.asarray(masks)
    if m.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (N, H, W) to match the images; got shape {m.shape}")
    if m.dtype == np.bool_:
        return m
    if not np.issubdtype(m.dtype, np.number) or not np.all((m == 0) | (m == 1)):
        raise ValueError(f"{name} must be boolean or 0/1 numbers")
    return m.astype(bool)


def hybrid(images: np.ndarray, base: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Hybrid image ``I_{M,K} = M·I + (1 − M)·I_K`` (seed 003 §4.1).

    Binary masks select pixels exactly (``M = 1`` gives ``I`` bit for bit). Soft masks in ``[0, 1]`` are
    accepted too and blend linearly.

    Parameters
    ----------
    images : array (N, H, W, C)
    base : array (N, H, W, C), the base images ``I_K``
    masks : array (N, H, W), bool or values in [0, 1]; broadcast over channels

    Returns
    -------
    float32 array (N, H, W, C)
    """
    x = _as_images(images)
    b = _as_images(base, "base")
    if b.shape != x.shape:
        raise ValueError(f"base has shape {b.shape}; expected {x.shape} like images")
    m = np.asarray(masks)
    if m.shape != x.shape[:3]:
        raise ValueError(f"masks must have shape {x.shape[:3]} (N, H, W) to match images; got shape {m.shape}")
    if m.dtype == np.bool_:
        return np.where(m[..., None], x, b).astype(np.float32)
    mf = m.astype(np.float64)
    if not np.all(np.isfinite(mf)) or mf.min(initial=0) < 0 or mf.max(initial=0) > 1:
        raise ValueError("masks must be boolean or values in [0, 1]")
    mf = mf[..., None]
    return (mf * x + (1.0 - mf) * b).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# SCG
# ---------------------------------------------------------------------------------------------
def _prob_vector(p: np.ndarray, name: str, n: int | None = None, labels: np.ndarray | None = None) -> np.ndarray:
    """Probabilities of the target class, (N,): passes (N,) through, gathers (N, C) by ``labels``."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim == 2:
        if labels is None:
            raise ValueError(f"{name} has shape {arr.shape}; pass the probabilities of the target class, shape (N,)")
        if arr.shape[0] != labels.shape[0]:
            raise ValueError(f"{name} has {arr.shape[0]} rows; expected {labels.shape[0]}, one per image")
        arr = arr[np.arange(arr.shape[0]), labels]
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, num_classes); got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values; expected {n}, one per image")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; found NaN or infinity")
    return arr


def scg(p_full: np.ndarray, p_hybrid: np.ndarray, p_base: np.ndarray) -> np.ndarray:
    """Simple Confidence Gain (seed 003 eq. 2).

    ``SCG = (p(I_{M,K}) − p(I_K)) / (p(I) − p(I_K))``; NaN (left out) where the denominator
    ``p(I) − p(I_K) <= 0`` or the gain ``p(I_{M,K}) − p(I_K) < 0`` (SPEC §3, seed 003 §5).

    Parameters
    ----------
    p_full, p_hybrid, p_base : arrays (N,)
        ``p(y)`` of the image, of the hybrid and of the base image.

    Returns
    -------
    float64 array (N,)
    """
    pf = _prob_vector(p_full, "p_full")
    n = pf.shape[0]
    ph = _prob_vector(p_hybrid, "p_hybrid", n)
    pb = _prob_vector(p_base, "p_base", n)
    num = ph - pb
    den = pf - pb
    ok = (den > 0) & (num >= 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), one class per image; got shape {lab.shape}")
    if n and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0):
        raise ValueError("labels must be non-negative integers (class indices)")
    return lab.astype(np.int64)


def _run_classify(classify: Classify, batch: np.ndarray, labels: np.ndarray) -> np.ndarray:
    probs = np.asarray(classify(batch), dtype=np.float64)
    b = batch.shape[0]
    if probs.ndim != 2 or probs.shape[0] != b:
        raise ValueError(f"classify must return probabilities of shape ({b}, num_classes); got shape {probs.shape}")
    if labels.size and labels.max() >= probs.shape[1]:
        raise ValueError(f"label {int(labels.max())} is out of range for classify output with {probs.shape[1]} classes")
    if not np.all(np.isfinite(probs)):
        raise ValueError("classify returned NaN or infinity")
    return probs


def _common_inputs(images, masks, labels, base, p_full, p_base):
    x = _as_images(images)
    n, h, w, _ = x.shape
    lab = _check_labels(labels, n)
    b = _as_images(base, "base")
    if b.shape != x.shape:
        raise ValueError(f"base has shape {b.shape}; expected {x.shape} like images")
    m = _as_bool_masks(masks, (n, h, w))
    pf = _prob_vector(p_full, "p_full", n, lab)
    pb = _prob_vector(p_base, "p_base", n, lab)
    return x, n, h, w, lab, b, m, pf, pb


def scg_for_masks(
    images: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    classify: Classify,
    base: np.ndarray,
    p_full: np.ndarray,
    p_base: np.ndarray,
    dilate_first: bool = False,
) -> np.ndarray:
    """SCG of a batch of masks: build the hybrids, classify them in one batch, apply eq. 2.

    The mask is used as it is (seed 003); ``dilate_first`` grows it once with a 3×3 dilation before
    blending (SPEC §3's earlier reading). Images
    whose denominator ``p(I) − p(I_K) <= 0`` are not classified at all.

    Parameters
    ----------
    images : array (N, H, W, C)
    masks : bool array (N, H, W)
    labels : int array (N,), the class ``y`` of each image
    classify : callable, float32 (B, H, W, C) -> probabilities (B, num_classes)
    base : array (N, H, W, C), base images ``I_K``
    p_full, p_base : arrays (N,) of ``p(y)``, or (N, num_classes) probabilities
    dilate_first : bool, default False

    Returns
    -------
    float64 array (N,), NaN for the images left out
    """
    x, n, h, w, lab, b, m, pf, pb = _common_inputs(images, masks, labels, base, p_full, p_base)
    if dilate_first:
        m = dilate(m, 1)
    ph = pb.copy()  # placeholder for skipped images; their SCG is NaN through the denominator
    idx = np.flatnonzero(pf - pb > 0)
    if idx.size:
        probs = _run_classify(classify, hybrid(x[idx], b[idx], m[idx]), lab[idx])
        ph[idx] = probs[np.arange(idx.size), lab[idx]]
    return scg(pf, ph, pb)


# ---------------------------------------------------------------------------------------------
# CCG
# ---------------------------------------------------------------------------------------------
def _base_is_y(p_base: np.ndarray, labels: np.ndarray, given: np.ndarray | None) -> np.ndarray:
    """Bool (N,): the base image is classified as ``y`` (``given``, or argmax of (N, C) ``p_base``)."""
    n = labels.shape[0]
    if given is not None:
        g = np.asarray(given)
        if g.shape != (n,) or g.dtype != np.bool_:
            raise ValueError(f"base_is_y must be a bool array of shape ({n},); got {g.dtype} {g.shape}")
        return g
    pb = np.asarray(p_base)
    if pb.ndim == 2:
        return np.argmax(pb, axis=1) == labels
    return np.zeros(n, dtype=bool)


def base_classified_as_y(p_base: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Bool (N,): ``argmax p(I_K) == y`` for ``(N, num_classes)`` base-image probabilities."""
    pb = np.asarray(p_base)
    lab = _check_labels(labels, pb.shape[0] if pb.ndim else 0)
    if pb.ndim != 2:
        raise ValueError(f"p_base must have shape (N, num_classes); got shape {pb.shape}")
    return _base_is_y(pb, lab, None)

@dataclass
class CCGResult:
    """Result of :func:`ccg` for a batch of N images.

    Attributes
    ----------
    ccg : float64 array (N,)
        Eq. 3 per image; NaN for the images left out.
    growths : int array (N,)
        Number of 3×3 growths after the initial mask (after ``dilate_first``) until the hybrid was
        classified as ``y``; for ``over_max_growth`` the growths performed; -1 for images never
        classified (``not_confident``, ``empty_mask``).
    area : int array (N,)
        ``A_AM``, pixels of the accurate mask; for left-out images the area of the last mask tried,
        -1 if never classified.
    excluded_reason : list of N (str or None)
        None (used), ``"not_confident"`` (``p(I) − p(I_K) <= 0``), ``"base_is_y"`` (the base image
        ``I_K`` is already classified as ``y``; checked after ``not_confident``), ``"negative_gain"``
        (``p(I_{AM,K}) − p(I_K) < 0``), ``"over_max_growth"`` (not classified as ``y`` within
        ``max_growth`` growths), ``"empty_mask"`` (a mask with no pixel never grows; eq. 3 would be 0/0).
    forward_passes : int
        Number of calls of ``classify`` (one batch per growth step).
    batch_sizes : list of int
        Images in each call, in order.
    p_accurate : float64 array (N,)
        ``p(I_{AM,K})`` of the hybrid that stopped the loop; NaN where none did.
    """

    ccg: np.ndarray
    growths: np.ndarray
    area: np.ndarray
    excluded_reason: list[str | None]
    forward_passes: int
    batch_sizes: list[int] = field(default_factory=list)
    p_accurate: np.ndarray | None = None


def ccg(
    images: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    classify: Classify,
    base: np.ndarray,
    p_full: np.ndarray,
    p_base: np.ndarray,
    max_growth: int = 50,
    dilate_first: bool = False,
    base_is_y: np.ndarray | None = None,
) -> CCGResult:
    """Concise Confidence Gain (seed 003 eq. 3, Algorithm 1), batched across images.

    Loop (Algorithm 1, one growth step for all images at once): every image not yet resolved is
    blended with its current mask and all of them go through ``classify`` in one batch. An image whose
    hybrid has ``argmax == y`` stops: ``AM`` is its current mask. Every other image grows its mask by one
    3×3 dilation. The initial mask ``M`` (Algorithm 1; grown once first only with ``dilate_first``) is
    tried at step 0, so
    at most ``max_growth`` growths are tried; an image still wrong after the ``max_growth``-th growth is
    left out (seed 003 §5: "we ignore the images where the M had to be grown more than 50 times").
    A mask that already covers the whole image and is still wrong can never become right, so it is
    left out as ``over_max_growth`` at once instead of spending more forward passes.

    ``CCG = (p(I_{AM,K}) − p(I_K))·N / ((p(I) − p(I_K))·A_AM)`` with ``N = H·W`` and ``A_AM`` the pixels
    of ``AM``. For the full mask ``A_AM = N`` and ``I_{AM,K} = I``, so CCG = 1.

    Parameters
    ----------
    images : array (N, H, W, C)
    masks : bool array (N, H, W), e.g. top-ρ masks or their intersections
    labels : int array (N,), the class ``y``
    classify : callable, float32 (B, H, W, C) -> probabilities (B, num_classes); deterministic
    base : array (N, H, W, C), base images ``I_K``
    p_full, p_base : arrays (N,) of ``p(y)``, or (N, num_classes)
    max_growth : int >= 0, default 50
    dilate_first : bool, default False
    base_is_y : bool array (N,) or None
        Images whose base image is classified as ``y`` (left out as ``"base_is_y"``). ``None``: taken
        from ``argmax p_base == y`` when ``p_base`` is ``(N, num_classes)``, else no image.

    Returns
    -------
    CCGResult
    """
    x, n, h, w, lab, b, m, pf, pb = _common_inputs(images, masks, labels, base, p_full, p_base)
    base_y = _base_is_y(p_base, lab, base_is_y)
    if isinstance(max_growth, bool) or not isinstance(max_growth, (int, np.integer)) or max_growth < 0:
        raise ValueError(f"max_growth must be an integer >= 0 (seed 003 uses 50); got {max_growth!r}")
    cur = dilate(m, 1) if dilate_first else m.copy()
    state = _CCGState.start(n, pf - pb, base_y, cur)
    batch_sizes: list[int] = []
    for step in range(int(max_growth) + 1):
        idx = np.flatnonzero(state.pending)
        if idx.size == 0:
            break
        probs = _run_classify(classify, hybrid(x[idx], b[idx], cur[idx]), lab[idx])
        batch_sizes.append(int(idx.size))
        grow = state.record_step(step, idx, probs, lab, pb, cur, h * w)
        if step == max_growth:
            state.leave_out(grow, "over_max_growth")
        elif grow.size:
            cur[grow] = dilate(cur[grow], 1)
    return CCGResult(
        ccg=state.ccg,
        growths=state.growths,
        area=state.area,
        excluded_reason=state.reasons,
        forward_passes=len(batch_sizes),
        batch_sizes=batch_sizes,
        p_accurate=state.p_accurate,
    )


@dataclass
class _CCGState:
    """Per-image state of :func:`ccg`'s growth loop (the fields of :class:`CCGResult` being filled)."""

    den: np.ndarray
    ccg: np.ndarray
    p_accurate: np.ndarray
    growths: np.ndarray
    area: np.ndarray
    reasons: list[str | None]
    pending: np.ndarray

    @classmethod
    def start(cls, n: int, den: np.ndarray, base_y: np.ndarray, mask: np.ndarray) -> "_CCGState":
        """Nothing resolved yet; the exclusions known before any forward pass applied in order."""
        state = cls(den=den, ccg=np.full(n, np.nan), p_accurate=np.full(n, np.nan),
                    growths=np.full(n, -1, dtype=np.int64), area=np.full(n, -1, dtype=np.int64),
                    reasons=[None] * n, pending=np.ones(n, dtype=bool))
        state.leave_out(np.flatnonzero(den <= 0), "not_confident")
        state.leave_out(np.flatnonzero(state.pending & base_y), "base_is_y")
        state.leave_out(np.flatnonzero(state.pending & ~mask.reshape(n, -1).any(axis=1)), "empty_mask")
        return state

    def leave_out(self, indices: np.ndarray, reason: str) -> None:
        for i in indices:
            self.reasons[i] = reason
            self.pending[i] = False

    def record_step(self, step: int, idx: np.ndarray, probs: np.ndarray, lab: np.ndarray, pb: np.ndarray,
                    cur: np.ndarray, num_pixels: int) -> np.ndarray:
        """Resolve the images of ``idx`` classified as ``y`` at ``step``; return those left to grow."""
        ok = np.argmax(probs, axis=1) == lab[idx]
        areas = cur[idx].reshape(idx.size, -1).sum(axis=1)
        self.growths[idx] = step
        self.area[idx] = areas
        for j in np.flatnonzero(ok):
            i = idx[j]
            self.pending[i] = False
            self.p_accurate[i] = probs[j, lab[i]]
            gain = self.p_accurate[i] - pb[i]
            if gain < 0:
                self.reasons[i] = "negative_gain"
            else:  # seed 003 eq. 3
                self.ccg[i] = gain * num_pixels / (self.den[i] * areas[j])
        wrong = idx[~ok]
        full = areas[~ok] == num_pixels  # a whole-image mask still wrong can never become right
        self.leave_out(wrong[full], "over_max_growth")
        return wrong[~full]


def summarize(values: np.ndarray) -> dict[str, float | int]:
    """Mean ×100 over the images used, and how many were used and left out (seed 003 Table 1).

    Parameters
    ----------
    values : array (N,), NaN for images left out (as returned by :func:`scg` and :func:`ccg`)

    Returns
    -------
    dict
        ``mean_x100`` (float, NaN if no image was used), ``n_used``, ``n_excluded`` (ints).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    used = np.isfinite(v)
    n_used = int(used.sum())
    mean = float(v[used].mean() * 100.0) if n_used else math.nan
    return {"mean_x100": mean, "n_used": n_used, "n_excluded": int(v.size - n_used)}
