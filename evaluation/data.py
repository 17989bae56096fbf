"""The images an evaluation runs on.

By default the test split of the synthetic data each model was trained on, regenerated exactly
from the generator arguments in the model card (``card["dataset"]``). A real image folder
(``<root>/<class>/<image>``, optional label maps) can be given instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

__all__ = ["regenerate_test_split", "load_evaluation_data"]

_GENERATORS = ("models.datasets.make_cities", "models.datasets.make_landmarks")


def regenerate_test_split(dataset: dict[str, Any]) -> Any:
    """The test :class:`~models.datasets.ImageSet` described by a model card's ``dataset`` entry.

    Raises:
        ValueError: the card names an unknown generator.
    """
    from models import datasets

    gen = dataset.get("generator")
    if gen not in _GENERATORS:
        raise ValueError(f"model card names data generator {gen!r}; accepted: {list(_GENERATORS)}")
    if gen.endswith("make_cities"):
        data = datasets.make_cities(int(dataset["n_per_class"]), image_size=int(dataset["image_size"]), seed=int(dataset["seed"]))
    else:
        data = datasets.make_landmarks(
            int(dataset["n_per_class"]), image_size=int(dataset["image_size"]),
            seed=int(dataset["seed"]), num_classes=int(dataset["num_classes"]),
        )
    return data.split(int(dataset.get("split_seed", dataset["seed"])))[2]


def _first_dataset(cards: Iterable[dict[str, Any]], generator: str) -> dict[str, Any] | None:
    for card in cards:
        ds = (card or {}).get("dataset")
        if ds and ds.get("generator") == generator:
            return ds
    return None


def load_evaluation_data(
    cards: list[dict[str, Any]],
    data_dir: Path | None = None,
    labels_dir: Path | None = None,
    image_size: int | None = None,
) -> tuple[Any, Any]:
    """``(classifier test images, landmark test images)``; either may be ``None``.

    Args:
        cards: Model cards of the served models.
        data_dir: A real image folder to use for the classifiers instead of synthetic data.
        labels_dir: Its label maps.
        image_size: Resize real images to this square side (the classifiers' input size).
    """
    from models.datasets import load_image_folder

    if data_dir is not None:
        cities = load_image_folder(data_dir, labels_root=labels_dir, image_size=image_size)
    else:
        ds = _first_dataset(cards, "models.datasets.make_cities")
        cities = regenerate_test_split(ds) if ds else None
    ds = _first_dataset(cards, "models.datasets.make_landmarks")
    landmarks = regenerate_test_split(ds) if ds else None
    return cities, landmarks
