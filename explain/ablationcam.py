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

from explain import registry
from explain.backend import Backend
from explain.iterative import ChannelCAM

__all__ = ["ablationcam", "AblationCAM"]


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
    return AblationCAM(backend, relu=relu, batch_size=batch_size, should_continue=should_continue,
                       progress=progress).explain(images, class_index)


class AblationCAM(ChannelCAM):
    """Ablation-CAM on the iterative base: a pair's score is ``y_c^k``, the weight ``(y_c − y_c^k)/|y_c|``."""

    name = "ablationcam"
    unit = "ablated passes"

    def pair_scores(self, sl: slice, image_index: np.ndarray, channel: np.ndarray) -> np.ndarray:
        k = self.activations.shape[-1]
        mask = np.ones((len(image_index), k), np.float32)
        mask[np.arange(len(image_index)), channel] = 0.0
        out = np.asarray(self.backend.ablated_logits(self.images[image_index], mask), np.float32)
        return out[np.arange(len(image_index)), self.classes[image_index]]

    def channel_weights(self, scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
        self.extras["ablated_logits"] = scores
        score = self.logits[np.arange(len(classes)), classes]
        denom = np.where(score == 0, 1e-7, np.abs(score))
        return (score[:, None] - scores) / denom[:, None]


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
