"""XRAI: the greedy region ranking by hand, against PAIR's ``saliency`` package, and on a model."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
pytest.importorskip("skimage")

from explain.backend import KerasBackend  # noqa: E402
from explain.view import ModelView  # noqa: E402
from explain.xrai import _greedy, xrai, xrai_regions  # noqa: E402


def test_greedy_by_hand():
    attr = np.array([[4.0, 4.0, 1.0, 1.0, -2.0, 0.0]])
    regions = [
        np.array([[1, 1, 1, 1, 0, 0]], bool),  # mean 2.5
        np.array([[1, 1, 0, 0, 0, 0]], bool),  # mean 4  -> first
        np.array([[0, 0, 0, 1, 1, 1]], bool),  # mean -1/3, after step 1: (1 - 2 + 0)/3
    ]
    gains, order = _greedy(attr, regions)
    # Step 0: region 1 (gain 4). Step 1: region 0 adds pixels 2, 3 (gain 1). Step 2: region 2
    # adds pixels 4, 5 (gain -1).
    np.testing.assert_array_equal(order, [[0, 0, 1, 1, 2, 2]])
    np.testing.assert_allclose(gains, [[4, 4, 1, 1, -1, -1]])
    # A pixel no region covers gets the lowest gain minus one.
    gains, order = _greedy(attr, regions[:2])
    np.testing.assert_allclose(gains, [[4, 4, 1, 1, 0, 0]])
    np.testing.assert_array_equal(order, [[0, 0, 1, 1, -1, -1]])


def _image(seed=0, size=32):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (4, 4, 3)).astype(np.float32)
    return np.clip(tf.image.resize(coarse[None], (size, size)).numpy()[0] + rng.normal(0, 0.03, (size, size, 3)), 0, 1).astype(np.float32)


def test_greedy_equals_pair_saliency():
    core = pytest.importorskip("saliency.core")
    image = _image(1)
    regions = xrai_regions(image)
    attr = np.random.default_rng(2).normal(size=image.shape[:2])
    ours, order = _greedy(attr, regions)
    theirs, _ = core.XRAI._xrai(attr, regions, min_pixel_diff=1, integer_segments=False)
    covered = order >= 0
    assert covered.mean() > 0.99
    np.testing.assert_allclose(ours[covered], theirs[covered], rtol=1e-6)


@pytest.fixture(scope="module")
def backend():
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    return KerasBackend(ModelView(model))


def test_xrai_regions_are_nested_greedy_steps(backend):
    images = np.stack([_image(3), _image(4)])
    out = xrai(backend, images, class_index=[0, 2], steps=64)
    assert np.all(out["approximation_error"] < 0.01), out["approximation_error"]
    for i in range(len(images)):
        attr, order, raw = out["attributions"][i], out["order"][i], out["raw"][i]
        candidates = xrai_regions(images[i])
        selected = np.zeros(attr.shape, bool)
        cumulative = [0.0]
        for step in range(order.max() + 1):
            new = order == step
            # The step adds exactly one candidate minus what was selected, and it is the
            # candidate with the highest mean attribution over its new pixels.
            gains = [attr[r & ~selected].mean() for r in candidates if (r & ~selected).any()]
            assert any(np.array_equal(r & ~selected, new) for r in candidates)
            np.testing.assert_allclose(raw[new], attr[new].mean(), rtol=1e-5)
            assert attr[new].mean() == pytest.approx(max(gains), rel=1e-6)
            selected |= new  # nested: the selection only grows
            cumulative.append(float(attr[selected].sum()))
            if attr[new].mean() > 0:
                assert cumulative[-1] > cumulative[-2]
        assert selected.all()
        assert out["heatmap"][i].max() == pytest.approx(1.0, abs=1e-3)  # (raw - min) / (max - min + 1e-7)
