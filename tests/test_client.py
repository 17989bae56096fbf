"""serving.client.ExplanationClient against real servers on 127.0.0.1 (port 0).

Models: a small UNTRAINED ``simpler`` classifier (64 px) and an embedding network, exported with
models.export into a temporary model root (value checks need no training). Covers: numbers equal
TF Serving's Predict through a stock stub and the SavedModel called directly; explain / features /
importance mask / similarity map; errors come back as ServiceError with the server's code and
message; round-robin over [dead, live] addresses; retries with backoff on a dead address (attempts
counted); the default and per-call deadlines; bearer token and mutual TLS.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from serving.client import ExplanationClient, ServiceError, parse_addresses  # noqa: E402

SIZE = 64
CLASSES = ["alpha", "beta", "gamma"]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
    export = pytest.importorskip("models.export")
    import keras

    from models.architectures import build_classifier, embedding_net

    root = tmp_path_factory.mktemp("client_models")
    keras.utils.set_random_seed(0)
    export.export_classifier(build_classifier("simpler", SIZE, len(CLASSES), 0.125), root / "simpler",
                             class_names=CLASSES)
    export.export_embedding(embedding_net(SIZE, "avg", 8, 0.125), root / "embed")
    return root


@pytest.fixture(scope="module")
def server(model_root):
    from serving.server import start_server

    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="default") as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with ExplanationClient(server.address, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, size=(3, SIZE, SIZE, 3), dtype=np.uint8)


def _dead_address() -> str:
    """A loopback port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


class Recorder(grpc.UnaryUnaryClientInterceptor):
    """Counts the RPC attempts and records their methods and deadlines."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []

    def intercept_unary_unary(self, continuation, details, request):
        self.calls.append((details.method, details.timeout))
        return continuation(details, request)


# ---------------------------------------------------------------------------- values
def test_list_models(client):
    infos = {m.name: m for m in client.list_models()}
    assert set(infos) == {"simpler", "embed"}
    m = infos["simpler"]
    assert m.kind == "classifier" and m.version == 1 and m.class_names == CLASSES
    assert m.input_size == (SIZE, SIZE, 3) and len(m.target_shape) == 3
    assert "gradcam" in m.methods and "gradcam" in m.signatures
    assert m.card["name"] and m.card["kind"] == "classifier"
    assert infos["embed"].kind == "embedding"
    assert client.model_info("simpler").name == "simpler"


def test_predict_equals_stock_predict_and_saved_model(client, server, model_root, images):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    out = client.predict("simpler", images)
    assert set(out) >= {"probabilities", "logits"}
    assert out["probabilities"].shape == (3, len(CLASSES)) and out["probabilities"].dtype == np.float32

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "simpler"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    with grpc.insecure_channel(server.address) as channel:
        stock = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    np.testing.assert_array_equal(out["probabilities"], tf.make_ndarray(stock.outputs["probabilities"]))

    direct = tf.saved_model.load(str(model_root / "simpler" / "1")).signatures["serving_default"](
        images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"], direct["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], direct["logits"].numpy(), rtol=1e-4, atol=1e-5)

    # float input in [0, 1] is quantised like the server does
    again = client.predict("simpler", images.astype(np.float32) / 255.0, version=1)
    np.testing.assert_array_equal(again["probabilities"], out["probabilities"])


def test_explain_gradcam_equals_predict_signature(client, images):
    res = client.explain("simpler", "gradcam", images)
    sig = client.predict_signature("simpler", "gradcam",
                                   {"images": images, "class_index": np.full(3, -1, np.int32)})
    assert res.heatmap.shape == (3, SIZE, SIZE) and res.heatmap.dtype == np.float32
    assert 0.0 <= res.heatmap.min() and res.heatmap.max() <= 1.0
    np.testing.assert_allclose(res.heatmap, sig["heatmap_upsampled"], atol=1e-6)
    np.testing.assert_allclose(res.heatmap_lowres, sig["heatmap"], atol=1e-6)
    np.testing.assert_array_equal(res.class_index, sig["class_index"])
    np.testing.assert_array_equal(res.class_index, res.probabilities.argmax(axis=1))
    assert res.model_version == 1 and res.method == "gradcam" and res.elapsed_ms > 0
    assert res.params.get("target_layer")

    one = client.explain("simpler", "gradcam", images, class_index=2, theta=0.5)
    np.testing.assert_array_equal(one.class_index, [2, 2, 2])
    assert one.mask.dtype == bool and one.mask.shape == (3, SIZE, SIZE)
    np.testing.assert_array_equal(one.mask, one.heatmap >= 0.5)
    top = client.explain("simpler", "gradcam", images, top_k=2)
    np.testing.assert_array_equal(top.image_index, [0, 0, 1, 1, 2, 2])


def test_features_importance_mask_and_similarity(client, images):
    activations, logits = client.features("simpler", images)
    assert activations.ndim == 4 and logits.shape == (3, len(CLASSES))
    np.testing.assert_allclose(logits, client.predict("simpler", images)["logits"], rtol=1e-4, atol=1e-5)

    masks = client.importance_mask("simpler", images, ["gradcam", "gradcam_plus_plus"], rho=0.2)
    assert masks.mask.shape == (3, SIZE, SIZE) and masks.mask.dtype == bool
    assert set(masks.heatmaps) == {"gradcam", "gradcam_plus_plus"}
    np.testing.assert_array_equal(masks.mask, masks.masks["gradcam"] & masks.masks["gradcam_plus_plus"])

    sim = client.similarity_map("embed", images, images[::-1])
    assert sim.similarity.shape == (3,) and sim.query_map.ndim == 3
    np.testing.assert_allclose(sim.query_map.sum(axis=(1, 2)), sim.similarity, rtol=1e-3, atol=1e-4)
    embedding, _ = client.embed("embed", images)
    e = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    np.testing.assert_allclose(sim.similarity, (e * e[::-1]).sum(axis=1), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------- errors
def test_errors_carry_the_servers_code_and_message(client, images):
    with pytest.raises(ServiceError) as info:
        client.predict("no-such-model", images)
    assert info.value.code == grpc.StatusCode.NOT_FOUND and "no-such-model" in info.value.message
    assert info.value.attempts == 1  # not retried

    with pytest.raises(ServiceError) as info:
        client.explain("simpler", "gradcam", images[:, :32])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "images" in info.value.message

    with pytest.raises(ServiceError) as info:
        client.explain("simpler", "gradcam", images, class_index=7)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and "7" in info.value.message

    with pytest.raises(ServiceError) as info:
        client.explain("simpler", "no_such_method", images)
    assert info.value.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                               grpc.StatusCode.FAILED_PRECONDITION)
    assert "no_such_method" in info.value.message
    assert str(info.value).startswith(info.value.code.name)

    with pytest.raises(ValueError):
        client.predict("simpler", images.astype(np.float32))  # 0..255 floats are not [0, 1]


# ---------------------------------------------------------------------------- load balancing, retries, deadlines
def test_round_robin_skips_a_dead_address(server, images):
    recorder = Recorder()
    dead = _dead_address()
    with ExplanationClient([dead, server.address], retries=0, interceptors=[recorder]) as c:
        assert c.addresses == [dead, server.address]
        for _ in range(4):
            assert c.predict("simpler", images)["probabilities"].shape == (3, len(CLASSES))
    # calls start on dead, live, dead, live: 2 + 1 + 2 + 1 attempts
    assert len(recorder.calls) == 6


def test_round_robin_alternates_between_live_servers(server, model_root, images):
    from serving.server import start_server

    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="none") as other:
        with ExplanationClient(f"{server.address},{other.address}") as c:
            for _ in range(4):
                c.health()
        assert server.metrics is not other.metrics
        with ExplanationClient([server.address, other.address]) as c:
            before = (_served(server), _served(other))
            for _ in range(4):
                c.predict("simpler", images)
            after = (_served(server), _served(other))
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)


def _served(running) -> int:
    """Predict RPCs a server answered, from its metrics (explain_requests_total{rpc=...Predict})."""
    from serving.metrics import parse_text

    values = parse_text(running.metrics.render())
    return int(sum(v for k, v in values.items() if k.startswith("explain_requests_total{") and 'Predict"' in k))


def test_resolver_target_balances_every_call_over_all_its_addresses(server, model_root, images):
    """``dns:///name:port`` / ``ipv4:a,b``: one channel, gRPC round_robin over every resolved address.

    A headless Service name resolves to every replica's address; here the two addresses are given
    by an ``ipv4:`` target (no DNS name on this machine resolves to two loopback addresses), which
    goes through the same channel and policy as ``dns:///``.
    """
    from serving.server import start_server

    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="none") as other:
        p1, p2 = server.address.rsplit(":", 1)[1], other.address.rsplit(":", 1)[1]
        target = f"ipv4:127.0.0.1:{p1},127.0.0.1:{p2}"
        assert parse_addresses(target) == [target]
        assert parse_addresses([f"dns:///localhost:{p1}", "h:1,h:2"]) == [f"dns:///localhost:{p1}", "h:1", "h:2"]
        with ExplanationClient(target) as c:
            assert c.addresses == [target] and len(c._endpoints) == 1
            before = (_served(server), _served(other))
            calls = 0
            # both replicas get calls from one channel; pick_first would send every call to one
            while calls < 40 and not (_served(server) > before[0] and _served(other) > before[1]):
                c.predict("simpler", images)
                calls += 1
            after = (_served(server), _served(other))
        assert after[0] > before[0] and after[1] > before[1], (before, after, calls)
        assert (after[0] - before[0]) + (after[1] - before[1]) == calls
    with ExplanationClient(f"dns:///localhost:{p1}", retries=0) as c:  # the DNS resolver, one address
        assert c.health() == "SERVING"
        assert c.predict("simpler", images)["probabilities"].shape == (3, len(CLASSES))


def test_dead_address_is_retried_with_backoff_then_unavailable():
    recorder = Recorder()
    with ExplanationClient(_dead_address(), retries=3, backoff_initial=0.02, backoff_max=1.0,
                           interceptors=[recorder]) as c:
        start = time.monotonic()
        with pytest.raises(ServiceError) as info:
            c.list_models()
        took = time.monotonic() - start
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.attempts == 4 and len(recorder.calls) == 4
    assert took >= 0.01 + 0.02 + 0.04  # jittered backoff: at least half of 0.02 + 0.04 + 0.08

    recorder = Recorder()
    with ExplanationClient(f"{_dead_address()},{_dead_address()}", retries=1, backoff_initial=0.01,
                           interceptors=[recorder]) as c:
        with pytest.raises(ServiceError) as info:
            c.health()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and len(recorder.calls) == 4  # 2 rounds x 2


def test_default_and_per_call_deadlines(server, images):
    recorder = Recorder()
    with ExplanationClient(server.address, interceptors=[recorder]) as c:
        c.list_models()
        c.predict("simpler", images, timeout=7.5)
    (_, default), (_, per_call) = recorder.calls
    assert 100.0 < default <= 120.0  # the default deadline, 120 s
    assert 5.0 < per_call <= 7.5

    with ExplanationClient(server.address, timeout=15.0, interceptors=[recorder]) as c:
        c.list_models()
        c.health()  # health has its own short default (10 s)
    assert 12.0 < recorder.calls[-2][1] <= 15.0
    assert 8.0 < recorder.calls[-1][1] <= 10.0

    with ExplanationClient(server.address) as c:
        with pytest.raises(ServiceError) as info:
            c.explain("simpler", "gradcam", images, timeout=1e-6)  # expires before the call leaves
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and info.value.attempts <= 1  # never retried


def test_parse_addresses_and_close(server):
    assert parse_addresses("a:1, b:2") == ["a:1", "b:2"]
    assert parse_addresses(["a:1", "b:2,c:3"]) == ["a:1", "b:2", "c:3"]
    with pytest.raises(ValueError):
        parse_addresses("")
    c = ExplanationClient(server.address)
    assert c.health() == "SERVING"
    assert c.health("explain.v1.ExplanationService") == "SERVING"
    assert c.health("no.such.Service") == "SERVICE_UNKNOWN"
    c.close()
    c.close()
    with pytest.raises(ServiceError) as info:
        c.health()
    assert info.value.code == grpc.StatusCode.CANCELLED


# ---------------------------------------------------------------------------- security
def _make_pki(directory) -> dict[str, bytes]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate (openssl)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix in (".pem", ".key")}


def test_bearer_token_over_mutual_tls(model_root, tmp_path, images):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    from serving.server import start_server

    pki = _make_pki(tmp_path)
    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="none", auth_token="s3cret",
                      tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server.key"),
                      tls_client_ca=str(tmp_path / "ca.pem")) as secure:
        address = f"localhost:{secure.port}"
        mtls = dict(root_certificates=pki["ca.pem"], private_key=pki["client.key"],
                    certificate_chain=pki["client.pem"])
        with ExplanationClient(address, token="s3cret", **mtls) as c:
            assert c.predict("simpler", images)["probabilities"].shape == (3, len(CLASSES))
            assert c.health() == "SERVING"
        with ExplanationClient(address, **mtls) as c:
            assert c.health() == "SERVING"  # health needs no token
            with pytest.raises(ServiceError) as info:
                c.list_models()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        with ExplanationClient(address, token="wrong", **mtls) as c:
            with pytest.raises(ServiceError) as info:
                c.list_models()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        # no client certificate: the handshake fails (UNAVAILABLE after the retries)
        with ExplanationClient(address, token="s3cret", root_certificates=pki["ca.pem"], retries=0, timeout=10) as c:
            with pytest.raises(ServiceError) as info:
                c.list_models()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_bearer_token_on_plaintext(model_root, images):
    from serving.server import start_server

    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="none",
                      auth_token="s3cret") as guarded:
        with ExplanationClient(guarded.address, token="s3cret") as c:
            assert [m.name for m in c.list_models("simpler")] == ["simpler"]
        with ExplanationClient(guarded.address) as c:
            with pytest.raises(ServiceError) as info:
                c.list_models()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED and "token" in info.value.message
