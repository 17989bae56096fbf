"""Losses of the embedding networks and the Siamese classifier.

* :func:`batch_hard_triplet_loss` and :func:`batch_all_triplet_loss` (Hermans, Beyer & Leibe 2017,
  "In Defense of the Triplet Loss for Person Re-Identification", arXiv:1703.07737) on L2-normalised
  embeddings, and their Keras wrapper :class:`TripletLoss` with the per-epoch switch
  :class:`LossSwitch` (batch-all warm-up, then batch-hard);
* :func:`contrastive_loss` (Hadsell, Chopra & LeCun 2006) of embedding pairs.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["TRIPLET_LOSSES", "pairwise_distances", "batch_hard_triplet_loss", "batch_all_triplet_loss",
           "contrastive_loss", "TripletLoss", "LossSwitch"]

def pairwise_distances(embeddings: tf.Tensor, squared: bool = False) -> tf.Tensor:
    """Euclidean distances between all rows of ``embeddings`` ``(B, D)`` → ``(B, B)``.

    ``‖a − b‖² = ‖a‖² − 2 a·b + ‖b‖²`` clamped at 0; the square root has a zero-safe gradient
    (the diagonal and exact duplicates get distance 0 and gradient 0).
    """
    e = tf.convert_to_tensor(embeddings, tf.float32)
    dot = tf.matmul(e, e, transpose_b=True)
    sq = tf.linalg.diag_part(dot)
    d2 = tf.maximum(sq[:, None] - 2.0 * dot + sq[None, :], 0.0)
    if squared:
        return d2
    zero = tf.cast(tf.equal(d2, 0.0), tf.float32)
    return tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)


def batch_hard_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float = 0.2) -> tf.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017) on L2-normalised embeddings.

    For every anchor ``a`` in the batch: the hardest positive ``d⁺(a) = max_{p ≠ a, y_p = y_a}
    d(a, p)`` and the hardest negative ``d⁻(a) = min_{y_n ≠ y_a} d(a, n)``, with the Euclidean
    distance ``d`` between the normalised embeddings; the loss is the mean over the anchors that
    have at least one positive and one negative of ``max(margin + d⁺(a) − d⁻(a), 0)``, and 0 when
    no anchor has both.

    Args:
        labels: ``(B,)`` or ``(B, 1)`` class labels (any numeric dtype).
        embeddings: ``(B, D)``; normalised here (idempotent for the networks' unit-norm output).
        margin: The margin (0.2 by default; distances between unit vectors lie in ``[0, 2]``).

    Returns:
        Scalar float32 loss.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    e = tf.math.l2_normalize(tf.convert_to_tensor(embeddings, tf.float32), axis=-1)
    d = pairwise_distances(e)
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(e)[0], dtype=tf.bool)
    pos = tf.logical_and(same, tf.logical_not(eye))
    neg = tf.logical_not(same)
    hardest_pos = tf.reduce_max(tf.where(pos, d, tf.zeros_like(d)), axis=1)
    big = tf.reduce_max(d) + 1.0
    hardest_neg = tf.reduce_min(tf.where(neg, d, tf.fill(tf.shape(d), big)), axis=1)
    valid = tf.cast(tf.logical_and(tf.reduce_any(pos, axis=1), tf.reduce_any(neg, axis=1)), tf.float32)
    per_anchor = tf.maximum(margin + hardest_pos - hardest_neg, 0.0) * valid
    return tf.reduce_sum(per_anchor) / tf.maximum(tf.reduce_sum(valid), 1.0)


def batch_all_triplet_loss(labels: tf.Tensor, embeddings: tf.Tensor, margin: float = 0.2) -> tf.Tensor:
    """Batch-all triplet loss (Hermans et al. 2017, "BA≠0") on L2-normalised embeddings.

    Over every valid triplet ``(a, p, n)`` of the batch (``p ≠ a``, ``y_p = y_a``, ``y_n ≠ y_a``):
    ``ℓ = max(margin + d(a, p) − d(a, n), 0)``; the loss is the mean of the non-zero ``ℓ``
    (0 when every triplet is satisfied). More stable than batch-hard early in training, when
    the hardest triplets of a randomly initialised network are mostly noise.

    Args:
        labels: ``(B,)`` or ``(B, 1)`` class labels.
        embeddings: ``(B, D)``; normalised here.
        margin: The margin.

    Returns:
        Scalar float32 loss.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    e = tf.math.l2_normalize(tf.convert_to_tensor(embeddings, tf.float32), axis=-1)
    d = pairwise_distances(e)
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(e)[0], dtype=tf.bool)
    pos = tf.logical_and(same, tf.logical_not(eye))
    neg = tf.logical_not(same)
    valid = tf.logical_and(pos[:, :, None], neg[:, None, :])  # (a, p, n)
    loss = tf.maximum(margin + d[:, :, None] - d[:, None, :], 0.0) * tf.cast(valid, tf.float32)
    active = tf.reduce_sum(tf.cast(loss > 1e-16, tf.float32))
    return tf.reduce_sum(loss) / tf.maximum(active, 1.0)


def contrastive_loss(same: tf.Tensor, distance: tf.Tensor, margin: float = 1.0) -> tf.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006) of pairs, mean over the pairs.

    ``L = same · d² + (1 − same) · max(margin − d, 0)²``.

    Args:
        same: ``(P,)`` 1 for pairs of the same class, 0 otherwise.
        distance: ``(P,)`` Euclidean distances between the two embeddings of each pair.
        margin: Distance beyond which different-class pairs cost nothing.
    """
    s = tf.cast(tf.reshape(same, [-1]), tf.float32)
    d = tf.reshape(tf.cast(distance, tf.float32), [-1])
    return tf.reduce_mean(s * tf.square(d) + (1.0 - s) * tf.square(tf.maximum(margin - d, 0.0)))


class TripletLoss(keras.losses.Loss):
    """Keras wrapper of the triplet losses (``y_true`` = labels, ``y_pred`` = embeddings).

    ``hard`` is a non-trainable weight in ``[0, 1]``: the loss is
    ``hard · batch_hard + (1 − hard) · batch_all`` (set per epoch by :class:`LossSwitch`).
    """

    def __init__(self, margin: float = 0.2, hard: float = 1.0, name: str = "triplet") -> None:
        super().__init__(name=name, reduction="sum_over_batch_size")
        self.margin = float(margin)
        self.hard = tf.Variable(float(hard), trainable=False, dtype=tf.float32, name="triplet_hard_weight")

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        h = tf.cast(self.hard, tf.float32)
        return h * batch_hard_triplet_loss(y_true, y_pred, self.margin) + (1.0 - h) * batch_all_triplet_loss(
            y_true, y_pred, self.margin
        )

    def get_config(self) -> dict[str, Any]:
        return {"margin": self.margin, "name": self.name}


class LossSwitch(keras.callbacks.Callback):
    """Batch-all for the first ``warmup`` epochs, then batch-hard."""

    def __init__(self, loss: TripletLoss, warmup: int, final: str) -> None:
        super().__init__()
        self.loss, self.warmup, self.final = loss, warmup, final

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        hard = 0.0 if epoch < self.warmup else (1.0 if self.final == "batch_hard" else 0.0)
        self.loss.hard.assign(hard)


TRIPLET_LOSSES = ("batch_hard", "batch_all")
