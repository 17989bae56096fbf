"""``python -m models export``: a user's saved Keras file → model root → server → stock TF Serving client.

The user's model scales its own input (``Rescaling(1/255)`` first), so it must be exported with
``--preprocessing raw``; the stock ``PredictionServiceStub`` then gets exactly the Keras model's
probabilities for the same uint8 pixels. Bad arguments exit with status 2, a message naming the
value, and nothing written under the model root. Also an occlusion request through the service
(an iterative method, which synthesises inputs) matches the in-process computation on the same
preprocessed model.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import grpc
import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

from models.__main__ import main as models_main  # noqa: E402

SIZE = 32


def user_model(seed: int = 5) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="user_net")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    model = user_model()
    model.save(d / "user.keras")
    model.save(d / "user.h5")
    return model, d


def run_cli(*argv: str) -> tuple[int, str]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = models_main(["export", *argv])
    return code, buf.getvalue()


def test_export_serve_and_ask_with_a_stock_client(saved, tmp_path):
    from serving.server import start_server

    model, d = saved
    root = tmp_path / "root"
    code, out = run_cli(str(d / "user.keras"), "--name", "user", "--model-root", str(root),
                        "--preprocessing", "raw", "--class-names", "street,park,harbour")
    assert code == 0, out
    assert f"exported {root / 'user' / '1'}" in out
    exported = out.split("methods exported: ", 1)[1].splitlines()[0].split(", ")
    assert {"excitation_backprop", "gradcam", "integrated_gradients"} <= set(exported) and "target layer: conv2" in out
    (tmp_path / "classes.txt").write_text("street\npark\n\nharbour\n")
    code, out = run_cli(str(d / "user.h5"), "--name", "user", "--model-root", str(root), "--preprocessing", "raw",
                        "--class-names-file", str(tmp_path / "classes.txt"))
    assert code == 0 and f"exported {root / 'user' / '2'}" in out, out

    x = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    expected = model(x.astype(np.float32)).numpy()
    with start_server(root, port=0, file_system_poll_wait_seconds=0, version_policy="all") as running:
        with grpc.insecure_channel(running.address) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            for version in (1, 2):
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "user"
                req.model_spec.version.value = version
                req.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
                got = tf.make_ndarray(stub.Predict(req, timeout=60).outputs["probabilities"])
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        from serving.client import ExplanationClient

        with ExplanationClient(running.address) as client:
            info = client.model_info("user")
            assert info.preprocessing.startswith("raw") and info.class_names == ["street", "park", "harbour"]
            occ = client.explain("user", "occlusion", x[:2], class_index=0, patch_size_at_224=56, stride=8)
    # In process, on the Keras model with the same preprocessing: the same map.
    from explain.backend import KerasBackend
    from explain.occlusion import occlusion
    from explain.view import ModelView

    want = occlusion(KerasBackend(ModelView(model, preprocessing="raw")), x[:2].astype(np.float32) / 255.0,
                     class_index=0, patch_size_at_224=56, stride=8)
    np.testing.assert_allclose(occ.heatmap, want["heatmap"], atol=1e-4)
    assert float(np.ptp(want["heatmap"])) > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{d}/missing.keras"], "model file '{d}/missing.keras' does not exist"),
        (["{d}/garbage.keras"], "model file '{d}/garbage.keras' is not a Keras model Keras can load"),
        (["{d}/user.txt"], "has suffix '.txt'; accepted: ['.keras', '.h5', '.hdf5']"),
        (["{d}/user.keras", "--class-names", "a,b"], "class_names ['a', 'b'] has 2 entries; model 'user_net' has 3 classes"),
        (["{d}/user.keras", "--target-layer", "nope"], "unknown layer 'nope' in model 'user_net'; accepted: ["),
        (["{d}/user.keras", "--preprocessing", "imagenet"], "--preprocessing 'imagenet' is not supported; accepted: ['unit'"),
        (["{d}/user.keras", "--preprocessing", "custom"], "--preprocessing custom needs --mean R,G,B and --std R,G,B"),
        (["{d}/user.keras", "--preprocessing", "custom", "--mean", "1,2", "--std", "1,1,1"], "--mean '1,2' has 2 values"),
        (["{d}/user.keras", "--class-names-file", "{d}/none.txt"], "--class-names-file '{d}/none.txt' does not exist"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(saved, tmp_path, capsys, argv, message):
    _, d = saved
    (d / "garbage.keras").write_bytes(b"not a zip file")
    (d / "user.txt").write_text("x")
    argv = [a.format(d=d) for a in argv]
    if "--preprocessing" not in argv:
        argv += ["--preprocessing", "raw"]
    root = tmp_path / "root"
    code = models_main(["export", argv[0], "--name", "user", "--model-root", str(root), *argv[1:]])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(d=d) in err, err
    assert not (root / "user").exists() or not any(p.name.isdigit() for p in (root / "user").iterdir())
