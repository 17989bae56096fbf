"""Every single-pass method exported as a SavedModel signature equals the in-process function.

The SavedModels are loaded from disk with ``tf.saved_model.load`` (the exported tiny models of the
session fixture) and compared with the registry's functions run on the same trained Keras models,
within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from explain import registry
from explain.view import ModelView

ATOL = 1e-5
#: Contrastive excitation backprop subtracts two nearly equal signals (the signal and the one of
#: the negated classifier), so the float32 rounding of the graph and of the eager run differs by
#: up to about 1e-4 of the normalised map where the difference is small.
ATOL_CONTRASTIVE = 2e-4
#: Integrated Gradients sums 64 gradients along a path; a path point that sits on a ReLU kink
#: rounds differently in the SavedModel graph and the eager run, flipping a unit on or off, so a
#: few pixels of the normalised map differ by up to ~1e-2 (measured; the map's other pixels agree
#: to 1e-5).
ATOL_IG = 2e-2
#: SmoothGrad averages 20 gradients at noisy points, with the same ReLU-kink rounding: 11 of 36,864
#: pixels of the normalised map differed by up to 7.6e-5 (measured); the others agree to 1e-5,
#: which the test checks too (at most 0.5% of the pixels beyond ATOL).
ATOL_SMOOTHGRAD = 1e-3


def _latest(root, name):
    versions = sorted(int(p.name) for p in (root / name).iterdir() if p.name.isdigit())
    return tf.saved_model.load(str(root / name / str(versions[-1])))


@pytest.fixture(scope="module")
def city_images(tiny_cities):
    return tiny_cities[2].images[:4]


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_classifier_signatures_equal_in_process(arch, tiny_model_root, tiny_classifiers, city_images):
    loaded = _latest(tiny_model_root, arch)
    view = ModelView(tiny_classifiers[arch])
    images = tf.convert_to_tensor(city_images)
    x = tf.cast(images, tf.float32) / 255.0
    methods = registry.names(kind="single_pass", applies_to="classifier")
    assert {"gradcam", "gradcam_plus_plus", "layercam", "saliency", "excitation_backprop"} <= set(methods)
    assert set(methods) <= set(loaded.signatures)
    n = len(city_images)
    # class index: the predicted class for half, a fixed class for the other half
    class_index = tf.constant([-1, 0, 1, -1][:n], tf.int32)
    for name in methods:
        extra = {"class_index": class_index}
        if name == "saliency":
            extra["dilations"] = tf.constant(2, tf.int32)
        if name == "excitation_backprop":
            extra["contrastive"] = tf.constant(True)
        signature = loaded.signatures[name]
        for key, spec in signature.structured_input_signature[1].items():
            if key not in ("images", *extra):  # the method's other inputs at their declared defaults
                extra[key] = tf.constant(registry.get(name).params[key], spec.dtype)
        got = signature(images=images, **extra)
        want = registry.get(name).fn(view, x, **extra)
        atol = {"excitation_backprop": ATOL_CONTRASTIVE, "integrated_gradients": ATOL_IG,
                "smoothgrad": ATOL_SMOOTHGRAD}.get(name, ATOL)
        for key in ("heatmap", "heatmap_upsampled", "class_index"):
            np.testing.assert_allclose(got[key].numpy(), np.asarray(want[key]), atol=atol, err_msg=f"{arch}/{name}/{key}")
        if name == "smoothgrad":
            off = np.abs(got["heatmap"].numpy() - np.asarray(want["heatmap"])) > ATOL
            assert off.mean() <= 0.005, f"{arch}/smoothgrad: {off.sum()} pixels beyond {ATOL}"
        assert got["heatmap"].numpy().max() > 0.5, f"{arch}/{name} gives an empty map"
    probs = loaded.signatures["serving_default"](images=images)["probabilities"].numpy()
    np.testing.assert_allclose(probs, view.run(x).probabilities.numpy(), atol=ATOL)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_similarity_signature_equals_in_process(pooling, tiny_model_root, tiny_embeddings, tiny_landmarks):
    loaded = _latest(tiny_model_root, f"embedding_{pooling}")
    view = ModelView(tiny_embeddings[pooling])
    test = tiny_landmarks[2].images
    query, reference = tf.convert_to_tensor(test[:4]), tf.convert_to_tensor(test[4:8])
    got = loaded.signatures["similarity_map"](query_images=query, reference_images=reference)
    want = registry.get("similarity_map").fn(view, query_images=query, reference_images=reference)
    for key in ("query_map", "reference_map", "similarity"):
        np.testing.assert_allclose(got[key].numpy(), np.asarray(want[key]), atol=ATOL, err_msg=f"{pooling}/{key}")
    # each map sums to the cosine similarity of the two embeddings, in both directions
    emb_q = loaded.signatures["embed"](images=query)["embedding"].numpy()
    emb_r = loaded.signatures["embed"](images=reference)["embedding"].numpy()
    cos = np.sum(emb_q * emb_r, axis=1) / (np.linalg.norm(emb_q, axis=1) * np.linalg.norm(emb_r, axis=1))
    np.testing.assert_allclose(got["query_map"].numpy().sum(axis=(1, 2)), cos, atol=ATOL)
    np.testing.assert_allclose(got["reference_map"].numpy().sum(axis=(1, 2)), cos, atol=ATOL)
