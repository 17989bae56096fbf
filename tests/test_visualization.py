"""Heat map colouring from Vertex's visualization settings: hand values, and the viewer's
JavaScript (``serving/http/static/visualization.js``) equal to :func:`models.visualization.apply_visualization`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from models.visualization import GREEN, PINK, RED, apply_visualization

JS = Path(__file__).resolve().parents[1] / "serving" / "http" / "static" / "visualization.js"

# 0..9 laid out as a 2 × 5 map, negatives in the second row: a = [[0, 1, 2, 3, 4], [-5, -6, -7, -8, -9]]
SIGNED = np.array([[0, 1, 2, 3, 4], [-5, -6, -7, -8, -9]], np.float64)


def test_positive_polarity_clips_at_the_percentiles_by_hand():
    # POSITIVE: v = [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]; sorted: six 0s, 1, 2, 3, 4.
    # 50th percentile: rank 4.5 → 0; 90th: rank 8.1 → 3 + 0.1·(4 − 3) = 3.1.
    # t = clip((v − 0) / 3.1, 0, 1) = [0, 1/3.1, 2/3.1, 3/3.1, 1]; alpha = floor(255·t + 0.5).
    rgba = apply_visualization(SIGNED, {"polarity": "POSITIVE", "clipPercentLowerbound": 50,
                                        "clipPercentUpperbound": 90, "colorMap": "GREEN"})
    want_alpha = [0, 82, 165, 247, 255, 0, 0, 0, 0, 0]
    assert rgba[..., 3].reshape(-1).tolist() == want_alpha
    assert (rgba[..., :3] == np.array(GREEN, np.uint8)).all()


def test_negative_polarity_flips_and_both_takes_magnitudes():
    # NEGATIVE: v = [0, 0, 0, 0, 0, 5, 6, 7, 8, 9]; no clipping: lo = 0, hi = 9: t = v / 9.
    neg = apply_visualization(SIGNED, {"polarity": "NEGATIVE", "colorMap": "RED"})
    assert neg[..., 3].reshape(-1).tolist() == [0, 0, 0, 0, 0, 142, 170, 198, 227, 255]
    assert (neg[..., :3] == np.array(RED, np.uint8)).all()
    # BOTH with PINK_GREEN: t = |a| / 9, green where a ≥ 0, pink where a < 0.
    both = apply_visualization(SIGNED, {"polarity": "BOTH", "colorMap": "PINK_GREEN"})
    assert both[..., 3].reshape(-1).tolist() == [0, 28, 57, 85, 113, 142, 170, 198, 227, 255]
    assert (both[0, :, :3] == np.array(GREEN, np.uint8)).all() and (both[1, :, :3] == np.array(PINK, np.uint8)).all()
    # RED_GREEN: red instead of pink for the negatives.
    rg = apply_visualization(SIGNED, {"polarity": "BOTH", "colorMap": "RED_GREEN"})
    assert (rg[1, :, :3] == np.array(RED, np.uint8)).all()


def test_viridis_ends_and_transparent_below_the_lower_bound():
    a = np.array([[0.0, 0.3125, 0.5, 1.0]])
    rgba = apply_visualization(a, {"colorMap": "VIRIDIS"})  # t = a (lo 0, hi 1)
    assert rgba[0, 0].tolist() == [68, 1, 84, 0]  # t = 0: transparent
    assert rgba[0, 2].tolist() == [33, 144, 141, 255]  # t = 0.5: the middle anchor
    assert rgba[0, 3].tolist() == [253, 231, 37, 255]
    # t = 0.3125 (8t = 2.5): halfway between anchors 2 and 3 → (51.5, 97, 140.5) → rounded half up
    assert rgba[0, 1].tolist() == [52, 97, 141, 255]


def test_without_settings_the_map_is_jet_opaque_as_before():
    a = np.array([[0.0, 0.5, 1.0]])
    rgba = apply_visualization(a, {})
    assert rgba.tolist() == [[[0, 0, 128, 255], [128, 255, 128, 255], [128, 0, 0, 255]]]
    # an unspecified colour map with settings: jet of t, transparent where t = 0
    assert apply_visualization(a, {"polarity": "POSITIVE"})[0, 0, 3] == 0


def test_constant_map_and_bad_values():
    flat = apply_visualization(np.full((2, 2), 3.0), {"colorMap": "GREEN", "clipPercentLowerbound": 10})
    assert flat[..., 3].tolist() == [[0, 0], [0, 0]]  # hi == lo: nothing above the bound
    with pytest.raises(ValueError, match=r"colorMap 'BLUE' is not supported; accepted: \['PINK_GREEN'"):
        apply_visualization(SIGNED, {"colorMap": "BLUE"})
    with pytest.raises(ValueError, match=r"heatmap must be 2-D \(H, W\); got shape \(3,\)"):
        apply_visualization(np.zeros(3), {})


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_viewer_javascript_equals_the_python_rule():
    """The viewer's ``applyVisualization`` gives the same RGBA bytes as the Python function, for
    every colour map and polarity, on a random signed map (run with node)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 7)).astype(np.float32).astype(np.float64)
    cases = [{}, {"polarity": "POSITIVE", "clipPercentLowerbound": 30, "clipPercentUpperbound": 95}]
    for cmap in ("PINK_GREEN", "VIRIDIS", "RED", "GREEN", "RED_GREEN", "PINK_WHITE_GREEN", "COLOR_MAP_UNSPECIFIED"):
        for polarity in ("POSITIVE", "NEGATIVE", "BOTH"):
            cases.append({"polarity": polarity, "colorMap": cmap, "clipPercentLowerbound": 20.5,
                          "clipPercentUpperbound": 99.9})
    script = (f"const {{ applyVisualization }} = require({json.dumps(str(JS))});\n"
              "const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
              "console.log(JSON.stringify(input.cases.map((vis) => Array.from(applyVisualization(input.values, vis)))));")
    payload = json.dumps({"values": a.reshape(-1).tolist(), "cases": cases})
    done = subprocess.run(["node", "-e", script], input=payload, capture_output=True, text=True, check=True)
    got = json.loads(done.stdout)
    for vis, js in zip(cases, got):
        want = apply_visualization(a, vis).reshape(-1).tolist()
        assert js == want, vis
    assert len(got) == len(cases) == 23
