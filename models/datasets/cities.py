"""Synthetic street scenes of several "cities" whose discriminative objects are planted.

Every image is a street scene: a sky band at the top, ground (road, optionally a sidewalk) at the
bottom, a row of buildings along the horizon and optional trees, cars and poles. Each city *plants*
its own objects (by default ``city_a``: skyscraper and earth, ``city_b``: signboard, fence and
plant, after what seed 001 found for Pittsburgh and Tokyo). The objects shared by all cities are
drawn from the same distributions in every city, and the global nuisances (brightness, colour
cast, time of day, horizon height, mirroring) are independent of the class, so a classifier can
only win by looking at the planted objects. Every pixel carries the ADE20K index of the object
drawn last on it (painter's order, back to front), so explanations can be checked against the
truth.

How it is drawn (vectorised over a chunk of images):
    * Every object part writes ``ADE20K index << 8 | colour slot`` into one ``(N, S, S)`` uint16
      code map, through boolean masks built by broadcasting per-image parameters (rectangles are
      outer products of a row mask and a column mask, ellipses a sum of two separable squared
      distances, textures periodic masks or thresholds of one shared random byte field; the
      building row is a single per-column height profile).
    * Colours are looked up once at the end from a per-image uint8 slot palette that already
      includes the nuisances (brightness, colour cast, daylight); then a little Gaussian noise
      (std ``noise * 255``, quantised) is added.
    * Random numbers come from ``numpy.random.default_rng([seed, domain, class, chunk])`` for
      fixed chunks of :data:`CHUNK` images, so an image depends only on (seed, class, position,
      size, config): ``make_cities(10)`` is a prefix of ``make_cities(100)`` with the same seed.

Geometry: vertical sizes above the horizon scale with the sky height ``A = horizon`` and below it
with the ground height ``B = size - horizon``; horizontal sizes with the image size. The ranges are
chosen so that nothing drawn later can hide a planted default object completely (the top of a
skyscraper stays above every tree and building, tree crowns end above fences, cars stay below
fences and bushes, an earth patch is wider than any car), so "planted" means "visible" (checked
from 32 px up; at 16 px a part of one pixel can round away).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Mapping

import numpy as np

from .ade20k import NAME_TO_INDEX
from .imageset import ImageSet

#: Images generated per random stream; a class is generated in whole chunks and trimmed.
CHUNK = 32
#: Smallest supported image side.
MIN_IMAGE_SIZE = 16

#: Drawable objects, back to front; the painter's order of every scene. "landmark" is a slot for
#: :mod:`models.datasets.landmarks`.
LAYER_ORDER: tuple[str, ...] = (
    "sky", "road", "mountain", "skyscraper", "building", "awning", "sidewalk", "earth", "grass",
    "fence", "tree", "pole", "streetlight", "landmark", "plant", "signboard", "person", "car",
)
#: Objects that form the background; they must be shared with probability 1.
BACKGROUND: tuple[str, ...] = ("sky", "road")
#: Object names accepted in ``CitiesConfig.shared``.
SHAREABLE: tuple[str, ...] = tuple(sorted(n for n in LAYER_ORDER if n != "landmark"))
#: Object names accepted as planted objects of a city.
PLANTABLE: tuple[str, ...] = tuple(sorted(n for n in SHAREABLE if n not in BACKGROUND))
#: Objects whose size ``CitiesConfig.object_scale`` can change, and how their area follows the
#: factor ``s``: ``s`` (one dimension scaled) or ``s^2`` (both).
SCALABLE: dict[str, str] = {
    "awning": "s^2", "earth": "s", "fence": "s^2", "grass": "s^2", "mountain": "s", "plant": "s^2",
    "signboard": "s^2",
    "skyscraper": "s",
}

DEFAULT_SHARED: dict[str, float] = {
    "sky": 1.0, "building": 1.0, "road": 1.0, "tree": 0.6, "car": 0.5, "sidewalk": 0.5, "pole": 0.4,
}


@dataclass(frozen=True)
class CityStyle:
    """One class of the city data: a name and its planted objects.

    Attributes:
        name: Class name, e.g. ``"city_a"``.
        planted: Object name (one of :data:`PLANTABLE`) -> probability that an image holds it,
            drawn independently per object.
    """

    name: str
    planted: Mapping[str, float] = field(default_factory=dict)


DEFAULT_CITIES: tuple[CityStyle, ...] = (
    CityStyle("city_a", {"skyscraper": 0.85, "earth": 0.8}),
    CityStyle("city_b", {"signboard": 0.85, "fence": 0.8, "plant": 0.75}),
)


@dataclass(frozen=True)
class CitiesConfig:
    """What :func:`make_cities` draws. Validated on construction.

    Attributes:
        cities: The classes, in label order.
        shared: Object name -> probability of appearing, identical in every city. ``sky`` and
            ``road`` form the background and must have probability 1.
        ensure_discriminative: If an image drew none of its city's planted objects, draw one chosen
            uniformly among them, so every image holds at least one. The resulting rate of planted
            object ``j`` is ``p_j + prod_k(1 - p_k) / K`` for a city with ``K`` planted objects.
        brightness: Range of the global brightness factor (uniform).
        colour_cast: Each RGB channel is scaled by ``1 + U(-colour_cast, colour_cast)``.
        dusk_probability: Probability of a dusk scene (orange sky, dimmer light).
        night_probability: Probability of a night scene (dark sky, lit windows, glowing signs).
        horizon: Range of the horizon height as a fraction of the image height.
        flip_probability: Probability of mirroring the scene left-right.
        noise: Standard deviation of the per-pixel Gaussian noise, as a fraction of 255.
        object_scale: Object name (one of :data:`SCALABLE`) -> size factor in (0, 3] (1 = the
            drawer's sizes): skyscraper and mountain width, earth height, awning, fence and grass
            length and thickness, signboard board and plant blob sizes. Used to balance the cues'
            areas.
    """

    cities: tuple[CityStyle, ...] = DEFAULT_CITIES
    shared: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARED))
    ensure_discriminative: bool = True
    brightness: tuple[float, float] = (0.75, 1.2)
    colour_cast: float = 0.08
    dusk_probability: float = 0.2
    night_probability: float = 0.15
    horizon: tuple[float, float] = (0.42, 0.56)
    flip_probability: float = 0.5
    noise: float = 0.02
    object_scale: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cities", tuple(self.cities))
        _validate_config(self)

    @property
    def class_names(self) -> list[str]:
        """Names of the cities, in label order."""
        return [city.name for city in self.cities]


def _check_probability(value: float, what: str) -> None:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"probability {value!r} for {what} is outside [0, 1]")


def _check_names(names, accepted: tuple[str, ...], where: str) -> None:
    for name in names:
        if name not in accepted:
            raise ValueError(
                f"unknown object {name!r} in {where}; accepted objects: {', '.join(accepted)}"
            )


def _check_range(value, lo: float, hi: float, what: str) -> None:
    ok = len(tuple(value)) == 2 and lo <= value[0] <= value[1] <= hi
    if not ok:
        raise ValueError(f"{what} must be a range (low, high) with {lo} <= low <= high <= {hi}, "
                         f"got {value!r}")


def _validate_config(config: CitiesConfig) -> None:
    """Raise ValueError naming the bad value and the accepted ones."""
    if not config.cities:
        raise ValueError("a CitiesConfig needs at least one city, got none")
    names = [city.name for city in config.cities]
    if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"city names must be distinct non-empty strings, got {names}")
    _check_names(config.shared, SHAREABLE, "shared objects")
    for name, p in config.shared.items():
        _check_probability(p, f"shared object {name!r}")
    for name in BACKGROUND:
        if config.shared.get(name) != 1.0:
            raise ValueError(f"shared object {name!r} is the background and must have probability "
                             f"1.0, got {config.shared.get(name)!r}")
    for city in config.cities:
        where = f"city {city.name!r}"
        _check_names(city.planted, PLANTABLE, where)
        for name, p in city.planted.items():
            _check_probability(p, f"{name!r} in {where}")
            if name in config.shared:
                raise ValueError(f"object {name!r} of {where} is also shared; an object is either "
                                 f"shared by all cities or planted")
        if config.ensure_discriminative and not city.planted:
            raise ValueError(f"{where} plants no object but ensure_discriminative is True")
    _check_range(config.brightness, 0.05, 3.0, "brightness")
    _check_range(config.horizon, 0.3, 0.7, "horizon")
    for what, value, hi in (("colour_cast", config.colour_cast, 0.99), ("noise", config.noise, 0.5),
                            ("dusk_probability", config.dusk_probability, 1.0),
                            ("night_probability", config.night_probability, 1.0),
                            ("flip_probability", config.flip_probability, 1.0)):
        if not 0.0 <= value <= hi:
            raise ValueError(f"{what} must lie in [0, {hi}], got {value!r}")
    _check_names(config.object_scale, tuple(SCALABLE), "object_scale")
    for name, factor in config.object_scale.items():
        if not isinstance(factor, (int, float, np.floating, np.integer)) or not 0.0 < factor <= 3.0:
            raise ValueError(f"object_scale of {name!r} must lie in (0, 3], got {factor!r}")
    if config.dusk_probability + config.night_probability > 1.0:
        raise ValueError("dusk_probability + night_probability must not exceed 1, got "
                         f"{config.dusk_probability} + {config.night_probability}")


# --------------------------------------------------------------------------------------------
# The canvas: one code map (label, colour slot), painted with broadcast masks.
# --------------------------------------------------------------------------------------------


class _Canvas:
    """A chunk of ``n`` scenes of side ``size`` under construction.

    Holds one ``(n, S, S)`` uint16 code map, ``ADE20K index << 8 | colour slot`` (one masked
    write per painted part), the slot palette, a shared uint8 texture field and the per-image scene
    parameters (horizon ``h``, sky height ``A``, ground height ``B``, time of day ``tod``: 0 day,
    1 dusk, 2 night).
    """

    def __init__(self, rng: np.random.Generator, n: int, size: int, horizon: np.ndarray,
                 tod: np.ndarray) -> None:
        self.rng, self.n, self.size = rng, n, size
        self.centres = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
        self.h = horizon.astype(np.float32)
        self.A = self.h
        self.B = (size - self.h).astype(np.float32)
        self.tod = tod
        self.night = tod == 2
        self.scale = 1.0  # size factor of the object being drawn (CitiesConfig.object_scale)
        self.code = np.zeros((n, size, size), np.uint16)
        self.texture = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        self._colours: list[np.ndarray] = []
        self._emissive: list[np.ndarray] = []

    # -- random parameters ------------------------------------------------------------------
    def u(self, lo: float, hi: float, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Uniform ``(n, *shape)`` float32 draws in [lo, hi)."""
        return self.rng.uniform(lo, hi, (self.n,) + shape).astype(np.float32)

    def colour(self, palette, jitter: float = 0.04) -> np.ndarray:
        """One colour per image: a uniform choice from ``palette`` ``(K, 3)`` plus jitter."""
        palette = np.asarray(palette, np.float32).reshape(-1, 3)
        pick = self.rng.integers(0, len(palette), self.n)
        noise = self.rng.uniform(-jitter, jitter, (self.n, 3)).astype(np.float32)
        return np.clip(palette[pick] + noise, 0.0, 1.0)

    # -- slots and painting -----------------------------------------------------------------
    def new_slot(self, rgb: np.ndarray, emissive=False) -> int:
        """Register a colour ``(n, 3)`` (or ``(3,)``) and return its slot number.

        Emissive slots (sky, lit windows, lamps) are not dimmed by the time of day.
        """
        if len(self._colours) >= 255:
            raise RuntimeError("too many colour slots in one scene")  # a bug, not user input
        self._colours.append(np.broadcast_to(np.asarray(rgb, np.float32), (self.n, 3)))
        self._emissive.append(np.broadcast_to(np.asarray(emissive, bool), (self.n,)))
        return len(self._colours) - 1

    def paint(self, mask: np.ndarray, name: str, slot) -> None:
        """Write ``name``'s ADE20K index and ``slot`` where ``mask`` (broadcast to (n,S,S))."""
        code = np.asarray(slot, np.uint16) + np.uint16(NAME_TO_INDEX[name] << 8)
        np.copyto(self.code, code, where=mask)

    # -- masks -------------------------------------------------------------------------------
    def rows(self, y0, y1, present=None) -> np.ndarray:
        """``(n, S, 1)`` mask of the rows whose centres lie in ``[y0, y1)`` (per image)."""
        c = self.centres[None, :]
        m = (c >= np.asarray(y0, np.float32)[:, None]) & (c < np.asarray(y1, np.float32)[:, None])
        if present is not None:
            m &= present[:, None]
        return m[:, :, None]

    def cols(self, x0, x1) -> np.ndarray:
        """``(n, 1, S)`` mask of the columns whose centres lie in ``[x0, x1)`` (per image)."""
        c = self.centres[None, :]
        m = (c >= np.asarray(x0, np.float32)[:, None]) & (c < np.asarray(x1, np.float32)[:, None])
        return m[:, None, :]

    def rect(self, y0, y1, x0, x1, present=None) -> np.ndarray:
        """``(n, S, S)`` mask of the axis-aligned boxes ``[y0, y1) x [x0, x1)``."""
        return self.rows(y0, y1, present) & self.cols(x0, x1)

    def ellipse(self, cy, cx, ry, rx, present=None) -> np.ndarray:
        """``(n, S, S)`` mask of the filled ellipses (radii at least 0.75 px, so never empty)."""
        ry = np.maximum(np.asarray(ry, np.float32), 0.75)
        rx = np.maximum(np.asarray(rx, np.float32), 0.75)
        dy = ((self.centres[None, :] - np.asarray(cy, np.float32)[:, None]) / ry[:, None]) ** 2
        dx = ((self.centres[None, :] - np.asarray(cx, np.float32)[:, None]) / rx[:, None]) ** 2
        if present is not None:
            dy = np.where(present[:, None], dy, np.float32(2.0))
        return (dy[:, :, None] + dx[:, None, :]) <= 1.0

    def periodic(self, origin, period, duty: tuple[float, float]) -> np.ndarray:
        """``(n, S)`` mask of pixel centres whose phase ``(x - origin) mod period`` lies in
        ``[duty[0], duty[1]) * period``; period at least 2 px so the pattern survives."""
        period = np.maximum(np.asarray(period, np.float32), 2.0)[:, None]
        phase = np.mod(self.centres[None, :] - np.asarray(origin, np.float32)[:, None], period)
        return (phase >= duty[0] * period) & (phase < duty[1] * period)

    def px(self, value) -> np.ndarray:
        """At least one pixel."""
        return np.maximum(np.asarray(value, np.float32), 1.0)

    # -- final colours -----------------------------------------------------------------------
    @property
    def label(self) -> np.ndarray:
        """``(n, S, S)`` uint8 ADE20K indices."""
        return (self.code >> 8).astype(np.uint8)

    def render(self, brightness: np.ndarray, cast: np.ndarray, noise: float) -> np.ndarray:
        """Look up the slot colours, apply the nuisances and noise; ``(n, S, S, 3)`` uint8.

        The per-image palette (slot colours x daylight x brightness x colour cast) is rounded to
        uint8 and gathered once; the noise is zero-mean Gaussian quantised to integers, drawn as
        one random byte per value through an inverse-CDF table (much cheaper than normal draws).
        """
        palette = np.stack(self._colours, axis=1)  # (n, K, 3)
        emissive = np.stack(self._emissive, axis=1)  # (n, K)
        daylight = np.array([1.0, 0.72, 0.4], np.float32)[self.tod]
        light = np.where(emissive, np.float32(1.0), daylight[:, None])[:, :, None]
        palette = palette * light * (brightness[:, None, None] * cast[:, None, :])
        palette = np.floor(np.clip(palette, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        flat = (self.code & 0xFF).astype(np.intp)
        flat += (np.arange(self.n, dtype=np.intp) * 256)[:, None, None]
        table = np.zeros((self.n, 256, 3), np.uint8)
        table[:, : palette.shape[1]] = palette
        image = np.take(table.reshape(-1, 3), flat, axis=0)  # (n, S, S, 3) uint8
        if noise <= 0:
            return image
        raw = np.frombuffer(self.rng.bytes(image.size), np.uint8).reshape(image.shape)
        noisy = np.add(image, np.take(_noise_table(noise * 255.0), raw), dtype=np.int16)
        np.clip(noisy, 0, 255, out=noisy)
        return noisy.astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _noise_table(std: float) -> np.ndarray:
    """256 int16 values: the Gaussian (0, std) quantiles at (i + 0.5) / 256, rounded."""
    quantiles = [NormalDist(0.0, max(std, 1e-9)).inv_cdf((i + 0.5) / 256) for i in range(256)]
    return np.round(np.asarray(quantiles)).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Drawers: one per object, each draws its parameters for all n images, then paints where present.
# --------------------------------------------------------------------------------------------

_SKY = {  # time of day -> (colour at the top, colour at the horizon)
    0: ((0.30, 0.50, 0.86), (0.70, 0.80, 0.93)),
    1: ((0.25, 0.26, 0.50), (0.96, 0.62, 0.40)),
    2: ((0.02, 0.03, 0.10), (0.10, 0.12, 0.24)),
}
_SKY_BANDS = 6


def _draw_sky(cv: _Canvas, present: np.ndarray) -> None:
    """Sky above the horizon: a vertical gradient in ``_SKY_BANDS`` bands, by time of day."""
    top = np.array([_SKY[t][0] for t in range(3)], np.float32)[cv.tod]
    bottom = np.array([_SKY[t][1] for t in range(3)], np.float32)[cv.tod]
    jitter = cv.u(-0.04, 0.04, (3,))
    base = None
    for b in range(_SKY_BANDS):
        w = (b + 0.5) / _SKY_BANDS
        slot = cv.new_slot(np.clip(top * (1 - w) + bottom * w + jitter, 0, 1), emissive=True)
        base = slot if base is None else base
    band = np.floor(cv.centres[None, :] / cv.h[:, None] * _SKY_BANDS)
    slots = (base + np.clip(band, 0, _SKY_BANDS - 1)).astype(np.uint8)[:, :, None]
    cv.paint(cv.rows(np.zeros(cv.n), cv.h, present), "sky", slots)


def _draw_road(cv: _Canvas, present: np.ndarray) -> None:
    """Asphalt below the horizon with a dashed centre line (both labelled road)."""
    asphalt = cv.new_slot(cv.colour([(0.33, 0.33, 0.35), (0.40, 0.39, 0.38)], 0.04))
    paint = cv.new_slot(cv.colour([(0.92, 0.92, 0.88), (0.92, 0.80, 0.30)], 0.03))
    cv.paint(cv.rows(cv.h, np.full(cv.n, cv.size), present), "road", asphalt)
    y = cv.h + cv.u(0.5, 0.6) * cv.B
    thick = cv.px(cv.u(0.012, 0.02) * cv.size)
    dashes = cv.periodic(cv.u(0, cv.size), cv.u(0.15, 0.25) * cv.size, (0.0, 0.55))
    cv.paint(cv.rows(y, y + thick, present) & dashes[:, None, :], "road", paint)


def _draw_mountain(cv: _Canvas, present: np.ndarray) -> None:
    """One or two peaks behind the city: per-column top = peak + slope * |x - x_peak|."""
    slot = cv.new_slot(cv.colour([(0.42, 0.48, 0.58), (0.40, 0.50, 0.42)], 0.04))
    top = np.full((cv.n, cv.size), np.inf, np.float32)
    two = cv.rng.random(cv.n) < 0.5
    for k in range(2):
        peak_y = cv.h - cv.u(0.6, 0.85) * cv.A
        peak_x, slope = cv.u(0, cv.size), cv.u(0.45, 1.0) / cv.scale
        prof = peak_y[:, None] + slope[:, None] * np.abs(cv.centres[None, :] - peak_x[:, None])
        if k == 1:
            prof = np.where(two[:, None], prof, np.inf)
        top = np.minimum(top, prof)
    mask = (cv.centres[None, :, None] >= top[:, None, :]) & cv.rows(np.zeros(cv.n), cv.h, present)
    cv.paint(mask, "mountain", slot)


def _draw_skyscraper(cv: _Canvas, present: np.ndarray) -> None:
    """A tall narrow grey-blue tower with a dense window grid, from the horizon to near the top.

    Its top lies in [0, 0.12] A, above every building (>= 0.45 A) and tree top (>= 0.3 A).
    """
    body = cv.new_slot(cv.colour([(0.47, 0.56, 0.68), (0.55, 0.60, 0.66)], 0.03))
    glass = cv.new_slot(np.where(cv.night[:, None], np.float32([0.95, 0.85, 0.45]),
                                 np.float32([0.20, 0.28, 0.42])), emissive=cv.night)
    width = cv.px(cv.u(0.08, 0.14) * cv.scale * cv.size)
    x0 = cv.u(0, 1) * (cv.size - width)
    top = cv.u(0.0, 0.12) * cv.A
    box = cv.rect(top, cv.h, x0, x0 + width, present)
    cv.paint(box, "skyscraper", body)
    col_period = width / cv.rng.integers(3, 6, cv.n)
    win_cols = cv.periodic(x0, col_period, (0.3, 0.8))
    win_rows = cv.periodic(top, cv.u(0.035, 0.05) * cv.size, (0.35, 0.85))
    cv.paint(box & win_rows[:, :, None] & win_cols[:, None, :], "skyscraper", glass)


_BUILDING_COLOURS = [(0.78, 0.70, 0.55), (0.62, 0.32, 0.26), (0.56, 0.56, 0.56),
                     (0.86, 0.82, 0.72), (0.46, 0.36, 0.28)]
_BUILDING_MIN_WIDTH = 0.12


def _draw_building(cv: _Canvas, present: np.ndarray) -> None:
    """A contiguous row of buildings on the horizon, 0.3-0.55 A tall, with window grids.

    Drawn as one per-column profile: column -> building index -> (top, colour, window grid).
    """
    kmax = int(np.ceil(1.15 / _BUILDING_MIN_WIDTH)) + 1
    widths = cv.u(_BUILDING_MIN_WIDTH, 0.3, (kmax,)) * cv.size
    start = -cv.u(0, 0.15) * cv.size
    edges = start[:, None] + np.concatenate([np.zeros((cv.n, 1), np.float32),
                                             np.cumsum(widths, axis=1)], axis=1)
    tops = cv.h[:, None] - cv.u(0.3, 0.55, (kmax,)) * cv.A[:, None]
    base = None
    for k in range(kmax):
        slot = cv.new_slot(cv.colour(_BUILDING_COLOURS, 0.05))
        base = slot if base is None else base
    window = cv.new_slot(np.where(cv.night[:, None], np.float32([0.98, 0.86, 0.50]),
                                  np.float32([0.24, 0.27, 0.32])), emissive=cv.night)
    index = (cv.centres[None, None, :] >= edges[:, 1:-1, None]).sum(axis=1)  # (n, S)
    take = lambda a: np.take_along_axis(a, index, axis=1)  # noqa: E731 - per-column gather
    top_col, left, right = take(tops), take(edges[:, :-1]), take(edges[:, 1:])
    rows = cv.centres[None, :, None]
    wall = (rows >= top_col[:, None, :]) & cv.rows(np.zeros(cv.n), cv.h, present)
    cv.paint(wall, "building", (base + index).astype(np.uint8)[:, None, :])
    # windows: a grid per building, phase from its left edge / top, not on the ground floor
    px = take(cv.u(0.05, 0.08, (kmax,)) * cv.size)
    py = np.maximum(cv.u(0.1, 0.16, (kmax,)) * cv.A[:, None], 2.0)  # (n, kmax)
    phase_x = np.mod(cv.centres[None, :] - left, np.maximum(px, 2.0))
    win_x = (phase_x >= 0.35 * px) & (phase_x < 0.8 * px) & (right - cv.centres[None, :] > 0.3 * px)
    # rows of windows of each building (n, S, kmax), then picked per column by building index
    local_y = cv.centres[None, :, None] - tops[:, None, :]
    phase_y = np.mod(local_y, py[:, None, :])
    win_rows = (phase_y >= 0.4 * py[:, None, :]) & (phase_y < 0.85 * py[:, None, :]) & (
        local_y > 0) & (cv.centres[None, :, None] < (cv.h - 0.12 * cv.A)[:, None, None])
    win_y = np.take_along_axis(win_rows, index[:, None, :], axis=2)  # (n, S, S)
    cv.paint(wall & win_x[:, None, :] & win_y, "building", window)


def _draw_awning(cv: _Canvas, present: np.ndarray) -> None:
    """A striped shop awning on a facade, 0.18-0.3 A above the ground line."""
    first = cv.new_slot(cv.colour([(0.80, 0.15, 0.15), (0.15, 0.50, 0.25), (0.15, 0.30, 0.70)]))
    second = cv.new_slot(cv.colour([(0.93, 0.91, 0.86)], 0.03))
    bottom = cv.h - cv.u(0.18, 0.22) * cv.A
    top = bottom - cv.px(cv.u(0.06, 0.09) * cv.scale * cv.A)
    width = cv.u(0.1, 0.2) * cv.scale * cv.size
    x0 = cv.u(0, 1) * (cv.size - width)
    box = cv.rect(top, bottom, x0, x0 + width, present)
    stripes = cv.periodic(x0, cv.u(0.025, 0.035) * cv.size, (0.0, 0.5))
    cv.paint(box, "awning", second)
    cv.paint(box & stripes[:, None, :], "awning", first)


def _draw_sidewalk(cv: _Canvas, present: np.ndarray) -> None:
    """A pale band along the bottom of the buildings with a darker kerb."""
    slab = cv.new_slot(cv.colour([(0.64, 0.62, 0.58), (0.70, 0.66, 0.60)], 0.03))
    kerb = cv.new_slot(cv.colour([(0.48, 0.47, 0.45)], 0.03))
    bottom = cv.h + cv.u(0.05, 0.1) * cv.B
    cv.paint(cv.rows(cv.h, bottom, present), "sidewalk", slab)
    cv.paint(cv.rows(bottom - cv.px(0.012 * cv.size), bottom, present), "sidewalk", kerb)


def _ground_patch(cv: _Canvas, present: np.ndarray, name: str, base, dark, light) -> None:
    """A textured half-ellipse of ground resting on the bottom edge, 0.44-0.7 S wide."""
    slots = [cv.new_slot(cv.colour([c], 0.04)) for c in (base, dark, light)]
    rx = cv.u(0.22, 0.35) * cv.size  # wider than any car (<= 0.44 S), so never hidden
    ry = cv.u(0.25, 0.42) * cv.scale * cv.B
    cx = cv.u(0.25, 0.75) * cv.size
    patch = cv.ellipse(np.full(cv.n, cv.size, np.float32), cx, ry, rx, present)
    patch &= cv.rows(cv.h, np.full(cv.n, cv.size))
    cv.paint(patch, name, slots[0])
    cv.paint(patch & (cv.texture < 70), name, slots[1])
    cv.paint(patch & (cv.texture >= 205), name, slots[2])


def _draw_earth(cv: _Canvas, present: np.ndarray) -> None:
    """Brown, speckled bare earth beside the road."""
    _ground_patch(cv, present, "earth", (0.50, 0.37, 0.22), (0.36, 0.26, 0.15), (0.63, 0.50, 0.33))


def _draw_grass(cv: _Canvas, present: np.ndarray) -> None:
    """A green, speckled verge between the buildings and the road (h + 0.05-0.27 B).

    At object_scale 1 it ends above every car top (>= h + 0.3 B) and above any earth patch
    (>= h + 0.58 B); the balanced cities' 1.3 can reach h + 0.32 B, where a car may hide a sliver.
    """
    slots = [cv.new_slot(cv.colour([c], 0.04))
             for c in ((0.33, 0.58, 0.22), (0.20, 0.42, 0.14), (0.45, 0.70, 0.30))]
    top = cv.h + cv.u(0.05, 0.12) * cv.B
    bottom = top + cv.px(cv.u(0.08, 0.15) * cv.scale * cv.B)
    x0 = cv.u(-0.1, 0.6) * cv.size
    verge = cv.rect(top, bottom, x0, x0 + cv.u(0.35, 0.6) * cv.scale * cv.size, present)
    cv.paint(verge, "grass", slots[0])
    cv.paint(verge & (cv.texture < 70), "grass", slots[1])
    cv.paint(verge & (cv.texture >= 205), "grass", slots[2])


def _draw_fence(cv: _Canvas, present: np.ndarray) -> None:
    """A horizontal band of vertical slats with two rails, standing on the ground line."""
    slot = cv.new_slot(cv.colour([(0.56, 0.39, 0.23), (0.88, 0.87, 0.82), (0.22, 0.36, 0.26)]))
    bottom = cv.h + cv.u(0.0, 0.03) * cv.B
    top = bottom - cv.px(cv.u(0.1, 0.18) * cv.scale * cv.A)
    x0 = cv.u(-0.1, 0.6) * cv.size
    x1 = x0 + cv.u(0.4, 0.7) * cv.scale * cv.size
    slats = cv.periodic(x0, cv.u(0.025, 0.04) * cv.size, (0.0, 0.55))
    band = cv.rect(top, bottom, x0, x1, present)
    height = bottom - top
    thick = cv.px(0.12 * height)
    rails = cv.rows(top + 0.2 * height, top + 0.2 * height + thick) | cv.rows(
        top + 0.65 * height, top + 0.65 * height + thick)
    cv.paint(band & (slats[:, None, :] | rails), "fence", slot)


_MAX_TREES = 3


def _draw_tree(cv: _Canvas, present: np.ndarray) -> None:
    """One to three trees on the sidewalk line: a brown trunk and a speckled round crown.

    Trunk 0.3-0.38 A, crown radius 0.11-0.16 A: crowns end above any fence, tops stay below 0.3 A.
    """
    trunk_slot = cv.new_slot(cv.colour([(0.36, 0.25, 0.15)], 0.03))
    leaf_slot = cv.new_slot(cv.colour([(0.16, 0.38, 0.15), (0.20, 0.34, 0.12)], 0.03))
    shade_slot = cv.new_slot(cv.colour([(0.10, 0.25, 0.10)], 0.02))
    count = cv.rng.integers(1, _MAX_TREES + 1, cv.n)
    for k in range(_MAX_TREES):
        here = present & (k < count)
        foot = cv.h + cv.u(0.02, 0.06) * cv.B
        trunk = cv.u(0.3, 0.38) * cv.A
        radius = cv.u(0.11, 0.16) * cv.A
        cx = cv.u(0, 1) * cv.size
        half = cv.px(cv.u(0.015, 0.025) * cv.size) / 2
        cv.paint(cv.rect(foot - trunk, foot, cx - half, cx + half, here), "tree", trunk_slot)
        crown = cv.ellipse(foot - trunk - 0.9 * radius, cx, radius, radius * cv.u(0.85, 1.1), here)
        cv.paint(crown, "tree", leaf_slot)
        cv.paint(crown & (cv.texture >= 185), "tree", shade_slot)


def _post(cv: _Canvas, present, name: str, slot, foot, height, cx, width) -> None:
    cv.paint(cv.rect(foot - height, foot, cx - width / 2, cx + width / 2, present), name, slot)


def _draw_pole(cv: _Canvas, present: np.ndarray) -> None:
    """A thin grey pole, 0.5-0.8 A tall."""
    slot = cv.new_slot(cv.colour([(0.45, 0.45, 0.47), (0.25, 0.27, 0.28)], 0.03))
    _post(cv, present, "pole", slot, cv.h + cv.u(0.02, 0.08) * cv.B, cv.u(0.5, 0.8) * cv.A,
          cv.u(0.02, 0.98) * cv.size, cv.px(0.012 * cv.size))


def _draw_streetlight(cv: _Canvas, present: np.ndarray) -> None:
    """A lamp post with an arm and a lamp head that glows at night."""
    metal = cv.new_slot(cv.colour([(0.30, 0.32, 0.34)], 0.03))
    lamp = cv.new_slot(np.where(cv.night[:, None], np.float32([1.0, 0.92, 0.62]),
                                np.float32([0.82, 0.82, 0.78])), emissive=cv.night)
    foot = cv.h + cv.u(0.02, 0.08) * cv.B
    height = cv.u(0.5, 0.75) * cv.A
    cx = cv.u(0.1, 0.9) * cv.size
    width = cv.px(0.012 * cv.size)
    _post(cv, present, "streetlight", metal, foot, height, cx, width)
    reach = np.where(cv.rng.random(cv.n) < 0.5, -1.0, 1.0) * cv.u(0.05, 0.08) * cv.size
    x_a, x_b = np.minimum(cx, cx + reach), np.maximum(cx, cx + reach)
    top = foot - height
    cv.paint(cv.rect(top, top + width, x_a, x_b, present), "streetlight", metal)
    lamp_w, lamp_h = cv.px(0.035 * cv.size), cv.px(0.02 * cv.size)
    end = cx + reach
    cv.paint(cv.rect(top, top + lamp_h, end - lamp_w / 2, end + lamp_w / 2, present),
             "streetlight", lamp)


_MAX_BLOBS = 4


def _draw_plant(cv: _Canvas, present: np.ndarray) -> None:
    """A bush: two to four yellow-green, leaf-speckled blobs low on the ground line."""
    leaf = cv.new_slot(cv.colour([(0.42, 0.62, 0.18), (0.36, 0.58, 0.20)], 0.04))
    light = cv.new_slot(cv.colour([(0.58, 0.78, 0.28)], 0.03))
    dark = cv.new_slot(cv.colour([(0.24, 0.42, 0.10)], 0.03))
    cx = cv.u(0.05, 0.95) * cv.size
    cy = cv.h + cv.u(-0.01, 0.05) * cv.B
    count = cv.rng.integers(2, _MAX_BLOBS + 1, cv.n)
    bush = np.zeros((cv.n, cv.size, cv.size), bool)
    for k in range(_MAX_BLOBS):
        rx = cv.u(0.035, 0.06) * cv.scale * cv.size
        blob = cv.ellipse(cy + cv.u(-0.015, 0.015) * cv.size, cx + cv.u(-0.07, 0.07) * cv.size,
                          rx * cv.u(0.7, 0.9), rx, present & (k < count))
        bush |= blob
    cv.paint(bush, "plant", leaf)
    cv.paint(bush & (cv.texture >= 60) & (cv.texture < 110), "plant", light)
    cv.paint(bush & (cv.texture < 35), "plant", dark)


_SIGN_COLOURS = [(0.96, 0.80, 0.10), (0.90, 0.16, 0.10), (0.10, 0.36, 0.86), (0.10, 0.62, 0.30),
                 (0.96, 0.96, 0.96)]


def _draw_signboard(cv: _Canvas, present: np.ndarray) -> None:
    """A small bright board with two lines of "text" on a post; glows at night. All signboard."""
    post = cv.new_slot(cv.colour([(0.30, 0.30, 0.32)], 0.03))
    board_rgb = cv.colour(_SIGN_COLOURS, 0.03)
    board = cv.new_slot(board_rgb, emissive=cv.night)
    text = cv.new_slot(np.where(board_rgb.mean(axis=1, keepdims=True) > 0.5, 0.1, 0.95),
                       emissive=cv.night)
    foot = cv.h + cv.u(0.03, 0.1) * cv.B
    post_h = cv.u(0.25, 0.4) * cv.A
    cx = cv.u(0.06, 0.94) * cv.size
    _post(cv, present, "signboard", post, foot, post_h, cx, cv.px(0.012 * cv.size))
    width = cv.px(cv.u(0.08, 0.13) * cv.scale * cv.size)
    height = cv.px(cv.u(0.12, 0.2) * cv.scale * cv.A)
    x0 = cx - width * cv.u(0.2, 0.8)
    bottom = foot - post_h
    cv.paint(cv.rect(bottom - height, bottom, x0, x0 + width, present), "signboard", board)
    thick = cv.px(0.15 * height)
    lines = cv.rows(bottom - 0.75 * height, bottom - 0.75 * height + thick) | cv.rows(
        bottom - 0.4 * height, bottom - 0.4 * height + thick)
    cv.paint(lines & cv.cols(x0 + 0.15 * width, x0 + 0.85 * width) & present[:, None, None],
             "signboard", text)


def _draw_person(cv: _Canvas, present: np.ndarray) -> None:
    """A pedestrian on the sidewalk: legs, shirt and head."""
    skin = cv.new_slot(cv.colour([(0.90, 0.72, 0.58), (0.62, 0.45, 0.32), (0.40, 0.28, 0.20)]))
    shirt = cv.new_slot(cv.colour([(0.8, 0.2, 0.2), (0.2, 0.4, 0.8), (0.9, 0.9, 0.9),
                                   (0.2, 0.6, 0.3), (0.9, 0.7, 0.1)], 0.05))
    legs = cv.new_slot(cv.colour([(0.12, 0.14, 0.25), (0.10, 0.10, 0.10)], 0.03))
    foot = cv.h + cv.u(0.02, 0.1) * cv.B
    height = cv.u(0.28, 0.38) * cv.A
    cx = cv.u(0.03, 0.97) * cv.size
    leg_w, body_w = cv.px(0.22 * height), cv.px(0.32 * height)
    cv.paint(cv.rect(foot - 0.45 * height, foot, cx - leg_w / 2, cx + leg_w / 2, present),
             "person", legs)
    cv.paint(cv.rect(foot - 0.8 * height, foot - 0.45 * height, cx - body_w / 2, cx + body_w / 2,
                     present), "person", shirt)
    cv.paint(cv.ellipse(foot - 0.9 * height, cx, 0.1 * height, 0.09 * height, present),
             "person", skin)


_CAR_COLOURS = [(0.75, 0.12, 0.12), (0.15, 0.25, 0.65), (0.92, 0.92, 0.92), (0.08, 0.08, 0.09),
                (0.66, 0.68, 0.70), (0.90, 0.75, 0.15)]


def _draw_car(cv: _Canvas, present: np.ndarray) -> None:
    """A car on the road, in perspective: its size grows with its distance below the horizon.

    Its top stays below h + 0.3 B, so it never hides fences, bushes or signboard posts' bases.
    """
    paint = cv.new_slot(cv.colour(_CAR_COLOURS, 0.04))
    glass = cv.new_slot(cv.colour([(0.16, 0.20, 0.26)], 0.03))
    tyre = cv.new_slot(cv.colour([(0.06, 0.06, 0.06)], 0.02))
    bottom = cv.h + cv.u(0.45, 1.0) * cv.B
    height = cv.px(cv.u(0.25, 0.33) * (bottom - cv.h))
    width = height * cv.u(1.8, 2.3)
    x0 = cv.u(0, 1) * (cv.size - width)
    x = lambda f: x0 + f * width  # noqa: E731
    y = lambda f: bottom - f * height  # noqa: E731
    cv.paint(cv.rect(y(0.65), y(0.15), x(0.0), x(1.0), present), "car", paint)
    cv.paint(cv.rect(y(1.0), y(0.6), x(0.2), x(0.8), present), "car", paint)
    window = cv.rect(y(0.92), y(0.66), x(0.26), x(0.74), present)
    window &= ~cv.cols(x(0.48), x(0.52))
    cv.paint(window, "car", glass)
    for f in (0.2, 0.8):
        cv.paint(cv.ellipse(y(0.18), x(f), 0.18 * height, 0.18 * height, present), "car", tyre)


DRAWERS: dict[str, Callable[[_Canvas, np.ndarray], None]] = {
    "sky": _draw_sky, "road": _draw_road, "mountain": _draw_mountain,
    "skyscraper": _draw_skyscraper, "building": _draw_building, "awning": _draw_awning,
    "sidewalk": _draw_sidewalk, "earth": _draw_earth, "grass": _draw_grass, "fence": _draw_fence,
    "tree": _draw_tree, "pole": _draw_pole, "streetlight": _draw_streetlight, "plant": _draw_plant,
    "signboard": _draw_signboard, "person": _draw_person, "car": _draw_car,
}


# --------------------------------------------------------------------------------------------
# Scenes, chunks and the public generator.
# --------------------------------------------------------------------------------------------

PresenceFn = Callable[[np.random.Generator, int], dict[str, np.ndarray]]
#: Changes the drawn presence of a chunk before anything is painted (e.g. removes an object to
#: render a twin); the random draws are unchanged, so everything else is drawn identically.
PresenceEdit = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def _render_chunk(
    rng: np.random.Generator,
    n: int,
    size: int,
    config: CitiesConfig,
    presence: PresenceFn,
    drawers: Mapping[str, Callable[[_Canvas, np.ndarray], None]] | None = None,
    edit: PresenceEdit | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes: nuisances, then presence, then every layer back to front.

    ``edit`` (if given) receives the drawn presence (object name -> ``(n,)`` bool) and returns the
    presence to paint; every random draw happens as without it.

    Returns:
        ``(images (n, S, S, 3) uint8, label_maps (n, S, S) uint8)``.
    """
    night_p, dusk_p = config.night_probability, config.dusk_probability
    tod = rng.choice(3, size=n, p=[1.0 - dusk_p - night_p, dusk_p, night_p])
    horizon = rng.uniform(*config.horizon, n) * size
    brightness = rng.uniform(*config.brightness, n).astype(np.float32)
    cast = (1.0 + rng.uniform(-config.colour_cast, config.colour_cast, (n, 3))).astype(np.float32)
    flip = rng.random(n) < config.flip_probability
    cv = _Canvas(rng, n, size, horizon, tod)
    present = presence(rng, n)
    if edit is not None:
        present = edit(present)
    all_drawers = dict(DRAWERS, **(drawers or {}))
    for name in LAYER_ORDER:
        if name in present:
            cv.scale = float(config.object_scale.get(name, 1.0))
            all_drawers[name](cv, present[name])
    images = cv.render(brightness, cast, config.noise)
    labels = cv.label
    images[flip] = images[flip][:, :, ::-1]
    labels[flip] = labels[flip][:, :, ::-1]
    return images, labels


def _shared_presence(rng: np.random.Generator, n: int, shared: Mapping[str, float]):
    """Independent Bernoulli presence of every shared object, in layer order."""
    return {name: rng.random(n) < shared[name] for name in LAYER_ORDER if name in shared}


def _planted_presence(rng: np.random.Generator, n: int, planted: Mapping[str, float],
                      ensure: bool) -> dict[str, np.ndarray]:
    """Independent Bernoulli presence per planted object; if ``ensure``, images with none get
    one chosen uniformly.

    The objects take the random columns in sorted name order, so the scenes do not depend on the
    order of ``planted`` (a model card's JSON, served with sorted keys, loses that order).
    """
    names = sorted(planted)
    if not names:
        return {}
    probs = np.array([planted[name] for name in names])
    present = rng.random((n, len(names))) < probs[None, :]
    fallback = rng.integers(0, len(names), n)
    if ensure:
        none = ~present.any(axis=1)
        present[np.flatnonzero(none), fallback[none]] = True
    return {name: present[:, j] for j, name in enumerate(names)}


def _city_presence(city: CityStyle, config: CitiesConfig) -> PresenceFn:
    def presence(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        shared = _shared_presence(rng, n, config.shared)
        shared.update(_planted_presence(rng, n, city.planted, config.ensure_discriminative))
        return shared

    return presence


def check_generator_args(n_per_class: int, image_size: int, seed: int) -> None:
    """Validate the common arguments of the generators (ValueError naming the value)."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or (
            n_per_class < 1):
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or (
            image_size < MIN_IMAGE_SIZE):
        raise ValueError(
            f"image_size must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def generate_class(
    domain: int,
    seed: int,
    class_index: int,
    n: int,
    size: int,
    config: CitiesConfig,
    presence: PresenceFn,
    drawers: Mapping[str, Callable[[_Canvas, np.ndarray], None]] | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` scenes of one class in whole chunks of :data:`CHUNK` (prefix-stable).

    Args:
        out: Optional ``(images, label_maps)`` arrays of shapes ``(n, S, S, 3)`` and
            ``(n, S, S)`` to fill in place.

    Returns:
        ``(images (n, S, S, 3) uint8, label_maps (n, S, S) uint8)``.
    """
    if out is None:
        out = (np.empty((n, size, size, 3), np.uint8), np.empty((n, size, size), np.uint8))
    images, labels = out
    for chunk, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([int(seed), domain, class_index, chunk])
        imgs, maps = _render_chunk(rng, CHUNK, size, config, presence, drawers)
        stop = min(n, start + CHUNK)
        images[start:stop] = imgs[: stop - start]
        labels[start:stop] = maps[: stop - start]
    return images, labels


def _possible_objects(config: CitiesConfig) -> set[str]:
    """Names that can occur in a label map under ``config``."""
    names = {name for name, p in config.shared.items() if p > 0}
    for city in config.cities:
        names |= {name for name, p in city.planted.items()
                  if p > 0 or config.ensure_discriminative}
    return names


def make_cities(
    n_per_class: int, image_size: int = 64, seed: int = 0, config: CitiesConfig | None = None
) -> ImageSet:
    """Generate the synthetic cities: ``n_per_class`` street scenes per city.

    Args:
        n_per_class: Images per city (>= 1).
        image_size: Side of the square images (>= :data:`MIN_IMAGE_SIZE`).
        seed: Non-negative seed; the same seed gives byte-identical arrays.
        config: What to draw; defaults to :class:`CitiesConfig` ().

    Returns:
        An :class:`ImageSet` with ``images (N, S, S, 3)`` uint8, ``labels (N,)`` (class-major
        order, ``N = n_per_class * len(config.cities)``), ``label_maps (N, S, S)`` with an ADE20K
        index on every pixel, ``object_names`` for the indices that can occur,
        ``discriminative`` = city -> planted object names, ids ``"<city>/<i:06d>"``.

    Raises:
        ValueError: On a bad count, size or seed (the message names the value).
    """
    config = CitiesConfig() if config is None else config
    check_generator_args(n_per_class, image_size, seed)
    n, size, names = int(n_per_class), int(image_size), config.class_names
    images = np.empty((n * len(names), size, size, 3), np.uint8)
    maps = np.empty((n * len(names), size, size), np.uint8)
    for k, city in enumerate(config.cities):
        rows = slice(k * n, (k + 1) * n)
        generate_class(0, seed, k, n, size, config, _city_presence(city, config),
                       out=(images[rows], maps[rows]))
    return ImageSet(
        images=images,
        labels=np.repeat(np.arange(len(names), dtype=np.int64), n),
        class_names=names,
        label_maps=maps,
        object_names={NAME_TO_INDEX[n]: n for n in sorted(_possible_objects(config),
                                                           key=NAME_TO_INDEX.get)},
        discriminative={city.name: list(city.planted) for city in config.cities},
        ids=[f"{name}/{i:06d}" for name in names for i in range(n_per_class)],
    )
