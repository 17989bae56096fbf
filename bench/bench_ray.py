"""The evaluation's throughput: one process against one and two local Ray nodes.

One explanation server (in this process, gRPC on loopback) serves ``--model-root``; the same
evaluation (``--experiments``, sizes) runs from a cold cache as

1. ``python -m evaluation --server ADDR`` (single process, the baseline);
2. ``--ray`` on one local node with ``--cpus`` CPUs (tasks run ``cpus`` at a time);
3. ``--ray`` on ``nodes`` local nodes of one CPU each (same total CPUs).

Every Ray node runs on this machine, so Ray cannot add compute here: the figures measure its
overhead (scheduling, worker start-up, pickling, the shared cache) against what running two
batches at once wins when the service has idle cores. Prints a Markdown table (seconds of the
driver process, cached items computed, items per second, the cluster's start-up apart).

Run: ``nice -n 19 .venv/bin/python -m bench.bench_ray --model-root runs/models``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _evaluate(extra: list[str], address: str, out: Path, args: argparse.Namespace, env: dict[str, str]) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "evaluation", "--server", address, "--out", str(out), "--experiments", args.experiments,
           "--images-per-class", str(args.images_per_class), "--ccg-images-per-class", str(args.ccg_images_per_class),
           "--tsne-images-per-class", str(args.tsne_images_per_class), "--batch-size", str(args.batch_size),
           "--quiet", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, int(json.loads((out / "run.json").read_text())["cache_misses"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_ray", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-root", type=Path, required=True)
    p.add_argument("--experiments", default="residuals,descriptors,faithfulness")
    p.add_argument("--images-per-class", type=int, default=4)
    p.add_argument("--ccg-images-per-class", type=int, default=2)
    p.add_argument("--tsne-images-per-class", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the single node; the multi-node run uses this many nodes")
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from serving.server import start_server
    from tests.ray_cluster import LocalRayCluster, cluster_env

    rows: list[tuple[str, float, int, float]] = []
    with start_server(str(args.model_root), port=0, host="127.0.0.1") as server, \
            tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        env = cluster_env()
        seconds, items = _evaluate([], server.address, Path(tmp) / "single", args, env)
        rows.append(("single process", seconds, items, 0.0))
        for nodes, cpus in ((1, args.cpus), (args.cpus, 1)):
            t0 = time.perf_counter()
            with LocalRayCluster(nodes=nodes, cpus_per_node=cpus) as cluster:
                start = time.perf_counter() - t0
                seconds, items = _evaluate(["--ray", cluster.address], server.address, Path(tmp) / f"ray{nodes}", args, env)
            rows.append((f"Ray, {nodes} node(s) x {cpus} CPU", seconds, items, start))
    print(f"\nexperiments {args.experiments}; images/class {args.images_per_class}, ccg {args.ccg_images_per_class}, "
          f"tsne {args.tsne_images_per_class}; batch {args.batch_size}; one server in the bench process\n")
    print("| run | driver seconds | items computed | items/s | vs single | cluster start s |")
    print("|---|---:|---:|---:|---:|---:|")
    base = rows[0][1]
    for name, seconds, items, start in rows:
        print(f"| {name} | {seconds:.1f} | {items} | {items / seconds:.2f} | x{base / seconds:.2f} | {start:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
