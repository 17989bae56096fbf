"""The only place that turns wire messages into numpy arrays and back.

* ``tensorflow.TensorProto`` ↔ ``numpy.ndarray`` with ``tf.make_ndarray`` / ``tf.make_tensor_proto``
  (both APIs: TF Serving's Predict and explain.v1);
* :class:`explain.v1.ImageBatch` (a uint8 or float32 tensor, or encoded PNG/JPEG files) → uint8
  ``(N, H, W, 3)``, with the checks that name the bad field (rank, channels, dtype, NaN, range,
  size, limits);
* :class:`explain.v1.ParamValue` ↔ Python scalars.

Every error is :class:`serving.errors.InvalidArgument` with the field named.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving.errors import InvalidArgument
from serving.protos.explain.v1 import explain_pb2 as pb

__all__ = [
    "to_ndarray",
    "to_tensor",
    "images_from_batch",
    "decode_image",
    "float_images_to_uint8",
    "encode_png",
    "param_to_python",
    "python_to_param",
    "params_from_proto",
    "params_to_proto",
    "parameter_spec",
    "resize_images",
]


# TensorFlow DataType enum <-> numpy dtype for the types sent as raw ``tensor_content`` bytes.
_NUMERIC = (np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64,
            np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)
_TO_ENUM = {np.dtype(t): tf.as_dtype(t).as_datatype_enum for t in _NUMERIC}
_FROM_ENUM = {enum: dtype for dtype, enum in _TO_ENUM.items()}


def _dtype_name(value: int) -> str:
    """The DataType name of an enum number, also for a number that is no DataType."""
    try:
        return tf.dtypes.DType(value).name if value else "unset"
    except TypeError:
        return f"unknown ({value})"


def _itemsize(value: int) -> int:
    try:
        return max(1, np.dtype(tf.dtypes.DType(value).as_numpy_dtype).itemsize)
    except (TypeError, KeyError, ValueError):  # no DataType, or one without a numpy type (resource, variant)
        return 1


def to_ndarray(proto: tensor_pb2.TensorProto, field: str, max_bytes: int = 0) -> np.ndarray:
    """Decode a ``TensorProto`` (``field`` names it in errors).

    The common case, a numeric tensor whose bytes are in ``tensor_content`` (what
    ``tf.make_tensor_proto`` and :func:`to_tensor` write), is read with ``np.frombuffer``;
    everything else (``float_val``/``int_val`` lists, strings, …) goes through ``tf.make_ndarray``.

    ``max_bytes`` (0 = no limit) bounds the decoded size: ``tf.make_ndarray`` pads a short value
    list (``int_val: [7]``) to the element count of the shape, so a message of a few bytes could
    claim gigabytes; the shape is checked against the limit before anything is allocated.
    """
    dtype = _FROM_ENUM.get(proto.dtype)
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise InvalidArgument(f"the tensor shape {dims} has a negative dimension", field)
    count = math.prod(dims)  # Python integers: no overflow
    if max_bytes and count * _itemsize(proto.dtype) > max_bytes:
        raise InvalidArgument(
            f"a tensor of shape {dims} ({_dtype_name(proto.dtype)}) would take {count * _itemsize(proto.dtype):,} "
            f"bytes; the server limit is {max_bytes:,} bytes", field)
    if dtype is not None and proto.tensor_content and not proto.tensor_shape.unknown_rank:
        if len(proto.tensor_content) != count * dtype.itemsize:
            raise InvalidArgument(
                f"cannot decode the tensor (dtype {dtype.name}, shape {dims}): tensor_content has "
                f"{len(proto.tensor_content)} bytes, expected {count * dtype.itemsize}", field)
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(dims).copy()
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:  # malformed protos raise TypeError/ValueError from deep inside TF
        raise InvalidArgument(
            f"cannot decode the tensor (dtype {_dtype_name(proto.dtype)}, shape {dims}): its content does not match "
            "its dtype and shape",
            field,
        ) from exc


def to_tensor(array: Any) -> tensor_pb2.TensorProto:
    """Encode a numpy array (or scalar) as a ``TensorProto`` (bytes in ``tensor_content``).

    float64 is sent as float32. Numeric arrays are written directly (the layout
    ``tf.make_tensor_proto`` produces, without its per-call overhead); others use it.
    """
    arr = np.asarray(array)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    enum = _TO_ENUM.get(arr.dtype)
    if enum is None:
        return tf.make_tensor_proto(arr)
    proto = tensor_pb2.TensorProto(dtype=enum, tensor_content=np.ascontiguousarray(arr).tobytes())
    for size in arr.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _check_side(height: int, width: int, max_side: int, field: str) -> None:
    if max_side and (height > max_side or width > max_side):
        raise InvalidArgument(f"image size {height}x{width} exceeds the server limit of {max_side} pixels per side", field)


def _check_count(n: int, max_images: int, field: str) -> None:
    if n < 1:
        raise InvalidArgument("the batch is empty; send at least one image", field)
    if max_images and n > max_images:
        raise InvalidArgument(f"{n} images exceed the server limit of {max_images} images per request", field)


def float_images_to_uint8(arr: np.ndarray, field: str) -> np.ndarray:
    """Quantise float images in ``[0, 1]`` to uint8 (``rint(x·255)``), rejecting NaN and out-of-range values."""
    if not np.all(np.isfinite(arr)):
        raise InvalidArgument("images contain NaN or infinity", field)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InvalidArgument(
            f"float images must be in [0, 1]; found values in [{lo:g}, {hi:g}] (send uint8 for 0..255)", field
        )
    return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of uint8 ``(N, H, W, 3)`` to ``size`` (half-pixel centres, ``tf.image.resize``)."""
    if images.shape[1:3] == tuple(size):
        return images
    out = tf.image.resize(tf.convert_to_tensor(images, tf.float32), size, method="bilinear")
    return np.clip(np.rint(out.numpy()), 0, 255).astype(np.uint8)


def decode_image(data: bytes, where: str, max_side: int = 0, decode: bool = True) -> Any:
    """One PNG/JPEG file: its pixels, uint8 ``(H, W, 3)``, or with ``decode=False`` only its
    ``(height, width)`` from the header. The format and the side limit are checked before any
    pixel is decoded; every failure is an :class:`InvalidArgument` naming ``where``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("PNG", "JPEG"):
                raise InvalidArgument(f"unsupported image format {img.format}; accepted: PNG, JPEG", where)
            width, height = img.size
            _check_side(height, width, max_side, where)
            if not decode:
                return height, width
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except InvalidArgument:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(f"cannot decode the image ({len(data)} bytes): not a valid PNG or JPEG file", where) from exc


def _read_image(data: bytes, index: int, field: str, max_side: int, decode: bool = True) -> Any:
    """:func:`decode_image` of ``field.encoded.data[index]``."""
    return decode_image(data, f"{field}.encoded.data[{index}]", max_side, decode)


def images_from_batch(
    batch: pb.ImageBatch,
    field: str,
    input_size: tuple[int, int, int] | None,
    max_images: int = 0,
    max_side: int = 0,
    max_bytes: int = 0,
) -> np.ndarray:
    """Decode an :class:`ImageBatch` into uint8 ``(N, H, W, 3)``.

    Args:
        batch: The message.
        field: Its name in the request (for error messages), e.g. ``"images"``.
        input_size: The model's ``(H, W, 3)``; ``None`` skips the size check.
        max_images: Server limit on ``N`` (0 = none).
        max_side: Server limit on ``H`` and ``W`` (0 = none).
        max_bytes: Server limit on the decoded size of the batch, ``N·H·W·3`` bytes (0 = none),
            checked from the tensor's shape or the files' headers before anything is decoded.

    Raises:
        InvalidArgument: no images, wrong rank/channels/dtype, NaN or out-of-range floats, a size
            other than the model's (unless ``batch.resize``), an undecodable file, a limit exceeded.
    """
    which = batch.WhichOneof("data")
    if which is None:
        raise InvalidArgument("no images: set either 'tensor' (uint8 (N, H, W, 3)) or 'encoded' (PNG/JPEG files)", field)
    if which == "tensor":
        where = f"{field}.tensor"
        arr = to_ndarray(batch.tensor, where, max_bytes)
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InvalidArgument(f"images must have shape (N, H, W, 3); got {list(arr.shape)}", where)
        _check_count(arr.shape[0], max_images, where)
        _check_side(arr.shape[1], arr.shape[2], max_side, where)
        if arr.dtype == np.uint8:
            images = arr
        elif arr.dtype in (np.float16, np.float32, np.float64):
            images = float_images_to_uint8(arr, where)
        else:
            raise InvalidArgument(f"images dtype {arr.dtype} is not supported; accepted: uint8, float32 in [0, 1]", where)
    else:
        where = f"{field}.encoded"
        files = list(batch.encoded.data)
        _check_count(len(files), max_images, f"{where}.data")
        sizes = [_read_image(data, i, field, max_side, decode=False) for i, data in enumerate(files)]
        total = sum(h * w * 3 for h, w in sizes)
        if max_bytes and total > max_bytes:
            raise InvalidArgument(
                f"the {len(files)} encoded images would decode to {total:,} bytes; the server limit is "
                f"{max_bytes:,} bytes (send fewer or smaller images)", where)
        decoded = []
        for i, data in enumerate(files):  # resized right after decoding: one full-size image at a time
            d = _read_image(data, i, field, max_side)
            decoded.append(resize_images(d[None], tuple(input_size[:2]))[0] if batch.resize and input_size is not None else d)
        shapes = {d.shape for d in decoded}
        if len(shapes) > 1 and not (batch.resize and input_size is not None):
            raise InvalidArgument(f"the encoded images have different sizes {sorted(s[:2] for s in shapes)}; send one size or set resize", where)
        images = np.stack(decoded)
    if input_size is not None and tuple(images.shape[1:3]) != tuple(input_size[:2]):
        if batch.resize:
            images = resize_images(images, tuple(input_size[:2]))
        else:
            raise InvalidArgument(
                f"images are {images.shape[1]}x{images.shape[2]}; the model accepts {input_size[0]}x{input_size[1]} "
                "(set resize to let the server resize them)",
                where,
            )
    return np.ascontiguousarray(images)


def encode_png(images: np.ndarray) -> list[bytes]:
    """Encode uint8 ``(N, H, W, 3)`` as PNG files (for clients, tests and the benchmark)."""
    from PIL import Image

    out = []
    for img in np.asarray(images, dtype=np.uint8):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------------------- parameters
def param_to_python(value: pb.ParamValue, field: str) -> Any:
    """The Python value of a :class:`ParamValue` (an unset value is an error)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise InvalidArgument("the parameter value is empty; set int_value, float_value, bool_value or string_value", field)
    return getattr(value, kind)


def python_to_param(value: Any) -> pb.ParamValue:
    """A :class:`ParamValue` for a Python/numpy scalar (``None`` and sequences become strings)."""
    if isinstance(value, (bool, np.bool_)):
        return pb.ParamValue(bool_value=bool(value))
    if isinstance(value, (int, np.integer)):
        return pb.ParamValue(int_value=int(value))
    if isinstance(value, (float, np.floating)):
        return pb.ParamValue(float_value=float(value))
    if isinstance(value, str):
        return pb.ParamValue(string_value=value)
    return pb.ParamValue(string_value=repr(value) if value is not None else "None")


def params_from_proto(params: Mapping[str, pb.ParamValue], field: str) -> dict[str, Any]:
    """``map<string, ParamValue>`` → ``{name: python value}``."""
    return {name: param_to_python(value, f"{field}[{name!r}]") for name, value in params.items()}


def params_to_proto(target: Any, params: Mapping[str, Any]) -> None:
    """Fill a ``map<string, ParamValue>`` field from a dict."""
    for name, value in params.items():
        target[name].CopyFrom(python_to_param(value))


def parameter_spec(param: Any, fixed: bool = False) -> pb.ParameterSpec:
    """The :class:`ParameterSpec` of a declared parameter (:class:`explain.schema.Param`)."""
    spec = pb.ParameterSpec(name=param.name, type=param.type_name, min_open=param.lo_open, max_open=param.hi_open,
                            choices=list(param.choices), unit=param.unit, doc=param.doc,
                            accepted=param.accepted(), fixed=fixed)
    if param.default is not None:
        spec.default.CopyFrom(python_to_param(param.default))
    if param.lo is not None:
        spec.min = float(param.lo)
    if param.hi is not None:
        spec.max = float(param.hi)
    return spec
