"""The images an evaluation runs on.

The test split each model was tested on, rebuilt exactly from its model card's ``dataset`` entry
(:mod:`models.datasets.rebuild`): the synthetic cities and landmarks from the generator's full
configuration, seed and split seed (byte-identical to training's), a user's image folder from the
recorded folder, classes and split seed. A real image folder (``<root>/<class>/<image>``,
optional label maps) given for models trained on synthetic data is used whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

__all__ = ["regenerate_test_split", "load_evaluation_data"]


def regenerate_test_split(dataset: dict[str, Any], data_dir: Path | None = None,
                          labels_dir: Path | None = None, progress: bool = False) -> Any:
    """The test :class:`~models.datasets.ImageSet` described by a model card's ``dataset`` entry.

    Args:
        dataset: ``card["dataset"]``.
        data_dir, labels_dir: For a model trained on an image folder: read this folder (and
            label maps) instead of the recorded one; it must hold the same classes and files.
        progress: Show a progress bar while decoding a folder.

    Raises:
        ValueError: the card names an unknown generator, or the rebuilt data differs from the
            recorded one (see :func:`models.datasets.rebuild.rebuild_test_split`).
    """
    from models.datasets.rebuild import rebuild_test_split

    return rebuild_test_split(dataset, data_dir=data_dir, labels_dir=labels_dir, progress=progress)


def _datasets(cards: Iterable[dict[str, Any]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """``(model name, dataset entry)`` of every card whose data set is of ``kind``."""
    from models.datasets.rebuild import dataset_kind

    return [(str((card or {}).get("name", "?")), card["dataset"]) for card in cards
            if dataset_kind((card or {}).get("dataset")) == kind]


def _one_folder(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The folder entry all the models share; raises when two models were trained on different splits."""
    keys = ("classes", "image_size", "split_seed", "counts", "listing_sha1")
    name, first = entries[0]
    for other, entry in entries[1:]:
        diff = [k for k in keys if entry.get(k) != first.get(k)]
        if diff:
            raise ValueError(
                f"models {name!r} and {other!r} were trained on different image folder splits ({diff[0]}: "
                f"{first.get(diff[0])!r} vs {entry.get(diff[0])!r}); evaluate them separately")
    return first


def load_evaluation_data(
    cards: list[dict[str, Any]],
    data_dir: Path | None = None,
    labels_dir: Path | None = None,
    image_size: int | None = None,
    progress: bool = False,
) -> tuple[Any, Any]:
    """``(classifier test images, landmark test images)``; either may be ``None``.

    Args:
        cards: Model cards of the served models.
        data_dir: A real image folder. When the classifiers' cards record an image folder, its
            test split is rebuilt from this folder (which must hold the recorded classes and
            files); otherwise the whole folder replaces the synthetic cities.
        labels_dir: Its label maps (default: the ones the cards record).
        image_size: Resize a folder without a card to this square side (the classifiers' input).
        progress: Show a progress bar while decoding a folder.

    Raises:
        ValueError: cards of different folder splits, a folder whose classes, counts or files
            differ from the recorded ones, a synthetic split that cannot be rebuilt exactly.
        FileNotFoundError: a missing folder.
    """
    from models.datasets import load_image_folder

    folders = _datasets(cards, "folder")
    if folders:
        cities = regenerate_test_split(_one_folder(folders), data_dir, labels_dir, progress)
    elif data_dir is not None:
        cities = load_image_folder(data_dir, labels_root=labels_dir, image_size=image_size, progress=progress)
    else:
        found = _datasets(cards, "cities")
        cities = regenerate_test_split(found[0][1]) if found else None
    found = _datasets(cards, "landmarks")
    landmarks = regenerate_test_split(found[0][1]) if found else None
    return cities, landmarks
