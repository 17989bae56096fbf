"""The segmenter (models.segmenter): training quality, export, serving beside classifiers, and the
evaluation's side-by-side R_pc with ``--segmenter``.

The tiny segmenter (64 px, 160 scenes per city, 16 epochs) is trained once per module; on the
held-out test scenes of seed 0 it measured pixel accuracy 0.956 and mean IoU 0.53 (majority-class
baseline 0.453, the road); the thresholds below sit clearly under those figures.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from models import segmenter as sg

#: Measured 0.956 (seed 0); the majority-class baseline is 0.453.
MIN_PIXEL_ACCURACY = 0.90
#: Measured 0.53 (seed 0): large objects (sky, road, building, earth) above 0.87, small ones lower.
MIN_MEAN_IOU = 0.40


@pytest.fixture(scope="module")
def tiny_segmenter():
    return sg.train_segmenter("tiny", seed=0, verbose=0, log=None)


@pytest.fixture(scope="module")
def exported(tiny_segmenter, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_root")
    return root, sg.export_segmenter(tiny_segmenter, root, "segmenter")


# ------------------------------------------------------------------------------------ hand cases
def test_segmentation_scores_hand_case():
    truth = np.array([[[3, 3, 7], [7, 7, 0]]])
    pred = np.array([[[3, 7, 7], [7, 2, 3]]])
    s = sg.segmentation_scores(pred, truth)
    # pixel (1,2) is unlabelled: 5 counted, correct at (0,0), (0,2), (1,0)
    assert s["pixel_accuracy"] == pytest.approx(3 / 5) and s["pixels"] == 5
    # sky 3: inter 1, union {(0,0),(0,1)} = 2; road 7: inter 2, union 4; building 2: 0/1
    assert s["per_class_iou"] == pytest.approx({2: 0.0, 3: 0.5, 7: 0.5})
    assert s["mean_iou"] == pytest.approx(1 / 3)
    only = sg.segmentation_scores(pred, truth, classes=[3, 7])
    assert only["mean_iou"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        sg.segmentation_scores(pred[:, :1], truth)


def test_classes_roundtrip_and_errors():
    classes = sg.city_classes()
    assert classes.indices == (2, 3, 5, 7, 12, 14, 18, 21, 33, 44, 49, 94)
    assert classes.names[:3] == ("building", "sky", "tree")
    lm = np.array([[[2, 94], [49, 3]]], np.uint8)
    assert classes.encode(lm).tolist() == [[[0, 11], [10, 1]]]
    np.testing.assert_array_equal(classes.decode(classes.encode(lm)), lm)
    assert sg.SegmenterClasses.from_card({"classes": classes.to_card()}) == classes
    with pytest.raises(ValueError, match=r"\[13\] that are not segmenter classes"):
        classes.encode(np.array([[13, 2]], np.uint8))
    with pytest.raises(ValueError, match="multiple of 4"):
        sg.build_segmenter(30, 12)
    with pytest.raises(ValueError, match="unknown segmenter preset 'huge'; accepted: \\['small', 'tiny'\\]"):
        sg.train_segmenter("huge")


def test_build_segmenter_layer_names_and_shape():
    model = sg.build_segmenter(16, 5, filters=(2, 3, 4))
    names = {layer.name for layer in model.layers}
    for n in ("enc1_conv1", "enc3_conv2_bn", "enc2_pool", "dec2_up", "dec1_concat", "dec1_conv2_relu", "logits"):
        assert n in names
    assert tuple(model.output.shape) == (None, 16, 16, 5)


def test_resize_helpers_match_tensorflow():
    import tensorflow as tf

    from evaluation.segmentation import _resize_images, resize_nearest

    rng = np.random.default_rng(0)
    maps = rng.integers(0, 50, (2, 6, 9)).astype(np.uint8)
    want = tf.image.resize(maps[..., None], (9, 4), method="nearest").numpy()[..., 0]
    np.testing.assert_array_equal(resize_nearest(maps, (9, 4)), want)
    images = rng.integers(0, 256, (2, 12, 12, 3)).astype(np.uint8)
    ref = np.clip(np.rint(tf.image.resize(images.astype(np.float32), (8, 8)).numpy()), 0, 255)
    assert np.abs(_resize_images(images, (8, 8)).astype(int) - ref).max() <= 1


# ------------------------------------------------------------------------------------ training
@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_tiny_segmenter_beats_the_majority_baseline(tiny_segmenter):
    r = tiny_segmenter
    test = r.test_images
    counts = np.bincount(test.label_maps.ravel(), minlength=256)
    majority = counts.max() / counts.sum()
    assert r.majority_baseline == pytest.approx(majority)
    assert 0.40 < majority < 0.50  # the road; a segmenter must do far better than "all road"
    predicted = sg.predict_label_maps(r.model, test.images, r.classes)
    direct = sg.segmentation_scores(predicted, test.label_maps, r.classes.indices)
    assert r.pixel_accuracy == pytest.approx(direct["pixel_accuracy"]) and r.mean_iou == pytest.approx(direct["mean_iou"])
    assert r.pixel_accuracy >= MIN_PIXEL_ACCURACY > majority + 0.3
    assert r.mean_iou >= MIN_MEAN_IOU
    # sky and road are easy: every held-out scene has them and they are big
    assert r.per_class_iou[3] > 0.85 and r.per_class_iou[7] > 0.85


# ------------------------------------------------------------------------------------ export
@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_export_signatures_equal_keras_argmax_and_card(tiny_segmenter, exported):
    import tensorflow as tf

    from models.export import read_card

    root, path = exported
    assert path == root / "segmenter" / "1"
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"segment", "serving_default"}
    images = tiny_segmenter.test_images.images[:6]
    want = sg.predict_label_maps(tiny_segmenter.model, images, tiny_segmenter.classes)
    got = loaded.signatures["segment"](images=tf.constant(images))["label_map"].numpy()
    assert got.dtype == np.int32 and got.shape == (6, 64, 64)
    np.testing.assert_array_equal(got, want)
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    probs = out["probabilities"].numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(tiny_segmenter.classes.indices)[probs.argmax(-1)], want)
    card = read_card(path)
    assert card["kind"] == "segmenter" and card["input_size"] == [64, 64, 3]
    assert [c["index"] for c in card["classes"]] == list(tiny_segmenter.classes.indices)
    assert card["pixel_accuracy"] == pytest.approx(tiny_segmenter.pixel_accuracy)
    assert card["mean_iou"] == pytest.approx(tiny_segmenter.mean_iou)
    assert card["training_data"]["generator"] == "models.datasets.make_cities" and "dataset" not in card
    assert not list((root / "segmenter").glob(".tmp-*"))


# ------------------------------------------------------------------------------------ serving + evaluation
@pytest.fixture(scope="module")
def root_with_segmenter(tiny_model_root, exported, tmp_path_factory):
    root = tmp_path_factory.mktemp("root_with_segmenter") / "models"
    shutil.copytree(tiny_model_root, root)
    shutil.copytree(exported[1], root / "segmenter" / "1")
    return root


@pytest.fixture(scope="module")
def server(root_with_segmenter):
    from serving.server import start_server

    with start_server(str(root_with_segmenter), port=0, host="127.0.0.1") as srv:
        yield srv


@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_registry_serves_classifiers_beside_a_segmenter(server, tiny_segmenter):
    from serving.client import ExplanationClient

    images = tiny_segmenter.test_images.images[:3]
    with ExplanationClient(server.address) as c:
        infos = {m.name: m for m in c.list_models()}
        assert infos["segmenter"].kind == "segmenter" and infos["segmenter"].methods == []
        assert infos["vgg11"].kind == "classifier" and "gradcam" in infos["vgg11"].methods
        maps = c.predict_signature("segmenter", "segment", {"images": images})["label_map"]
        np.testing.assert_array_equal(maps, sg.predict_label_maps(tiny_segmenter.model, images, tiny_segmenter.classes))


def _table(out, name):
    return json.loads((out / "tables" / f"{name}.json").read_text())


@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_evaluation_with_segmenter_writes_the_side_by_side_table(root_with_segmenter, server, tmp_path):
    import tensorflow as tf

    from evaluation.__main__ import main
    from evaluation.data import load_evaluation_data
    from models.export import read_card

    out = tmp_path / "report"
    args = ["--server", server.address, "--out", str(out), "--experiments", "objects",
            "--images-per-class", "6", "--quiet"]
    assert main(args + ["--segmenter", "vgg11"]) == 2  # not a segmenter
    assert main(args + ["--segmenter", "segmenter"]) == 0
    side = _table(out, "objects_r_pc_segmenter_theta50")
    assert side["columns"][:9] == ["model", "class", "object", "kind", "selected (ground truth)",
                                   "selected (segmenter)", "R_pc (ground truth)", "R_pc (segmenter)", "R_pc difference"]
    rows = [dict(zip(side["columns"], r)) for r in side["rows"]]
    assert {r["model"] for r in rows} == {"vgg11", "vgg11_retrained", "resnet18", "simple", "simpler"}
    # the ground-truth R_pc beside the segmenter's equals the existing R_pc table
    rpc = _table(out, "objects_r_pc_theta50")
    existing = {(r[0], r[1], m): r[rpc["columns"].index(m)] for r in rpc["rows"] for m in rpc["columns"][4:]}
    matched = 0
    for r in rows:
        key = (r["object"], r["class"], r["model"])
        if key in existing:
            assert r["R_pc (ground truth)"] == pytest.approx(existing[key], abs=1e-6)
            matched += 1
        if r["R_pc (ground truth)"] is not None and r["R_pc (segmenter)"] is not None:
            assert r["R_pc difference"] == pytest.approx(r["R_pc (segmenter)"] - r["R_pc (ground truth)"], abs=1e-5)
    assert matched >= len(existing) // 2 > 0
    # accuracy and IoU in the report equal the ones computed directly from the SavedModel
    seg_dir = root_with_segmenter / "segmenter" / "1"
    cards = [read_card(p) for p in sorted(root_with_segmenter.glob("*/1")) if p.parent.name != "segmenter"]
    data, _ = load_evaluation_data(cards)
    idx = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:6] for c in range(len(data.class_names))]))
    resized = tf.image.resize(data.images[idx].astype(np.float32), (64, 64)).numpy()
    seg = tf.saved_model.load(str(seg_dir)).signatures["segment"]
    small = seg(images=tf.constant(np.clip(np.rint(resized), 0, 255).astype(np.uint8)))["label_map"]
    maps = tf.image.resize(small[..., None], data.images.shape[1:3], method="nearest").numpy()[..., 0]
    direct = sg.segmentation_scores(maps, data.label_maps[idx], [c["index"] for c in read_card(seg_dir)["classes"]])
    scores = dict(zip(_table(out, "objects_segmenter_scores")["columns"], _table(out, "objects_segmenter_scores")["rows"][0]))
    assert scores["images"] == idx.size == 12
    # measured: equal to every digit (0.940466 / 0.492733). The evaluation resizes 96 -> 64 px in float64,
    # TF in float32, so a platform may round a grey level differently: allow ~10 of 110,592 pixels.
    assert scores["pixel accuracy"] == pytest.approx(direct["pixel_accuracy"], abs=1e-4)
    assert scores["mean IoU"] == pytest.approx(direct["mean_iou"], abs=1e-3)
    assert scores["pixel accuracy"] > 0.8
    html = (out / "report.html").read_text()
    assert "R_pc (segmenter)" in html and "objects_r_pc_segmenter_difference_theta50.png" in html


@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_train_segmenter_command(tmp_path, capsys):
    from models.__main__ import main
    from models.export import read_card

    assert main(["train-segmenter", "--preset", "huge", "--out", str(tmp_path)]) == 2
    assert "--preset 'huge' is not a segmenter preset; accepted: ['small', 'tiny']" in capsys.readouterr().err
    assert main(["train-segmenter", "--preset", "tiny", "--image-size", "30", "--out", str(tmp_path)]) == 2
    assert "--image-size 30 must be a multiple of 4" in capsys.readouterr().err
    # one epoch at 32 px: checks the command's output and export, not the quality
    assert main(["train-segmenter", "--preset", "tiny", "--image-size", "32", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path), "--name", "seg32"]) == 0
    out = capsys.readouterr().out
    card = read_card(tmp_path / "seg32" / "1")
    assert card["input_size"] == [32, 32, 3] and card["training"]["epochs"] == 1
    assert f"pixel accuracy {card['pixel_accuracy']:.4f}, mean IoU {card['mean_iou']:.4f}" in out
    assert "[segmenter] 192/64/64 scenes at 32 px, 12 classes" in out and f"exported {(tmp_path / 'seg32' / '1').resolve()}" in out


@pytest.mark.slow  # trains the tiny segmenter (~60 s) and evaluates through a server; `make test-ci-slow`
def test_evaluation_without_ground_truth_uses_the_segmenter_alone(root_with_segmenter, server, tmp_path):
    from PIL import Image

    from evaluation.__main__ import main
    from evaluation.data import load_evaluation_data
    from models.export import read_card

    data, _ = load_evaluation_data([read_card(root_with_segmenter / "vgg11" / "1")])
    folder = tmp_path / "photos"
    for c, cname in enumerate(data.class_names):
        (folder / cname).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(data.labels == c)[:4]):
            Image.fromarray(data.images[i]).save(folder / cname / f"{k}.png")
    out = tmp_path / "report"
    assert main(["--server", server.address, "--out", str(out), "--experiments", "objects", "--images-per-class", "4",
                 "--quiet", "--data-dir", str(folder), "--segmenter", "segmenter"]) == 0
    rpc = _table(out, "objects_r_pc_theta50")
    assert rpc["rows"] and {"road", "sky"} <= {r[0] for r in rpc["rows"]}
    assert not (out / "tables" / "objects_r_pc_segmenter_theta50.json").exists()  # no ground truth to compare
    assert "every object count below comes from the label maps of segmenter" in (out / "report.html").read_text()
