"""Training throughput per architecture at a preset's size (default: ``small``, what ``make demo``
trains), on this machine.

For each classifier (with the preset's per-architecture width and batch size) and each embedding
network (batch-hard triplet loss), a model is built, compiled with the training recipe of
:mod:`models.train` (Adam, ε 1e-8) and warmed up (one short ``fit`` traces the training step);
then ``fit`` runs over ``--images`` random images for ``--epochs`` epochs through the same
``tf.data`` pipeline as :func:`models.train.train_classifier` (uint8 → float32 in the
pipeline, shuffled). Reported: training images per second by wall clock and by process CPU time
(all threads; the column to compare on a shared machine), and the resulting seconds per epoch on
the preset's training split.

Run: ``.venv/bin/python -m bench.bench_training [--preset small] [--images 256] [--epochs 2]``.
Prints a table and appends it to ``bench/RESULTS.md`` under "## Training throughput".
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Training throughput"


def _measure(build, loss, batch_size: int, images: int, epochs: int, size: int, labels: int) -> tuple[float, float, int]:
    import keras
    import numpy as np

    from models import train as T
    from models.datasets import ImageSet

    rng = np.random.default_rng(0)
    data = ImageSet(
        images=rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8),
        labels=rng.integers(0, labels, images),
        class_names=[f"c{i}" for i in range(labels)],
    )
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer=T.make_optimizer(1e-4), loss=loss)
    warm = data.subset(np.arange(min(images, 2 * batch_size)))
    model.fit(T._train_dataset(warm, batch_size, 0), epochs=1, verbose=0)
    ds = T._train_dataset(data, batch_size, 0)
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(ds, epochs=epochs, verbose=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return images * epochs / wall, images * epochs / cpu, int(model.count_params())


def run(preset_name: str = "small", images: int = 256, epochs: int = 2, write: bool = True) -> str:
    """Measure, print and (optionally) append the table; returns the Markdown section body."""
    import keras
    import tensorflow as tf

    from models import architectures as A
    from models import presets as P
    from models import train as T

    p = P.get_preset(preset_name)
    n_train_cls = round(p.n_per_class * 0.6) * 2
    n_train_emb = round(p.embedding_n_per_class * 0.6) * p.embedding_classes
    rows = []
    for arch in P.CLASSIFIER_NAMES:
        width, bs = p.for_arch(arch, "width"), p.for_arch(arch, "batch_size")
        ips_wall, ips_cpu, params = _measure(
            lambda: A.build_classifier(arch, p.image_size, 2, width),
            keras.losses.SparseCategoricalCrossentropy(), bs, images, epochs, p.image_size, 2,
        )
        rows.append((arch, p.image_size, width, bs, params, ips_wall, ips_cpu, n_train_cls))
        print(f"{arch}: {ips_wall:.0f} images/s (wall), {ips_cpu:.0f} images/s (CPU)", flush=True)
    for pooling in ("avg", "max"):
        ips_wall, ips_cpu, params = _measure(
            lambda: A.embedding_net(p.embedding_image_size, pooling, p.embedding_dim, p.embedding_width),
            T._TripletLoss(p.margin), p.embedding_batch_size, images, epochs, p.embedding_image_size,
            p.embedding_classes,
        )
        rows.append((f"embedding_{pooling}", p.embedding_image_size, p.embedding_width, p.embedding_batch_size,
                     params, ips_wall, ips_cpu, n_train_emb))
        print(f"embedding_{pooling}: {ips_wall:.0f} images/s (wall), {ips_cpu:.0f} images/s (CPU)", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    head = (
        f"{now}; machine: {os.cpu_count()} CPUs (nproc), {platform.processor() or platform.machine()}, "
        f"load average {load:.1f} at the end; TensorFlow {tf.__version__} on "
        f"{'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}. Preset `{p.name}`; random uint8 "
        f"images through the training pipeline of `models.train` (Adam, cross-entropy or batch-hard triplet "
        f"loss), {images} images × {epochs} epochs after a warm-up `fit`. `s / epoch` = the preset's training "
        f"split (6/10 of the data) at the wall-clock rate. Command: "
        f"`.venv/bin/python -m bench.bench_training --preset {p.name}`."
    )
    table = [
        "| model | input | width | batch | parameters | images / s (wall) | images / s (CPU time) | train images | s / epoch (wall) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, size, width, bs, params, w, c, n in rows:
        table.append(f"| {name} | {size} | {width:g} | {bs} | {params:,} | {w:,.0f} | {c:,.0f} | {n} | {n / w:.1f} |")
    body = head + "\n\n" + "\n".join(table) + "\n"
    print()
    print(body)
    if write:
        _append(body)
    return body


def _append(body: str) -> None:
    """Add ``body`` at the end of this benchmark's section (created at the end of the file)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text:
        RESULTS.write_text(text.rstrip("\n") + f"\n\n{SECTION}\n\n{body}")
        return
    start = text.index(SECTION) + len(SECTION)
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt + 1
    section = text[:end].rstrip("\n") + "\n\n" + body
    RESULTS.write_text(section + ("\n" + text[end:] if nxt >= 0 else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_training", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="preset whose sizes to measure (default: small)")
    parser.add_argument("--images", type=int, default=256, help="images per timed epoch (default: 256)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default: 2)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    from models.presets import get_preset

    try:
        get_preset(args.preset)
    except ValueError as err:
        parser.error(str(err))
    run(args.preset, args.images, args.epochs, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
