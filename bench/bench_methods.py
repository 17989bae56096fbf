"""Benchmark of issue 13's new methods: time per image against a forward pass and other libraries.

Run ``.venv/bin/python -m bench.bench_methods`` (``--no-record`` to only print). On one batch of
``--batch`` images of an untrained VGG11 (``--size`` px, width ``--width``, 3 classes; every
method explains class 0) it times:

* each new method through its public eager entry point (single-pass: the compiled graph;
  iterative: :class:`~explain.backend.KerasBackend`), in seconds per image and as a multiple of
  a compiled plain forward pass of the same batch (a second forward row, 64 images per call, is
  the per-image floor of the iterative methods, which run 64 images per call);
* tf-keras-vis 0.8.7 ``Saliency`` with ``GuidedBackpropagation`` (guided backprop) and ``Scorecam``
  (Score-CAM, through :func:`explain.reference.reference_cam`, 64 masked images per call), in process;
* Xplique 2.0.2 IG, RISE and occlusion at the same settings, through ``bench/xplique_run.py`` in
  ``.venv-xplique`` (TensorFlow 2.20; skipped when the venv is missing).

Each comparison also checks that the two maps agree (printed under the table): Score-CAM's raw
map and occlusion to float round-off, IG's colour-averaged attributions likewise, RISE by the
Pearson correlation of the maps (the two libraries draw different random masks).

Timings are the best of ``--repeats`` runs after a warm-up, and the best of ``--rounds`` interleaved
rounds (ours, tf-keras-vis and Xplique measured in turn in every round). Results are appended to
``bench/RESULTS.md`` as a "New explanation methods" section.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
XPLIQUE_PYTHON = ROOT / ".venv-xplique" / "bin" / "python"
BATCH = 64  # images per backend call of the iterative methods, ours and theirs

Row = tuple[str, str, float, str]


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _max_gap(ours: np.ndarray, theirs: np.ndarray) -> float:
    """``max |ours − theirs|`` relative to ``max |theirs|``."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


def _ours(view: Any, x: np.ndarray, repeats: int, ig_steps: int, rise_masks: int) -> tuple[list[Row], dict]:
    """Our rows and maps (the maps of the methods other libraries have, for the parity checks)."""
    from explain import cam, guided
    from explain import integrated_gradients as ig
    from explain.ablationcam import ablationcam
    from explain.backend import KerasBackend
    from explain.occlusion import occlusion
    from explain.rise import rise
    from explain.scorecam import scorecam

    backend = KerasBackend(view)
    patch = max(1, x.shape[1] // 8)
    calls = {
        "hirescam": ("", lambda: cam.hirescam(view, x, 0)),
        "xgradcam": ("", lambda: cam.xgradcam(view, x, 0)),
        "eigencam": ("", lambda: cam.eigencam(view, x)),
        "integrated_gradients": (f"steps={ig_steps}, black",
                                 lambda: ig.integrated_gradients(view, x, 0, steps=ig_steps)),
        "guided_backprop": ("", lambda: guided.guided_backprop(view, x, 0)),
        "guided_gradcam": ("", lambda: guided.guided_gradcam(view, x, 0)),
        "rise": (f"n_masks={rise_masks}, grid=7, batch {BATCH}",
                 lambda: rise(backend, x, 0, n_masks=rise_masks, batch_size=BATCH)),
        "ablationcam": (f"K={view.target_shape[-1]}, batch {BATCH}",
                        lambda: ablationcam(backend, x, 0, batch_size=BATCH)),
        "occlusion": (f"{patch}-px patches, stride {patch}, batch {BATCH}",
                      lambda: occlusion(backend, x, 0, patch_size_at_224=patch * 224 / x.shape[1], stride=patch,
                                        fill=0.5, batch_size=BATCH)),
        "scorecam": (f"K={view.target_shape[-1]}, batch {BATCH}",
                     lambda: scorecam(backend, x, 0, batch_size=BATCH)),
    }
    rows, maps = [], {}
    for name, (settings, fn) in calls.items():
        rows.append((name, settings, _best(fn, repeats) / len(x), "ours"))
        if name in ("integrated_gradients", "rise", "occlusion", "scorecam"):
            out = fn()
            maps[name] = out["attributions"].mean(-1) if name == "integrated_gradients" else out["raw"]
    return rows, maps


def _tf_keras_vis(model: Any, view: Any, x: np.ndarray, repeats: int, maps: dict) -> tuple[list[Row], list[str]]:
    """tf-keras-vis's guided backprop and Score-CAM rows, and the Score-CAM parity note."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation, ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    from explain.reference import reference_cam

    by = "tf-keras-vis 0.8.7"
    vis = Saliency(model, model_modifier=[ReplaceToLinear(), GuidedBackpropagation()], clone=True)
    score = CategoricalScore([0] * len(x))
    rows = [("guided_backprop", "", _best(lambda: vis(score, x), repeats) / len(x), by)]
    run = lambda: reference_cam("scorecam", model, x, 0, view.target_layer, batch_size=BATCH)  # noqa: E731
    rows.append(("scorecam", "same settings", _best(run, repeats) / len(x), by))
    gap = _max_gap(maps["scorecam"], run())
    notes = [f"scorecam vs {by}: max |ours − theirs| / max |theirs| = {gap:.1e} (raw map)"]
    return rows, notes


def _xplique(model: Any, x: np.ndarray, repeats: int, ig_steps: int, rise_masks: int,
             maps: dict) -> tuple[list[Row], list[str]]:
    """Xplique's IG, RISE and occlusion rows (its own venv, a separate process) and parity notes."""
    import keras

    if not XPLIQUE_PYTHON.exists():
        return [], ["Xplique: skipped (no .venv-xplique)"]
    logits_model = keras.models.clone_model(model)  # IG attributes the logit, as ours does
    logits_model.set_weights(model.get_weights())
    logits_model.get_layer("predictions").activation = keras.activations.linear
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m.keras")
        logits_model.save(Path(tmp) / "logits.keras")
        np.savez(Path(tmp) / "in.npz", images=x, classes=np.zeros(len(x), np.int64), ig_steps=ig_steps,
                 rise_masks=rise_masks, rise_grid=7, occ_patch=max(1, x.shape[1] // 8), occ_value=0.5,
                 repeats=repeats)
        subprocess.run([str(XPLIQUE_PYTHON), str(ROOT / "bench" / "xplique_run.py"), str(Path(tmp) / "m.keras"),
                        str(Path(tmp) / "logits.keras"), str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.npz")],
                       check=True, capture_output=True, timeout=3600)
        out = dict(np.load(Path(tmp) / "out.npz"))
    by = "Xplique 2.0.2 (TF 2.20)"
    rows = [(name, "same settings", float(out[f"{key}_seconds"]) / len(x), by)
            for key, name in (("ig", "integrated_gradients"), ("rise", "rise"), ("occlusion", "occlusion"))]
    corr = [np.corrcoef(maps["rise"][n].ravel(), out["rise"][n].ravel())[0, 1] for n in range(len(x))]
    ig_gap = _max_gap(maps["integrated_gradients"], out["ig"][..., 0])
    occ_gap = _max_gap(maps["occlusion"], out["occlusion"][..., 0])
    notes = [f"integrated_gradients vs {by}: max |ours − theirs| / max |theirs| = {ig_gap:.1e}",
             f"occlusion vs {by}: max |ours − theirs| / max |theirs| = {occ_gap:.1e}",
             f"rise vs {by}: Pearson r of the maps per image = {', '.join(f'{r:.3f}' for r in corr)} "
             "(different masks; the untrained model's p_c hardly depends on them, hence a low r; "
             "tests/test_methods_parity.py checks r > 0.9 on a model with a localised class at 3000 masks)"]
    return rows, notes


def run(size: int, width: float, batch: int, repeats: int, ig_steps: int, rise_masks: int,
        rounds: int = 1) -> tuple[list[Row], list[str]]:
    """Rows ``(method, settings, seconds per image, reference)`` (the forward pass is row 0), parity notes.

    With ``rounds > 1`` every row (ours, tf-keras-vis, Xplique) is measured once per round, the
    rounds interleaved, and each row keeps its best round: on a shared machine whose load changes
    by the minute, ours and theirs then get the same chances of a quiet moment.
    """
    import keras
    import tensorflow as tf

    from explain.view import ModelView
    from models.architectures import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("vgg11", size, 3, width)
    low = np.random.default_rng(0).random((batch, 8, 8, 3)).astype(np.float32)
    x = np.clip(tf.image.resize(low, (size, size)).numpy(), 0, 1).astype(np.float32)
    view = ModelView(model)
    forward = tf.function(lambda a: view.run(a).logits, input_signature=[tf.TensorSpec([None, size, size, 3])])
    big = np.tile(x, (-(-BATCH // batch), 1, 1, 1))[:BATCH]
    best: dict[tuple[str, str, str], float] = {}
    for _ in range(rounds):
        rows = [("forward pass", "compiled", _best(lambda: forward(x).numpy(), repeats) / batch, ""),
                ("forward pass", f"compiled, {BATCH} images per call",
                 _best(lambda: forward(big).numpy(), repeats) / BATCH, "")]
        ours, maps = _ours(view, x, repeats, ig_steps, rise_masks)
        vis, vis_notes = _tf_keras_vis(model, view, x, repeats, maps)
        xpl, xpl_notes = _xplique(model, x, repeats, ig_steps, rise_masks, maps)
        for name, settings, sec, by in rows + ours + vis + xpl:
            best[(name, settings, by)] = min(best.get((name, settings, by), float("inf")), sec)
    return [(name, settings, sec, by) for (name, settings, by), sec in best.items()], vis_notes + xpl_notes


def table(rows: list[Row]) -> str:
    fwd = rows[0][2]
    ours = {r[0]: r[2] for r in rows if r[3] == "ours"}
    lines = ["| method | settings | by | ms / image | × forward | reference / ours |", "|---|---|---|---:|---:|---:|"]
    for name, settings, sec, by in rows:
        rel = "" if by in ("", "ours") or name not in ours else f"{sec / ours[name]:.2f}"
        lines.append(f"| {name} | {settings} | {by or '-'} | {sec * 1e3:.2f} | {sec / fwd:.1f} | {rel} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ig-steps", type=int, default=64)
    parser.add_argument("--rise-masks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; each row keeps its best")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows, notes = run(args.size, args.width, args.batch, args.repeats, args.ig_steps, args.rise_masks,
                      args.rounds)
    text = (table(rows) + "\n\nParity of the maps (same model, images and class):\n\n"
            + "\n".join(f"* {n}" for n in notes))
    print(text)
    if not args.no_record:
        head = (f"\n## New explanation methods (issue 13, {_dt.date.today().isoformat()}, {os.cpu_count()} CPUs, "
                f"{platform.machine()})\n\n`python -m bench.bench_methods` — untrained VGG11 at {args.size} px, width "
                f"{args.width}, batch of {args.batch}, best of {args.repeats} after a warm-up in each of {args.rounds} "
                "interleaved rounds; × forward = time over a "
                "compiled forward pass of the same batch; reference / ours > 1 means ours is faster. tf-keras-vis "
                "runs in process; Xplique runs in its own venv (TensorFlow 2.20) in a separate process on the same "
                "machine.\n\n")
        with RESULTS.open("a") as fh:
            fh.write(head + text + "\n")


if __name__ == "__main__":
    main()
