"""Gradient saliency ``grad`` (seed 003 §3, after Simonyan et al. 2014), optionally SmoothGrad.

For image ``x`` and class ``y``::

    G = |∂z_y/∂x|                 (the class logit z_y; target="logit", the default)
    G = |∂p_y/∂x|                 (the softmax probability, seed 003; target="probability")
    S = max_colour G              (N, H, W)
    H = dilate³ˣ³(S, d)           (grey-scale 3×3 dilation = 3×3 max filter, repeated d times)

with ``d`` ∈ {0, 2, 5} in seed 003 §5. The dilation is ``tf.nn.max_pool2d(ksize=3, strides=1,
padding="SAME")`` repeated (:func:`explain.resize.dilate_tf`); the border takes the maximum over
the neighbours inside the image (OpenCV ``cv2.dilate`` semantics); an isolated peak becomes a
``(2d+1)×(2d+1)`` plateau. ``heatmap = (H − min)/(max − min + 1e-7)`` per image; the map is already
at input resolution, so ``heatmap_upsampled`` equals ``heatmap``.

Why the logit (issue 12): ``∂p_y/∂x = p_y·(∂z_y/∂x − Σ_c p_c·∂z_c/∂x)`` vanishes when the softmax
saturates, and a confident model's ``p_y`` is exactly 1.0 in float32 for some images (logit margins
above ~17), so their saliency map is all zeros and its top-ρ mask is an arbitrary set of tied pixels.
The logit's gradient does not saturate; it is Simonyan et al.'s (2014) "class score" derivative. The
logit is chosen over ``log p_y`` because ``log p_y`` saturates the same way (its gradient is
``(1 − p_y)·…`` in the two-class case). ``target="probability"`` keeps seed 003's (and this module's
earlier) behaviour; the exported ``saliency`` signature uses the logit.

SmoothGrad (Smilkov et al. 2017), the registry method ``smoothgrad`` (a signature of every
classifier export, and on models without a card through :mod:`explain.foreign`) and an option of
the eager entry point :func:`saliency`: ``G`` is replaced by ``mean_s |∂s_y/∂x (x + ε_s)|`` (``s``
the logit, as above) over ``smooth_samples`` noisy copies,
``ε_s ~ N(0, σ²)``, ``σ = smooth_noise·(max x − min x)`` per image (tf-keras-vis's convention:
absolute value per sample, then the mean); the noisy images are not clipped; the class ``y`` is
resolved on the clean image. Noise comes from ``tf.random.stateless_normal`` seeded with
``(seed, s)``, so the result is deterministic for a seed.

Entry points: registry ``saliency`` (``single_pass``; inputs ``class_index`` int32 ``(N,)`` and
``dilations`` int32 scalar) → :func:`saliency_single_pass`; registry ``smoothgrad`` (the same plus
``smooth_samples`` int32, ``smooth_noise`` float32 and ``seed`` int32 scalars) →
:func:`smoothgrad_single_pass`; eager :func:`saliency`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from explain import registry
from explain.cam import check_class_index, compiled, get_view
from explain.resize import dilate_tf, normalize_tf
from explain.view import ExplainError, ModelView, check_images

__all__ = ["saliency", "saliency_single_pass", "smoothgrad_single_pass", "TARGETS"]


def _outputs(view: ModelView, grad_abs: tf.Tensor, dilations, logits, idx) -> dict[str, tf.Tensor]:
    gradient = tf.reduce_max(grad_abs, axis=-1)
    raw = dilate_tf(gradient, dilations)
    heatmap = normalize_tf(raw)
    return {
        "heatmap": heatmap,
        "heatmap_upsampled": tf.clip_by_value(heatmap, 0.0, 1.0),
        "raw": raw,
        "gradient": gradient,
        "logits": logits,
        "probabilities": tf.nn.softmax(logits, axis=-1),
        "class_index": idx,
    }


TARGETS = ("logit", "probability")


def _check_target(target: str) -> str:
    if target not in TARGETS:
        raise ExplainError(f"saliency target {target!r} is not one of {', '.join(repr(t) for t in TARGETS)}")
    return target


def _prob_gradient(
    view: ModelView, images: tf.Tensor, class_index, target: str = "logit"
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(∂s_y/∂x, logits, class index)`` with ``s`` the logit or the softmax probability (``target``)."""
    _check_target(target)
    with tf.GradientTape() as tape:
        tape.watch(images)
        result = view.run(images)
        logits = result.logits
        if logits is None:
            raise ExplainError(f"saliency needs a classifier; model {view.model.name!r} has no classifier layer")
        idx = view.resolve_class_index(class_index, logits)
        scores = logits if target == "logit" else tf.nn.softmax(logits, axis=-1)
        s_y = tf.gather(scores, idx, axis=1, batch_dims=1)
    return tape.gradient(s_y, images), logits, idx


def saliency_single_pass(
    view: ModelView,
    images: tf.Tensor,
    class_index: tf.Tensor | int | None = -1,
    dilations: tf.Tensor | int = 0,
    target: str = "logit",
) -> dict[str, tf.Tensor]:
    """Graph-compatible gradient saliency (see the module docstring).

    Args:
        target: ``"logit"`` (default) differentiates ``z_y``; ``"probability"`` differentiates
            ``p_y = softmax(z)_y`` (seed 003; zero where the softmax saturates in float32).

    Returns ``heatmap`` (N,H,W), ``heatmap_upsampled`` (N,H,W), ``raw`` (dilated, unnormalised),
    ``gradient`` (undilated ``max_colour |∂s_y/∂x|``), ``logits``, ``probabilities``, ``class_index``.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    grads, logits, idx = _prob_gradient(view, images, class_index, target)
    return _outputs(view, tf.abs(grads), dilations, logits, idx)


def smoothgrad_single_pass(
    view: ModelView,
    images: tf.Tensor,
    class_index: tf.Tensor | int | None = -1,
    dilations: tf.Tensor | int = 0,
    smooth_samples: tf.Tensor | int = 20,
    smooth_noise: tf.Tensor | float = 0.2,
    seed: tf.Tensor | int = 0,
    target: str = "logit",
) -> dict[str, tf.Tensor]:
    """SmoothGrad variant of :func:`saliency_single_pass` (graph-compatible; a ``tf.while_loop``)."""
    images = tf.convert_to_tensor(images, tf.float32)
    samples = tf.convert_to_tensor(smooth_samples, tf.int32)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int32)
    logits = view.run(images).logits
    if logits is None:
        raise ExplainError(f"saliency needs a classifier; model {view.model.name!r} has no classifier layer")
    idx = view.resolve_class_index(class_index, logits)
    sigma = tf.cast(smooth_noise, tf.float32) * (
        tf.reduce_max(images, axis=(1, 2, 3), keepdims=True) - tf.reduce_min(images, axis=(1, 2, 3), keepdims=True)
    )

    def body(s, total):
        noise = tf.random.stateless_normal(tf.shape(images), seed=tf.stack([seed, s]), dtype=tf.float32)
        g, _, _ = _prob_gradient(view, images + sigma * noise, idx, target)
        return s + 1, total + tf.abs(g)

    _, total = tf.while_loop(lambda s, t: s < samples, body, (tf.constant(0, tf.int32), tf.zeros_like(images)))
    mean = total / tf.cast(tf.maximum(samples, 1), tf.float32)
    return _outputs(view, mean, dilations, logits, idx)


def saliency(
    model_or_view: Any,
    images: Any,
    class_index: Any = -1,
    dilations: int = 0,
    target_layer: str | None = None,
    smooth_samples: int = 0,
    smooth_noise: float = 0.2,
    seed: int = 0,
    target: str = "logit",
) -> dict[str, np.ndarray]:
    """Eager gradient saliency; numpy out. ``smooth_samples > 0`` turns on SmoothGrad.

    ``target``: ``"logit"`` (default) or ``"probability"`` (seed 003's ``|∂p_y/∂x|``), see the module
    docstring.

    Raises:
        ExplainError: bad images, class index, dilation count, SmoothGrad parameters; a model without
            a classifier or without a 4-D layer; an unknown ``target_layer``.
    """
    view = get_view(model_or_view, target_layer)
    _check_target(target)
    if not view.is_classifier:
        raise ExplainError(f"saliency explains a class score; model {view.model.name!r} has no classifier layer")
    for name, value in (("dilations", dilations), ("smooth_samples", smooth_samples), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ExplainError(f"{name} {value!r} must be an integer >= 0 (dilations: 0, 2 or 5 in seed 003)")
    if not (isinstance(smooth_noise, (int, float, np.floating)) and smooth_noise >= 0):
        raise ExplainError(f"smooth_noise {smooth_noise!r} must be a number >= 0 (a fraction of the image's value range)")
    x = check_images(images, view)
    idx = check_class_index(class_index, int(x.shape[0]), view.num_classes, view.model.name)
    image_spec = tf.TensorSpec([None, *view.input_shape], tf.float32)
    index_spec = tf.TensorSpec([None], tf.int32)
    scalar = tf.TensorSpec([], tf.int32)
    if smooth_samples == 0:
        key = ("saliency",) if target == "logit" else ("saliency", target)
        fn = compiled(view, key, lambda: tf.function(
            lambda a, c, d: saliency_single_pass(view, a, c, d, target), input_signature=[image_spec, index_spec, scalar]))
        out = fn(x, idx, tf.constant(int(dilations), tf.int32))
    else:
        fn = compiled(view, ("smoothgrad", target), lambda: tf.function(
            lambda a, c, d, n, s, sd: smoothgrad_single_pass(view, a, c, d, n, s, sd, target),
            input_signature=[image_spec, index_spec, scalar, scalar, tf.TensorSpec([], tf.float32), scalar]))
        out = fn(x, idx, tf.constant(int(dilations), tf.int32), tf.constant(int(smooth_samples), tf.int32),
                 tf.constant(float(smooth_noise), tf.float32), tf.constant(int(seed), tf.int32))
    return {k: v.numpy() for k, v in out.items()}


registry.register(
    registry.Method(
        name="saliency",
        fn=saliency_single_pass,
        kind="single_pass",
        applies_to="classifier",
        signature_inputs={
            "class_index": lambda: tf.TensorSpec([None], tf.int32),
            "dilations": lambda: tf.TensorSpec([], tf.int32),
        },
        parameters=(
            registry.Param("dilations", int, 0, lo=0, hi=64, unit="3×3 dilations",
                           doc="grey dilations of the map (0, 2 or 5 in seed 003)"),
        ),
        label="saliency",
        cost="cheap",
        description="Gradient saliency |∂z_y/∂x| of the class logit (seed 003 used p_y), max over colour, "
                    "3×3 dilation d times",
    )
)

registry.register(
    registry.Method(
        name="smoothgrad",
        fn=smoothgrad_single_pass,
        kind="single_pass",
        applies_to="classifier",
        signature_inputs={
            "class_index": lambda: tf.TensorSpec([None], tf.int32),
            "dilations": lambda: tf.TensorSpec([], tf.int32),
            "smooth_samples": lambda: tf.TensorSpec([], tf.int32),
            "smooth_noise": lambda: tf.TensorSpec([], tf.float32),
            "seed": lambda: tf.TensorSpec([], tf.int32),
        },
        parameters=(
            registry.Param("dilations", int, 0, lo=0, hi=64, unit="3×3 dilations",
                           doc="grey dilations of the map"),
            registry.Param("smooth_samples", int, 20, lo=1, hi=1024, unit="noisy copies",
                           doc="noisy copies averaged (Vertex smoothGradConfig.noisySampleCount)"),
            registry.Param("smooth_noise", float, 0.2, lo=0.0, hi=1.0,
                           doc="noise σ as a fraction of each image's value range (Vertex noiseSigma)"),
            registry.Param("seed", int, 0, lo=0, hi=2**31 - 1, doc="seed of the stateless noise"),
        ),
        label="SmoothGrad",
        cost="cheap",
        description="SmoothGrad: mean |∂z_y/∂x| over noisy copies x + N(0, σ²), max over colour, 3×3 dilation d times",
    )
)
