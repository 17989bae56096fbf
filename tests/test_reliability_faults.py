"""Faults: cancellation, deadlines, a changing model directory, SIGKILL, SIGTERM, torn writes.

Each fault is injected into a real server subprocess (``python -m serving``) and the test checks
what was lost — nothing — and that the server noticed:

* a client cancels an occlusion request midway: the server stops working on it (its CPU time
  stops growing, ``explain_requests_total{…,code="CANCELLED"}`` counts it, the log says so);
* a deadline expires inside an iterative method (perturbation mask): DEADLINE_EXCEEDED at the
  deadline, and the server stops computing;
* while requests run, the model directory gets a new version, a corrupt version, an incomplete
  one (no ``saved_model.pb`` yet), a crashed exporter's temporary folder, and a version is
  deleted: every request succeeds, each served by a loadable version;
* SIGKILL of the server in the middle of an evaluation run, then a restart: the evaluation
  resumes (started again if its client gave up) and its final tables equal an uninterrupted run;
* SIGTERM drains the requests in flight (they finish OK), refuses new ones, exits 0;
* results are written atomically: a truncated or corrupt cache file under ``REPORT_DIR/cache``
  is recomputed by the rerun; no writer of results, models or reports writes in place.

Default run: the cancellation and the cache/atomic-write checks. The rest is marked ``faults``
and ``slow`` (``make test-faults``). With ``RELIABILITY_OUT=DIR`` each fault appends its figures to
``DIR/faults.json``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.table_compare import assert_same_tables

from tests.reliability_helpers import (
    CLASSIFIER, REPO, SIZE, ServerProcess, copy_model_root, free_port, health, shared_model_root)

C = grpc.StatusCode


def record(fault: str, **figures) -> None:
    out = os.environ.get("RELIABILITY_OUT")
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / "faults.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[fault] = figures
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))


def _images(n: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)


def _explain_request(method: str, n: int, **params):
    from serving import convert
    from serving.protos.explain.v1 import explain_pb2 as pb

    req = pb.ExplainRequest(model=pb.ModelRef(name=CLASSIFIER), method=method,
                            images=pb.ImageBatch(tensor=convert.to_tensor(_images(n))))
    convert.params_to_proto(req.params, params)
    return req


def _requests_total(metrics: dict[str, float], method: str, code: str) -> float:
    return metrics.get(f'explain_requests_total{{rpc="Explain",model="{CLASSIFIER}",method="{method}",code="{code}"}}', 0.0)


def _cpu_rate(server: ServerProcess, seconds: float) -> float:
    """CPU seconds per second the server burns over the next ``seconds``."""
    c0, t0 = server.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (server.cpu_seconds() - c0) / (time.monotonic() - t0)


def _wait_for(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory):
    """A server with /metrics on the tiny models (cancellation and deadline tests)."""
    root = shared_model_root(tmp_path_factory)
    log = tmp_path_factory.mktemp("faults_server") / "server.log"
    with ServerProcess(root, metrics=True, log_path=log, warmup="all") as server:
        yield server


# ---------------------------------------------------------------------------- cancellation (default run)
# stride 1 with a 3-pixel patch: 62² occluded copies of each image, a few seconds of work per image
HEAVY_OCCLUSION = dict(patch_size_at_224=10, stride=1, batch_size=8)


def test_cancelled_occlusion_stops_the_work(busy_server):
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    n = 6
    with grpc.insecure_channel(busy_server.address) as channel:
        stub = pb_grpc.ExplanationServiceStub(channel)
        stub.Explain(_explain_request("occlusion", 1, patch_size_at_224=56), timeout=60)  # warm the path
        assert _wait_for(lambda: _cpu_rate(busy_server, 0.3) < 0.3, 15), "the server is not idle before the test"
        cpu0 = busy_server.cpu_seconds()
        call = stub.Explain.future(_explain_request("occlusion", n, **HEAVY_OCCLUSION), timeout=120)
        time.sleep(0.5)
        assert _wait_for(lambda: _cpu_rate(busy_server, 0.3) > 0.3, 10), "the server never got busy"
        time.sleep(1.0)
        cpu_at_cancel = busy_server.cpu_seconds() - cpu0
        assert call.cancel(), "the call finished before it could be cancelled"
        cancelled_at = time.monotonic()
        # the server stops: CPU use falls back to idle within a couple of seconds
        assert _wait_for(lambda: _cpu_rate(busy_server, 0.5) < 0.25, 10), "the server kept computing after the cancel"
        stopped_after = time.monotonic() - cancelled_at
        cpu_total = busy_server.cpu_seconds() - cpu0
    assert _wait_for(lambda: _requests_total(busy_server.metrics(), "occlusion", "CANCELLED") >= 1, 10), busy_server.metrics()
    assert "status=CANCELLED" in busy_server.log_text()
    assert health(busy_server.address) == "SERVING"
    # the whole request would cost ~n × (one image); the cancelled one stopped far earlier
    with grpc.insecure_channel(busy_server.address) as channel:
        stub = pb_grpc.ExplanationServiceStub(channel)
        c1 = busy_server.cpu_seconds()
        stub.Explain(_explain_request("occlusion", 1, **HEAVY_OCCLUSION), timeout=120)
        one_image = busy_server.cpu_seconds() - c1
    assert cpu_total < 0.8 * n * one_image, (cpu_total, one_image)
    record("cancel occlusion midway", images=n, cpu_s_at_cancel=round(cpu_at_cancel, 2), cpu_s_total=round(cpu_total, 2),
           cpu_s_full_request_estimate=round(n * one_image, 2), idle_after_s=round(stopped_after, 2),
           metric_cancelled=_requests_total(busy_server.metrics(), "occlusion", "CANCELLED"), lost="nothing")


# ---------------------------------------------------------------------------- cache and atomic writes (default run)
def test_truncated_or_corrupt_cache_file_is_recomputed(tmp_path):
    from evaluation.cache import ResultCache, cache_key

    cache = ResultCache(tmp_path / "cache")
    keys = [cache_key(model="m", version=1, method="gradcam", image=i) for i in range(4)]
    calls: list[list[int]] = []

    def compute(indices):
        calls.append(list(indices))
        return [{"heatmap": np.full((3, 3), i, np.float32)} for i in indices]

    first = cache.get_or_compute(keys, compute, batch_size=8)
    assert calls == [[0, 1, 2, 3]]
    files = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(files) == 4 and not list((tmp_path / "cache").rglob("*.tmp"))
    path1, path2 = cache._path(keys[1]), cache._path(keys[2])
    data = path1.read_bytes()
    path1.write_bytes(data[: len(data) // 2])  # truncated, as an in-place write cut by a crash would leave it
    path2.write_bytes(b"\x00garbage" * 10)  # corrupt
    calls.clear()
    again = ResultCache(tmp_path / "cache").get_or_compute(keys, compute, batch_size=8)
    assert calls == [[1, 2]], "only the unreadable files are recomputed"
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["heatmap"], b["heatmap"])
    assert ResultCache(tmp_path / "cache").get(keys[1]) is not None, "the recomputed result was stored again"
    record("truncated and corrupt cache files (REPORT_DIR/cache)", files=4, torn=2,
           rerun="recomputed exactly the 2 unreadable items and stored them again; the others came from the cache",
           lost="nothing")


def test_atomic_write_leaves_no_partial_file_when_the_writer_dies(tmp_path):
    """A writer killed between write and rename leaves the old file intact (and no visible temp)."""
    from evaluation.cache import atomic_write_text

    target = tmp_path / "table.csv"
    atomic_write_text(target, "old,complete\n")
    script = (f"import os, sys\nsys.path.insert(0, {str(REPO)!r})\nimport evaluation.cache as c\n"
              "real = os.replace\n"
              "def die(*a, **k):\n    os._exit(9)\n"
              "c.os.replace = die\n"
              f"c.atomic_write_text({str(target)!r}, 'new,' * 100000)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9
    assert target.read_text() == "old,complete\n"
    assert all(p.name.startswith(".") for p in tmp_path.iterdir() if p != target)
    record("writer killed between write and rename (atomic_write_text)", result="the old file is intact; only a hidden "
           "temporary file is left, which no reader opens", lost="nothing")


#: Modules that write results, models or reports, and the functions that may write in place
#: (the atomic helpers themselves).
WRITERS = ["evaluation", "models/export.py", "models/train.py", "models/__main__.py", "explain"]
ALLOWED_WRITERS = {("evaluation/cache.py", "atomic_write_bytes")}


def _in_place_writes(path: Path) -> list[str]:
    """Calls that write a file in place: Path.write_text/write_bytes, open(..., 'w'/'a'/'x'),
    np.save/savez/savetxt to a path, savefig/save to a path, json.dump into an open file."""
    tree = ast.parse(path.read_text())
    found = []
    rel = str(path.relative_to(REPO))

    class Visitor(ast.NodeVisitor):
        func = ""

        def visit_FunctionDef(self, node):
            old, self.func = self.func, node.name
            self.generic_visit(node)
            self.func = old

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_Call(self, node):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            bad = False
            if name in ("write_text", "write_bytes"):
                bad = True
            elif name in ("open", "fdopen") and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and any(m in str(node.args[1].value) for m in "wax"):
                bad = name == "open"
            elif name in ("save", "savez", "savez_compressed", "savetxt", "savefig", "to_csv", "imsave") and node.args:
                first = node.args[0]
                bad = not (isinstance(first, ast.Name) and first.id in ("buf", "buffer", "fh", "f", "out_buf"))
            if bad and re.search(r"\btmp|\btemp|_tmp\b|\.tmp", ast.unparse(node).lower()):
                bad = False  # writes into a temporary file or folder that is renamed afterwards
            if bad and (rel, self.func) not in ALLOWED_WRITERS:
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)[:100]} (in {self.func or '<module>'})")
            self.generic_visit(node)

    Visitor().visit(tree)
    return found


def test_results_models_and_reports_are_written_atomically():
    """Static check: every writer goes through a temporary file and a rename."""
    files: list[Path] = []
    for item in WRITERS:
        p = REPO / item
        if p.is_dir():
            files += sorted(p.rglob("*.py"))
        elif p.exists():
            files.append(p)
    problems = [w for f in files for w in _in_place_writes(f)]
    if not problems:
        record("in-place writes of results, models, reports (static scan)", files_scanned=len(files),
               result="every write goes through a temporary file and a rename", lost="nothing")
    assert not problems, "in-place writes (use evaluation.cache.atomic_write_* or a temp file + os.replace):\n" + "\n".join(problems)


# ---------------------------------------------------------------------------- deadline inside an iterative method
@pytest.mark.slow
@pytest.mark.faults
def test_deadline_inside_an_iterative_method(busy_server):
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    timeout = 1.5
    before = _requests_total(busy_server.metrics(), "perturbation_mask", "DEADLINE_EXCEEDED")
    with grpc.insecure_channel(busy_server.address) as channel:
        stub = pb_grpc.ExplanationServiceStub(channel)
        assert _wait_for(lambda: _cpu_rate(busy_server, 0.3) < 0.3, 15)
        cpu0 = busy_server.cpu_seconds()
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Explain(_explain_request("perturbation_mask", 2, iterations=300), timeout=timeout)
        waited = time.monotonic() - start
        assert info.value.code() == C.DEADLINE_EXCEEDED
        assert waited < timeout + 1.0
        assert _wait_for(lambda: _cpu_rate(busy_server, 0.5) < 0.25, 10), "the server kept computing past the deadline"
        stopped = time.monotonic() - start
        cpu = busy_server.cpu_seconds() - cpu0
    assert _wait_for(lambda: _requests_total(busy_server.metrics(), "perturbation_mask", "DEADLINE_EXCEEDED") > before, 10)
    assert health(busy_server.address) == "SERVING"
    record("deadline inside perturbation_mask (300 iterations, 1.5 s deadline)", client_got="DEADLINE_EXCEEDED",
           client_waited_s=round(waited, 2), server_idle_again_s_after_start=round(stopped, 2),
           server_cpu_s=round(cpu, 2), lost="nothing")


# ---------------------------------------------------------------------------- the model directory changes under load
def _copy_version_atomically(src: Path, model_dir: Path, version: int) -> None:
    """What models.export does: write into a temporary folder, then rename."""
    tmp = model_dir / f".tmp-{version}"
    shutil.copytree(src, tmp)
    os.replace(tmp, model_dir / str(version))


@pytest.mark.slow
@pytest.mark.faults
def test_model_directory_changes_while_requests_run(tmp_path, tmp_path_factory):
    from serving.client import ExplanationClient, ServiceError

    root = copy_model_root(shared_model_root(tmp_path_factory), tmp_path / "root")
    model_dir = root / CLASSIFIER
    v1 = model_dir / "1"
    results: list[tuple[str, str, int | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(i: int) -> None:
        with ExplanationClient(server.address, timeout=60, retries=0) as client:
            while not stop.is_set():
                try:
                    if i % 2:
                        r = client.explain(CLASSIFIER, "gradcam", _images(1, i))
                        entry = ("Explain", "OK", r.model_version)
                    else:
                        client.predict(CLASSIFIER, _images(2, i))
                        entry = ("Predict", "OK", None)
                except ServiceError as exc:
                    entry = ("Explain" if i % 2 else "Predict", exc.code.name, None)
                with lock:
                    results.append(entry)

    def served_version() -> int:
        with ExplanationClient(server.address, retries=0) as client:
            return next(m.version for m in client.list_models() if m.name == CLASSIFIER)

    def status() -> dict[int, tuple[str, str]]:
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = CLASSIFIER
        with grpc.insecure_channel(server.address) as ch:
            reply = model_service_pb2_grpc.ModelServiceStub(ch).GetModelStatus(req, timeout=30)
        return {s.version: (s.state, s.status.error_message) for s in reply.model_version_status}

    events = []
    server = ServerProcess(root, log_path=tmp_path / "server.log", file_system_poll_wait_seconds=0.5, warmup="default")
    with server.start():
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        # 1. a new version appears (atomically, as the exporter writes it)
        _copy_version_atomically(v1, model_dir, 2)
        assert _wait_for(lambda: served_version() == 2, 120), server.log_tail()
        events.append("new version 2 served")
        time.sleep(1)
        # 2. an exporter crashed: a temporary folder with half a model, and a version without saved_model.pb yet
        partial = model_dir / ".tmp-9"
        shutil.copytree(v1, partial)
        (partial / "saved_model.pb").write_bytes((v1 / "saved_model.pb").read_bytes()[:100])
        (model_dir / "4").mkdir()
        shutil.copytree(v1 / "variables", model_dir / "4" / "variables")
        # 3. a corrupt version: a truncated saved_model.pb and garbage variables
        corrupt = model_dir / ".tmp-3"
        shutil.copytree(v1, corrupt)
        (corrupt / "saved_model.pb").write_bytes((v1 / "saved_model.pb").read_bytes()[:200])
        os.replace(corrupt, model_dir / "3")
        assert _wait_for(lambda: 3 in status() and status()[3][1] != "", 60), (status(), server.log_tail())
        time.sleep(1.5)
        assert served_version() == 2, "a corrupt or incomplete version replaced a good one"
        events.append(f"corrupt version 3 refused ({status()[3][1][:80]}); incomplete version 4 waits; temp folder ignored")
        # 4. the served version is deleted while requests use it
        shutil.rmtree(model_dir / "2")
        assert _wait_for(lambda: served_version() == 1, 60), server.log_tail()
        events.append("deleted version 2: back to version 1")
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(60)
        assert server.alive()
        final_status = status()
    codes = {}
    for rpc, code, _ in results:
        codes[code] = codes.get(code, 0) + 1
    versions = sorted({v for _, _, v in results if v is not None})
    assert codes.keys() == {"OK"}, codes
    assert 2 in versions and 1 in versions, versions
    from serving.registry import State

    states = ", ".join(f"v{v} {State.NAMES.get(st, st)}" for v, (st, _) in sorted(final_status.items()))
    record("model directory changes under load (4 clients: Predict, Explain gradcam)", requests=len(results),
           codes=codes, versions_seen=versions, events=events, final_states=states, lost="nothing")


# ---------------------------------------------------------------------------- SIGTERM drains
@pytest.mark.slow
@pytest.mark.faults
def test_sigterm_drains_requests_in_flight(tmp_path, tmp_path_factory):
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    root = shared_model_root(tmp_path_factory)
    server = ServerProcess(root, log_path=tmp_path / "server.log", grace_period_seconds=60, warmup="all")
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.ExplanationServiceStub(channel)
            stub.Explain(_explain_request("occlusion", 1, patch_size_at_224=56), timeout=60)
            calls = [stub.Explain.future(_explain_request("occlusion", 1, **HEAVY_OCCLUSION), timeout=120) for _ in range(3)]
            time.sleep(1.0)
            assert not any(c.done() for c in calls), "the requests finished before SIGTERM"
            t0 = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            # draining: health says NOT_SERVING, new requests are refused with UNAVAILABLE
            states = set()
            try:
                states.add(health(server.address, timeout=5))
            except grpc.RpcError as exc:
                states.add(exc.code().name)
            with pytest.raises(grpc.RpcError) as info:
                stub.Explain(_explain_request("gradcam", 1), timeout=10)
            refused = info.value.code()
            outcomes = []
            for c in calls:
                try:
                    c.result(timeout=120)
                    outcomes.append("OK")
                except grpc.RpcError as exc:
                    outcomes.append(exc.code().name)
        rc = server.proc.wait(90)
        took = time.monotonic() - t0
    finally:
        server.stop()
    assert outcomes == ["OK"] * 3, outcomes
    assert refused == C.UNAVAILABLE
    assert states <= {"NOT_SERVING", "UNAVAILABLE"}, states
    assert rc == 0, server.log_tail()
    record("SIGTERM with 3 occlusion requests in flight", in_flight_outcomes=outcomes, new_request=refused.name,
           health_while_draining=sorted(states), exit_code=rc, exit_after_s=round(took, 1), lost="nothing")


# ---------------------------------------------------------------------------- SIGKILL during an evaluation
EVAL_ARGS = ["--experiments", "residuals,descriptors", "--images-per-class", "3", "--tsne-images-per-class", "6", "--quiet"]


def _csv_tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((folder / "tables").glob("*.csv"))}


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((folder / "tables").glob("*"))}


def _cache_files(folder: Path) -> int:
    return len(list((folder / "cache").rglob("*.npz"))) if (folder / "cache").exists() else 0


def _evaluation(address: str, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "evaluation", "--server", address, "--out", str(out), *EVAL_ARGS],
                                cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.faults
def test_server_sigkill_during_evaluation_then_restart(tmp_path, tiny_model_root):
    port = free_port()
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    server = ServerProcess(tiny_model_root, port=port, log_path=tmp_path / "server.log", warmup="default")
    server.start(timeout=600)
    try:
        ref = _evaluation(server.address, reference, tmp_path / "eval-reference.log")
        assert ref.wait(1200) == 0, (tmp_path / "eval-reference.log").read_text()[-3000:]
        run = _evaluation(server.address, killed, tmp_path / "eval-killed.log")
        # kill the server once the evaluation has cached part of its work
        target = max(2, _cache_files(reference) // 3)
        assert _wait_for(lambda: _cache_files(killed) >= target or run.poll() is not None, 900, 0.05)
        assert run.poll() is None, "the evaluation finished before the server could be killed"
        cached_at_kill = _cache_files(killed)
        server.kill()
        killed_at = time.monotonic()
        # restart on the same port; the evaluation's client retries UNAVAILABLE with backoff
        server = ServerProcess(tiny_model_root, port=port, log_path=tmp_path / "server2.log", warmup="default")
        server.start(timeout=600)
        restarted_after = time.monotonic() - killed_at
        rc = first_rc = run.wait(1200)
        restarts = 0
        if rc != 0:  # the client gave up before the server was back: start the evaluation again
            restarts = 1
            run = _evaluation(server.address, killed, tmp_path / "eval-killed.log")
            rc = run.wait(1200)
        assert rc == 0, (tmp_path / "eval-killed.log").read_text()[-3000:]
        stats = json.loads((killed / "run.json").read_text())
        assert stats["cache_hits"] > 0, f"the rerun did not resume from the cache: {stats}"
        assert_same_tables(_csv_tables(killed), _csv_tables(reference))
        figures = dict(cache_files_at_kill=cached_at_kill, cache_files_total=_cache_files(reference),
                       server_back_after_s=round(restarted_after, 1), evaluation_exit_after_kill=first_rc,
                       evaluation_restarts=restarts, tables_compared=len(_tables(reference)), tables_equal=True,
                       resumed_cache_hits=stats["cache_hits"], resumed_cache_misses=stats["cache_misses"])
        record(FAULT_KILL, **figures, lost="nothing")
        # a torn cache file under REPORT_DIR/cache is recomputed by the next run, with the same tables
        victim = sorted((killed / "cache").rglob("*.npz"))[0]
        victim.write_bytes(victim.read_bytes()[:64])
        for section in (killed / "sections").glob("*") if (killed / "sections").exists() else []:
            if section.is_file():
                section.unlink()  # force the sections to be recomputed from the cache
        again = _evaluation(server.address, killed, tmp_path / "eval-again.log")
        assert again.wait(1200) == 0, (tmp_path / "eval-again.log").read_text()[-3000:]
        stats2 = json.loads((killed / "run.json").read_text())
        assert stats2["cache_misses"] >= 1 and stats2["service_calls"] >= 1, stats2
        assert_same_tables(_csv_tables(killed), _csv_tables(reference))
    finally:
        server.stop()
    record(FAULT_KILL, **figures, torn_cache_file_then_rerun=f"{stats2['cache_misses']} item(s) recomputed, tables equal",
           lost="nothing")


FAULT_KILL = "SIGKILL of the server during an evaluation (residuals, descriptors), restart on the same port"
