"""Deletion and insertion curves and their areas (Petsiuk, Das, Saenko 2018, RISE, arXiv:1806.07421 §4.1).

Numpy only; the model is a caller-supplied, batched ``classify(images float32 (B, H, W, C)) ->
probabilities (B, num_classes)``, as in :mod:`evaluation.confidence`, so the same code runs against
the gRPC service, an in-process model or a hand-written test classifier.

For an image ``I`` (N = H·W pixels), its saliency map ``S`` and the explained class ``y``:

* Pixel order: the pixels sorted by ``S``, descending; ties in a seeded random order
  (:func:`explain.masks.tie_break_ranks`, the order :func:`explain.masks.top_rho` uses), so a plateau
  is not removed from the top rows first.
* Steps: ``n_k = round(k·N / steps)`` pixels for ``k = 0 … steps`` (:func:`step_counts`); the curve is
  sampled at the fractions ``f_k = k / steps``.
* Deletion: ``D_k = p_y(I with its first n_k pixels replaced by the deletion base)``; the base is the
  zero image, as the paper ("set to zero"). A good map makes ``D`` fall fast: low AUC is better.
* Insertion: ``J_k = p_y(insertion base with the first n_k pixels of I put back)``; the base is the
  blurred image (the paper starts from a blurred copy). A good map makes ``J`` rise fast: high AUC
  is better.
* ``AUC = Σ_k (c_k + c_{k+1})/2 · (f_{k+1} − f_k)`` (trapezoidal rule over ``[0, 1]``; with equal
  steps ``(Σ c − (c_0 + c_S)/2) / S``, the RISE code's ``auc``).

The anchors are Quantus (``quantus.metrics.faithfulness``) and Xplique (``xplique.metrics.Deletion``,
``Insertion``); neither is a dependency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.intervals import Interval, bootstrap_ci, compare_intervals, paired_bootstrap_ci
from explain.masks import tie_break_ranks

__all__ = ["step_counts", "pixel_order", "perturbed_images", "deletion_insertion", "CurveResult", "auc", "MODES",
           "AUCSummary", "auc_summary"]

Classify = Callable[[np.ndarray], np.ndarray]
MODES = ("deletion", "insertion")


def step_counts(num_pixels: int, steps: int) -> np.ndarray:
    """Pixels changed at each step: ``round(k·num_pixels / steps)`` for ``k = 0 … steps`` (int64, steps + 1)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1 (e.g. 20); got {steps!r}")
    if isinstance(num_pixels, bool) or not isinstance(num_pixels, (int, np.integer)) or num_pixels < 1:
        raise ValueError(f"num_pixels must be an integer >= 1; got {num_pixels!r}")
    k = np.arange(int(steps) + 1, dtype=np.int64)
    return (k * int(num_pixels) * 2 + int(steps)) // (2 * int(steps))  # round half up, exact in integers


def pixel_order(maps: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices of each map, most salient first; ties in the seeded random order.

    Parameters
    ----------
    maps : array (N, H, W), finite
    seed : int >= 0

    Returns
    -------
    int64 array (N, H·W)
    """
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"maps must have shape (N, H, W); got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("maps must be finite; found NaN or infinity")
    n, h, w = m.shape
    perm = np.argsort(tie_break_ranks(h * w, seed))
    flat = m.reshape(n, h * w)[:, perm]
    return perm[np.argsort(-flat, axis=1, kind="stable")]


def perturbed_images(image: np.ndarray, base: np.ndarray, order: np.ndarray, counts: np.ndarray, mode: str) -> np.ndarray:
    """The ``len(counts)`` images of one curve.

    ``mode="deletion"``: ``image`` with ``order[:n_k]`` taken from ``base``; ``"insertion"``: ``base``
    with ``order[:n_k]`` taken from ``image``.

    Parameters
    ----------
    image, base : arrays (H, W, C)
    order : int array (H·W,), from :func:`pixel_order`
    counts : int array (S + 1,), from :func:`step_counts`
    mode : {"deletion", "insertion"}

    Returns
    -------
    float32 array (S + 1, H, W, C)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(repr(m) for m in MODES)}; got {mode!r}")
    x = np.asarray(image, dtype=np.float32)
    b = np.asarray(base, dtype=np.float32)
    if x.ndim != 3 or b.shape != x.shape:
        raise ValueError(f"image and base must have the same shape (H, W, C); got {x.shape} and {b.shape}")
    h, w, c = x.shape
    start, other = (x, b) if mode == "deletion" else (b, x)
    # rank[p] = position of pixel p in the order; pixel p is changed at step k when rank[p] < n_k
    rank = np.empty(h * w, dtype=np.int64)
    rank[np.asarray(order)] = np.arange(h * w)
    changed = rank[None, :] < np.asarray(counts)[:, None]  # (S + 1, H·W)
    out = np.where(changed.reshape(-1, h, w, 1), other[None], start[None])
    return out.astype(np.float32)


@dataclass
class CurveResult:
    """Deletion and insertion curves of N images.

    Attributes
    ----------
    fractions : float64 (S + 1,), ``k / S``
    counts : int64 (S + 1,), pixels changed at each step
    deletion, insertion : float64 (N, S + 1), ``p_y`` along each curve
    deletion_auc, insertion_auc : float64 (N,)
    forward_passes : int, calls of ``classify``
    """

    fractions: np.ndarray
    counts: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    forward_passes: int = 0


def auc(curves: np.ndarray, fractions: np.ndarray | None = None) -> np.ndarray:
    """Area under each curve by the trapezoidal rule over ``fractions`` (default ``linspace(0, 1, S + 1)``).

    Parameters
    ----------
    curves : array (N, S + 1) or (S + 1,)

    Returns
    -------
    float64 array (N,) (a float for a single curve)
    """
    c = np.asarray(curves, dtype=np.float64)
    single = c.ndim == 1
    c = np.atleast_2d(c)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"curves must have shape (N, S + 1) with S >= 1; got shape {np.shape(curves)}")
    f = np.linspace(0.0, 1.0, c.shape[1]) if fractions is None else np.asarray(fractions, dtype=np.float64)
    if f.shape != (c.shape[1],) or np.any(np.diff(f) < 0):
        raise ValueError(f"fractions must be non-decreasing with {c.shape[1]} values; got shape {f.shape}")
    out = ((c[:, 1:] + c[:, :-1]) * 0.5 * np.diff(f)[None, :]).sum(axis=1)
    return float(out[0]) if single else out


def deletion_insertion(
    images: np.ndarray,
    maps: np.ndarray,
    labels: np.ndarray,
    classify: Classify,
    deletion_base: np.ndarray,
    insertion_base: np.ndarray,
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 128,
) -> CurveResult:
    """Deletion and insertion curves and AUCs of N images (see the module docstring).

    All ``2·N·(steps + 1)`` perturbed images go through ``classify`` in batches of at most
    ``batch_size`` (rounded to whole curves).

    Parameters
    ----------
    images : array (N, H, W, C), e.g. float32 in [0, 1]
    maps : array (N, H, W), saliency at the image size
    labels : int array (N,), the class ``y`` whose probability is tracked
    classify : callable, float32 (B, H, W, C) -> probabilities (B, num_classes)
    deletion_base, insertion_base : arrays (N, H, W, C)
    steps : int >= 1
    seed : int >= 0, tie order of :func:`pixel_order`
    batch_size : int >= 1

    Returns
    -------
    CurveResult
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got shape {x.shape}")
    n, h, w, _ = x.shape
    if np.shape(maps) != (n, h, w):
        raise ValueError(f"maps must have shape {(n, h, w)} (N, H, W) to match the images; got shape {np.shape(maps)}")
    for name, b in (("deletion_base", deletion_base), ("insertion_base", insertion_base)):
        if np.shape(b) != x.shape:
            raise ValueError(f"{name} must have shape {x.shape} like images; got shape {np.shape(b)}")
    lab = np.asarray(labels)
    if lab.shape != (n,) or (n and (not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0)):
        raise ValueError(f"labels must be non-negative integers of shape ({n},); got {lab.dtype} {lab.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    counts = step_counts(h * w, steps)
    order = pixel_order(maps, seed)
    s1 = counts.size
    curves = {m: np.zeros((n, s1)) for m in MODES}
    jobs = [(i, m) for i in range(n) for m in MODES]
    per_call = max(1, int(batch_size) // s1)
    calls = 0
    for start in range(0, len(jobs), per_call):
        chunk = jobs[start : start + per_call]
        batch = np.concatenate([
            perturbed_images(x[i], (deletion_base if m == "deletion" else insertion_base)[i], order[i], counts, m)
            for i, m in chunk])
        probs = np.asarray(classify(batch), dtype=np.float64)
        calls += 1
        if probs.ndim != 2 or probs.shape[0] != batch.shape[0]:
            raise ValueError(f"classify must return probabilities of shape ({batch.shape[0]}, num_classes); "
                             f"got shape {probs.shape}")
        for j, (i, m) in enumerate(chunk):
            curves[m][i] = probs[j * s1 : (j + 1) * s1, lab[i]]
    fractions = np.arange(s1, dtype=np.float64) / (s1 - 1)
    return CurveResult(fractions, counts, curves["deletion"], curves["insertion"], auc(curves["deletion"], fractions),
                       auc(curves["insertion"], fractions), calls)


@dataclass(frozen=True)
class AUCSummary:
    """One method's AUCs over N images with seeded 95% percentile-bootstrap intervals.

    Attributes:
        deletion, insertion: mean AUC over the images and its interval.
        deletion_vs_random, insertion_vs_random: paired mean difference (method − baseline) over the
            same images and its interval; NaN without a baseline.
        beats_random_deletion, beats_random_insertion: "holds" when the paired interval lies on the
            good side of 0 (below for deletion, above for insertion), "does not hold" on the other
            side, "inconclusive" when it contains 0 (or without a baseline).
    """

    deletion: Interval
    insertion: Interval
    deletion_vs_random: Interval
    insertion_vs_random: Interval
    beats_random_deletion: str
    beats_random_insertion: str


def auc_summary(
    deletion: np.ndarray,
    insertion: np.ndarray,
    random_deletion: np.ndarray | None = None,
    random_insertion: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> AUCSummary:
    """Intervals of a method's deletion and insertion AUC, and its paired difference from a baseline.

    Parameters
    ----------
    deletion, insertion : arrays (N,), the method's per-image AUCs
    random_deletion, random_insertion : arrays (N,) or None, the baseline ordering's AUCs on the same
        images in the same order (paired: image i of both is drawn together)
    n_boot : int >= 1, bootstrap resamples
    seed : int, seed of the resampling (equal seeds give equal intervals)

    Returns
    -------
    AUCSummary
    """
    zero = Interval(0.0, 0.0, 0.0)
    nan = Interval(float("nan"), float("nan"), float("nan"))
    out: dict[str, object] = {}
    for mode, values, baseline, good_below in (("deletion", deletion, random_deletion, True),
                                               ("insertion", insertion, random_insertion, False)):
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"{mode} AUCs must have shape (N,); got shape {v.shape}")
        out[mode] = bootstrap_ci(v, n_boot=n_boot, seed=seed)
        if baseline is None:
            out[f"{mode}_vs_random"], out[f"beats_random_{mode}"] = nan, "inconclusive"
            continue
        diff = paired_bootstrap_ci(v, np.asarray(baseline, dtype=np.float64), n_boot=n_boot, seed=seed)
        out[f"{mode}_vs_random"] = diff
        out[f"beats_random_{mode}"] = compare_intervals(zero, diff) if good_below else compare_intervals(diff, zero)
    return AUCSummary(**out)  # type: ignore[arg-type]
