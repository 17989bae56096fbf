"""Heat map colouring from the explanation metadata's ``visualization`` block (Vertex's settings).

One rule, implemented twice: here (:func:`apply_visualization`, for PNG renderings in Python) and
in the viewer (``serving/http/static/viewer.js``, ``applyVisualization``); a test runs both on the
same map and compares them. For a map ``a`` (signed attributions, or a heat map in ``[0, 1]``)
and the parsed settings ``vis`` (:attr:`models.metadata.ExplanationMetadata.visualization`):

1. **Polarity** — ``POSITIVE`` (the default): ``v = max(a, 0)``; ``NEGATIVE``: ``v = max(−a, 0)``
   (negative attributions, flipped); ``BOTH``: ``v = |a|``.
2. **Clipping** — ``lo``, ``hi`` = the ``clipPercentLowerbound`` and ``clipPercentUpperbound``
   percentiles of ``v`` (defaults 0 and 100: no clipping; linear interpolation between order
   statistics, numpy's default); ``t = clip((v − lo) / (hi − lo), 0, 1)``: values at or below
   ``lo`` become 0 (transparent), values above ``hi`` 1. When ``hi == lo``, ``t = [v > lo]``.
3. **Colour map** — ``t`` becomes RGBA (uint8):

   * ``VIRIDIS``: matplotlib's viridis at 9 anchors, linearly interpolated; alpha 255 where
     ``t > 0``, else 0;
   * ``RED``, ``GREEN``: the fixed colour, alpha ``255·t``;
   * ``PINK_GREEN``, ``RED_GREEN``: green where ``a ≥ 0``, pink (red) where ``a < 0``; alpha ``255·t``;
   * ``PINK_WHITE_GREEN``: white blended towards green/pink by ``t``; alpha 255 where ``t > 0``;
   * unspecified (``COLOR_MAP_UNSPECIFIED`` or absent): the viewer's jet map, alpha as viridis.

   Without any settings (``vis`` empty) the map is drawn as before: jet of ``a`` (a heat map in
   ``[0, 1]``), opaque. Channels are rounded half up (``floor(x + 0.5)``) in both languages.

``type`` (``OUTLINES``) and ``overlayType`` are carried to the viewer but not drawn differently.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["apply_visualization", "COLOR_MAPS", "VIRIDIS_ANCHORS", "GREEN", "RED", "PINK"]

GREEN = (0.0, 200.0, 0.0)
RED = (230.0, 0.0, 0.0)
PINK = (255.0, 0.0, 160.0)
#: matplotlib's viridis at t = 0, 1/8, ..., 1 (0..255).
VIRIDIS_ANCHORS = (
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
)
COLOR_MAPS = ("PINK_GREEN", "VIRIDIS", "RED", "GREEN", "RED_GREEN", "PINK_WHITE_GREEN")


def _jet(t: np.ndarray) -> np.ndarray:
    return np.stack([np.clip(1.5 - np.abs(4 * t - k), 0, 1) * 255 for k in (3, 2, 1)], axis=-1)


def _viridis(t: np.ndarray) -> np.ndarray:
    anchors = np.asarray(VIRIDIS_ANCHORS, np.float64)
    pos = t * (len(anchors) - 1)
    i = np.minimum(np.floor(pos).astype(int), len(anchors) - 2)
    f = (pos - i)[..., None]
    return anchors[i] * (1 - f) + anchors[i + 1] * f


def _percentile(values: np.ndarray, pct: float) -> float:
    """Linear interpolation between order statistics (numpy's default; the viewer's too)."""
    v = np.sort(values.reshape(-1))
    rank = pct / 100.0 * (v.size - 1)
    lo = int(np.floor(rank))
    hi = min(lo + 1, v.size - 1)
    return float(v[lo] + (rank - lo) * (v[hi] - v[lo]))


def _round(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, np.float64) + 0.5).astype(np.uint8)


def apply_visualization(heatmap: Any, vis: Mapping[str, Any] | None) -> np.ndarray:
    """RGBA ``(H, W, 4)`` uint8 of a 2-D map under Vertex's visualization settings (module rules).

    Args:
        heatmap: ``(H, W)`` signed attributions (or a heat map in ``[0, 1]``).
        vis: The parsed settings (upper-case enum values, percentages), or ``None``/``{}``.

    Raises:
        ValueError: ``heatmap`` is not 2-D, or ``vis`` has a polarity or colour map not listed.
    """
    a = np.asarray(heatmap, np.float64)
    if a.ndim != 2:
        raise ValueError(f"heatmap must be 2-D (H, W); got shape {a.shape}")
    vis = dict(vis or {})
    if not vis:
        return np.concatenate([_round(_jet(a)), np.full(a.shape + (1,), 255, np.uint8)], axis=-1)
    polarity = vis.get("polarity", "POSITIVE")
    if polarity in ("POSITIVE", "POLARITY_UNSPECIFIED"):
        v = np.maximum(a, 0.0)
    elif polarity == "NEGATIVE":
        v = np.maximum(-a, 0.0)
    elif polarity == "BOTH":
        v = np.abs(a)
    else:
        raise ValueError(f"polarity {polarity!r} is not supported; accepted: ['POSITIVE', 'NEGATIVE', 'BOTH']")
    lo = _percentile(v, float(vis.get("clipPercentLowerbound", 0.0)))
    hi = _percentile(v, float(vis.get("clipPercentUpperbound", 100.0)))
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0) if hi > lo else (v > lo).astype(np.float64)
    cmap = vis.get("colorMap", "COLOR_MAP_UNSPECIFIED")
    shown = np.where(t > 0, 255.0, 0.0)
    if cmap in ("COLOR_MAP_UNSPECIFIED", "VIRIDIS"):
        rgb, alpha = (_jet(t) if cmap != "VIRIDIS" else _viridis(t)), shown
    elif cmap in ("RED", "GREEN"):
        rgb, alpha = np.broadcast_to(np.asarray(RED if cmap == "RED" else GREEN), a.shape + (3,)), 255.0 * t
    elif cmap in ("PINK_GREEN", "RED_GREEN", "PINK_WHITE_GREEN"):
        neg = np.asarray(RED if cmap == "RED_GREEN" else PINK)
        rgb = np.where((a >= 0)[..., None], np.asarray(GREEN), neg)
        if cmap == "PINK_WHITE_GREEN":
            rgb, alpha = 255.0 + t[..., None] * (rgb - 255.0), shown
        else:
            alpha = 255.0 * t
    else:
        raise ValueError(f"colorMap {cmap!r} is not supported; accepted: {list(COLOR_MAPS)}")
    return np.concatenate([_round(rgb), _round(alpha)[..., None]], axis=-1)
