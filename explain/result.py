"""One output shape for every method: :class:`Explanation`, and the one adapter that builds it.

The methods speak two dialects, both kept because clients depend on them:

* single-pass methods are SavedModel signatures, read by any TF Serving client; their outputs
  ``heatmap`` (at the target layer, ``(N, h, w)``) and ``heatmap_upsampled`` (at input size)
  are part of the exported interface and are not renamed;
* iterative methods return ``heatmap`` at input size and, where the map has a lower
  resolution of its own (the CAM family), ``heatmap_lowres``.

:func:`as_explanation` maps either onto one structure — ``heatmap`` always at input size,
``heatmap_lowres`` where one exists, ``raw``, ``probabilities``, ``logits``, ``class_index``, the
resolved parameters and every other output as ``extras`` — by the output names alone, with no
case per method, so the service converts every method the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["Explanation", "as_explanation", "STANDARD_OUTPUTS"]

#: Outputs with a field of their own in :class:`Explanation` (all others are ``extras``).
#: ``logits`` has a field and also stays in ``extras``, where clients have always found it.
STANDARD_OUTPUTS = frozenset({"heatmap", "heatmap_upsampled", "heatmap_lowres", "raw", "probabilities", "class_index"})


@dataclass
class Explanation:
    """An explanation of ``N`` images, the same for every method.

    Attributes:
        heatmap: ``(N, H, W)`` float32 at input size, normalised per image (high = important).
        heatmap_lowres: ``(N, h, w)`` float32 at the method's own resolution, or ``None``.
        raw: The map before normalisation (at the method's resolution), or ``None``.
        probabilities: ``(N, C)`` float32 of the unmodified images, or ``None``.
        logits: ``(N, C)`` float32, or ``None``.
        class_index: ``(N,)`` int32, the explained class of each image, or ``None``.
        params: The resolved parameters.
        extras: Every other output of the method, by name.
    """

    heatmap: np.ndarray
    heatmap_lowres: np.ndarray | None = None
    raw: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    logits: np.ndarray | None = None
    class_index: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def _float32(outputs: Mapping[str, Any], name: str) -> np.ndarray | None:
    return np.asarray(outputs[name], np.float32) if name in outputs else None


def as_explanation(outputs: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> Explanation:
    """The :class:`Explanation` of a method's outputs, in either dialect (see the module docstring).

    Args:
        outputs: Output name → array (numpy or tensors), as a signature or an iterative method
            returns them; must hold ``heatmap``.
        params: The resolved parameters.

    Raises:
        ValueError: no ``heatmap`` output (the message lists the outputs given).
    """
    if "heatmap" not in outputs:
        raise ValueError(f"a method's outputs must include 'heatmap'; got {sorted(outputs)}")
    if "heatmap_upsampled" in outputs:  # a signature: heatmap at the target layer, upsampled at input size
        heatmap = np.asarray(outputs["heatmap_upsampled"], np.float32)
        low = np.asarray(outputs["heatmap"], np.float32)
        lowres = low if low.shape != heatmap.shape else None
    else:
        heatmap = np.asarray(outputs["heatmap"], np.float32)
        lowres = _float32(outputs, "heatmap_lowres")
    classes = np.asarray(outputs["class_index"], np.int32) if "class_index" in outputs else None
    extras = {k: np.asarray(v) for k, v in outputs.items() if k not in STANDARD_OUTPUTS and not isinstance(v, dict)}
    return Explanation(
        heatmap=heatmap,
        heatmap_lowres=lowres,
        raw=_float32(outputs, "raw"),
        probabilities=_float32(outputs, "probabilities"),
        logits=_float32(outputs, "logits"),
        class_index=classes,
        params=dict(params or {}),
        extras=extras,
    )
