"""The evaluation on a Ray cluster: ``python -m evaluation --ray auto|ADDRESS …``.

The experiments run unchanged on the driver. Every per-image computation they ask of the cache
(:meth:`evaluation.cache.ResultCache.get_or_compute`: explanations, features, cached predictions,
segmentations, deletion/insertion curves, randomisation maps) is cut into the batches a
single-process run would use, and each batch that is missing from the cache becomes one Ray task
(:func:`evaluation.ray_worker.run_batch`), all of a call's batches in flight at once over the
cluster. A task talks to the service through its worker process's own client and writes its
results into the shared cache folder with atomic renames; the driver waits for the tasks (its
progress bar counts the cluster's finished items), then reads every result back from the cache.
The reduction (tables, layouts, figures, report) stays on the driver.

Why tasks and not Ray Data or an actor pool: the work arrives as many small, dependent waves (an
experiment's next call depends on the last one's results), which tasks submit with no pipeline to
build per call; Ray retries a task whose worker died (``max_retries``) with nothing to rebuild,
while an actor's restart would have to restore its state; and Ray reuses worker processes, so
the per-process client (or embedded server) is created once per worker anyway.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from evaluation.cache import ResultCache
from evaluation.pipeline import Context, EvalConfig
from evaluation.ray_worker import ServiceSpec, batches, restore_shared, run_batch, worker_context

__all__ = ["RayCache", "RayContext", "connect", "share", "MAX_RETRIES"]

log = logging.getLogger("evaluation")

MAX_RETRIES = 3
"""Times Ray reruns a batch whose worker process died (then the run fails with the error)."""

_REMOTE: dict[str, Any] = {}
_SHARED: dict[int, tuple[Any, Any]] = {}  # id(object) -> (object, ObjectRef) of the data sets put once


def _serialize_shared(obj: Any) -> tuple[str, Any]:
    hit = _SHARED.get(id(obj))
    if hit is not None and hit[0] is obj:
        return "ref", hit[1]
    return "value", (type(obj), dict(obj.__dict__))


def share(obj: Any) -> Any:
    """Put ``obj`` (a data set) into the object store once; returns its ``ObjectRef``.

    Afterwards every pickling of that very object for a task (inside an experiment's closure)
    sends only the reference: the images cross to each node once per run, not once per call.
    """
    import ray

    ref = ray.put(obj)
    _SHARED[id(obj)] = (obj, ref)
    ray.util.register_serializer(type(obj), serializer=_serialize_shared, deserializer=restore_shared)
    return ref


def _remote_run_batch() -> Any:
    import ray

    if "run_batch" not in _REMOTE:
        _REMOTE["run_batch"] = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(run_batch)
    return _REMOTE["run_batch"]


def _code_root() -> str:
    """The folder that holds this project's packages, as the driver imports them."""
    return str(Path(__file__).resolve().parent.parent)


def connect(address: str) -> dict[str, float]:
    """Join the Ray cluster at ``address`` (``"auto"`` = the one started on this machine).

    The workers get the driver's code first on their ``PYTHONPATH`` (the same code computes every
    result). Returns the cluster's resources.

    Raises:
        ValueError: ``address`` is empty.
        ConnectionError: No cluster answers at ``address``.
    """
    if not address or not address.strip():
        raise ValueError("--ray needs 'auto' or a cluster address HOST:PORT (or ray://HOST:PORT)")
    import ray

    path = os.pathsep.join(p for p in (_code_root(), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if not ray.is_initialized():
        try:
            ray.init(address=address.strip(), logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"env_vars": env})
        except ConnectionError as err:
            raise ConnectionError(f"no Ray cluster at --ray {address!r}: {err}") from err
    return dict(ray.cluster_resources())


class RayCache(ResultCache):
    """A :class:`ResultCache` whose missing items are computed by Ray tasks on the cluster.

    Attributes:
        remote_calls: Service calls the tasks reported.
        tasks: Tasks that computed something.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        super().__init__(Path(root).resolve())
        self.remote_calls = 0
        self.tasks = 0

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], Sequence[Mapping[str, np.ndarray]]],
        batch_size: int = 16,
        progress: Any = None,
    ) -> list[dict[str, np.ndarray]]:
        """As :meth:`ResultCache.get_or_compute`, the missing batches as concurrent Ray tasks."""
        import ray

        results, missing = self.cached(keys, progress)
        if not missing:
            return results  # type: ignore[return-value]
        fn = _remote_run_batch()
        compute_ref = ray.put(compute)  # the closure (and what it holds) once per call, shared by its tasks
        pending = {fn.remote(compute_ref, [keys[i] for i in b], b, str(self.root)): b for b in batches(missing, batch_size)}
        waiting = list(pending)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for ref in done:
                computed, calls = ray.get(ref)  # a task's error (after its retries) ends the run here
                self.remote_calls += calls
                self.tasks += computed > 0
                if progress is not None:
                    progress.update(len(pending[ref]))
        for i in missing:
            results[i] = self.get(keys[i])
            if results[i] is None:
                raise RuntimeError(
                    f"a Ray task stored key {keys[i][:12]}… but {self.root} has no readable entry: the cache "
                    "folder (--out) must be one folder that every node of the cluster can write")
        self.misses += len(missing)
        return results  # type: ignore[return-value]


class RayContext(Context):
    """The driver's :class:`Context` of a ``--ray`` run.

    Its cache is a :class:`RayCache`. Pickled into a task (inside an experiment's ``compute``
    closure), it becomes a :class:`~evaluation.ray_worker.WorkerContext` with the worker's own
    client; the images travel once through the object store.

    Args:
        config, client, data, landmarks: As :class:`Context` (``client`` is the driver's).
        service: How workers reach the service.
    """

    def __init__(self, config: EvalConfig, client: Any, data: Any, landmarks: Any = None,
                 service: ServiceSpec | None = None) -> None:
        if service is None:
            raise ValueError("RayContext needs a ServiceSpec (the servers, or the model root of per-worker servers)")
        super().__init__(config, client, data, landmarks)
        self.out = self.out.resolve()
        self.cache = RayCache(self.out / "cache")
        self.service = service
        self._data_ref = share(data) if data is not None else None
        self._landmarks_ref = share(landmarks) if landmarks is not None else None
        self._local_calls = 0

    @property
    def service_calls(self) -> int:  # type: ignore[override]
        return self._local_calls + getattr(getattr(self, "cache", None), "remote_calls", 0)

    @service_calls.setter
    def service_calls(self, value: int) -> None:
        self._local_calls = int(value) - getattr(getattr(self, "cache", None), "remote_calls", 0)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        config = EvalConfig(**{**self.config.__dict__, "out": self.out, "progress": False})
        return worker_context, (config, self.service, self.models, self._data_ref, self._landmarks_ref)


def print_cluster(resources: Mapping[str, float]) -> None:
    """One line on stderr: the nodes and CPUs of the cluster the run uses."""
    import ray

    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    print(f"[evaluation] Ray cluster: {nodes} node(s), {resources.get('CPU', 0):g} CPUs for tasks", file=sys.stderr)
