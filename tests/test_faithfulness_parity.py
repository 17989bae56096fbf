"""Deletion and insertion (:mod:`evaluation.faithfulness`) against Xplique 2.0.2's ``Deletion`` / ``Insertion``.

Xplique pins ``tensorflow<=2.20``, so it runs in its own venv ``.venv-xplique`` (``make xplique-venv``) in
a subprocess, as in ``tests/test_methods_parity.py``; the test is marked ``slow`` and skipped when that
venv is missing. Both sides get the same four 16×16×3 images, continuous random maps (no ties), the
same classifier (a softmax over fixed linear functions of the image, written once and run by both
processes; Xplique accepts a plain callable and reads ``f(x)·one_hot``) and the same bases: zeros for
deletion (Xplique's ``baseline_mode=0.0``), our Gaussian blur (``blur_base``, 7 taps, σ = 2) for insertion
(Xplique's ``baseline_mode`` as a function returning it).

Compared, per image: the deletion and insertion curves (``detailed_evaluate``) and AUCs (``evaluate``),
and Xplique's AUC of all four images at once (the AUC of the mean curve, i.e. our mean AUC).
Tolerance 1e-6 absolute: the curves are the same float32 probabilities; Xplique averages in float32.

Conventions (``xplique/metrics/fidelity.py``, ``CausalFidelity``): pixel order ``argsort(map)[::-1]``
(descending; a 4-D map would be averaged over channels first); step counts
``linspace(0, N, steps + 1, dtype=int32)``, i.e. *truncated* ``k·N/steps``, where ours rounds half up,
so the grids agree only when ``steps`` divides ``N`` (here 256 pixels, 16 steps: 16 pixels a step);
AUC ``mean(c[:-1] + c[1:]) / 2``, the trapezoid over ``[0, 1]`` with equal steps, as ours.
"""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import numpy as np
import pytest

from evaluation import faithfulness as fa
from evaluation.confidence import blur_base, zero_base

ROOT = Path(__file__).resolve().parents[1]
XPLIQUE_PYTHON = ROOT / ".venv-xplique" / "bin" / "python"
STEPS = 16  # divides 16·16 = 256 pixels, so Xplique's truncated grid is ours


def softmax_linear(images, w):
    """Class probabilities ``softmax(flatten(images) · w)`` as float32 (the model of both processes)."""
    import numpy as np

    z = np.asarray(images, np.float64).reshape(len(images), -1) @ w
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


XPLIQUE_MAIN = '''
import sys

import numpy as np
from xplique.metrics import Deletion, Insertion

d = np.load(sys.argv[1])
x, maps, targets, w, ins = d["images"], d["maps"], d["targets"], d["w"], d["insertion_base"]
model = lambda images: softmax_linear(images, w)
out = {}
for mode, metric in (("deletion", Deletion), ("insertion", Insertion)):
    curves, aucs = [], []
    for i in range(len(x)):
        base = 0.0 if mode == "deletion" else (lambda inputs, i=i: ins[i:i + 1])
        m = metric(model, x[i:i + 1], targets[i:i + 1], baseline_mode=base, steps=int(d["steps"]))
        curve = m.detailed_evaluate(maps[i:i + 1])
        curves.append(list(curve.values()))
        aucs.append(m.evaluate(maps[i:i + 1]))
    base = 0.0 if mode == "deletion" else (lambda inputs: ins)
    out[mode] = np.array(curves)
    out[mode + "_counts"] = np.array(list(curve.keys()))
    out[mode + "_auc"] = np.array(aucs)
    out[mode + "_auc_all"] = metric(model, x, targets, baseline_mode=base, steps=int(d["steps"])).evaluate(maps)
np.savez(sys.argv[2], **out)
'''


@pytest.mark.slow
@pytest.mark.skipif(not XPLIQUE_PYTHON.exists(), reason="no .venv-xplique (Xplique 2.0.2 pins tensorflow<=2.20)")
def test_deletion_insertion_agree_with_xplique(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 16, 16, 3)).astype(np.float32)
    maps = rng.normal(size=(4, 16, 16))
    assert np.unique(maps).size == maps.size  # no ties: the tie order cannot matter
    w = rng.normal(0.0, 0.1, (16 * 16 * 3, 3))
    labels = np.arange(4) % 3
    # base_images(x, "gaussian") at 16 px is a 3-tap σ = 0.2 blur, nearly the image: a stronger one here
    bases = {"deletion": zero_base(x), "insertion": blur_base(x, 7, 2.0)}

    script = tmp_path / "xplique_faithfulness.py"
    script.write_text(inspect.getsource(softmax_linear) + XPLIQUE_MAIN)
    np.savez(tmp_path / "in.npz", images=x, maps=maps, targets=np.eye(3, dtype=np.float32)[labels], w=w,
             insertion_base=bases["insertion"], steps=STEPS)
    done = subprocess.run([str(XPLIQUE_PYTHON), str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")

    ours = fa.deletion_insertion(x, maps, labels, lambda b: softmax_linear(b, w), bases["deletion"],
                                 bases["insertion"], steps=STEPS)
    for mode in fa.MODES:
        np.testing.assert_array_equal(theirs[f"{mode}_counts"], ours.counts)
        curves, aucs = getattr(ours, mode), getattr(ours, f"{mode}_auc")
        np.testing.assert_allclose(curves, theirs[mode], rtol=0, atol=1e-6, err_msg=mode)
        np.testing.assert_allclose(aucs, theirs[f"{mode}_auc"], rtol=0, atol=1e-6, err_msg=mode)
        assert float(theirs[f"{mode}_auc_all"]) == pytest.approx(aucs.mean(), abs=1e-6)
        assert np.ptp(curves, axis=1).min() > 0.02, mode  # the curves move: the comparison has teeth
