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

import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from models import architectures as arch_mod
from models.fitting import (  # noqa: F401  (re-exported: the public names of models.train)
    ADAM_BETA_1,
    ADAM_BETA_2,
    ADAM_EPSILON,
    PAPER_LEARNING_RATE,
    BestWeights,
    TrainResult,
    atomic_save_weights,
    build_seeded,
    check_common,
    check_fits,
    distribution_config,
    embed_images,
    evaluate_classifier,
    fit,
    fit_history,
    knn_accuracy,
    make_optimizer,
    prebuild_for_strategy,
    recipe_config,
    record_run,
    resolve_model,
    schedule_callbacks,
    set_seed,
    step_decay,
    strategy_scope,
    train_dataset,
)
from models.losses import (  # noqa: F401
    TRIPLET_LOSSES,
    LossSwitch,
    TripletLoss,
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    contrastive_loss,
    pairwise_distances,
)

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

# the names of the module before it was split (scripts and tests use them)
_TripletLoss = TripletLoss
_train_dataset = train_dataset


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
    check_common(train, val, epochs, batch_size, verbose)
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    num_classes = len(train.class_names)
    input_size = int(train.images.shape[1])

    def build(arch: str) -> keras.Model:
        return arch_mod.CLASSIFIERS[arch](input_size=input_size, num_classes=num_classes, width=width,
                                          name=name or arch)

    with strategy_scope(strategy):  # variables mirrored over the replicas (built and compiled in scope)
        net, arch_name = resolve_model(model, seed, build, sorted(arch_mod.CLASSIFIERS),
                                       "an architecture name, a builder or a keras.Model", "classifier")
        check_fits(net, train, num_classes)
        net.compile(optimizer=make_optimizer(learning_rate), loss=keras.losses.SparseCategoricalCrossentropy(),
                    metrics=["accuracy"])
    prebuild_for_strategy(net, train, strategy)
    best = BestWeights(lambda e, logs: (logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0)), checkpoint_path)
    h, seconds = fit(net, train, val, epochs=epochs, batch_size=batch_size, seed=seed, strategy=strategy,
                     callbacks=schedule_callbacks(schedule, best), name=arch_name, verbose=verbose)
    result = TrainResult(model=net, kind="classifier", architecture=arch_name, seed=int(seed))
    record_run(result, fit_history(h, best, schedule), best.best_epoch, seconds, len(train), checkpoint_path)
    result.train_accuracy = evaluate_classifier(net, train)
    result.val_accuracy = evaluate_classifier(net, val)
    result.test_accuracy = evaluate_classifier(net, test) if test is not None and len(test) else None
    result.config = {
        **recipe_config("sparse_categorical_crossentropy", learning_rate, lr_decay_every, lr_decay, epochs, batch_size,
                        "best val_accuracy (ties: lowest val_loss)"),
        **distribution_config(batch_size, strategy),
    }
    return result


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
    check_common(train, val, epochs, batch_size, verbose)
    if not margin > 0:
        raise ValueError(f"margin {margin!r} must be positive")
    if loss not in TRIPLET_LOSSES:
        raise ValueError(f"loss {loss!r} is not supported; accepted: {list(TRIPLET_LOSSES)}")
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs {warmup_epochs!r} must be a non-negative integer")
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    input_size = int(train.images.shape[1])

    def build(pooling: str) -> keras.Model:
        return arch_mod.embedding_net(input_size=input_size, pooling=pooling, embedding_dim=embedding_dim, width=width,
                                      name=name or f"embedding_{pooling}")

    with strategy_scope(strategy):  # variables mirrored over the replicas (built and compiled in scope)
        net, _ = resolve_model(model, seed, build, list(arch_mod.POOLINGS), "'avg', 'max', a builder or a keras.Model",
                               "pooling")
        check_fits(net, train)
        triplet = TripletLoss(margin)
        net.compile(optimizer=make_optimizer(learning_rate), loss=triplet)
    prebuild_for_strategy(net, train, strategy)
    best = BestWeights(_knn_score(net, train, val, margin), checkpoint_path)
    h, seconds = fit(net, train, None, epochs=epochs, batch_size=batch_size, seed=seed, strategy=strategy,
                     callbacks=[LossSwitch(triplet, warmup_epochs, loss), *schedule_callbacks(schedule, best)],
                     name="embedding", verbose=verbose)
    result = TrainResult(model=net, kind="embedding", architecture="embedding", seed=int(seed))
    record_run(result, fit_history(h, best, schedule), best.best_epoch, seconds, len(train), checkpoint_path)
    g = embed_images(net, train.images)
    result.train_accuracy = knn_accuracy(g, train.labels, g, train.labels, leave_one_out=True)
    result.val_accuracy = knn_accuracy(embed_images(net, val.images), val.labels, g, train.labels)
    if test is not None and len(test):
        result.test_accuracy = knn_accuracy(embed_images(net, test.images), test.labels, g, train.labels)
    result.config = {
        **recipe_config(f"{loss}_triplet(margin={margin})" + (f" after {warmup_epochs} batch_all epochs" if warmup_epochs else ""),
                        learning_rate, lr_decay_every, lr_decay, epochs, batch_size,
                        "best val 1-NN accuracy against train (ties: lowest val triplet loss)"),
        "accuracy": "1-NN cosine against the training images",
        **distribution_config(batch_size, strategy),
    }
    return result


def _knn_score(net: keras.Model, train: Any, val: Any, margin: float) -> Callable[[int, dict[str, Any]], tuple]:
    """The embedding's selection score after each epoch: (validation 1-NN accuracy against the
    training images, −validation batch-hard loss); both are added to the epoch's logs."""
    val_labels = np.asarray(val.labels)

    def score(epoch: int, logs: dict[str, Any]) -> tuple:
        g = embed_images(net, train.images)
        q = embed_images(net, val.images)
        acc = knn_accuracy(q, val_labels, g, train.labels)
        vloss = float(batch_hard_triplet_loss(val_labels, q, margin))
        logs["val_knn_accuracy"] = acc
        logs["val_loss"] = vloss
        return (acc, -vloss)

    return score


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
    check_common(train, val, epochs, batch_size, verbose)
    if not margin > 0:
        raise ValueError(f"margin {margin!r} must be positive")
    if contrastive_weight < 0:
        raise ValueError(f"contrastive_weight {contrastive_weight!r} must be >= 0")
    schedule = step_decay(learning_rate, lr_decay_every, lr_decay)
    set_seed(seed)
    classifier, pair = arch_mod.siamese_classifier(
        input_size=int(train.images.shape[1]), num_classes=len(train.class_names), embedding_dim=embedding_dim,
        width=width, name=name,
    )
    opt = make_optimizer(learning_rate)
    step = _siamese_step(pair, opt, margin, contrastive_weight)
    t0 = time.perf_counter()
    history, best_epoch = _fit_siamese(classifier, pair, opt, step, train, val, epochs, batch_size, seed, schedule,
                                       checkpoint_path, name, verbose)
    seconds = time.perf_counter() - t0
    result = TrainResult(model=classifier, kind="siamese", architecture="siamese", seed=int(seed))
    record_run(result, history, best_epoch, seconds, len(train), checkpoint_path)
    result.train_accuracy = evaluate_classifier(classifier, train)
    result.val_accuracy = evaluate_classifier(classifier, val)
    result.test_accuracy = evaluate_classifier(classifier, test) if test is not None and len(test) else None
    result.config = recipe_config(
        f"softmax cross-entropy + {contrastive_weight} x contrastive(margin={margin}), pairs rolled in batch",
        learning_rate, lr_decay_every, lr_decay, epochs, batch_size, "best val_accuracy (ties: lowest training loss)")
    result.pair_model = pair  # type: ignore[attr-defined]
    return result


def _siamese_step(pair: keras.Model, opt: keras.optimizers.Optimizer, margin: float,
                  contrastive_weight: float) -> Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """One compiled training step on a batch: each image paired with the next one (``tf.roll``)."""
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

    return step


def _fit_siamese(classifier: keras.Model, pair: keras.Model, opt: keras.optimizers.Optimizer, step: Callable,
                 train: Any, val: Any, epochs: int, batch_size: int, seed: int, schedule: Callable[..., float],
                 checkpoint_path: str | Path | None, name: str, verbose: int) -> tuple[dict[str, list[float]], int]:
    """The epochs of :func:`train_siamese`; keeps (and restores) the best-on-validation weights.

    Returns:
        ``(history, best epoch)``.
    """
    from tqdm.auto import tqdm

    history: dict[str, list[float]] = {k: [] for k in ("loss", "ce", "contrastive", "val_accuracy", "learning_rate")}
    best_score: tuple | None = None
    best_epoch, best_weights = 0, None
    ds = train_dataset(train, batch_size, seed)
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
                atomic_save_weights(classifier, Path(checkpoint_path))
    if best_weights is not None:
        pair.set_weights(best_weights)
    return history, best_epoch
