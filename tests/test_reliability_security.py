"""Security: authentication, TLS and mutual TLS, the model root as a jail, a non-root image.

* With a bearer token configured, every RPC of both APIs (and reflection) without the token or
  with a wrong one gets UNAUTHENTICATED — the message never echoes the token — while
  ``grpc.health.v1`` stays reachable without it.
* With TLS, a plaintext client, or a client that does not trust the server's CA, cannot connect;
  with mutual TLS, a client without a certificate, or with one from another CA, cannot connect
  (certificates made by the test with ``openssl``).
* Model names and version labels that try to leave the model root ('../x', '/etc', '..%2f', …)
  are refused (INVALID_ARGUMENT) on every RPC that takes one.
* A symlink inside the model root that points outside it (a model directory or a version
  directory) is not followed: the outside model is never served.
* No request makes the server read or write outside its model root and its own temporary
  folder: the server runs with an empty working directory, HOME and TMPDIR; while hostile
  requests run, ``strace`` (when available) records every file system call of the process, and
  the model root is unchanged afterwards.
* The Docker image runs as a non-root user (the final stage's ``USER`` line, checked statically;
  the runtime check, ``podman exec … id -u``, is in ``deploy/smoke.sh`` — ``make test-docker``).

Everything here is cheap and runs by default; the marker ``security`` selects the suite alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.reliability_helpers import (
    CLASSES, CLASSIFIER, EMBEDDING, REPO, SIZE, ServerProcess, copy_model_root, health, make_pki, shared_model_root)

pytestmark = pytest.mark.security

TOKEN = "correct-horse-battery-staple"
C = grpc.StatusCode
TRAVERSAL_NAMES = ["../x", "..", ".", "/etc", "/etc/passwd", "..%2f..%2fetc", "%2e%2e%2fsecret", "../outside/secret",
                   "simpler/../../outside/secret", "./simpler", "simpler/1", "\\..\\secret", "~", "~root", "secret\x00",
                   "linked/../secret"]
TRAVERSAL_LABELS = ["../x", "/etc", "..%2f", "a/b", "..", "stable/../x", "x\x00"]


def record(check: str, result: str) -> None:
    """Add a line to ``$RELIABILITY_OUT/security.json`` (bench/RESULTS.md)."""
    out = os.environ.get("RELIABILITY_OUT")
    if not out:
        return
    import json

    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / "security.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[check] = result
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def _images(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def jail(tmp_path_factory):
    """A model root with symlinks that point outside it, a secret model outside, and private dirs."""
    base = tmp_path_factory.mktemp("jail")
    src = shared_model_root(tmp_path_factory)
    root = copy_model_root(src, base / "root")
    outside = base / "outside"
    shutil.copytree(src / CLASSIFIER, outside / "secret")  # a valid model the server must never serve
    (root / "linked").symlink_to(outside / "secret", target_is_directory=True)  # model dir -> outside
    (root / "inner").mkdir()
    (root / "inner" / "1").symlink_to(outside / "secret" / "1", target_is_directory=True)  # version dir -> outside
    for d in ("cwd", "home", "tmp"):
        (base / d).mkdir()
    return {"base": base, "root": root, "outside": outside, "cwd": base / "cwd", "home": base / "home", "tmp": base / "tmp"}


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(path.rglob("*"))}


@pytest.fixture(scope="module")
def auth_server(jail):
    """A server subprocess with a bearer token (from the environment), private cwd/HOME/TMPDIR."""
    env = {"EXPLAIN_AUTH_TOKEN": TOKEN, "HOME": str(jail["home"]), "TMPDIR": str(jail["tmp"])}
    server = ServerProcess(jail["root"], log_path=jail["base"] / "server.log", env=env, cwd=jail["cwd"],
                           version_labels=[f"{CLASSIFIER}:stable=1"])
    before = _tree(jail["root"])
    with server.start():
        yield server
    assert _tree(jail["root"]) == before, "the model root changed while the server ran"


def _authed(address: str, token: str | None = TOKEN, **kw):
    from serving.client import ExplanationClient

    return ExplanationClient(address, token=token, retries=0, timeout=60, **kw)


# ---------------------------------------------------------------------------- authentication
def _raw_calls():
    """(name, path, request bytes, response type) of one RPC per service method, valid requests."""
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    from serving import convert
    from serving.protos.explain.v1 import explain_pb2 as pb

    img = pb.ImageBatch(tensor=convert.to_tensor(_images()))
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = CLASSIFIER
    predict.inputs["images"].CopyFrom(convert.to_tensor(_images()))
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = CLASSIFIER
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = CLASSIFIER
    return [
        ("Predict", "/tensorflow.serving.PredictionService/Predict", predict),
        ("GetModelMetadata", "/tensorflow.serving.PredictionService/GetModelMetadata", meta),
        ("GetModelStatus", "/tensorflow.serving.ModelService/GetModelStatus", status),
        ("ListModels", "/explain.v1.ExplanationService/ListModels", pb.ListModelsRequest()),
        ("Explain", "/explain.v1.ExplanationService/Explain",
         pb.ExplainRequest(model=pb.ModelRef(name=CLASSIFIER), method="gradcam", images=img)),
        ("SimilarityMap", "/explain.v1.ExplanationService/SimilarityMap",
         pb.SimilarityMapRequest(model=pb.ModelRef(name=EMBEDDING), query=img, reference=img)),
        ("ImportanceMask", "/explain.v1.ExplanationService/ImportanceMask",
         pb.ImportanceMaskRequest(model=pb.ModelRef(name=CLASSIFIER), images=img, methods=["gradcam"], rho=0.2)),
    ]


@pytest.mark.parametrize("metadata", [
    None, (("authorization", "Bearer wrong"),), (("authorization", f"Bearer {TOKEN}x"),),
    (("authorization", f"Basic {TOKEN}"),), (("authorization", TOKEN),), (("authorization", "Bearer "),),
    (("x-api-key", TOKEN),),
], ids=["none", "wrong", "longer", "basic-scheme", "no-scheme", "empty", "other-header"])
def test_every_rpc_needs_the_token(auth_server, metadata):
    with grpc.insecure_channel(auth_server.address) as channel:
        for name, path, request in _raw_calls():
            fn = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                     response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as info:
                fn(request, metadata=metadata, timeout=30)
            assert info.value.code() == C.UNAUTHENTICATED, (name, info.value.code(), info.value.details())
            assert info.value.details() and TOKEN not in info.value.details()
        # health stays reachable without a token
        assert health(auth_server.address) == "SERVING"
        assert health(auth_server.address, service="explain.v1.ExplanationService") == "SERVING"
    record("bearer token: none, wrong, longer, Basic scheme, no scheme, empty, other header",
           "UNAUTHENTICATED on all 7 unary RPCs of both APIs and on reflection, token never echoed; health SERVING without a token")


def test_reflection_needs_the_token(auth_server):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(auth_server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
        with pytest.raises(grpc.RpcError) as info:
            list(responses)
        assert info.value.code() == C.UNAUTHENTICATED


def test_the_right_token_works_on_every_rpc(auth_server):
    with grpc.insecure_channel(auth_server.address) as channel:
        for name, path, request in _raw_calls():
            fn = channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                     response_deserializer=lambda b: b)
            fn(request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=60)
    with _authed(auth_server.address) as client:
        assert client.predict(CLASSIFIER, _images(2))["probabilities"].shape == (2, len(CLASSES))


def test_token_is_not_in_the_command_line_or_log(auth_server):
    argv = Path(f"/proc/{auth_server.pid}/cmdline").read_bytes().decode(errors="replace")
    assert TOKEN not in argv
    assert TOKEN not in auth_server.log_text()


# ---------------------------------------------------------------------------- the model root is a jail
def test_model_names_that_leave_the_root_are_refused(auth_server):
    from serving.client import ServiceError

    with _authed(auth_server.address) as client:
        for name in TRAVERSAL_NAMES:
            calls = {
                "Predict": lambda: client.predict(name, _images()),
                "Predict(gradcam)": lambda: client.predict_signature(name, "gradcam", {"images": _images()}),
                "Explain": lambda: client.explain(name, "gradcam", _images()),
                "SimilarityMap": lambda: client.similarity_map(name, _images(), _images()),
                "ImportanceMask": lambda: client.importance_mask(name, _images(), ["gradcam"], rho=0.2),
            }
            for rpc, call in calls.items():
                with pytest.raises(ServiceError) as info:
                    call()
                assert info.value.code == C.INVALID_ARGUMENT, (rpc, name, info.value)
                assert "model name" in info.value.message, (rpc, name, info.value)
    record("model names leaving the root", f"{len(TRAVERSAL_NAMES)} names ('../x', '/etc', '..%2f..%2fetc', '~root', NUL, …) "
           "× Predict, Predict(gradcam), Explain, SimilarityMap, ImportanceMask, ListModels, GetModelStatus, "
           "GetModelMetadata: INVALID_ARGUMENT naming the model name")


def test_model_names_that_leave_the_root_are_refused_by_every_rpc(auth_server):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.protos.explain.v1 import explain_pb2 as pb
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    md = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(auth_server.address) as channel:
        explain = pb_grpc.ExplanationServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for name in TRAVERSAL_NAMES:
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name = name
            meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            meta.model_spec.name = name
            for fn, request in ((explain.ListModels, pb.ListModelsRequest(name=name)), (models.GetModelStatus, status),
                                (predict.GetModelMetadata, meta)):
                with pytest.raises(grpc.RpcError) as info:
                    fn(request, metadata=md, timeout=30)
                assert info.value.code() == C.INVALID_ARGUMENT, (name, info.value.details())


def test_version_labels_that_leave_the_root_are_refused(auth_server):
    from serving.client import ServiceError

    with _authed(auth_server.address) as client:
        assert client.predict(CLASSIFIER, _images(), label="stable")["probabilities"].shape == (1, len(CLASSES))
        for label in TRAVERSAL_LABELS:
            with pytest.raises(ServiceError) as info:
                client.predict(CLASSIFIER, _images(), label=label)
            assert info.value.code == C.INVALID_ARGUMENT, (label, info.value)
    record("version labels leaving the root", f"{len(TRAVERSAL_LABELS)} labels: INVALID_ARGUMENT (labels come from "
           "the configuration only, never from the file system)")


def test_symlinks_out_of_the_model_root_are_not_followed(auth_server, jail):
    """``root/linked`` → an outside model directory and ``root/inner/1`` → an outside version
    directory: neither is served (NOT_FOUND), so no request reads the model outside the root."""
    from serving.client import ServiceError

    with _authed(auth_server.address) as client:
        infos = {m.name: m for m in client.list_models()}
        assert "linked" not in infos, "a model directory symlinked from outside the model root is served"
        assert "inner" not in infos, "a version directory symlinked from outside the model root is served"
        for name in ("linked", "inner"):
            with pytest.raises(ServiceError) as info:
                client.predict(name, _images())
            assert info.value.code == C.NOT_FOUND, (name, info.value)
    record("symlinks out of the model root", "a model directory and a version directory symlinked to a valid model "
           "outside the root: not served (NOT_FOUND)")


def _strace_available() -> bool:
    return shutil.which("strace") is not None


FILE_CALLS = "open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,symlink,symlinkat,link,linkat,truncate,chmod,fchmodat,chown,fchownat,utimensat,execve"
WRITE_CALLS = {"creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "symlink",
               "symlinkat", "link", "linkat", "truncate", "chmod", "fchmodat", "chown", "fchownat", "utimensat"}


def _hostile_requests(address: str) -> None:
    """Requests whose names and parameters look like paths; all must be refused."""
    from serving.client import ServiceError

    with _authed(address) as client:
        for name in TRAVERSAL_NAMES:
            with pytest.raises(ServiceError):
                client.predict(name, _images())
        for layer in ("../../etc/passwd", "/etc/passwd", "..%2f..%2fetc%2fpasswd"):
            with pytest.raises(ServiceError):
                client.explain(CLASSIFIER, "gradcam", _images(), target_layer=layer)
            with pytest.raises(ServiceError):
                client.explain(CLASSIFIER, "excitation_backprop", _images(), saliency_layer=layer)
        for sig in ("../x", "/etc/passwd", "__saved_model_init_op"):
            with pytest.raises(ServiceError):
                client.predict_signature(CLASSIFIER, sig, {"images": _images()})
        # and ordinary work, which reads the (already loaded) model only
        client.explain(CLASSIFIER, "gradcam", _images(2))
        client.similarity_map(EMBEDDING, _images(1), _images(1))


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _inside(path: str, roots: list[Path]) -> bool:
    p = os.path.normpath(path)
    return any(p == str(r) or p.startswith(str(r) + os.sep) for r in roots)


def test_requests_touch_no_file_outside_the_model_root_and_tmp(auth_server, jail):
    """Trace the file system calls of the server while hostile requests run (strace -f -p)."""
    if not _strace_available():
        pytest.skip("strace is not installed (the model-root and cwd checks still run in the fixture)")
    trace, messages = jail["base"] / "strace.txt", jail["base"] / "strace.err"
    with open(messages, "wb") as err:
        tracer = subprocess.Popen(["strace", "-f", "-p", str(auth_server.pid), "-e", f"trace={FILE_CALLS}", "-o", str(trace)],
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        attached = _wait_until(lambda: "attached" in messages.read_text(errors="replace") or tracer.poll() is not None, 20)
        if not attached or tracer.poll() is not None:
            pytest.skip(f"strace cannot attach here: {messages.read_text(errors='replace')[:200]}")
        time.sleep(0.5)
        _hostile_requests(auth_server.address)
        time.sleep(0.3)
    finally:
        tracer.terminate()
        tracer.wait(30)
    text = trace.read_text(errors="replace") if trace.exists() else ""
    allowed_write = [jail["tmp"].resolve()]
    allowed_read = [jail["root"].resolve(), jail["tmp"].resolve(), Path(os.path.realpath(os.sys.prefix)),
                    Path(os.path.realpath(os.sys.base_prefix)), REPO.resolve(), Path("/usr"), Path("/lib"), Path("/lib64"),
                    Path("/proc"), Path("/sys"), Path("/dev"), Path("/etc/ld.so.cache"), Path("/etc/localtime")]
    problems = []
    for line in text.splitlines():
        m = re.match(r"^(?:\d+\s+)?(\w+)\((.*)\)\s*=\s*(-?\d+|\?)", line)
        if not m:
            continue
        call, args, result = m.groups()
        paths = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
        if not paths:
            continue
        writes = call in WRITE_CALLS or bool(re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args))
        for p in paths:
            full = p if p.startswith("/") else os.path.join(str(jail["cwd"]), p)
            # a refused attempt (result < 0) outside the jail is still an attempt
            if str(jail["outside"]) in full or full.startswith("/etc/passwd"):
                problems.append(line)
            elif writes and not _inside(full, allowed_write):
                problems.append(line)
            elif not _inside(os.path.realpath(full) if os.path.exists(full) else full, allowed_read + allowed_write):
                problems.append(line)
    assert not problems, "file system calls outside the model root / TMPDIR:\n" + "\n".join(problems[:20])
    calls = sum(1 for line in text.splitlines() if re.match(r"^\d+\s+\w+\(", line))
    record("requests touch no file outside the model root and TMPDIR",
           f"strace -f on every server thread during {len(TRAVERSAL_NAMES)} path-like model names, 3 path-like layers "
           f"and signatures, Grad-CAM and similarity requests: {calls} file system call(s), none outside; "
           "model root, cwd and HOME unchanged")
    assert not any(jail["cwd"].iterdir()), f"the server wrote into its working directory: {list(jail['cwd'].iterdir())}"


# ---------------------------------------------------------------------------- TLS and mutual TLS
@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("pki")
    paths = make_pki(directory)
    return {name: path.read_bytes() for name, path in paths.items()} | {"dir": directory}


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    from serving.server import start_server

    d = pki["dir"]
    with start_server(shared_model_root(tmp_path_factory), port=0, file_system_poll_wait_seconds=0, warmup="none",
                      tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key")) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    from serving.server import start_server

    d = pki["dir"]
    with start_server(shared_model_root(tmp_path_factory), port=0, file_system_poll_wait_seconds=0, warmup="none",
                      tls_cert=str(d / "server.pem"), tls_key=str(d / "server.key"),
                      tls_client_ca=str(d / "ca.pem"), auth_token=TOKEN) as server:
        yield server


def _cannot_connect(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    """Health (no token needed) fails at the transport: UNAVAILABLE, never an answer."""
    with pytest.raises(grpc.RpcError) as info:
        health(address, timeout=5, credentials=credentials)
    assert info.value.code() in (C.UNAVAILABLE, C.DEADLINE_EXCEEDED), info.value


def test_tls_refuses_plaintext_and_untrusted_clients(tls_server, pki):
    address = f"localhost:{tls_server.port}"
    assert health(address, credentials=grpc.ssl_channel_credentials(pki["ca.pem"])) == "SERVING"
    with _authed(address, token=None, root_certificates=pki["ca.pem"]) as client:
        assert client.predict(CLASSIFIER, _images())["probabilities"].shape == (1, len(CLASSES))
    _cannot_connect(address, None)  # plaintext
    _cannot_connect(address, grpc.ssl_channel_credentials(pki["rogue-ca.pem"]))  # does not trust the server's CA
    record("TLS (server certificate from a test CA)", "plaintext client and a client trusting another CA cannot connect "
           "(UNAVAILABLE at the handshake); a client trusting the CA is served")


def test_mutual_tls_refuses_clients_without_the_right_certificate(mtls_server, pki):
    address = f"localhost:{mtls_server.port}"
    good = dict(root_certificates=pki["ca.pem"], private_key=pki["client.key"], certificate_chain=pki["client.pem"])
    assert health(address, credentials=grpc.ssl_channel_credentials(**good)) == "SERVING"
    with _authed(address, **good) as client:
        assert client.predict(CLASSIFIER, _images())["probabilities"].shape == (1, len(CLASSES))
    _cannot_connect(address, None)  # plaintext
    _cannot_connect(address, grpc.ssl_channel_credentials(pki["ca.pem"]))  # no client certificate
    _cannot_connect(address, grpc.ssl_channel_credentials(  # a client certificate from another CA
        pki["ca.pem"], private_key=pki["rogue-client.key"], certificate_chain=pki["rogue-client.pem"]))
    _cannot_connect(address, grpc.ssl_channel_credentials(  # a good client certificate, but it does not trust the server
        pki["rogue-ca.pem"], private_key=pki["client.key"], certificate_chain=pki["client.pem"]))
    record("mutual TLS (client CA required)", "no client certificate, a client certificate from another CA, plaintext: "
           "cannot connect; the right certificate connects, and still needs the bearer token (UNAUTHENTICATED without)")


def test_mutual_tls_still_needs_the_token(mtls_server, pki):
    from serving.client import ServiceError

    address = f"localhost:{mtls_server.port}"
    good = dict(root_certificates=pki["ca.pem"], private_key=pki["client.key"], certificate_chain=pki["client.pem"])
    for token in (None, "wrong"):
        with _authed(address, token=token, **good) as client:
            assert client.health() == "SERVING"
            with pytest.raises(ServiceError) as info:
                client.list_models()
            assert info.value.code == C.UNAUTHENTICATED


# ---------------------------------------------------------------------------- the image
def _final_stage(dockerfile: str) -> list[str]:
    lines = [ln.strip() for ln in dockerfile.splitlines()]
    starts = [i for i, ln in enumerate(lines) if re.match(r"(?i)^FROM\s", ln)]
    assert starts, "no FROM line"
    return [ln for ln in lines[starts[-1]:] if ln and not ln.startswith("#")]


def test_dockerfile_runs_as_a_non_root_user():
    dockerfile = (REPO / "Dockerfile").read_text()
    stage = _final_stage(dockerfile)
    users = [ln.split(None, 1)[1].strip() for ln in stage if re.match(r"(?i)^USER\s", ln)]
    assert users, "the final stage has no USER line: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0", ""), f"USER {users[-1]!r} is root"
    last_user = max(i for i, ln in enumerate(stage) if re.match(r"(?i)^USER\s", ln))
    for keyword in ("ENTRYPOINT", "CMD"):
        idx = [i for i, ln in enumerate(stage) if ln.upper().startswith(keyword)]
        assert idx and idx[-1] > last_user, f"{keyword} comes before the last USER line"
    # the runtime check lives in the docker smoke test
    smoke = (REPO / "deploy" / "smoke.sh").read_text()
    assert "id -u" in smoke
    record("Docker image user", f"final stage USER {users[-1]} (static check); runtime `id -u` check in deploy/smoke.sh (docker)")
