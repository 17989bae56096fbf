"""Model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
arXiv:1810.03292 §3.1): the measures and the re-initialisation, numpy only.

The test re-initialises the model's layers top-down, cumulatively ("cascading": the logits layer
first, then the layer below it, …) and compares the saliency maps of the randomised model with the
original model's. A method whose maps stay similar does not depend on what the model learned.
Adebayo et al. report the Spearman rank correlation (with and without absolute values; the maps
here are non-negative heat maps, so the two coincide) and SSIM; so does this module.

* :func:`spearman`: Spearman's ρ of two maps = Pearson's r of their ranks, ties given their average
  rank (as ``scipy.stats.spearmanr``); NaN when a map is constant.
* :func:`ssim`: structural similarity (Wang et al. 2004) as ``skimage.metrics.structural_similarity``
  with its defaults: a 7×7 uniform window, ``K1 = 0.01``, ``K2 = 0.03``, ``C_i = (K_i·L)²`` with the data
  range ``L`` (1 for maps in [0, 1]), sample (co)variances (``·n/(n − 1)``, n = 49), the mean of the
  SSIM map over the pixels at least 3 from the border. Identical maps give exactly 1.
* :func:`reinitialized`: a fresh value for one weight, like Keras' default initialisers (what Quantus
  does with ``reset_parameters``): Glorot-uniform for kernels (``limit = sqrt(6 / (fan_in + fan_out))``,
  ``fan_in = receptive field · in``, ``fan_out = receptive field · out``), ones for a batch-norm
  ``gamma``, zeros for biases and ``beta``; moving statistics are left alone (they are not parameters).
* :func:`layer_groups`: the model's weights grouped by layer, top-down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["spearman", "ssim", "rank_average", "reinitialized", "layer_groups", "is_parameter"]


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"the two batches of maps must have the same shape; got {x.shape} and {y.shape}")
    if x.ndim != 3:
        raise ValueError(f"maps must have shape (N, H, W); got shape {x.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("maps must be finite; found NaN or infinity")
    return x, y


def rank_average(values: np.ndarray) -> np.ndarray:
    """Ranks 1 … n of each row, ties given their average rank (float64, the shape of ``values`` (N, n))."""
    v = np.asarray(values, dtype=np.float64)
    n, k = v.shape
    order = np.argsort(v, axis=1, kind="stable")
    sv = np.take_along_axis(v, order, axis=1)
    ranks = np.empty((n, k))
    for i in range(n):
        # groups of equal values: start index of each group, average of positions start..end
        new = np.r_[True, sv[i, 1:] != sv[i, :-1]]
        gid = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], k]
        avg = (starts + ends - 1) / 2.0 + 1.0
        ranks[i, order[i]] = avg[gid]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps ``a[i]``, ``b[i]`` (float64 (N,); NaN for a constant map)."""
    x, y = _pair(a, b)
    n = x.shape[0]
    rx = rank_average(x.reshape(n, -1))
    ry = rank_average(y.reshape(n, -1))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _box_mean(x: np.ndarray, win: int) -> np.ndarray:
    """Mean over a ``win × win`` window centred at each pixel, float64 (N, H, W).

    Borders are padded symmetrically (scipy's ``uniform_filter`` default); :func:`ssim` crops them.
    """
    r = win // 2
    p = np.pad(x, ((0, 0), (r, r), (r, r)), mode="symmetric")
    c = np.cumsum(np.cumsum(p, axis=1), axis=2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
    h, w = x.shape[1:]
    s = c[:, win : win + h, win : win + w] - c[:, :h, win : win + w] - c[:, win : win + h, :w] + c[:, :h, :w]
    return s / (win * win)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win_size: int = 7) -> np.ndarray:
    """Mean structural similarity of each pair of maps (float64 (N,)); see the module docstring.

    Parameters
    ----------
    a, b : arrays (N, H, W), H and W >= ``win_size``
    data_range : float > 0, the value range ``L`` (1 for normalised heat maps)
    win_size : odd int >= 3
    """
    x, y = _pair(a, b)
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 3 (skimage's default is 7); got {win_size!r}")
    if min(x.shape[1:]) < win_size:
        raise ValueError(f"maps of {x.shape[1]}×{x.shape[2]} are smaller than the {win_size}×{win_size} window")
    if not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a number > 0; got {data_range!r}")
    np_ = win_size * win_size
    cov = np_ / (np_ - 1.0)
    ux, uy = _box_mean(x, win_size), _box_mean(y, win_size)
    vx = cov * (_box_mean(x * x, win_size) - ux * ux)
    vy = cov * (_box_mean(y * y, win_size) - uy * uy)
    vxy = cov * (_box_mean(x * y, win_size) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    r = (win_size - 1) // 2
    return s[:, r : s.shape[1] - r, r : s.shape[2] - r].mean(axis=(1, 2))


def is_parameter(name: str) -> bool:
    """A weight the test re-initialises: not a batch-norm moving statistic."""
    leaf = name.split("/")[-1].split(":")[0]
    return leaf not in ("moving_mean", "moving_variance")


def reinitialized(name: str, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A re-initialised value (float32) for the weight ``name`` of ``shape``; see the module docstring."""
    leaf = name.split("/")[-1].split(":")[0]
    shape = tuple(int(s) for s in shape)
    if len(shape) >= 2:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, size=shape).astype(np.float32)
    if leaf == "gamma":
        return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)


def layer_groups(names: Sequence[str]) -> list[tuple[str, list[int]]]:
    """``(layer, indices of its parameters)`` top-down (the reverse of the order of ``names``).

    ``names`` are weight names ``layer/weight[:0]`` in the model's (bottom-up) order; moving
    statistics are not parameters (:func:`is_parameter`), and layers with none are skipped.
    """
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if is_parameter(name):
            groups.setdefault(name.split("/")[0], []).append(i)
    return list(reversed(list(groups.items())))
