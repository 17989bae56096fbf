"""Warm-up of every signature when a version loads: the methods' scalar parameters get their
declared defaults, not zeros (Integrated Gradients' ``steps`` accepts ``1..1024``; with zero its
warm-up failed and the signature stayed cold — seen on every ``small`` model at evaluation start).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 64


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    export = pytest.importorskip("models.export")
    import keras

    from models.architectures import build_classifier

    keras.utils.set_random_seed(0)
    clf = build_classifier("simpler", SIZE, 2, 0.25)
    root = tmp_path_factory.mktemp("warmup_models")
    return export.export_classifier(clf, root / "clf", class_names=["a", "b"],
                                    methods=["gradcam", "integrated_gradients"])


def test_declared_defaults_of_a_method_and_of_other_signatures():
    from serving.servable import _declared_defaults

    ig = _declared_defaults("integrated_gradients")
    assert ig["steps"] == 64 and ig["baseline"] == "black" and ig["seed"] == 0
    assert _declared_defaults("serving_default") == {}


def test_every_signature_warms_up_without_a_warning(version_dir, caplog):
    from serving.servable import load_version, warm_up_signature

    with caplog.at_level(logging.WARNING, logger="serving.registry"):
        sv = load_version("clf", 1, version_dir, warmup="all")
    failed = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert failed == []
    assert "integrated_gradients" in sv.signatures
    warm_up_signature(sv, "integrated_gradients")  # raised InvalidArgument (steps = 0) before


def test_integrated_gradients_with_zero_steps_is_still_rejected(version_dir):
    """The fix is in the warm-up, not in the method: ``steps = 0`` stays an error."""
    import tensorflow as tf

    from serving.servable import load_version

    sv = load_version("clf", 1, version_dir, warmup="none")
    fn = sv.signatures["integrated_gradients"]
    images = tf.zeros([1, SIZE, SIZE, 3], tf.uint8)
    ok = fn(images=images, class_index=tf.constant([0], tf.int32), steps=tf.constant(8, tf.int32),
            baseline=tf.constant("black"), seed=tf.constant(0, tf.int32))
    assert np.isfinite(ok["heatmap"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError):
        fn(images=images, class_index=tf.constant([0], tf.int32), steps=tf.constant(0, tf.int32),
           baseline=tf.constant("black"), seed=tf.constant(0, tf.int32))
