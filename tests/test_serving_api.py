"""The gRPC service against a real server on 127.0.0.1:0: both APIs, parity, errors, health, batching.

Models: a tiny UNTRAINED VGG11 classifier (64 px, 3 classes; value checks need no training) with
the gradcam and saliency signatures, and a tiny embedding network with similarity_map, exported
once per session by :func:`exported_models` (also used by the other test_serving_* files).

* parity: every RPC of both APIs returns the numbers of the in-process functions (the registry
  methods on the Keras model, and the iterative methods on the SavedModel backend);
* a stock ``tensorflow_serving.apis`` PredictionServiceStub gets predictions and Grad-CAM;
* an error matrix: status code *and* a message naming the problem, and the server still answers;
* health and reflection list the services; GetModelStatus reports AVAILABLE;
* micro-batching merges concurrent requests (response field and metrics);
* a short deadline stops an occlusion with DEADLINE_EXCEEDED and frees the server.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import convert  # noqa: E402
from serving.metrics import parse_text  # noqa: E402
from serving.protos.explain.v1 import explain_pb2 as pb  # noqa: E402
from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc  # noqa: E402

SIZE = 64
CLASSES = ["alpha", "beta", "gamma"]
CLF, EMB = "clf", "emb"


# ---------------------------------------------------------------------------- shared exports
@dataclass
class Exported:
    root: Path
    classifier: Any  # keras.Model
    embedding: Any  # keras.Model


_EXPORTED: Exported | None = None


def exported_models(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Export the two tiny models once per session (the other test_serving_* files copy the root)."""
    global _EXPORTED
    if _EXPORTED is None:
        export = pytest.importorskip("models.export")
        import keras

        from models.architectures import build_classifier, build_embedding

        root = tmp_path_factory.mktemp("serving_models")
        keras.utils.set_random_seed(0)
        clf = build_classifier("vgg11", SIZE, len(CLASSES), 0.0625)
        export.export_classifier(clf, root / CLF, class_names=CLASSES, methods=["gradcam", "saliency"])
        emb = build_embedding("avg", SIZE, embedding_dim=8, width=0.0625)
        export.export_embedding(emb, root / EMB)
        _EXPORTED = Exported(root, clf, emb)
    return _EXPORTED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensor(x: Any) -> Any:
    return convert.to_tensor(np.asarray(x))


def array(t: Any) -> np.ndarray:
    return convert.to_ndarray(t, "test")


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return exported_models(tmp_path_factory)


@pytest.fixture(scope="module")
def server(models):
    from serving.server import start_server

    with start_server(
        models.root, port=0, file_system_poll_wait_seconds=0, warmup="default",
        max_batch_size=8, batch_timeout_micros=30_000, max_message_bytes=4 * 2**20, max_image_side=256,
        version_labels=[f"{CLF}:stable=1", f"{CLF}:future=7"], metrics_port=free_port(),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    ch = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 16 * 2**20)])
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def explain_stub(channel):
    return pb_grpc.ExplanationServiceStub(channel)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def saved_backend(models):
    from explain.backend import SavedModelBackend

    return SavedModelBackend(tf.saved_model.load(str(models.root / CLF / "1")))


def predict_request(name: str, signature: str = "", **inputs: Any) -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tensor(v))
    return req


def explain_request(images: np.ndarray, method: str, model: str = CLF, **kw: Any) -> pb.ExplainRequest:
    params = kw.pop("params", {})
    req = pb.ExplainRequest(model=pb.ModelRef(name=model), method=method,
                            images=pb.ImageBatch(tensor=tensor(images)), **kw)
    for k, v in params.items():
        req.params[k].CopyFrom(convert.python_to_param(v))
    return req


def in_process(method: str, model: Any, x: np.ndarray, **inputs: Any) -> dict[str, np.ndarray]:
    from explain import registry
    from explain.view import ModelView

    out = registry.get(method).fn(ModelView(model), tf.constant(x, tf.float32) / 255.0, **inputs)
    return {k: np.asarray(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- parity
def test_predict_equals_keras_model(predict_stub, models, images):
    r = predict_stub.Predict(predict_request(CLF, images=images), timeout=60)
    expected = models.classifier(images.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(array(r.outputs["probabilities"]), expected, atol=1e-5)
    assert r.model_spec.name == CLF and r.model_spec.version.value == 1
    assert r.model_spec.signature_name == "serving_default"


def test_stock_tf_serving_stub_gets_predictions_and_gradcam(server, models, images):
    """An unmodified tensorflow_serving client: tf.make_tensor_proto in, tf.make_ndarray out."""
    with grpc.insecure_channel(server.address) as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = CLF
        req.model_spec.signature_name = "gradcam"
        req.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        req.inputs["class_index"].CopyFrom(tf.make_tensor_proto(np.array([-1, 0, 2], np.int32)))
        req.output_filter.extend(["heatmap_upsampled", "class_index", "probabilities"])
        r = stub.Predict(req, timeout=60)
    assert sorted(r.outputs) == ["class_index", "heatmap_upsampled", "probabilities"]
    want = in_process("gradcam", models.classifier, images, class_index=tf.constant([-1, 0, 2]))
    np.testing.assert_allclose(tf.make_ndarray(r.outputs["heatmap_upsampled"]), want["heatmap_upsampled"], atol=1e-5)
    np.testing.assert_array_equal(tf.make_ndarray(r.outputs["class_index"]), want["class_index"])
    assert tf.make_ndarray(r.outputs["class_index"])[1:].tolist() == [0, 2]


def test_explain_single_pass_equals_in_process(explain_stub, models, images):
    r = explain_stub.Explain(explain_request(images, "gradcam", class_index=[1]), timeout=60)
    want = in_process("gradcam", models.classifier, images, class_index=tf.constant([1, 1, 1]))
    np.testing.assert_allclose(array(r.heatmap), want["heatmap_upsampled"], atol=1e-5)
    np.testing.assert_allclose(array(r.heatmap_lowres), want["heatmap"], atol=1e-5)
    np.testing.assert_allclose(array(r.raw), want["raw"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(array(r.probabilities), want["probabilities"], atol=1e-5)
    assert array(r.class_index).tolist() == [1, 1, 1] and array(r.image_index).tolist() == [0, 1, 2]
    assert (r.model_name, r.model_version, r.method) == (CLF, 1, "gradcam")
    assert r.params["target_layer"].string_value == models_target_layer(models)
    assert r.timing.elapsed_ms > 0 and r.batch_size >= 3

    r = explain_stub.Explain(explain_request(images, "saliency", params={"dilations": 2}, rho=0.1), timeout=60)
    want = in_process("saliency", models.classifier, images, class_index=tf.constant([-1, -1, -1]), dilations=tf.constant(2))
    np.testing.assert_allclose(array(r.heatmap), want["heatmap_upsampled"], atol=1e-5)
    assert r.params["dilations"].int_value == 2 and r.params["rho"].float_value == pytest.approx(0.1)
    from explain import masks

    np.testing.assert_array_equal(array(r.mask), masks.top_rho(array(r.heatmap), 0.1))


def models_target_layer(models: Exported) -> str:
    from explain.view import ModelView

    return ModelView(models.classifier).target_layer


def test_explain_top_k(explain_stub, models, images):
    r = explain_stub.Explain(explain_request(images[:2], "gradcam", top_k=2), timeout=60)
    probs = models.classifier(images[:2].astype(np.float32) / 255.0).numpy()
    order = np.argsort(-probs, axis=1)[:, :2].reshape(-1)
    assert array(r.class_index).tolist() == order.tolist()
    assert array(r.image_index).tolist() == [0, 0, 1, 1]
    want = in_process("gradcam", models.classifier, images[[0, 0, 1, 1]], class_index=tf.constant(order, tf.int32))
    np.testing.assert_allclose(array(r.heatmap), want["heatmap_upsampled"], atol=1e-5)


@pytest.mark.parametrize("method, params", [
    ("occlusion", {"patch_size_at_224": 50, "batch_size": 16}),
    ("scorecam", {"batch_size": 8}),
    ("perturbation_mask", {"iterations": 3, "seed": 1}),
    ("perturbation_mask", {"iterations": 3, "score": "log_odds", "perturbation": "constant", "l1_coeff": 10.0}),
])
def test_explain_iterative_equals_in_process(explain_stub, saved_backend, models, images, method, params):
    from explain import registry
    from explain.backend import KerasBackend
    from explain.view import ModelView

    r = explain_stub.Explain(explain_request(images[:2], method, class_index=[0, 2],
                                             params={k: v for k, v in params.items()}), timeout=120)
    fn = registry.get(method).fn
    x = images[:2].astype(np.float32) / 255.0
    want = fn(saved_backend, x, class_index=np.array([0, 2]), **params)
    np.testing.assert_allclose(array(r.heatmap), want["heatmap"], atol=1e-6)
    np.testing.assert_array_equal(array(r.class_index), [0, 2])
    for k, v in params.items():
        assert convert.param_to_python(r.params[k], k) == v
    if method == "occlusion":  # also the Keras model in-process (float inputs, same numbers)
        keras_out = fn(KerasBackend(ModelView(models.classifier)), x, class_index=np.array([0, 2]), **params)
        np.testing.assert_allclose(array(r.heatmap), keras_out["heatmap"], atol=1e-4)
        assert "occluded_probabilities" in r.outputs


def test_similarity_map_equals_in_process(explain_stub, models, images):
    q, ref = images[:2], images[1:3]
    region = np.zeros((SIZE, SIZE), bool)
    region[: SIZE // 2] = True
    req = pb.SimilarityMapRequest(model=pb.ModelRef(name=EMB), query=pb.ImageBatch(tensor=tensor(q)),
                                  reference=pb.ImageBatch(encoded=pb.EncodedImages(data=convert.encode_png(ref))),
                                  region=tensor(region))
    r = explain_stub.SimilarityMap(req, timeout=60)
    from explain import registry
    from explain.view import ModelView

    want = registry.get("similarity_map").fn(ModelView(models.embedding), query_images=tf.constant(q, tf.float32) / 255.0,
                                             reference_images=tf.constant(ref, tf.float32) / 255.0)
    np.testing.assert_allclose(array(r.query_map), np.asarray(want["query_map"]), atol=1e-5)
    np.testing.assert_allclose(array(r.similarity), np.asarray(want["similarity"]), atol=1e-5)
    np.testing.assert_allclose(array(r.query_map).sum(axis=(1, 2)), array(r.similarity), atol=1e-4)  # seed 002 check
    qmap = array(r.query_map)
    h = qmap.shape[1]
    np.testing.assert_allclose(array(r.region_score), qmap[:, : h // 2].sum(axis=(1, 2)), atol=1e-5)


def test_importance_mask_equals_in_process(explain_stub, models, images):
    from explain import masks

    req = pb.ImportanceMaskRequest(model=pb.ModelRef(name=CLF), images=pb.ImageBatch(tensor=tensor(images)),
                                   methods=["gradcam", "saliency"], rho=0.25, dilations=2)
    r = explain_stub.ImportanceMask(req, timeout=60)
    probs = models.classifier(images.astype(np.float32) / 255.0).numpy()
    ci = tf.constant(np.argmax(probs, axis=1), tf.int32)
    heat = {m: masks.dilate_heatmap(in_process(m, models.classifier, images, class_index=ci)["heatmap_upsampled"], 2)
            for m in ("gradcam", "saliency")}
    want = masks.intersect(*(masks.top_rho(h, 0.25) for h in heat.values()))
    for m in heat:
        np.testing.assert_allclose(array(r.heatmaps[m]), heat[m], atol=1e-5)
    np.testing.assert_array_equal(array(r.mask), want)
    assert array(r.class_index).tolist() == ci.numpy().tolist()
    assert r.params["mask"].params["dilations"].int_value == 2


def test_importance_mask_with_the_optimised_mask(explain_stub, saved_backend, images):
    """θ-threshold of Grad-CAM ∩ the optimised perturbation mask (seed 004), one class for both."""
    from explain import masks, registry

    req = pb.ImportanceMaskRequest(model=pb.ModelRef(name=CLF), images=pb.ImageBatch(tensor=tensor(images[:2])),
                                   methods=["gradcam", "perturbation_mask"], class_index=[1], theta=0.5)
    req.method_params["perturbation_mask"].params["iterations"].int_value = 2
    r = explain_stub.ImportanceMask(req, timeout=120)
    pert = registry.get("perturbation_mask").fn(saved_backend, images[:2].astype(np.float32) / 255.0,
                                                class_index=np.array([1, 1]), iterations=2)
    np.testing.assert_allclose(array(r.heatmaps["perturbation_mask"]), pert["heatmap"], atol=1e-6)
    want = masks.intersect(masks.threshold(array(r.heatmaps["gradcam"]), 0.5), masks.threshold(pert["heatmap"], 0.5))
    np.testing.assert_array_equal(array(r.mask), want)
    assert r.params["perturbation_mask"].params["iterations"].int_value == 2
    assert r.params["mask"].params["theta"].float_value == 0.5


def test_list_models_and_metadata(explain_stub, predict_stub, models):
    r = explain_stub.ListModels(pb.ListModelsRequest(), timeout=30)
    by_name = {m.name: m for m in r.models}
    assert sorted(by_name) == [CLF, EMB]
    clf = by_name[CLF]
    assert list(clf.class_names) == CLASSES and list(clf.input_size) == [SIZE, SIZE, 3] and clf.kind == "classifier"
    assert dict(clf.labels) == {"stable": 1, "future": 7} and clf.version == 1
    methods = {m.name: m for m in clf.methods}
    assert {"gradcam", "saliency", "occlusion", "scorecam", "perturbation_mask"} <= set(methods)
    assert methods["gradcam"].in_graph and not methods["occlusion"].in_graph
    assert methods["occlusion"].params["patch_size_at_224"].int_value == 10
    assert [m.name for m in by_name[EMB].methods] == ["similarity_map"]
    md = predict_stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": CLF}, metadata_field=["signature_def"]), timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    md.metadata["signature_def"].Unpack(sig_map)
    assert {"serving_default", "gradcam", "saliency", "features"} <= set(sig_map.signature_def)
    assert set(sig_map.signature_def["gradcam"].inputs) == {"images", "class_index"}


# ---------------------------------------------------------------------------- health, reflection, status
def test_health_reflection_and_status(channel):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "explain.v1.ExplanationService", "tensorflow.serving.PredictionService",
                    "tensorflow.serving.ModelService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = list(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="explain.v1.ExplanationService"),
    ]), timeout=10))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"explain.v1.ExplanationService", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService",
            "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the .proto is discoverable
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": CLF}), timeout=10)
    (v,) = status.model_version_status
    assert v.version == 1 and v.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE and v.status.error_code == 0


# ---------------------------------------------------------------------------- error matrix
C = grpc.StatusCode


def _bad_predict(images):
    return {
        "shape": (predict_request(CLF, images=images[:, :32, :32]), C.INVALID_ARGUMENT, "shape [3, 32, 32, 3] is not accepted; signature 'serving_default' of model 'clf' expects [-1, 64, 64, 3]"),
        "dtype": (predict_request(CLF, images=images.astype(np.float32)), C.INVALID_ARGUMENT, "dtype float32 is not accepted"),
        "nan": (predict_request(CLF, "predict_float", images=np.full((1, SIZE, SIZE, 3), np.nan, np.float32)),
                C.INVALID_ARGUMENT, "NaN"),
        "class_index": (predict_request(CLF, "gradcam", images=images, class_index=np.array([0, 7, 1], np.int32)),
                        C.INVALID_ARGUMENT, "class_index 7 is out of range for model 'clf' with 3 classes"),
        "missing input": (predict_request(CLF, "gradcam", images=images), C.INVALID_ARGUMENT, "missing input(s) ['class_index']"),
        "unknown signature": (predict_request(CLF, "nope", images=images), C.INVALID_ARGUMENT, "signature 'nope' not found"),
        "method signature on the wrong model": (predict_request(CLF, "similarity_map", images=images),
                                                C.FAILED_PRECONDITION, "method 'similarity_map' is not available for model 'clf'"),
        "path traversal": (predict_request("../etc", images=images), C.INVALID_ARGUMENT, "model name '../etc' is invalid"),
        "unknown model": (predict_request("nope", images=images), C.NOT_FOUND, "model 'nope' not found"),
        "too large": (predict_request(CLF, images=np.zeros((400, SIZE, SIZE, 3), np.uint8)), C.RESOURCE_EXHAUSTED, "larger than max"),
    }


def _bad_explain(images):
    png = convert.encode_png(np.zeros((1, 300, 300, 3), np.uint8))
    big = pb.ExplainRequest(model=pb.ModelRef(name=CLF), method="gradcam",
                            images=pb.ImageBatch(encoded=pb.EncodedImages(data=png), resize=True))
    garbage = pb.ExplainRequest(model=pb.ModelRef(name=CLF), method="gradcam",
                                images=pb.ImageBatch(encoded=pb.EncodedImages(data=[b"not an image"])))
    return {
        "unknown method": (explain_request(images, "magic"), C.INVALID_ARGUMENT, "unknown method 'magic'"),
        "method for embeddings": (explain_request(images, "similarity_map"), C.FAILED_PRECONDITION,
                                  "method 'similarity_map' is not available for model 'clf'"),
        "unknown param": (explain_request(images, "occlusion", params={"foo": 1}), C.INVALID_ARGUMENT,
                          "unknown parameter(s) ['foo'] for method 'occlusion'"),
        "param type": (explain_request(images, "perturbation_mask", params={"iterations": "x"}), C.INVALID_ARGUMENT,
                       "params['iterations']: iterations 'x' must be an integer; accepted: >= 0"),
        "param type declared": (explain_request(images, "occlusion", params={"stride": "x"}), C.INVALID_ARGUMENT,
                                             "params['stride']: stride 'x' must be an integer; accepted: >= 1"),
        "param value": (explain_request(images, "occlusion", params={"stride": 0}), C.INVALID_ARGUMENT, "stride 0"),
        "param choice": (explain_request(images, "perturbation_mask", params={"score": "prob"}), C.INVALID_ARGUMENT,
                         "params['score']: score 'prob' is not supported; accepted: ['probability', 'log_odds']"),
        "class index": (explain_request(images, "gradcam", class_index=[3]), C.INVALID_ARGUMENT,
                        "class_index: class_index 3 is out of range for model 'clf' with 3 classes"),
        "class index count": (explain_request(images, "gradcam", class_index=[0, 1]), C.INVALID_ARGUMENT,
                              "2 class indices for 3 images"),
        "theta and rho": (explain_request(images, "gradcam", theta=0.5, rho=0.1), C.INVALID_ARGUMENT, "theta or rho, not both"),
        "rho range": (explain_request(images, "gradcam", rho=1.5), C.INVALID_ARGUMENT, "rho must be in (0, 1]"),
        "top_k range": (explain_request(images, "gradcam", top_k=9), C.INVALID_ARGUMENT, "top_k 9 is out of range"),
        "target layer": (explain_request(images, "gradcam", target_layer="block1_conv1"), C.INVALID_ARGUMENT,
                         "target layer 'block1_conv1' is not available"),
        "float range": (explain_request(images.astype(np.float32), "gradcam"), C.INVALID_ARGUMENT, "float images must be in [0, 1]"),
        "no images": (pb.ExplainRequest(model=pb.ModelRef(name=CLF), method="gradcam"), C.INVALID_ARGUMENT, "images: no images"),
        "undecodable": (garbage, C.INVALID_ARGUMENT, "cannot decode the image"),
        "image side": (big, C.INVALID_ARGUMENT, "image size 300x300 exceeds the server limit of 256"),
        "version": (pb.ExplainRequest(model=pb.ModelRef(name=CLF, version=99), method="gradcam",
                                      images=pb.ImageBatch(tensor=tensor(images))), C.NOT_FOUND,
                    "version 99 of model 'clf' is not available; available versions: [1]"),
        "label": (pb.ExplainRequest(model=pb.ModelRef(name=CLF, label="canary"), method="gradcam",
                                    images=pb.ImageBatch(tensor=tensor(images))), C.NOT_FOUND,
                  "model 'clf' has no version label 'canary'"),
        "label of an absent version": (pb.ExplainRequest(model=pb.ModelRef(name=CLF, label="future"), method="gradcam",
                                                         images=pb.ImageBatch(tensor=tensor(images))), C.NOT_FOUND,
                                       "version 7 (label 'future') of model 'clf' is not available"),
    }


def _bad_other(images):
    sim_on_clf = pb.SimilarityMapRequest(model=pb.ModelRef(name=CLF), query=pb.ImageBatch(tensor=tensor(images)),
                                         reference=pb.ImageBatch(tensor=tensor(images)))
    sim_count = pb.SimilarityMapRequest(model=pb.ModelRef(name=EMB), query=pb.ImageBatch(tensor=tensor(images)),
                                        reference=pb.ImageBatch(tensor=tensor(images[:2])))
    mask_none = pb.ImportanceMaskRequest(model=pb.ModelRef(name=CLF), images=pb.ImageBatch(tensor=tensor(images)),
                                         methods=["gradcam"])
    mask_on_emb = pb.ImportanceMaskRequest(model=pb.ModelRef(name=EMB), images=pb.ImageBatch(tensor=tensor(images)),
                                           methods=["gradcam"], theta=0.5)
    return {
        "similarity on a classifier": ("SimilarityMap", sim_on_clf, C.FAILED_PRECONDITION,
                                       "similarity maps need an embedding model"),
        "similarity counts": ("SimilarityMap", sim_count, C.INVALID_ARGUMENT, "2 reference images for 3 query images"),
        "mask without theta/rho": ("ImportanceMask", mask_none, C.INVALID_ARGUMENT, "exactly one of theta"),
        "mask on an embedding": ("ImportanceMask", mask_on_emb, C.FAILED_PRECONDITION, "importance masks need a classifier"),
    }


def _check(call, request, code, text, problems=None):
    try:
        call(request, timeout=60)
    except grpc.RpcError as err:
        got = (err.code(), err.details())
        if got[0] == code and text in got[1]:
            return
    else:
        got = ("OK", "")
    problem = f"expected {code.name} with {text!r}; got {got}"
    if problems is None:
        raise AssertionError(problem)
    problems.append(problem)


def test_error_matrix(channel, predict_stub, explain_stub, images):
    from tensorflow_serving.apis import classification_pb2

    problems: list[str] = []
    for name, (req, code, text) in _bad_predict(images).items():
        _check(predict_stub.Predict, req, code, text, problems)
    for name, (req, code, text) in _bad_explain(images).items():
        _check(explain_stub.Explain, req, code, text, problems)
    for name, (rpc, req, code, text) in _bad_other(images).items():
        _check(getattr(explain_stub, rpc), req, code, text, problems)
    _check(predict_stub.Classify, classification_pb2.ClassificationRequest(), C.UNIMPLEMENTED, "Classify", problems)
    _check(predict_stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": CLF}, metadata_field=["nope"]), C.INVALID_ARGUMENT,
        "metadata field(s) ['nope'] not supported", problems)
    _check(model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus,
           get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "ghost"}), C.NOT_FOUND,
           "model 'ghost' not found", problems)
    assert not problems, "\n".join(problems)
    # the server still answers
    r = predict_stub.Predict(predict_request(CLF, images=images), timeout=60)
    assert array(r.outputs["probabilities"]).shape == (3, 3)


# ---------------------------------------------------------------------------- batching, deadline, metrics
def test_micro_batching_merges_concurrent_requests(server, explain_stub, images):
    sizes: list[int] = []
    for _ in range(3):  # the merge is timing-based; three rounds make a miss vanishingly unlikely
        barrier = threading.Barrier(6)
        results: list[Any] = []

        def one(i):
            barrier.wait()
            results.append(explain_stub.Explain(explain_request(images[i % 3: i % 3 + 1], "gradcam"), timeout=60))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sizes = [r.batch_size for r in results]
        if max(sizes) > 1:
            break
    assert max(sizes) > 1, sizes
    hist = server.metrics.batch_size.counts_by_value(CLF, "gradcam")
    assert any(bound > 1 for bound in hist), hist
    assert server.metrics.batch_requests.counts_by_value(CLF, "gradcam")


def test_deadline_stops_occlusion_and_frees_the_server(server, explain_stub, images):
    req = explain_request(images[:1], "occlusion", params={"patch_size_at_224": 10, "stride": 1, "batch_size": 16})
    start = time.perf_counter()
    with pytest.raises(grpc.RpcError) as err:
        explain_stub.Explain(req, timeout=0.5)
    assert err.value.code() == C.DEADLINE_EXCEEDED
    # the server side stops too: its log/metrics record DEADLINE_EXCEEDED shortly after the deadline
    key = 'explain_requests_total{rpc="Explain",model="clf",method="occlusion",code="DEADLINE_EXCEEDED"}'
    while time.perf_counter() - start < 5 and server.metrics.requests.value("Explain", CLF, "occlusion", "DEADLINE_EXCEEDED") < 1:
        time.sleep(0.05)
    assert time.perf_counter() - start < 3.0
    assert parse_text(server.metrics.render())[key] == 1
    t0 = time.perf_counter()
    r = explain_stub.Explain(explain_request(images[:1], "gradcam"), timeout=10)
    assert r.heatmap.tensor_shape.dim[1].size == SIZE and time.perf_counter() - t0 < 2.0


def test_metrics_endpoint(server):
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    parsed = parse_text(text)
    assert any(k.startswith('explain_requests_total{rpc="Predict",model="clf"') for k in parsed)
    assert any(k.startswith("explain_batch_size_bucket") for k in parsed)
    assert "# TYPE explain_request_latency_seconds histogram" in text
