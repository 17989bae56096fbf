"""Ablation-CAM (Desai & Ramaswamy, WACV 2020), Score-CAM's sibling, batched over any backend.

For image ``x`` with target-layer activations ``A`` ``(h, w, K)``, the logit ``y_c`` of class ``c``
and ``y_c^k``, the logit when channel ``k`` of ``A`` is set to zero before the rest of the network
reads it::

    w_k = (y_c − y_c^k) / |y_c|,        L = ReLU(Σ_k w_k A_k)

The paper divides by ``y_c``; the project divides by ``|y_c|`` (the same for a positive logit) so
that for a negative logit a channel whose removal lowers the score still gets a positive weight
(a zero logit is replaced by ``1e-7``). ``heatmap`` is ``L`` normalised per image and resized to
the input size with half-pixel centres (:mod:`explain.resize`), as the CAM family.

Ablation runs the whole network again for each ``(image, channel)`` pair: ``N·K`` forward passes
(the same count as Score-CAM), streamed in chunks of at most ``batch_size`` through
``backend.ablated_logits`` (the ``ablate_channels`` signature of an export, or
:func:`explain.backend.ablated_run` in-process), with ``should_continue()`` before every batch.
Peak memory is ``O(batch_size·H·W + N·h·w·K)``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain import registry
from explain.backend import Backend, Cancelled, batches
from explain.occlusion import check_batch, check_batch_size, resolve_classes
from explain.resize import heatmap_outputs

__all__ = ["ablationcam"]


def ablationcam(
    backend: Backend,
    images: np.ndarray,
    class_index: Any = None,
    batch_size: int = 32,
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
    relu: bool = True,
) -> dict[str, np.ndarray]:
    """Ablation-CAM of ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]`` (iterative convention).

    Args:
        backend: Needs ``features`` and ``ablated_logits``.
        class_index: ``None``/``-1`` = predicted class, an int, or ``(N,)`` ints.
        batch_size: At most this many images per ``backend`` call.
        should_continue: Checked before every batch; ``False`` raises :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the batches.
        relu: ReLU of the weighted sum.

    Returns:
        ``heatmap`` (N,H,W) normalised and upsampled; ``heatmap_lowres`` (N,h,w); ``raw`` (N,h,w)
        the map ``L``; ``weights`` (N,K); ``ablated_logits`` (N,K) ``y_c^k``; ``class_index`` (N,);
        ``probabilities`` (N,C) of the unablated images.

    Raises:
        ExplainError: bad images, class index or batch size.
        MethodUnavailable: the backend cannot give features or ablate channels.
        Cancelled: ``should_continue()`` returned False.
    """
    check_batch_size(batch_size)
    images = check_batch(images, backend.input_shape)
    n = images.shape[0]
    go = should_continue or (lambda: True)

    acts, logits = [], []
    for sl in batches(n, batch_size):
        if not go():
            raise Cancelled("ablationcam cancelled while computing features")
        a, y = backend.features(images[sl])
        acts.append(np.asarray(a, np.float32))
        logits.append(np.asarray(y, np.float32))
    activations = np.concatenate(acts)
    logits_all = np.concatenate(logits)
    probabilities = tf.nn.softmax(logits_all, axis=-1).numpy()
    classes = resolve_classes(class_index, probabilities)
    k = activations.shape[-1]

    ablated = np.empty(n * k, np.float32)
    chunks = list(batches(n * k, batch_size))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="ablationcam", unit="batch")
    for sl in chunks:
        if not go():
            raise Cancelled(f"ablationcam cancelled after {sl.start} of {n * k} ablated passes")
        pairs = np.arange(sl.start, sl.stop)
        img_idx, channel = pairs // k, pairs % k
        mask = np.ones((len(pairs), k), np.float32)
        mask[np.arange(len(pairs)), channel] = 0.0
        out = np.asarray(backend.ablated_logits(images[img_idx], mask), np.float32)
        ablated[sl] = out[np.arange(len(pairs)), classes[img_idx]]

    ablated = ablated.reshape(n, k)
    score = logits_all[np.arange(n), classes]
    denom = np.where(score == 0, 1e-7, np.abs(score))
    weights = (score[:, None] - ablated) / denom[:, None]
    cam = tf.einsum("nhwk,nk->nhw", activations, weights)
    if relu:
        cam = tf.nn.relu(cam)
    out = heatmap_outputs(cam, backend.input_shape[:2])
    return {
        "heatmap": out["heatmap_upsampled"].numpy(),
        "heatmap_lowres": out["heatmap"].numpy(),
        "raw": out["raw"].numpy(),
        "weights": weights.astype(np.float32),
        "ablated_logits": ablated,
        "class_index": classes,
        "probabilities": probabilities,
    }


registry.register(
    registry.Method(
        name="ablationcam",
        fn=ablationcam,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            registry.Param("batch_size", int, 32, lo=1, unit="images", doc="images per ablation pass"),
            registry.Param("relu", bool, True, doc="ReLU of the weighted sum"),
        ),
        label="Ablation-CAM",
        cost="costly",
        description="Ablation-CAM: ReLU(Σ_k (y_c − y_c^k)/|y_c|·A_k), y_c^k the logit with channel k zeroed",
    )
)
