"""Training: the papers' recipe for the classifiers, a batch-hard triplet loss for the embedding
networks, and softmax + contrastive loss for the Siamese classifier.

Recipe (seeds 000 and 001, SPEC.md §1): cross-entropy, Adam with learning rate 1e-4,
β1 = 0.9, β2 = 0.999, ε = 1e-8, learning rate multiplied by 0.1 every 10 epochs
(:func:`step_decay`), 6:2:2 train/validation/test split (done by the data set). The weights kept
at the end are those of the epoch with the best validation score (classification accuracy; for
embedding networks the 1-nearest-neighbour accuracy of the validation images against the
training images), held in memory and, when a checkpoint path is given, also written to disk
atomically after every improvement (temporary file, then ``os.replace``).

Seeds: every training function calls ``keras.utils.set_random_seed(seed)`` *before* building the
network, so the same seed gives the same initial weights, the same shuffling and the same
dropout masks; a "retrained" model (seed 001, Table 2) is the same architecture trained with
another seed. On CPU the result of training with one seed is reproducible up to floating-point
reduction order in multi-threaded kernels.

Embedding networks (seed 002) are trained with the batch-hard triplet loss of Hermans et al.
(2017) on their L2-normalised outputs (:func:`batch_hard_triplet_loss`). The Siamese classifier
of seed 003 is trained with softmax cross-entropy on both images of a pair plus a contrastive
loss on the distance between their embeddings (:func:`contrastive_loss`, :func:`train_siamese`).

Images come as :class:`models.datasets.imageset.ImageSet` (uint8); they are scaled to float32
``[0, 1]`` on the fly. This module never imports :mod:`explain`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from models import architectures as arch_mod
from models import distribute as dist_mod

__all__ = [
    "ADAM_BETA_1",
    "ADAM_BETA_2",
    "ADAM_EPSILON",
    "PAPER_LEARNING_RATE",
    "TrainResult",
    "BestWeights",
    "step_decay",
    "make_optimizer",
    "set_seed",
    "build_seeded",
    "pairwise_distances",
    "batch_hard_triplet_loss",
    "batch_all_triplet_loss",
    "contrastive_loss",
    "train_classifier",
    "train_embedding",
    "train_siamese",
    "evaluate_classifier",
    "embed_images",
    "knn_accuracy",
]

PAPER_LEARNING_RATE = 1e-4
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-8
_VERBOSE = (0, 1, 2)


# --------------------------------------------------------------------------------- primitives
def step_decay(initial_lr: float = PAPER_LEARNING_RATE, every: int = 10, factor: float = 0.1) -> Callable[..., float]:
    """The papers' schedule: ``lr(epoch) = initial_lr · factor ** (epoch // every)``.

    Args:
        initial_lr: Learning rate of epochs ``0 … every-1``.
        every: Epochs between drops (the papers: 10).
        factor: Multiplier of each drop (the papers: 0.1).

    Returns:
        ``schedule(epoch, lr=None) -> float`` with 0-based ``epoch``, usable directly by
        ``keras.callbacks.LearningRateScheduler`` (the current ``lr`` is ignored).

    Raises:
        ValueError: a non-positive ``initial_lr`` or ``every``, or ``factor`` outside ``(0, 1]``.
    """
    if not initial_lr > 0:
        raise ValueError(f"initial_lr {initial_lr!r} must be positive")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every {every!r} must be a positive integer (epochs between drops)")
    if not 0 < factor <= 1:
        raise ValueError(f"factor {factor!r} must lie in (0, 1]")

    def schedule(epoch: int, lr: float | None = None) -> float:
        return float(initial_lr * factor ** (int(epoch) // every))

    schedule.initial_lr = initial_lr  # type: ignore[attr-defined]
    schedule.every = every  # type: ignore[attr-defined]
    schedule.factor = factor  # type: ignore[attr-defined]
    return schedule


def make_optimizer(learning_rate: float = PAPER_LEARNING_RATE) -> keras.optimizers.Adam:
    """Adam with the papers' moments: β1 0.9, β2 0.999, ε 1e-8 (Keras' default ε is 1e-7)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate {learning_rate!r} must be positive")
    return keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON
    )


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow/Keras (``keras.utils.set_random_seed``)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed {seed!r} must be a non-negative integer")
    keras.utils.set_random_seed(int(seed))


def build_seeded(builder: Callable[[], keras.Model], seed: int) -> keras.Model:
    """Seed everything with ``seed``, then build: the same seed gives the same initial weights."""
    set_seed(seed)
    return builder()


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


# ---------------------------------------------------------------------------- bookkeeping
@dataclass
class TrainResult:
    """A trained model and how it got there.

    Attributes:
        model: The Keras model, holding the best-on-validation weights.
        kind: ``"classifier"``, ``"embedding"`` or ``"siamese"``.
        architecture: Architecture name (``vgg11`` …, ``embedding``, ``siamese``).
        seed: The seed the model was built and trained with.
        history: Per-epoch metrics (``loss``, ``val_accuracy``, ``learning_rate`` …).
        best_epoch: 0-based epoch whose weights were kept.
        epochs_run: Number of epochs trained.
        train_accuracy, val_accuracy, test_accuracy: Accuracies of the kept weights (inference
            mode). For embedding networks: 1-nearest-neighbour accuracy against the training
            images (the training accuracy is leave-one-out).
        seconds: Wall time of the training.
        images_per_second: Training images processed per second (all epochs, validation excluded
            from the numerator but not from the time).
        config: The training hyper-parameters (for the model card).
        checkpoint_path: Where the best weights were written, if anywhere.
    """

    model: keras.Model
    kind: str
    architecture: str
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    epochs_run: int = 0
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float = 0.0
    images_per_second: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint_path: Path | None = None

    def card_fields(self) -> dict[str, Any]:
        """The fields of the model card that training knows (see :mod:`models.export`)."""
        return {
            "architecture": self.architecture,
            "seed": int(self.seed),
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "best_epoch": int(self.best_epoch),
            "epochs": int(self.epochs_run),
            "training": dict(self.config),
        }


def _atomic_save_weights(model: keras.Model, path: Path) -> None:
    """Write ``model``'s weights to ``path`` (``*.weights.h5``) via a temp file + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.weights.h5")
    try:
        model.save_weights(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best epoch in memory (and on disk), restore them at the end.

    Args:
        score: ``score(epoch, logs) -> tuple`` compared lexicographically, higher is better
            (e.g. ``(val_accuracy, -val_loss)``). It may add entries to ``logs``.
        checkpoint_path: ``*.weights.h5`` file rewritten atomically after every improvement.
    """

    def __init__(self, score: Callable[[int, dict[str, Any]], tuple], checkpoint_path: str | Path | None = None):
        super().__init__()
        self.score = score
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
        self.best: tuple | None = None
        self.best_epoch = -1
        self.best_weights: list[np.ndarray] | None = None
        self.extra: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        before = set(logs)
        s = tuple(float(v) for v in self.score(epoch, logs))
        for k in set(logs) - before:
            self.extra.setdefault(k, []).append(float(logs[k]))
        if self.best is None or s > self.best:
            self.best, self.best_epoch = s, epoch
            self.best_weights = [np.array(w, copy=True) for w in self.model.get_weights()]
            if self.checkpoint_path is not None:
                _atomic_save_weights(self.model, self.checkpoint_path)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class _EpochBar(keras.callbacks.Callback):
    """One progress bar per model, over epochs, with the latest loss and accuracies."""

    def __init__(self, name: str, epochs: int) -> None:
        super().__init__()
        self.name, self.epochs, self.bar = name, epochs, None

    def on_train_begin(self, logs: dict | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.epochs, desc=f"train {self.name}", unit="epoch", leave=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        keys = ("loss", "accuracy", "val_accuracy", "val_knn_accuracy")
        self.bar.set_postfix({k: f"{float(v):.3f}" for k, v in (logs or {}).items() if k in keys})
        self.bar.update(1)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.bar is not None:
            self.bar.close()


def _epoch_bar(name: str, epochs: int, verbose: int) -> list[keras.callbacks.Callback]:
    """``verbose=1``: one bar per model instead of Keras's line per batch; 2: Keras's per-epoch lines."""
    return [_EpochBar(name, epochs)] if verbose == 1 else []


def _keras_verbose(verbose: int) -> int:
    return 0 if verbose == 1 else verbose


def _check_common(train: Any, val: Any, epochs: int, batch_size: int, verbose: int) -> None:
    for nm, ds in (("train", train), ("val", val)):
        if ds is None or not hasattr(ds, "images") or not hasattr(ds, "labels"):
            raise ValueError(f"{nm} must be an ImageSet with images and labels, got {type(ds).__name__}")
        if len(ds) == 0:
            raise ValueError(f"{nm} set is empty")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs {epochs!r} must be a positive integer")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size {batch_size!r} must be a positive integer")
    if verbose not in _VERBOSE:
        raise ValueError(f"verbose {verbose!r} is not supported; accepted: {list(_VERBOSE)}")


def _train_dataset(data: Any, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled (reshuffled each epoch, seeded) batches of ``(float images, labels)``."""
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels.astype(np.int32)))
    ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def _eval_dataset(data: Any, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels.astype(np.int32))).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def _images_dataset(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    ds = ds.map(lambda x: tf.cast(x, tf.float32) / 255.0, num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def evaluate_classifier(model: keras.Model, data: Any, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on an ImageSet (inference mode, batched, compiled once per model)."""
    if len(data) == 0:
        return float("nan")
    probs = model.predict(_images_dataset(data.images, batch_size), verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(data.labels)))


def embed_images(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings ``(N, D)`` of uint8 images ``(N, H, W, 3)`` (inference mode, batched)."""
    return np.asarray(model.predict(_images_dataset(images, batch_size), verbose=0))


def knn_accuracy(
    query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray, gallery_labels: np.ndarray,
    leave_one_out: bool = False,
) -> float:
    """1-nearest-neighbour accuracy by cosine similarity of embeddings.

    Args:
        query, gallery: ``(Q, D)`` and ``(G, D)`` embeddings.
        query_labels, gallery_labels: ``(Q,)`` and ``(G,)`` labels.
        leave_one_out: Query and gallery are the same set; ignore each image's match with itself.
    """
    q = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    g = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    sim = q @ g.T
    if leave_one_out:
        np.fill_diagonal(sim, -np.inf)
    return float(np.mean(np.asarray(gallery_labels)[np.argmax(sim, axis=1)] == np.asarray(query_labels)))


def _scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def _prebuild_for_strategy(net: keras.Model, data: Any, strategy: Any) -> None:
    """Build the model's, metrics' and optimizer's state in ``strategy``'s scope before ``fit``.

    Keras 3's ``fit``/``evaluate`` under a ``tf.distribute`` strategy first build that state from
    one distributed batch, which they average with ``strategy.reduce("MEAN", (x, y))``; under
    ``MultiWorkerMirroredStrategy`` every element is a ``PerReplica`` and TensorFlow refuses to
    reduce the tuple ("Attempt to convert a value (PerReplica ...) to a Tensor"). The same build
    is done here from two local images, and Keras's step is then skipped for this model.
    """
    if strategy is None:
        return
    batch = (tf.cast(data.images[:2], tf.float32) / 255.0, tf.constant(data.labels[:2].astype(np.int32)))
    with strategy.scope():
        net._symbolic_build(data_batch=batch)
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _distribution_config(batch_size: int, strategy: Any) -> dict[str, Any]:
    """The model card's record of how the training was distributed."""
    return {"strategy": "default" if strategy is None else type(strategy).__name__,
            "replicas": dist_mod.replicas(strategy), "per_replica_batch_size": batch_size,
            "global_batch_size": dist_mod.global_batch_size(batch_size, strategy)}


def _callbacks(schedule: Callable[..., float], best: BestWeights) -> list[keras.callbacks.Callback]:
    return [keras.callbacks.LearningRateScheduler(schedule), best]


def _history(h: keras.callbacks.History, best: BestWeights, schedule: Callable[..., float]) -> dict[str, list[float]]:
    hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    hist.update(best.extra)
    n = len(next(iter(h.history.values()), []))
    hist["learning_rate"] = [schedule(e) for e in range(n)]
    return hist


# --------------------------------------------------------------------------------- training
def train_classifier(
    model: str | keras.Model | Callable[[], keras.Model],
    train: Any,
    val: Any,
    test: Any | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = PAPER_LEARNING_RATE,
    lr_decay_every: int = 10,
    lr_decay: float = 0.1,
    seed: int = 0,
    width: float = 1.0,
    checkpoint_path: str | Path | None = None,
    verbose: int = 1,
    name: str | None = None,
    strategy: Any | None = None,
) -> TrainResult:
    """Train a classifier with the papers' recipe and keep its best-on-validation weights.

    Args:
        model: An architecture name (``vgg11``, ``resnet18``, ``simple``, ``simpler``), built here
            for the data's image size and class count after seeding; a zero-argument builder
            (called after seeding); or a built Keras model (the seed then only governs
            shuffling and dropout). The model maps float32 ``(N, H, W, 3)`` in ``[0, 1]`` to
            softmax probabilities ``(N, C)``.
        train, val, test: ImageSets (uint8 images ``(N, H, W, 3)``, labels ``(N,)``). ``test``
            is optional; its accuracy is recorded.
        epochs: Number of epochs.
        batch_size: Mini-batch size.
        learning_rate: Initial Adam learning rate (papers: 1e-4).
        lr_decay_every, lr_decay: The step schedule (papers: ×0.1 every 10 epochs).
        seed: Seeds weights, shuffling and dropout (``keras.utils.set_random_seed``).
        width: Width multiplier when ``model`` is an architecture name.
        checkpoint_path: ``*.weights.h5`` path for the best weights (written atomically).
        verbose: 0 silent, 1 one progress bar per model (over epochs), 2 Keras's line per epoch.
        name: Name given to a model built here (default the architecture name).
        strategy: A ``tf.distribute`` strategy (:func:`models.distribute.make_strategy`) or
            ``None``. The model is built and compiled in its scope; ``batch_size`` is then the
            per-replica batch (each step takes ``batch_size × replicas``), ``learning_rate`` is
            used as given (the caller scales it, see :func:`models.distribute.scaled_learning_rate`).
            Every worker of a cluster must call this with the same arguments.

    Returns:
        A :class:`TrainResult` whose model holds the best-on-validation weights.

    Raises:
        ValueError: unknown architecture (the message lists the accepted ones), bad sizes or
            hyper-parameters, or data whose image size or class count does not fit the model.
    """
    _check_common(train, val, epochs, batch_size, verbose)
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    num_classes = len(train.class_names)
    input_size = int(train.images.shape[1])
    with _scope(strategy):  # variables mirrored over the replicas (built and compiled in scope)
        if isinstance(model, str):
            if model not in arch_mod.CLASSIFIERS:
                raise ValueError(f"unknown classifier {model!r}; accepted: {sorted(arch_mod.CLASSIFIERS)}")
            arch_name = model
            builder = arch_mod.CLASSIFIERS[model]
            net = build_seeded(
                lambda: builder(input_size=input_size, num_classes=num_classes, width=width, name=name or arch_name), seed
            )
        elif isinstance(model, keras.Model):
            set_seed(seed)
            net, arch_name = model, model.name
        elif callable(model):
            net = build_seeded(model, seed)
            arch_name = net.name
        else:
            raise ValueError(f"model must be an architecture name, a builder or a keras.Model, got {type(model).__name__}")
        expected = tuple(int(s) for s in net.inputs[0].shape[1:])
        if tuple(train.images.shape[1:]) != expected:
            raise ValueError(f"images of shape {train.images.shape[1:]} do not fit model {net.name!r} with input {expected}")
        if int(net.outputs[0].shape[-1]) != num_classes:
            raise ValueError(f"model {net.name!r} has {net.outputs[0].shape[-1]} outputs but the data has {num_classes} classes")

        net.compile(
            optimizer=make_optimizer(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
    _prebuild_for_strategy(net, train, strategy)
    best = BestWeights(lambda e, logs: (logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0)), checkpoint_path)
    t0 = time.perf_counter()
    h = net.fit(
        _train_dataset(train, dist_mod.global_batch_size(batch_size, strategy), seed),
        validation_data=_eval_dataset(val, max(dist_mod.global_batch_size(batch_size, strategy), 64)),
        epochs=epochs,
        callbacks=[*_callbacks(schedule, best), *_epoch_bar(arch_name, epochs, verbose)],
        verbose=_keras_verbose(verbose),
        shuffle=False,  # the dataset reshuffles itself every epoch (seeded)
    )
    seconds = time.perf_counter() - t0
    result = TrainResult(model=net, kind="classifier", architecture=arch_name, seed=int(seed))
    result.history = _history(h, best, schedule)
    result.best_epoch = best.best_epoch
    result.epochs_run = len(result.history.get("loss", []))
    result.seconds = seconds
    result.images_per_second = len(train) * result.epochs_run / max(seconds, 1e-9)
    result.train_accuracy = evaluate_classifier(net, train)
    result.val_accuracy = evaluate_classifier(net, val)
    result.test_accuracy = evaluate_classifier(net, test) if test is not None and len(test) else None
    result.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    result.config = {
        "loss": "sparse_categorical_crossentropy",
        "optimizer": {"name": "adam", "learning_rate": learning_rate, "beta_1": ADAM_BETA_1,
                      "beta_2": ADAM_BETA_2, "epsilon": ADAM_EPSILON},
        "schedule": {"every": lr_decay_every, "factor": lr_decay},
        "epochs": epochs,
        "batch_size": batch_size,
        "selection": "best val_accuracy (ties: lowest val_loss)",
        **_distribution_config(batch_size, strategy),
    }
    return result


class _TripletLoss(keras.losses.Loss):
    """Keras wrapper of the triplet losses (``y_true`` = labels, ``y_pred`` = embeddings).

    ``hard`` is a non-trainable weight in ``[0, 1]``: the loss is
    ``hard · batch_hard + (1 − hard) · batch_all`` (set per epoch by :class:`_LossSwitch`).
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


class _LossSwitch(keras.callbacks.Callback):
    """Batch-all for the first ``warmup`` epochs, then batch-hard."""

    def __init__(self, loss: _TripletLoss, warmup: int, final: str) -> None:
        super().__init__()
        self.loss, self.warmup, self.final = loss, warmup, final

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        hard = 0.0 if epoch < self.warmup else (1.0 if self.final == "batch_hard" else 0.0)
        self.loss.hard.assign(hard)


TRIPLET_LOSSES = ("batch_hard", "batch_all")


def train_embedding(
    model: str | keras.Model | Callable[[], keras.Model],
    train: Any,
    val: Any,
    test: Any | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = PAPER_LEARNING_RATE,
    lr_decay_every: int = 10,
    lr_decay: float = 0.1,
    margin: float = 0.2,
    loss: str = "batch_hard",
    warmup_epochs: int = 0,
    seed: int = 0,
    width: float = 1.0,
    embedding_dim: int | None = None,
    checkpoint_path: str | Path | None = None,
    verbose: int = 1,
    name: str | None = None,
    strategy: Any | None = None,
) -> TrainResult:
    """Train an embedding network with the batch-hard triplet loss (seed 002).

    Same optimiser and schedule as :func:`train_classifier`. Batches are drawn at random from
    the shuffled training set; anchors without a positive or a negative in their batch are
    skipped by the loss. With ``warmup_epochs > 0`` the first epochs use the batch-all loss
    (:func:`batch_all_triplet_loss`) and the rest ``loss``: from a random initialisation the
    batch-hard loss on unit-norm embeddings tends to collapse every image onto one point (loss
    stuck at the margin); a batch-all warm-up avoids that (Hermans et al. 2017 discuss the same
    instability). The kept weights are those with the best 1-nearest-neighbour accuracy
    (cosine) of the validation images against the training images, ties broken by the lower
    batch-hard loss over the whole validation set.

    Args:
        model: ``"avg"`` or ``"max"`` (an :func:`models.architectures.embedding_net` with that
            pooling, built here after seeding), a zero-argument builder, or a built model mapping
            float32 ``(N, H, W, 3)`` to embeddings ``(N, D)``.
        train, val, test: ImageSets of landmark images (labels = landmark identity).
        margin: Triplet margin on unit-norm embeddings.
        loss: ``"batch_hard"`` (default) or ``"batch_all"`` after the warm-up.
        warmup_epochs: Epochs of batch-all loss first (0 = none).
        width, embedding_dim: Builder arguments when ``model`` is a pooling name.
        name: Model name when built here (default ``embedding_<pooling>``).
        Others (``strategy`` too): as in :func:`train_classifier`.

    Returns:
        A :class:`TrainResult`; its accuracies are 1-NN accuracies against the training images
        (leave-one-out for the training accuracy).
    """
    _check_common(train, val, epochs, batch_size, verbose)
    if not margin > 0:
        raise ValueError(f"margin {margin!r} must be positive")
    if loss not in TRIPLET_LOSSES:
        raise ValueError(f"loss {loss!r} is not supported; accepted: {list(TRIPLET_LOSSES)}")
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs {warmup_epochs!r} must be a non-negative integer")
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    input_size = int(train.images.shape[1])
    with _scope(strategy):  # variables mirrored over the replicas (built and compiled in scope)
        if isinstance(model, str):
            if model not in arch_mod.POOLINGS:
                raise ValueError(f"unknown pooling {model!r}; accepted: {list(arch_mod.POOLINGS)}")
            pooling = model
            net = build_seeded(
                lambda: arch_mod.embedding_net(
                    input_size=input_size, pooling=pooling, embedding_dim=embedding_dim, width=width,
                    name=name or f"embedding_{pooling}",
                ),
                seed,
            )
        elif isinstance(model, keras.Model):
            set_seed(seed)
            net = model
        elif callable(model):
            net = build_seeded(model, seed)
        else:
            raise ValueError(f"model must be 'avg', 'max', a builder or a keras.Model, got {type(model).__name__}")
        expected = tuple(int(s) for s in net.inputs[0].shape[1:])
        if tuple(train.images.shape[1:]) != expected:
            raise ValueError(f"images of shape {train.images.shape[1:]} do not fit model {net.name!r} with input {expected}")

        triplet = _TripletLoss(margin)
        net.compile(optimizer=make_optimizer(learning_rate), loss=triplet)
    val_labels = np.asarray(val.labels)

    def score(epoch: int, logs: dict[str, Any]) -> tuple:
        g = embed_images(net, train.images)
        q = embed_images(net, val.images)
        acc = knn_accuracy(q, val_labels, g, train.labels)
        vloss = float(batch_hard_triplet_loss(val_labels, q, margin))
        logs["val_knn_accuracy"] = acc
        logs["val_loss"] = vloss
        return (acc, -vloss)

    _prebuild_for_strategy(net, train, strategy)
    best = BestWeights(score, checkpoint_path)
    t0 = time.perf_counter()
    h = net.fit(
        _train_dataset(train, dist_mod.global_batch_size(batch_size, strategy), seed),
        epochs=epochs,
        callbacks=[_LossSwitch(triplet, warmup_epochs, loss), *_callbacks(schedule, best),
                   *_epoch_bar("embedding", epochs, verbose)],
        verbose=_keras_verbose(verbose),
        shuffle=False,  # the dataset reshuffles itself every epoch (seeded)
    )
    seconds = time.perf_counter() - t0
    result = TrainResult(model=net, kind="embedding", architecture="embedding", seed=int(seed))
    result.history = _history(h, best, schedule)
    result.best_epoch = best.best_epoch
    result.epochs_run = len(result.history.get("loss", []))
    result.seconds = seconds
    result.images_per_second = len(train) * result.epochs_run / max(seconds, 1e-9)
    g = embed_images(net, train.images)
    result.train_accuracy = knn_accuracy(g, train.labels, g, train.labels, leave_one_out=True)
    result.val_accuracy = knn_accuracy(embed_images(net, val.images), val.labels, g, train.labels)
    if test is not None and len(test):
        result.test_accuracy = knn_accuracy(embed_images(net, test.images), test.labels, g, train.labels)
    result.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    result.config = {
        "loss": f"{loss}_triplet(margin={margin})" + (f" after {warmup_epochs} batch_all epochs" if warmup_epochs else ""),
        "optimizer": {"name": "adam", "learning_rate": learning_rate, "beta_1": ADAM_BETA_1,
                      "beta_2": ADAM_BETA_2, "epsilon": ADAM_EPSILON},
        "schedule": {"every": lr_decay_every, "factor": lr_decay},
        "epochs": epochs,
        "batch_size": batch_size,
        "selection": "best val 1-NN accuracy against train (ties: lowest val triplet loss)",
        "accuracy": "1-NN cosine against the training images",
        **_distribution_config(batch_size, strategy),
    }
    return result


def train_siamese(
    train: Any,
    val: Any,
    test: Any | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = PAPER_LEARNING_RATE,
    lr_decay_every: int = 10,
    lr_decay: float = 0.1,
    margin: float = 1.0,
    contrastive_weight: float = 1.0,
    embedding_dim: int = 128,
    width: float = 1.0,
    seed: int = 0,
    checkpoint_path: str | Path | None = None,
    verbose: int = 1,
    name: str = "siamese",
) -> TrainResult:
    """Train the Siamese classifier of seed 003 with softmax + contrastive loss.

    The network is :func:`models.architectures.siamese_classifier` (built here after seeding).
    Pairs come from the batch: each image is paired with the next one of the shuffled batch
    (``tf.roll`` by one), so roughly ``1/C`` of the pairs share a class. Per batch:

    ``L = ½ (CE(y_a, p_a) + CE(y_b, p_b)) + contrastive_weight · mean(s d² + (1 − s) max(m − d, 0)²)``

    with the Euclidean distance ``d`` between the two embeddings (before the ReLU) and margin
    ``m``. Adam and the step schedule as in :func:`train_classifier`; the best-on-validation
    classification accuracy is kept.

    Returns:
        A :class:`TrainResult` whose ``model`` is the classifier (what gets explained and
        exported); ``history`` holds ``loss``, ``ce``, ``contrastive``, ``val_accuracy``.
    """
    _check_common(train, val, epochs, batch_size, verbose)
    if not margin > 0:
        raise ValueError(f"margin {margin!r} must be positive")
    if contrastive_weight < 0:
        raise ValueError(f"contrastive_weight {contrastive_weight!r} must be >= 0")
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    num_classes = len(train.class_names)
    input_size = int(train.images.shape[1])
    set_seed(seed)
    classifier, pair = arch_mod.siamese_classifier(
        input_size=input_size, num_classes=num_classes, embedding_dim=embedding_dim, width=width, name=name
    )
    opt = make_optimizer(learning_rate)
    ce = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        xb, yb = tf.roll(x, 1, axis=0), tf.roll(y, 1, axis=0)
        with tf.GradientTape() as tape:
            pa, pb, dist = pair([x, xb], training=True)
            l_ce = 0.5 * (ce(y, pa) + ce(yb, pb))
            l_con = contrastive_loss(tf.equal(y, yb), dist, margin)
            loss = l_ce + contrastive_weight * l_con
        grads = tape.gradient(loss, pair.trainable_variables)
        opt.apply_gradients(zip(grads, pair.trainable_variables))
        return loss, l_ce, l_con

    from tqdm.auto import tqdm

    history: dict[str, list[float]] = {k: [] for k in ("loss", "ce", "contrastive", "val_accuracy", "learning_rate")}
    best_score: tuple | None = None
    best_epoch, best_weights = 0, None
    ds = _train_dataset(train, batch_size, seed)
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), desc=f"train {name}", disable=verbose == 0, leave=verbose == 1)
    for epoch in bar:
        opt.learning_rate.assign(schedule(epoch))
        sums = np.zeros(3)
        batches = 0
        for x, y in ds:
            sums += [float(v) for v in step(x, y)]
            batches += 1
        sums /= max(batches, 1)
        acc = evaluate_classifier(classifier, val)
        for k, v in zip(("loss", "ce", "contrastive", "val_accuracy", "learning_rate"), (*sums, acc, schedule(epoch))):
            history[k].append(float(v))
        bar.set_postfix(loss=f"{sums[0]:.3f}", val_accuracy=f"{acc:.3f}")
        s = (acc, -sums[0])
        if best_score is None or s > best_score:
            best_score, best_epoch = s, epoch
            best_weights = [np.array(w, copy=True) for w in pair.get_weights()]
            if checkpoint_path is not None:
                _atomic_save_weights(classifier, Path(checkpoint_path))
    if best_weights is not None:
        pair.set_weights(best_weights)
    seconds = time.perf_counter() - t0
    result = TrainResult(model=classifier, kind="siamese", architecture="siamese", seed=int(seed))
    result.history = history
    result.best_epoch = best_epoch
    result.epochs_run = epochs
    result.seconds = seconds
    result.images_per_second = len(train) * epochs / max(seconds, 1e-9)
    result.train_accuracy = evaluate_classifier(classifier, train)
    result.val_accuracy = evaluate_classifier(classifier, val)
    result.test_accuracy = evaluate_classifier(classifier, test) if test is not None and len(test) else None
    result.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    result.config = {
        "loss": f"softmax cross-entropy + {contrastive_weight} x contrastive(margin={margin}), pairs rolled in batch",
        "optimizer": {"name": "adam", "learning_rate": learning_rate, "beta_1": ADAM_BETA_1,
                      "beta_2": ADAM_BETA_2, "epsilon": ADAM_EPSILON},
        "schedule": {"every": lr_decay_every, "factor": lr_decay},
        "epochs": epochs,
        "batch_size": batch_size,
        "selection": "best val_accuracy (ties: lowest training loss)",
    }
    result.pair_model = pair  # type: ignore[attr-defined]
    return result
