// cnn-explain viewer: heat map colouring from the model's explanation metadata (Vertex's
// `visualization`: polarity, clip percentiles, colour map). The same rules as
// models/visualization.py (apply_visualization); a test runs both on one map with node.
"use strict";

const VIS_GREEN = [0, 200, 0];
const VIS_RED = [230, 0, 0];
const VIS_PINK = [255, 0, 160];
const VIRIDIS_ANCHORS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
  [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
];

function jet(v) {
  const r = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3)));
  const g = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2)));
  const b = Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1)));
  return [r * 255, g * 255, b * 255];
}

function viridis(t) {
  const pos = t * (VIRIDIS_ANCHORS.length - 1);
  const i = Math.min(Math.floor(pos), VIRIDIS_ANCHORS.length - 2);
  const f = pos - i;
  return VIRIDIS_ANCHORS[i].map((c, k) => c * (1 - f) + VIRIDIS_ANCHORS[i + 1][k] * f);
}

// Linear interpolation between order statistics (numpy's default percentile).
function percentile(sorted, pct) {
  const rank = (pct / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
}

const round = (x) => Math.floor(x + 0.5);

// RGBA bytes (length 4·n, Uint8ClampedArray) of a map of n values under `vis` (parsed settings
// from GET /v1/models, upper-case enums); an empty or missing `vis` draws jet, opaque, as before.
function applyVisualization(values, vis) {
  const n = values.length;
  const out = new Uint8ClampedArray(4 * n);
  if (!vis || !Object.keys(vis).length) {
    for (let i = 0; i < n; i++) {
      const [r, g, b] = jet(values[i]);
      out.set([round(r), round(g), round(b), 255], 4 * i);
    }
    return out;
  }
  const polarity = vis.polarity || "POSITIVE";
  const pick = {
    POSITIVE: (a) => Math.max(a, 0), POLARITY_UNSPECIFIED: (a) => Math.max(a, 0),
    NEGATIVE: (a) => Math.max(-a, 0), BOTH: (a) => Math.abs(a),
  }[polarity];
  if (!pick) throw new Error(`polarity ${polarity} is not supported; accepted: POSITIVE, NEGATIVE, BOTH`);
  const v = Float64Array.from(values, pick);
  const sorted = Float64Array.from(v).sort();
  const lo = percentile(sorted, vis.clipPercentLowerbound ?? 0);
  const hi = percentile(sorted, vis.clipPercentUpperbound ?? 100);
  const cmap = vis.colorMap || "COLOR_MAP_UNSPECIFIED";
  for (let i = 0; i < n; i++) {
    const t = hi > lo ? Math.min(1, Math.max(0, (v[i] - lo) / (hi - lo))) : (v[i] > lo ? 1 : 0);
    const shown = t > 0 ? 255 : 0;
    const neg = cmap === "RED_GREEN" ? VIS_RED : VIS_PINK;
    const signed = values[i] >= 0 ? VIS_GREEN : neg;
    let rgb;
    let alpha;
    if (cmap === "COLOR_MAP_UNSPECIFIED") [rgb, alpha] = [jet(t), shown];
    else if (cmap === "VIRIDIS") [rgb, alpha] = [viridis(t), shown];
    else if (cmap === "RED" || cmap === "GREEN") [rgb, alpha] = [cmap === "RED" ? VIS_RED : VIS_GREEN, 255 * t];
    else if (cmap === "PINK_GREEN" || cmap === "RED_GREEN") [rgb, alpha] = [signed, 255 * t];
    else if (cmap === "PINK_WHITE_GREEN") [rgb, alpha] = [signed.map((c) => 255 + t * (c - 255)), shown];
    else throw new Error(`colorMap ${cmap} is not supported`);
    out.set([round(rgb[0]), round(rgb[1]), round(rgb[2]), round(alpha)], 4 * i);
  }
  return out;
}

if (typeof module !== "undefined") module.exports = { applyVisualization, percentile, jet };
