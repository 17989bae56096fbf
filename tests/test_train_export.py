"""Training (the papers' recipe, triplet and contrastive losses, seeds, checkpoints) and export
(TF Serving layout, versions, crash safety, model card, signatures against references)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from models import architectures as A  # noqa: E402
from models import export as E  # noqa: E402
from models import presets as P  # noqa: E402
from models import train as T  # noqa: E402

ARCHS = ("vgg11", "resnet18", "simple", "simpler")
ROOT = Path(__file__).resolve().parents[1]


def _float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ------------------------------------------------------------------------------- the recipe
def test_step_decay_is_x01_every_10_epochs():
    schedule = T.step_decay(1e-4)
    expected = [1e-4] * 10 + [1e-5] * 10 + [1e-6] * 10 + [1e-7]
    assert [schedule(e) for e in range(31)] == pytest.approx(expected, rel=1e-12)
    assert schedule(9, 123.0) == pytest.approx(1e-4)  # Keras passes the current lr; it is ignored
    other = T.step_decay(1e-3, every=5, factor=0.5)
    assert [other(e) for e in (0, 4, 5, 9, 10)] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    with pytest.raises(ValueError, match=r"every 0 must be a positive integer"):
        T.step_decay(1e-4, every=0)
    with pytest.raises(ValueError, match=r"factor 1.5 must lie in \(0, 1\]"):
        T.step_decay(1e-4, factor=1.5)
    with pytest.raises(ValueError, match=r"initial_lr -1 must be positive"):
        T.step_decay(-1)


def test_adam_has_the_papers_moments():
    opt = T.make_optimizer()
    assert float(opt.learning_rate) == pytest.approx(1e-4)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)


def test_small_and_paper_presets_use_the_papers_recipe():
    for name in ("small", "small-planted", "paper"):
        p = P.get_preset(name)
        assert (p.learning_rate, p.lr_decay_every, p.lr_decay) == (1e-4, 10, 0.1)
        assert p.embedding_learning_rate == 1e-4
    # the papers' rate for every architecture except small's documented per-architecture rates
    assert {a: P.get_preset("paper").for_arch(a, "learning_rate") for a in P.CLASSIFIER_NAMES} == dict.fromkeys(
        P.CLASSIFIER_NAMES, 1e-4)
    assert {a: P.get_preset("small").for_arch(a, "learning_rate") for a in P.CLASSIFIER_NAMES} == {
        "vgg11": 1e-4, "resnet18": 1e-3, "simple": 1e-3, "simpler": 3e-4}
    # the demo and paper presets draw the balanced cities; small-planted and tiny plant every object
    assert [P.get_preset(n).balanced_cues for n in ("paper", "small", "small-planted", "tiny")] == [
        True, True, False, False]
    assert P.get_preset("small-balanced") is P.get_preset("small")  # the former name still works
    # small's embeddings: the same step schedule stretched to 20 epochs (documented in models.presets)
    small = P.get_preset("small")
    assert (small.embedding_epochs, small.embedding_warmup_epochs, small.embedding_lr_decay_every) == (40, 20, 20)
    assert P.get_preset("paper").embedding_lr_decay_every is None
    assert P.get_preset("paper").image_size == 224 and P.get_preset("paper").width == 1.0
    tiny = P.get_preset("tiny")
    assert tiny.image_size == 96 and tiny.image_size >= A.min_input_size("simple")
    assert tiny.learning_rate == 1e-3  # the one deliberate deviation, documented in models.presets
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; accepted: \['paper', 'small', 'small-planted', 'tiny', 'tiny-balanced'\]"):
        P.get_preset("huge")
    with pytest.raises(ValueError, match=r"unknown model name 'vgg16'; accepted: \['vgg11'"):
        P.resolve_names("vgg11,vgg16")
    assert P.resolve_names(["simpler,vgg11", "embedding_max"]) == ["vgg11", "simpler", "embedding_max"]
    assert P.resolve_names(None) == list(P.MODEL_NAMES) and len(P.MODEL_NAMES) == 10


# ------------------------------------------------------------------------------------ losses
def test_batch_hard_triplet_loss_by_hand():
    # four unit vectors, two classes; distances d01=√0.8, d02=√2, d03=2, d12=√0.4, d13=√3.2, d23=√2
    e = np.array([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # anchor 0: max(0.2 + √0.8 − √2, 0) = 0        anchor 1: 0.2 + √0.8 − √0.4
    # anchor 2: 0.2 + √2 − √0.4                     anchor 3: max(0.2 + √2 − √3.2, 0) = 0
    expected = ((0.2 + math.sqrt(0.8) - math.sqrt(0.4)) + (0.2 + math.sqrt(2) - math.sqrt(0.4))) / 4
    assert float(T.batch_hard_triplet_loss(y, e, 0.2)) == pytest.approx(expected, abs=1e-6)
    # the embeddings are normalised inside: scaling them changes nothing
    assert float(T.batch_hard_triplet_loss(y, 3 * e, 0.2)) == pytest.approx(expected, abs=1e-6)
    # a huge margin: every anchor counts, loss = mean(m + d+ − d−)
    d_pos = [math.sqrt(0.8), math.sqrt(0.8), math.sqrt(2), math.sqrt(2)]
    d_neg = [math.sqrt(2), math.sqrt(0.4), math.sqrt(0.4), math.sqrt(3.2)]
    big = np.mean([5 + p - n for p, n in zip(d_pos, d_neg)])
    assert float(T.batch_hard_triplet_loss(y[:, None], e, 5.0)) == pytest.approx(big, abs=1e-5)
    # batch-all: the non-zero triplets are (1,0,2), (2,3,0), (2,3,1)
    ba = ((0.2 + math.sqrt(0.8) - math.sqrt(0.4)) + 0.2 + (0.2 + math.sqrt(2) - math.sqrt(0.4))) / 3
    assert float(T.batch_all_triplet_loss(y, e, 0.2)) == pytest.approx(ba, abs=1e-6)


def test_triplet_loss_edge_cases_and_gradient():
    e = tf.Variable(np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32))
    y = np.array([0, 0, 1, 1, 2, 2])
    with tf.GradientTape() as tape:
        loss = T.batch_hard_triplet_loss(y, e)
    g = tape.gradient(loss, e)
    assert np.all(np.isfinite(g.numpy())) and float(loss) > 0
    # no positives anywhere: nothing to learn, loss 0 (not NaN)
    assert float(T.batch_hard_triplet_loss(np.arange(4), np.eye(4, dtype=np.float32))) == 0.0
    # duplicated embeddings: zero-distance gradient is finite
    dup = tf.Variable(np.ones((4, 3), np.float32))
    with tf.GradientTape() as tape:
        loss = T.batch_hard_triplet_loss(np.array([0, 0, 1, 1]), dup, 0.2)
    assert float(loss) == pytest.approx(0.2) and np.all(np.isfinite(tape.gradient(loss, dup).numpy()))


def test_contrastive_loss_by_hand():
    same = np.array([1, 0, 0])
    d = np.array([0.5, 0.3, 1.5], np.float32)
    expected = (0.25 + (1.0 - 0.3) ** 2 + 0.0) / 3
    assert float(T.contrastive_loss(same, d, margin=1.0)) == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------- seeds
def test_same_seed_same_weights_other_seed_other_weights():
    build = lambda: A.vgg11(32, 2, 0.0625)  # noqa: E731
    a = T.build_seeded(build, 3).get_weights()
    b = T.build_seeded(build, 3).get_weights()
    c = T.build_seeded(build, 4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, z) for x, z in zip(a, c) if x.size > 1)
    with pytest.raises(ValueError, match=r"seed -1 must be a non-negative integer"):
        T.set_seed(-1)


@pytest.fixture(scope="module")
def micro_cities():
    from models.datasets import make_cities

    return make_cities(12, image_size=32, seed=5).split(0)


@pytest.mark.slow  # two trainings (~10-18 s); `make test-ci-slow`
def test_training_is_reproducible_per_seed(micro_cities):
    train, val, test = micro_cities
    kw = dict(epochs=2, batch_size=8, learning_rate=1e-3, width=0.0625, verbose=0)
    r1 = T.train_classifier("vgg11", train, val, test, seed=7, **kw)
    r2 = T.train_classifier("vgg11", train, val, test, seed=7, **kw)
    r3 = T.train_classifier("vgg11", train, val, test, seed=8, **kw)
    w1, w2, w3 = r1.model.get_weights(), r2.model.get_weights(), r3.model.get_weights()
    assert max(_max_abs(x, y) for x, y in zip(w1, w2)) < 1e-5
    assert max(_max_abs(x, z) for x, z in zip(w1, w3)) > 1e-3
    assert r1.history["learning_rate"] == [1e-3, 1e-3]
    assert r1.seed == 7 and r1.kind == "classifier" and r1.architecture == "vgg11"
    assert 0.0 <= r1.test_accuracy <= 1.0


def test_best_weights_are_kept_and_checkpointed_atomically(micro_cities, tmp_path):
    train, val, test = micro_cities
    ckpt = tmp_path / "ckpt" / "vgg11.weights.h5"
    r = T.train_classifier(
        "vgg11", train, val, test, epochs=4, batch_size=8, learning_rate=1e-3, lr_decay_every=2,
        width=0.0625, seed=1, checkpoint_path=ckpt, verbose=0,
    )
    assert r.history["learning_rate"] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert float(r.model.optimizer.learning_rate) == pytest.approx(1e-4)
    val_acc = r.history["val_accuracy"]
    # The best epoch: highest validation accuracy, ties broken by the lower validation loss.
    keys = [(a, -l) for a, l in zip(val_acc, r.history["val_loss"])]
    assert r.best_epoch == max(range(len(keys)), key=lambda e: keys[e])
    assert r.val_accuracy == pytest.approx(max(val_acc))
    assert ckpt.exists() and [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]
    fresh = A.vgg11(32, 2, 0.0625)
    fresh.load_weights(ckpt)
    x = _float(test.images)
    np.testing.assert_allclose(np.asarray(fresh(x)), np.asarray(r.model(x)), atol=1e-6)


def test_train_argument_errors(micro_cities):
    train, val, test = micro_cities
    with pytest.raises(ValueError, match=r"unknown classifier 'vgg12'; accepted: \['resnet18', 'simple'"):
        T.train_classifier("vgg12", train, val, verbose=0)
    with pytest.raises(ValueError, match=r"epochs 0 must be a positive integer"):
        T.train_classifier("vgg11", train, val, epochs=0, verbose=0)
    with pytest.raises(ValueError, match=r"verbose 3 is not supported; accepted: \[0, 1, 2\]"):
        T.train_classifier("vgg11", train, val, verbose=3)
    with pytest.raises(ValueError, match=r"do not fit model"):
        T.train_classifier(A.vgg11(64, 2, 0.0625), train, val, verbose=0)
    with pytest.raises(ValueError, match=r"unknown pooling 'sum'; accepted: \['avg', 'max'\]"):
        T.train_embedding("sum", train, val, verbose=0)
    with pytest.raises(ValueError, match=r"loss 'hardest' is not supported"):
        T.train_embedding("avg", train, val, loss="hardest", verbose=0)


def test_train_embedding_and_siamese_run(micro_cities):
    train, val, test = micro_cities
    r = T.train_embedding("max", train, val, test, epochs=2, warmup_epochs=1, batch_size=8, learning_rate=1e-3,
                          width=0.0625, seed=0, verbose=0)
    e = T.embed_images(r.model, test.images)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert len(r.history["val_knn_accuracy"]) == 2 and 0 <= r.test_accuracy <= 1
    s = T.train_siamese(train, val, test, epochs=2, batch_size=8, learning_rate=1e-3, embedding_dim=8,
                        width=0.0625, seed=0, verbose=0)
    assert s.kind == "siamese" and set(s.history) >= {"loss", "ce", "contrastive", "val_accuracy"}
    assert all(np.isfinite(s.history["loss"])) and s.history["contrastive"][0] > 0
    p = np.asarray(s.model(_float(test.images)))
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------ tiny training
@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_classifiers_reach_90_percent(tiny_classifier_results, tiny_cities, arch):
    r = tiny_classifier_results[arch]
    assert r.test_accuracy >= 0.9, f"{arch}: test accuracy {r.test_accuracy:.3f} (history {r.history})"
    # the recorded accuracy is the kept model's
    _, _, test = tiny_cities
    assert T.evaluate_classifier(r.model, test) == pytest.approx(r.test_accuracy)
    assert r.history["learning_rate"][0] == P.get_preset("tiny").learning_rate


def test_tiny_embeddings_are_unit_norm_and_better_than_chance(tiny_embeddings, tiny_landmarks):
    _, _, test = tiny_landmarks
    chance = 1.0 / len(test.class_names)
    for pooling, model in tiny_embeddings.items():
        assert model.get_layer("pool").__class__.__name__.lower().startswith(
            "globalaverage" if pooling == "avg" else "globalmax")
        e = T.embed_images(model, test.images)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    max_acc = T.knn_accuracy(T.embed_images(tiny_embeddings["max"], test.images), test.labels,
                             T.embed_images(tiny_embeddings["max"], tiny_landmarks[0].images), tiny_landmarks[0].labels)
    assert max_acc > chance + 0.2


# ----------------------------------------------------------------------------------- export
def _loaded(root: Path, name: str):
    versions = E.list_versions(root / name)
    assert versions == [1]
    return tf.saved_model.load(str(root / name / "1"))


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_classifier_matches_keras(tiny_model_root, tiny_classifiers, tiny_cities, arch):
    loaded = _loaded(tiny_model_root, arch)
    _, _, test = tiny_cities
    images = test.images[:16]
    model = tiny_classifiers[arch]
    ref = np.asarray(model(_float(images)))
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert _max_abs(out["probabilities"], ref) <= 1e-5
    assert set(out) == {"probabilities", "logits"}
    np.testing.assert_allclose(tf.nn.softmax(out["logits"]).numpy(), out["probabilities"].numpy(), atol=1e-6)
    flt = loaded.signatures["predict_float"](images=tf.constant(_float(images)))
    assert _max_abs(flt["probabilities"], ref) <= 1e-5
    feats = loaded.signatures["features"](images=tf.constant(images))
    h, w, k = model.get_layer(A.TARGET_LAYERS[arch]).output.shape[1:]
    assert feats["activations"].shape == (16, h, w, k)
    sub = keras.Model(model.inputs, model.get_layer(A.TARGET_LAYERS[arch]).output)
    assert _max_abs(feats["activations"], sub(_float(images))) <= 1e-4
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 96, 96, 3]


def test_model_card_contents(tiny_model_root, tiny_classifier_results):
    from explain import registry

    for name, arch, seed in (("vgg11", "vgg11", 0), ("vgg11_retrained", "vgg11", 1), ("simpler", "simpler", 0)):
        card = E.read_card(tiny_model_root / name / "1")
        assert set(E.CARD_KEYS) <= set(card)
        r = tiny_classifier_results[name]
        assert card["name"] == name and card["kind"] == "classifier" and card["architecture"] == arch
        assert card["class_names"] == ["city_a", "city_b"]
        assert card["input_size"] == [96, 96, 3]
        assert card["target_layer"] == A.TARGET_LAYERS[arch] and card["classifier_layer"] == "predictions"
        assert card["target_shape"] == list(r.model.get_layer(A.TARGET_LAYERS[arch]).output.shape[1:])
        assert card["pooling"] is None and card["projection_layer"] is None
        assert card["seed"] == seed and card["preset"] == "tiny" and card["version"] == 1
        assert card["test_accuracy"] == pytest.approx(r.test_accuracy)
        assert card["val_accuracy"] == pytest.approx(r.val_accuracy)
        assert card["train_accuracy"] == pytest.approx(r.train_accuracy)
        assert card["dataset"]["generator"] == "models.datasets.make_cities"
        assert card["dataset"]["image_size"] == 96 and card["dataset"]["seed"] == 0
        assert card["training"]["optimizer"]["epsilon"] == 1e-8
        assert card["methods"] == registry.names(kind="single_pass", applies_to="classifier")
        loaded = tf.saved_model.load(str(tiny_model_root / name / "1"))
        assert sorted(loaded.signatures) == card["signatures"]
        assert {"serving_default", "predict_float", "features", "ablate_channels", *card["methods"]} == set(card["signatures"])
        assert card["created"][:4].isdigit() and "T" in card["created"]
    resnet = E.read_card(tiny_model_root / "resnet18" / "1")
    assert resnet["pooling"] == "avg"
    emb = E.read_card(tiny_model_root / "embedding_max" / "1")
    assert emb["kind"] == "embedding" and emb["pooling"] == "max" and emb["classifier_layer"] is None
    assert emb["target_layer"] == "block4_conv2" and emb["input_size"] == [64, 64, 3]
    assert emb["class_names"] == ["tower", "arch", "dome", "pyramid"] or len(emb["class_names"]) == 4
    assert emb["dataset"]["generator"] == "models.datasets.make_landmarks"
    assert {"serving_default", "embed"} <= set(emb["signatures"])


def test_model_root_layout(tiny_model_root):
    names = sorted(p.name for p in tiny_model_root.iterdir())
    assert names == sorted(["vgg11", "resnet18", "simple", "simpler", "vgg11_retrained", "embedding_avg",
                            "embedding_max"])
    for name in names:
        d = tiny_model_root / name
        assert [p.name for p in d.iterdir()] == ["1"]
        assert (d / "1" / "saved_model.pb").is_file() and (d / "1" / "variables").is_dir()
        assert (d / "1" / E.CARD_PATH).is_file()


def test_exported_embedding(tiny_model_root, tiny_embeddings, tiny_landmarks):
    _, _, test = tiny_landmarks
    images = test.images[:6]
    for pooling, model in tiny_embeddings.items():
        loaded = _loaded(tiny_model_root, f"embedding_{pooling}")
        ref = np.asarray(model(_float(images)))
        out = loaded.signatures["serving_default"](images=tf.constant(images))
        assert set(out) == {"embedding"} and _max_abs(out["embedding"], ref) <= 1e-5
        emb = loaded.signatures["embed"](images=tf.constant(images))
        assert emb["activations"].shape[1:3] == (8, 8)
        if "similarity_map" in loaded.signatures:
            sim = loaded.signatures["similarity_map"](query_images=tf.constant(images),
                                                      reference_images=tf.constant(images[::-1].copy()))
            cos = np.sum(ref * ref[::-1], axis=1)
            np.testing.assert_allclose(sim["similarity"].numpy(), cos, atol=1e-5)
            np.testing.assert_allclose(sim["query_map"].numpy().sum((1, 2)), cos, atol=1e-5)


def _micro_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return A.simpler(64, 3, 0.0625)


def test_versions_count_up(tmp_path):
    model = _micro_model()
    d = tmp_path / "root" / "m"
    assert E.next_version(d) == 1 and E.list_versions(d) == []
    v1 = E.export_classifier(model, d, class_names=["a", "b", "c"], methods=[])
    v2 = E.export_classifier(model, d, class_names=["a", "b", "c"], methods=[])
    assert (v1.name, v2.name) == ("1", "2")
    (d / "not_a_version").mkdir()
    (d / "7").mkdir()
    (d / "12.5").mkdir()
    assert E.list_versions(d) == [1, 2, 7] and E.next_version(d) == 8
    v8 = E.export_classifier(model, d, methods=[])
    assert v8.name == "8" and E.read_card(v8)["class_names"] == ["class_0", "class_1", "class_2"]
    assert E.read_card(v8)["version"] == 8
    assert not [p for p in d.iterdir() if p.name.startswith(".tmp-")]


def test_a_failed_save_leaves_no_version_and_no_temp_dir(tmp_path, monkeypatch):
    model = _micro_model()
    d = tmp_path / "m"
    E.export_classifier(model, d, methods=[])
    real_save = tf.saved_model.save

    def broken_save(obj, export_dir, signatures=None, **kw):
        real_save(obj, export_dir, signatures=signatures, **kw)  # writes a complete-looking model
        Path(export_dir, "half_written").write_text("x")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    with pytest.raises(OSError, match="simulated"):
        E.export_classifier(model, d, methods=[])
    assert sorted(p.name for p in d.iterdir()) == ["1"]
    # a failure while writing the card (after the save) is cleaned up as well
    monkeypatch.setattr(tf.saved_model, "save", real_save)
    monkeypatch.setattr(E, "_make_card", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("card failed")))
    with pytest.raises(RuntimeError, match="card failed"):
        E.export_classifier(model, d, methods=[])
    assert sorted(p.name for p in d.iterdir()) == ["1"]


def test_export_argument_errors(tmp_path):
    model = _micro_model()
    with pytest.raises(E.ExportError, match=r"class_names \['a'\] has 1 entries; model .* has 3 classes"):
        E.export_classifier(model, tmp_path / "m", class_names=["a"])
    with pytest.raises(E.ExportError, match=r"unknown layer 'conv9'.*accepted"):
        E.export_classifier(model, tmp_path / "m", target_layer="conv9")
    with pytest.raises(E.ExportError, match=r"method 'similarity_map' cannot be exported for a classifier"):
        E.export_classifier(model, tmp_path / "m", methods=["similarity_map"])
    with pytest.raises(E.ExportError, match=r"export it with export_classifier"):
        E.export_embedding(model, tmp_path / "m")
    with pytest.raises(E.ExportError, match=r"export_dir '.*\.hidden' must end in a model name"):
        E.export_classifier(model, tmp_path / ".hidden")
    with pytest.raises(E.ExportError, match=r"card key 'input_size' is computed by the export"):
        E.export_classifier(model, tmp_path / "m", card={"input_size": [1, 1, 3]})
    assert not (tmp_path / "m").exists() or E.list_versions(tmp_path / "m") == []


# ------------------------------------------------------------------------ nested user model
def _nested_model(seed: int = 0) -> tuple[keras.Model, keras.Model]:
    """A user's model: a Functional VGG-style backbone inside a Functional classifier, and the
    same network flattened (fresh layers with copied weights, so each layer has one node)."""
    keras.utils.set_random_seed(seed)
    base = A.vgg11(64, 3, 0.0625)
    backbone = keras.Model(base.inputs, base.get_layer("block5_conv2").output, name="backbone")
    inputs = keras.Input((64, 64, 3), name="images")
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(16, activation="relu", name="head")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    nested = keras.Model(inputs, outputs, name="user_model")
    flat_in = keras.Input((64, 64, 3), name="flat_images")
    y = flat_in
    sources = [*backbone.layers[1:], *(nested.get_layer(n) for n in ("gap", "head", "predictions"))]
    for layer in sources:
        fresh = layer.__class__.from_config(layer.get_config())
        y = fresh(y)
        fresh.set_weights(layer.get_weights())
    flat = keras.Model(flat_in, y, name="user_model_flat")
    return nested, flat


def test_nested_model_export_finds_the_inner_target(tmp_path):
    nested, flat = _nested_model()
    v = E.export_classifier(nested, tmp_path / "user", class_names=["a", "b", "c"])
    card = E.read_card(v)
    assert card["target_layer"] == "backbone/block5_conv2"
    assert card["target_shape"] == [4, 4, 32]
    assert card["classifier_layer"] == "predictions" and card["pooling"] == "avg"
    loaded = tf.saved_model.load(str(v))
    x = np.random.default_rng(3).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    out = loaded.signatures["serving_default"](images=tf.constant(x))
    assert _max_abs(out["probabilities"], nested(_float(x))) <= 1e-5
    feats = loaded.signatures["features"](images=tf.constant(x))
    inner = keras.Model(flat.inputs, flat.get_layer("block5_conv2").output)
    assert _max_abs(feats["activations"], inner(_float(x))) <= 1e-5
    assert _max_abs(flat(_float(x)), nested(_float(x))) <= 1e-6


# -------------------------------------------------------------- Grad-CAM against tf-keras-vis
def _has_gradcam() -> bool:
    from explain import registry

    return "gradcam" in registry.names(kind="single_pass", applies_to="classifier")


def _tf_keras_vis_gradcam(model, images_float, class_index, layer):
    """tf-keras-vis 0.8.7 Grad-CAM at ``layer`` (h×w, not normalised).

    ``seek_penultimate_conv_layer=False``: by default tf-keras-vis replaces a named layer that is
    not a ``Conv`` by the closest ``Conv`` before it — for ResNet18's ``conv5_block2_out`` (the
    ReLU after the residual sum) that is ``conv5_block2_2_conv``, before BN, the sum and the ReLU.
    """
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    gradcam = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    cam = gradcam(CategoricalScore(list(class_index)), images_float, penultimate_layer=layer,
                  seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False)
    return np.asarray(cam)


def _assert_cam_close(ours, ref):
    # 1e-4 absolute, relative to the map's scale when the map is larger than 1
    scale = max(1.0, float(np.max(np.abs(ref))))
    assert ours.shape == ref.shape
    assert _max_abs(ours, ref) <= 1e-4 * scale, (_max_abs(ours, ref), scale)
    assert float(np.max(ref)) > 0  # not a trivial all-zero comparison


@pytest.mark.parametrize("arch", ARCHS)
def test_gradcam_signature_equals_tf_keras_vis(tiny_model_root, tiny_classifiers, tiny_cities, arch):
    if not _has_gradcam():
        pytest.skip("explain.cam (Grad-CAM) is not available")
    _, _, test = tiny_cities
    images = test.images[::10][:6]
    classes = np.array([0, 1, 0, 1, 1, 0][: len(images)], np.int32)
    loaded = _loaded(tiny_model_root, arch)
    out = loaded.signatures["gradcam"](images=tf.constant(images), class_index=tf.constant(classes))
    ref = _tf_keras_vis_gradcam(tiny_classifiers[arch], _float(images), classes, A.TARGET_LAYERS[arch])
    _assert_cam_close(out["raw"].numpy(), ref)
    np.testing.assert_array_equal(out["class_index"].numpy(), classes)
    # -1 means the predicted class
    pred = loaded.signatures["gradcam"](images=tf.constant(images), class_index=tf.constant([-1] * len(images), tf.int32))
    np.testing.assert_array_equal(pred["class_index"].numpy(), np.argmax(pred["probabilities"].numpy(), 1))


def test_gradcam_signature_on_nested_model(tmp_path):
    """tf-keras-vis 0.8.7 cannot take a layer inside a nested model (it builds
    ``Model(inputs, inner_layer.output)``: "not connected to inputs"), so the reference is
    tf-keras-vis on the flattened equivalent of the same network (same layer objects)."""
    if not _has_gradcam():
        pytest.skip("explain.cam (Grad-CAM) is not available")
    nested, flat = _nested_model(seed=4)
    v = E.export_classifier(nested, tmp_path / "user", methods=["gradcam"])
    loaded = tf.saved_model.load(str(v))
    x = np.random.default_rng(5).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    classes = np.array([2, 0, 1], np.int32)
    out = loaded.signatures["gradcam"](images=tf.constant(x), class_index=tf.constant(classes))
    ref = _tf_keras_vis_gradcam(flat, _float(x), classes, "block5_conv2")
    _assert_cam_close(out["raw"].numpy(), ref)
    with pytest.raises(Exception):  # documents why the reference is the flattened model
        _tf_keras_vis_gradcam(nested, _float(x), classes, "block5_conv2")


# ------------------------------------------------------------------------------------- CLI
def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_help_and_errors():
    r = _cli("train", "--help")
    assert r.returncode == 0
    for option in ("--preset", "--out", "--seed", "--only", "--epochs", "--quiet", "--jobs"):
        assert option in r.stdout
    r = _cli("train", "--jobs", "0")
    assert r.returncode == 2 and "--jobs 0 must be a positive integer" in r.stderr
    r = _cli("train", "--jobs", "2", "--strategy", "mirrored")
    assert r.returncode == 2 and "with --strategy mirrored use --jobs 1" in r.stderr
    r = _cli("presets")
    assert r.returncode == 0 and "small-balanced" in r.stdout and "former name of 'small'" in r.stdout
    r = _cli("train", "--preset", "huge")
    assert r.returncode == 2 and "unknown preset 'huge'; accepted: ['paper', 'small', 'small-planted', 'tiny', 'tiny-balanced']" in r.stderr
    r = _cli("train", "--only", "vgg16")
    assert r.returncode == 2 and "unknown model name 'vgg16'" in r.stderr


@pytest.mark.slow  # a CLI training and export in a subprocess (~15 s); `make test-ci-slow`
def test_cli_trains_and_exports_a_subset(tmp_path):
    r = _cli("train", "--preset", "tiny", "--only", "simpler", "--epochs", "1", "--quiet",
             "--out", str(tmp_path / "models"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "simpler" in r.stdout and "test" in r.stdout
    card = json.loads((tmp_path / "models" / "simpler" / "1" / E.CARD_PATH).read_text())
    assert card["preset"] == "tiny" and card["epochs"] == 1


@pytest.mark.slow  # two worker processes through the CLI (~25 s); `make test-ci-slow`
def test_cli_trains_side_by_side_with_jobs(tmp_path):
    r = _cli("train", "--preset", "tiny", "--only", "simple,embedding_max", "--epochs", "1", "--jobs", "2",
             "--out", str(tmp_path / "models"), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training 2 models in 2 processes" in r.stdout and "simple: training (process" in r.stdout
    assert "[2/2]" in r.stdout and "2 models, preset 'tiny'" in r.stdout
    for name, kind in (("simple", "classifier"), ("embedding_max", "embedding")):
        card = json.loads((tmp_path / "models" / name / "1" / E.CARD_PATH).read_text())
        assert card["name"] == name and card["kind"] == kind and card["epochs"] == 1


def test_null_scenes_join_the_training_split_only():
    import dataclasses

    from models import presets
    from models.datasets.ade20k import NAME_TO_INDEX

    p = dataclasses.replace(presets.get_preset("tiny"), n_per_class=40, image_size=32, null_fraction=0.25)
    p0 = dataclasses.replace(p, null_fraction=0.0)
    presets.PRESETS["_null_test"], presets.PRESETS["_null_test0"] = p, p0
    try:
        tr, va, te, cfg = presets.make_city_data("_null_test", seed=3)
        tr0, va0, te0, _ = presets.make_city_data("_null_test0", seed=3)
    finally:
        del presets.PRESETS["_null_test"], presets.PRESETS["_null_test0"]
    n = round(0.25 * len(tr0))
    assert len(tr) == len(tr0) + n and cfg["null_fraction"] == 0.25 and cfg["sizes"]["train"] == len(tr)
    np.testing.assert_array_equal(tr.images[: len(tr0)], tr0.images)  # the city images come first, unchanged
    np.testing.assert_array_equal(va.images, va0.images)
    np.testing.assert_array_equal(te.images, te0.images)
    nulls = tr.subset(np.arange(len(tr0), len(tr)))
    assert all(i.startswith("null/") for i in nulls.ids) and len(set(tr.ids)) == len(tr)
    assert abs(int(np.bincount(nulls.labels, minlength=2)[0]) - n / 2) <= 0.5  # spread evenly over the labels
    planted = [NAME_TO_INDEX[o] for objs in tr.discriminative.values() for o in objs]
    assert not np.isin(nulls.label_maps, planted).any()  # no planted object at all
    assert np.isin(tr0.label_maps, planted).any()
    with pytest.raises(ValueError, match="null_fraction"):
        presets.add_null_scenes(tr0, -0.1, 0)
    assert presets.add_null_scenes(tr0, 0.0, 0) is tr0
