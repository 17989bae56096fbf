"""Benchmark of issue 13's new methods: time per image against a forward pass and other libraries.

Run ``.venv/bin/python -m bench.bench_methods`` (``--no-record`` to only print). On one batch of
``--batch`` images of an untrained VGG11 (``--size`` px, width ``--width``, 3 classes) it times:

* each new method through its public eager entry point (single-pass: the compiled graph;
  iterative: :class:`~explain.backend.KerasBackend`), in seconds per image and as a multiple of
  a compiled plain forward pass of the same batch;
* tf-keras-vis 0.8.7 ``Saliency`` with ``GuidedBackpropagation`` (guided backprop), in process;
* Xplique 2.0.2 IG, RISE and occlusion at the same settings, through ``bench/xplique_run.py`` in
  ``.venv-xplique`` (TensorFlow 2.20; skipped when the venv is missing).

Timings are the best of ``--repeats`` runs after a warm-up. Results are appended to
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


def _best(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(size: int, width: float, batch: int, repeats: int, ig_steps: int, rise_masks: int) -> list[tuple[str, str, float, str]]:
    """Rows ``(method, settings, seconds per image, reference)``; the forward pass is row 0."""
    import keras
    import tensorflow as tf

    from explain import cam, guided
    from explain import integrated_gradients as ig
    from explain.ablationcam import ablationcam
    from explain.backend import KerasBackend
    from explain.occlusion import occlusion
    from explain.rise import rise
    from explain.view import ModelView
    from models.architectures import build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("vgg11", size, 3, width)
    low = np.random.default_rng(0).random((batch, 8, 8, 3)).astype(np.float32)
    x = np.clip(tf.image.resize(low, (size, size)).numpy(), 0, 1).astype(np.float32)
    view = ModelView(model)
    backend = KerasBackend(view)
    forward = tf.function(lambda a: view.run(a).logits, input_signature=[tf.TensorSpec([None, size, size, 3])])
    patch = max(1, size // 8)
    rows = [("forward pass", "compiled", _best(lambda: forward(x).numpy(), repeats) / batch, "")]
    calls = {
        "hirescam": ("", lambda: cam.hirescam(view, x)),
        "xgradcam": ("", lambda: cam.xgradcam(view, x)),
        "eigencam": ("", lambda: cam.eigencam(view, x)),
        "integrated_gradients": (f"steps={ig_steps}, black", lambda: ig.integrated_gradients(view, x, steps=ig_steps)),
        "guided_backprop": ("", lambda: guided.guided_backprop(view, x)),
        "guided_gradcam": ("", lambda: guided.guided_gradcam(view, x)),
        "rise": (f"n_masks={rise_masks}, grid=7, batch 64",
                 lambda: rise(backend, x, n_masks=rise_masks, batch_size=64)),
        "ablationcam": (f"K={view.target_shape[-1]}, batch 64", lambda: ablationcam(backend, x, batch_size=64)),
        "occlusion": (f"{patch}-px patches, stride {patch}, batch 64",
                      lambda: occlusion(backend, x, patch_size_at_224=patch * 224 / size, stride=patch, batch_size=64)),
    }
    for name, (settings, fn) in calls.items():
        rows.append((name, settings, _best(fn, repeats) / batch, "ours"))

    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation, ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    vis = Saliency(model, model_modifier=[ReplaceToLinear(), GuidedBackpropagation()], clone=True)
    score = CategoricalScore([0] * batch)
    rows.append(("guided_backprop", "", _best(lambda: vis(score, x), repeats) / batch, "tf-keras-vis 0.8.7"))

    if XPLIQUE_PYTHON.exists():
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "m.keras")
            np.savez(Path(tmp) / "in.npz", images=x, classes=np.zeros(batch, np.int64), ig_steps=ig_steps,
                     rise_masks=rise_masks, rise_grid=7, occ_patch=patch, occ_value=0.5, repeats=repeats)
            subprocess.run([str(XPLIQUE_PYTHON), str(ROOT / "bench" / "xplique_run.py"), str(Path(tmp) / "m.keras"),
                            str(Path(tmp) / "m.keras"), str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.npz")],
                           check=True, capture_output=True, timeout=3600)
            out = np.load(Path(tmp) / "out.npz")
            for key, name in (("ig", "integrated_gradients"), ("rise", "rise"), ("occlusion", "occlusion")):
                rows.append((name, "same settings", float(out[f"{key}_seconds"]) / batch, "Xplique 2.0.2 (TF 2.20)"))
    return rows


def table(rows: list[tuple[str, str, float, str]]) -> str:
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
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = run(args.size, args.width, args.batch, args.repeats, args.ig_steps, args.rise_masks)
    text = table(rows)
    print(text)
    if not args.no_record:
        head = (f"\n## New explanation methods (issue 13, {_dt.date.today().isoformat()}, {os.cpu_count()} CPUs, "
                f"{platform.machine()})\n\n`python -m bench.bench_methods` — untrained VGG11 at {args.size} px, width "
                f"{args.width}, batch of {args.batch}, best of {args.repeats} after a warm-up; × forward = time over a "
                "compiled forward pass of the same batch; reference / ours > 1 means ours is faster. Xplique runs in its "
                "own venv (TensorFlow 2.20) in a separate process on the same machine.\n\n")
        with RESULTS.open("a") as fh:
            fh.write(head + text + "\n")


if __name__ == "__main__":
    main()
