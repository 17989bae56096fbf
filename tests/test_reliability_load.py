"""Load: the grpc.aio load generator (bench/load.py) against a real server subprocess.

* ``test_load_mix`` (marked ``load``, ``slow``; ``make test-load``): Predict, Grad-CAM through
  Predict (signature ``gradcam``) and through ``Explain``, similarity maps and occlusion, from 1
  to 64 concurrent clients (``LOAD_SECONDS`` per level, default 12, plus 5 s of warm-up; with the
  queue test ≤ 60 s of traffic in all). Targets: no status other than OK and RESOURCE_EXHAUSTED;
  the server's RSS after the run within 10% of its RSS after warm-up; every request kind served.
* ``test_bounded_queue_refuses_with_resource_exhausted`` (marked): a server with a tiny batching
  queue under 64 clients answers RESOURCE_EXHAUSTED — the only error — and recovers.
* The statistics of the generator (percentiles, code counts, verdicts) are checked without a
  server in the default run.

With ``RELIABILITY_OUT=DIR`` the reports go to ``DIR/load.json`` and ``DIR/load_queue.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bench.load import KINDS, LoadConfig, LoadReport, percentile, run_load, summarise
from tests.reliability_helpers import CLASSIFIER, EMBEDDING, ServerProcess, health, shared_model_root

LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "12"))


def _save(name: str, data: dict) -> None:
    out = os.environ.get("RELIABILITY_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / name).write_text(json.dumps(data, indent=1, default=str))


# ---------------------------------------------------------------------------- default run: the statistics
def test_percentiles_and_summary():
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert np.isnan(percentile([], 50))
    samples = [("predict", "OK", 0.010)] * 8 + [("occlusion", "OK", 0.100), ("occlusion", "RESOURCE_EXHAUSTED", 0.001)]
    level = summarise(4, samples, 2.0)
    assert level.requests == 10 and level.throughput == pytest.approx(5.0) and level.ok_throughput == pytest.approx(4.5)
    assert level.codes == {"OK": 9, "RESOURCE_EXHAUSTED": 1}
    assert level.kinds["predict"].p50_ms == pytest.approx(10.0)
    assert level.kinds["occlusion"].codes == {"OK": 1, "RESOURCE_EXHAUSTED": 1}
    report = LoadReport({}, [level, summarise(8, [("predict", "UNAVAILABLE", 0.5)], 1.0)], None, 1000, 1090, 1200)
    assert report.requests == 11
    assert report.errors == {"UNAVAILABLE": 1}, "RESOURCE_EXHAUSTED is not an error, UNAVAILABLE is"
    assert report.memory_growth == pytest.approx(0.09)
    assert "RESOURCE_EXHAUSTED 1" in report.table()


def test_unknown_kind_is_refused():
    from bench.load import LoadGenerator

    with pytest.raises(ValueError, match="unknown request kind"):
        LoadGenerator(LoadConfig(address="127.0.0.1:1", mix={"predict": 1, "nope": 1}))


# ---------------------------------------------------------------------------- the load suite
@pytest.mark.slow
@pytest.mark.load
def test_load_mix(tmp_path, tmp_path_factory):
    root = shared_model_root(tmp_path_factory)
    server = ServerProcess(root, log_path=tmp_path / "server.log", warmup="all")
    with server.start():
        config = LoadConfig(address=server.address, classifier=CLASSIFIER, embedding=EMBEDDING,
                            concurrency=(1, 4, 16, 64), seconds_per_level=LOAD_SECONDS, warmup_seconds=5.0)
        report = run_load(config, pid=server.pid)
        assert server.alive() and health(server.address) == "SERVING"
        internal = server.log_text().count("status=INTERNAL")
    data = report.to_json()
    data["server_options"] = server.options
    _save("load.json", data)
    print("\n" + report.table())
    assert report.errors == {}, f"errors other than RESOURCE_EXHAUSTED: {report.errors}\n{report.table()}"
    assert internal == 0
    served = {kind for level in report.levels for kind, ks in level.kinds.items() if ks.codes.get("OK")}
    assert served == set(KINDS), f"kinds never served OK: {set(KINDS) - served}"
    assert report.memory_growth is not None and report.memory_growth <= 0.10, report.table()
    assert all(level.requests > 0 for level in report.levels)


@pytest.mark.slow
@pytest.mark.load
def test_bounded_queue_refuses_with_resource_exhausted(tmp_path, tmp_path_factory):
    """A full batching queue answers RESOURCE_EXHAUSTED (the promised refusal), nothing else."""
    root = shared_model_root(tmp_path_factory)
    options = dict(max_enqueued_batches=1, num_batch_threads=1, max_batch_size=2, batch_timeout_micros=20000)
    server = ServerProcess(root, log_path=tmp_path / "server.log", warmup="default", **options)
    seconds = min(LOAD_SECONDS, 5.0)
    with server.start():
        config = LoadConfig(address=server.address, classifier=CLASSIFIER, embedding=None, concurrency=(64,),
                            seconds_per_level=seconds, warmup_seconds=0.0, mix={"predict": 1.0})
        report = run_load(config, pid=server.pid)
        # afterwards the server serves normally
        after = run_load(LoadConfig(address=server.address, classifier=CLASSIFIER, embedding=None, concurrency=(1,),
                                    seconds_per_level=1.0, warmup_seconds=0.0, mix={"predict": 1.0}))
        assert health(server.address) == "SERVING"
    codes = report.codes
    _save("load_queue.json", {"server_options": options, "concurrency": 64, "seconds": seconds,
                              "requests": report.requests, "codes": codes, "after": after.codes})
    assert codes.get("RESOURCE_EXHAUSTED", 0) > 0, f"the queue never filled: {codes}"
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, codes
    assert codes.get("OK", 0) > 0
    assert set(after.codes) == {"OK"}, after.codes
