"""Evaluation benchmarks, side by side in one run.

1. openTSNE against scikit-learn's TSNE on the same 5,000 points of 50 dimensions (same
   perplexity, same number of threads), wall time and the ratio.
2. With ``--model-root``: images per second of each experiment through the service (embedded
   server, gRPC), from a cold cache, plus the CCG forward passes per image and batch utilisation
   recorded by the confidence experiment.

Run: ``.venv/bin/python -m bench.bench_evaluation [--model-root runs/models] [--no-record]``.
Figures are appended to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).with_name("RESULTS.md")


def tsne_side_by_side(n: int = 5000, dim: int = 50, seed: int = 0, n_jobs: int = 2) -> list[tuple[str, float]]:
    from openTSNE import TSNE as OpenTSNE
    from sklearn.manifold import TSNE as SkTSNE

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(10, dim))
    x = (centres[rng.integers(0, 10, n)] + rng.normal(size=(n, dim))).astype(np.float32)
    rows = []
    t0 = time.perf_counter()
    OpenTSNE(n_components=2, perplexity=30, random_state=seed, n_jobs=n_jobs).fit(x)
    rows.append(("openTSNE 1.x (FFT, n_jobs=%d)" % n_jobs, time.perf_counter() - t0))
    t0 = time.perf_counter()
    SkTSNE(n_components=2, perplexity=30, random_state=seed, n_jobs=n_jobs, init="pca").fit_transform(x)
    rows.append(("scikit-learn TSNE (Barnes-Hut, n_jobs=%d)" % n_jobs, time.perf_counter() - t0))
    return rows


def experiments_throughput(model_root: Path | None, report: Path | None = None) -> list[tuple[str, int, float]]:
    """Per-experiment images and seconds, from a fresh cold-cache run or an existing report's
    ``sections/*.json`` (which record both)."""
    if report is None:
        from evaluation.__main__ import main

        out = Path(tempfile.mkdtemp(prefix="bench_eval_"))
        assert main(["--model-root", str(model_root), "--out", str(out), "--quiet"]) == 0
    else:
        out = report
    rows = []
    for path in sorted((out / "sections").glob("*.json")):
        sec = json.loads(path.read_text())
        rows.append((sec["title"], int(sec["images"]), float(sec["seconds"])))
    util = out / "tables" / "confidence_utilisation.json"
    if util.exists():
        table = json.loads(util.read_text())
        rows.append(("CCG utilisation: " + json.dumps(dict(zip(table["columns"], table["rows"][0]))) if table["rows"] else "", 0, 0.0))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-root", type=Path, help="also time every experiment on these models")
    p.add_argument("--report", type=Path, help="read the timings of a finished cold-cache run (e.g. runs/report after make demo) instead")
    p.add_argument("--no-record", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = p.parse_args()
    lines = [f"## Evaluation ({dt.date.today().isoformat()}, {os.cpu_count()} CPUs)", "",
             "t-SNE of 5,000 points × 50 dimensions, perplexity 30, same data, one run:", "",
             "| implementation | seconds | × openTSNE |", "|---|---:|---:|"]
    tsne = tsne_side_by_side()
    base = tsne[0][1]
    for name, sec in tsne:
        lines.append(f"| {name} | {sec:.1f} | {sec / base:.2f} |")
    if args.model_root or args.report:
        lines += ["", f"Experiments through the service (embedded server, cold cache, {args.report or args.model_root}):", "",
                  "| experiment | images | seconds | images/s |", "|---|---:|---:|---:|"]
        for title, images, sec in experiments_throughput(args.model_root, args.report):
            if images:
                lines.append(f"| {title} | {images} | {sec:.1f} | {images / sec:.2f} |")
            elif title:
                lines += ["", title]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
