"""The data set a model card describes, rebuilt exactly from the card's ``dataset`` entry.

Training writes into ``card["dataset"]`` everything needed to rebuild the images a model was
tested on; the evaluation rebuilds them from it (:func:`rebuild_test_split`). Three kinds:

* Synthetic cities (``"generator": "models.datasets.make_cities"``): ``n_per_class``,
  ``image_size``, ``seed``, ``split_seed``, ``cities_config`` (the generator's full
  :class:`~models.datasets.CitiesConfig` as JSON, :func:`cities_config_to_json`; cards written
  before it existed hold only ``planted``, the per-city planted probabilities, on top of the
  default configuration), ``null_fraction`` (null scenes, added to the training split only),
  ``class_names``, ``sizes`` and ``test_sha1`` (:func:`imageset_digest` of the test split).
* Synthetic landmarks (``"generator": "models.datasets.make_landmarks"``): the same without the
  cities' configuration, plus ``num_classes``.
* A user's image folder (``"source": "folder"``): ``data_dir`` and ``labels_dir`` (absolute
  paths), ``classes`` (= ``class_names``), ``image_size``, ``split_seed``, ``counts`` per part
  and ``listing_sha1`` (:func:`listing_digest` of the file names and sizes).

A rebuilt split whose digest differs from the recorded one raises: the evaluation then refuses to
measure models on images they were not tested on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .cities import CitiesConfig, CityStyle, make_cities
from .folder import SPLIT_PARTS, list_image_folder, load_image_folder_split
from .imageset import ImageSet, split_indices
from .landmarks import make_landmarks

__all__ = [
    "CITIES_GENERATOR",
    "LANDMARKS_GENERATOR",
    "FOLDER_SOURCE",
    "cities_config_to_json",
    "cities_config_from_json",
    "cities_config_of",
    "imageset_digest",
    "listing_digest",
    "folder_entry",
    "dataset_kind",
    "rebuild_test_split",
]

CITIES_GENERATOR = "models.datasets.make_cities"
LANDMARKS_GENERATOR = "models.datasets.make_landmarks"
#: ``card["dataset"]["source"]`` of a model trained on a user's image folder.
FOLDER_SOURCE = "folder"
_KINDS = (CITIES_GENERATOR, LANDMARKS_GENERATOR, f"source {FOLDER_SOURCE!r}")


def cities_config_to_json(config: CitiesConfig | None) -> dict[str, Any]:
    """Every field of a :class:`CitiesConfig` (``None`` = the default) as plain JSON values."""
    config = CitiesConfig() if config is None else config
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "cities":
            value = [{"name": c.name, "planted": dict(c.planted)} for c in value]
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


def cities_config_from_json(data: Mapping[str, Any]) -> CitiesConfig:
    """The :class:`CitiesConfig` written by :func:`cities_config_to_json`.

    Raises:
        ValueError: An unknown key (naming the accepted ones) or a value the config rejects.
    """
    names = [f.name for f in dataclasses.fields(CitiesConfig)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"unknown cities_config key {unknown[0]!r}; accepted: {names}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "cities":
            value = tuple(CityStyle(str(c["name"]), dict(c.get("planted") or {})) for c in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return CitiesConfig(**kwargs)


def cities_config_of(dataset: Mapping[str, Any]) -> CitiesConfig:
    """The cities' generator configuration a card's ``dataset`` entry records.

    ``cities_config`` when present; else (older cards) the default configuration with the
    recorded ``planted`` probabilities, which is what training used then.
    """
    if dataset.get("cities_config") is not None:
        return cities_config_from_json(dataset["cities_config"])
    planted = dataset.get("planted")
    if planted is None:
        return CitiesConfig()
    return CitiesConfig(cities=tuple(CityStyle(name, dict(p)) for name, p in planted.items()))


def imageset_digest(data: ImageSet) -> str:
    """SHA-1 of an ImageSet's images, labels, label maps, class names and ids (hex)."""
    h = hashlib.sha1()
    for array in (data.images, data.labels.astype(np.int64), data.label_maps):
        if array is None:
            h.update(b"none")
            continue
        h.update(repr((array.shape, str(array.dtype))).encode())
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(repr((list(data.class_names), data.ids)).encode())
    return h.hexdigest()


def listing_digest(root: str | os.PathLike, ids: Iterable[str]) -> str:
    """SHA-1 of the relative file names ``ids`` under ``root`` and their sizes in bytes (hex)."""
    h = hashlib.sha1()
    for rel in ids:
        h.update(f"{rel}\t{(Path(root) / rel).stat().st_size}\n".encode())
    return h.hexdigest()


def folder_entry(
    data_dir: str | os.PathLike,
    labels_dir: str | os.PathLike | None,
    class_names: list[str],
    image_size: int,
    split_seed: int,
    counts: Mapping[str, int],
    ids: Iterable[str],
) -> dict[str, Any]:
    """The ``dataset`` entry of a model trained on an image folder (see the module docstring)."""
    root = Path(data_dir).resolve()
    return {
        "source": FOLDER_SOURCE,
        "data_dir": str(root),
        "labels_dir": None if labels_dir is None else str(Path(labels_dir).resolve()),
        "classes": list(class_names),
        "class_names": list(class_names),
        "image_size": int(image_size),
        "split_seed": int(split_seed),
        "fractions": [0.6, 0.2, 0.2],
        "counts": {k: int(v) for k, v in counts.items()},
        "listing_sha1": listing_digest(root, ids),
    }


def dataset_kind(dataset: Mapping[str, Any] | None) -> str | None:
    """``"cities"``, ``"landmarks"``, ``"folder"`` or ``None`` (no entry / unknown generator)."""
    if not dataset:
        return None
    if dataset.get("source") == FOLDER_SOURCE:
        return "folder"
    return {CITIES_GENERATOR: "cities", LANDMARKS_GENERATOR: "landmarks"}.get(dataset.get("generator"))


def _check_digest(dataset: Mapping[str, Any], test: ImageSet, what: str) -> ImageSet:
    want = dataset.get("test_sha1")
    if want is not None and imageset_digest(test) != want:
        raise ValueError(
            f"the rebuilt test split of {what} differs from the one the model was tested on (SHA-1 "
            f"{imageset_digest(test)[:12]} != recorded {str(want)[:12]}): the generator or its "
            "configuration changed since training; retrain the model or use the code it was trained with")
    return test


def rebuild_test_split(
    dataset: Mapping[str, Any],
    data_dir: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> ImageSet:
    """The test split a model was tested on, rebuilt from its card's ``dataset`` entry.

    Args:
        dataset: ``card["dataset"]``.
        data_dir: For a folder entry: the folder to read instead of the recorded ``data_dir``
            (e.g. after moving it); its classes and files must be the recorded ones.
        labels_dir: For a folder entry: label maps to read instead of the recorded ones.
        progress: Show a progress bar while decoding a folder.

    Returns:
        The test :class:`ImageSet`, byte-identical to the one of training (synthetic data) or
        holding the same files (folders).

    Raises:
        ValueError: An unknown generator or source (naming the accepted ones); a folder whose
            classes, counts or files differ from the recorded ones; a synthetic split whose digest
            differs from the recorded one.
        FileNotFoundError: The folder does not exist.
    """
    kind = dataset_kind(dataset)
    if kind is None:
        raise ValueError(f"model card names data set {dict(dataset)!r}; accepted: generator {_KINDS[0]!r}, "
                         f"generator {_KINDS[1]!r} or {_KINDS[2]}")
    split_seed = int(dataset.get("split_seed", dataset.get("seed", 0)))
    if kind == "folder":
        return _rebuild_folder_test(dataset, data_dir, labels_dir, split_seed, progress)
    size, seed, n = int(dataset["image_size"]), int(dataset["seed"]), int(dataset["n_per_class"])
    if kind == "cities":
        data = make_cities(n, image_size=size, seed=seed, config=cities_config_of(dataset))
    else:
        data = make_landmarks(n, image_size=size, seed=seed, num_classes=int(dataset["num_classes"]))
    recorded = dataset.get("class_names")
    if recorded is not None and list(recorded) != list(data.class_names):
        raise ValueError(f"the model card's classes {list(recorded)} differ from the rebuilt data set's "
                         f"{list(data.class_names)}")
    return _check_digest(dataset, data.split(split_seed)[2], dataset["generator"])


def _rebuild_folder_test(dataset: Mapping[str, Any], data_dir: str | os.PathLike | None,
                         labels_dir: str | os.PathLike | None, split_seed: int, progress: bool) -> ImageSet:
    root = Path(data_dir if data_dir is not None else dataset["data_dir"])
    labels = labels_dir if labels_dir is not None else dataset.get("labels_dir")
    trained_on = f"(recorded folder: {dataset.get('data_dir')})"
    class_names, ids, class_of = list_image_folder(root)
    classes = list(dataset.get("classes") or dataset.get("class_names") or [])
    if class_names != classes:
        raise ValueError(f"image folder {root} holds classes {class_names} but the models were trained on "
                         f"classes {classes} {trained_on}; the class folders must be the same")
    counts = dict(zip(SPLIT_PARTS, (int(len(p)) for p in split_indices(class_of, split_seed))))
    recorded = dict(dataset.get("counts") or {})
    if recorded and recorded != counts:
        raise ValueError(f"image folder {root} splits into {counts} images but the models were trained on "
                         f"{recorded} {trained_on}; the folder changed since training")
    want = dataset.get("listing_sha1")
    if want is not None and listing_digest(root, ids) != want:
        raise ValueError(f"the files of image folder {root} differ from those the models were trained on "
                         f"(names or sizes; SHA-1 {listing_digest(root, ids)[:12]} != recorded "
                         f"{str(want)[:12]}) {trained_on}")
    test, _ = load_image_folder_split(root, "test", split_seed, labels_root=labels,
                                      image_size=int(dataset["image_size"]), progress=progress)
    return test
