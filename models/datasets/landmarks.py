"""Synthetic landmarks for the embedding (similarity) networks.

Each class is one distinctive object -- a shape with its own colour pattern -- standing on the
ground line of a varied street scene (the shared objects and nuisances of
:mod:`models.datasets.cities`), at a random horizontal position and a random scale (the longer
side of its bounding box 0.3-0.6 of the image side). The landmark is drawn in front of buildings,
trees and poles and behind cars, which never reach it, so it is always visible. Its pixels carry
a dedicated ADE20K index (the closest ADE20K object to the shape):

============  ===========  =====  =========================================================
class         ADE20K name  index  look
============  ===========  =====  =========================================================
tower         tower        85     tapering shaft in red/white bands, deck, pointed spire
arch          bridge       62     stone gate with a round opening and mortar courses
dome          canopy       107    copper-green ribbed dome on a colonnaded drum, gold lantern
pyramid       tent         115    sand-coloured stepped triangle, one side in shade
obelisk       column       43     narrow dark granite needle, gold tip, pedestal
clock         clock        149    white clock face with dark rim and hands, on a post
statue        sculpture    133    bronze figure with a raised torch on a pedestal
flag          flag         150    tricolour flag on a pole
============  ===========  =====  =========================================================

Classes 8-23 reuse the shapes with the colour channels rotated (``"tower_2"``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .ade20k import NAME_TO_INDEX
from .cities import (CitiesConfig, _Canvas, _shared_presence, check_generator_args,
                     generate_class)
from .imageset import ImageSet

ShapeFn = Callable[["_Painter", np.ndarray, np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class _Landmark:
    name: str  # class name
    obj: str  # ADE20K object name
    aspect: float  # width / height of the bounding box
    shape: ShapeFn


class _Painter:
    """Colour slots (channel-rotated for variants) and painting for one landmark object."""

    def __init__(self, cv: _Canvas, obj: str, variant: int) -> None:
        self.cv, self.obj, self.variant = cv, obj, variant

    def slot(self, palette, jitter: float = 0.03, emissive=False) -> int:
        rgb = self.cv.colour(palette, jitter)
        return self.cv.new_slot(np.roll(rgb, self.variant, axis=1), emissive)

    def paint(self, mask: np.ndarray, slot: int) -> None:
        self.cv.paint(mask, self.obj, slot)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _tower(p: _Painter, U, V, box) -> None:
    red, white = p.slot([(0.85, 0.18, 0.15)]), p.slot([(0.95, 0.94, 0.92)])
    deck = p.slot([(0.30, 0.30, 0.33)])
    dx = np.abs(U - 0.5)
    spire = box & (V < 0.25) & (dx < 0.2 * V / 0.25)
    shaft = box & (V >= 0.25) & (dx < 0.2 + 0.12 * (V - 0.25) / 0.75)
    p.paint(spire | shaft, red)
    p.paint(shaft & (np.floor(V * 10) % 2 == 1), white)
    p.paint(box & (V >= 0.32) & (V < 0.38) & (dx < 0.38), deck)


def _arch(p: _Painter, U, V, box) -> None:
    stone, mortar = p.slot([(0.74, 0.66, 0.52)]), p.slot([(0.52, 0.46, 0.38)])
    opening = ((U - 0.5) / 0.3) ** 2 + ((V - 1.0) / 0.62) ** 2 < 1.0
    gate = box & ~opening
    p.paint(gate, stone)
    p.paint(gate & ((_frac(V * 8) < 0.12) | (V < 0.08)), mortar)


def _dome(p: _Painter, U, V, box) -> None:
    copper, rib = p.slot([(0.32, 0.64, 0.56)]), p.slot([(0.20, 0.44, 0.38)])
    drum, column = p.slot([(0.90, 0.86, 0.76)]), p.slot([(0.62, 0.58, 0.50)])
    gold = p.slot([(0.90, 0.74, 0.22)])
    dx = np.abs(U - 0.5)
    cap = box & (V < 0.55) & (((U - 0.5) / 0.4) ** 2 + ((V - 0.55) / 0.4) ** 2 < 1.0)
    base = box & (V >= 0.55) & (dx < 0.4)
    p.paint(cap, copper)
    p.paint(cap & (_frac(U * 7) < 0.12), rib)
    p.paint(base, drum)
    p.paint(base & (V >= 0.62) & (_frac(U * 9) < 0.35), column)
    p.paint(box & (dx < 0.05) & (V >= 0.05) & (V < 0.17), gold)


def _pyramid(p: _Painter, U, V, box) -> None:
    sand, shade = p.slot([(0.88, 0.74, 0.46)]), p.slot([(0.66, 0.52, 0.30)])
    course = p.slot([(0.56, 0.44, 0.26)])
    body = box & (np.abs(U - 0.5) < 0.5 * V)
    p.paint(body, sand)
    p.paint(body & (U > 0.5 + 0.1 * V), shade)
    p.paint(body & (_frac(V * 10) < 0.1), course)


def _obelisk(p: _Painter, U, V, box) -> None:
    granite, gold = p.slot([(0.30, 0.28, 0.31)]), p.slot([(0.92, 0.74, 0.20)])
    plinth = p.slot([(0.70, 0.68, 0.64)])
    dx = np.abs(U - 0.5)
    p.paint(box & (V >= 0.1) & (dx < 0.16 + 0.1 * (V - 0.1) / 0.78), granite)
    p.paint(box & (V < 0.1) & (dx < 0.16 * V / 0.1), gold)
    p.paint(box & (V >= 0.88) & (dx < 0.45), plinth)


def _clock(p: _Painter, U, V, box) -> None:
    face, rim = p.slot([(0.97, 0.96, 0.92)]), p.slot([(0.15, 0.15, 0.20)])
    post = p.slot([(0.28, 0.30, 0.30)])
    dx = np.abs(U - 0.5)
    r2 = ((U - 0.5) / 0.5) ** 2 + ((V - 0.3) / 0.3) ** 2
    p.paint(box & (V >= 0.55) & (dx < 0.08), post)
    p.paint(box & (V >= 0.92) & (dx < 0.3), post)
    p.paint(box & (r2 < 1.0), rim)
    p.paint(box & (r2 < 0.64), face)
    hands = (dx < 0.04) & (V >= 0.12) & (V < 0.3) | (np.abs(V - 0.3) < 0.025) & (U >= 0.5) & (
        U < 0.82)
    p.paint(box & hands, rim)


def _statue(p: _Painter, U, V, box) -> None:
    bronze, stone = p.slot([(0.26, 0.46, 0.36)]), p.slot([(0.76, 0.74, 0.70)])
    gold = p.slot([(0.95, 0.78, 0.22)])
    dx = np.abs(U - 0.5)
    p.paint(box & (V >= 0.72) & (dx < 0.4), stone)
    figure = (V >= 0.3) & (V < 0.72) & (dx < 0.16)
    figure |= ((U - 0.5) / 0.2) ** 2 + ((V - 0.2) / 0.1) ** 2 < 1.0
    figure |= (U >= 0.62) & (U < 0.74) & (V >= 0.06) & (V < 0.42)
    p.paint(box & figure, bronze)
    p.paint(box & (U >= 0.58) & (U < 0.78) & (V < 0.07), gold)


def _flag(p: _Painter, U, V, box) -> None:
    pole = p.slot([(0.55, 0.55, 0.58)])
    stripes = [p.slot([c]) for c in ((0.10, 0.25, 0.70), (0.96, 0.96, 0.96), (0.85, 0.12, 0.15))]
    p.paint(box & (U >= 0.04) & (U < 0.1), pole)
    cloth = box & (U >= 0.1) & (V >= 0.02) & (V < 0.45)
    for k, slot in enumerate(stripes):
        p.paint(cloth & (U >= 0.1 + 0.3 * k), slot)


LANDMARKS: tuple[_Landmark, ...] = (
    _Landmark("tower", "tower", 0.3, _tower),
    _Landmark("arch", "bridge", 1.1, _arch),
    _Landmark("dome", "canopy", 0.9, _dome),
    _Landmark("pyramid", "tent", 1.5, _pyramid),
    _Landmark("obelisk", "column", 0.25, _obelisk),
    _Landmark("clock", "clock", 0.6, _clock),
    _Landmark("statue", "sculpture", 0.5, _statue),
    _Landmark("flag", "flag", 0.9, _flag),
)
#: Largest ``num_classes`` of :func:`make_landmarks` (8 shapes x 3 colour variants).
MAX_LANDMARK_CLASSES = 3 * len(LANDMARKS)


def landmark_class(k: int) -> tuple[str, str]:
    """Return ``(class name, ADE20K object name)`` of landmark class ``k``."""
    spec, variant = LANDMARKS[k % len(LANDMARKS)], k // len(LANDMARKS)
    return (spec.name if variant == 0 else f"{spec.name}_{variant + 1}"), spec.obj


def _landmark_drawer(k: int) -> Callable[[_Canvas, np.ndarray], None]:
    spec, variant = LANDMARKS[k % len(LANDMARKS)], k // len(LANDMARKS)

    def draw(cv: _Canvas, present: np.ndarray) -> None:
        foot = cv.h + cv.u(0.0, 0.08) * cv.B
        extent = cv.u(0.3, 0.6) * cv.size  # the longer side of the bounding box
        height = extent / max(1.0, spec.aspect)
        height = np.maximum(np.minimum(height, foot), 2.0)
        width = np.maximum(height * spec.aspect, 2.0)
        x0 = cv.u(0, 1) * (cv.size - width)
        y0 = foot - height
        U = ((cv.centres[None, :] - x0[:, None]) / width[:, None])[:, None, :]  # (n, 1, S)
        V = ((cv.centres[None, :] - y0[:, None]) / height[:, None])[:, :, None]  # (n, S, 1)
        box = ((V >= 0) & (V < 1) & present[:, None, None]) & ((U >= 0) & (U < 1))
        spec.shape(_Painter(cv, spec.obj, variant), U, V, box)

    return draw


def make_landmarks(
    n_per_class: int, image_size: int = 64, seed: int = 0, num_classes: int = 4
) -> ImageSet:
    """Generate ``n_per_class`` street scenes per landmark class.

    Args:
        n_per_class: Images per class (>= 1).
        image_size: Side of the square images (>= 16).
        seed: Non-negative seed; the same seed gives byte-identical arrays.
        num_classes: Number of landmark classes, 1 to :data:`MAX_LANDMARK_CLASSES`; classes
            follow the table in the module docstring.

    Returns:
        An :class:`ImageSet` (class-major order) whose ``label_maps`` mark the landmark with its
        ADE20K index, ``discriminative`` = class name -> [landmark object name], ids
        ``"<class>/<i:06d>"``.

    Raises:
        ValueError: On a bad count, size, seed or number of classes (naming the value).
    """
    check_generator_args(n_per_class, image_size, seed)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or not (
            1 <= num_classes <= MAX_LANDMARK_CLASSES):
        raise ValueError(
            f"num_classes must be an integer in [1, {MAX_LANDMARK_CLASSES}], got {num_classes!r}")
    config = CitiesConfig()
    n, size = int(n_per_class), int(image_size)
    images = np.empty((n * num_classes, size, size, 3), np.uint8)
    maps = np.empty((n * num_classes, size, size), np.uint8)
    names, objects = zip(*(landmark_class(k) for k in range(num_classes)))

    for k in range(num_classes):
        def presence(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
            present = _shared_presence(rng, count, config.shared)
            present["landmark"] = np.ones(count, bool)
            return present

        rows = slice(k * n, (k + 1) * n)
        generate_class(1, seed, k, n, size, config, presence,
                       drawers={"landmark": _landmark_drawer(k)}, out=(images[rows], maps[rows]))
    possible = {name for name, p in config.shared.items() if p > 0} | set(objects)
    return ImageSet(
        images=images,
        labels=np.repeat(np.arange(num_classes, dtype=np.int64), n),
        class_names=list(names),
        label_maps=maps,
        object_names={NAME_TO_INDEX[o]: o for o in sorted(possible, key=NAME_TO_INDEX.get)},
        discriminative={name: [obj] for name, obj in zip(names, objects)},
        ids=[f"{name}/{i:06d}" for name in names for i in range(n)],
    )
