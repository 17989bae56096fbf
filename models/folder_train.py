"""Training the papers' classifiers on a user's image folder: ``python -m models train --data-dir DIR``.

The folder is ``DIR/<class>/<image>`` (PNG, JPEG, BMP; see :mod:`models.datasets.folder`),
optionally with label maps ``LABELS/<class>/<image stem>.png``. Its images are decoded once,
resized to ``image_size`` (bilinear), split 6:2:2 per class with the split seed (the same
stratified split as the synthetic data) and every chosen architecture is trained with the recipe
of a preset (:mod:`models.presets`: widths, learning rate and its schedule, batch size, epochs;
the papers' recipe in ``paper`` and ``small``), then exported with
:func:`models.export.export_classifier`. ``retrained=True`` also trains ``<arch>_retrained``
from ``seed + 1``, as the presets do. No null scenes are added (they exist only for the
synthetic cities).

The model card's ``dataset`` entry records the folder (absolute path), the label maps, the
classes, the image size, the split seed, the per-part counts and a digest of the file listing
(:func:`models.datasets.rebuild.folder_entry`), so ``python -m evaluation`` rebuilds exactly the
test split the models were tested on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from models.presets import CLASSIFIER_NAMES, RETRAIN_SEED_OFFSET, ModelRecord, Preset, get_preset

__all__ = ["resolve_architectures", "check_folder_split", "make_folder_data", "train_folder"]


def resolve_architectures(architectures: Sequence[str] | str | None) -> list[str]:
    """Validate a comma-separated list of classifier architectures (``None``/empty = all four).

    Raises:
        ValueError: an unknown architecture; the message lists the accepted ones.
    """
    if not architectures:
        return list(CLASSIFIER_NAMES)
    items = [architectures] if isinstance(architectures, str) else list(architectures)
    wanted = [s.strip() for item in items for s in str(item).split(",") if s.strip()]
    bad = [a for a in wanted if a not in CLASSIFIER_NAMES]
    if bad or not wanted:
        raise ValueError(f"unknown architecture {bad[0] if bad else ''!r}; accepted: {', '.join(CLASSIFIER_NAMES)}")
    return [a for a in CLASSIFIER_NAMES if a in wanted]


def check_folder_split(root: str | os.PathLike, class_names: list[str], labels: Any, seed: int) -> dict[str, int]:
    """Check that the folder can be trained on: two classes or more, each in every part of the split.

    Returns:
        The number of images in each part (``{"train": .., "val": .., "test": ..}``).

    Raises:
        ValueError: one class only, or a class too small to reach every part (naming the class
            folder, its number of images and the minimum).
    """
    import numpy as np

    from models.datasets import SPLIT_PARTS, split_indices

    if len(class_names) < 2:
        raise ValueError(
            f"image folder {root} holds {len(class_names)} class folder ({', '.join(map(repr, class_names))}); "
            "a classifier needs at least 2 class folders <root>/<class>/<image>")
    parts = split_indices(labels, seed)
    for k, name in enumerate(class_names):
        per_part = [int(np.sum(labels[p] == k)) for p in parts]
        if min(per_part) == 0:
            raise ValueError(
                f"class folder {Path(root) / name} holds {int(np.sum(labels == k))} images, too few for the "
                "6:2:2 train/validation/test split; each class needs at least 4 images")
    return {name: int(len(p)) for name, p in zip(SPLIT_PARTS, parts)}


def make_folder_data(
    data_dir: str | os.PathLike,
    labels_dir: str | os.PathLike | None = None,
    image_size: int = 224,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Load, check and split an image folder.

    Args:
        data_dir: ``<data_dir>/<class>/<image>``.
        labels_dir: Optional label maps (validated; not used by training).
        image_size: Square side the images are resized to.
        seed: Split seed.
        progress: Show a progress bar while decoding.

    Returns:
        ``(train, val, test, dataset entry)``: three ImageSets and the card's ``dataset`` entry.

    Raises:
        FileNotFoundError: a missing folder. ValueError: a bad layout, an unreadable image, one
            class, a class too small for the split (each message names the folder or file).
    """
    from models.datasets import list_image_folder, load_image_folder
    from models.datasets.rebuild import folder_entry

    class_names, _, labels = list_image_folder(data_dir)
    check_folder_split(data_dir, class_names, labels, seed)  # before decoding anything
    data = load_image_folder(data_dir, labels_root=labels_dir, image_size=image_size, progress=progress)
    train, val, test = data.split(seed)
    counts = {"train": len(train), "val": len(val), "test": len(test)}
    entry = folder_entry(data_dir, labels_dir, data.class_names, image_size, seed, counts, data.ids)
    return train, val, test, entry


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _check_sizes(archs: list[str], image_size: int) -> None:
    from models.architectures import min_input_size

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image size {image_size!r} must be a positive integer")
    small = [a for a in archs if image_size < min_input_size(a)]
    if small:
        need = ", ".join(f"{a} {min_input_size(a)}" for a in small)
        raise ValueError(f"image size {image_size} is too small for {', '.join(small)} (minimum: {need} px); "
                         "raise --image-size or choose other --architectures")


def train_folder(
    data_dir: str | os.PathLike,
    out: str | os.PathLike | None,
    preset: Preset | str = "small",
    architectures: Sequence[str] | str | None = None,
    labels_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    seed: int = 0,
    epochs: int | None = None,
    retrained: bool = False,
    verbose: int = 1,
    checkpoint_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = print,
) -> list[ModelRecord]:
    """Train (and export, when ``out`` is given) classifiers on an image folder.

    Args:
        data_dir: ``<data_dir>/<class>/<image>``.
        out: Model root (``<out>/<name>/<version>/``); ``None`` = do not export.
        preset: The recipe: widths, learning rate, schedule, batch size and epochs of a preset.
        architectures: Subset of ``vgg11, resnet18, simple, simpler`` (default all).
        labels_dir: Optional label maps ``<labels_dir>/<class>/<image stem>.png``.
        image_size: Input size (default the preset's).
        seed: Split seed and model seed; the retrained copies use ``seed + 1``.
        epochs: Override of the preset's epochs.
        retrained: Also train ``<arch>_retrained``.
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.
        checkpoint_dir: Keep each model's best-on-validation weights there.
        log: Where to send one status line per model (``None`` = nowhere).

    Returns:
        One :class:`~models.presets.ModelRecord` per model, in training order.

    Raises:
        FileNotFoundError, ValueError: see :func:`make_folder_data`; bad arguments (naming them).
    """
    from models.presets import export_record, train_one

    p = get_preset(preset)
    size = p.image_size if image_size is None else image_size
    archs = resolve_architectures(architectures)
    _check_sizes(archs, size)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs {epochs!r} must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed {seed!r} must be a non-negative integer")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    say = log or (lambda _msg: None)
    *data, entry = make_folder_data(data_dir, labels_dir, size, seed, progress=verbose > 0)
    say(f"image folder {entry['data_dir']}: classes {entry['classes']}, {size} px, split seed {seed}, "
        f"{entry['counts']['train']}/{entry['counts']['val']}/{entry['counts']['test']} train/val/test images")
    names = [n for a in archs for n in ([a, f"{a}_retrained"] if retrained else [a])]
    records: list[ModelRecord] = []
    for i, name in enumerate(names, start=1):
        t0 = time.perf_counter()
        say(f"[{i}/{len(names)}] training {name} (recipe {p.name!r}"
            + (f", seed {seed + RETRAIN_SEED_OFFSET})" if name.endswith("_retrained") else ")"))
        rec = train_one(name, p, seed, city_data=tuple(data), epochs=epochs, verbose=verbose,
                        checkpoint_dir=checkpoint_dir)
        if out is not None:
            export_record(rec, out, p, entry)
        records.append(rec)
        r = rec.result
        say(f"{name}: test accuracy {_fmt(r.test_accuracy)} (val {_fmt(r.val_accuracy)}, best epoch "
            f"{r.best_epoch + 1}/{r.epochs_run}), {time.perf_counter() - t0:.0f} s"
            + (f", exported to {rec.export_path}" if rec.export_path else ""))
    return records
