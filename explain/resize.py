"""Upsampling, per-example normalisation and grey-scale dilation of heat maps, in TensorFlow.

Every explanation method finishes the same way (SPEC.md §2, seeds 000/001): the raw map ``L``
``(N, h, w)`` is normalised per example,

    mask_norm = (L − min L) / (max L − min L + 1e-7),

and the normalised map is resized bilinearly to the input size ``(H, W)``.

Resize convention
-----------------
:func:`upsample` uses ``tf.image.resize(method="bilinear", antialias=False)``, i.e. **half-pixel
centres**: output pixel ``o`` samples the input at ``(o + 0.5)·h/H − 0.5`` (clamped at the
border), the convention of OpenCV, PIL and PyTorch ``align_corners=False``. tf-keras-vis uses
``scipy.ndimage.zoom(order=1)``, which is **corner-aligned** (``o·(h−1)/(H−1)``); pass
``align_corners=True`` to reproduce it (Score-CAM does, for its input masks, so that it matches
tf-keras-vis). The two conventions differ by up to half a target-layer cell, which is why
comparisons with tf-keras-vis are made at ``h×w``.

All functions are graph-compatible (no numpy, no Python branching on tensor values).
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

__all__ = ["EPSILON", "normalize_tf", "upsample", "dilate_tf", "heatmap_outputs"]

#: The ``1e-7`` of ``(L − min)/(max − min + 1e-7)`` (SPEC §2; also ``keras.backend.epsilon()``).
EPSILON = 1e-7


def normalize_tf(maps: tf.Tensor, eps: float = EPSILON) -> tf.Tensor:
    """Per-example min–max normalisation ``(L − min L) / (max L − min L + eps)``.

    Args:
        maps: ``(N, ...)`` float tensor; min and max are taken over all axes but the first.
        eps: The constant in the denominator (``1e-7``), so a constant map becomes all zeros.

    Returns:
        A float32 tensor of the shape of ``maps`` with values in ``[0, 1)``.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    axes = tf.range(1, tf.rank(maps))
    lo = tf.reduce_min(maps, axis=axes, keepdims=True)
    hi = tf.reduce_max(maps, axis=axes, keepdims=True)
    return (maps - lo) / (hi - lo + eps)


def upsample(
    maps: tf.Tensor,
    size: Sequence[int] | tf.Tensor,
    align_corners: bool = False,
    clip: bool = False,
) -> tf.Tensor:
    """Bilinear resize of ``(N, h, w)`` or ``(N, h, w, C)`` maps to ``size = (H, W)``.

    Args:
        maps: float tensor ``(N, h, w)`` (a channel axis is added and removed) or ``(N, h, w, C)``.
        size: Output ``(H, W)``.
        align_corners: ``False`` (default): half-pixel centres (``tf.image.resize``).
            ``True``: corner-aligned, as ``scipy.ndimage.zoom(order=1)`` in tf-keras-vis.
        clip: Clip the result to ``[0, 1]`` (for normalised maps; bilinear interpolation of values
            in ``[0, 1]`` stays in ``[0, 1]`` up to round-off).

    Returns:
        float32 ``(N, H, W)`` or ``(N, H, W, C)``.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    squeeze = maps.shape.rank == 3
    x = maps[..., tf.newaxis] if squeeze else maps
    if align_corners:
        out = tf.raw_ops.ResizeBilinear(images=x, size=tf.cast(size, tf.int32), align_corners=True,
                                        half_pixel_centers=False)
    else:
        out = tf.image.resize(x, size, method="bilinear", antialias=False)
    out = tf.cast(out, tf.float32)
    if clip:
        out = tf.clip_by_value(out, 0.0, 1.0)
    return out[..., 0] if squeeze else out


def dilate_tf(maps: tf.Tensor, times: int | tf.Tensor) -> tf.Tensor:
    """Grey-scale dilation of ``(N, H, W)`` maps with a 3×3 kernel, repeated ``times`` times.

    One dilation is the 3×3 max filter ``tf.nn.max_pool2d(ksize=3, strides=1, padding="SAME")``;
    at the border only the pixels inside the image count (as OpenCV ``cv2.dilate``). ``times``
    may be a tensor (a ``tf.while_loop`` runs it), so one graph serves 0, 2 and 5 dilations.
    An isolated peak becomes a ``(2·times + 1)``-square plateau.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    times = tf.convert_to_tensor(times, tf.int32)
    x = maps[..., tf.newaxis]

    def body(i, m):
        return i + 1, tf.nn.max_pool2d(m, ksize=3, strides=1, padding="SAME")

    _, x = tf.while_loop(lambda i, m: i < times, body, (tf.constant(0, tf.int32), x),
                         shape_invariants=(tf.TensorShape([]), x.shape))
    return x[..., 0]


def heatmap_outputs(raw: tf.Tensor, size: Sequence[int]) -> dict[str, tf.Tensor]:
    """The common outputs of a single-pass method from its raw map ``(N, h, w)``.

    Returns:
        ``raw``; ``heatmap`` = :func:`normalize_tf` of ``raw``; ``heatmap_upsampled`` = the
        normalised map resized to ``size`` with half-pixel centres, clipped to ``[0, 1]``.
    """
    raw = tf.convert_to_tensor(raw, tf.float32)
    heatmap = normalize_tf(raw)
    return {
        "raw": raw,
        "heatmap": heatmap,
        "heatmap_upsampled": upsample(heatmap, size, clip=True),
    }
