"""The balanced presets (issue 12): their cues at their own image size, per-architecture rates."""

from __future__ import annotations

import dataclasses

import pytest

from models import presets as P
from models.datasets import DEFAULT_SHARED, make_cities
from models.datasets.balance import balanced_config, cue_statistics


@pytest.mark.parametrize("name", ["tiny-balanced", "small", "paper"])
def test_balanced_presets_draw_balanced_cues_at_their_image_size(name):
    p = P.get_preset(name)
    config = P.city_config(p)
    assert config == balanced_config()
    data = make_cities(200, image_size=p.image_size, seed=1, config=config)
    stats = cue_statistics(data, sorted(DEFAULT_SHARED))
    areas = [a for city in stats.cue_area.values() for a in city.values()]
    assert min(areas) > 0.02 and stats.area_ratio() <= 2.0, stats.cue_area
    assert max(stats.shared_gap().values()) <= 0.02, stats.shared_gap()
    assert min(stats.min_cues.values()) >= 1


def test_per_architecture_learning_rate():
    p = P.get_preset("tiny-balanced")
    assert p.for_arch("vgg11", "learning_rate") < p.learning_rate == p.for_arch("resnet18", "learning_rate")
    assert P.get_preset("tiny").for_arch("vgg11", "learning_rate") == 1e-3
    with pytest.raises(ValueError, match=r"unknown per-architecture setting 'lr'; accepted: "
                                         r"\['batch_size', 'epochs', 'learning_rate', 'width'\]"):
        p.for_arch("vgg11", "lr")


def test_train_one_uses_the_per_architecture_learning_rate():
    data = make_cities(12, image_size=32, seed=5).split(0)
    p = dataclasses.replace(P.get_preset("tiny"), null_fraction=0.0,
                            arch_overrides={"vgg11": {"learning_rate": 2e-4, "width": 0.0625}})
    rec = P.train_one("vgg11", p, 0, city_data=data, epochs=1, verbose=0)
    assert rec.result.history["learning_rate"][0] == pytest.approx(2e-4)
    assert rec.result.config["optimizer"]["learning_rate"] == pytest.approx(2e-4)
