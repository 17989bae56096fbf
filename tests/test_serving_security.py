"""Bearer-token authentication over mutual TLS, with a real server on 127.0.0.1:0.

No/wrong token → UNAUTHENTICATED (with a message saying which); health stays reachable without a
token; a client without a certificate signed by the configured CA cannot connect.
Certificates are made with the ``openssl`` command (the test is skipped without it).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

from tests.test_serving_api import CLF, SIZE, exported_models, predict_request  # noqa: E402

TOKEN = "s3cret-token"


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=d)
    for name, san in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "subjectAltName=DNS:client")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(san + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory, certs):
    from serving.server import start_server

    src = exported_models(tmp_path_factory).root
    root = tmp_path_factory.mktemp("secure_root")
    shutil.copytree(src / CLF, root / CLF)
    with start_server(root, port=0, file_system_poll_wait_seconds=0, warmup="none", auth_token=TOKEN,
                      tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server.key"),
                      tls_client_ca=str(certs / "ca.pem")) as s:
        yield s


def _channel(server, certs, client_cert: bool = True) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(certs / "client.pem").read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(f"127.0.0.1:{server.port}", creds)


@pytest.fixture(scope="module")
def images():
    return np.zeros((1, SIZE, SIZE, 3), np.uint8)


def test_token_required_but_health_is_open(server, certs, images):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with _channel(server, certs) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        for metadata, message in ((None, "missing bearer token"), ((("authorization", "Bearer nope"),), "invalid bearer token"),
                                  ((("authorization", TOKEN),), "invalid bearer token")):
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(predict_request(CLF, images=images), timeout=10, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        r = stub.Predict(predict_request(CLF, images=images), timeout=30, metadata=(("authorization", f"Bearer {TOKEN}"),))
        assert r.model_spec.version.value == 1
        # the server still answers health after the refusals
        assert health.Check(health_pb2.HealthCheckRequest(service="explain.v1.ExplanationService"), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_mutual_tls_rejects_a_client_without_certificate(server, certs, images):
    with _channel(server, certs, client_cert=False) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(predict_request(CLF, images=images), timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_token_from_environment(monkeypatch):
    from serving.config import AUTH_TOKEN_ENV, ServerOptions

    monkeypatch.setenv(AUTH_TOKEN_ENV, "from-env")
    assert ServerOptions(model_root="/m").resolved_auth_token() == "from-env"
    assert ServerOptions(model_root="/m", auth_token="flag").resolved_auth_token() == "flag"
