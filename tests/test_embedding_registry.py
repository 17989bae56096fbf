"""Embedding methods are pluggable through the registry, as classifier methods are (issue 13).

Two toy embedding methods are registered in this test alone and reached with no other file
changed:

* ``toy_cosine`` (single pass, in the graph): the per-location cosine between the query's and the
  reference's target-layer activation vectors, times a declared ``scale`` (a signature input);
  the similarity is its spatial mean and ``agreement`` (a further output) the fraction of
  locations with a positive cosine. The exporter enumerates it as a signature of the embedding
  export next to ``similarity_map``.
* ``toy_embedding_dot`` (iterative, in the service): the embeddings' dot product times a declared
  ``weight``, spread evenly over a 1×1 map, computed through the served model's backend.

Through a real gRPC server (and its HTTP port) on loopback: ``ListModels`` lists them with their
parameter schemas; ``SimilarityMap`` with ``method`` returns the values computed in-process (numpy
on the Keras model's activations); a bad parameter is INVALID_ARGUMENT naming parameter, value
and range; an unknown or a classifier method is refused naming the accepted embedding methods;
an empty ``method`` still gives ``similarity_map``'s result (old clients keep working). The typed
JSON route ``POST /v1/similarity`` and :meth:`serving.client.ExplanationClient.similarity_map`
carry the same ``method``/``params``.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from explain import registry  # noqa: E402
from explain.schema import Param  # noqa: E402
from serving import convert  # noqa: E402
from serving.protos.explain.v1 import explain_pb2 as pb  # noqa: E402
from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc  # noqa: E402
from tests.registry_helpers import registered  # noqa: E402

SIZE, EMB = 32, "emb"


# ---------------------------------------------------------------------------- the toy methods
def toy_cosine(view: Any, query_images: tf.Tensor, reference_images: tf.Tensor, scale: Any = 1.0) -> dict[str, tf.Tensor]:
    """Single-pass toy: ``scale`` × the cosine of the two activation vectors at each location."""
    q = tf.math.l2_normalize(view.run(query_images).activations, axis=-1)
    r = tf.math.l2_normalize(view.run(reference_images).activations, axis=-1)
    cos = tf.reduce_sum(q * r, axis=-1) * tf.cast(scale, tf.float32)
    return {"query_map": cos, "reference_map": cos, "similarity": tf.reduce_mean(cos, axis=[1, 2]),
            "agreement": tf.reduce_mean(tf.cast(cos > 0, tf.float32), axis=[1, 2])}


def toy_embedding_dot(backend: Any, query: np.ndarray, reference: np.ndarray, weight: float = 1.0,
                      should_continue: Any = None) -> dict[str, np.ndarray]:
    """Iterative toy: ``weight`` × the embeddings' dot product, on a 1×1 map."""
    dot = weight * (backend.predict(query) * backend.predict(reference)).sum(axis=1)
    return {"query_map": dot[:, None, None].astype(np.float32), "similarity": dot.astype(np.float32)}


TOYS = (
    registry.Method(
        name="toy_cosine", fn=toy_cosine, kind="single_pass", applies_to="embedding",
        signature_inputs={
            "query_images": lambda: tf.TensorSpec([None, None, None, 3], tf.uint8),
            "reference_images": lambda: tf.TensorSpec([None, None, None, 3], tf.uint8),
            "scale": lambda: tf.TensorSpec([], tf.float32),
        },
        parameters=(Param("scale", float, 1.0, lo=0.0, hi=10.0, lo_open=True, doc="factor of the cosine"),),
        label="Toy cosine", description="per-location cosine of the activations (test)",
    ),
    registry.Method(
        name="toy_embedding_dot", fn=toy_embedding_dot, kind="iterative", applies_to="embedding",
        parameters=(Param("weight", float, 1.0, lo=-2.0, hi=2.0, unit="x", doc="factor of the dot product"),),
        label="Toy dot", cost="cheap", description="the embeddings' dot product (test)",
    ),
)


@pytest.fixture(scope="module")
def toys():
    with registered(TOYS) as methods:
        yield methods


@pytest.fixture(scope="module")
def exported(toys, tmp_path_factory):
    """A tiny untrained embedding network exported with every registered single-pass embedding method."""
    import keras

    from models.architectures import build_embedding
    from models.export import export_embedding

    root = tmp_path_factory.mktemp("embedding_registry")
    keras.utils.set_random_seed(0)
    model = build_embedding("avg", SIZE, embedding_dim=8, width=0.0625)
    export_embedding(model, root / EMB)
    return root, model


@pytest.fixture(scope="module")
def server(exported):
    from serving.server import start_server

    with start_server(exported[0], port=0, rest_port=-1, file_system_poll_wait_seconds=0, warmup="none",
                      max_batch_size=8, batch_timeout_micros=1000) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.ExplanationServiceStub(channel)


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8),
            rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8))


def request(query: np.ndarray, reference: np.ndarray, method: str = "",
            params: dict[str, Any] | None = None) -> pb.SimilarityMapRequest:
    req = pb.SimilarityMapRequest(model=pb.ModelRef(name=EMB), query=pb.ImageBatch(tensor=convert.to_tensor(query)),
                                  reference=pb.ImageBatch(tensor=convert.to_tensor(reference)), method=method)
    for k, v in (params or {}).items():
        req.params[k].CopyFrom(convert.python_to_param(v))
    return req


def array(t) -> np.ndarray:
    return convert.to_ndarray(t, "test")


def cosine_in_process(model: Any, query: np.ndarray, reference: np.ndarray, scale: float) -> np.ndarray:
    """The toy's map in numpy from the Keras model's target-layer activations."""
    from explain.view import ModelView

    view = ModelView(model)

    def unit(x: np.ndarray) -> np.ndarray:
        a = view.run(tf.constant(x, tf.float32) / 255.0).activations.numpy().astype(np.float64)
        return a / np.sqrt(np.maximum((a * a).sum(axis=-1, keepdims=True), 1e-12))

    return scale * (unit(query) * unit(reference)).sum(axis=-1)


# ---------------------------------------------------------------------------- tests
def test_export_enumerates_the_embedding_methods(exported):
    loaded = tf.saved_model.load(str(exported[0] / EMB / "1"))
    assert {"similarity_map", "toy_cosine"} <= set(loaded.signatures)
    sig = loaded.signatures["toy_cosine"]
    assert set(sig.structured_input_signature[1]) == {"query_images", "reference_images", "scale"}
    card = json.loads((exported[0] / EMB / "1" / "assets.extra" / "model_card.json").read_text())
    assert card["methods"] == ["similarity_map", "toy_cosine"]


def test_list_models_publishes_the_embedding_methods(stub):
    info = stub.ListModels(pb.ListModelsRequest(name=EMB), timeout=60).models[0]
    methods = {m.name: m for m in info.methods}
    assert set(methods) == {"similarity_map", "toy_cosine", "toy_embedding_dot"}
    cos, dot = methods["toy_cosine"], methods["toy_embedding_dot"]
    assert (cos.kind, cos.label, cos.cost, cos.in_graph, cos.applies_to) == ("single_pass", "Toy cosine", "cheap", True,
                                                                             "embedding")
    (spec,) = cos.parameters
    assert (spec.name, spec.type, spec.default.float_value, spec.min, spec.max) == ("scale", "float", 1.0, 0.0, 10.0)
    assert spec.min_open and not spec.max_open and spec.accepted == "(0.0, 10.0]" and not spec.fixed
    assert spec.doc == "factor of the cosine"
    assert (dot.kind, dot.in_graph, dot.applies_to) == ("iterative", False, "embedding")
    (spec,) = dot.parameters
    assert (spec.name, spec.unit, spec.accepted, spec.fixed) == ("weight", "x", "[-2.0, 2.0]", False)


def test_single_pass_toy_equals_in_process(stub, exported, pair):
    q, r = pair
    resp = stub.SimilarityMap(request(q, r, "toy_cosine", {"scale": 2.5}), timeout=60)
    want = cosine_in_process(exported[1], q, r, 2.5)
    assert resp.method == "toy_cosine" and resp.params["scale"].float_value == 2.5
    assert array(resp.query_map).shape == want.shape == (2, SIZE // 8, SIZE // 8)
    np.testing.assert_allclose(array(resp.query_map), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(array(resp.reference_map), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(array(resp.similarity), want.mean(axis=(1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(array(resp.outputs["agreement"]), (want > 0).mean(axis=(1, 2)), atol=1e-6)
    assert not resp.HasField("query_map_upsampled")  # the toy has none
    # The default scale; one reference image is compared with every query.
    resp = stub.SimilarityMap(request(q, r[:1], "toy_cosine"), timeout=60)
    np.testing.assert_allclose(array(resp.query_map), cosine_in_process(exported[1], q, r[[0, 0]], 1.0),
                               rtol=1e-4, atol=1e-5)
    assert resp.params["scale"].float_value == 1.0


def test_iterative_toy_runs_in_the_service(stub, exported, pair):
    q, r = pair
    resp = stub.SimilarityMap(request(q, r, "toy_embedding_dot", {"weight": -0.5}), timeout=60)
    e_q = exported[1](q.astype(np.float32) / 255.0).numpy()
    e_r = exported[1](r.astype(np.float32) / 255.0).numpy()
    want = -0.5 * (e_q * e_r).sum(axis=1)
    np.testing.assert_allclose(array(resp.similarity), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(array(resp.query_map), want[:, None, None], rtol=1e-4, atol=1e-5)
    assert resp.method == "toy_embedding_dot" and resp.params["weight"].float_value == -0.5


def test_empty_method_is_similarity_map(stub, exported, pair):
    from explain.view import ModelView

    q, r = pair
    old = stub.SimilarityMap(request(q, r), timeout=60)  # what a client without the new fields sends
    new = stub.SimilarityMap(request(q, r, "similarity_map"), timeout=60)
    want = registry.get("similarity_map").fn(ModelView(exported[1]), query_images=tf.constant(q, tf.float32) / 255.0,
                                             reference_images=tf.constant(r, tf.float32) / 255.0)
    assert old.method == new.method == "similarity_map" and not old.params
    for key in ("query_map", "reference_map", "similarity", "query_map_upsampled", "reference_map_upsampled"):
        np.testing.assert_array_equal(array(getattr(old, key)), array(getattr(new, key)))
        np.testing.assert_allclose(array(getattr(old, key)), want[key].numpy(), rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(array(old.query_map).sum(axis=(1, 2)), array(old.similarity), atol=1e-5)
    np.testing.assert_allclose(array(old.outputs["topk_share"]), want["topk_share"].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method, params, text", [
    ("toy_cosine", {"scale": 0.0}, "params['scale']: scale 0.0 is out of range; accepted: (0.0, 10.0]"),
    ("toy_cosine", {"scale": 12}, "params['scale']: scale 12.0 is out of range; accepted: (0.0, 10.0]"),
    ("toy_cosine", {"scale": "big"}, "params['scale']: scale 'big' must be a number; accepted: (0.0, 10.0]"),
    ("toy_cosine", {"zoom": 2}, "unknown parameter(s) ['zoom'] for method 'toy_cosine'; accepted: ['scale']"),
    ("toy_embedding_dot", {"weight": 2.5}, "params['weight']: weight 2.5 is out of range; accepted: [-2.0, 2.0]"),
    ("", {"scale": 2.0}, "unknown parameter(s) ['scale'] for method 'similarity_map'; accepted: []"),
    ("nope", {}, "method: unknown method 'nope'; accepted embedding methods for model 'emb': "
                 "['similarity_map', 'toy_cosine', 'toy_embedding_dot']"),
    ("gradcam", {}, "method: method 'gradcam' is a classifier method; accepted embedding methods for model 'emb': "
                    "['similarity_map', 'toy_cosine', 'toy_embedding_dot']"),
])
def test_bad_method_or_parameter_is_invalid_argument(stub, pair, method, params, text):
    q, r = pair
    with pytest.raises(grpc.RpcError) as err:
        stub.SimilarityMap(request(q[:1], r[:1], method, params), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert text in err.value.details()


def test_typed_http_and_client_carry_method_and_params(server, exported, pair):
    from serving.client import ExplanationClient

    q, r = pair
    want = cosine_in_process(exported[1], q, r, 3.0)
    body = json.dumps({"model": {"name": EMB}, "method": "toy_cosine", "params": {"scale": {"float_value": 3}},
                       "query": {"tensor": json.loads(_tensor_json(q))},
                       "reference": {"tensor": json.loads(_tensor_json(r))}}).encode()
    req = urllib.request.Request(server.rest_url + "/v1/similarity", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        out = json.loads(resp.read())
    assert out["method"] == "toy_cosine" and out["params"] == {"scale": {"float_value": 3.0}}
    with urllib.request.urlopen(server.rest_url + f"/v1/models?name={EMB}", timeout=60) as resp:
        listed = {m["name"]: m for m in json.loads(resp.read())["models"][0]["methods"]}
    scale = listed["toy_cosine"]["param_schema"]["properties"]["scale"]
    assert (scale["type"], scale["default"], scale["exclusiveMinimum"], scale["maximum"]) == ("number", 1.0, 0.0, 10.0)
    assert "readOnly" not in scale
    from google.protobuf import json_format

    got = convert.to_ndarray(json_format.ParseDict(out["query_map"], pb.SimilarityMapResponse().query_map), "query_map")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    with ExplanationClient(server.address, timeout=60) as client:
        res = client.similarity_map(EMB, q, r, method="toy_cosine", params={"scale": 3.0})
        assert res.method == "toy_cosine" and res.params == {"scale": 3.0}
        np.testing.assert_allclose(res.query_map, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res.outputs["agreement"], (want > 0).mean(axis=(1, 2)), atol=1e-6)
        default = client.similarity_map(EMB, q, r)  # the old call
        assert default.method == "similarity_map" and "topk_share" in default.outputs
        np.testing.assert_allclose(default.query_map.sum(axis=(1, 2)), default.similarity, atol=1e-5)
        info = next(m for m in client.list_models() if m.name == EMB)
        assert [p["name"] for p in info.method_parameters["toy_cosine"]] == ["scale"]


def _tensor_json(x: np.ndarray) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(convert.to_tensor(x))
