"""The HTTP side against a real server (gRPC and HTTP on 127.0.0.1, port 0) on the tiny models.

* parity: the same images through gRPC Predict, REST ``:predict`` (row and columnar, JSON lists,
  raw b64 and PNG b64), the typed JSON API and KServe ``:explain`` give the same numbers (1e-6),
  for ``serving_default`` and ``gradcam``;
* a request written as TF Serving's REST documentation shows it, sent with ``urllib`` and no
  project code; a KServe v1 ``:explain``; model status and metadata in TF Serving's JSON;
* an error matrix: HTTP code and a message naming the value, and the server keeps answering;
* a hostile-input fuzzer (hypothesis) over every HTTP route: never a 5xx, always ``{"error"}``;
* ``GET /v1/models`` carries each method's parameter schema; ``/openapi.json`` lists the routes.

The server requires a bearer token (every request here sends it; the matrix checks its absence).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from serving import convert  # noqa: E402

TOKEN = "http-test-token"
MODEL = "vgg11"
MAX_BODY = 4 * 2**20


@pytest.fixture(scope="module")
def server(tiny_model_root):
    from serving.server import start_server

    with start_server(tiny_model_root, port=0, rest_port=-1, auth_token=TOKEN, warmup="default",
                      max_message_bytes=MAX_BODY, file_system_poll_wait_seconds=0) as srv:
        yield srv


def http(server: Any, method: str, path: str, body: Any = None, raw: bytes | None = None,
         token: str | None = TOKEN) -> tuple[int, Any]:
    """One request with urllib (no project code): ``(status, parsed JSON body)``."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server.rest_url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def images(server) -> np.ndarray:
    h, w, _ = server.registry.resolve(MODEL).input_shape
    return np.random.default_rng(3).integers(0, 256, (2, h, w, 3), dtype=np.uint8)


def grpc_predict(server: Any, signature: str, images: np.ndarray) -> dict[str, np.ndarray]:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.address))
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    req.model_spec.signature_name = signature
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    if signature == "gradcam":
        req.inputs["class_index"].CopyFrom(tf.make_tensor_proto(np.full(len(images), -1, np.int32)))
    resp = stub.Predict(req, timeout=60, metadata=[("authorization", f"Bearer {TOKEN}")])
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def rest_bodies(signature: str, images: np.ndarray) -> dict[str, dict[str, Any]]:
    """The same request in each REST form."""
    raw = [b64(img.tobytes()) for img in images]
    png = [b64(p) for p in convert.encode_png(images)]
    lists = images.tolist()
    if signature == "serving_default":
        return {"row lists": {"instances": lists}, "row b64": {"instances": raw},
                "columnar lists": {"inputs": lists}, "columnar b64 png": {"inputs": png}}
    ci = [-1] * len(images)
    return {
        "row lists": {"signature_name": signature, "instances": [{"images": x, "class_index": -1} for x in lists]},
        "row b64": {"signature_name": signature, "instances": [{"images": x, "class_index": -1} for x in raw]},
        "columnar lists": {"signature_name": signature, "inputs": {"images": lists, "class_index": ci}},
        "columnar b64 png": {"signature_name": signature, "inputs": {"images": png, "class_index": ci}},
    }


def rest_outputs(body: dict[str, Any], response: dict[str, Any]) -> dict[str, np.ndarray]:
    if "outputs" in response:
        out = response["outputs"]
        return {k: np.asarray(v) for k, v in out.items()}
    rows = response["predictions"]
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


@pytest.mark.parametrize("signature", ["serving_default", "gradcam"])
def test_grpc_rest_typed_and_kserve_give_the_same_numbers(server, images, signature):
    want = grpc_predict(server, signature, images)
    for form, body in rest_bodies(signature, images).items():
        status, resp = http(server, "POST", f"/v1/models/{MODEL}:predict", body)
        assert status == 200, (form, resp)
        got = rest_outputs(body, resp)
        assert sorted(got) == sorted(want), form
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=0, err_msg=f"{form}: {k}")
    typed_body = {"model": {"name": MODEL}, "method": "gradcam" if signature == "gradcam" else "saliency",
                  "images": {"tensor": {"dtype": "DT_UINT8", "tensor_shape": {"dim": [{"size": s} for s in images.shape]},
                                        "tensor_content": base64.b64encode(images.tobytes()).decode()}}}
    status, typed = http(server, "POST", "/v1/explain", typed_body)
    assert status == 200, typed
    probs = np.frombuffer(base64.b64decode(typed["probabilities"]["tensor_content"]), np.float32).reshape(want["probabilities"].shape)
    np.testing.assert_allclose(probs, want["probabilities"], atol=1e-6, rtol=0)
    if signature == "gradcam":
        heat = np.frombuffer(base64.b64decode(typed["heatmap"]["tensor_content"]), np.float32).reshape(want["heatmap_upsampled"].shape)
        np.testing.assert_allclose(heat, want["heatmap_upsampled"], atol=1e-6, rtol=0)
        status, ks = http(server, "POST", f"/v1/models/{MODEL}:explain",
                          {"instances": [b64(p) for p in convert.encode_png(images)], "method": "gradcam"})
        assert status == 200, ks
        assert [e["class_index"] for e in ks["explanations"]] == want["class_index"].tolist()
        np.testing.assert_allclose(np.asarray([e["heatmap"] for e in ks["explanations"]]), want["heatmap_upsampled"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.asarray([e["probabilities"] for e in ks["explanations"]]), want["probabilities"], atol=1e-6, rtol=0)


def test_tf_serving_documented_requests_without_project_code(server, images):
    """The examples of TF Serving's REST API page, verbatim in form (model name and values ours)."""
    text = '{"signature_name": "serving_default", "instances": ' + json.dumps(images[:1].tolist()) + "}"
    status, resp = http(server, "POST", f"/v1/models/{MODEL}/versions/1:predict", raw=text.encode())
    assert status == 200 and len(resp["predictions"]) == 1
    probs = np.asarray(resp["predictions"][0]["probabilities"])
    assert probs.shape == (len(server.registry.resolve(MODEL).class_names),) and abs(probs.sum() - 1) < 1e-5
    status, resp = http(server, "GET", f"/v1/models/{MODEL}")
    assert status == 200
    assert resp["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                             "status": {"error_code": "OK", "error_message": ""}}]
    assert resp["name"] == MODEL and resp["ready"] is True  # KServe v1 readiness on the same route
    status, resp = http(server, "GET", f"/v1/models/{MODEL}/versions/1/metadata")
    assert status == 200 and resp["model_spec"]["name"] == MODEL and resp["model_spec"]["version"] == "1"
    sigs = resp["metadata"]["signature_def"]["signature_def"]
    assert sigs["gradcam"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    # KServe v1 explain, as an explainer component receives it.
    status, resp = http(server, "POST", f"/v1/models/{MODEL}:explain",
                        {"instances": images[:1].tolist(), "method": "gradcam", "parameters": {"class_index": 1}})
    assert status == 200 and resp["explanations"][0]["class_index"] == 1
    heat = np.asarray(resp["explanations"][0]["heatmap"])
    assert heat.shape == images.shape[1:3] and 0 <= heat.min() and heat.max() <= 1 + 1e-6 and heat.max() > 0


def test_models_list_carries_parameter_schemas_and_openapi(server):
    status, resp = http(server, "GET", "/v1/models")
    assert status == 200
    model = next(m for m in resp["models"] if m["name"] == MODEL)
    methods = {m["name"]: m for m in model["methods"]}
    occ = methods["occlusion"]["param_schema"]["properties"]
    assert occ["patch_size_at_224"]["type"] == "number" and occ["patch_size_at_224"]["default"] == 10
    assert occ["patch_size_at_224"]["exclusiveMinimum"] == 0 and occ["fill"]["maximum"] == 1
    assert occ["stride"]["type"] == ["integer", "null"] and occ["stride"]["minimum"] == 1
    specs = {p["name"]: p for p in methods["occlusion"]["parameters"]}  # ListModels' ParameterSpec, as JSON
    assert specs["fill"]["accepted"] == "[0.0, 1.0]" and specs["fill"]["type"] == "float"
    assert specs["patch_size_at_224"]["unit"] == "px at 224" and specs["patch_size_at_224"]["min_open"] is True
    assert occ["batch_size"]["maximum"] == server.runtime.limits.max_iterative_batch_size
    status, doc = http(server, "GET", "/openapi.json", token=None)  # public
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {"/v1/explain", "/v1/models", "/v1/models/{name}:predict", "/v1/models/{name}:explain"} <= set(doc["paths"])
    props = doc["components"]["schemas"]["explain.v1.ExplainRequest"]["properties"]
    assert props["params"]["type"] == "object" and props["class_index"]["type"] == "array"
    req = urllib.request.Request(server.rest_url + "/")
    with urllib.request.urlopen(req, timeout=30) as page:  # the viewer is public too
        assert b"cnn-explain viewer" in page.read()


def _error_cases(images: np.ndarray) -> list[tuple[str, str, str, Any, str | None, int, str]]:
    one = images[:1].tolist()
    small = np.zeros((1, 8, 8, 3), np.uint8).tolist()
    occl = {"model": {"name": MODEL}, "method": "occlusion", "images": {"encoded": {"data": [base64.b64encode(convert.encode_png(images[:1])[0]).decode()]}}}
    return [
        ("malformed JSON", "POST", f"/v1/models/{MODEL}:predict", b'{"instances": [1, 2', TOKEN, 400, "not valid JSON"),
        ("not an object", "POST", f"/v1/models/{MODEL}:predict", b"[1]", TOKEN, 400, "JSON object"),
        ("both formats", "POST", f"/v1/models/{MODEL}:predict", {"instances": one, "inputs": one}, TOKEN, 400, "exactly one of"),
        ("wrong shape", "POST", f"/v1/models/{MODEL}:predict", {"instances": small}, TOKEN, 400, "[1, 8, 8, 3]"),
        ("float pixels", "POST", f"/v1/models/{MODEL}:predict", {"instances": (images[:1] / 255).tolist()}, TOKEN, 400, "expects uint8"),
        ("bad b64", "POST", f"/v1/models/{MODEL}:predict", {"instances": [{"b64": "@@@"}]}, TOKEN, 400, "base64"),
        ("unknown model", "POST", "/v1/models/nope:predict", {"instances": one}, TOKEN, 404, "'nope'"),
        ("unknown version", "GET", f"/v1/models/{MODEL}/versions/9", None, TOKEN, 404, "version 9"),
        ("unknown label", "POST", f"/v1/models/{MODEL}/labels/canary:predict", {"instances": one}, TOKEN, 404, "'canary'"),
        ("unknown signature", "POST", f"/v1/models/{MODEL}:predict", {"signature_name": "nosuch", "instances": one}, TOKEN, 400, "'nosuch'"),
        ("unknown method", "POST", "/v1/explain", {**occl, "method": "nosuch_method"}, TOKEN, 400, "'nosuch_method'"),
        ("unknown method kserve", "POST", f"/v1/models/{MODEL}:explain", {"instances": one, "method": "nosuch_method"}, TOKEN, 400, "'nosuch_method'"),
        ("bad parameter", "POST", "/v1/explain", {**occl, "params": {"stride": {"string_value": "x"}}}, TOKEN, 400, "stride 'x'"),
        ("unknown parameter", "POST", f"/v1/models/{MODEL}:explain", {"instances": one, "method": "occlusion", "parameters": {"zoom": 2}}, TOKEN, 400, "'zoom'"),
        ("not a message", "POST", "/v1/explain", {"model": 5}, TOKEN, 400, "explain.v1.ExplainRequest"),
        ("method not for model", "POST", "/v1/similarity", {"model": {"name": MODEL}, "query": occl["images"], "reference": occl["images"]}, TOKEN, 400, "similarity"),
        ("classify", "POST", f"/v1/models/{MODEL}:classify", {"examples": []}, TOKEN, 501, ":classify"),
        ("missing token", "POST", f"/v1/models/{MODEL}:predict", {"instances": one}, None, 401, "missing bearer token"),
        ("wrong token", "GET", f"/v1/models/{MODEL}", None, "nope", 401, "invalid bearer token"),
        ("oversized body", "POST", f"/v1/models/{MODEL}:predict", b" " * (MAX_BODY + 1), TOKEN, 413, f"{MAX_BODY:,}"),
        ("unknown route", "GET", "/v2/whatever", None, TOKEN, 404, "/v2/whatever"),
    ]


def test_error_matrix(server, images):
    failures = []
    for name, method, path, body, token, code, needle in _error_cases(images):
        raw = body if isinstance(body, bytes) else None
        status, resp = http(server, method, path, None if raw is not None else body, raw=raw, token=token)
        message = resp.get("error", "") if isinstance(resp, dict) else ""
        if status != code or needle not in message:
            failures.append(f"{name}: HTTP {status} {message!r}; want {code} with {needle!r}")
        assert set(resp) == {"error"}, name
    assert not failures, "\n".join(failures)
    status, resp = http(server, "GET", f"/v1/models/{MODEL}")
    assert status == 200 and resp["ready"]


def test_hostile_json_never_gets_a_server_error(server, images):
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False, allow_infinity=False),
                     st.text(max_size=8), st.just({"b64": "iVBORw0KGgo="}), st.just({"b64": "!!"}))
    values = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=12)
    keys = st.sampled_from(["instances", "inputs", "signature_name", "method", "parameters", "model", "images", "params",
                            "query", "reference", "methods", "class_index"])
    bodies = st.dictionaries(keys, values, max_size=4) | values
    paths = st.sampled_from([f"/v1/models/{MODEL}:predict", f"/v1/models/{MODEL}:explain", "/v1/explain", "/v1/similarity",
                             "/v1/masks", "/v1/models/nope:predict", f"/v1/models/{MODEL}/labels/x:predict",
                             "/v1/models/embedding_avg:explain"])

    @settings(max_examples=int(os.environ.get("HTTP_FUZZ_EXAMPLES", "60")), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(path=paths, body=bodies)
    def check(path: str, body: Any) -> None:
        status, resp = http(server, "POST", path, body)
        assert status < 500, (path, body, resp)
        if status != 200:
            assert isinstance(resp.get("error"), str) and resp["error"] and "Traceback" not in resp["error"]

    check()
    assert http(server, "GET", f"/v1/models/{MODEL}")[0] == 200


# ---------------------------------------------------------------------------- the viewer, in a real browser
def _browser_paths() -> tuple[str, str] | None:
    import shutil

    browser = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    paths = _browser_paths()
    if paths is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    yield driver
    driver.quit()


def test_viewer_shows_a_gradcam_overlay_in_a_browser(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(server.rest_url + "/")
    token = browser.find_element(By.ID, "token")
    token.send_keys(TOKEN)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", token)
    wait.until(lambda d: any(o.get_attribute("value") == MODEL for o in d.find_elements(By.CSS_SELECTOR, "#model option")))
    browser.execute_script("const s = document.getElementById('model'); s.value = arguments[0]; "
                           "s.dispatchEvent(new Event('change'))", MODEL)
    wait.until(lambda d: d.find_element(By.ID, "scene").get_attribute("data-model") == MODEL)  # scenes of this model
    wait.until(lambda d: d.find_element(By.ID, "method-gradcam").is_selected())
    scene_id, png_b64 = browser.execute_script(
        "const s = document.getElementById('scene'); s.selectedIndex = 1; s.dispatchEvent(new Event('change')); "
        "return [s.value, s.selectedOptions[0].dataset.png]")
    assert scene_id and browser.find_element(By.ID, "preview").get_attribute("src").endswith(png_b64)
    browser.find_element(By.ID, "explain").click()
    result = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result-gradcam[data-state='done']")))
    overlay = browser.find_element(By.ID, "overlay-gradcam")
    assert overlay.size["width"] > 100 and "%" in result.text  # the top classes are listed
    shot = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    out = os.environ.get("RELIABILITY_OUT")
    if out:  # keep the screenshot with the other test outputs
        os.makedirs(out, exist_ok=True)
        browser.save_screenshot(os.path.join(out, "viewer.png"))
    # The overlay shows the service's numbers: the page's heat map sums to the API's Grad-CAM.
    status, resp = http(server, "POST", "/v1/explain", {"model": {"name": MODEL}, "method": "gradcam",
                                                        "images": {"encoded": {"data": [png_b64]}, "resize": True}})
    assert status == 200, (scene_id, resp)
    heat = np.frombuffer(base64.b64decode(resp["heatmap"]["tensor_content"]), np.float32)
    assert float(result.get_attribute("data-heat-sum")) == pytest.approx(float(heat.sum()), rel=1e-5)
    # The overlay pixels differ from the plain image where the heat map is drawn, and follow the slider.
    before = browser.execute_script("return document.getElementById('overlay-gradcam').toDataURL()")
    browser.execute_script("const s = document.getElementById('opacity'); s.value = '0'; s.dispatchEvent(new Event('input'))")
    after = browser.execute_script("return document.getElementById('overlay-gradcam').toDataURL()")
    assert before != after
    links = [a.get_attribute("download") for a in result.find_elements(By.TAG_NAME, "a")]
    assert links == ["gradcam.png", "gradcam.npy"]
