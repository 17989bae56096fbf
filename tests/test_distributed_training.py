"""Distributed training: ``python -m models train --strategy default|mirrored|multi-worker``.

The multi-worker test starts two real training processes that talk over loopback gRPC
(``TF_CONFIG`` written here, free ports), each with one CPU thread pool of one thread
(``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS`` = 1) so that the pair fits on two
shared cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from models import distribute as D  # noqa: E402
from models import train as T  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.array(obj)) if isinstance(obj, h5py.Dataset) else None)
    return out


# ------------------------------------------------------------------------------ rules, errors
def test_tf_config_errors_name_tf_config_and_the_bad_value():
    with pytest.raises(ValueError, match=r"needs the TF_CONFIG environment variable"):
        D.parse_tf_config({})
    with pytest.raises(ValueError, match=r"TF_CONFIG is not valid JSON"):
        D.parse_tf_config({"TF_CONFIG": "{cluster"})
    with pytest.raises(ValueError, match=r"TF_CONFIG .* must be a JSON object with 'cluster' and 'task'"):
        D.parse_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})})
    with pytest.raises(ValueError, match=r"task type 'ps'; accepted: \['chief', 'worker'\]"):
        D.parse_tf_config({"TF_CONFIG": json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}})})
    with pytest.raises(ValueError, match=r"cluster\['worker'\] \['a'\] must be a non-empty list of 'host:port'"):
        D.parse_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}})})
    with pytest.raises(ValueError, match=r"task index 2 must be an integer in \[0, 1\]"):
        D.parse_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                    "task": {"type": "worker", "index": 2}})})
    ok = D.parse_tf_config({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                     "task": {"type": "worker", "index": 1}})})
    assert ok["task"] == {"type": "worker", "index": 1}
    with pytest.raises(ValueError, match=r"unknown strategy 'tpu'; accepted: \['default', 'mirrored', 'multi-worker'\]"):
        D.make_strategy("tpu")
    assert D.make_strategy("default") is None


def test_cli_refuses_multi_worker_without_tf_config(monkeypatch, capsys, tmp_path):
    from models.__main__ import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    rc = main(["train", "--preset", "tiny", "--only", "simpler", "--strategy", "multi-worker", "--out", str(tmp_path)])
    assert rc == 2 and "TF_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", "not json")
    rc = main(["train", "--preset", "tiny", "--only", "simpler", "--strategy", "multi-worker", "--out", str(tmp_path)])
    assert rc == 2 and "TF_CONFIG is not valid JSON" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_batch_and_learning_rate_rules():
    assert D.global_batch_size(8, None) == 8
    assert D.scaled_learning_rate(1e-4, 1) == pytest.approx(1e-4)  # one replica: the recipe's rate
    assert D.scaled_learning_rate(1e-4, 4) == pytest.approx(2e-4)  # sqrt(4) = 2
    assert D.scaled_learning_rate(1e-4, 4, "linear") == pytest.approx(4e-4)
    assert D.scaled_learning_rate(1e-4, 4, "none") == pytest.approx(1e-4)
    with pytest.raises(ValueError, match=r"unknown learning-rate scaling 'cube'; accepted: \['sqrt', 'linear', 'none'\]"):
        D.scaled_learning_rate(1e-4, 2, "cube")
    with pytest.raises(ValueError, match=r"n_replicas 0 must be a positive integer"):
        D.scaled_learning_rate(1e-4, 0)
    assert D.is_chief(None) and D.checkpoint_dir_for("ck", None) == Path("ck")


# ------------------------------------------------------------------------------------ mirrored
def test_mirrored_on_one_cpu_replica_equals_default():
    from models.datasets import make_cities

    train, val, test = make_cities(12, image_size=32, seed=5).split(0)
    kw = dict(epochs=2, batch_size=8, learning_rate=1e-3, width=0.0625, verbose=0, seed=3)
    plain = T.train_classifier("vgg11", train, val, test, **kw)
    strategy = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    assert D.replicas(strategy) == 1 and D.is_chief(strategy)
    mirrored = T.train_classifier("vgg11", train, val, test, strategy=strategy, **kw)
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(plain.model.get_weights(), mirrored.model.get_weights())]
    assert len(diffs) == len(plain.model.get_weights()) and max(diffs) < 1e-5
    # training moved the weights, so the comparison is not vacuous
    assert plain.history["loss"] == pytest.approx(mirrored.history["loss"], abs=1e-5)
    assert plain.history["val_accuracy"] == pytest.approx(mirrored.history["val_accuracy"])
    assert mirrored.config["strategy"] == "MirroredStrategy" and mirrored.config["global_batch_size"] == 8
    assert plain.config["strategy"] == "default" and plain.config["replicas"] == 1


# -------------------------------------------------------------------------------- multi-worker
@pytest.mark.slow
def test_two_multi_worker_processes_train_the_same_weights_and_only_the_chief_exports(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                   TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, "-m", "models", "train", "--preset", "tiny", "--only", "simpler", "--epochs", "1",
               "--strategy", "multi-worker", "--out", str(tmp_path / f"root{i}"),
               "--checkpoint-dir", str(tmp_path / f"ckpt{i}"), "--quiet"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=900)[0])
        finally:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs

    # both workers end with identical weights (their best = final weights, restored on both)
    w0 = _weights(tmp_path / "ckpt0" / "simpler.weights.h5")
    w1 = _weights(tmp_path / "ckpt1" / "worker-1" / "simpler.weights.h5")
    assert sorted(w0) == sorted(w1) and len(w0) >= 8
    assert all(np.array_equal(w0[k], w1[k]) for k in w0)
    assert not (tmp_path / "ckpt1" / "simpler.weights.h5").exists()
    assert "not the chief: nothing exported" in outs[1] and "not the chief" not in outs[0]

    # only the chief exported
    assert [p.name for p in (tmp_path / "root0" / "simpler").iterdir()] == ["1"]
    assert not (tmp_path / "root1").exists()
    card = json.loads((tmp_path / "root0" / "simpler" / "1" / "assets.extra" / "model_card.json").read_text())
    assert card["training"]["replicas"] == 2 and card["training"]["global_batch_size"] == 16
    assert card["training"]["per_replica_batch_size"] == 8
    assert card["training"]["optimizer"]["learning_rate"] == pytest.approx(1e-3 * 2 ** 0.5)  # tiny: 1e-3, sqrt rule

    # the export serves the trained weights
    from models import architectures as A
    from models.datasets import make_cities
    from serving.client import ExplanationClient
    from serving.server import start_server

    net = A.CLASSIFIERS["simpler"](input_size=96, num_classes=2, width=0.5, name="simpler")
    net.load_weights(tmp_path / "ckpt0" / "simpler.weights.h5")
    images = make_cities(2, image_size=96, seed=11).images
    expected = np.asarray(net(images.astype(np.float32) / 255.0, training=False))
    with start_server(tmp_path / "root0", port=0, warmup="default") as running:
        with ExplanationClient(running.address) as client:
            assert [m.name for m in client.list_models()] == ["simpler"]
            served = client.predict("simpler", images)["probabilities"]
            heat = client.explain("simpler", "gradcam", images, class_index=-1)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert heat.heatmap.shape[0] == len(images) and np.all(np.isfinite(heat.heatmap))
