"""The worker side of ``--ray`` without a cluster: batching, the cache-first batch runner, the
context a task rebuilds from a pickled driver context, and ``--server`` resolver targets."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from evaluation.cache import ResultCache, cache_key
from evaluation.pipeline import EvalConfig
from evaluation.ray_worker import ServiceSpec, WorkerContext, batches, restore_shared, run_batch, worker_context


def test_batches_are_the_single_process_batches():
    assert batches([3, 5, 7, 9, 11], 2) == [[3, 5], [7, 9], [11]]
    assert batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        batches([1], 0)


def test_run_batch_computes_only_missing_keys_and_writes_them(tmp_path: Path):
    cache = ResultCache(tmp_path / "cache")
    keys = [cache_key(kind="t", image=i) for i in range(4)]
    cache.put(keys[1], {"x": np.array([100.0])})  # written by an earlier (killed) attempt
    seen: list[list[int]] = []

    def compute(idx: list[int]) -> list[dict[str, np.ndarray]]:
        seen.append(list(idx))
        return [{"x": np.array([10.0 * i])} for i in idx]

    computed, calls = run_batch(compute, keys, [0, 1, 2, 3], str(cache.root))
    assert (computed, calls) == (3, 0)
    assert seen == [[0, 2, 3]]
    assert [float(cache.get(k)["x"][0]) for k in keys] == [0.0, 100.0, 20.0, 30.0]
    # no temporary file is left beside the entries
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".npz"]
    # a retry of the same batch finds everything and computes nothing
    assert run_batch(compute, keys, [0, 1, 2, 3], str(cache.root)) == (0, 0)
    assert len(seen) == 1


def test_run_batch_rejects_a_short_result_and_stores_nothing(tmp_path: Path):
    keys = [cache_key(kind="t", image=i) for i in range(2)]
    with pytest.raises(RuntimeError, match="compute returned 1 results for 2 items"):
        run_batch(lambda idx: [{"x": np.zeros(1)}], keys, [0, 1], str(tmp_path))
    assert ResultCache(tmp_path).get(keys[0]) is None
    with pytest.raises(ValueError, match="2 keys for 1 indices"):
        run_batch(lambda idx: [], keys, [0], str(tmp_path))


def test_service_spec_needs_servers_or_a_model_root():
    with pytest.raises(ValueError, match="addresses .* or a model_root"):
        ServiceSpec(addresses=None, model_root=None)
    assert ServiceSpec(addresses=("a:1",)) == pickle.loads(pickle.dumps(ServiceSpec(addresses=("a:1",))))


class _Info:
    def __init__(self, kind: str, version: int) -> None:
        self.kind, self.version = kind, version


def test_worker_context_counts_calls_and_uses_the_shared_cache(tmp_path: Path):
    config = EvalConfig(out=tmp_path, progress=True, batch_size=4)
    models = {"b": _Info("classifier", 3), "a": _Info("classifier", 1), "e": _Info("embedding", 2)}
    ctx = worker_context(config, ServiceSpec(addresses=("127.0.0.1:1",)), models, data=None)
    assert isinstance(ctx, WorkerContext)
    assert ctx.config.progress is False and ctx.config.batch_size == 4
    assert ctx.classifiers == ["a", "b"] and ctx.embeddings == ["e"] and ctx.version("b") == 3
    assert ctx.cache.root == tmp_path / "cache"
    before = ctx.service_calls
    ctx.service_calls += 2  # what a compute closure does; run_batch reports the difference
    assert ctx.service_calls == before + 2
    keys = [cache_key(kind="w", image=0)]

    def compute(idx: list[int]) -> list[dict[str, np.ndarray]]:
        ctx.service_calls += 1
        return [{"v": np.arange(3)}]

    assert run_batch(compute, keys, [0], str(ctx.cache.root)) == (1, 1)
    np.testing.assert_array_equal(ctx.cache.get(keys[0])["v"], [0, 1, 2])


def test_server_accepts_resolver_targets(capsys):
    from evaluation.__main__ import main

    assert main(["--server", "http://127.0.0.1:1", "--out", "unused", "--quiet"]) == 2
    assert "give host:port (gRPC), not a URL" in capsys.readouterr().err
    from serving.client import parse_addresses

    # what --server now hands the client: one balanced target, not two broken halves
    assert parse_addresses("ipv4:127.0.0.1:1,127.0.0.1:2") == ["ipv4:127.0.0.1:1,127.0.0.1:2"]


def test_restore_shared_rebuilds_a_data_set_sent_by_value():
    from models.datasets.imageset import ImageSet

    data = ImageSet(images=np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3), labels=[1, 0],
                    class_names=["a", "b"], ids=["a/0", "b/0"])
    copy = restore_shared(("value", (ImageSet, dict(data.__dict__))))
    assert isinstance(copy, ImageSet) and copy.ids == ["a/0", "b/0"] and copy.class_names == ["a", "b"]
    np.testing.assert_array_equal(copy.images, data.images)
    np.testing.assert_array_equal(copy.labels, [1, 0])
    assert restore_shared(("ref", 7)) == 7  # not an ObjectRef: passed through
