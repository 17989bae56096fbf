"""What the training functions share: the papers' optimiser and step schedule, seeding, the
best-on-validation weights (in memory and as an atomic checkpoint), one progress bar per model,
the input pipelines, the accuracy measures, ``tf.distribute`` set-up and the bookkeeping of a
:class:`TrainResult` (see :mod:`models.train` for the recipe itself).
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

from models import distribute as dist_mod

__all__ = ["ADAM_BETA_1", "ADAM_BETA_2", "ADAM_EPSILON", "PAPER_LEARNING_RATE", "TrainResult", "BestWeights",
           "EpochBar", "step_decay", "make_optimizer", "set_seed", "build_seeded", "evaluate_classifier",
           "embed_images", "knn_accuracy"]

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


def atomic_save_weights(model: keras.Model, path: Path) -> None:
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
                atomic_save_weights(self.model, self.checkpoint_path)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class EpochBar(keras.callbacks.Callback):
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


def epoch_bar(name: str, epochs: int, verbose: int) -> list[keras.callbacks.Callback]:
    """``verbose=1``: one bar per model instead of Keras's line per batch; 2: Keras's per-epoch lines."""
    return [EpochBar(name, epochs)] if verbose == 1 else []


def keras_verbose(verbose: int) -> int:
    return 0 if verbose == 1 else verbose


def check_common(train: Any, val: Any, epochs: int, batch_size: int, verbose: int) -> None:
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


def train_dataset(data: Any, batch_size: int, seed: int) -> tf.data.Dataset:
    """Shuffled (reshuffled each epoch, seeded) batches of ``(float images, labels)``."""
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels.astype(np.int32)))
    ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def eval_dataset(data: Any, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels.astype(np.int32))).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def images_dataset(images: np.ndarray, batch_size: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    ds = ds.map(lambda x: tf.cast(x, tf.float32) / 255.0, num_parallel_calls=2).prefetch(2)
    return ds.with_options(dist_mod.shard_options())


def evaluate_classifier(model: keras.Model, data: Any, batch_size: int = 64) -> float:
    """Accuracy of ``model`` on an ImageSet (inference mode, batched, compiled once per model)."""
    if len(data) == 0:
        return float("nan")
    probs = model.predict(images_dataset(data.images, batch_size), verbose=0)
    return float(np.mean(np.argmax(probs, axis=-1) == np.asarray(data.labels)))


def embed_images(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Embeddings ``(N, D)`` of uint8 images ``(N, H, W, 3)`` (inference mode, batched)."""
    return np.asarray(model.predict(images_dataset(images, batch_size), verbose=0))


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


def strategy_scope(strategy: Any) -> Any:
    """``strategy.scope()``, or a no-op context without a strategy."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def prebuild_for_strategy(net: keras.Model, data: Any, strategy: Any) -> None:
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


def distribution_config(batch_size: int, strategy: Any) -> dict[str, Any]:
    """The model card's record of how the training was distributed."""
    return {"strategy": "default" if strategy is None else type(strategy).__name__,
            "replicas": dist_mod.replicas(strategy), "per_replica_batch_size": batch_size,
            "global_batch_size": dist_mod.global_batch_size(batch_size, strategy)}


def schedule_callbacks(schedule: Callable[..., float], best: BestWeights) -> list[keras.callbacks.Callback]:
    return [keras.callbacks.LearningRateScheduler(schedule), best]


def fit_history(h: keras.callbacks.History, best: BestWeights, schedule: Callable[..., float]) -> dict[str, list[float]]:
    hist = {k: [float(v) for v in vals] for k, vals in h.history.items()}
    hist.update(best.extra)
    n = len(next(iter(h.history.values()), []))
    hist["learning_rate"] = [schedule(e) for e in range(n)]
    return hist



# ----------------------------------------------------------------------- one training run
def resolve_model(
    model: Any, seed: int, build_named: Callable[[str], keras.Model], accepted: list[str], kinds: str, what: str,
) -> tuple[keras.Model, str]:
    """The network to train and its name; the seed is set before anything is built.

    Args:
        model: A name in ``accepted`` (built by ``build_named(name)``), a zero-argument builder, or
            a built Keras model (the seed then governs only shuffling and dropout).
        seed: The seed (:func:`set_seed`).
        build_named: Builds the network for a name.
        accepted: The accepted names (listed by the error).
        kinds: What ``model`` may be, for the error (``"an architecture name, a builder or …"``).
        what: What a name names (``"classifier"``, ``"pooling"``).

    Returns:
        ``(network, name)``: for a name, the name itself; otherwise the network's name.
    """
    if isinstance(model, str):
        if model not in accepted:
            raise ValueError(f"unknown {what} {model!r}; accepted: {list(accepted)}")
        return build_seeded(lambda: build_named(model), seed), model
    if isinstance(model, keras.Model):
        set_seed(seed)
        return model, model.name
    if callable(model):
        net = build_seeded(model, seed)
        return net, net.name
    raise ValueError(f"model must be {kinds}, got {type(model).__name__}")


def check_fits(net: keras.Model, data: Any, num_classes: int | None = None) -> None:
    """Refuse data whose image shape (or class count) does not fit the network."""
    expected = tuple(int(s) for s in net.inputs[0].shape[1:])
    if tuple(data.images.shape[1:]) != expected:
        raise ValueError(f"images of shape {data.images.shape[1:]} do not fit model {net.name!r} with input {expected}")
    if num_classes is not None and int(net.outputs[0].shape[-1]) != num_classes:
        raise ValueError(f"model {net.name!r} has {net.outputs[0].shape[-1]} outputs but the data has {num_classes} classes")


def fit(
    net: keras.Model, train: Any, val: Any | None, *, epochs: int, batch_size: int, seed: int, strategy: Any,
    callbacks: list[keras.callbacks.Callback], name: str, verbose: int,
) -> tuple[keras.callbacks.History, float]:
    """``net.fit`` on the seeded, reshuffled training batches (``batch_size`` per replica), with
    validation batches when ``val`` is given and one progress bar; returns the history and the
    wall time in seconds."""
    global_batch = dist_mod.global_batch_size(batch_size, strategy)
    t0 = time.perf_counter()
    h = net.fit(
        train_dataset(train, global_batch, seed),
        validation_data=None if val is None else eval_dataset(val, max(global_batch, 64)),
        epochs=epochs,
        callbacks=[*callbacks, *epoch_bar(name, epochs, verbose)],
        verbose=keras_verbose(verbose),
        shuffle=False,  # the dataset reshuffles itself every epoch (seeded)
    )
    return h, time.perf_counter() - t0


def record_run(result: TrainResult, history: dict[str, list[float]], best_epoch: int, seconds: float,
               num_train: int, checkpoint_path: str | Path | None) -> None:
    """Fill ``result``'s history, kept epoch, epochs run, time, throughput and checkpoint path."""
    result.history = history
    result.best_epoch = best_epoch
    result.epochs_run = len(history.get("loss", []))
    result.seconds = seconds
    result.images_per_second = num_train * result.epochs_run / max(seconds, 1e-9)
    result.checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None


def recipe_config(loss: str, learning_rate: float, lr_decay_every: int, lr_decay: float, epochs: int,
                  batch_size: int, selection: str) -> dict[str, Any]:
    """The model card's record of the loss, the Adam optimiser, the schedule and the selection rule."""
    return {
        "loss": loss,
        "optimizer": {"name": "adam", "learning_rate": learning_rate, "beta_1": ADAM_BETA_1,
                      "beta_2": ADAM_BETA_2, "epsilon": ADAM_EPSILON},
        "schedule": {"every": lr_decay_every, "factor": lr_decay},
        "epochs": epochs,
        "batch_size": batch_size,
        "selection": selection,
    }
