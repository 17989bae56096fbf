"""SavedModels people already serve, without a model card: explanation metadata decides, nothing
is guessed.

Three foreign models written by the test: Keras 3's own ``model.export()`` (float 0–255 input,
``Rescaling`` inside), a ``tf.Module`` with a float ``[-1, 1]`` input, and a ``tf.Module`` with a
uint8 input. With metadata (written by ``python -m models describe``), the black-box and gradient
methods the service runs on them equal the same methods on the Keras model in process; without,
the float models' synthesising methods answer FAILED_PRECONDITION with the way to declare the
range, and ``serving_default`` still serves.
"""

from __future__ import annotations

import json
import shutil
import time

import grpc
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from models.metadata import METADATA_PATH, MetadataError, parse_metadata  # noqa: E402

SIZE = 24


def _body(seed: int) -> keras.Model:
    """A small classifier on [0, 1] inputs."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="predictions")(x))


def keras_export_model(root) -> keras.Model:
    """Keras 3 ``model.export()``: float input in 0–255, Rescaling inside."""
    body = _body(1)
    inp = keras.Input((SIZE, SIZE, 3), name="pixels")
    model = keras.Model(inp, body(keras.layers.Rescaling(1 / 255.0, name="scale")(inp)), name="keras_export")
    model.export(str(root / "kexport" / "1"), format="tf_saved_model", verbose=False)
    return model


class _Module(tf.Module):
    def __init__(self, body: keras.Model, dtype: tf.DType, scale: float, offset: float) -> None:
        super().__init__()
        self.body, self.scale, self.offset = body, scale, offset
        self.vars = list(body.weights)
        spec = tf.TensorSpec([None, SIZE, SIZE, 3], dtype, name="x")

        @tf.function(input_signature=[spec])
        def serve(x):
            u = (tf.cast(x, tf.float32) - self.offset) / self.scale  # back to [0, 1]
            return {"scores": self.body(u)}

        self.serve = serve


def module_model(root, name: str, dtype: tf.DType, scale: float, offset: float) -> keras.Model:
    body = _body(2 if dtype == tf.uint8 else 3)
    module = _Module(body, dtype, scale, offset)
    tf.saved_model.save(module, str(root / name / "1"), signatures={"serving_default": module.serve})
    return body


class _CustomModule(tf.Module):
    """A ``[-1, 1]`` float input, a signature called ``classify`` (no ``serving_default``) that
    returns the scores and the target layer's activations."""

    def __init__(self, body: keras.Model) -> None:
        super().__init__()
        self.both = keras.Model(body.input, [body.get_layer("conv2").output, body.output])
        self.vars = list(body.weights)

        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32, name="image")])
        def classify(image):
            activations, scores = self.both((image + 1.0) / 2.0)
            return {"scores": scores, "activations": activations}

        self.classify = classify


def custom_model(root) -> keras.Model:
    body = _body(4)
    module = _CustomModule(body)
    tf.saved_model.save(module, str(root / "custom" / "1"), signatures={"classify": module.classify})
    return body


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    kmodel = keras_export_model(root)
    signed = module_model(root, "signed", tf.float32, scale=2.0, offset=-1.0)  # input in [-1, 1]
    pixels = module_model(root, "pixels", tf.uint8, scale=255.0, offset=0.0)
    custom = custom_model(root)
    return root, {"kexport": kmodel, "signed": signed, "pixels": pixels, "custom": custom}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)


def _in_process_occlusion(model: keras.Model, images: np.ndarray, preprocessing: str, fill: float = 0.5) -> np.ndarray:
    from explain.backend import KerasBackend
    from explain.occlusion import occlusion
    from explain.view import ModelView

    backend = KerasBackend(ModelView(model, preprocessing=preprocessing))
    return occlusion(backend, images.astype(np.float32) / 255.0, class_index=0, patch_size_at_224=60, stride=4,
                     fill=fill)["heatmap"]


def _describe(path, *extra: str) -> int:
    from models.__main__ import main

    return main(["describe", str(path), *extra])


def test_without_metadata_floats_are_refused_and_uint8_works(foreign, images):
    from serving.client import ExplanationClient, ServiceError
    from serving.server import start_server

    root, models = foreign
    with start_server(root, port=0, file_system_poll_wait_seconds=0) as running, ExplanationClient(running.address) as c:
        for name in ("kexport", "signed"):
            with pytest.raises(ServiceError) as err:
                c.explain(name, "occlusion", images, class_index=0)
            assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "no declared value range" in err.value.message
            assert f"python -m models describe {root / name} --input-range MIN,MAX" in err.value.message
        # serving_default still serves the float models (the caller sends the model's own scale).
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        with grpc.insecure_channel(running.address) as ch:
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "kexport"
            key = next(iter(tf.saved_model.load(str(root / "kexport" / "1")).signatures["serving_default"]
                            .structured_input_signature[1]))
            req.inputs[key].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))
            out = prediction_service_pb2_grpc.PredictionServiceStub(ch).Predict(req, timeout=60)
            got = tf.make_ndarray(next(iter(out.outputs.values())))
        np.testing.assert_allclose(got, models["kexport"](images.astype(np.float32)).numpy(), atol=1e-5)
        # A uint8 input is pixels: occlusion works without metadata and equals the in-process map.
        # (a grey that uint8 represents exactly, so quantising the occluded images changes nothing)
        occ = c.explain("pixels", "occlusion", images, class_index=0, patch_size_at_224=60, stride=4, fill=128 / 255)
    ref = _in_process_occlusion(models["pixels"], images, "unit", fill=128 / 255)
    np.testing.assert_allclose(occ.heatmap, ref, atol=1e-4)


def test_with_metadata_methods_equal_in_process(foreign, images, tmp_path):
    from serving.client import ExplanationClient
    from serving.server import start_server

    src, models = foreign
    root = tmp_path / "root"
    shutil.copytree(src, root)
    assert _describe(root / "kexport", "--input-range", "0,255", "--class-names", "a,b,c") == 0
    assert _describe(root / "signed", "--input-range=-1,1") == 0
    md = json.loads((root / "kexport" / "1" / METADATA_PATH).read_text())
    assert md["inputs"]["image"]["featureValueDomain"] == {"minValue": 0.0, "maxValue": 255.0}
    # kexport is 0-255 with Rescaling inside ("raw"); signed takes [-1, 1] = "tf" on [0, 1] pixels.
    want = {"kexport": (models["kexport"], "raw"), "signed": (_signed_keras(models["signed"]), "unit")}
    with start_server(root, port=0, file_system_poll_wait_seconds=0) as running, ExplanationClient(running.address) as c:
        assert c.model_info("kexport").class_names == ["a", "b", "c"]
        for name, (model, prep) in want.items():
            occ = c.explain(name, "occlusion", images, class_index=0, patch_size_at_224=60, stride=4)
            ref = _in_process_occlusion(model, images, prep)
            assert float(np.ptp(ref)) > 0
            np.testing.assert_allclose(occ.heatmap, ref, atol=1e-4, err_msg=name)
            # A gradient method on the differentiable float signature.
            mask = c.explain(name, "perturbation_mask", images[:1], class_index=0, iterations=5)
            ref_mask = _in_process_mask(model, images[:1], prep)
            np.testing.assert_allclose(mask.heatmap, ref_mask, atol=1e-3, err_msg=name)
            # A black-box method with seeded masks: the same masks in the service and in process.
            rise = c.explain(name, "rise", images, class_index=0, n_masks=64, grid=4, seed=5)
            ref_rise = _in_process_backend(model, prep, "rise", images, n_masks=64, grid=4, seed=5)
            assert float(np.ptp(ref_rise)) > 0
            np.testing.assert_allclose(rise.heatmap, ref_rise, atol=1e-4, err_msg=name)


def _signed_keras(body: keras.Model) -> keras.Model:
    """The 'signed' module as a Keras model on [0, 1]: it maps [-1, 1] back to [0, 1] itself."""
    return body


def _in_process_backend(model: keras.Model, preprocessing: str, method: str, images: np.ndarray,
                        target_layer: str | None = None, **params) -> np.ndarray:
    from explain import registry
    from explain.backend import KerasBackend
    from explain.view import ModelView

    backend = KerasBackend(ModelView(model, preprocessing=preprocessing, target_layer=target_layer))
    return registry.get(method).fn(backend, images.astype(np.float32) / 255.0, class_index=0, **params)["heatmap"]


def _in_process_mask(model: keras.Model, images: np.ndarray, preprocessing: str) -> np.ndarray:
    from explain.backend import KerasBackend
    from explain.perturbation import perturbation_mask
    from explain.view import ModelView

    backend = KerasBackend(ModelView(model, preprocessing=preprocessing))
    return perturbation_mask(backend, images.astype(np.float32) / 255.0, class_index=0, iterations=5)["heatmap"]


def test_describe_errors_name_the_value(foreign, capsys):
    root, _ = foreign
    cases = [
        (["--input-range", "255,0"], "--input-range '255,0': MIN must be below MAX"),
        ([], "input 'pixels' is float32: give --input-range MIN,MAX"),
        (["--input-range", "0,255", "--class-names", "a,b"], "--class-names has 2 names; output 'output_0' has 3 classes"),
        (["--input-range", "0,255", "--output-tensor", "logits"], "--output-tensor 'logits' is not in the signature; accepted: ['output_0']"),
        (["--input-range", "0,255", "--version", "9"], "--version 9 does not exist"),
    ]
    for extra, message in cases:
        assert _describe(root / "kexport", *extra) == 2
        assert message in capsys.readouterr().err
    assert not (root / "kexport" / "1" / METADATA_PATH).exists()


def test_describe_names_a_custom_signature_and_its_activation_output(foreign, capsys):
    """``--signature`` and ``--activation-output`` are checked against the SavedModel and written."""
    root, _ = foreign
    assert _describe(root / "custom", "--input-range=-1,1", "--signature", "serving_default") == 2
    err = capsys.readouterr().err
    assert "--signature 'serving_default' is not in" in err and "accepted: ['classify']" in err
    assert _describe(root / "custom", "--input-range=-1,1", "--signature", "classify",
                     "--output-tensor", "scores", "--activation-output", "nope") == 2
    assert "--activation-output 'nope' is not in the signature; accepted: ['activations', 'scores']" in capsys.readouterr().err
    assert _describe(root / "custom", "--input-range=-1,1", "--signature", "classify", "--output-tensor", "scores",
                     "--activation-output", "activations", "--class-names", "x,y,z") == 0
    doc = json.loads((root / "custom" / "1" / METADATA_PATH).read_text())
    assert doc["cnnExplain"] == {"activationOutputName": "activations", "signatureName": "classify"}
    assert doc["outputs"]["scores"]["outputTensorName"] == "scores"
    (root / "custom" / "1" / METADATA_PATH).unlink()  # the module's other tests use their own metadata


VERTEX_EXAMPLE = {  # the shape of Vertex AI's ExplanationMetadata reference, image input
    "inputs": {
        "image": {
            "inputTensorName": "pixels",
            "modality": "image",
            "inputBaselines": [0],
            "featureValueDomain": {"minValue": 0, "maxValue": 255},
            "visualization": {
                "type": "Pixels", "polarity": "positive", "clipPercentUpperbound": 99.9,
                "clipPercentLowerbound": 70, "colorMap": "pink_green", "overlayType": "grayscale",
            },
        }
    },
    "outputs": {"probabilities": {"outputTensorName": "output_0", "indexDisplayNameMapping": ["a", "b", "c"]}},
    "framework": "tensorflow",
}


def test_vertex_file_is_read_unchanged_and_a_bad_one_names_the_field():
    md = parse_metadata(VERTEX_EXAMPLE)
    assert (md.input_tensor, md.output_tensor, md.input_range) == ("pixels", "output_0", (0.0, 255.0))
    assert md.visualization["polarity"] == "POSITIVE" and md.class_names == ["a", "b", "c"]
    bad = json.loads(json.dumps(VERTEX_EXAMPLE))
    bad["inputs"]["image"]["visualization"]["polarity"] = "up"
    with pytest.raises(MetadataError, match=r"inputs.image.visualization.polarity 'up' is not supported; accepted: \['POSITIVE'"):
        parse_metadata(bad)
    bad = json.loads(json.dumps(VERTEX_EXAMPLE))
    bad["inputs"]["image"]["inputTensorNmae"] = "x"
    with pytest.raises(MetadataError, match=r"inputs.image.inputTensorNmae is not a field of the explanation metadata"):
        parse_metadata(bad)
    bad = json.loads(json.dumps(VERTEX_EXAMPLE))
    del bad["outputs"]["probabilities"]["outputTensorName"]
    with pytest.raises(MetadataError, match=r"outputs.probabilities.outputTensorName is required"):
        parse_metadata(bad)


def test_malformed_file_still_serves_and_reload_picks_up_a_fix(foreign, images, tmp_path):
    from serving.client import ExplanationClient, ServiceError
    from serving.server import start_server

    src, models = foreign
    root = tmp_path / "root"
    shutil.copytree(src / "kexport", root / "kexport")
    path = root / "kexport" / "1" / METADATA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = json.loads(json.dumps(VERTEX_EXAMPLE))
    bad["inputs"]["image"]["featureValueDomain"] = {"minValue": 255, "maxValue": 0}
    path.write_text(json.dumps(bad))
    with start_server(root, port=0, file_system_poll_wait_seconds=0.2) as running, ExplanationClient(running.address) as c:
        with pytest.raises(ServiceError) as err:
            c.explain("kexport", "occlusion", images, class_index=0)
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "inputs.image.featureValueDomain minValue 255.0 must be below maxValue 0.0" in err.value.message
        path.write_text(json.dumps(VERTEX_EXAMPLE))  # fixed: the server reloads it like a new version
        deadline = time.time() + 60
        while True:
            try:
                occ = c.explain("kexport", "occlusion", images, class_index=0, patch_size_at_224=60, stride=4)
                break
            except ServiceError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
    np.testing.assert_allclose(occ.heatmap, _in_process_occlusion(models["kexport"], images, "raw"), atol=1e-4)


CAMS = ("gradcam", "gradcam_plus_plus", "layercam", "hirescam", "xgradcam", "eigencam")


def _in_process(method: str, model: keras.Model, images: np.ndarray, preprocessing: str, **params) -> dict:
    from explain import cam, integrated_gradients, saliency
    from explain.view import ModelView

    view = ModelView(model, preprocessing=preprocessing, target_layer="conv2" if method in CAMS else None)
    x = images.astype(np.float32) / 255.0
    if method == "saliency":
        return saliency.saliency(view, x, class_index=0)
    if method == "smoothgrad":
        return saliency.saliency(view, x, class_index=0, smooth_samples=params["smooth_samples"], seed=params["seed"])
    if method == "integrated_gradients":
        return integrated_gradients.integrated_gradients(view, x, class_index=0, **params)
    return getattr(cam, method)(view, x, class_index=0)


def _metadata_file(path, **kwargs):
    from models.metadata import make_metadata

    path.write_text(json.dumps(make_metadata(**kwargs)))
    return str(path)


@pytest.mark.slow  # about 70 s on 2 cores: four models loaded and frozen, IG at 64 steps run eagerly
def test_gradient_methods_and_gradcam_on_foreign_signatures_equal_in_process(foreign, images, tmp_path):
    """Saliency and Integrated Gradients on every differentiable foreign signature (a uint8 input:
    gradients w.r.t. the cast float), the Grad-CAM family where the metadata names an activation
    output, a custom signature name and a metadata path from the server config, all equal the
    same methods on the Keras models in process."""
    from serving.client import ExplanationClient
    from serving.server import start_server

    src, models = foreign
    root = tmp_path / "root"
    shutil.copytree(src, root)
    assert _describe(root / "kexport", "--input-range", "0,255") == 0
    assert _describe(root / "signed", "--input-range=-1,1") == 0
    config = {"custom": {"explanation_metadata": _metadata_file(
        tmp_path / "custom.json", input_tensor="image", output_tensor="scores", input_range=(-1, 1),
        activation_output="activations", signature="classify", class_names=["x", "y", "z"])}}
    want = {"kexport": (models["kexport"], "raw"), "signed": (models["signed"], "unit"),
            "pixels": (models["pixels"], "unit"), "custom": (models["custom"], "unit")}
    with start_server(root, port=0, file_system_poll_wait_seconds=0, models=config, rest_port=-1) as running, \
            ExplanationClient(running.address) as c:
        info = {m.name: m for m in c.list_models()}
        assert set(CAMS) <= set(info["custom"].methods) and info["custom"].class_names == ["x", "y", "z"]
        for name in ("kexport", "signed", "pixels"):
            assert {"saliency", "smoothgrad", "integrated_gradients", "xrai"} <= set(info[name].methods), name
            assert "activationOutputName" in info[name].methods_left_out["gradcam"], name
        assert "model's own layers" in info["kexport"].methods_left_out["guided_backprop"]
        for name, (model, prep) in want.items():
            sal = c.explain(name, "saliency", images, class_index=0)
            ref = _in_process("saliency", model, images, prep)
            assert float(np.ptp(ref["heatmap"])) > 0
            np.testing.assert_allclose(sal.heatmap, ref["heatmap"], atol=1e-4, err_msg=name)
            smooth = c.explain(name, "smoothgrad", images, class_index=0, smooth_samples=4, seed=3)
            ref = _in_process("smoothgrad", model, images, prep, smooth_samples=4, seed=3)
            assert float(np.abs(ref["heatmap"] - sal.heatmap).max()) > 1e-3  # the noise changes the map
            np.testing.assert_allclose(smooth.heatmap, ref["heatmap"], atol=1e-4, err_msg=name)
            ig = c.explain(name, "integrated_gradients", images, class_index=0, steps=64)
            ref = _in_process("integrated_gradients", model, images, prep, steps=64)
            np.testing.assert_allclose(ig.heatmap, ref["heatmap"], atol=1e-4, err_msg=name)
            for key in ("instance_output", "baseline_output"):  # Vertex's instance/baselineOutputValue
                np.testing.assert_allclose(ig.outputs[key], ref[key], atol=1e-4, err_msg=f"{name} {key}")
            assert np.all(ig.outputs["approximation_error"] < 0.01), (name, ig.outputs["approximation_error"])
        model, prep = want["custom"]
        score = c.explain("custom", "scorecam", images, class_index=0)  # through the activation output
        ref_score = _in_process_backend(model, prep, "scorecam", images, target_layer="conv2")
        assert float(np.ptp(ref_score)) > 0
        np.testing.assert_allclose(score.heatmap, ref_score, atol=1e-4, err_msg="scorecam")
        for method in CAMS:
            got = c.explain("custom", method, images, class_index=0)
            ref = _in_process(method, model, images, prep)
            assert float(np.ptp(ref["heatmap_upsampled"])) > 0, method
            np.testing.assert_allclose(got.heatmap, ref["heatmap_upsampled"], atol=1e-4, err_msg=method)
            np.testing.assert_allclose(got.heatmap_lowres, ref["heatmap"], atol=1e-4, err_msg=method)
        ig = c.explain("custom", "integrated_gradients", images, class_index=[2, 1], steps=64)
        rows = _kserve_explain(running.rest_url, "custom", images, "integrated_gradients",
                               {"class_index": [2, 1], "steps": 64})
        for i, row in enumerate(rows):  # Vertex's response fields on KServe's :explain
            assert row["outputIndex"] == [[2, 1][i]] and row["outputDisplayName"] == ["z", "y"][i]
            for field, key in (("instanceOutputValue", "instance_output"), ("baselineOutputValue", "baseline_output"),
                               ("approximationError", "approximation_error")):
                assert abs(row[field] - float(ig.outputs[key][i])) < 1e-5, field
        top = c.explain("custom", "gradcam", images, top_k=2)
        probs = models["custom"](images.astype(np.float32) / 255.0).numpy()
        np.testing.assert_array_equal(top.class_index, np.argsort(-probs, axis=1)[:, :2].reshape(-1))


def _kserve_explain(url: str, model: str, images: np.ndarray, method: str, parameters: dict) -> list[dict]:
    import urllib.request

    body = json.dumps({"instances": images.tolist(), "method": method, "parameters": parameters}).encode()
    req = urllib.request.Request(f"{url}/v1/models/{model}:explain", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["explanations"]


def test_xrai_on_a_uint8_signature_equals_in_process(foreign, images):
    """XRAI on the uint8 model (gradients w.r.t. the float its Cast produces) equals XRAI on the
    Keras model in process."""
    from explain.backend import KerasBackend, SavedModelBackend
    from explain.view import ModelView
    from explain.xrai import xrai

    root, models = foreign
    x = images[:1].astype(np.float32) / 255.0
    loaded = tf.saved_model.load(str(root / "pixels" / "1"))
    got = xrai(SavedModelBackend(loaded), x, class_index=0, steps=16)
    ref = xrai(KerasBackend(ModelView(models["pixels"], preprocessing="unit")), x, class_index=0, steps=16)
    np.testing.assert_allclose(got["attributions"], ref["attributions"], atol=1e-4)
    np.testing.assert_array_equal(got["order"], ref["order"])
    np.testing.assert_allclose(got["heatmap"], ref["heatmap"], atol=1e-4)


def test_foreign_backend_gradcam_equals_in_process_and_applicability(foreign, images):
    """The service's path without the server: a custom signature with an activation output
    (Grad-CAM equals the in-process map); which methods apply to a uint8 signature and to a float
    one without a range (IG at 64 steps: the slow server test)."""
    from explain.backend import SavedModelBackend
    from explain.foreign import applicable, run_single_pass

    root, models = foreign
    x = images.astype(np.float32) / 255.0
    classes = np.zeros(len(images), np.int32)
    custom = SavedModelBackend(tf.saved_model.load(str(root / "custom" / "1")), input_key="image",
                               output_key="scores", input_range=(-1.0, 1.0), signature="classify",
                               activation_key="activations")
    assert "gradcam" in applicable(custom)[0]
    got = run_single_pass("gradcam", custom, x, classes)
    ref = _in_process("gradcam", models["custom"], images, "unit")
    np.testing.assert_allclose(got["heatmap"], ref["heatmap"], atol=1e-4)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-4)
    pixels = SavedModelBackend(tf.saved_model.load(str(root / "pixels" / "1")))
    methods, left_out = applicable(pixels)
    assert methods == ["saliency", "smoothgrad", "integrated_gradients"] and "activationOutputName" in left_out["gradcam"]
    got = run_single_pass("smoothgrad", pixels, x, classes, smooth_samples=4, smooth_noise=0.2, seed=3, dilations=0)
    ref = _in_process("smoothgrad", models["pixels"], images, "unit", smooth_samples=4, seed=3)
    np.testing.assert_allclose(got["heatmap"], ref["heatmap"], atol=1e-4)
    unknown = SavedModelBackend(tf.saved_model.load(str(root / "signed" / "1")))  # float, no range
    assert "no declared value range" in applicable(unknown)[1]["saliency"]


def test_config_file_names_a_metadata_file_per_model(tmp_path):
    from serving.config import parse_args

    toml = tmp_path / "serving.toml"
    toml.write_text('model_root = "/models"\n[models.mine]\nexplanation_metadata = "/etc/mine.json"\n'
                    'version_policy = "latest:2"\n')
    cfg = parse_args(["--config", str(toml)]).model_configs()["mine"]
    assert (cfg.metadata_path, str(cfg.version_policy)) == ("/etc/mine.json", "latest:2")
    toml.write_text('model_root = "/models"\n[models.mine]\nexplanation_metadata = 3\n')
    with pytest.raises(ValueError, match=r"models.mine.explanation_metadata 3 must be the path of a JSON file"):
        parse_args(["--config", str(toml)]).model_configs()
    toml.write_text('model_root = "/models"\n[models.mine]\nmetadata = "x.json"\n')
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['metadata'\]; accepted: \['explanation_metadata'"):
        parse_args(["--config", str(toml)]).model_configs()


def _ig_from(model: keras.Model, images: np.ndarray, preprocessing: str, base: np.ndarray, steps: int) -> dict:
    """IG in process from the ``[0, 1]`` baseline image ``base``, and the logits at the baseline."""
    from explain.integrated_gradients import integrated_gradients_single_pass
    from explain.view import ModelView

    view = ModelView(model, preprocessing=preprocessing)
    x = tf.constant(images.astype(np.float32) / 255.0)
    out = integrated_gradients_single_pass(view, x, tf.constant([0] * len(images)), steps,
                                           baseline_image=tf.constant(base, tf.float32))
    out = {k: v.numpy() for k, v in out.items()}
    out["logits_at_baseline"] = view.run(tf.constant(base[None], tf.float32)).logits.numpy()[0]
    return out


def test_declared_input_baselines_start_integrated_gradients(foreign, images, tmp_path):
    """``inputBaselines`` in the model's input units (a scalar on the 0–255 model, a whole image
    on the [-1, 1] one) start IG when the request names no ``baseline``: the same IG as in process
    from that baseline, and ``baseline_output`` is the model's logit there; an explicit
    ``baseline`` wins; a baseline of the wrong shape is FAILED_PRECONDITION naming the field.
    ``GET /v1/models`` publishes the metadata's ``visualization`` (what the viewer colours with)."""
    import urllib.request

    from models.metadata import make_metadata, write_metadata
    from serving.client import ExplanationClient, ServiceError
    from serving.server import start_server

    src, models = foreign
    root = tmp_path / "root"
    for name, copy in (("kexport", "kexport"), ("signed", "signed"), ("signed", "badbase")):
        shutil.copytree(src / name, root / copy)
    image_baseline = np.random.default_rng(7).uniform(-1, 1, (SIZE, SIZE, 3)).round(3)
    vis = {"polarity": "BOTH", "colorMap": "VIRIDIS", "clipPercentLowerbound": 70, "clipPercentUpperbound": 99.5}
    write_metadata(root / "kexport" / "1", make_metadata("pixels", "output_0", (0, 255), baselines=[64],
                                                         visualization=vis))
    write_metadata(root / "signed" / "1", make_metadata("x", "scores", (-1, 1), baselines=[image_baseline.tolist()]))
    write_metadata(root / "badbase" / "1", make_metadata("x", "scores", (-1, 1), baselines=[[0.0, 0.5]]))
    cases = {"kexport": (models["kexport"], "raw", np.full((SIZE, SIZE, 3), 64 / 255.0)),
             "signed": (models["signed"], "unit", (image_baseline + 1.0) / 2.0)}
    with start_server(root, port=0, file_system_poll_wait_seconds=0, rest_port=-1) as running, \
            ExplanationClient(running.address) as c:
        with urllib.request.urlopen(f"{running.rest_url}/v1/models", timeout=60) as resp:
            listed = {m["name"]: m for m in json.loads(resp.read())["models"]}
        assert listed["kexport"]["visualization"] == vis and "visualization" not in listed["signed"]
        for name, (model, prep, base) in cases.items():
            got = c.explain(name, "integrated_gradients", images, class_index=0, steps=16)
            assert got.params["baseline"] == "inputBaselines", name
            ref = _ig_from(model, images, prep, base, 16)
            assert float(np.ptp(ref["heatmap"])) > 0
            np.testing.assert_allclose(got.heatmap, ref["heatmap"], atol=1e-4, err_msg=name)
            np.testing.assert_allclose(got.outputs["baseline_output"], ref["baseline_output"], atol=1e-4, err_msg=name)
            np.testing.assert_allclose(got.outputs["baseline_output"], [ref["logits_at_baseline"][0]] * 2, atol=1e-4)
            black = c.explain(name, "integrated_gradients", images, class_index=0, steps=16, baseline="black")
            assert black.params["baseline"] == "black"
            assert float(np.abs(black.outputs["baseline_output"] - got.outputs["baseline_output"]).max()) > 1e-3
        with pytest.raises(ServiceError) as err:
            c.explain("badbase", "integrated_gradients", images, class_index=0, steps=2)
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "inputs.image.inputBaselines[0] has shape [2]; accepted: a scalar, [3] or [24, 24, 3]" in err.value.message


def test_several_declared_baselines_average_and_unit_conversion(foreign, images):
    """Several ``inputBaselines``: attributions and baseline outputs are the mean of the runs from
    each (completeness still holds for the mean); values convert from the model's units to [0, 1]."""
    from explain.backend import SavedModelBackend
    from explain.foreign import declared_baselines, run_single_pass

    root, _ = foreign
    signed = SavedModelBackend(tf.saved_model.load(str(root / "signed" / "1")), input_key="x", output_key="scores",
                               input_range=(-1.0, 1.0))
    bases = declared_baselines([0.0, [-1.0, 0.0, 1.0]], signed)  # a scalar, a per-channel triple
    assert bases.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(bases[0], 0.5)
    np.testing.assert_array_equal(bases[1][3, 4], [0.0, 0.5, 1.0])
    pixels = SavedModelBackend(tf.saved_model.load(str(root / "pixels" / "1")))
    np.testing.assert_allclose(declared_baselines([51], pixels)[0], 0.2, rtol=1e-6)  # uint8: v / 255
    x, idx = images.astype(np.float32) / 255.0, np.array([1, 2], np.int32)
    both = run_single_pass("integrated_gradients", signed, x, idx, baselines=bases, steps=8)
    one = [run_single_pass("integrated_gradients", signed, x, idx, baselines=bases[i:i + 1], steps=8) for i in (0, 1)]
    for key in ("attributions", "baseline_output"):
        np.testing.assert_allclose(both[key], (one[0][key] + one[1][key]) / 2, rtol=1e-5, atol=1e-7)
    delta = both["instance_output"] - both["baseline_output"]
    gap = np.abs(both["attributions"].sum(axis=(1, 2, 3)) - delta) / np.abs(delta)
    np.testing.assert_allclose(both["approximation_error"], gap, rtol=1e-4, atol=1e-6)
    assert float(np.abs(one[0]["baseline_output"] - one[1]["baseline_output"]).max()) > 1e-3
