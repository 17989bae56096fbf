"""XRAI (Kapishnikov, Bolukbasi, Viégas, Terry 2019, "XRAI: Better Attributions Through Regions",
arXiv:1906.02825), and Integrated Gradients over any differentiable backend.

XRAI turns pixel attributions into region attributions:

1. **Attributions.** Integrated Gradients (Sundararajan et al. 2017, arXiv:1703.01365) of the
   class score, with a black and a white baseline, averaged, summed over colour:
   ``a(p) = ½ Σ_colour [IG_black(p) + IG_white(p)]``. Here the score is the class **logit** from
   :meth:`explain.backend.Backend.logits_tf` (for a black-box SavedModel without logits, the log
   of the class probability, which has the same gradient up to the softmax normaliser).
   IG uses the trapezoid rule over ``steps`` intervals, batched in chunks of ``batch_size``
   interpolated images.
2. **Regions.** Felzenszwalb's graph segmentation (scikit-image) of the image at several scales
   (the paper's 50, 100, 150, 250, 500, 1200 at 224 px, scaled with the image side; ``sigma 0.8``,
   minimum size 150 px at 224 px, scaled with the area), each segment dilated by a disk of radius
   5 px at 224 px (scaled), as the paper does so that thin regions can win.
3. **Greedy selection.** Starting from an empty mask, repeatedly add the candidate region whose
   *new* pixels have the highest mean attribution (gain ``Σ_{new} a / |new|``); a region's
   pixels that are already selected no longer count. Every pixel takes the gain of the step that
   selected it, so the output map ranks the image by region, most important first; pixels no
   region covers take the lowest gain minus one. Selection stops when every pixel is covered or
   no candidate adds a pixel.

The selected regions are nested by construction (the selection after step ``k+1`` contains the
one after step ``k``), and the attribution summed over the selection grows with every step whose
gain is positive. The gains themselves need not fall step by step: a region whose overlap with
earlier regions had low attribution gains density once that overlap is removed.

Outputs (iterative convention): ``heatmap`` ``(N, H, W)`` the XRAI map normalised per image;
``raw`` the gains; ``attributions`` ``(N, H, W)`` the pixel attributions ``a``; ``order``
``(N, H, W)`` int32, the step that selected each pixel (0 first, −1 never); ``class_index``,
``probabilities``; ``approximation_error`` ``(N,)`` IG's completeness gap of the black baseline.

The project's choices: the white baseline is ``1.0`` in ``[0, 1]`` pixel space (the paper's
white), the score is the logit (Vertex attributes the output tensor the metadata names), and the
region candidates are scaled from 224 px so that small test images get sensible segments.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain import registry
from explain.backend import Backend, Cancelled, MethodUnavailable, batches
from explain.checks import check_batch_size, check_images, resolve_classes
from explain.params import check_int

__all__ = ["xrai", "integrated_gradients_backend", "xrai_regions", "SCALES_AT_224"]

#: Felzenszwalb scales of the paper at 224 px.
SCALES_AT_224 = (50, 100, 150, 250, 500, 1200)


def _class_scores(backend: Backend, x: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    logits = backend.logits_tf(x)
    return tf.gather(logits, classes, axis=1, batch_dims=1)


def integrated_gradients_backend(
    backend: Backend,
    images: np.ndarray,
    classes: np.ndarray,
    baseline: np.ndarray,
    steps: int = 32,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """IG ``(N, H, W, 3)`` of the class score along the straight path from ``baseline``, and the
    completeness gap ``|Σ IG − (f(x) − f(b))| / |f(x) − f(b)|`` per image.

    Raises:
        MethodUnavailable: the backend is not differentiable (a uint8 black box).
        Cancelled: ``should_continue()`` returned False between chunks.
    """
    go = should_continue or (lambda: True)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, np.float32)
    weights[[0, -1]] *= 0.5  # trapezoid rule
    out = np.zeros_like(images, dtype=np.float32)
    gaps = np.zeros(len(images), np.float32)
    for i, (x, b, c) in enumerate(zip(images, baseline, classes)):
        grad_sum = np.zeros_like(x, dtype=np.float32)
        for sl in batches(len(alphas), batch_size):
            if not go():
                raise Cancelled(f"integrated gradients cancelled at image {i}")
            path = tf.constant(b[None] + alphas[sl, None, None, None] * (x - b)[None])
            cls = tf.fill([len(alphas[sl])], int(c))
            with tf.GradientTape() as tape:
                tape.watch(path)
                score = _class_scores(backend, path, cls)
            grads = tape.gradient(score, path)
            if grads is None:
                raise MethodUnavailable("the model is not differentiable with respect to its input here")
            grad_sum += np.tensordot(weights[sl], grads.numpy(), axes=1)
        out[i] = (x - b) * grad_sum
        ends = _class_scores(backend, tf.constant(np.stack([x, b])), tf.fill([2], int(c))).numpy()
        delta = float(ends[0] - ends[1])
        gaps[i] = abs(float(out[i].sum()) - delta) / max(abs(delta), 1e-12)
    return out, gaps


def xrai_regions(image: np.ndarray) -> list[np.ndarray]:
    """Candidate regions ``(H, W)`` bool: Felzenszwalb segments at the paper's scales, dilated."""
    try:
        from skimage.morphology import dilation, disk
        from skimage.segmentation import felzenszwalb
    except ImportError:
        raise MethodUnavailable("xrai needs scikit-image (pip install 'cnn-explain[serving]')") from None
    h, w = image.shape[:2]
    side = min(h, w) / 224.0
    min_size = max(4, int(round(150 * side * side)))
    radius = max(1, int(round(5 * side)))
    footprint = disk(radius)
    regions: list[np.ndarray] = []
    for scale in SCALES_AT_224:
        labels = felzenszwalb(image, scale=scale * side, sigma=0.8, min_size=min_size)
        for label in np.unique(labels):
            regions.append(dilation(labels == label, footprint))
    return regions


def _greedy(attributions: np.ndarray, regions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The XRAI map (gain per pixel) and the selection order per pixel (−1 = never selected)."""
    selected = np.zeros(attributions.shape, bool)
    gains = np.zeros(attributions.shape, np.float32)
    order = np.full(attributions.shape, -1, np.int32)
    remaining = list(regions)
    step = 0
    while remaining and not selected.all():
        best, best_gain = -1, -np.inf
        for k, region in enumerate(remaining):
            new = region & ~selected
            count = int(new.sum())
            if count == 0:
                continue
            gain = float(attributions[new].sum()) / count
            if gain > best_gain:
                best, best_gain = k, gain
        if best < 0:
            break
        new = remaining.pop(best) & ~selected
        gains[new] = best_gain
        order[new] = step
        selected |= new
        step += 1
    if not selected.all():
        floor = float(gains[selected].min()) - 1.0 if selected.any() else 0.0
        gains[~selected] = floor
    return gains, order


def xrai(
    backend: Backend,
    images: np.ndarray,
    class_index: Any = None,
    steps: int = 32,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """XRAI maps of ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]`` (see the module docstring).

    Args:
        backend: A differentiable backend (an in-process model, a project export with
            ``predict_float``, or a foreign float signature with a declared input range).
        class_index: ``None``/``-1`` = predicted class, an int, or ``(N,)`` ints.
        steps: IG's trapezoid intervals per baseline (``1..1024``).
        batch_size: Interpolated images per gradient call.
        should_continue: Checked between gradient chunks; ``False`` raises :class:`Cancelled`.
        progress: Show a tqdm bar over the images.

    Raises:
        ExplainError: a parameter out of range (naming it, the value and the range).
        MethodUnavailable: a non-differentiable backend, or scikit-image is missing.
    """
    check_batch_size(batch_size)
    images = check_images(images, backend.input_shape)
    steps = check_int("steps", steps, 1, 1024)
    probabilities = np.concatenate([np.asarray(backend.predict(images[sl]), np.float32)
                                    for sl in batches(len(images), batch_size)])
    classes = resolve_classes(class_index, probabilities)
    kwargs = dict(steps=steps, batch_size=batch_size, should_continue=should_continue)
    ig_black, gap = integrated_gradients_backend(backend, images, classes, np.zeros_like(images), **kwargs)
    ig_white, _ = integrated_gradients_backend(backend, images, classes, np.ones_like(images), **kwargs)
    attributions = 0.5 * (ig_black + ig_white).sum(axis=-1)
    rows = range(len(images))
    if progress:
        from tqdm.auto import tqdm

        rows = tqdm(rows, desc="xrai", unit="image")
    raw = np.zeros_like(attributions)
    order = np.zeros(attributions.shape, np.int32)
    for i in rows:
        raw[i], order[i] = _greedy(attributions[i], xrai_regions(images[i]))
    lo = raw.min(axis=(1, 2), keepdims=True)
    hi = raw.max(axis=(1, 2), keepdims=True)
    return {
        "heatmap": ((raw - lo) / (hi - lo + 1e-7)).astype(np.float32),
        "raw": raw.astype(np.float32),
        "attributions": attributions.astype(np.float32),
        "order": order,
        "class_index": classes,
        "probabilities": probabilities,
        "approximation_error": gap,
    }


registry.register(
    registry.Method(
        name="xrai",
        fn=xrai,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            registry.Param("steps", int, 32, lo=1, hi=1024, unit="intervals", doc="IG trapezoid intervals per baseline"),
            registry.Param("batch_size", int, 32, lo=1, unit="images", doc="interpolated images per gradient call"),
        ),
        label="XRAI",
        cost="costly",
        description="XRAI (Kapishnikov et al. 2019): Integrated Gradients (black + white baselines) "
                    "ranked over Felzenszwalb regions, most important first",
    )
)
