"""Training the pipeline's models in several processes at once (``python -m models train --jobs N``).

A model of the ``small`` preset keeps about 1.2–1.5 of two CPU cores busy: at 128 px and batch 8
TensorFlow's kernels are too short to spread over many threads. Training two models side by
side, one thread each, uses the cores the single process leaves idle (measured on two cores: the
ten models of ``small`` in 299 s with ``jobs=2`` against 445 s in one process; a run that waits on
one long model gains less, since that model then has one thread).

Each model is trained and exported in its own worker process (``spawn``: TensorFlow must not be
forked once it has started), with ``threads`` intra- and inter-op threads, and the worker returns
its :class:`models.presets.ModelRecord` without the Keras model. A worker regenerates the data
from the seed (deterministic, a few seconds) and keeps it for its next model. The models are
the same as in one process up to floating-point reduction order (fewer threads sum in another
order), so accuracies can differ in the third decimal.

A model that fails does not stop the others: every other model is trained and exported, and
the run then raises :class:`ParallelTrainingError` naming the models that failed and why.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["ParallelTrainingError", "default_threads", "train_parallel"]

#: Data sets a worker process has generated, by (kind, preset name, seed): its next model reuses them.
_WORKER_DATA: dict[tuple[str, str, int], tuple[Any, Any, Any, dict[str, Any]]] = {}


class ParallelTrainingError(RuntimeError):
    """Some models of a parallel run failed; the others were trained (and exported)."""

    def __init__(self, failures: dict[str, str], records: list[Any]) -> None:
        self.failures = failures
        self.records = records
        listed = "; ".join(f"{name}: {why}" for name, why in failures.items())
        super().__init__(f"{len(failures)} of {len(failures) + len(records)} models failed ({listed}); "
                         f"the other {len(records)} were trained")


def default_threads(jobs: int) -> int:
    """TensorFlow threads per worker: the usable cores shared evenly among ``jobs`` (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // jobs)


def _init_worker(threads: int) -> None:
    """Set the worker's thread pools before TensorFlow runs any op, quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.quiet import native_stderr_silenced

    with native_stderr_silenced(os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        tf.constant(0.0) + 1.0


def _worker_data(kind: str, preset: Any, seed: int) -> tuple[Any, Any, Any, dict[str, Any]]:
    from models.presets import make_city_data, make_landmark_data

    key = (kind, preset.name, seed)
    if key not in _WORKER_DATA:
        _WORKER_DATA.clear()  # one data set at a time: the two kinds alternate rarely
        _WORKER_DATA[key] = (make_landmark_data if kind == "landmarks" else make_city_data)(preset, seed)
    return _WORKER_DATA[key]


def _train_in_worker(name: str, preset: Any, seed: int, out: str | None, epochs: int | None,
                     checkpoint_dir: str | None, lr_scaling: str, announce: bool) -> Any:
    """Train (and export) one model in a worker; returns its record without the Keras model."""
    from models.presets import export_record, train_one

    if announce:  # the worker shares the terminal: say when a model starts, not only when it ends
        print(f"  {name}: training (process {os.getpid()})", flush=True)
    t0 = time.perf_counter()
    kind = "landmarks" if name.startswith("embedding_") else "cities"
    *data, data_cfg = _worker_data(kind, preset, seed)
    data_kw = {"landmark_data": tuple(data)} if kind == "landmarks" else {"city_data": tuple(data)}
    rec = train_one(name, preset, seed, epochs=epochs, verbose=0, checkpoint_dir=checkpoint_dir,
                    lr_scaling=lr_scaling, **data_kw)
    if out is not None:
        export_record(rec, out, preset, data_cfg)
    rec.result.model = None  # a Keras model does not cross processes; the export holds it
    rec.wall_seconds = time.perf_counter() - t0
    return rec


def train_parallel(
    names: Sequence[str],
    preset: Any,
    out: str | Path | None,
    *,
    seed: int,
    jobs: int,
    epochs: int | None = None,
    checkpoint_dir: str | Path | None = None,
    lr_scaling: str = "sqrt",
    threads: int | None = None,
    log: Callable[[str], None] | None = print,
) -> list[Any]:
    """Train (and export) ``names`` of ``preset`` in ``jobs`` worker processes.

    Args:
        names: Validated model names (:func:`models.presets.resolve_names`), in training order.
        preset: A :class:`models.presets.Preset`.
        out: Model root to export into, or ``None``.
        seed, epochs, checkpoint_dir, lr_scaling: As :func:`models.presets.train_preset`.
        jobs: Worker processes (at most ``len(names)`` are started).
        threads: TensorFlow threads per worker (``None`` = :func:`default_threads`).
        log: Where to send one line per finished model.

    Returns:
        One :class:`models.presets.ModelRecord` per model, in the order of ``names``; their
        ``result.model`` is ``None`` (the exported SavedModel holds the weights).

    Raises:
        ParallelTrainingError: after all models ran, when some failed (its ``records`` hold the others).
    """
    say = log or (lambda _msg: None)
    workers = max(1, min(jobs, len(names)))
    threads = threads or default_threads(workers)
    say(f"training {len(names)} models in {workers} processes, {threads} TensorFlow thread(s) each "
        f"(preset {preset.name!r})")
    records: dict[str, Any] = {}
    failures: dict[str, str] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        pending: dict[Future, str] = {
            pool.submit(_train_in_worker, name, preset, seed, None if out is None else str(out), epochs,
                        None if checkpoint_dir is None else str(checkpoint_dir), lr_scaling, log is not None): name
            for name in names
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    name = pending.pop(future)
                    _collect(future, name, records, failures, say, len(records) + len(failures) + 1, len(names))
        except BaseException:  # Ctrl-C: stop the workers now; the models already exported stay in place
            workers_now = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers_now:
                process.terminate()
            raise
    ordered = [records[n] for n in names if n in records]
    if failures:
        raise ParallelTrainingError(failures, ordered)
    return ordered


def _collect(future: Future, name: str, records: dict[str, Any], failures: dict[str, str],
             say: Callable[[str], None], index: int, total: int) -> None:
    from models.presets import format_record_line

    try:
        rec = future.result()
    except Exception as err:  # noqa: BLE001  (reported with the model's name; the others go on)
        failures[name] = f"{type(err).__name__}: {err}"
        say(f"[{index}/{total}] {name} FAILED: {failures[name]}")
        return
    records[name] = rec
    say(f"[{index}/{total}] {format_record_line(rec)}")
