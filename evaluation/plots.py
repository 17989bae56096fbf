"""Figures for the report. The only module of the project that imports matplotlib.

Every function writes one PNG atomically (temporary file + rename) and returns its path. They take
plain numpy arrays and lists, so experiments never touch matplotlib themselves.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from evaluation.cache import atomic_write_bytes  # noqa: E402

__all__ = [
    "histograms",
    "scatter",
    "curves",
    "grouped_bars",
    "image_grid",
    "mosaic",
    "heatmap_overlay",
]

_DPI = 110


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def histograms(
    path: str | Path,
    series: Mapping[str, np.ndarray],
    title: str,
    xlabel: str,
    bins: int | np.ndarray = 20,
    range_: tuple[float, float] | None = None,
) -> Path:
    """Overlaid histograms, one per named series (seed 000 Fig. 3 style)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=bins, range=range_, alpha=0.55, label=f"{name} (n={values.size})")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    if series:
        ax.legend(fontsize=7)
    return _save(fig, path)


def scatter(
    path: str | Path,
    points: np.ndarray,
    labels: Sequence[str],
    title: str,
    max_legend: int = 12,
) -> Path:
    """A 2-D layout coloured by a categorical label (t-SNE plots, seed 000 Figs. 4, 8, 10)."""
    points = np.asarray(points)
    labels = [str(lab) for lab in labels]
    cats = sorted(set(labels), key=lambda c: -labels.count(c))
    cmap = plt.get_cmap("tab20" if len(cats) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for i, cat in enumerate(cats):
        sel = np.array([lab == cat for lab in labels])
        ax.scatter(points[sel, 0], points[sel, 1], s=9, color=cmap(i % cmap.N),
                   label=cat if i < max_legend else None, alpha=0.8, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)


def curves(
    path: str | Path,
    x: np.ndarray,
    ys: Mapping[str, np.ndarray],
    title: str,
    xlabel: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Line plots of several named curves over a common x (agreement curves, top-k shares)."""
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for name, y in ys.items():
        ax.plot(np.asarray(x), np.asarray(y, dtype=float), marker="o", ms=3, label=name)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def grouped_bars(
    path: str | Path,
    groups: Sequence[str],
    values: Mapping[str, Sequence[float]],
    title: str,
    ylabel: str,
    log: bool = False,
) -> Path:
    """Grouped bar chart: one group per entry of ``groups``, one bar per named series."""
    groups = list(groups)
    names = list(values)
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(groups) * max(1, len(names)) ** 0.5 + 3), 3.8))
    x = np.arange(len(groups))
    for i, name in enumerate(names):
        v = np.asarray(values[name], dtype=float)
        ax.bar(x + (i - (len(names) - 1) / 2) * width, np.nan_to_num(v), width, label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return _save(fig, path)


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB float image in [0, 1]: ``image`` blended with a jet colour map of ``heatmap``."""
    img = np.asarray(image, dtype=np.float32)
    if img.max() > 1.0:
        img = img / 255.0
    cm = plt.get_cmap("jet")(np.clip(heatmap, 0, 1))[..., :3]
    return np.clip((1 - alpha) * img + alpha * cm, 0, 1)


def image_grid(
    path: str | Path,
    rows: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    title: str = "",
    cell: float = 1.6,
) -> Path:
    """A grid of images (uint8 or float RGB, or 2-D maps shown with a colour map)."""
    n_rows = len(rows)
    n_cols = max(len(r) for r in rows) if rows else 1
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows + 0.3), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                im = np.asarray(row[j])
                if im.ndim == 2:
                    ax.imshow(im, cmap="jet", vmin=0, vmax=max(1e-12, float(np.nanmax(im))) if im.min() >= 0 else None)
                else:
                    ax.imshow(im if im.dtype == np.uint8 else np.clip(im, 0, 1))
            if i == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=7)
        if row_titles and i < len(row_titles):
            axes[i][0].text(-0.05, 0.5, row_titles[i], transform=axes[i][0].transAxes, ha="right", va="center", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def mosaic(
    path: str | Path,
    points: np.ndarray,
    thumbnails: np.ndarray,
    title: str,
    size: int = 2400,
    thumb: int | None = None,
) -> Path:
    """Thumbnails drawn at their 2-D positions (seed 000 Fig. 5's t-SNE mosaic).

    Args:
        points: ``(N, 2)`` layout coordinates.
        thumbnails: ``(N, h, w, 3)`` uint8 images (e.g. thresholded visual explanations).
        size: Canvas side in pixels.
        thumb: Thumbnail side in pixels; ``None`` = as large as the number of points allows
            (``0.7·size/√N``, between 48 and 200).
    """
    points = np.asarray(points, dtype=np.float64)
    if thumb is None:
        thumb = int(np.clip(0.7 * size / np.sqrt(max(1, len(points))), 48, 200))
    lo, hi = points.min(0), points.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    xy = ((points - lo) / span * (size - thumb)).astype(int)
    canvas = np.full((size, size, 3), 255, np.uint8)
    from PIL import Image

    for (x, y), t in zip(xy, thumbnails):
        im = np.asarray(Image.fromarray(np.asarray(t, np.uint8)).resize((thumb, thumb), Image.BILINEAR))
        canvas[size - thumb - y : size - y, x : x + thumb] = im
    fig, ax = plt.subplots(figsize=(10, 10))
    ax.imshow(canvas)
    ax.axis("off")
    ax.set_title(title)
    return _save(fig, path)
