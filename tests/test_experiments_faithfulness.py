"""The faithfulness experiment's helpers on a real exported SavedModel (the cascading randomisation test)
and, marked slow, the experiment through an embedded server on the tiny model root."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import sanity as sa
from evaluation.experiments import faithfulness as fx

SIZE = 64


@pytest.fixture(scope="module")
def exported_simpler(tmp_path_factory):
    import keras

    from models.architectures import build_classifier
    from models.export import export_classifier

    keras.utils.set_random_seed(3)
    model = build_classifier("simpler", SIZE, 2, 0.25)
    path = export_classifier(model, tmp_path_factory.mktemp("root") / "simpler", class_names=["a", "b"],
                             methods=["gradcam", "saliency", "integrated_gradients"])
    rng = np.random.default_rng(0)
    low = rng.random((4, 8, 8, 3))
    images = (np.kron(low, np.ones((1, 8, 8, 1))) * 255).astype(np.uint8)  # smooth blocky images
    return model, path, images


def test_measure_depths_and_random_maps():
    assert fx.measure_depths(3) == [1, 2, 3]
    assert fx.measure_depths(41, 8) == [1, 7, 12, 18, 24, 30, 35, 41]
    assert fx.measure_depths(0) == []
    r = fx.random_maps(["a/1", "b/2"], (4, 5), seed=0)
    assert r.shape == (2, 4, 5) and np.array_equal(r, fx.random_maps(["a/1", "b/2"], (4, 5), seed=0))
    # an image's noise depends on its id, not on its place in the sample (the cached curves stay valid)
    assert np.array_equal(fx.random_maps(["c/3", "b/2"], (4, 5), seed=0)[1], r[1])
    assert not np.array_equal(r[0], r[1]) and not np.array_equal(fx.random_maps(["a/1"], (4, 5), seed=1)[0], r[0])
    specs = fx.method_specs(["gradcam", "occlusion", "rise", "perturbation_mask"], (96, 96, 3), 5)
    assert specs == [("gradcam", "gradcam", {}), ("occlusion 50", "occlusion", {"patch_size_at_224": 50}),
                     ("rise 1000", "rise", {"n_masks": 1000}),
                     ("perturbation", "perturbation_mask", {"iterations": 100, "seed": 5})]


def test_randomised_gradcam_correlates_less_than_the_original_with_itself(exported_simpler):
    from explain.cam import gradcam

    model, path, images = exported_simpler
    y = np.argmax(model(images.astype(np.float32) / 255.0).numpy(), axis=1)
    maps, depths, layers = fx.randomisation_maps(path, images, y, ["gradcam", "saliency"], seed=0)
    assert layers[0] == "predictions" and depths[0] == 1 and depths[-1] == len(layers)
    assert maps["gradcam"].shape == (1 + len(depths), 4, SIZE, SIZE)
    # depth 0 is the served graph of the unrandomised model: the eager Grad-CAM of the Keras model
    eager = gradcam(model, images.astype(np.float32) / 255.0, class_index=y)["heatmap_upsampled"]
    np.testing.assert_allclose(maps["gradcam"][0], eager, atol=1e-4)
    for method in ("gradcam", "saliency"):
        s = fx.randomisation_scores(maps[method])
        assert np.all(s["spearman"][0] == 1.0) and np.allclose(s["ssim"][0], 1.0, atol=1e-12)
        full_sp = np.nanmean(s["spearman"][-1])
        assert full_sp < 0.9, (method, s["spearman"][-1])  # all layers re-initialised: the map changed
        assert s["ssim"][-1].mean() < 0.9
    # the files are untouched: a second load starts from the same original maps
    again, _, _ = fx.randomisation_maps(path, images, y, ["gradcam"], depths=[1], seed=0)
    np.testing.assert_array_equal(again["gradcam"][0], maps["gradcam"][0])
    np.testing.assert_array_equal(again["gradcam"][1], maps["gradcam"][1])  # same seed, same randomisation
    with pytest.raises(ValueError, match=r"depths \[99\] are out of range"):
        fx.randomisation_maps(path, images, y, ["gradcam"], depths=[99])
    assert sa.spearman(maps["gradcam"][0], maps["gradcam"][0]).tolist() == [1.0] * 4


def test_randomisation_passes_the_given_method_inputs(exported_simpler):
    """``params`` reach the served signature (Integrated Gradients at 16 steps, as the experiment asks);
    the other inputs keep their declared defaults (64 steps, black baseline)."""
    from explain.integrated_gradients import integrated_gradients

    model, path, images = exported_simpler
    y = np.argmax(model(images.astype(np.float32) / 255.0).numpy(), axis=1)
    assert fx.RANDOMISATION_PARAMS == {"integrated_gradients": {"steps": 16}}
    cases = {"default": {}, "given": {"steps": 16, "baseline": "uniform", "seed": 3}}
    maps = {case: fx.randomisation_maps(path, images, y, ["integrated_gradients"], depths=[1], seed=0,
                                        params={"integrated_gradients": given} if given else None
                                        )[0]["integrated_gradients"][0] for case, given in cases.items()}
    for case, given in cases.items():
        eager = integrated_gradients(model, images.astype(np.float32) / 255.0, class_index=y, **given)
        np.testing.assert_allclose(maps[case], eager["heatmap_upsampled"], atol=1e-4, err_msg=case)
    assert np.abs(maps["given"] - maps["default"]).max() > 1e-2  # the given inputs show in the maps


@pytest.mark.slow
def test_faithfulness_experiment_on_the_tiny_model_root(tiny_model_root, tmp_path):
    from evaluation.__main__ import main as evaluation_main

    out = tmp_path / "report"
    assert evaluation_main(["--model-root", str(tiny_model_root), "--out", str(out), "--experiments", "faithfulness",
                            "--ccg-images-per-class", "2", "--batch-size", "8", "--quiet"]) == 0
    auc = json.loads((out / "tables" / "faithfulness_auc.json").read_text())
    rows = {(r[0], r[1]): r for r in auc["rows"]}
    assert {m for m, _ in rows} == {"vgg11", "resnet18", "simple", "simpler"}
    assert all(0.0 <= r[3] <= 1.0 and 0.0 <= r[4] <= 1.0 for r in auc["rows"])
    assert ("vgg11", "random") in rows and ("vgg11", "gradcam") in rows
    col = {c: i for i, c in enumerate(auc["columns"])}
    for r in auc["rows"]:  # every interval holds its estimate; only methods are compared with random
        assert r[col["deletion 95% low"]] <= r[col["deletion AUC"]] + 1e-12 <= r[col["deletion 95% high"]] + 2e-12
        assert r[col["insertion 95% low"]] <= r[col["insertion AUC"]] + 1e-12 <= r[col["insertion 95% high"]] + 2e-12
        expected = {"–"} if r[1] == "random" else {"holds", "does not hold", "inconclusive"}
        assert r[col["deletion beats random"]] in expected and r[col["insertion beats random"]] in expected
    per_image = json.loads((out / "tables" / "faithfulness_auc_images.json").read_text())["rows"]
    assert len(per_image) == 4 * len(auc["rows"])  # 2 images per class, 2 classes, every (model, method)
    mean_gradcam = np.mean([r[3] for r in per_image if r[0] == "vgg11" and r[1] == "gradcam"])
    assert mean_gradcam == pytest.approx(rows[("vgg11", "gradcam")][3])
    rnd = json.loads((out / "tables" / "faithfulness_randomisation.json").read_text())["rows"]
    depth0 = [r for r in rnd if r[2] == 0]
    assert depth0 and all(r[4] == 1.0 and r[5] == pytest.approx(1.0) for r in depth0)
    assert (out / "figures" / "faithfulness_randomisation_vgg11.png").exists()
