"""TF Serving's REST API: the request paths, and its JSON ↔ tensor codec for ``:predict``.

As TF Serving documents it (https://www.tensorflow.org/tfx/serving/api_rest):

* ``GET /v1/models/NAME[/versions/V | /labels/L]`` → ``{"model_version_status": [...]}``;
  ``GET …/metadata`` → ``{"model_spec": ..., "metadata": {"signature_def": ...}}``;
* ``POST /v1/models/NAME[/versions/V | /labels/L]:predict`` with ``signature_name`` and either
  ``instances`` (row format: one value per example, or one ``{input: value}`` object per example
  when the signature has several inputs) → ``{"predictions": [...]}``, or ``inputs`` (columnar: a
  value, or ``{input: value}``) → ``{"outputs": ...}``;
* ``{"b64": "..."}`` stands for binary data. For a string tensor it is the bytes; for a numeric
  tensor (the images of this project's models are uint8) it is one example: a PNG or JPEG file,
  or the raw little-endian bytes of one example (e.g. ``H·W·3`` bytes of a uint8 image);
* errors are ``{"error": "..."}`` with the HTTP status of the gRPC code
  (:func:`serving.errors.http_status`).

Output tensors become JSON lists; string outputs whose name ends in ``_bytes`` become
``{"b64": ...}`` as in TF Serving.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Mapping

import numpy as np

from serving import convert
from serving.errors import InvalidArgument
from serving.signatures import Limits, signature_missing
from serving.registry import ServableVersion

__all__ = [
    "PREDICT_PATH",
    "STATUS_PATH",
    "parse_version",
    "decode_predict",
    "decode_value",
    "encode_predict",
    "to_json_value",
]

# TF Serving's own patterns (tensorflow_serving/model_servers/http_rest_api_util.cc), plus
# KServe's ``:explain`` verb.
PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict|explain)", re.I)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)

_PNG, _JPEG = b"\x89PNG", b"\xff\xd8\xff"
_INT64_MAX = 2**63 - 1


def parse_version(text: str | None) -> int | None:
    """The version number of a path (``None`` when absent)."""
    if not text:
        return None
    try:
        version = int(text)
    except ValueError:
        raise InvalidArgument(f"version {text!r} is not a number", "path") from None
    if version > _INT64_MAX:
        raise InvalidArgument(f"version {text[:40]!r} is out of range; accepted: 0..{_INT64_MAX}", "path")
    return version


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _holds_b64(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return _is_b64(value)


def _from_b64(value: dict, spec: Any, where: str, limits: Limits, image_shape: tuple[int, ...] | None) -> np.ndarray:
    text = value["b64"]
    if not isinstance(text, str):
        raise InvalidArgument(f"'b64' must be a base64 string; got {type(text).__name__}", where)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # TF Serving also accepts the URL-safe alphabet
            data = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"'b64' is not valid base64 ({len(text)} characters)", where) from None
    if spec.dtype.name == "string":
        return np.array(data, dtype=object)
    dtype = np.dtype(spec.dtype.as_numpy_dtype)
    if data.startswith(_PNG) or data.startswith(_JPEG):
        return convert.decode_image(data, where, limits.max_side)
    dims = spec.shape.as_list()[1:] if spec.shape.rank else []
    if any(d is None for d in dims) and image_shape is not None and len(dims) == 3:
        dims = list(image_shape)
    if any(d is None for d in dims):
        raise InvalidArgument(f"raw b64 bytes need a fully known example shape; the input has {dims} (send a list or a PNG/JPEG)", where)
    want = math.prod(dims) * dtype.itemsize
    if len(data) != want:
        raise InvalidArgument(
            f"b64 value of {len(data)} bytes is neither a PNG/JPEG file nor the raw {dtype.name} bytes of one example "
            f"of shape {dims} ({want} bytes)", where)
    return np.frombuffer(data, dtype=dtype).reshape(dims)


def _out_of_range_int(value: Any) -> int | None:
    """The first integer of a nested list that no numpy integer type holds (``None`` if none)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**64:
            return v
    return None


def _short(number: int) -> str:
    text = str(number)
    return text if len(text) <= 30 else f"{text[:12]}…{text[-6:]} ({len(text)} digits)"


def decode_value(value: Any, spec: Any, where: str, limits: Limits, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A JSON value (numbers, nested lists, ``{"b64": ...}``) as a numpy array for an input of ``spec``.

    Integers are accepted for float inputs; dtype and shape are checked later against the signature
    (:func:`serving.signatures.validate_inputs`).
    """
    if _is_b64(value):
        return _from_b64(value, spec, where, limits, image_shape)
    if isinstance(value, dict):
        raise InvalidArgument(f"an object here must be {{\"b64\": \"<base64>\"}}; got keys {sorted(value)}", where)
    if isinstance(value, list) and _holds_b64(value):
        parts = [decode_value(v, spec, f"{where}[{i}]", limits, image_shape) for i, v in enumerate(value)]
        shapes = sorted({p.shape for p in parts})
        if len(shapes) > 1:
            raise InvalidArgument(f"the b64 values decode to different shapes {[list(s) for s in shapes]}", where)
        return np.stack(parts)
    try:
        arr = np.array(value)
    except (ValueError, TypeError):
        raise InvalidArgument("the value is a ragged list (its rows differ in length)", where) from None
    if arr.dtype == object:
        huge = _out_of_range_int(value)
        if huge is not None:
            raise InvalidArgument(f"the integer {_short(huge)} is out of range; accepted: 64-bit integers", where)
        raise InvalidArgument("the value is a ragged list or mixes types", where)
    if spec.dtype.name == "string":
        if arr.dtype.kind != "U":
            raise InvalidArgument(f"the input takes strings; got {arr.dtype.name} values", where)
        return np.vectorize(lambda s: s.encode(), otypes=[object])(arr) if arr.size else arr.astype(object)
    if arr.dtype.kind not in "biuf":
        raise InvalidArgument(f"the input takes numbers; got {arr.dtype.name} values", where)
    if arr.dtype.kind in "iu" and spec.dtype.is_floating:
        arr = arr.astype(np.float64)
    return arr


def decode_predict(body: Any, sv: ServableVersion, limits: Limits) -> tuple[str, dict[str, np.ndarray], bool]:
    """``(signature, inputs, row_format)`` of a ``:predict`` body, decoded with the signature's specs."""
    if not isinstance(body, dict):
        raise InvalidArgument(f"the body must be a JSON object; got {type(body).__name__}", "body")
    signature = body.get("signature_name", "serving_default") or "serving_default"
    if not isinstance(signature, str):
        raise InvalidArgument(f"signature_name must be a string; got {signature!r}", "signature_name")
    if signature not in sv.signatures:
        raise signature_missing(sv, signature, "signature_name")
    specs = sv.input_specs[signature]
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise InvalidArgument("the body must have exactly one of 'instances' (row format) and 'inputs' (columnar format)", "body")
    image = tuple(sv.input_shape)
    if has_cols:
        value = body["inputs"]
        if isinstance(value, dict) and not _is_b64(value):
            named = value
        elif len(specs) == 1:
            named = {next(iter(specs)): value}
        else:
            raise InvalidArgument(f"signature {signature!r} has inputs {sorted(specs)}; send 'inputs' as an object "
                                  "{name: value}", "inputs")
        return signature, {k: decode_value(v, _spec(specs, k, signature, "inputs"), f"inputs[{k!r}]", limits, image)
                           for k, v in named.items()}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise InvalidArgument("'instances' must be a non-empty list (one entry per example)", "instances")
    if all(isinstance(r, dict) and not _is_b64(r) for r in rows):
        keys = sorted(rows[0])
        for i, r in enumerate(rows):
            if sorted(r) != keys:
                raise InvalidArgument(f"instances[{i}] has keys {sorted(r)}; instances[0] has {keys} (all must have the same)", "instances")
        columns = {k: [r[k] for r in rows] for k in keys}
    elif len(specs) == 1:
        columns = {next(iter(specs)): rows}
    else:
        raise InvalidArgument(f"signature {signature!r} has inputs {sorted(specs)}; send each instance as an object "
                              "{name: value}", "instances")
    inputs = {}
    for k, values in columns.items():
        spec = _spec(specs, k, signature, "instances")
        parts = [decode_value(v, spec, f"instances[{i}][{k!r}]", limits, image) for i, v in enumerate(values)]
        if len({p.shape for p in parts}) > 1:
            raise InvalidArgument(f"the instances' values of input {k!r} have different shapes "
                                  f"{sorted({tuple(p.shape) for p in parts})}", "instances")
        inputs[k] = np.stack(parts)
    return signature, inputs, True


def _spec(specs: Mapping[str, Any], name: str, signature: str, field: str) -> Any:
    if name not in specs:
        raise InvalidArgument(f"unknown input {name!r}; signature {signature!r} takes {sorted(specs)}", field)
    return specs[name]


def to_json_value(name: str, value: np.ndarray) -> Any:
    """A tensor as JSON (lists; strings decoded, or ``{"b64": ...}`` for names ending in ``_bytes``)."""
    if value.dtype == object or value.dtype.kind in "SU":
        if name.endswith("_bytes"):
            return np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])(value).tolist()
        return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                            otypes=[object])(value).tolist()
    return value.tolist()


def encode_predict(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's response body: ``{"predictions": ...}`` (row) or ``{"outputs": ...}`` (columnar)."""
    if not row_format:
        if len(outputs) == 1:
            (name, value), = outputs.items()
            return {"outputs": to_json_value(name, value)}
        return {"outputs": {k: to_json_value(k, v) for k, v in outputs.items()}}
    if len(outputs) == 1:
        (name, value), = outputs.items()
        return {"predictions": to_json_value(name, value)}
    sizes = {k: (v.shape[0] if v.ndim else None) for k, v in outputs.items()}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise InvalidArgument(f"the outputs have different batch sizes {sizes}; use the columnar format ('inputs')", "instances")
    columns = {k: to_json_value(k, v) for k, v in outputs.items()}
    n = next(iter(sizes.values()))
    return {"predictions": [{k: col[i] for k, col in columns.items()} for i in range(n)]}
