"""``python -m evaluation --ray ADDRESS`` on a real two-node Ray cluster on loopback.

Each test starts its drivers as separate processes against a cluster of two ``ray start`` nodes
(one CPU each) that the module starts under its own temp dir and stops by PID:

- the Ray run's tables equal a single-process run's, cell by cell;
- a Ray worker process killed (SIGKILL, by PID) while it runs a batch: Ray retries the batch and
  the run ends with the same tables;
- the driver killed midway and started again resumes from the cache (fewer items computed) and
  ends with the same tables.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ray_cluster import REPO, LocalRayCluster, process_state
from tests.table_compare import assert_same_tables

pytestmark = pytest.mark.slow  # a Ray cluster and four evaluation drivers: minutes; `make test-ci-slow`

SUBSET = ["--experiments", "residuals,descriptors,faithfulness"]
SMALL = ["--images-per-class", "3", "--ccg-images-per-class", "1", "--tsne-images-per-class", "6",
         "--batch-size", "2", "--quiet"]


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((folder / "tables").glob("*.csv"))}


def _npz(folder: Path) -> int:
    return sum(1 for _ in (folder / "cache").rglob("*.npz")) if (folder / "cache").exists() else 0


@pytest.fixture(scope="module")
def server(tiny_model_root):
    from serving.server import start_server

    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        yield srv


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(nodes=2, cpus_per_node=1) as c:
        yield c


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory) -> dict[str, str]:
    from evaluation.__main__ import main

    out = tmp_path_factory.mktemp("single")
    assert main(["--server", server.address, "--out", str(out), *SUBSET, *SMALL]) == 0
    tables = _tables(out)
    assert {"residuals.csv", "descriptor_dimensions.csv", "faithfulness_auc.csv"} <= tables.keys()
    return tables


def _driver(cluster: LocalRayCluster, server, out: Path) -> subprocess.Popen:
    # an ipv4: resolver target (with a comma) must reach the client whole
    target = f"ipv4:{server.address},{server.address}"
    return subprocess.Popen(
        [sys.executable, "-m", "evaluation", "--ray", cluster.address, "--server", target, "--out", str(out),
         *SUBSET, *SMALL],
        cwd=REPO, env={**cluster.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_ray_run_equals_single_process(cluster, server, reference, tmp_path):
    out = tmp_path / "ray"
    log = _finish(_driver(cluster, server, out))
    assert "Ray cluster: 2 node(s), 2 CPUs" in log, log[-2000:]
    assert_same_tables(_tables(out), reference)
    run = json.loads((out / "run.json").read_text())
    assert run["cache_misses"] == _npz(out) > 0 and run["service_calls"] > 0, run


def test_killed_worker_is_retried(cluster, server, reference, tmp_path):
    out = tmp_path / "ray-worker-killed"
    proc = _driver(cluster, server, out)
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        busy = cluster.worker_pids("ray::run_batch") if _npz(out) >= 2 else []
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.05)
    _finish(proc)
    assert killed is not None, "no worker was caught running a batch; the test did not exercise a failure"
    assert process_state(killed) in ("X", "Z"), "the killed worker is still running"
    assert_same_tables(_tables(out), reference)


def test_killed_driver_resumes_from_cache(cluster, server, reference, tmp_path):
    out = tmp_path / "ray-driver-killed"
    proc = _driver(cluster, server, out)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline and _npz(out) < 6:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; the test did not exercise a crash"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done_before = _npz(out)
    assert not (out / "report.html").exists() and done_before >= 6
    _finish(_driver(cluster, server, out))
    run = json.loads((out / "run.json").read_text())
    assert run["cache_hits"] >= done_before and run["cache_misses"] == _npz(out) - done_before, (run, done_before)
    assert_same_tables(_tables(out), reference)


def test_model_root_gives_each_worker_an_embedded_server(cluster, tiny_model_root, reference, tmp_path):
    """``--ray`` with ``--model-root``: every worker serves the models itself; same tables."""
    out = tmp_path / "ray-embedded"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluation", "--ray", cluster.address, "--model-root", str(tiny_model_root),
         "--out", str(out), "--experiments", "residuals", *SMALL],
        cwd=REPO, env={**cluster.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    _finish(proc)
    tables = _tables(out)
    assert_same_tables({"residuals.csv": tables["residuals.csv"]}, {"residuals.csv": reference["residuals.csv"]})
    run = json.loads((out / "run.json").read_text())
    assert run["cache_misses"] == _npz(out) > 0, run
