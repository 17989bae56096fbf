"""Input preprocessing: how an image in ``[0, 1]`` becomes what a model expects.

Every method and every exported signature works on images in ``[0, 1]`` (uint8 pixels ÷ 255);
a :class:`Preprocessing` maps them to the model's own input scale as the first step of
:meth:`explain.view.ModelView.run`, so the gradients, occlusions and perturbation masks of every
method see the same pixel space whatever the model expects, and the exported graph takes uint8.

Modes (``p`` = pixel value in 0–255, ``u = p / 255`` in ``[0, 1]``; channels in RGB order):

==========  =====================================================================================
``unit``    ``u`` — the project's own models.
``raw``     ``p`` as float — models that scale inside (a ``Rescaling``/``Normalization`` first
            layer: EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3 of ``keras.applications``).
``tf``      ``p / 127.5 − 1`` in ``[−1, 1]`` — ``preprocess_input(mode="tf")`` (MobileNetV2,
            ResNetV2, Xception, InceptionV3).
``caffe``   BGR order, ``p − (103.939, 116.779, 123.68)`` — ``preprocess_input(mode="caffe")``
            (VGG16/19, ResNet50).
``torch``   ``(u − (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)`` — ``preprocess_input(mode=
            "torch")`` (DenseNet).
``custom``  ``(p − mean) / std`` with a per-channel ``mean`` and ``std`` in pixel units (0–255),
            RGB order, as a ``Normalization`` layer adapted on raw pixels would compute.
==========  =====================================================================================

Every mode is affine per channel with a positive scale, which is why excitation backprop passes
its signal through it unchanged and the iterative methods need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["MODES", "Preprocessing", "resolve_preprocessing", "PreprocessingError"]

#: The accepted modes, in the order they are documented.
MODES: tuple[str, ...] = ("unit", "raw", "tf", "caffe", "torch", "custom")

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


class PreprocessingError(ValueError):
    """A bad preprocessing choice (the message names the value and the accepted ones)."""


@dataclass(frozen=True)
class Preprocessing:
    """A per-channel affine map ``x_model = (u · scale + offset)[..., channel_order]``.

    Attributes:
        mode: One of :data:`MODES`.
        mean: Per-channel mean in pixel units (``custom`` only).
        std: Per-channel standard deviation in pixel units (``custom`` only).
    """

    mode: str = "unit"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    _affine: tuple[tuple[float, ...], tuple[float, ...], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_affine", _affine(self.mode, self.mean, self.std))

    @property
    def scale(self) -> np.ndarray:
        """``(3,)`` multiplier of ``u`` per model channel (after any channel reordering)."""
        return np.asarray(self._affine[0], np.float32)

    @property
    def offset(self) -> np.ndarray:
        """``(3,)`` offset per model channel."""
        return np.asarray(self._affine[1], np.float32)

    @property
    def bgr(self) -> bool:
        """Whether the model takes its channels in BGR order."""
        return self._affine[2]

    @property
    def is_identity(self) -> bool:
        return self.mode == "unit"

    def apply(self, images: Any) -> Any:
        """``(N, H, W, 3)`` float32 in ``[0, 1]`` → the model's input (a TensorFlow op)."""
        import tensorflow as tf

        if self.is_identity:
            return images
        x = images[..., ::-1] if self.bgr else images
        return x * tf.constant(self.scale) + tf.constant(self.offset)

    def apply_numpy(self, images: np.ndarray) -> np.ndarray:
        """The same as :meth:`apply`, in numpy (for tests and clients)."""
        x = np.asarray(images, np.float32)
        if self.is_identity:
            return x
        x = x[..., ::-1] if self.bgr else x
        return x * self.scale + self.offset

    def to_card(self) -> dict[str, Any]:
        """The model card's ``preprocessing`` entry (mode plus the resolved affine map)."""
        return {
            "mode": self.mode,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "channel_order": "BGR" if self.bgr else "RGB",
            "scale": [float(v) for v in self.scale],
            "offset": [float(v) for v in self.offset],
            "input": "uint8 pixels / 255 in [0, 1]",
        }

    def describe(self) -> str:
        """One line for ``ListModels`` and the CLI, e.g. ``caffe (BGR, ImageNet means subtracted)``."""
        if self.mode == "custom":
            return f"custom (mean {list(self.mean or ())}, std {list(self.std or ())}, pixel units)"
        return {
            "unit": "unit (pixels / 255 in [0, 1])",
            "raw": "raw (0-255 floats; the model scales inside)",
            "tf": "tf (pixels / 127.5 - 1 in [-1, 1])",
            "caffe": "caffe (BGR, ImageNet means subtracted)",
            "torch": "torch ([0, 1] minus ImageNet mean, divided by ImageNet std)",
        }[self.mode]


def _triple(name: str, value: Any, positive: bool = False) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise PreprocessingError(f"{name} {value!r} must be three numbers (one per RGB channel)") from None
    if len(values) != 3 or not all(np.isfinite(values)):
        raise PreprocessingError(f"{name} {list(values)!r} must be three finite numbers (one per RGB channel)")
    if positive and min(values) <= 0:
        raise PreprocessingError(f"{name} {list(values)!r} must be positive in every channel")
    return values  # type: ignore[return-value]


def _affine(mode: str, mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    if mode not in MODES:
        raise PreprocessingError(f"preprocessing {mode!r} is not supported; accepted: {list(MODES)}")
    if mode != "custom" and (mean is not None or std is not None):
        raise PreprocessingError(f"mean and std go with preprocessing 'custom', not {mode!r}")
    if mode == "unit":
        return (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), False
    if mode == "raw":
        return (255.0,) * 3, (0.0,) * 3, False
    if mode == "tf":
        return (2.0,) * 3, (-1.0,) * 3, False
    if mode == "caffe":  # after reversing to BGR: 255·u − mean_BGR
        return (255.0,) * 3, tuple(-m for m in _CAFFE_MEAN_BGR), True
    if mode == "torch":
        return tuple(1.0 / s for s in _TORCH_STD), tuple(-m / s for m, s in zip(_TORCH_MEAN, _TORCH_STD)), False
    if mean is None or std is None:
        raise PreprocessingError("preprocessing 'custom' needs both mean and std (three values each, pixel units)")
    m, s = _triple("mean", mean), _triple("std", std, positive=True)
    return tuple(255.0 / v for v in s), tuple(-a / b for a, b in zip(m, s)), False


def resolve_preprocessing(spec: "str | Mapping[str, Any] | Preprocessing | None") -> Preprocessing:
    """A :class:`Preprocessing` from a mode name, a card/JSON mapping or an instance.

    Args:
        spec: ``"unit"`` … ``"torch"``; ``{"mean": [...], "std": [...]}`` (``custom``) or a card
            entry ``{"mode": ..., "mean": ..., "std": ...}``; ``None`` = ``unit``.

    Raises:
        PreprocessingError: an unknown mode or a malformed mean/std (naming the accepted values).
    """
    if spec is None:
        return Preprocessing("unit")
    if isinstance(spec, Preprocessing):
        return spec
    if isinstance(spec, str):
        return Preprocessing(spec)
    if isinstance(spec, Mapping):
        mode = spec.get("mode", "custom")
        mean, std = spec.get("mean"), spec.get("std")
        return Preprocessing(
            str(mode),
            _triple("mean", mean) if mean is not None else None,
            _triple("std", std) if std is not None else None,
        )
    raise PreprocessingError(
        f"preprocessing {spec!r} is not supported; accepted: one of {list(MODES)} or "
        "{'mean': [r, g, b], 'std': [r, g, b]}"
    )
