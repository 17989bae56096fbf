"""Causal agreement with twins: hand-computed measures, and the experiment on the tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluation.twins import causal_agreement, causal_importance, object_mass, spearman, summarise_agreement


def test_spearman_hand_computed_with_ties():
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([0.1, 5, 7], [1, 2, 30]) == pytest.approx(1.0)
    # ranks x = (1.5, 1.5, 3), y = (1, 2, 3): centred (-.5, -.5, 1), (-1, 0, 1) -> 1.5 / sqrt(1.5 * 2)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3.0))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # constant: undefined
    assert math.isnan(spearman([1], [2]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_object_mass_and_causal_importance_hand_computed():
    heat = np.array([[[0.1, 0.2], [0.3, 0.4]]])
    labels = np.array([[[5, 5], [7, 9]]])
    assert object_mass(heat, labels, [5, 7, 8]) == pytest.approx(np.array([[0.3, 0.3, 0.0]]))
    delta = causal_importance(np.array([0.9, 0.6]), np.array([[0.5, 0.9], [0.6, 0.1]]))
    assert delta == pytest.approx(np.array([[0.4, 0.0], [0.0, 0.5]]))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        object_mass(heat[0], labels[0], [5])


def test_causal_agreement_hand_computed():
    mass = np.array([[3.0, 1.0, 2.0, 9.0],    # object 3 absent: ranks of (3, 1, 2) vs Δ (0.5, 0.1, 0.2): ρ 1, hit
                     [1.0, 3.0, 2.0, 0.0],    # most mass on object 1, whose Δ is smallest: ρ -1, miss
                     [2.0, 2.0, 0.0, 0.0],    # a tie for the most mass: a miss
                     [5.0, 0.0, 0.0, 0.0]])   # one object present: undefined
    delta = np.array([[0.5, 0.1, 0.2, 0.0],
                      [0.4, 0.0, 0.2, 0.0],
                      [0.3, 0.1, 0.0, 0.0],
                      [0.2, 0.0, 0.0, 0.0]])
    present = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], bool)
    a = causal_agreement(mass, delta, present)
    assert a.rho[:2] == pytest.approx([1.0, -1.0])
    assert math.isnan(a.rho[2])  # masses (2, 2) are constant
    assert np.array_equal(a.top1[:3], [1.0, 0.0, 0.0]) and math.isnan(a.top1[3])
    assert a.chance[:3] == pytest.approx([1 / 3, 1 / 3, 1 / 2])
    s = summarise_agreement(a)
    assert s["rho"] == pytest.approx(0.0) and s["images_rho"] == 2
    assert s["top1"] == pytest.approx(1 / 3) and s["images_top1"] == 3
    assert s["chance"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)


@pytest.fixture(scope="module")
def causal_report(tiny_model_root, tmp_path_factory):
    from evaluation.__main__ import main as evaluation_main
    from serving.server import start_server

    out = tmp_path_factory.mktemp("causal")
    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        assert evaluation_main(["--server", srv.address, "--out", str(out), "--experiments", "causal",
                                "--images-per-class", "8", "--ccg-images-per-class", "2", "--quiet"]) == 0
    return {p.stem: json.loads(p.read_text()) for p in (out / "tables").glob("causal_*.json")}


def test_causal_method_labels_come_from_the_registry():
    from evaluation.experiments.causal import causal_methods

    # the report's labels, now the registry's label_for(params): C-MWP and "occlusion 10" are variants
    assert causal_methods() == [
        ("Grad-CAM", "gradcam", {}), ("Grad-CAM++", "gradcam_plus_plus", {}), ("LayerCAM", "layercam", {}),
        ("saliency", "saliency", {"dilations": 0}), ("C-MWP", "excitation_backprop", {"contrastive": True}),
        ("occlusion 10", "occlusion", {"patch_size_at_224": 10}),
    ]


@pytest.mark.slow  # runs the causal experiment through a server (~70 s); `make test-ci-slow`
def test_causal_experiment_on_the_tiny_models(causal_report):
    agreement = causal_report["causal_agreement"]
    methods = {r[0] for r in agreement["rows"]}
    models = {r[1] for r in agreement["rows"]}
    assert models == {"vgg11", "resnet18", "simple", "simpler"}  # base classifiers only
    assert {"Grad-CAM", "saliency", "occlusion 10"} <= methods
    assert len(agreement["rows"]) == len({(r[0], r[1]) for r in agreement["rows"]})  # one row per method x model
    for method, model, images, rho, top1, chance in agreement["rows"]:
        assert images == (4 if method == "occlusion 10" else 16)  # every tiny scene holds all its 2-3 cues
        assert -1.0 <= rho <= 1.0 and 0.0 <= top1 <= 1.0
        assert 1 / 3 <= chance <= 1 / 2
    # trained models: removing every planted object lowers p(y) on average, for every model
    free = causal_report["causal_object_free"]["rows"]
    assert {r[0] for r in free} == models
    for model, images, accuracy, p_scene, p_empty, chance, _share in free:
        assert images == 16 and chance == pytest.approx(0.5)
        assert p_empty < p_scene, model
    importance = causal_report["causal_importance"]["rows"]
    assert {r[1] for r in importance} == {"skyscraper", "earth", "signboard", "fence", "plant"}
    assert all(-1.0 <= r[3] <= 1.0 for r in importance)


def test_true_class_maps_reuse_the_predicted_class_cache(tiny_model_root, tiny_cities, tmp_path):
    """The causal experiment explains the true class: images the model gets right come from the
    predicted-class explanations the other experiments cached; only the others are explained again."""
    from types import SimpleNamespace

    from evaluation.experiments.causal import true_class_maps
    from evaluation.pipeline import Context, EvalConfig
    from serving.client import ExplanationClient
    from serving.server import start_server

    test = tiny_cities[2]
    data = SimpleNamespace(images=test.images[:6], labels=test.labels[:6], class_names=test.class_names, ids=None)
    idx = np.arange(6)
    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv, \
            ExplanationClient([srv.address]) as client:
        ctx = Context(EvalConfig(out=tmp_path, progress=False), client, data)
        predicted = ctx.explain("simple", "gradcam", idx)  # what another experiment leaves in the cache
        pred = np.asarray(predicted["class_index"]).ravel()
        labels = pred.copy()
        labels[[1, 4]] = 1 - pred[[1, 4]]  # two images "misclassified": their true class is the other one
        hits, misses = ctx.cache.hits, ctx.cache.misses
        heat = true_class_maps(ctx, "simple", "gradcam", {}, idx, labels, "Grad-CAM")
        assert (ctx.cache.hits - hits, ctx.cache.misses - misses) == (6, 2)  # only the two are computed
        direct = {c: client.explain("simple", "gradcam", data.images, class_index=c).heatmap for c in (0, 1)}
    for i in range(6):
        np.testing.assert_allclose(heat[i], direct[int(labels[i])][i], atol=1e-5)
    assert not np.allclose(heat[1], predicted["heatmap"][1], atol=1e-3)  # the true class's map, not the predicted one's
