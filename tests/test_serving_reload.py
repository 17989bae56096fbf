"""Hot reload, version policies, deletion while in flight, graceful shutdown — with a real server.

The model root is a private copy of the session export (see tests/test_serving_api.py). The server
polls it every 0.2 s. The tests run in file order (they evolve the same directory):

1. a new version appears while a client thread sends requests in a loop: it becomes the one
   served, with zero failed requests;
2. a corrupt version (garbage saved_model.pb) and an incomplete one (no saved_model.pb) are
   reported by GetModelStatus and ListModels, and the previous version keeps serving;
3. version policies latest:N / all / specific on the same directory;
4. a deleted version finishes the request in flight, then is unloaded;
5. SIGTERM-style shutdown: health NOT_SERVING, new requests UNAVAILABLE, in-flight ones finish;
6. the concurrent-RPC limit answers RESOURCE_EXHAUSTED; ``python -m serving --config`` serves and
   exits 0 on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import Any, Callable

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc  # noqa: E402

from serving import convert  # noqa: E402
from serving.protos.explain.v1 import explain_pb2 as pb  # noqa: E402
from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc  # noqa: E402
from tests.test_serving_api import CLF, SIZE, exported_models, explain_request, predict_request  # noqa: E402

State = get_model_status_pb2.ModelVersionStatus


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def add_version(model_dir, source: str, version: int) -> None:
    """Copy a version the way an exporter should: into a temporary name, then one rename."""
    tmp = model_dir / f".tmp-{version}"
    shutil.copytree(model_dir / source, tmp)
    os.rename(tmp, model_dir / str(version))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    src = exported_models(tmp_path_factory).root
    dst = tmp_path_factory.mktemp("reload_root")
    shutil.copytree(src / CLF, dst / CLF)
    return dst


@pytest.fixture(scope="module")
def server(root):
    from serving.server import start_server

    with start_server(root, port=0, file_system_poll_wait_seconds=0.2, warmup="default", grace_period_seconds=30) as s:
        yield s


@pytest.fixture(scope="module")
def stubs(server):
    ch = grpc.insecure_channel(server.address)
    yield (prediction_service_pb2_grpc.PredictionServiceStub(ch), pb_grpc.ExplanationServiceStub(ch),
           model_service_pb2_grpc.ModelServiceStub(ch))
    ch.close()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)


def statuses(model_stub) -> dict[int, Any]:
    r = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(model_spec={"name": CLF}), timeout=10)
    return {s.version: s for s in r.model_version_status}


def test_new_version_is_served_without_failed_requests(root, stubs, images):
    predict, _, model_stub = stubs
    stop = threading.Event()
    versions: list[int] = []
    failures: list[str] = []

    def loop():
        while not stop.is_set():
            try:
                r = predict.Predict(predict_request(CLF, images=images), timeout=30)
                versions.append(r.model_spec.version.value)
            except grpc.RpcError as err:  # pragma: no cover - the assertion below reports it
                failures.append(f"{err.code()}: {err.details()}")

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        wait_for(lambda: len(versions) >= 5, what="first responses")
        add_version(root / CLF, "1", 2)
        wait_for(lambda: 2 in versions, what="version 2 to be served")
        n = len(versions)
        wait_for(lambda: len(versions) >= n + 5, what="more responses")
    finally:
        stop.set()
        thread.join()
    assert failures == []
    first2 = versions.index(2)
    assert set(versions[:first2]) == {1} and set(versions[first2:]) == {2}, versions  # atomic swap, no flapping
    st = wait_for(lambda: (s := statuses(model_stub)) and s[1].state == State.END and s, what="version 1 unloaded")
    assert st[2].state == State.AVAILABLE


def test_corrupt_and_incomplete_versions_are_reported_and_old_keeps_serving(root, stubs, images):
    predict, explain, model_stub = stubs
    bad = root / CLF / "3"
    (bad / "variables").mkdir(parents=True)
    (bad / "saved_model.pb").write_bytes(b"this is not a protocol buffer \x00\xff" * 10)
    (root / CLF / "4").mkdir()  # incomplete: no saved_model.pb (yet)
    st = wait_for(lambda: (s := statuses(model_stub)) and 3 in s and 4 in s and s[3].state == State.END and s,
                  what="versions 3 and 4 to be reported")
    assert st[3].status.error_code == grpc.StatusCode.DATA_LOSS.value[0]
    assert "failed to load" in st[3].status.error_message and "saved_model.pb" in st[3].status.error_message
    assert st[4].state == State.START and "incomplete" in st[4].status.error_message
    assert st[2].state == State.AVAILABLE
    r = predict.Predict(predict_request(CLF, images=images), timeout=30)
    assert r.model_spec.version.value == 2
    info = explain.ListModels(pb.ListModelsRequest(name=CLF), timeout=10).models[0]
    assert info.version == 2
    by_version = {v.version: v for v in info.versions}
    assert by_version[3].state == "END" and "failed to load" in by_version[3].error
    # an explicit request for the corrupt version names the reason
    with pytest.raises(grpc.RpcError) as err:
        explain.Explain(pb.ExplainRequest(model=pb.ModelRef(name=CLF, version=3), method="gradcam",
                                          images=pb.ImageBatch(tensor=convert.to_tensor(images))), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "failed to load" in err.value.details()
    shutil.rmtree(bad)
    shutil.rmtree(root / CLF / "4")


@pytest.mark.parametrize("policy, expected", [("latest:2", [1, 2]), ("all", [1, 2]), ("specific:1", [1]), ("latest", [2])])
def test_version_policies(root, policy, expected):
    from serving.registry import ModelRegistry

    registry = ModelRegistry(root, policy, warmup="none")
    registry.poll()
    assert sorted(registry.served_versions(CLF)) == expected
    with registry.acquire(CLF) as sv:
        assert sv.version == max(expected)
    registry.unload_all()


def test_deleted_version_finishes_in_flight_request_then_unloads(server, root, stubs, images):
    predict, explain, model_stub = stubs
    req = explain_request(images, "occlusion", params={"patch_size_at_224": 10, "stride": 1, "batch_size": 16})
    req.model.version = 2
    result: dict[str, Any] = {}

    def slow():
        try:
            result["response"] = explain.Explain(req, timeout=120)
        except grpc.RpcError as err:  # pragma: no cover
            result["error"] = (err.code(), err.details())

    thread = threading.Thread(target=slow)
    thread.start()
    sv = server.registry.served_versions(CLF)[2]
    wait_for(lambda: sv.inflight > 0, what="the occlusion request to start")
    shutil.rmtree(root / CLF / "2")
    wait_for(lambda: 1 in server.registry.served_versions(CLF), what="version 1 to be served again")
    if thread.is_alive():  # still running on the removed version: it is draining, not gone
        assert statuses(model_stub)[2].state in (State.UNLOADING, State.END)
    thread.join()
    assert "error" not in result, result
    assert result["response"].model_version == 2
    wait_for(lambda: statuses(model_stub)[2].state == State.END, what="version 2 unloaded")
    assert predict.Predict(predict_request(CLF, images=images), timeout=30).model_spec.version.value == 1


def test_graceful_shutdown(root, images):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from serving.server import start_server

    server = start_server(root, port=0, file_system_poll_wait_seconds=0, warmup="default")
    ch = grpc.insecure_channel(server.address)
    explain = pb_grpc.ExplanationServiceStub(ch)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    health = health_pb2_grpc.HealthStub(ch)
    result: dict[str, Any] = {}

    def slow():
        req = explain_request(images, "occlusion", params={"patch_size_at_224": 10, "stride": 1, "batch_size": 16})
        try:
            result["response"] = explain.Explain(req, timeout=120)
        except grpc.RpcError as err:  # pragma: no cover
            result["error"] = (err.code(), err.details())

    worker = threading.Thread(target=slow)
    worker.start()
    wait_for(lambda: server.gate.inflight > 0, what="the request to be in flight")
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 60})
    stopper.start()
    wait_for(lambda: server.gate.draining, what="draining")
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as err:
        predict.Predict(predict_request(CLF, images=images), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in err.value.details()
    worker.join()
    stopper.join()
    assert "error" not in result, result
    assert result["response"].heatmap.tensor_shape.dim[1].size == SIZE
    assert server.wait(0)
    ch.close()


def test_concurrent_rpc_limit_answers_resource_exhausted(root, images):
    from serving.server import start_server

    with start_server(root, port=0, file_system_poll_wait_seconds=0, warmup="none", maximum_concurrent_rpcs=1) as server:
        ch = grpc.insecure_channel(server.address)
        explain = pb_grpc.ExplanationServiceStub(ch)
        predict = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        req = explain_request(images, "occlusion", params={"patch_size_at_224": 10, "stride": 1, "batch_size": 16})
        future = explain.Explain.future(req, timeout=120)
        wait_for(lambda: server.gate.inflight > 0, what="the request to be in flight")
        with pytest.raises(grpc.RpcError) as err:
            predict.Predict(predict_request(CLF, images=images), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert future.result().model_version == 1
        assert predict.Predict(predict_request(CLF, images=images), timeout=30).model_spec.version.value == 1
        ch.close()


def test_cli_serves_and_stops_on_sigterm(root, tmp_path):
    """``python -m serving`` with a TOML config: serves, then SIGTERM → graceful exit 0."""
    import signal
    import subprocess
    import sys

    from tests.test_serving_api import free_port

    port = free_port()
    config = tmp_path / "serving.toml"
    config.write_text(f'model_root = "{root}"\nhost = "127.0.0.1"\nport = {port}\nwarmup = "none"\n'
                      'file_system_poll_wait_seconds = 0\n[models.clf]\nlabels = { stable = 1 }\n')
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == f"serving on 127.0.0.1:{port}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            r = pb_grpc.ExplanationServiceStub(ch).ListModels(pb.ListModelsRequest(), timeout=30)
        assert [m.name for m in r.models] == [CLF] and dict(r.models[0].labels) == {"stable": 1}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "received SIGTERM" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
