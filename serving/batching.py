"""Micro-batching: merge concurrent requests for the same model version and signature.

Parameters carry TF Serving's batching names (``--enable_batching`` / ``batching_parameters``):

* ``max_batch_size`` — images per executed batch (a request larger than this runs alone);
* ``batch_timeout_micros`` — how long the first request of a batch waits for company before the
  batch is *eligible* to run (0 = run as soon as an execution slot is free);
* ``num_batch_threads`` — batches executing at the same time (shared by every queue);
* ``max_enqueued_batches`` — batches waiting per queue; beyond that a request is refused with
  ``RESOURCE_EXHAUSTED`` (a bounded queue).

How it works (no extra threads): the request that opens a batch is its *leader*. It waits up to
``batch_timeout_micros`` (or until the batch is full), then for an execution slot; while it waits,
the batch stays open and later requests with the same key join it. When the leader gets a slot
it closes the batch, concatenates the inputs along axis 0, runs the signature once, splits the
outputs and wakes the followers. So under load batches form by themselves (requests pile up while
the slots are busy) and an idle server adds no latency with the default timeout of 0.

A queue key is (model, version, signature, the trailing shapes and dtypes of the batched inputs,
the values of the non-batched scalar inputs): only requests that can be concatenated are merged.
Each task learns the size of the batch it ran in (``BatchResult.batch_size``), which the explain.v1
responses report, and :class:`serving.metrics.ServingMetrics` records every executed batch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping

import numpy as np

from serving.errors import DeadlineExceeded, ResourceExhausted

__all__ = ["BatchingOptions", "BatchResult", "Batcher"]

RunFn = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's batching parameters (see the module docstring)."""

    enabled: bool = True
    max_batch_size: int = 32
    batch_timeout_micros: int = 0
    num_batch_threads: int = 2
    max_enqueued_batches: int = 64

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size {self.max_batch_size} must be >= 1")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros {self.batch_timeout_micros} must be >= 0")
        if self.num_batch_threads < 1:
            raise ValueError(f"num_batch_threads {self.num_batch_threads} must be >= 1")
        if self.max_enqueued_batches < 1:
            raise ValueError(f"max_enqueued_batches {self.max_enqueued_batches} must be >= 1")


@dataclass
class BatchResult:
    """One task's share of an executed batch."""

    outputs: dict[str, np.ndarray]
    batch_size: int  # images in the executed batch
    requests: int  # requests merged into it
    queue_s: float  # time between submission and the start of execution
    compute_s: float  # execution time of the whole batch


@dataclass(eq=False)
class _Task:
    inputs: dict[str, np.ndarray]
    size: int
    is_active: Callable[[], bool]
    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: BatchResult | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Batch:
    key: Hashable
    tasks: list[_Task] = field(default_factory=list)
    size: int = 0
    full: threading.Event = field(default_factory=threading.Event)
    closed: bool = False


def _split(outputs: Mapping[str, np.ndarray], tasks: list[_Task], total: int, batched: set[str] | None) -> list[dict[str, np.ndarray]]:
    parts: list[dict[str, np.ndarray]] = [{} for _ in tasks]
    for name, value in outputs.items():
        arr = np.asarray(value)
        split = (name in batched) if batched is not None else (arr.ndim >= 1 and arr.shape[0] == total)
        if split and len(tasks) > 1:
            start = 0
            for i, t in enumerate(tasks):
                parts[i][name] = arr[start:start + t.size]
                start += t.size
        else:
            for part in parts:
                part[name] = arr
    return parts


class Batcher:
    """Merges concurrent :meth:`run` calls with the same key (see the module docstring).

    Args:
        options: The batching parameters.
        on_batch: Called as ``on_batch(label, images, requests)`` for every executed batch
            (metrics); ``label`` is what :meth:`run` was given.
    """

    def __init__(self, options: BatchingOptions, on_batch: Callable[[Any, int, int], None] | None = None,
                 on_reject: Callable[[Any], None] | None = None) -> None:
        self.options = options
        self._on_batch = on_batch
        self._on_reject = on_reject
        self._lock = threading.Lock()
        self._open: dict[Hashable, _Batch] = {}
        self._waiting: dict[Hashable, int] = {}
        self._slots = threading.BoundedSemaphore(options.num_batch_threads)

    def run(
        self,
        key: Hashable,
        inputs: dict[str, np.ndarray],
        run: RunFn,
        *,
        label: Any = None,
        batched_outputs: set[str] | None = None,
        is_active: Callable[[], bool] = lambda: True,
        timeout: float | None = None,
    ) -> BatchResult:
        """Run ``run(inputs)``, possibly merged with other calls of the same ``key``.

        Every input must have the batch on axis 0 (same length for all inputs of a call).
        ``batched_outputs`` names the outputs that have the batch on axis 0 (default: every output
        whose first dimension equals the batch size); the others are given whole to every task.

        Raises:
            ResourceExhausted: the queue of ``key`` already holds ``max_enqueued_batches`` batches.
            DeadlineExceeded: ``timeout`` seconds passed before the batch finished.
            Exception: whatever ``run`` raised (every task of the batch gets it).
        """
        size = int(next(iter(inputs.values())).shape[0]) if inputs else 1
        task = _Task(inputs, size, is_active)
        opts = self.options
        if not opts.enabled or size >= opts.max_batch_size:
            batch = _Batch(key, [task], size, closed=True)
            with self._slots if opts.enabled else _NULL:
                self._execute(batch, run, label, batched_outputs)
            return self._result(task)

        leader = False
        with self._lock:
            batch = self._open.get(key)
            if batch is None or batch.size + size > opts.max_batch_size:
                if batch is not None:  # the next request would not fit: the open batch is full
                    batch.full.set()
                    del self._open[key]
                if self._waiting.get(key, 0) >= opts.max_enqueued_batches:
                    if self._on_reject is not None:
                        self._on_reject(label)
                    raise ResourceExhausted(
                        f"the batching queue of {label or key} is full ({opts.max_enqueued_batches} batches "
                        "waiting); retry later"
                    )
                batch = _Batch(key)
                self._open[key] = batch
                self._waiting[key] = self._waiting.get(key, 0) + 1
                leader = True
            batch.tasks.append(task)
            batch.size += size
            if batch.size >= opts.max_batch_size:
                batch.full.set()
                if self._open.get(key) is batch:
                    del self._open[key]

        if leader:
            if opts.batch_timeout_micros > 0:
                batch.full.wait(opts.batch_timeout_micros / 1e6)
            with self._slots:
                with self._lock:
                    if self._open.get(key) is batch:
                        del self._open[key]
                    batch.closed = True
                    self._waiting[key] -= 1
                    if not self._waiting[key]:
                        del self._waiting[key]
                self._execute(batch, run, label, batched_outputs)
        return self._result(task, timeout)

    def _result(self, task: _Task, timeout: float | None = None) -> BatchResult:
        if not task.done.wait(timeout):
            raise DeadlineExceeded("deadline exceeded while waiting in the batching queue")
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def _execute(self, batch: _Batch, run: RunFn, label: Any, batched_outputs: set[str] | None) -> None:
        """Run a closed batch and hand every task its share (or the error); never raises."""
        started = time.perf_counter()
        try:
            tasks = []
            for t in batch.tasks:
                if t.is_active():
                    tasks.append(t)
                else:  # its client is gone: do not spend compute on it
                    t.error = DeadlineExceeded("the request ended before its batch ran")
                    t.done.set()
            if not tasks:
                return
            total = sum(t.size for t in tasks)
            if len(tasks) == 1:
                inputs = tasks[0].inputs
            else:
                inputs = {name: np.concatenate([t.inputs[name] for t in tasks]) for name in tasks[0].inputs}
            outputs = dict(run(inputs))
            parts = _split(outputs, tasks, total, batched_outputs)
            compute = time.perf_counter() - started
            for t, part in zip(tasks, parts):
                t.result = BatchResult(part, total, len(tasks), started - t.submitted, compute)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting task
            for t in batch.tasks:
                if not t.done.is_set():
                    t.error = exc
                    t.done.set()
            return
        if self._on_batch is not None:
            try:
                self._on_batch(label, total, len(tasks))
            except Exception:  # noqa: BLE001 - metrics never fail a batch
                pass
        for t in tasks:
            t.done.set()


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NULL = _NullContext()
