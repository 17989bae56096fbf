"""Issue 13's new methods against other libraries.

* tf-keras-vis 0.8.7 (installed in the project's venv) has Guided Backpropagation, as a model
  modifier (``GuidedBackpropagation``) under its ``Saliency``: equal to float round-off.
* Xplique 2.0.2 pins ``tensorflow<=2.20``, so it runs in its own venv ``.venv-xplique`` (``make xplique-venv``,
  which ``.ci/run`` runs; see ``docs/methods/gradients.md``) through ``bench/xplique_run.py``; the test is marked
  ``slow`` and skipped when that venv is missing. Integrated Gradients and occlusion are
  deterministic and must agree to float round-off (Xplique's IG averages over colour channels,
  its ``steps`` counts points, not intervals); RISE draws its masks from its own generator, so
  the two maps of the same model must agree statistically (Pearson correlation > 0.9 at 3000 masks).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from explain import guided  # noqa: E402
from explain import integrated_gradients as ig  # noqa: E402
from explain.backend import KerasBackend  # noqa: E402
from explain.occlusion import occlusion  # noqa: E402
from explain.rise import rise  # noqa: E402
from explain.view import ModelView  # noqa: E402

L = keras.layers
ROOT = Path(__file__).resolve().parents[1]
XPLIQUE_PYTHON = ROOT / ".venv-xplique" / "bin" / "python"


def localised_model(size: int = 32, seed: int = 0) -> tuple[keras.Model, keras.Model]:
    """A ReLU CNN whose class-0 logit reads one rectangle of the image; (softmax model, logit model)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3))
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    logits = L.Dense(3, name="predictions")(L.Flatten()(x))
    model = keras.Model(inp, L.Activation("softmax")(logits))
    dense = model.get_layer("predictions")
    kernel = np.zeros((size, size, 4, 3), np.float32)
    kernel[size // 8:size // 2, size // 2:size - size // 8, :, 0] = 40.0 / size**2
    kernel[..., 1:] = np.random.default_rng(seed).normal(0, 0.2 / size, (size, size, 4, 2))
    dense.set_weights([kernel.reshape(-1, 3), np.array([-0.5, 0.0, 0.0], np.float32)])
    return model, keras.Model(inp, logits)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    low = np.random.default_rng(seed).random((n, 6, 6, 3)).astype(np.float32)
    return np.clip(tf.image.resize(low, (size, size)).numpy(), 0, 1).astype(np.float32)


def test_guided_backprop_equals_tf_keras_vis():
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation, ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model, _ = localised_model()
    x = smooth_images(3, 32, 1)
    classes = [0, 1, 2]
    ours = guided.guided_backprop(model, x, class_index=classes)
    vis = Saliency(model, model_modifier=[ReplaceToLinear(), GuidedBackpropagation()], clone=True)
    theirs = np.asarray(vis(CategoricalScore(classes), x, normalize_map=False))  # max_colour |∂y_c/∂x|
    scale = np.abs(ours["raw"]).max()
    np.testing.assert_allclose(ours["raw"], theirs, atol=1e-5 * scale, rtol=1e-4)
    plain = np.abs(np.asarray(Saliency(model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(classes), x, normalize_map=False)))
    assert not np.allclose(plain, theirs, atol=1e-3 * scale)  # the guided rule matters for this model


@pytest.mark.slow
@pytest.mark.skipif(not XPLIQUE_PYTHON.exists(), reason="no .venv-xplique (Xplique 2.0.2 pins tensorflow<=2.20)")
def test_ig_rise_occlusion_agree_with_xplique(tmp_path):
    model, logits_model = localised_model()
    x = smooth_images(3, 32, 2)
    classes = np.zeros(3, np.int64)
    model.save(tmp_path / "model.keras")
    logits_model.save(tmp_path / "logits.keras")
    np.savez(tmp_path / "in.npz", images=x, classes=classes, ig_steps=32, rise_masks=3000, rise_grid=4,
             occ_patch=4, occ_value=0.5, repeats=0)
    done = subprocess.run([str(XPLIQUE_PYTHON), str(ROOT / "bench" / "xplique_run.py"), str(tmp_path / "model.keras"),
                           str(tmp_path / "logits.keras"), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")

    ours_ig = ig.integrated_gradients(model, x, class_index=classes, steps=32)["attributions"]
    scale = np.abs(ours_ig).max()
    np.testing.assert_allclose(ours_ig.mean(-1), theirs["ig"][..., 0], atol=1e-4 * scale)

    backend = KerasBackend(ModelView(model))
    occ = occlusion(backend, x, class_index=classes, patch_size_at_224=28, stride=4, fill=0.5)  # 4-px patches
    assert int(occ["patch_size"]) == 4
    np.testing.assert_allclose(occ["raw"], theirs["occlusion"][..., 0], atol=1e-6)

    ours_rise = rise(backend, x, class_index=classes, n_masks=3000, grid=4, seed=0)["raw"]
    for n in range(3):
        r = np.corrcoef(ours_rise[n].ravel(), theirs["rise"][n].ravel().astype(np.float64))[0, 1]
        assert r > 0.9, (n, r)
