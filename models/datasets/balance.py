"""Cities whose cues are each necessary and balanced, and the statistics that check it.

The default cities plant cues of very different sizes (earth takes 7.5% of a ``city_a`` image, a
signboard 1%) in different parts of the scene, so the visible area of the shared objects depends
on the class (earth covers road in ``city_a`` only), and with ``planted_probability=1`` any one cue
suffices. :func:`balanced_config` plants, in every city, one cue in each part of the scene, each
with probability :data:`BALANCED_PROBABILITY` (< 1; an image without any draws one), sized so that
every cue's expected area is about the same:

==========  ============================  ============================
part        ``city_a``                    ``city_b``
==========  ============================  ============================
sky         skyscraper (behind buildings) mountain (behind buildings)
facade      awning (on a building)        fence (in front of buildings)
ground      earth (on the road)           grass (on the road)
==========  ============================  ============================

Each pair covers the same shared object (sky, building, road), with the same expected area, so the
shared objects' visible area does not depend on the class: "planted over matched space" rather
than compensated afterwards. :func:`cue_statistics` measures it on generated data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .ade20k import NAME_TO_INDEX
from .cities import CitiesConfig, CityStyle
from .imageset import ImageSet

__all__ = ["BALANCED_PROBABILITY", "BALANCED_SCALE", "balanced_config", "CueStatistics", "cue_statistics"]

#: Presence probability of every cue of the balanced cities (before the at-least-one rule).
BALANCED_PROBABILITY = 0.6
#: Size factors (``CitiesConfig.object_scale``) that give every cue an expected area near 2.7%
#: of the image (2.6-2.8% at 96 px; measured by :func:`cue_statistics`, see
#: ``tests/test_twins.py``). Cues of ~1% each (the first balanced sizes) were too small to learn
#: from a few hundred images: the ``tiny`` recipe reached validation accuracy 0.53-0.82 on them and
#: 0.61-0.91 on these (``bench/RESULTS.md``, "Balanced cues and causal twins").
BALANCED_SCALE: dict[str, float] = {
    "skyscraper": 1.6, "mountain": 0.95, "awning": 3.0, "fence": 1.45, "earth": 0.62, "grass": 1.3,
}


def balanced_config(probability: float = BALANCED_PROBABILITY) -> CitiesConfig:
    """The balanced two-city configuration (see the module docstring).

    Args:
        probability: Presence probability of each cue, in (0, 1).
    """
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability {probability!r} of a balanced cue must lie in (0, 1)")
    p = float(probability)
    return CitiesConfig(
        cities=(CityStyle("city_a", {"skyscraper": p, "awning": p, "earth": p}),
                CityStyle("city_b", {"mountain": p, "fence": p, "grass": p})),
        ensure_discriminative=True,
        object_scale=dict(BALANCED_SCALE),
    )


@dataclass
class CueStatistics:
    """What :func:`cue_statistics` measures, as fractions of the image area.

    Attributes:
        cue_area: City -> cue -> mean area over the city's images (zeros where absent).
        cue_rate: City -> cue -> share of the city's images where the cue is visible.
        min_cues: City -> the fewest of its cues visible in one of its images.
        shared_area: Shared object -> city -> mean visible area over the city's images.
    """

    cue_area: dict[str, dict[str, float]]
    cue_rate: dict[str, dict[str, float]]
    min_cues: dict[str, int]
    shared_area: dict[str, dict[str, float]]

    def area_ratio(self) -> float:
        """Largest over smallest expected cue area, over all cities' cues."""
        areas = [a for city in self.cue_area.values() for a in city.values()]
        return max(areas) / min(areas)

    def shared_gap(self) -> dict[str, float]:
        """Shared object -> largest minus smallest visible area over the cities."""
        return {name: max(v.values()) - min(v.values()) for name, v in self.shared_area.items()}


def cue_statistics(data: ImageSet, shared: Sequence[str]) -> CueStatistics:
    """Cue areas, cue rates and shared objects' visible areas per city of a cities data set.

    Args:
        data: Images with label maps and ``discriminative`` (city -> planted cue names).
        shared: Names of the shared objects to measure.
    """
    if data.label_maps is None:
        raise ValueError("cue_statistics needs label maps; the data set has none")
    maps = np.asarray(data.label_maps)
    cue_area: dict[str, dict[str, float]] = {}
    cue_rate: dict[str, dict[str, float]] = {}
    min_cues: dict[str, int] = {}
    shared_area: dict[str, dict[str, float]] = {name: {} for name in shared}
    for c, city in enumerate(data.class_names):
        rows = maps[np.asarray(data.labels) == c]
        cues = list(data.discriminative.get(city, ()))
        area = np.stack([(rows == NAME_TO_INDEX[n]).mean(axis=(1, 2)) for n in cues], axis=1)
        cue_area[city] = {n: float(area[:, j].mean()) for j, n in enumerate(cues)}
        cue_rate[city] = {n: float((area[:, j] > 0).mean()) for j, n in enumerate(cues)}
        min_cues[city] = int((area > 0).sum(axis=1).min())
        for name in shared:
            shared_area[name][city] = float((rows == NAME_TO_INDEX[name]).mean())
    return CueStatistics(cue_area, cue_rate, min_cues, shared_area)
