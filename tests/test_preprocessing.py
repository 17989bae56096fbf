"""Input preprocessing modes against keras.applications' own ``preprocess_input``, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from models.preprocessing import MODES, Preprocessing, PreprocessingError, resolve_preprocessing


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3)).astype(np.uint8)


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch"])
def test_modes_equal_keras_preprocess_input(mode, pixels):
    from keras.applications import imagenet_utils

    ours = Preprocessing(mode).apply_numpy(pixels.astype(np.float32) / 255.0)
    ref = imagenet_utils.preprocess_input(pixels.astype(np.float32), mode=mode)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    # And the TensorFlow op equals the numpy one.
    import tensorflow as tf

    graph = Preprocessing(mode).apply(tf.constant(pixels.astype(np.float32) / 255.0)).numpy()
    np.testing.assert_allclose(graph, ours, rtol=0, atol=1e-5)


def test_unit_raw_and_custom(pixels):
    u = pixels.astype(np.float32) / 255.0
    np.testing.assert_array_equal(Preprocessing("unit").apply_numpy(u), u)
    np.testing.assert_allclose(Preprocessing("raw").apply_numpy(u), pixels.astype(np.float32), atol=1e-4)
    mean, std = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)
    custom = resolve_preprocessing({"mean": mean, "std": std})
    expected = (pixels.astype(np.float32) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(custom.apply_numpy(u), expected, atol=1e-4)
    assert custom.mode == "custom"


def test_card_round_trip():
    for mode in ("unit", "raw", "tf", "caffe", "torch"):
        p = Preprocessing(mode)
        again = resolve_preprocessing(p.to_card())
        assert again == p
        np.testing.assert_array_equal(again.scale, p.scale)
    custom = resolve_preprocessing({"mean": [1, 2, 3], "std": [4, 5, 6]})
    assert resolve_preprocessing(custom.to_card()) == custom
    assert Preprocessing("caffe").to_card()["channel_order"] == "BGR"


def test_errors_name_the_value_and_the_choices():
    with pytest.raises(PreprocessingError, match=r"preprocessing 'imagenet' is not supported; accepted: \['unit', 'raw'"):
        resolve_preprocessing("imagenet")
    with pytest.raises(PreprocessingError, match="needs both mean and std"):
        resolve_preprocessing({"mode": "custom", "mean": [1, 2, 3]})
    with pytest.raises(PreprocessingError, match=r"std \[1.0, 0.0, 1.0\] must be positive"):
        resolve_preprocessing({"mean": [1, 2, 3], "std": [1, 0, 1]})
    with pytest.raises(PreprocessingError, match=r"mean \[1.0, 2.0\] must be three finite numbers"):
        resolve_preprocessing({"mean": [1, 2], "std": [1, 1, 1]})
    with pytest.raises(PreprocessingError, match="mean and std go with preprocessing 'custom', not 'tf'"):
        Preprocessing("tf", mean=(1.0, 2.0, 3.0), std=(1.0, 1.0, 1.0))
    assert list(MODES) == ["unit", "raw", "tf", "caffe", "torch", "custom"]
