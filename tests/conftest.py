"""Session fixtures shared by the whole suite: tiny synthetic data and tiny trained models.

Everything is built ONCE per session (lazily, only when a test asks for it) with the ``tiny``
preset of :mod:`models.presets` (96 px cities, 64 px landmarks; see the preset's docstring for
how it deviates from the papers' recipe to converge in seconds):

* ``tiny_cities`` — ``(train, val, test)`` ImageSets of the synthetic cities (seed 0, 6:2:2).
* ``tiny_classifiers`` — ``{"vgg11", "resnet18", "simple", "simpler"}`` → trained Keras model.
* ``tiny_classifier_results`` — the same as :class:`models.train.TrainResult` (accuracies,
  history), plus ``vgg11_retrained`` once ``tiny_model_root`` has been built.
* ``tiny_landmarks`` — ``(train, val, test)`` of the synthetic landmarks (64 px).
* ``tiny_embeddings`` — ``{"avg", "max"}`` → trained embedding network.
* ``tiny_model_root`` — a model root with ``vgg11``, ``resnet18``, ``simple``, ``simpler``,
  ``vgg11_retrained`` (seed 1), ``embedding_avg``, ``embedding_max``, version 1 each, exported
  with :mod:`models.export`. Treat it as read-only (copy it to export more versions).

The time each fixture took is printed in the terminal summary.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402
from pathlib import Path  # noqa: E402
from collections.abc import Iterator, Mapping  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

TINY_SEED = 0
_TIMINGS: dict[str, float] = {}
_CPU: dict[str, float] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    """Seed Python, NumPy and TensorFlow/Keras once per session."""
    import keras

    keras.utils.set_random_seed(0)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _TIMINGS:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in _TIMINGS.items())
        terminalreporter.write_line(
            f"tiny fixtures: {parts}; total {sum(_TIMINGS.values()):.1f} s wall, "
            f"{sum(_CPU.values()):.1f} s CPU (all threads)"
        )


class _Timer:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> "_Timer":
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        _TIMINGS[self.name] = _TIMINGS.get(self.name, 0.0) + time.perf_counter() - self.t0
        _CPU[self.name] = _CPU.get(self.name, 0.0) + time.process_time() - self.c0


@pytest.fixture(scope="session")
def tiny_city_data() -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(train, val, test, generator config)`` of the tiny cities."""
    from models.presets import make_city_data

    with _Timer("cities"):
        return make_city_data("tiny", seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_cities(tiny_city_data) -> tuple[Any, Any, Any]:
    """``(train, val, test)`` ImageSets of the synthetic cities at 96 px."""
    return tuple(tiny_city_data[:3])


@pytest.fixture(scope="session")
def _tiny_classifier_records(tiny_cities) -> dict[str, Any]:
    from models.presets import CLASSIFIER_NAMES, train_one

    records = {}
    for arch in CLASSIFIER_NAMES:
        with _Timer(f"train {arch}"):
            records[arch] = train_one(arch, "tiny", TINY_SEED, city_data=tiny_cities, verbose=0)
    return records


class _Results(Mapping):
    """A live read-only view name → TrainResult over the records (``vgg11_retrained`` appears once
    ``tiny_model_root`` has trained it)."""

    def __init__(self, records: dict[str, Any]) -> None:
        self._records = records

    def __getitem__(self, name: str) -> Any:
        return self._records[name].result

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


@pytest.fixture(scope="session")
def tiny_classifier_results(_tiny_classifier_records) -> Mapping[str, Any]:
    """Model name → :class:`models.train.TrainResult` of the tiny classifiers (accuracies, history)."""
    return _Results(_tiny_classifier_records)


@pytest.fixture(scope="session")
def tiny_classifiers(_tiny_classifier_records) -> dict[str, Any]:
    """Architecture name → trained Keras classifier (vgg11, resnet18, simple, simpler)."""
    from models.presets import CLASSIFIER_NAMES

    return {name: _tiny_classifier_records[name].result.model for name in CLASSIFIER_NAMES}


@pytest.fixture(scope="session")
def tiny_landmark_data() -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(train, val, test, generator config)`` of the tiny landmarks."""
    from models.presets import make_landmark_data

    with _Timer("landmarks"):
        return make_landmark_data("tiny", seed=TINY_SEED)


@pytest.fixture(scope="session")
def tiny_landmarks(tiny_landmark_data) -> tuple[Any, Any, Any]:
    """``(train, val, test)`` ImageSets of the synthetic landmarks at 64 px."""
    return tuple(tiny_landmark_data[:3])


@pytest.fixture(scope="session")
def _tiny_embedding_records(tiny_landmarks) -> dict[str, Any]:
    from models.presets import train_one

    records = {}
    for pooling in ("avg", "max"):
        with _Timer(f"train embedding_{pooling}"):
            records[pooling] = train_one(f"embedding_{pooling}", "tiny", TINY_SEED, landmark_data=tiny_landmarks,
                                         verbose=0)
    return records


@pytest.fixture(scope="session")
def tiny_embeddings(_tiny_embedding_records) -> dict[str, Any]:
    """``"avg"``/``"max"`` → trained embedding network (64 px landmarks)."""
    return {k: rec.result.model for k, rec in _tiny_embedding_records.items()}


@pytest.fixture(scope="session")
def tiny_model_root(
    tmp_path_factory, tiny_city_data, tiny_landmark_data, _tiny_classifier_records, _tiny_embedding_records
) -> Path:
    """A TF Serving model root with the tiny models exported (version 1 each)."""
    from models.presets import export_record, train_one

    root = tmp_path_factory.mktemp("tiny_model_root")
    with _Timer("train vgg11_retrained"):
        retrained = train_one("vgg11_retrained", "tiny", TINY_SEED, city_data=tuple(tiny_city_data[:3]), verbose=0)
    _tiny_classifier_records["vgg11_retrained"] = retrained
    with _Timer("export"):
        for name in ("vgg11", "resnet18", "simple", "simpler"):
            export_record(_tiny_classifier_records[name], root, "tiny", tiny_city_data[3])
        export_record(retrained, root, "tiny", tiny_city_data[3])
        for pooling in ("avg", "max"):
            export_record(_tiny_embedding_records[pooling], root, "tiny", tiny_landmark_data[3])
    return root
