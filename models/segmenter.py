"""A small segmentation network trained on the synthetic cities' label maps, and its export.

Seeds 000 and 001 labelled the objects inside the visual explanations with a segmentation
network, because real photographs have no label maps. The synthetic cities come with exact
ADE20K label maps; this module trains a small fully-convolutional network on them, so that the
evaluation can measure how much a segmenter's errors move the papers' measures (R_pc, object
histograms) compared with the ground truth, and so that real image folders without label maps
still get object labels.

The network (:func:`build_segmenter`) is a tiny U-Net: three encoder blocks of two 3×3
convolutions (batch normalisation, ReLU) with 2×2 max pooling between them, two decoder blocks
that upsample ×2 (nearest), concatenate the encoder's skip connection and apply two 3×3
convolutions, and a 1×1 convolution to ``K`` logits per pixel. Layer names are stable:
``enc{1,2,3}_conv{1,2}`` (+ ``_bn``, ``_relu``), ``enc{1,2}_pool``, ``dec{2,1}_up``,
``dec{2,1}_concat``, ``dec{2,1}_conv{1,2}`` and ``logits``. The side must be a multiple of 4.

Classes: the network predicts a *compact* class ``k ∈ [0, K)``; :data:`SegmenterClasses`
maps it to the ADE20K index the generator writes (``classes.indices[k]``) and back. The class list
is every object the default :class:`~models.datasets.CitiesConfig` can draw, in ADE20K order.

Export (:func:`export_segmenter`) follows :mod:`models.export`: TF Serving's layout
``<root>/<name>/<version>/``, the next version, written into a temporary folder and renamed.
Signatures (``images`` uint8 ``(N, H, W, 3)``, scaled by 1/255 inside the graph):

* ``segment`` → ``label_map`` int32 ``(N, H, W)``: the ADE20K index of the arg-max class;
* ``serving_default`` → ``label_map`` and ``probabilities`` float32 ``(N, H, W, K)`` (softmax;
  channel ``k`` is ADE20K index ``classes[k]`` of the card).

The card (``assets.extra/model_card.json``) has ``kind: "segmenter"``, ``classes`` (a list of
``{"index", "name"}``), ``class_names``, ``input_size``, ``pixel_accuracy``, ``mean_iou``,
``per_class_iou`` and ``majority_baseline`` on the held-out test scenes, ``training_data`` (the
generator call that regenerates the data) and ``training`` (epochs, batch, learning rate). The
data description is deliberately *not* called ``dataset``: the evaluation takes the classifiers'
test images from the first card with a ``dataset`` entry.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only; Keras/TensorFlow are imported lazily
    import keras

__all__ = [
    "SEGMENTER_PRESETS",
    "SegmenterPreset",
    "SegmenterClasses",
    "SegmenterResult",
    "build_segmenter",
    "city_classes",
    "segmentation_scores",
    "train_segmenter",
    "export_segmenter",
]

#: The card's ``kind``.
KIND = "segmenter"


@dataclass(frozen=True)
class SegmenterPreset:
    """How a segmenter is trained.

    Attributes:
        name: Preset name.
        description: One line for ``--help``.
        image_size: Side of the training scenes (a multiple of 4).
        n_per_class: Scenes generated per city (split 6:2:2; the test part is held out).
        filters: Filters of the three encoder blocks.
        epochs: Training epochs.
        batch_size: Scenes per step.
        learning_rate: Adam learning rate (constant).
    """

    name: str
    description: str
    image_size: int
    n_per_class: int
    filters: tuple[int, int, int]
    epochs: int
    batch_size: int
    learning_rate: float


SEGMENTER_PRESETS: dict[str, SegmenterPreset] = {
    "tiny": SegmenterPreset("tiny", "tests: 64 px, 160 scenes per city, filters 8/16/32, 16 epochs (under a minute)",
                            image_size=64, n_per_class=160, filters=(8, 16, 32), epochs=16, batch_size=8,
                            learning_rate=3e-3),
    "small": SegmenterPreset("small", "demo: 128 px, 200 scenes per city, filters 12/24/48, 15 epochs (minutes)",
                             image_size=128, n_per_class=200, filters=(12, 24, 48), epochs=15, batch_size=8,
                             learning_rate=3e-3),
}


@dataclass(frozen=True)
class SegmenterClasses:
    """The compact class list of a segmenter: class ``k`` is ADE20K index ``indices[k]``.

    Attributes:
        indices: ADE20K indices, ascending, distinct, in 1..255.
        names: Their ADE20K names.
    """

    indices: tuple[int, ...]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        idx = [int(i) for i in self.indices]
        if not idx or sorted(set(idx)) != idx or idx[0] < 1 or idx[-1] > 255:
            raise ValueError(f"segmenter class indices must be distinct ascending ADE20K indices in 1..255, got {idx}")
        if len(self.names) != len(idx):
            raise ValueError(f"{len(self.names)} names for {len(idx)} class indices")
        object.__setattr__(self, "indices", tuple(idx))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))

    def __len__(self) -> int:
        return len(self.indices)

    def encode(self, label_maps: np.ndarray) -> np.ndarray:
        """ADE20K label maps → compact classes (int32).

        Raises:
            ValueError: a pixel holds an index that is not one of the classes (named).
        """
        lm = np.asarray(label_maps)
        table = np.full(256, -1, np.int32)
        table[list(self.indices)] = np.arange(len(self.indices), dtype=np.int32)
        out = table[lm.astype(np.uint8)]
        if (out < 0).any():
            bad = sorted(set(np.unique(lm[out < 0]).tolist()))
            raise ValueError(f"label maps hold ADE20K indices {bad} that are not segmenter classes; "
                             f"accepted: {list(self.indices)}")
        return out

    def decode(self, compact: np.ndarray) -> np.ndarray:
        """Compact classes → ADE20K indices (uint8)."""
        return np.asarray(self.indices, np.uint8)[np.asarray(compact)]

    def to_card(self) -> list[dict[str, Any]]:
        return [{"index": i, "name": n} for i, n in zip(self.indices, self.names)]

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "SegmenterClasses":
        """The class list of a segmenter's model card (``classes``)."""
        entries = card.get("classes") or []
        return cls(tuple(int(e["index"]) for e in entries), tuple(str(e["name"]) for e in entries))


def city_classes(config: Any = None) -> SegmenterClasses:
    """Every object the synthetic cities of ``config`` (default :class:`CitiesConfig`) can draw."""
    from models.datasets import make_cities

    names = make_cities(1, image_size=16, seed=0, config=config).object_names
    return SegmenterClasses(tuple(sorted(names)), tuple(names[i] for i in sorted(names)))


# -------------------------------------------------------------------------------------- network
def build_segmenter(
    image_size: int, num_classes: int, filters: Sequence[int] = (16, 32, 64), name: str = "segmenter"
) -> "keras.Model":
    """The tiny U-Net of the module docstring: float32 ``(N, S, S, 3)`` in [0, 1] → logits ``(N, S, S, K)``.

    Raises:
        ValueError: a side that is not a positive multiple of 4, fewer than 2 classes, or not
            three positive filter counts.
    """
    import keras
    from keras import layers

    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and at least 8, got {image_size!r}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes!r}")
    f = [int(x) for x in filters]
    if len(f) != 3 or min(f) < 1:
        raise ValueError(f"filters must be three positive integers, got {list(filters)!r}")

    def block(x, width: int, prefix: str):
        for j in (1, 2):
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{prefix}_conv{j}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_conv{j}_bn")(x)
            x = layers.ReLU(name=f"{prefix}_conv{j}_relu")(x)
        return x

    inputs = keras.Input((int(image_size), int(image_size), 3), name="images")
    e1 = block(inputs, f[0], "enc1")
    e2 = block(layers.MaxPooling2D(2, name="enc1_pool")(e1), f[1], "enc2")
    e3 = block(layers.MaxPooling2D(2, name="enc2_pool")(e2), f[2], "enc3")
    d2 = layers.Concatenate(name="dec2_concat")([layers.UpSampling2D(2, name="dec2_up")(e3), e2])
    d2 = block(d2, f[1], "dec2")
    d1 = layers.Concatenate(name="dec1_concat")([layers.UpSampling2D(2, name="dec1_up")(d2), e1])
    d1 = block(d1, f[0], "dec1")
    logits = layers.Conv2D(int(num_classes), 1, name="logits")(d1)
    return keras.Model(inputs, logits, name=name)


# -------------------------------------------------------------------------------------- scores
def segmentation_scores(
    predicted: np.ndarray, truth: np.ndarray, classes: Sequence[int] | None = None, ignore: int | None = 0
) -> dict[str, Any]:
    """Pixel accuracy and mean IoU of predicted label maps against the truth.

    * pixel accuracy = (pixels where ``predicted == truth``) / (pixels counted);
    * IoU of class ``p`` = |pred = p ∧ truth = p| / |pred = p ∨ truth = p|; the mean IoU averages
      it over the classes that occur in the truth or the prediction (of ``classes``, if given);
    * pixels whose truth is ``ignore`` (0, "unlabelled" in real label maps) are not counted.

    Args:
        predicted: ``(N, H, W)`` integer label maps.
        truth: ``(N, H, W)`` integer label maps, same shape.
        classes: Restrict the mean to these indices (default: all that occur).
        ignore: Truth value left out (``None``: count every pixel).

    Returns:
        ``{"pixel_accuracy", "mean_iou", "per_class_iou": {index: IoU}, "pixels"}``.
    """
    p = np.asarray(predicted).astype(np.int64).ravel()
    t = np.asarray(truth).astype(np.int64).ravel()
    if np.shape(predicted) != np.shape(truth):
        raise ValueError(f"predicted label maps {np.shape(predicted)} and truth {np.shape(truth)} differ in shape")
    if ignore is not None:
        keep = t != ignore
        p, t = p[keep], t[keep]
    if t.size == 0:
        return {"pixel_accuracy": float("nan"), "mean_iou": float("nan"), "per_class_iou": {}, "pixels": 0}
    n = int(max(p.max(), t.max())) + 1
    inter = np.bincount(t[p == t], minlength=n)
    union = np.bincount(p, minlength=n) + np.bincount(t, minlength=n) - inter
    wanted = range(n) if classes is None else [int(c) for c in classes if int(c) < n]
    iou = {int(c): float(inter[c] / union[c]) for c in wanted if union[c] > 0}
    return {
        "pixel_accuracy": float(np.mean(p == t)),
        "mean_iou": float(np.mean(list(iou.values()))) if iou else float("nan"),
        "per_class_iou": iou,
        "pixels": int(t.size),
    }


# -------------------------------------------------------------------------------------- training
@dataclass
class SegmenterResult:
    """A trained segmenter and its held-out scores (see :func:`train_segmenter`)."""

    model: Any
    classes: SegmenterClasses
    preset: str
    seed: int
    image_size: int
    epochs: int
    pixel_accuracy: float
    mean_iou: float
    per_class_iou: dict[int, float]
    majority_baseline: float
    training_data: dict[str, Any]
    training: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    test_images: Any = None


def predict_label_maps(model: Any, images: np.ndarray, classes: SegmenterClasses, batch_size: int = 32) -> np.ndarray:
    """ADE20K label maps ``(N, H, W)`` uint8 of uint8 images, by the Keras model's arg-max."""
    logits = model.predict(np.asarray(images, np.float32) / 255.0, batch_size=batch_size, verbose=0)
    return classes.decode(np.argmax(logits, axis=-1))


def _resolve(preset: str, image_size: int | None, epochs: int | None, n_per_class: int | None) -> SegmenterPreset:
    if preset not in SEGMENTER_PRESETS:
        raise ValueError(f"unknown segmenter preset {preset!r}; accepted: {sorted(SEGMENTER_PRESETS)}")
    p = SEGMENTER_PRESETS[preset]
    size = p.image_size if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16 or size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and at least 16, got {size!r}")
    ep = p.epochs if epochs is None else epochs
    if isinstance(ep, bool) or not isinstance(ep, (int, np.integer)) or ep < 1:
        raise ValueError(f"epochs must be a positive integer, got {ep!r}")
    n = p.n_per_class if n_per_class is None else n_per_class
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 5:
        raise ValueError(f"n_per_class must be an integer >= 5 (a 6:2:2 split per city), got {n!r}")
    from dataclasses import replace

    return replace(p, image_size=int(size), epochs=int(ep), n_per_class=int(n))


def train_segmenter(
    preset: str = "tiny",
    image_size: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    n_per_class: int | None = None,
    verbose: int = 1,
    log: Callable[[str], None] | None = print,
) -> SegmenterResult:
    """Train a segmenter on the synthetic cities and score it on their held-out test split.

    The scenes are ``make_cities(n_per_class, image_size, seed)`` (default configuration), split
    6:2:2 with the same seed; the network trains on the training part (validation loss and pixel
    accuracy reported per epoch), the scores come from the test part. Sparse categorical
    cross-entropy on the logits, Adam at the preset's constant learning rate.

    Args:
        preset: One of :data:`SEGMENTER_PRESETS`.
        image_size: Override the preset's side (multiple of 4).
        epochs: Override the preset's epochs.
        seed: Seed of the data, the split and the weights.
        n_per_class: Override the preset's scenes per city.
        verbose: Keras progress (0 none, 1 bar, 2 one line per epoch).
        log: Where progress lines go (``None``: nowhere).

    Returns:
        A :class:`SegmenterResult`.
    """
    import keras

    from models.datasets import make_cities

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    p = _resolve(preset, image_size, epochs, n_per_class)
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    data = make_cities(p.n_per_class, image_size=p.image_size, seed=int(seed))
    classes = city_classes()
    train, val, test = data.split(int(seed))
    say(f"[segmenter] {len(train)}/{len(val)}/{len(test)} scenes at {p.image_size} px, {len(classes)} classes "
        f"({', '.join(classes.names)}), {p.epochs} epochs")
    keras.utils.set_random_seed(int(seed))
    model = build_segmenter(p.image_size, len(classes), p.filters)
    model.compile(optimizer=keras.optimizers.Adam(p.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy")])
    x = lambda s: s.images.astype(np.float32) / 255.0  # noqa: E731
    hist = model.fit(x(train), classes.encode(train.label_maps), batch_size=p.batch_size, epochs=p.epochs,
                     validation_data=(x(val), classes.encode(val.label_maps)), shuffle=True, verbose=verbose)
    predicted = predict_label_maps(model, test.images, classes)
    scores = segmentation_scores(predicted, test.label_maps, classes.indices)
    counts = np.bincount(test.label_maps.ravel(), minlength=256)
    result = SegmenterResult(
        model=model, classes=classes, preset=p.name, seed=int(seed), image_size=p.image_size, epochs=p.epochs,
        pixel_accuracy=scores["pixel_accuracy"], mean_iou=scores["mean_iou"], per_class_iou=scores["per_class_iou"],
        majority_baseline=float(counts.max() / counts.sum()),
        training_data={"generator": "models.datasets.make_cities", "n_per_class": p.n_per_class,
                       "image_size": p.image_size, "seed": int(seed), "split_seed": int(seed),
                       "config": "CitiesConfig()", "train": len(train), "val": len(val), "test": len(test)},
        training={"epochs": p.epochs, "batch_size": p.batch_size, "learning_rate": p.learning_rate,
                  "optimizer": "adam", "loss": "sparse categorical cross-entropy", "filters": list(p.filters)},
        history={k: [float(v) for v in vs] for k, vs in hist.history.items()},
        seconds=time.perf_counter() - t0, test_images=test,
    )
    say(f"[segmenter] held-out test scenes: pixel accuracy {result.pixel_accuracy:.4f}, mean IoU "
        f"{result.mean_iou:.4f} (majority-class baseline {result.majority_baseline:.4f}); "
        f"{result.seconds:.0f} s")
    return result


# -------------------------------------------------------------------------------------- export
def _signatures(model: Any, classes: SegmenterClasses) -> dict[str, Any]:
    import tensorflow as tf

    size = tuple(int(d) for d in model.inputs[0].shape[1:])
    spec = tf.TensorSpec([None, *size], tf.uint8, name="images")
    lut = tf.constant(list(classes.indices), tf.int32)

    def run(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(tf.cast(images, tf.float32) / 255.0, training=False)
        return tf.gather(lut, tf.argmax(logits, axis=-1, output_type=tf.int32)), logits

    @tf.function(input_signature=[spec], autograph=False)
    def segment(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"label_map": run(images)[0]}

    @tf.function(input_signature=[spec], autograph=False)
    def serving_default(images: tf.Tensor) -> dict[str, tf.Tensor]:
        label_map, logits = run(images)
        return {"label_map": label_map, "probabilities": tf.nn.softmax(logits, axis=-1)}

    return {"segment": segment, "serving_default": serving_default}


def export_segmenter(result: SegmenterResult, model_root: str | Path, name: str = "segmenter") -> Path:
    """Export a trained segmenter as the next version of ``<model_root>/<name>`` (module docstring).

    Returns:
        The new version directory.

    Raises:
        ExportError: a bad model name (letters, digits, ``.``, ``_``, ``-``; not starting with ``.``).
    """
    import tensorflow as tf

    from models.export import CARD_PATH, ExportError, next_version

    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name):
        raise ExportError(f"model name {name!r} is invalid; use letters, digits, '.', '_', '-' (not starting with '.')")
    export_dir = Path(model_root) / name
    export_dir.mkdir(parents=True, exist_ok=True)
    module = tf.Module(name="exported_segmenter")
    module.model_variables = list(result.model.weights)
    signatures = _signatures(result.model, result.classes)
    while True:
        version = next_version(export_dir)
        tmp, final = export_dir / f".tmp-{version}-{os.getpid()}", export_dir / str(version)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tf.saved_model.save(module, str(tmp), signatures=signatures)
            (tmp / CARD_PATH).parent.mkdir(parents=True, exist_ok=True)
            card = _card(result, name, version, sorted(signatures))
            (tmp / CARD_PATH).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
            if final.exists():  # another process took this version meanwhile: take the next
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            os.rename(tmp, final)
            return final
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():  # lost a race on the rename: take the next version
                continue
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _card(result: SegmenterResult, name: str, version: int, signatures: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "kind": KIND,
        "architecture": result.model.name,
        "classes": result.classes.to_card(),
        "class_names": list(result.classes.names),
        "input_size": [result.image_size, result.image_size, 3],
        "pixel_accuracy": result.pixel_accuracy,
        "mean_iou": result.mean_iou,
        "per_class_iou": {str(k): v for k, v in result.per_class_iou.items()},
        "majority_baseline": result.majority_baseline,
        "scored_on": "held-out test split of training_data",
        "training_data": result.training_data,
        "training": result.training,
        "seed": result.seed,
        "preset": result.preset,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "signatures": signatures,
        "methods": [],
        "version": version,
    }
