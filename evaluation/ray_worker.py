"""The worker side of the distributed evaluation: what a Ray task runs, without importing Ray.

A task receives an experiment's ``compute(indices)`` closure (cloud-pickled by the driver; the
closure's :class:`~evaluation.pipeline.Context` arrives as a :class:`WorkerContext` bound to this
process's own service client), the cache keys of its batch and their indices. It computes the
keys that are not in the shared cache yet and writes each result with an atomic rename
(:class:`~evaluation.cache.ResultCache`), so the cache stays the single source of truth: the
driver reads every result back from it, a retried task skips what its killed attempt already
wrote, and a restarted driver finds everything finished before it died.

The service client is per worker process and kept for the process' life (Ray reuses worker
processes between tasks): a round-robin :class:`~serving.client.ExplanationClient` over the
servers, or, for ``--model-root``, a client of an embedded server this process starts once.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from evaluation.cache import ResultCache
from evaluation.pipeline import Context, EvalConfig

__all__ = ["ServiceSpec", "WorkerContext", "batches", "restore_shared", "run_batch", "worker_client", "worker_context"]


@dataclass(frozen=True)
class ServiceSpec:
    """How a worker reaches the explanation service.

    Attributes:
        addresses: Server addresses (round-robin, as :func:`serving.client.parse_addresses`
            gives them), or ``None`` for an embedded server per worker on ``model_root``.
        model_root: TF Serving model root every worker can read (with ``addresses=None``).
        token: Bearer token of a server with auth.
        timeout: Deadline per request in seconds.
    """

    addresses: tuple[str, ...] | None
    model_root: str | None = None
    token: str | None = None
    timeout: float = 600.0

    def __post_init__(self) -> None:
        if not self.addresses and not self.model_root:
            raise ValueError("ServiceSpec needs addresses (servers) or a model_root (embedded server per worker)")


_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"spec": None, "client": None, "stack": None, "calls": 0}


def _close_state() -> None:
    stack = _STATE.get("stack")
    _STATE.update(spec=None, client=None, stack=None)
    if stack is not None:
        stack.close()


atexit.register(_close_state)


def worker_client(spec: ServiceSpec) -> Any:
    """This process's :class:`~serving.client.ExplanationClient` for ``spec`` (created once)."""
    with _LOCK:
        if _STATE["spec"] == spec and _STATE["client"] is not None:
            return _STATE["client"]
        _close_state()
        from serving.client import ExplanationClient

        stack = contextlib.ExitStack()
        try:
            addresses: Sequence[str]
            if spec.addresses:
                addresses = list(spec.addresses)
            else:
                from serving.server import start_server

                server = stack.enter_context(start_server(str(spec.model_root), port=0, host="127.0.0.1"))
                addresses = [server.address]
            client = stack.enter_context(
                ExplanationClient(addresses, timeout=spec.timeout, token=spec.token, retries=8, backoff_max=5.0))
        except BaseException:
            stack.close()
            raise
        _STATE.update(spec=spec, client=client, stack=stack)
        return client


class WorkerContext(Context):
    """A :class:`Context` rebuilt in a worker: the driver's models, data and configuration, this
    process's client and a plain cache on the shared folder; ``service_calls`` counts per process."""

    def __init__(self, config: EvalConfig, service: ServiceSpec, models: Mapping[str, Any], data: Any,
                 landmarks: Any = None) -> None:  # noqa: D107 (no super().__init__: no ListModels call)
        self.config = replace(config, progress=False)
        self.service = service
        self.out = Path(config.out)
        self.cache = ResultCache(self.out / "cache")
        self.models = dict(models)
        self.classifiers = sorted(n for n, m in self.models.items() if m.kind == "classifier")
        self.embeddings = sorted(n for n, m in self.models.items() if m.kind == "embedding")
        self.data = data
        self.landmarks = landmarks
        self.results = {}

    @property
    def client(self) -> Any:  # type: ignore[override]
        return worker_client(self.service)

    @property
    def service_calls(self) -> int:  # type: ignore[override]
        return int(_STATE["calls"])

    @service_calls.setter
    def service_calls(self, value: int) -> None:
        _STATE["calls"] = int(value)


def _resolve(obj: Any) -> Any:
    """An ``ObjectRef`` fetched from the Ray object store; anything else unchanged."""
    if type(obj).__name__ == "ObjectRef":
        import ray

        return ray.get(obj)
    return obj


def restore_shared(payload: tuple[str, Any]) -> Any:
    """Unpickling target of a data set the driver shared: ``("ref", ObjectRef)`` → the object from
    the object store; ``("value", (cls, state))`` → a copy rebuilt from its ``__dict__``."""
    kind, value = payload
    if kind == "ref":
        return _resolve(value)
    cls, state = value
    obj = object.__new__(cls)
    obj.__dict__.update(state)
    return obj


def worker_context(config: EvalConfig, service: ServiceSpec, models: Mapping[str, Any], data: Any,
                   landmarks: Any = None) -> WorkerContext:
    """Unpickling target of a driver's context (``data``/``landmarks`` may be Ray ``ObjectRef``s)."""
    return WorkerContext(config, service, models, _resolve(data), _resolve(landmarks))


def batches(indices: Sequence[int], batch_size: int) -> list[list[int]]:
    """``indices`` cut in order into batches of ``batch_size`` (the single-process batching).

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = list(indices)
    return [items[s : s + batch_size] for s in range(0, len(items), batch_size)]


def run_batch(
    compute: Callable[[list[int]], Sequence[Mapping[str, np.ndarray]]],
    keys: Sequence[str],
    indices: Sequence[int],
    cache_root: str,
) -> tuple[int, int]:
    """Compute the items of one batch that the shared cache lacks and store them atomically.

    Args:
        compute: ``compute(indices) -> results``, one mapping of arrays per index, in order.
        keys: Cache key of each index.
        indices: Item indices that ``compute`` understands.
        cache_root: The shared cache folder.

    Returns:
        ``(items computed, service calls made)``; ``(0, 0)`` when every key was already cached
        (a retry after the first attempt wrote them, or another driver's run).

    Raises:
        ValueError: ``keys`` and ``indices`` differ in length.
        RuntimeError: ``compute`` returned a different number of results.
    """
    if len(keys) != len(indices):
        raise ValueError(f"{len(keys)} keys for {len(indices)} indices")
    cache = ResultCache(cache_root)
    todo = [(k, i) for k, i in zip(keys, indices) if not cache._path(k).exists() or cache.get(k) is None]
    if not todo:
        return 0, 0
    calls0 = int(_STATE["calls"])
    out = compute([i for _, i in todo])
    if len(out) != len(todo):
        raise RuntimeError(f"compute returned {len(out)} results for {len(todo)} items")
    for (key, _), arrays in zip(todo, out):
        cache.put(key, {k: np.asarray(v) for k, v in arrays.items()})
    return len(todo), int(_STATE["calls"]) - calls0
