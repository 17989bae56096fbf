"""The shared checks (explain/checks.py): one implementation, the same messages everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from explain import checks
from explain.checks import ExplainError

SHAPE = (8, 8, 3)


def test_images_numpy_and_tensor_agree():
    u8 = np.arange(2 * 8 * 8 * 3, dtype=np.int64).reshape(2, 8, 8, 3) % 256
    u8 = u8.astype(np.uint8)
    out = checks.check_images(u8, SHAPE)
    assert out.dtype == np.float32 and out.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(out, u8 / 255.0, rtol=1e-6)
    np.testing.assert_allclose(checks.check_image_tensor(u8, SHAPE).numpy(), out, rtol=1e-6)
    one = checks.check_images(u8[0], SHAPE, allow_single=True)
    np.testing.assert_array_equal(one, out[:1])
    assert checks.check_images(np.zeros((0, 8, 8, 3), np.float32), SHAPE, allow_empty=True).shape == (0, 8, 8, 3)


@pytest.mark.parametrize("images, text", [
    (np.zeros((8, 8, 3), np.float32), r"images must have rank 4 \(N, H, W, 3\); got shape \[8, 8, 3\]"),
    (np.zeros((1, 9, 8, 3), np.float32), r"images have shape \[1, 9, 8, 3\]; model 'm' accepts \(N, 8, 8, 3\)"),
    (np.zeros((1, 8, 8, 3), np.int32), r"images dtype int32 is not supported; accepted: uint8, float16, float32, float64"),
    (np.zeros((0, 8, 8, 3), np.float32), r"images must hold at least one image; got an empty batch"),
])
def test_images_refused_with_the_same_message_numpy_and_tensor(images, text):
    with pytest.raises(ExplainError, match=text):
        checks.check_images(images, SHAPE, model="m")
    with pytest.raises(ExplainError, match=text):
        checks.check_image_tensor(images, SHAPE, model="m")


@pytest.mark.parametrize("value, text", [(2.0, r"got values in \[2.0, 2.0\]"), (-0.5, r"got values in \[-0.5, -0.5\]"),
                                         (np.nan, r"got values in \[nan, nan\]")])
def test_float_range_is_checked_for_the_iterative_methods_only(value, text):
    images = np.full((1, 8, 8, 3), value, np.float32)
    with pytest.raises(ExplainError, match=r"float images must be finite and in \[0, 1\]; " + text):
        checks.check_images(images, SHAPE)
    # Single-pass methods take any real input (gradients of a saturated softmax are probed past 1).
    np.testing.assert_array_equal(checks.check_image_tensor(images, SHAPE).numpy(), images)


def test_image_tensor_in_a_graph_lets_unknown_sizes_pass():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def f(x):
        return checks.check_image_tensor(x, SHAPE)

    np.testing.assert_allclose(f(np.full((1, 8, 8, 3), 255, np.uint8)).numpy(), 1.0)
    with pytest.raises(ExplainError, match=r"query must have rank 4"):
        checks.check_image_tensor(np.zeros((8, 3), np.float32), SHAPE, name="query", allow_single=True)


def test_class_index_and_resolve_classes():
    np.testing.assert_array_equal(checks.check_class_index(None, 3, 4), [-1, -1, -1])
    np.testing.assert_array_equal(checks.check_class_index([0, 3, -1], 3, 4), [0, 3, -1])
    np.testing.assert_array_equal(checks.check_class_index(tf.constant(2), 2, 4), [2, 2])
    probabilities = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(checks.resolve_classes(-1, probabilities), [1, 0, 1])
    np.testing.assert_array_equal(checks.resolve_classes([0, -1, 0], probabilities), [0, 0, 0])
    with pytest.raises(ExplainError, match=r"class_index 4 is out of range for model 'm' with 4 classes; "
                                           r"accepted: -1 \(predicted\) or 0\.\.3"):
        checks.check_class_index([0, 4], 2, 4, "m")
    with pytest.raises(ExplainError, match=r"class_index -2 is out of range for the model with 2 classes"):
        checks.resolve_classes(-2, probabilities)
    with pytest.raises(ExplainError, match=r"class_index 1.5 must be an integer .*accepted: -1 \(predicted\) or 0\.\.3"):
        checks.check_class_index(1.5, 1, 4)
    with pytest.raises(ExplainError, match=r"class_index True must be an integer"):
        checks.check_class_index(True, 1, 4)
    with pytest.raises(ExplainError, match=r"class_index has 2 entries for 3 images; accepted: 1 or 3"):
        checks.check_class_index([0, 1], 3, 4)
    with pytest.raises(ExplainError, match=r"class_index must be a scalar or have shape \(2,\)"):
        checks.check_class_index([[0, 1]], 2, 4)
    # Unknown class count: only -1 and up are checked.
    np.testing.assert_array_equal(checks.check_class_index(10**6, 1, None), [10**6])
    with pytest.raises(ExplainError, match=r"accepted: -1 \(predicted\) or a class index >= 0"):
        checks.check_class_index(-3, 1, None)


def test_layer_and_batch_size():
    paths = ["conv1", "backbone/conv2", "backbone/conv3", "head/conv3"]
    assert checks.check_layer("conv2", paths) == "backbone/conv2"
    assert checks.check_layer("head/conv3", paths) == "head/conv3"
    with pytest.raises(ExplainError, match=r"layer name 'conv3' is ambiguous in model 'm'; use one of the paths "
                                           r"\['backbone/conv3', 'head/conv3'\]"):
        checks.check_layer("conv3", paths, "m")
    with pytest.raises(ExplainError, match=r"unknown layer 'nope' in the model; accepted: \['conv1', "):
        checks.check_layer("nope", paths)
    with pytest.raises(ExplainError, match=r"target_layer 3 must be a layer name or path; accepted: \['conv1'"):
        checks.check_layer(3, paths, what="target_layer")
    assert checks.check_batch_size(np.int64(4)) == 4
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ExplainError, match=rf"batch_size {bad!r} must be an integer >= 1"):
            checks.check_batch_size(bad)


def test_old_names_are_the_shared_checks():
    """The names other modules import keep working and share the implementation."""
    from explain import cam, iterative, occlusion, view

    assert view.ExplainError is ExplainError
    assert iterative.resolve_classes is checks.resolve_classes is occlusion.resolve_classes
    assert iterative.check_batch_size is checks.check_batch_size
    np.testing.assert_array_equal(cam.check_class_index(-1, 2, 3).numpy(), [-1, -1])
    with pytest.raises(ExplainError, match=r"float images must be finite and in \[0, 1\]"):
        iterative.check_batch(np.full((1, 8, 8, 3), -1.0), SHAPE)
