"""The evaluation's test split is the training's, byte for byte, rebuilt from the model card.

Issue 12: ``regenerate_test_split`` used to call the generator with its default configuration,
ignoring the card's ``planted`` probabilities (``tiny`` and ``small-planted`` plant every object
with probability 1; ``small`` draws the balanced cities), so the evaluation measured the models on
images they were never tested on. The card's ``dataset`` entry now records the generator's full
configuration and a digest of the test split; the evaluation rebuilds the split from it and refuses
a split that differs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.data import load_evaluation_data, regenerate_test_split
from models.datasets import CitiesConfig, CityStyle, make_cities
from models.datasets.rebuild import cities_config_from_json, cities_config_to_json, imageset_digest


def _as_card(config: dict) -> dict:
    """The ``dataset`` entry as a reader of the exported card sees it (through JSON)."""
    return json.loads(json.dumps(config))


def _assert_identical(got, want) -> None:
    assert got.images.dtype == want.images.dtype and got.images.shape == want.images.shape
    assert got.images.tobytes() == want.images.tobytes()
    assert np.array_equal(got.labels, want.labels)
    assert got.label_maps.tobytes() == want.label_maps.tobytes()
    assert got.ids == want.ids and got.class_names == want.class_names
    assert got.discriminative == want.discriminative and got.object_names == want.object_names


def test_tiny_card_rebuilds_the_training_test_split(tiny_city_data, tiny_landmark_data):
    *_, test, config = tiny_city_data
    card = _as_card(config)
    assert card["cities_config"]["cities"][0]["planted"] == {"skyscraper": 1.0, "earth": 1.0}
    assert card["test_sha1"] == imageset_digest(test)
    _assert_identical(regenerate_test_split(card), test)
    *_, land_test, land_config = tiny_landmark_data
    _assert_identical(regenerate_test_split(_as_card(land_config)), land_test)
    # what load_evaluation_data hands the experiments (cards as the server lists them)
    cities, landmarks = load_evaluation_data([{"name": "vgg11", "kind": "classifier", "dataset": card},
                                              {"name": "embedding_avg", "kind": "embedding", "dataset": land_config}])
    _assert_identical(cities, test)
    _assert_identical(landmarks, land_test)


@pytest.mark.parametrize(("preset", "n_test"), [("small", 320), ("small-planted", 160)])
def test_small_card_rebuilds_the_training_test_split(preset, n_test):
    from models.presets import make_city_data

    train, _, test, config = make_city_data(preset, seed=0)
    assert len(test) == n_test and config["sizes"]["train"] == len(train)
    _assert_identical(regenerate_test_split(_as_card(config)), test)
    # the generator's default configuration (what the evaluation used before) gives other images:
    # the check above can fail
    default = make_cities(config["n_per_class"], image_size=config["image_size"], seed=0).split(0)[2]
    assert default.images.tobytes() != test.images.tobytes()
    assert imageset_digest(default) != config["test_sha1"]


def test_card_without_the_full_configuration_still_rebuilds(tiny_city_data):
    """Cards exported before ``cities_config`` existed record only ``planted``, enough for them."""
    *_, test, config = tiny_city_data
    old = {k: v for k, v in _as_card(config).items() if k not in ("cities_config", "test_sha1")}
    _assert_identical(regenerate_test_split(old), test)


def test_a_card_that_does_not_match_its_data_is_refused(tiny_city_data):
    *_, config = tiny_city_data
    card = _as_card(config)
    card["cities_config"]["noise"] = 0.03
    with pytest.raises(ValueError, match=r"differs from the one the model was tested on.*SHA-1"):
        regenerate_test_split(card)
    card = _as_card(config)
    card["class_names"] = ["city_a", "city_c"]
    with pytest.raises(ValueError, match=r"\['city_a', 'city_c'\] differ.*\['city_a', 'city_b'\]"):
        regenerate_test_split(card)
    with pytest.raises(ValueError, match=r"'models.datasets.make_streets'.*accepted.*make_cities"):
        regenerate_test_split({**card, "generator": "models.datasets.make_streets"})


def test_cities_config_json_round_trip():
    config = CitiesConfig(cities=(CityStyle("north", {"fence": 0.5}), CityStyle("south", {"plant": 0.25, "earth": 1.0})),
                          shared={"sky": 1.0, "road": 1.0, "car": 0.3}, ensure_discriminative=False,
                          brightness=(0.9, 1.1), horizon=(0.4, 0.5), noise=0.01, flip_probability=0.0)
    data = json.loads(json.dumps(cities_config_to_json(config)))
    assert cities_config_from_json(data) == config
    assert cities_config_from_json(cities_config_to_json(None)) == CitiesConfig()
    with pytest.raises(ValueError, match=r"unknown cities_config key 'fog'.*accepted.*'noise'"):
        cities_config_from_json({**data, "fog": 0.1})
