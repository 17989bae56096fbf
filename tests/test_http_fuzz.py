"""Hostile input over HTTP: a property-based fuzzer (hypothesis) against ``python -m serving --rest-port``.

The gRPC fuzzer (``tests/test_reliability_fuzz.py``) has its HTTP twin here: a real server
SUBPROCESS (a request that crashed it would kill that process, not the test runner) gets random and
malformed requests on every HTTP route — random JSON, truncated JSON, bytes that are not UTF-8,
deep nesting, huge and non-finite numbers, wrong types in every field, ``{"b64": ...}`` garbage
(not base64, random bytes, PNG headers claiming enormous images), long model names, versions
and labels, hostile query strings and ``X-Request-Timeout`` values. Every request carries a
deadline (``X-Request-Timeout``), so a valid but costly one ends with 504 instead of running long.
The properties:

* every answer has a *defined* status — 200, 4xx, 501 (``:classify``/``:regress``) or 504 (its
  deadline) — never 500/502/503, and every error is TF Serving's ``{"error": "..."}`` with a
  non-empty message without internals (no traceback, no "internal error");
* requests whose outcome is known get exactly that status (unknown model → 404, malformed or
  too deeply nested JSON → 400, a body over ``--max-message-bytes`` → 413, …);
* the process stays alive, and afterwards gRPC health answers SERVING and HTTP model status 200.

Default run: ``test_http_fuzz_quick`` (60 derandomised examples) and the explicit cases. The full
fuzzer (``HTTP_FUZZ_EXAMPLES``, default 3000) is marked ``fuzz`` and ``slow``: ``make test-fuzz``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import urllib.parse
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("starlette")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.reliability_helpers import CLASSIFIER, EMBEDDING, SIZE, ServerProcess, free_port, health, shared_model_root  # noqa: E402
from tests.test_reliability_fuzz import jpeg_claiming, png_bytes, png_claiming  # noqa: E402

DEFINED = frozenset({200, 400, 404, 405, 413, 429, 501, 504})
REFUSED = frozenset({400, 404, 405, 413})
MAX_BODY = 2 * 2**20
TIMEOUT_S = "3"
QUICK_EXAMPLES = 60
FULL_EXAMPLES = int(os.environ.get("HTTP_FUZZ_EXAMPLES", "3000"))


@pytest.fixture(scope="module")
def rest_server(tmp_path_factory):
    root = shared_model_root(tmp_path_factory)
    log = tmp_path_factory.mktemp("http_fuzz_server") / "server.log"
    server = ServerProcess(root, log_path=log, rest_port=free_port(), max_message_bytes=MAX_BODY,
                           version_labels=[f"{CLASSIFIER}:stable=1"])
    with server.start():
        yield server


class Case:
    """One generated HTTP request and the statuses it may get (a plain class: hypothesis prints its repr)."""

    def __init__(self, method: str, path: str, body: bytes | None, category: str, expect: frozenset = DEFINED,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.method, self.path, self.body, self.category, self.expect, self.headers = (
            method, path, body, category, expect, headers)

    def __repr__(self) -> str:  # what hypothesis prints: short, no image bytes
        body = "-" if self.body is None else f"{len(self.body)} bytes {self.body[:60]!r}"
        return f"Case({self.method} {self.path[:120]!r}, {self.category}, {body}, {self.headers})"


def send(server: ServerProcess, case: Case) -> tuple[int, bytes]:
    """One request on a fresh connection: ``(status, body bytes)``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.options["rest_port"], timeout=120)
    try:
        headers = {"Content-Type": "application/json", "X-Request-Timeout": TIMEOUT_S, **dict(case.headers)}
        conn.request(case.method, case.path, body=case.body, headers=headers)
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def check(server: ServerProcess, case: Case) -> tuple[int, str]:
    """Send ``case`` and assert the properties; returns ``(status, error message)``."""
    status, raw = send(server, case)
    assert server.alive(), f"the server died on {case!r}:\n{server.log_tail()}"
    assert status in case.expect, (case, status, raw[:300])
    try:
        body = json.loads(raw)
    except ValueError:
        raise AssertionError(f"not JSON: {raw[:200]!r} for {case!r}") from None
    if status == 200:
        return status, ""
    assert isinstance(body, dict) and set(body) == {"error"}, (case, raw[:300])
    message = body["error"]
    assert isinstance(message, str) and message.strip(), case
    assert "Traceback" not in message and "internal error" not in message, (case, message)
    return status, message


# ---------------------------------------------------------------------------- values
def _b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def good_image(seed: int = 0) -> list:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8).tolist()


BIG_INT = 10**400  # json.dumps writes every digit; json.loads reads it back as an int


def numbers() -> st.SearchStrategy:
    return st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([BIG_INT, -BIG_INT, 1e308, -1e308, 5e-324, -0.0, 256, -1, 2**63, 2**64]))


def b64_values() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda t: {"b64": t}, st.text(max_size=40)),                      # mostly not base64
        st.builds(_b64, st.binary(max_size=200)),                                   # random bytes
        st.sampled_from([_b64(png_claiming(100000, 100000)), _b64(png_claiming(0, 5)), _b64(jpeg_claiming(60000, 60000)),
                         _b64(png_bytes()[:40]), _b64(png_bytes()), _b64(bytes(SIZE * SIZE * 3)),
                         _b64(bytes(SIZE * SIZE * 3 - 1)), {"b64": 5}, {"b64": None}, {"b64": ["x"]},
                         {"b64": "AAAA", "extra": 1}]))


def long_texts(lengths: tuple[int, ...] = (256, 4096, 70000)) -> st.SearchStrategy:
    return st.one_of(st.text(max_size=12), st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "/", "\x00", "%"]),
                                                     st.sampled_from(lengths)))


def path_texts() -> st.SearchStrategy:
    """Names for a URL path: long, but within the request head uvicorn parses (see test_overlong_request_line)."""
    return long_texts((256, 2000))


def leaves() -> st.SearchStrategy:
    return st.one_of(st.none(), st.booleans(), numbers(), long_texts(), b64_values())


def json_values(max_leaves: int = 12) -> st.SearchStrategy:
    return st.recursive(leaves(), lambda c: st.lists(c, max_size=4) | st.dictionaries(long_texts(), c, max_size=3),
                        max_leaves=max_leaves)


def image_values() -> st.SearchStrategy:
    """Things sent where images belong: good ones, wrong shapes and types, b64 garbage."""
    small = st.lists(st.lists(st.lists(numbers(), min_size=3, max_size=3), min_size=1, max_size=3), min_size=1, max_size=3)
    return st.one_of(st.just([good_image()]), st.just([_b64(png_bytes())]), st.lists(b64_values(), min_size=1, max_size=3),
                     st.lists(small, min_size=1, max_size=2), json_values(6), st.just([[[[BIG_INT, 0, 0]]]]))


FIELDS = ["instances", "inputs", "signature_name", "method", "parameters", "model", "images", "params", "query",
          "reference", "methods", "class_index", "top_k", "theta", "rho", "target_layer", "resize", "method_params"]


# ---------------------------------------------------------------------------- requests
def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@st.composite
def model_paths(draw: Any, verb: str) -> tuple[str, frozenset]:
    """``/v1/models/NAME[/versions/V|/labels/L]:verb`` with the statuses a bad part must get."""
    kind = draw(st.sampled_from(["ok", "ok", "ok", "name", "version", "label", "embedding"]))
    if kind == "ok":
        suffix = draw(st.sampled_from(["", "/versions/1", "/labels/stable"]))
        return f"/v1/models/{CLASSIFIER}{suffix}:{verb}", DEFINED
    if kind == "embedding":
        return f"/v1/models/{EMBEDDING}:{verb}", DEFINED
    if kind == "name":
        name = draw(path_texts().filter(lambda t: t not in (CLASSIFIER, EMBEDDING)))
        return f"/v1/models/{_quote(name)}:{verb}", REFUSED
    if kind == "version":
        version = draw(st.sampled_from(["0", "2", "99999999999999999999999", "9223372036854775808", "-1", "1.5", "x"]))
        # version 0 is proto3's "not set": the latest version, over gRPC and HTTP alike
        return f"/v1/models/{CLASSIFIER}/versions/{version}:{verb}", DEFINED if version == "0" else REFUSED
    label = draw(path_texts().filter(lambda t: t != "stable"))
    return f"/v1/models/{CLASSIFIER}/labels/{_quote(label)}:{verb}", REFUSED


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def predict_cases(draw: Any) -> Case:
    path, expect = draw(model_paths("predict"))
    body: dict[str, Any] = {draw(st.sampled_from(["instances", "inputs"])): draw(image_values())}
    if draw(st.booleans()):
        body["signature_name"] = draw(st.one_of(st.sampled_from(["serving_default", "gradcam", "saliency", "nosuch"]),
                                                leaves()))
    if draw(st.integers(0, 4)) == 0:
        body[draw(st.sampled_from(FIELDS))] = draw(json_values(4))
    return Case("POST", path, _dump(body), "predict", expect)


@st.composite
def kserve_cases(draw: Any) -> Case:
    path, expect = draw(model_paths("explain"))
    body: dict[str, Any] = {"instances": draw(image_values())}
    if draw(st.booleans()):
        body["method"] = draw(st.one_of(st.sampled_from(["gradcam", "saliency", "layercam", "occlusion", "nosuch"]), leaves()))
    if draw(st.booleans()):
        body["parameters"] = draw(st.one_of(st.dictionaries(st.sampled_from(["class_index", "top_k", "theta", "rho",
                                                                             "target_layer", "resize", "stride", "zoom"]),
                                                            leaves(), max_size=3), leaves()))
    return Case("POST", path, _dump(body), "kserve", expect)


@st.composite
def typed_cases(draw: Any) -> Case:
    route = draw(st.sampled_from(["/v1/explain", "/v1/similarity", "/v1/masks"]))
    images = draw(st.one_of(st.builds(lambda d: {"encoded": {"data": d}},
                                      st.lists(st.one_of(st.just(base64.b64encode(png_bytes()).decode()), long_texts(),
                                                         numbers()), max_size=2)),
                            st.builds(lambda t: {"tensor": t}, json_values(6)), json_values(4)))
    body: dict[str, Any] = {"model": draw(st.one_of(st.builds(lambda n: {"name": n}, st.sampled_from([CLASSIFIER, EMBEDDING])),
                                                    json_values(4)))}
    for name in draw(st.lists(st.sampled_from(["images", "query", "reference"]), min_size=1, max_size=3, unique=True)):
        body[name] = images
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[name] = draw(json_values(4))
    if draw(st.booleans()):
        body["method"] = draw(st.sampled_from(["gradcam", "saliency", "nosuch", ""]))
    return Case("POST", route, _dump(body), "typed")


@st.composite
def raw_cases(draw: Any) -> Case:
    """Bodies that are not (good) JSON: random bytes, truncated, not UTF-8, deeply nested."""
    route = draw(st.sampled_from([f"/v1/models/{CLASSIFIER}:predict", f"/v1/models/{CLASSIFIER}:explain", "/v1/explain",
                                  "/v1/similarity", "/v1/masks"]))
    depth = draw(st.sampled_from([64, 1000, 5000, 200000]))
    good = _dump({"instances": [good_image()]})
    body = draw(st.one_of(st.binary(max_size=300), st.builds(lambda n: good[:n], st.integers(0, len(good) - 1)),
                          st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth, b"[" * depth,
                                           b"\xff\xfe{\x00}\x00", b'{"instances": "\xed\xa0\x80"}', b"\xef\xbb\xbf{}",
                                           b"1e999999", b"-" + b"9" * 5000, b"null", b"", b"   "])))
    return Case("POST", route, body, "raw", DEFINED - {200})


@st.composite
def get_cases(draw: Any) -> Case:
    kind = draw(st.sampled_from(["status", "metadata", "list", "scenes"]))
    if kind in ("status", "metadata"):
        path, expect = draw(model_paths("x"))
        path = path[:-2] + ("/metadata" if kind == "metadata" else "")
        return Case("GET", path, None, kind, expect)
    value = draw(st.one_of(path_texts(), st.sampled_from(["2", "64", "1025", "99999999999999999999", "²", "-1", "1e3"])))
    key = "name" if kind == "list" else "size"
    return Case("GET", f"/v1/{'models' if kind == 'list' else 'scenes'}?{key}={_quote(value)}", None, kind)


@st.composite
def header_cases(draw: Any) -> Case:
    """Hostile deadline and content headers on a small valid request."""
    value = draw(st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "1e400", "", "0x10", "1_0", "٣"]), path_texts()))
    value = "".join(c for c in value if " " <= c <= "~" or "\xa0" <= c <= "\xff")  # what a header line can carry
    body = _dump({"instances": [_b64(png_bytes())]})
    return Case("POST", f"/v1/models/{CLASSIFIER}:predict", body, "headers", DEFINED,
                (("X-Request-Timeout", value),))


def all_cases() -> st.SearchStrategy:
    return st.one_of(predict_cases(), predict_cases(), kserve_cases(), kserve_cases(), typed_cases(), typed_cases(),
                     raw_cases(), get_cases(), header_cases())


def run_fuzz(server: ServerProcess, examples: int, derandomize: bool) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(case=all_cases())
    def body(case: Case) -> None:
        check(server, case)

    body()
    assert_still_serving(server)


def assert_still_serving(server: ServerProcess) -> None:
    assert server.alive() and health(server.address) == "SERVING"
    assert send(server, Case("GET", f"/v1/models/{CLASSIFIER}", None, "status"))[0] == 200


# ---------------------------------------------------------------------------- tests
def test_http_fuzz_quick(rest_server):
    """≈60 derandomised hostile HTTP requests (the default run)."""
    run_fuzz(rest_server, QUICK_EXAMPLES, derandomize=True)


@pytest.mark.slow
@pytest.mark.fuzz
def test_http_fuzz_full(rest_server):
    """The full HTTP fuzzer (``HTTP_FUZZ_EXAMPLES`` random cases)."""
    run_fuzz(rest_server, FULL_EXAMPLES, derandomize=False)


# ---- explicit cases with a known answer (default run)
PREDICT = f"/v1/models/{CLASSIFIER}:predict"


@pytest.mark.parametrize("body,needle", [
    (b"[" * 200000 + b"]" * 200000, "nest"),
    (b'{"a":' * 100000 + b"1" + b"}" * 100000, "nest"),
    (b'{"instances": [1, 2', "not valid JSON"),
    (b"\xff\xfe\x00", "UTF-8"),
    (b"", "empty"),
])
def test_bad_json_is_400(rest_server, body, needle):
    status, message = check(rest_server, Case("POST", PREDICT, body, "explicit", frozenset({400})))
    assert needle in message, message


@pytest.mark.parametrize("value,needle", [
    ([[[[BIG_INT, 0, 0]] * SIZE] * SIZE], "out of range"),
    ([[[[2**64, 0, 0]] * SIZE] * SIZE], "out of range"),
    ([[[[1e308] * 3] * SIZE] * SIZE], "uint8"),
    ([[[[float("nan")] * 3] * SIZE] * SIZE], "uint8"),
])
def test_huge_and_non_finite_numbers_are_400(rest_server, value, needle):
    status, message = check(rest_server, Case("POST", PREDICT, _dump({"instances": value}), "explicit", frozenset({400})))
    assert needle in message, message


@pytest.mark.parametrize("path,code,needle", [
    (f"/v1/models/{'a' * 12000}:predict", 400, "aaaa"),
    (f"/v1/models/{CLASSIFIER}/versions/99999999999999999999999:predict", 400, "99999999999999999999999"),
    (f"/v1/models/{CLASSIFIER}/versions/9223372036854775807:predict", 404, "9223372036854775807"),
    (f"/v1/models/{CLASSIFIER}/labels/{'b' * 5000}:predict", 400, "bbbb"),
    ("/v1/scenes?size=%C2%B2", 400, "'²'"),
    ("/v1/scenes?size=99999999999999999999", 400, "99999999999999999999"),
])
def test_long_names_and_huge_versions_are_refused(rest_server, path, code, needle):
    method = "GET" if path.startswith("/v1/scenes") else "POST"
    body = None if method == "GET" else _dump({"instances": [_b64(png_bytes())]})
    status, message = check(rest_server, Case(method, path, body, "explicit", frozenset({code})))
    assert needle in message and len(message) < 2000, message


def test_oversized_bodies_are_413_and_the_server_stays_up(rest_server):
    big = b" " * (MAX_BODY + 1)
    declared = check(rest_server, Case("POST", PREDICT, big, "explicit", frozenset({413})))[1]
    assert f"{MAX_BODY:,}" in declared
    # chunked transfer: no Content-Length, the limit is enforced while reading
    conn = http.client.HTTPConnection("127.0.0.1", rest_server.options["rest_port"], timeout=120)
    try:
        conn.request("POST", PREDICT, body=iter([b" " * 2**20] * 3), headers={"Content-Type": "application/json"},
                     encode_chunked=True)
        reply = conn.getresponse()
        status, body = reply.status, json.loads(reply.read())
    finally:
        conn.close()
    assert status == 413 and f"{MAX_BODY:,}" in body["error"]
    assert_still_serving(rest_server)


def test_overlong_request_line_is_refused_and_the_server_stays_up(rest_server):
    """A request head beyond what uvicorn parses (its h11 buffer) is refused by uvicorn itself, before the
    app: a plain-text 400, or a reset when the client is still sending. No JSON body is possible there."""
    conn = http.client.HTTPConnection("127.0.0.1", rest_server.options["rest_port"], timeout=120)
    try:
        conn.request("POST", f"/v1/models/{'a' * 300000}:predict", body=b"{}")
        status = conn.getresponse().status
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
        status = 400
    finally:
        conn.close()
    assert status == 400
    assert_still_serving(rest_server)
