"""Causal agreement of explanations with twins (SPEC §5 "Twins and causal importance").

Pure functions, no service. For an image ``I`` of true class ``y`` holding planted objects ``p``,
its twins ``I \\ p`` are the same scene without ``p`` (:func:`models.datasets.twins.render_twins`).
The causal importance of ``p`` for a model is ``Δ_p = p_y(I) − p_y(I \\ p)``: how much of the
model's belief in ``y`` that object carries. A method's *mass* on ``p`` is the sum of its map over
the pixels of ``p`` in ``I``. Per image, over the objects present:

* Spearman's ρ between the masses and the ``Δ`` (average ranks for ties; undefined with fewer than
  two objects, or when either is constant);
* top-1 agreement: the object with the most mass (a unique maximum) has the largest ``Δ`` (ties
  in ``Δ`` allowed); a tie for the most mass is a miss; undefined with fewer than two objects.
  Its chance level for a map that picks an object at random is ``1 / (objects present)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "causal_importance",
    "object_mass",
    "spearman",
    "Agreement",
    "causal_agreement",
    "summarise_agreement",
]


def causal_importance(p_scene: np.ndarray, p_without: np.ndarray) -> np.ndarray:
    """``Δ (N, P) = p_y(I) − p_y(I without p)``.

    Args:
        p_scene: ``(N,)`` probability of the true class on each scene.
        p_without: ``(N, P)`` the same on the scene without object ``p``.
    """
    p_scene = np.asarray(p_scene, np.float64)
    p_without = np.asarray(p_without, np.float64)
    if p_scene.ndim != 1 or p_without.ndim != 2 or p_without.shape[0] != p_scene.shape[0]:
        raise ValueError(f"p_scene must be (N,) and p_without (N, P); got {p_scene.shape} and {p_without.shape}")
    return p_scene[:, None] - p_without


def object_mass(heatmaps: np.ndarray, label_maps: np.ndarray, object_indices: Sequence[int]) -> np.ndarray:
    """``(N, P)`` sum of each map over the pixels of each object.

    Args:
        heatmaps: ``(N, H, W)`` maps at the label maps' size.
        label_maps: ``(N, H, W)`` integer object indices.
        object_indices: The ``P`` object indices.
    """
    heat = np.asarray(heatmaps, np.float64)
    maps = np.asarray(label_maps)
    if heat.shape != maps.shape or heat.ndim != 3:
        raise ValueError(f"heatmaps {heat.shape} and label_maps {maps.shape} must both be (N, H, W)")
    return np.stack([np.where(maps == int(p), heat, 0.0).sum(axis=(1, 2)) for p in object_indices], axis=1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of a short 1-D array."""
    less = (x[None, :] < x[:, None]).sum(axis=1)
    equal = (x[None, :] == x[:, None]).sum(axis=1)
    return less + (equal + 1) / 2.0


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation with average ranks for ties; NaN if ``len < 2`` or constant."""
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 2:
        return float("nan")
    rx, ry = _ranks(x) - (x.size + 1) / 2.0, _ranks(y) - (y.size + 1) / 2.0
    den = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


@dataclass
class Agreement:
    """Per-image agreement of one method's map with the causal importance.

    Attributes:
        rho: ``(N,)`` Spearman's ρ over the objects present (NaN where undefined).
        top1: ``(N,)`` 1.0 hit, 0.0 miss, NaN where fewer than two objects are present.
        chance: ``(N,)`` ``1 / objects present`` (NaN where fewer than two).
        count: ``(N,)`` objects present.
    """

    rho: np.ndarray
    top1: np.ndarray
    chance: np.ndarray
    count: np.ndarray


def causal_agreement(mass: np.ndarray, delta: np.ndarray, present: np.ndarray) -> Agreement:
    """Compare masses with causal importances per image, over the objects present.

    Args:
        mass: ``(N, P)`` a method's mass per object (:func:`object_mass`).
        delta: ``(N, P)`` causal importance (:func:`causal_importance`).
        present: ``(N, P)`` bool, object present in the image.
    """
    mass, delta, present = np.asarray(mass, np.float64), np.asarray(delta, np.float64), np.asarray(present, bool)
    if not mass.shape == delta.shape == present.shape or mass.ndim != 2:
        raise ValueError(f"mass {mass.shape}, delta {delta.shape} and present {present.shape} must be equal (N, P)")
    n = mass.shape[0]
    rho, top1, chance = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    count = present.sum(axis=1)
    for i in np.flatnonzero(count >= 2):
        m, d = mass[i, present[i]], delta[i, present[i]]
        rho[i] = spearman(m, d)
        best = np.flatnonzero(m == m.max())
        top1[i] = float(best.size == 1 and d[best[0]] == d.max())
        chance[i] = 1.0 / count[i]
    return Agreement(rho=rho, top1=top1, chance=chance, count=count)


def summarise_agreement(agreement: Agreement) -> dict[str, float]:
    """Means over the images where each is defined: ``rho``, ``top1``, ``chance`` and their counts
    (``images_rho``, ``images_top1``)."""
    def mean(x: np.ndarray) -> float:
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else float("nan")

    return {
        "rho": mean(agreement.rho),
        "top1": mean(agreement.top1),
        "chance": mean(agreement.chance),
        "images_rho": int(np.isfinite(agreement.rho).sum()),
        "images_top1": int(np.isfinite(agreement.top1).sum()),
    }
