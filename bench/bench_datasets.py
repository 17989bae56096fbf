"""Benchmark of the synthetic data generators: images per second on one process.

Run ``.venv/bin/python -m bench.bench_datasets``; prints a table and appends a "Data generation"
section to ``bench/RESULTS.md`` (``--no-record`` to skip). Each figure is the best of ``--repeats``
runs generating ``--images`` images (``make_cities``: two cities of half as many each).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from models.datasets import make_cities, make_landmarks

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _best_rates(generate: Callable[[], object], images: int, repeats: int) -> tuple[float, float]:
    """Images per second of the fastest of ``repeats`` calls (after one warm-up call), by wall
    clock and by process CPU time (the latter is robust to other load on a shared machine)."""
    generate()
    wall = cpu = float("inf")
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        generate()
        wall = min(wall, time.perf_counter() - start_wall)
        cpu = min(cpu, time.process_time() - start_cpu)
    return images / wall, images / max(cpu, 1e-9)


Row = tuple[str, int, int, float, float]


def run(sizes: Sequence[int], images: int, repeats: int) -> list[Row]:
    """Return ``(generator, image size, images, images/s wall, images/s CPU)`` rows."""
    rows = []
    for size in sizes:
        n = images // 2
        rows.append(("make_cities", size, 2 * n,
                     *_best_rates(lambda: make_cities(n, size, seed=0), 2 * n, repeats)))
    for size in sizes:
        n = images // 4
        rows.append(("make_landmarks", size, 4 * n,
                     *_best_rates(lambda: make_landmarks(n, size, seed=0, num_classes=4), 4 * n,
                                  repeats)))
    return rows


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _table(rows: Sequence[Row]) -> str:
    lines = ["| generator | image size | images | images / s (wall) | images / s (CPU time) "
             "| CPU ms / image |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, size, count, wall, cpu in rows:
        lines.append(f"| `{name}` | {size} | {count} | {wall:,.0f} | {cpu:,.0f} "
                     f"| {1000.0 / cpu:.2f} |")
    return "\n".join(lines)


def _load() -> str:
    try:
        return "load average %.1f" % os.getloadavg()[0]
    except OSError:
        return "load average unknown"


def record(rows: Sequence[Row], repeats: int, path: Path = RESULTS) -> None:
    """Append a "Data generation" section (date, machine, table) to ``path``."""
    header = "" if path.exists() else "# Benchmark results\n"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (
        f"{header}\n## Data generation\n\n"
        f"{when}; machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}, {_load()}; Python "
        f"{platform.python_version()}, NumPy {np.__version__}. One process, best of {repeats} "
        f"runs after a warm-up; `make_cities` with the default two cities, `make_landmarks` with "
        f"4 classes. The generators are single-threaded NumPy; the CPU-time column is the one "
        f"to compare when the machine is shared. Command: "
        f"`.venv/bin/python -m bench.bench_datasets`.\n\n{_table(rows)}\n"
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)
    rows = run(args.sizes, args.images, args.repeats)
    print(_table(rows))
    if not args.no_record:
        record(rows, args.repeats)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
