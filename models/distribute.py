"""Distributed training with ``tf.distribute``: ``python -m models train --strategy ...``.

Three strategies (:data:`STRATEGIES`):

* ``default`` — today's single-device training (no ``tf.distribute`` strategy at all).
* ``mirrored`` — ``tf.distribute.MirroredStrategy`` over every local device (one replica per GPU;
  one replica on a machine without a GPU, where it trains exactly like ``default``).
* ``multi-worker`` — ``tf.distribute.MultiWorkerMirroredStrategy``: synchronous data parallelism
  over the workers named in the ``TF_CONFIG`` environment variable (JSON with ``cluster`` and
  ``task``, as TensorFlow documents it), gradients all-reduced with ring collectives.

The rules (see ``docs/scaling.md``):

* **Batch.** A preset's ``batch_size`` is the *per-replica* batch; every step consumes a global
  batch of ``batch_size × replicas`` (:func:`global_batch_size`), split evenly over the replicas.
* **Learning rate.** The papers' recipe is Adam at 1e-4 for batch 32 (seeds 000/001). A global
  batch ``k`` times larger is trained with the learning rate ``× sqrt(k)``
  (:func:`scaled_learning_rate`, rule ``"sqrt"``, the default): for adaptive methods the
  square-root rule (Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient
  algorithms"; Hoffer et al. 2017) keeps the update noise of the recipe, while the linear rule of
  Goyal et al. (2017) is derived for SGD and makes Adam's normalised steps ``k`` times larger.
  ``"linear"`` and ``"none"`` (keep 1e-4) can be asked for. The step schedule (×0.1 every 10
  epochs) and the number of epochs are kept: an epoch is still one pass over the training set,
  in ``k`` times fewer steps. With one replica every rule gives the recipe's rate.
* **Data.** Every worker builds the same data set from the seed and shuffles it with the same
  seed; ``tf.data`` auto-sharding is set explicitly to ``DATA`` (:func:`shard_options`): each
  global batch is split over the workers, so each worker sees a distinct part of every epoch,
  and the split is deterministic.
* **Chief.** The chief (task ``chief``, or ``worker`` 0 when the cluster has no ``chief``) alone
  exports and writes checkpoints where asked; the other workers write their checkpoints under
  ``CHECKPOINT_DIR/worker-<index>/`` (:func:`checkpoint_dir_for`), never over the chief's. Every
  worker runs every collective (training steps, validation, the best-weights callback): the
  validation logs are all-reduced, so the best epoch, and the weights restored, are the same on
  every worker.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "STRATEGIES",
    "LR_SCALINGS",
    "parse_tf_config",
    "make_strategy",
    "replicas",
    "is_chief",
    "worker_index",
    "global_batch_size",
    "scaled_learning_rate",
    "shard_options",
    "checkpoint_dir_for",
]

#: Accepted values of ``--strategy``.
STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multi-worker")
#: Accepted learning-rate scaling rules (see :func:`scaled_learning_rate`).
LR_SCALINGS: tuple[str, ...] = ("sqrt", "linear", "none")
_TASK_TYPES = ("chief", "worker")


def parse_tf_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read and check ``TF_CONFIG`` for ``--strategy multi-worker``.

    Args:
        environ: The environment (default ``os.environ``).

    Returns:
        ``{"cluster": {type: [host:port, ...]}, "task": {"type": str, "index": int}}``.

    Raises:
        ValueError: ``TF_CONFIG`` missing, not JSON, without ``cluster``/``task``, with a task
            type other than ``chief``/``worker`` or an index outside its list; the message names
            ``TF_CONFIG`` and the bad value.
    """
    env = os.environ if environ is None else environ
    text = env.get("TF_CONFIG")
    example = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError(f"--strategy multi-worker needs the TF_CONFIG environment variable, e.g. {example}")
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text!r}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict) or not isinstance(cfg.get("task"), dict):
        raise ValueError(f"TF_CONFIG {text!r} must be a JSON object with 'cluster' and 'task' objects, e.g. {example}")
    cluster, task = cfg["cluster"], cfg["task"]
    bad = [k for k in cluster if k not in _TASK_TYPES]
    if bad:
        raise ValueError(f"TF_CONFIG cluster has task type {bad[0]!r}; accepted: {list(_TASK_TYPES)}")
    for kind, addrs in cluster.items():
        if not isinstance(addrs, list) or not addrs or not all(isinstance(a, str) and ":" in a for a in addrs):
            raise ValueError(f"TF_CONFIG cluster[{kind!r}] {addrs!r} must be a non-empty list of 'host:port' strings")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise ValueError(f"TF_CONFIG task type {kind!r} is not in the cluster; accepted: {sorted(cluster)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ValueError(f"TF_CONFIG task index {index!r} must be an integer in [0, {len(cluster[kind]) - 1}] "
                         f"for task type {kind!r}")
    return {"cluster": cluster, "task": {"type": kind, "index": index}}


def make_strategy(name: str) -> Any:
    """The ``tf.distribute`` strategy called ``name`` (``None`` for ``default``).

    ``multi-worker`` checks ``TF_CONFIG`` (:func:`parse_tf_config`) and uses ring all-reduce
    (CPU and GPU alike). Create it before any other TensorFlow work of the process: the workers
    wait here until the whole cluster is up.

    Raises:
        ValueError: an unknown name (the message lists :data:`STRATEGIES`) or a bad ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; accepted: {list(STRATEGIES)}")
    if name == "default":
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    parse_tf_config()
    _patch_keras_scalar_mean()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def _patch_keras_scalar_mean() -> None:
    """Let Keras 3 average scalar logs over the workers of a ``MultiWorkerMirroredStrategy``.

    Keras reduces the per-replica logs of every train/test step (loss, accuracy) with
    ``strategy.reduce("MEAN", v, axis=0)`` in multi-worker mode, which fails on scalars
    ("Invalid reduction dimension 0 for input with 0 dimensions"). Scalars are reduced here with
    ``axis=None`` (the mean over the replicas, an all-reduce, so every worker gets the same logs);
    everything else goes to Keras unchanged. Idempotent; a no-op outside multi-worker mode.
    """
    from keras.src.backend.tensorflow import trainer as keras_trainer

    original = keras_trainer.reduce_per_replica
    if getattr(original, "_scalar_mean_patch", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not keras_trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)

        def one(v: Any) -> Any:
            local = strategy.experimental_local_results(v)[0] if hasattr(v, "values") else v
            if getattr(getattr(local, "shape", None), "rank", None) == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original(v, strategy, reduction)

        return keras_trainer.tree.map_structure(one, values)

    reduce_per_replica._scalar_mean_patch = True  # type: ignore[attr-defined]
    keras_trainer.reduce_per_replica = reduce_per_replica


def replicas(strategy: Any) -> int:
    """Replicas in sync (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def _task(strategy: Any) -> tuple[str | None, int]:
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None or not getattr(resolver, "task_type", None):
        return None, 0
    return str(resolver.task_type), int(resolver.task_id or 0)


def worker_index(strategy: Any) -> int:
    """This process's task index (0 without a cluster)."""
    return _task(strategy)[1]


def is_chief(strategy: Any) -> bool:
    """True for the one process that exports: no cluster, task ``chief``, or ``worker`` 0 without a chief."""
    kind, index = _task(strategy)
    if kind is None or kind == "chief":
        return True
    has_chief = "chief" in (strategy.cluster_resolver.cluster_spec().as_dict() or {})
    return kind == "worker" and index == 0 and not has_chief


def global_batch_size(per_replica: int, strategy: Any) -> int:
    """``per_replica × replicas``: the batch one synchronous step consumes."""
    if isinstance(per_replica, bool) or not isinstance(per_replica, int) or per_replica < 1:
        raise ValueError(f"batch_size {per_replica!r} must be a positive integer")
    return per_replica * replicas(strategy)


def scaled_learning_rate(learning_rate: float, n_replicas: int, rule: str = "sqrt") -> float:
    """The learning rate for ``n_replicas`` times the recipe's batch.

    Args:
        learning_rate: The recipe's rate for the per-replica batch (the papers: 1e-4 at 32).
        n_replicas: Replicas in sync (the factor of the global batch).
        rule: ``"sqrt"`` (× sqrt(n), default, for Adam), ``"linear"`` (× n) or ``"none"``.

    Raises:
        ValueError: an unknown rule (the message lists :data:`LR_SCALINGS`) or a bad count.
    """
    if rule not in LR_SCALINGS:
        raise ValueError(f"unknown learning-rate scaling {rule!r}; accepted: {list(LR_SCALINGS)}")
    if isinstance(n_replicas, bool) or not isinstance(n_replicas, int) or n_replicas < 1:
        raise ValueError(f"n_replicas {n_replicas!r} must be a positive integer")
    factor = {"sqrt": math.sqrt(n_replicas), "linear": float(n_replicas), "none": 1.0}[rule]
    return float(learning_rate) * factor


def shard_options() -> Any:
    """``tf.data.Options`` with auto-sharding set explicitly to ``DATA`` (see the module docstring)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def checkpoint_dir_for(checkpoint_dir: str | os.PathLike | None, strategy: Any) -> Path | None:
    """Where this worker keeps its checkpoints: the directory itself on the chief,
    ``<dir>/worker-<index>`` on the other workers (``None`` stays ``None``)."""
    if checkpoint_dir is None:
        return None
    if is_chief(strategy):
        return Path(checkpoint_dir)
    return Path(checkpoint_dir) / f"worker-{worker_index(strategy)}"
