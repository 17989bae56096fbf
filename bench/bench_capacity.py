"""Capacity benchmark: the measured inputs of ``docs/scaling.md``.

1. Per-image cost of every served method on each classifier of a model root, through a real
   embedded server (gRPC, ``serving.client.ExplanationClient``): one warm-up request, then
   ``--repeats`` timed requests of ``--batch`` images; the iterative methods (occlusion,
   Score-CAM, RISE, …: the registry's ``kind="iterative"``) with their default parameters on
   ``--iterative-batch`` images. The methods are the registry's classifier methods that the
   model offers (``ListModels``).
2. Service calls per image of every evaluation experiment: the evaluation runs once through the
   same kind of embedded server with one image per request (``--batch-size 1``) and small
   sample sizes, with the client's RPCs counted per experiment; calls / images of the section.

Without ``--model-root`` the four classifiers of the ``tiny`` preset are trained for one epoch
into a temporary root (costs depend on the architecture and the pixel count, not on accuracy).

Run: ``.venv/bin/python -m bench.bench_capacity [--model-root ROOT] [--no-calls] [--no-record]``.
Figures are appended to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
ARCHS = ("vgg11", "resnet18", "simple", "simpler")


def tiny_root() -> Path:
    """The tiny preset's four classifiers, one epoch each, in a temporary model root."""
    from models.presets import train_preset

    root = Path(tempfile.mkdtemp(prefix="bench_capacity_"))
    train_preset("tiny", root, only=list(ARCHS), epochs=1, verbose=0, log=None)
    return root


def methods() -> list[str]:
    """The classifier methods, from the registry (the only list), sorted."""
    from explain import registry

    return registry.names(applies_to="classifier")


def iterative_methods() -> set[str]:
    """The registry's iterative classifier methods (timed on ``--iterative-batch`` images)."""
    from explain import registry

    return set(registry.names(kind="iterative", applies_to="classifier"))


def method_costs(root: Path, batch: int, iterative_batch: int, repeats: int) -> list[dict[str, Any]]:
    """Seconds per image of each method and architecture through an embedded server."""
    from models.datasets import make_cities
    from serving.client import ExplanationClient
    from serving.server import start_server

    rows = []
    with start_server(root, port=0, warmup="default") as running, ExplanationClient(running.address, timeout=600) as client:
        infos = {m.name: m for m in client.list_models() if m.kind == "classifier"}
        for arch in [a for a in ARCHS if a in infos]:
            side = infos[arch].input_size[0]
            for method in [m for m in methods() if m in infos[arch].methods]:  # the ones the model offers
                n = iterative_batch if method in iterative_methods() else batch
                images = make_cities(max(1, -(-n // 2)), image_size=side, seed=3).images[:n]
                client.explain(arch, method, images, class_index=-1)  # warm-up (tracing, caches)
                t0 = time.perf_counter()
                for _ in range(repeats):
                    client.explain(arch, method, images, class_index=-1)
                sec = (time.perf_counter() - t0) / (repeats * len(images))
                rows.append({"architecture": arch, "pixels": side, "method": method, "images": len(images),
                             "seconds_per_image": sec})
                print(f"{arch:<9} {side:>4} px {method:<20} {1000 * sec:9.1f} ms/image")
    return rows


def service_calls(root: Path, per_class: int) -> list[dict[str, Any]]:
    """RPCs per image of each experiment (one image per request), counted on the client."""
    from evaluation import pipeline
    from evaluation.__main__ import main as eval_main
    from serving.client import ExplanationClient

    counts = {"calls": 0}
    original_call = ExplanationClient._call

    def counting_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        counts["calls"] += 1
        return original_call(self, *args, **kwargs)

    per_experiment: dict[str, int] = {}
    pipeline._load_experiments()
    originals = dict(pipeline.EXPERIMENTS)
    for key, exp in originals.items():
        def wrapped(ctx: Any, _fn: Any = exp.run, _key: str = key) -> Any:
            before = counts["calls"]
            try:
                return _fn(ctx)
            finally:
                per_experiment[_key] = counts["calls"] - before
        pipeline.EXPERIMENTS[key] = dataclasses.replace(exp, run=wrapped)
    ExplanationClient._call = counting_call
    out = Path(tempfile.mkdtemp(prefix="bench_capacity_eval_"))
    try:
        rc = eval_main(["--model-root", str(root), "--out", str(out), "--quiet", "--batch-size", "1",
                        "--images-per-class", str(per_class), "--ccg-images-per-class", str(max(1, per_class // 2)),
                        "--tsne-images-per-class", str(2 * per_class)])
    finally:
        ExplanationClient._call = original_call
        pipeline.EXPERIMENTS.update(originals)
    rows = []
    for path in sorted((out / "sections").glob("*.json")):
        sec = json.loads(path.read_text())
        key = path.stem.rsplit("-", 1)[0]  # <key>-<config digest>.json
        calls = per_experiment.get(key)
        if calls is None or not sec.get("images"):
            continue
        rows.append({"experiment": key, "title": sec["title"], "images": int(sec["images"]), "calls": calls,
                     "calls_per_image": calls / int(sec["images"]), "seconds": float(sec["seconds"])})
        print(f"{key:<14} {sec['images']:>5} images {calls:>6} calls {calls / int(sec['images']):8.1f} per image")
    if rc != 0:
        print(f"evaluation exited with {rc}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-root", type=Path, help="classifiers to measure (default: tiny, one epoch, trained here)")
    p.add_argument("--batch", type=int, default=8, help="images per request of the one-pass methods")
    p.add_argument("--iterative-batch", type=int, default=2, help="images per request of the iterative methods")
    p.add_argument("--repeats", type=int, default=2, help="timed requests per method and architecture")
    p.add_argument("--images-per-class", type=int, default=2, help="evaluation sample size for the call counts")
    p.add_argument("--no-costs", action="store_true", help="skip the per-method costs (count the calls only)")
    p.add_argument("--no-calls", action="store_true", help="skip the service-call count (no evaluation run)")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    p.add_argument("--json", type=Path, help="also write the raw figures there")
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = args.model_root or tiny_root()
    costs = [] if args.no_costs else method_costs(root, args.batch, args.iterative_batch, args.repeats)
    calls = [] if args.no_calls else service_calls(root, args.images_per_class)
    if args.json:
        args.json.write_text(json.dumps({"costs": costs, "calls": calls}, indent=1))
    lines = [f"## Capacity ({dt.date.today().isoformat()}, {os.cpu_count()} CPUs, no GPU)", "",
             f"Per-image cost through an embedded server ({root}), ms per image "
             f"(batch {args.batch}; iterative methods batch {args.iterative_batch}, default parameters):", ""]
    archs = [a for a in ARCHS if any(r["architecture"] == a for r in costs)]
    lines += ["| method | " + " | ".join(f"{a} ({next(r['pixels'] for r in costs if r['architecture'] == a)} px)"
                                         for a in archs) + " |", "|---|" + "---:|" * len(archs)]
    for m in methods():
        cells = [next((f"{1000 * r['seconds_per_image']:.1f}" for r in costs if r["architecture"] == a and r["method"] == m), "-")
                 for a in archs]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if calls:
        lines += ["", f"Service calls per image (one image per request, {args.images_per_class} images per class):", "",
                  "| experiment | images | calls | calls/image | seconds |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['experiment']} | {r['images']} | {r['calls']} | {r['calls_per_image']:.1f} | {r['seconds']:.1f} |"
                  for r in calls]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
