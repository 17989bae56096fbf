"""Causal twins of the synthetic cities: the same scenes with planted objects removed.

A twin is rendered from the same random stream as the scene (:func:`~models.datasets.make_cities`
draws every parameter of every object for every image, then paints only the objects present), with
the presence of one planted object (or of all of them) switched off before painting. So a twin
differs from its scene only where the removed object was visible: there it shows what the scene
holds behind the object (shared objects, background), and its label map says so; every other pixel,
noise included, is byte-identical.

``p_y(scene) - p_y(twin without p)`` is then object ``p``'s causal importance for a model
(:mod:`evaluation.twins`); the twin without any planted object shows what a model infers from the
scene alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .ade20k import NAME_TO_INDEX
from .cities import CHUNK, CitiesConfig, _city_presence, _render_chunk, check_generator_args

__all__ = ["Twins", "parse_city_id", "render_twins"]


@dataclass
class Twins:
    """Scenes and their twins, image ``i`` of every array being the same scene.

    Attributes:
        images: ``(N, S, S, 3)`` uint8, the scenes as :func:`make_cities` draws them.
        label_maps: ``(N, S, S)`` uint8 ADE20K indices of the scenes.
        labels: ``(N,)`` class indices.
        ids: The image ids, ``"<city>/<i:06d>"``.
        objects: The planted object names of all cities, in config order (columns below).
        present: ``(N, P)`` bool, object ``j`` is visible in scene ``i`` (at least one pixel).
        without: ``(N, P, S, S, 3)`` uint8, scene ``i`` with object ``j`` removed (the scene
            itself where ``j`` is not present).
        without_maps: ``(N, P, S, S)`` uint8, their label maps.
        empty: ``(N, S, S, 3)`` uint8, scene ``i`` with all planted objects removed.
        empty_maps: ``(N, S, S)`` uint8, their label maps.
    """

    images: np.ndarray
    label_maps: np.ndarray
    labels: np.ndarray
    ids: list[str]
    objects: list[str]
    present: np.ndarray
    without: np.ndarray
    without_maps: np.ndarray
    empty: np.ndarray
    empty_maps: np.ndarray

    @property
    def object_indices(self) -> list[int]:
        """ADE20K index of each of :attr:`objects`."""
        return [NAME_TO_INDEX[name] for name in self.objects]


def parse_city_id(image_id: str, class_names: Sequence[str]) -> tuple[int, int]:
    """``(class index, position in its class)`` of a :func:`make_cities` id ``"<city>/<i:06d>"``.

    Raises:
        ValueError: not of that form, or a city not in ``class_names`` (naming the accepted ones).
    """
    city, _, pos = str(image_id).rpartition("/")
    if city not in class_names or not pos.isdigit():
        raise ValueError(f"image id {image_id!r} is not '<city>/<index>' with a city among "
                         f"{list(class_names)}")
    return list(class_names).index(city), int(pos)


def _remove(names: Sequence[str]):
    def edit(present: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: (np.zeros_like(v) if k in names else v) for k, v in present.items()}

    return edit


def render_twins(
    ids: Sequence[str], image_size: int, seed: int = 0, config: CitiesConfig | None = None
) -> Twins:
    """Render the scenes ``ids`` of ``make_cities(n, image_size, seed, config)`` and their twins.

    Each chunk of :data:`~models.datasets.cities.CHUNK` images that holds a requested scene is
    drawn ``K + 2`` times from the same random stream (``K`` = planted objects of its city): as is,
    without each planted object, without all of them.

    Args:
        ids: Image ids ``"<city>/<i:06d>"`` (e.g. ``ImageSet.ids`` of a split of the cities).
        image_size: Side of the images (as given to ``make_cities``).
        seed: The generator's seed.
        config: The generator's configuration (``None`` = the default).

    Returns:
        The :class:`Twins` of ``ids``, in that order.

    Raises:
        ValueError: a bad size or seed, or an id that is not one of the config's cities.
    """
    config = CitiesConfig() if config is None else config
    check_generator_args(1, image_size, seed)
    names = config.class_names
    objects = list(dict.fromkeys(n for city in config.cities for n in city.planted))
    where = [parse_city_id(i, names) for i in ids]
    n, size, p = len(where), int(image_size), len(objects)
    out = Twins(
        images=np.empty((n, size, size, 3), np.uint8), label_maps=np.empty((n, size, size), np.uint8),
        labels=np.array([k for k, _ in where], np.int64), ids=[str(i) for i in ids], objects=objects,
        present=np.zeros((n, p), bool), without=np.empty((n, p, size, size, 3), np.uint8),
        without_maps=np.empty((n, p, size, size), np.uint8), empty=np.empty((n, size, size, 3), np.uint8),
        empty_maps=np.empty((n, size, size), np.uint8),
    )
    groups: dict[tuple[int, int], list[int]] = {}
    for row, (k, pos) in enumerate(where):
        groups.setdefault((k, pos // CHUNK), []).append(row)
    for (k, chunk), rows in groups.items():
        _fill_chunk(out, rows, [where[r][1] % CHUNK for r in rows], k, chunk, size, int(seed), config)
    return out


def _fill_chunk(out: Twins, rows: list[int], at: list[int], k: int, chunk: int, size: int, seed: int,
                config: CitiesConfig) -> None:
    """Render chunk ``chunk`` of class ``k`` as is, without each planted object and without all."""
    city = config.cities[k]
    presence = _city_presence(city, config)

    def draw(remove: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, 0, k, chunk])  # make_cities' stream (domain 0)
        return _render_chunk(rng, CHUNK, size, config, presence, edit=_remove(remove))

    images, maps = draw(())
    out.images[rows], out.label_maps[rows] = images[at], maps[at]
    empty, empty_maps = draw(list(city.planted))
    out.empty[rows], out.empty_maps[rows] = empty[at], empty_maps[at]
    for j, name in enumerate(out.objects):
        visible = (maps[at] == NAME_TO_INDEX[name]).any(axis=(1, 2))
        out.present[rows, j] = visible
        if name in city.planted and visible.any():
            twin, twin_maps = draw([name])
            out.without[rows, j], out.without_maps[rows, j] = twin[at], twin_maps[at]
        else:
            out.without[rows, j], out.without_maps[rows, j] = images[at], maps[at]
