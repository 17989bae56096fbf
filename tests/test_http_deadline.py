"""HTTP deadlines (``X-Request-Timeout`` header, ``?timeout=`` parameter) against a real server.

The server runs in this process (gRPC and HTTP on 127.0.0.1, port 0) on the small untrained
reliability models (``simpler``, 64 px; no training). A RISE explanation with 100 000 masks takes
many seconds on them; with a deadline of a fraction of a second it must end with TF Serving's 504
``{"error": "deadline exceeded …"}`` and the method must have been stopped by the same
``should_continue`` check as a gRPC deadline: the servicer records ``DEADLINE_EXCEEDED``, not OK,
and the request leaves the in-flight count. A request well within its deadline gives the same
numbers as one without; malformed timeouts are refused with 400 naming the value.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from serving.http.deadline import HEADER, MAX_TIMEOUT_S, parse_timeout, request_deadline  # noqa: E402
from serving.errors import InvalidArgument  # noqa: E402
from tests.reliability_helpers import CLASSIFIER, SIZE, shared_model_root  # noqa: E402

COSTLY = {"method": "rise", "parameters": {"n_masks": 100000, "batch_size": 8}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from serving.server import start_server

    with start_server(shared_model_root(tmp_path_factory), port=0, rest_port=-1, warmup="default",
                      file_system_poll_wait_seconds=0) as srv:
        yield srv


def http(server: Any, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.rest_url + path, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def image() -> list:
    return np.random.default_rng(5).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8).tolist()


def settled(server: Any, method: str) -> tuple[float, int]:
    """``(DEADLINE_EXCEEDED count of Explain/method, requests in flight)`` once nothing is in flight."""
    stop = time.monotonic() + 300
    while server.gate.inflight and time.monotonic() < stop:
        time.sleep(0.05)
    return server.metrics.requests.value("Explain", CLASSIFIER, method, "DEADLINE_EXCEEDED"), server.gate.inflight


@pytest.mark.parametrize("how", ["header", "query"])
def test_costly_explanation_past_its_deadline_gets_504_and_is_stopped(server, how):
    before, _ = settled(server, "rise")
    body = {"instances": image(), **COSTLY}
    if how == "header":
        status, resp = http(server, f"/v1/models/{CLASSIFIER}:explain", body, {HEADER: "0.4"})
    else:
        status, resp = http(server, f"/v1/models/{CLASSIFIER}:explain?timeout=0.4", body)
    assert status == 504, resp
    assert set(resp) == {"error"} and resp["error"].startswith("deadline exceeded"), resp
    after, inflight = settled(server, "rise")
    assert (after - before, inflight) == (1, 0)  # the servicer's run ended by the deadline, not OK
    assert http(server, f"/v1/models/{CLASSIFIER}")[0] == 200


def test_typed_api_takes_the_deadline_too(server):
    import base64

    from serving import convert

    png = base64.b64encode(convert.encode_png(np.asarray(image(), np.uint8))[0]).decode()
    body = {"model": {"name": CLASSIFIER}, "method": "occlusion", "images": {"encoded": {"data": [png]}},
            "params": {"patch_size_at_224": {"int_value": 4}, "stride": {"int_value": 1}, "batch_size": {"int_value": 1}}}
    before, _ = settled(server, "occlusion")
    status, resp = http(server, "/v1/explain", body, {HEADER: "0.3"})
    assert (status, sorted(resp)) == (504, ["error"]), resp
    after, inflight = settled(server, "occlusion")
    assert (after - before, inflight) == (1, 0)


def test_request_within_its_deadline_gives_the_same_numbers(server):
    body = {"signature_name": "gradcam", "instances": [{"images": x, "class_index": -1} for x in image()]}
    plain = http(server, f"/v1/models/{CLASSIFIER}:predict", body)
    timed = http(server, f"/v1/models/{CLASSIFIER}:predict?timeout=120", body, {HEADER: "300"})
    assert plain[0] == timed[0] == 200
    got = np.asarray(timed[1]["predictions"][0]["heatmap_upsampled"])
    want = np.asarray(plain[1]["predictions"][0]["heatmap_upsampled"])
    assert got.shape == (SIZE, SIZE) and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "1e9", ""])
def test_malformed_timeouts_are_400_naming_the_value(server, value):
    status, resp = http(server, f"/v1/models/{CLASSIFIER}", headers={HEADER: value})
    assert status == 400 and f"header {HEADER} {value!r}" in resp["error"] and "accepted" in resp["error"], resp
    status, resp = http(server, f"/v1/models/{CLASSIFIER}?timeout={value}")
    assert status == 400 and f"query parameter 'timeout' {value!r}" in resp["error"], resp


def test_request_deadline_takes_the_smaller_timeout():
    assert request_deadline({}, {}, 10.0) == (None, None)
    assert request_deadline({HEADER: "2.5"}, {}, 10.0) == (12.5, 2.5)
    assert request_deadline({HEADER: "3"}, {"timeout": "0.5"}, 10.0) == (10.5, 0.5)
    assert parse_timeout(f"{MAX_TIMEOUT_S:g}", "x") == MAX_TIMEOUT_S
    with pytest.raises(InvalidArgument, match="accepted"):
        parse_timeout(str(MAX_TIMEOUT_S * 2), "x")


def test_openapi_documents_the_timeout_on_every_operation():
    from serving.http.typed import openapi

    ops = [op for path in openapi()["paths"].values() for op in path.values()]
    for op in ops:
        where = {(p["name"], p["in"]) for p in op["parameters"]}
        assert {(HEADER, "header"), ("timeout", "query")} <= where, op["summary"]
