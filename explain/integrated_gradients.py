"""Integrated Gradients (Sundararajan, Taly & Yan 2017), in-graph and batched over the steps.

For an image ``x`` (float32 in ``[0, 1]``, before the model's input preprocessing), a baseline
``x'`` and the **logit** ``f = y_c`` of the explained class::

    IG_i(x) = (x_i − x'_i) · ∫₀¹ ∂f(x' + α(x − x'))/∂x_i dα
            ≈ (x_i − x'_i) · Σ_{s=0}^{S} w_s · ∂f(x' + (s/S)(x − x'))/∂x_i

with the trapezoid rule over ``S = steps`` intervals (``S + 1`` points, ``w_0 = w_S = 1/(2S)``,
``w_s = 1/S`` otherwise). Completeness, ``Σ_i IG_i = f(x) − f(x')``, holds up to the quadrature
error, returned per image as ``approximation_error = |Σ_i IG_i − (f(x) − f(x'))| / |f(x) − f(x')|``.

Baselines (``baseline``):

* ``"black"`` — all zeros in ``[0, 1]`` image space (the model's preprocessing is applied to it
  like to any image);
* ``"blurred"`` — the image under a Gaussian blur of ``σ = max(1, 10·H/224)`` pixels (reflect
  padding, kernel radius ``3σ``);
* ``"uniform"`` — one ``U[0, 1)`` noise image drawn with ``tf.random.stateless_uniform`` from
  ``seed``, shared by every image of the batch (so a result does not depend on how requests were
  batched together).

Memory: the ``(S + 1)·N`` interpolated images are never built at once. A ``tf.while_loop``
handles ``max(1, CHUNK_IMAGES // N)`` points per iteration, i.e. about :data:`CHUNK_IMAGES`
images per forward/backward pass.

Outputs (single-pass convention): ``attributions`` ``(N, H, W, 3)`` the signed IG;
``raw`` ``(N, H, W)`` = ``|Σ_colour IG|``; ``heatmap`` = ``heatmap_upsampled`` = ``raw`` normalised
per image; ``instance_output`` ``f(x)``, ``baseline_output`` ``f(x')`` and ``approximation_error``
``(N,)``; ``logits``, ``probabilities``, ``class_index``.

Entry points: registry ``integrated_gradients`` (``single_pass``; inputs ``class_index`` int32
``(N,)``, ``steps`` int32 scalar ``1..1024``, ``baseline`` string scalar, ``seed`` int32 scalar)
→ :func:`integrated_gradients_single_pass`; eager :func:`integrated_gradients`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tensorflow as tf

from explain import registry
from explain.cam import check_class_index, compiled, get_view
from explain.params import check_choice, check_int, choice_index, int_in_range
from explain.resize import normalize_tf
from explain.view import ExplainError, ModelView, check_images

__all__ = ["integrated_gradients", "integrated_gradients_single_pass", "baseline_images", "BASELINES",
           "MAX_STEPS", "CHUNK_IMAGES"]

BASELINES = ("black", "blurred", "uniform")
MAX_STEPS = 1024
#: About this many interpolated images go through one forward/backward pass.
CHUNK_IMAGES = 32
#: Gaussian blur of the ``"blurred"`` baseline: σ at 224 px, scaled with the image height.
BLUR_SIGMA_AT_224 = 10.0


def _gaussian_blur(images: tf.Tensor, height: int, width: int) -> tf.Tensor:
    sigma = max(1.0, BLUR_SIGMA_AT_224 * height / 224.0)
    radius = min(int(math.ceil(3 * sigma)), height - 1, width - 1)
    if radius < 1:
        return images
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).astype(np.float32)
    x = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    kv = tf.constant(np.tile(k.reshape(-1, 1, 1, 1), (1, 1, 3, 1)))
    kh = tf.constant(np.tile(k.reshape(1, -1, 1, 1), (1, 1, 3, 1)))
    x = tf.nn.depthwise_conv2d(x, kv, strides=[1, 1, 1, 1], padding="VALID")
    return tf.nn.depthwise_conv2d(x, kh, strides=[1, 1, 1, 1], padding="VALID")


def baseline_images(images: tf.Tensor, baseline: Any = "black", seed: Any = 0) -> tf.Tensor:
    """The baseline ``x'`` of each image (``"black"``, ``"blurred"`` or ``"uniform"``; see the module)."""
    images = tf.convert_to_tensor(images, tf.float32)
    h, w = int(images.shape[1]), int(images.shape[2])
    which = choice_index("baseline", baseline, BASELINES)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    branches = [
        lambda: tf.zeros_like(images),
        lambda: _gaussian_blur(images, h, w),
        lambda: tf.zeros_like(images) + tf.random.stateless_uniform(
            [1, h, w, 3], seed=tf.stack([seed, tf.constant(1301, tf.int32)]), dtype=tf.float32),
    ]
    return tf.switch_case(which, branches)


def _logit(view: ModelView, x: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
    return tf.gather(view.run(x).logits, idx, axis=1, batch_dims=1)


def integrated_gradients_single_pass(
    view: ModelView,
    images: tf.Tensor,
    class_index: tf.Tensor | int | None = -1,
    steps: tf.Tensor | int = 64,
    baseline: tf.Tensor | str = "black",
    seed: tf.Tensor | int = 0,
    baseline_image: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Graph-compatible Integrated Gradients of the class logit (see the module docstring).

    ``baseline_image`` (float32 ``(H, W, 3)`` or ``(N, H, W, 3)`` in ``[0, 1]``), when given,
    replaces ``baseline``/``seed``: the path starts from it (e.g. the ``inputBaselines`` of a
    model's explanation metadata).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    steps = int_in_range("steps", steps, 1, MAX_STEPS)
    logits = view.run(images).logits
    if logits is None:
        raise ExplainError(f"integrated_gradients needs a classifier; model {view.model.name!r} has no classifier layer")
    idx = view.resolve_class_index(class_index, logits)
    if baseline_image is None:
        base = baseline_images(images, baseline, seed)
    else:
        base = tf.zeros_like(images) + tf.convert_to_tensor(baseline_image, tf.float32)
    diff = images - base
    n = tf.shape(images)[0]
    per_chunk = tf.maximum(1, CHUNK_IMAGES // n)
    points = steps + 1
    s_float = tf.cast(steps, tf.float32)
    idx_rep = tf.tile(idx, [per_chunk])

    def body(start, total):
        s = start + tf.range(per_chunk)                                         # (k,)
        w = tf.where(tf.logical_or(tf.equal(s, 0), tf.equal(s, steps)), 0.5, 1.0) / s_float
        w = tf.where(s < points, w, 0.0)
        alpha = tf.cast(tf.minimum(s, steps), tf.float32) / s_float
        x = base[tf.newaxis] + alpha[:, None, None, None, None] * diff[tf.newaxis]  # (k, N, H, W, 3)
        x = tf.reshape(x, tf.concat([[-1], tf.shape(images)[1:]], 0))
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = _logit(view, x, idx_rep)
        g = tf.reshape(tape.gradient(score, x), tf.concat([[per_chunk], tf.shape(images)], 0))
        return start + per_chunk, total + tf.einsum("k,knhwc->nhwc", w, g)

    _, avg_grad = tf.while_loop(lambda start, total: start < points, body,
                                (tf.constant(0, tf.int32), tf.zeros_like(images)))
    attributions = diff * avg_grad
    instance = tf.gather(logits, idx, axis=1, batch_dims=1)
    base_out = _logit(view, base, idx)
    delta = instance - base_out
    gap = tf.abs(tf.reduce_sum(attributions, axis=(1, 2, 3)) - delta)
    raw = tf.abs(tf.reduce_sum(attributions, axis=-1))
    heatmap = normalize_tf(raw)
    return {
        "heatmap": heatmap,
        "heatmap_upsampled": heatmap,
        "raw": raw,
        "attributions": attributions,
        "instance_output": instance,
        "baseline_output": base_out,
        "approximation_error": gap / tf.maximum(tf.abs(delta), 1e-12),
        "logits": logits,
        "probabilities": tf.nn.softmax(logits, axis=-1),
        "class_index": idx,
    }


def integrated_gradients(
    model_or_view: Any,
    images: Any,
    class_index: Any = -1,
    steps: int = 64,
    baseline: str = "black",
    seed: int = 0,
    target_layer: str | None = None,
) -> dict[str, np.ndarray]:
    """Eager Integrated Gradients; numpy out (validates, then runs a graph compiled once per view).

    Raises:
        ExplainError: bad images, class index, ``steps`` (accepted ``1..1024``), ``baseline``
            (accepted ``black``, ``blurred``, ``uniform``) or ``seed``; a model without a classifier.
    """
    view = get_view(model_or_view, target_layer)
    if not view.is_classifier:
        raise ExplainError(f"integrated_gradients explains a class logit; model {view.model.name!r} has no classifier layer")
    steps = check_int("steps", steps, 1, MAX_STEPS)
    check_choice("baseline", baseline, BASELINES)
    seed = check_int("seed", seed, 0, 2**31 - 1)
    x = check_images(images, view)
    idx = check_class_index(class_index, int(x.shape[0]), view.num_classes, view.model.name)
    spec = [tf.TensorSpec([None, *view.input_shape], tf.float32), tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)]
    fn = compiled(view, ("integrated_gradients",), lambda: tf.function(
        lambda a, c, s, b, sd: integrated_gradients_single_pass(view, a, c, s, b, sd), input_signature=spec))
    out = fn(x, idx, tf.constant(steps), tf.constant(baseline), tf.constant(seed))
    return {k: v.numpy() for k, v in out.items()}


registry.register(
    registry.Method(
        name="integrated_gradients",
        fn=integrated_gradients_single_pass,
        kind="single_pass",
        applies_to="classifier",
        signature_inputs={
            "class_index": lambda: tf.TensorSpec([None], tf.int32),
            "steps": lambda: tf.TensorSpec([], tf.int32),
            "baseline": lambda: tf.TensorSpec([], tf.string),
            "seed": lambda: tf.TensorSpec([], tf.int32),
        },
        parameters=(
            registry.Param("steps", int, 64, lo=1, hi=MAX_STEPS, unit="intervals", doc="trapezoid intervals from the baseline to the image"),
            registry.Param("baseline", str, "black", choices=BASELINES, doc="the reference image the path starts from"),
            registry.Param("seed", int, 0, lo=0, hi=2**31 - 1, doc="seed of the uniform baseline"),
        ),
        label="Integrated Gradients",
        cost="cheap",
        description="Integrated Gradients of the class logit (trapezoid rule, black/blurred/uniform baseline)",
    )
)
