"""Balanced cities and causal twins (issue 12): generator properties measured on generated data."""

from __future__ import annotations

import numpy as np
import pytest

from models.datasets import DEFAULT_SHARED, CitiesConfig, CityStyle, make_cities
from models.datasets.ade20k import NAME_TO_INDEX
from models.datasets.balance import balanced_config, cue_statistics
from models.datasets.twins import parse_city_id, render_twins

SHARED = sorted(DEFAULT_SHARED)
N_PER_CLASS = 200
SIZE = 96


@pytest.fixture(scope="module")
def balanced():
    return make_cities(N_PER_CLASS, image_size=SIZE, seed=0, config=balanced_config())


def test_balanced_cues_each_necessary_and_every_image_holds_one(balanced):
    config = balanced_config()
    stats = cue_statistics(balanced, SHARED)
    for city in config.cities:
        assert len(city.planted) >= 2 and all(p < 1.0 for p in city.planted.values())
        assert stats.min_cues[city.name] >= 1, city.name
        # each cue is absent from a good share of its city's images (so no one cue is always there),
        # and present near p + (1 - p)^K / K = 0.621
        for cue, rate in stats.cue_rate[city.name].items():
            assert 0.5 < rate < 0.75, (city.name, cue, rate)


def test_balanced_cue_areas_within_2x_and_shared_areas_independent_of_class(balanced):
    stats = cue_statistics(balanced, SHARED)
    areas = [a for city in stats.cue_area.values() for a in city.values()]
    assert min(areas) > 0.02  # at least 2% of the image each (~1% cues were too small to learn)
    assert stats.area_ratio() <= 2.0, stats.cue_area
    gaps = stats.shared_gap()
    assert max(gaps.values()) <= 0.02, gaps


def test_default_preset_cities_fail_the_balance_checks():
    """The measures can fail: the tiny preset's cities (all cues always planted) are lopsided."""
    from models.presets import city_config

    data = make_cities(N_PER_CLASS // 2, image_size=SIZE, seed=0, config=city_config("tiny"))
    stats = cue_statistics(data, SHARED)
    assert stats.area_ratio() > 5.0  # earth ~7.4% vs signboard ~1%
    assert stats.shared_gap()["road"] > 0.05  # earth covers road in city_a only


def _check_twins(tw, config):
    planted = {NAME_TO_INDEX[n] for c in config.cities for n in c.planted}
    for i in range(len(tw.ids)):
        city = config.cities[tw.labels[i]]
        for j, name in enumerate(tw.objects):
            spot = tw.label_maps[i] == NAME_TO_INDEX[name]
            assert tw.present[i, j] == spot.any()
            if spot.any():
                assert name in city.planted
            changed = (tw.without[i, j] != tw.images[i]).any(axis=-1)
            assert not changed[~spot].any(), (tw.ids[i], name)  # only the object's pixels change
            assert np.array_equal(tw.without_maps[i, j][~spot], tw.label_maps[i][~spot])
            assert not (tw.without_maps[i, j] == NAME_TO_INDEX[name]).any()
            if spot.sum() > 4:
                assert changed[spot].mean() > 0.5  # what stood behind it shows through
        # object-free twin: a valid scene of shared objects only, equal to the scene elsewhere
        cues = np.isin(tw.label_maps[i], list(planted))
        assert not np.isin(tw.empty_maps[i], list(planted)).any()
        assert set(np.unique(tw.empty_maps[i])) <= {NAME_TO_INDEX[n] for n in config.shared}
        assert {NAME_TO_INDEX["sky"], NAME_TO_INDEX["road"]} <= set(np.unique(tw.empty_maps[i]))
        assert np.array_equal(tw.empty[i][~cues], tw.images[i][~cues])


@pytest.mark.parametrize("which", ["default", "balanced"])
def test_twins_change_only_the_removed_object(which):
    config = balanced_config() if which == "balanced" else CitiesConfig()
    data = make_cities(40, image_size=64, seed=5, config=config)
    pick = [0, 3, 33, 39, 40, 41, 70, 79]
    tw = render_twins([data.ids[i] for i in pick], 64, seed=5, config=config)
    assert np.array_equal(tw.images, data.images[pick])  # the scenes are make_cities' own
    assert np.array_equal(tw.label_maps, data.label_maps[pick])
    assert np.array_equal(tw.labels, data.labels[pick])
    assert tw.present.any(axis=1).all()  # ensure_discriminative: every scene holds a cue
    _check_twins(tw, config)


def test_twins_bad_ids_name_the_value():
    with pytest.raises(ValueError, match="'city_z/000001'.*city_a"):
        render_twins(["city_z/000001"], 64)
    with pytest.raises(ValueError, match="'city_a'"):
        parse_city_id("city_a", ["city_a", "city_b"])


def test_object_scale_round_trips_through_the_card_and_rebuilds():
    from models.datasets.rebuild import cities_config_from_json, cities_config_to_json, rebuild_test_split
    from models.presets import city_config, make_city_data

    config = city_config("tiny-balanced")
    assert config.object_scale and config == cities_config_from_json(cities_config_to_json(config))
    *_, test, entry = make_city_data("tiny-balanced", seed=0)
    rebuilt = rebuild_test_split(entry)
    assert np.array_equal(rebuilt.images, test.images)


@pytest.mark.parametrize("scale, pattern", [({"sky": 1.0}, "unknown object 'sky' in object_scale"),
                                            ({"earth": 0.0}, "object_scale of 'earth' must lie in"),
                                            ({"earth": 4.0}, "got 4.0")])
def test_bad_object_scale_names_value(scale, pattern):
    with pytest.raises(ValueError, match=pattern):
        CitiesConfig(object_scale=scale)


def test_object_scale_shrinks_the_object():
    config = CitiesConfig(cities=(CityStyle("a", {"earth": 1.0}),), ensure_discriminative=True)
    small = CitiesConfig(cities=config.cities, object_scale={"earth": 0.5})
    area = [(make_cities(32, 64, seed=1, config=c).label_maps == NAME_TO_INDEX["earth"]).mean()
            for c in (config, small)]
    assert 0.35 < area[1] / area[0] < 0.65, area  # earth's height halves: about half the area


@pytest.mark.parametrize("name", ["awning", "fence", "grass"])
def test_object_scale_of_thin_objects_scales_length_and_thickness(name):
    """Awning, fence and grass grow in both dimensions (their length alone saturates at the edge)."""
    one = CitiesConfig(cities=(CityStyle("a", {name: 1.0}),), ensure_discriminative=True)
    areas = [(make_cities(32, 96, seed=1, config=CitiesConfig(cities=one.cities, object_scale={name: f}))
              .label_maps == NAME_TO_INDEX[name]).mean() for f in (1.0, 0.5)]
    assert 0.15 < areas[1] / areas[0] < 0.35, areas  # both dimensions halve: about a quarter


def test_scenes_do_not_depend_on_the_order_of_the_planted_objects():
    """A card served over gRPC has its JSON keys sorted; the rebuilt scenes must not change."""
    forward = CitiesConfig(cities=(CityStyle("a", {"skyscraper": 0.5, "earth": 0.7, "fence": 0.3}),))
    backward = CitiesConfig(cities=(CityStyle("a", {"fence": 0.3, "earth": 0.7, "skyscraper": 0.5}),))
    one, two = (make_cities(32, 32, seed=2, config=c) for c in (forward, backward))
    assert np.array_equal(one.images, two.images) and np.array_equal(one.label_maps, two.label_maps)
