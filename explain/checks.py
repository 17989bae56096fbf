"""The shared checks of the explanation methods: images, class index, layer, batch size.

Every method, single-pass or iterative, checks its inputs through these functions, so a bad
request gets the same message whichever method it reaches. Each message names the bad value and
the accepted ones, e.g. ``"class_index 3 is out of range for model 'tiny' with 3 classes;
accepted: -1 (predicted) or 0..2"``.

* Images: :func:`check_images` (numpy, for the iterative methods and their backends) and
  :func:`check_image_tensor` (a ``tf.Tensor``, for the single-pass methods; symbolic shapes pass)
  share one layout and dtype check. Both accept ``(N, H, W, 3)`` uint8 (scaled by 1/255) or float
  in ``[0, 1]``.
* Class index: :func:`check_class_index` (``-1`` kept for "the predicted class"),
  :func:`resolve_classes` (``-1`` replaced by the arg-max of the probabilities) and
  :func:`resolve_class_tensor` (the same on a logits tensor, inside or outside a graph).
* Layer: :func:`check_layer` resolves a layer name or path against a model's layer paths.
* :func:`check_batch_size`.

Parameters declared in the registry are checked by :mod:`explain.schema`; these checks cover the
request fields that are not declared parameters (images, ``class_index``, layers).
The older names (:func:`explain.view.check_images`, :func:`explain.cam.check_class_index`,
:func:`explain.iterative.check_batch`, :func:`explain.iterative.resolve_classes`) remain as thin
wrappers over these.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

__all__ = [
    "ExplainError",
    "FLOAT_DTYPES",
    "check_images",
    "check_image_tensor",
    "check_class_index",
    "check_class_range",
    "resolve_classes",
    "resolve_class_tensor",
    "check_layer",
    "check_batch_size",
]

#: Accepted float dtypes of images (uint8 is accepted too, and scaled by 1/255).
FLOAT_DTYPES = ("float16", "float32", "float64")
_ACCEPTED_DTYPES = "uint8, " + ", ".join(FLOAT_DTYPES)


class ExplainError(ValueError):
    """A bad argument to an explanation method (the message names the value and the choices)."""


def _model(model: str | None) -> str:
    return "the model" if model is None else f"model {model!r}"


def _check_layout(shape: Sequence[int | None], dtype: str, input_shape: Sequence[int], name: str,
                  model: str | None) -> None:
    """Rank 4, the model's ``(H, W, C)`` (unknown dimensions pass) and an accepted dtype."""
    if len(shape) != 4:
        raise ExplainError(f"{name} must have rank 4 (N, H, W, 3); got shape {list(shape)}")
    expected = tuple(int(s) for s in input_shape)
    if None not in tuple(shape[1:]) and tuple(shape[1:]) != expected:
        raise ExplainError(
            f"{name} have shape {list(shape)}; {_model(model)} accepts (N, {expected[0]}, {expected[1]}, {expected[2]})"
        )
    if dtype != "uint8" and dtype not in FLOAT_DTYPES:
        raise ExplainError(f"{name} dtype {dtype} is not supported; accepted: {_ACCEPTED_DTYPES}")


def _range_error(name: str, lo: float, hi: float) -> ExplainError:
    return ExplainError(f"float {name} must be finite and in [0, 1]; got values in [{lo}, {hi}]")


def check_images(
    images: Any,
    input_shape: Sequence[int],
    *,
    name: str = "images",
    model: str | None = None,
    allow_single: bool = False,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate an image batch for a model with ``input_shape`` ``(H, W, C)``; numpy float32 out.

    Args:
        images: ``(N, H, W, 3)`` uint8 (scaled by 1/255) or float in ``[0, 1]``.
        input_shape: The model's ``(H, W, C)``.
        name: The field named in messages (``"images"``, ``"query_images"``...).
        model: The model's name, for messages.
        allow_single: Also accept one image ``(H, W, 3)`` (returned as a batch of one).
        allow_empty: Accept ``N = 0``.

    Returns:
        float32 ``(N, H, W, C)`` in ``[0, 1]``.

    Raises:
        ExplainError: wrong rank or shape, unsupported dtype, an empty batch, float values that
            are not finite or outside ``[0, 1]`` (each message names the value and the accepted ones).
    """
    arr = np.asarray(images)
    if allow_single and arr.ndim == 3:
        arr = arr[None]
    _check_layout(arr.shape, arr.dtype.name, input_shape, name, model)
    if arr.shape[0] < 1 and not allow_empty:
        raise ExplainError(f"{name} must hold at least one image; got an empty batch")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32, copy=False)
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
        raise _range_error(name, float(np.min(arr)), float(np.max(arr)))
    return arr


def check_image_tensor(
    images: Any,
    input_shape: Sequence[int],
    *,
    name: str = "images",
    model: str | None = None,
    allow_single: bool = False,
) -> tf.Tensor:
    """:func:`check_images` for a tensor; float32 ``tf.Tensor`` out.

    The same layout, dtype and (when executing eagerly) emptiness checks as :func:`check_images`;
    inside a ``tf.function`` unknown dimensions pass. Float values are not range-checked: the
    single-pass methods are functions of any real input (a test probes a saturated softmax with
    values past 1), while the iterative ones blend in fill values and need ``[0, 1]``.
    """
    t = tf.convert_to_tensor(images)
    if allow_single and t.shape.rank == 3:
        t = t[None]
    if t.shape.rank is None:
        raise ExplainError(f"{name} must have rank 4 (N, H, W, 3); got a tensor of unknown rank")
    _check_layout(tuple(t.shape), t.dtype.name, input_shape, name, model)
    eager = tf.executing_eagerly() and t.shape[0] is not None
    if eager and t.shape[0] < 1:
        raise ExplainError(f"{name} must hold at least one image; got an empty batch")
    if t.dtype == tf.uint8:
        return tf.cast(t, tf.float32) / 255.0
    return tf.cast(t, tf.float32)


def _accepted_classes(num_classes: int | None) -> str:
    if num_classes is None:
        return "-1 (predicted) or a class index >= 0"
    return f"-1 (predicted) or 0..{num_classes - 1}"


def check_class_index(class_index: Any, n: int, num_classes: int | None, model: str | None = None) -> np.ndarray:
    """Validate ``class_index`` for ``n`` images; int64 ``(n,)`` out, ``-1`` = the predicted class.

    Args:
        class_index: ``None`` or ``-1`` (the predicted class), an integer, or integers for each of
            the ``n`` images (or one for all); a tensor is accepted.
        n: The number of images.
        num_classes: The model's number of classes (``None``: unknown, only ``>= -1`` is checked).
        model: The model's name, for messages.

    Raises:
        ExplainError: not integers, a wrong shape or length, or an index out of range (naming the
            value and the accepted ones).
    """
    if class_index is None:
        class_index = -1
    arr = np.asarray(class_index.numpy() if hasattr(class_index, "numpy") else class_index)
    accepted = _accepted_classes(num_classes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ExplainError(
            f"class_index {class_index!r} must be an integer or a sequence of {n} integers (dtype {arr.dtype}); "
            f"accepted: {accepted}"
        )
    if arr.ndim > 1:
        raise ExplainError(f"class_index must be a scalar or have shape ({n},); got shape {arr.shape}")
    arr = arr.reshape(-1)
    if arr.size not in (1, n):
        raise ExplainError(f"class_index has {arr.size} entries for {n} images; accepted: 1 or {n}")
    check_class_range(arr, num_classes, model)
    return np.broadcast_to(arr, (n,)).astype(np.int64)


def check_class_range(values: Any, num_classes: int | None, model: str | None = None) -> None:
    """Every value of the integer array ``values`` must be ``-1`` (predicted) or a class ``0..C-1``.

    Raises:
        ExplainError: the first value out of range, with the model's class count and the accepted range.
    """
    values = np.asarray(values)
    hi = num_classes if num_classes is not None else np.iinfo(np.int64).max
    bad = values[(values < -1) | (values >= hi)]
    if bad.size:
        classes = "" if num_classes is None else f" with {num_classes} classes"
        raise ExplainError(f"class_index {int(bad.flat[0])} is out of range for {_model(model)}{classes}; "
                           f"accepted: {_accepted_classes(num_classes)}")


def resolve_classes(class_index: Any, probabilities: np.ndarray, model: str | None = None) -> np.ndarray:
    """The class of each image, int64 ``(N,)``: :func:`check_class_index`, then ``-1`` → the arg-max
    of ``probabilities`` ``(N, C)``."""
    probabilities = np.asarray(probabilities)
    n, c = probabilities.shape
    arr = check_class_index(class_index, n, c, model)
    return np.where(arr < 0, np.argmax(probabilities, axis=-1), arr)


def resolve_class_tensor(class_index: Any, logits: tf.Tensor, model: str | None = None,
                         check_range: bool = True) -> tf.Tensor:
    """Per-example class indices ``(N,)`` int32; ``-1`` (or ``None``) means the predicted class.

    With ``check_range``, out-of-range indices raise :class:`ExplainError` in eager mode and fail a
    ``tf.debugging`` assertion inside a graph; without, the caller has checked them already.
    """
    n = tf.shape(logits)[0]
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    if class_index is None:
        return predicted
    idx = tf.cast(tf.convert_to_tensor(class_index), tf.int32)
    idx = tf.broadcast_to(tf.reshape(idx, [-1]) if idx.shape.rank else idx, [n])
    if check_range:
        c = tf.shape(logits)[1]
        if tf.executing_eagerly():
            check_class_range(idx.numpy(), int(c), model)
        else:
            tf.debugging.assert_less(idx, c, message="class_index out of range")
            tf.debugging.assert_greater_equal(idx, -1, message="class_index out of range")
    return tf.where(idx < 0, predicted, idx)


def check_layer(layer: Any, paths: Sequence[str], model: str | None = None, what: str = "layer") -> str:
    """Resolve a layer name or path to its full path among ``paths`` (a model's layer paths).

    A path (``"backbone/block5_conv2"``) is returned as is; a bare name is accepted when exactly one
    path ends with it.

    Raises:
        ExplainError: not a string, an unknown name (the message lists the accepted paths) or an
            ambiguous bare name (the message lists the matching paths).
    """
    paths = list(paths)
    if not isinstance(layer, str):
        raise ExplainError(f"{what} {layer!r} must be a layer name or path; accepted: {paths}")
    if layer in paths:
        return layer
    matches = [p for p in paths if p.rsplit("/", 1)[-1] == layer]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ExplainError(f"{what} name {layer!r} is ambiguous in {_model(model)}; use one of the paths {matches}")
    raise ExplainError(f"unknown {what} {layer!r} in {_model(model)}; accepted: {paths}")


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """``batch_size`` as an int ``>= 1``, else :class:`ExplainError` naming the value."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ExplainError(f"{name} {batch_size!r} must be an integer >= 1")
    return int(batch_size)
