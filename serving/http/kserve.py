"""``/v1/models/…``: TF Serving's REST routes and KServe's v1 protocol (one path space).

* ``GET /v1/models/NAME[/versions/V|/labels/L]`` — TF Serving's model status
  (``{"model_version_status": [...]}``) with KServe v1's readiness fields added
  (``"name"``, ``"ready"``: a version is AVAILABLE), so the same route serves both;
* ``GET …/metadata`` — TF Serving's metadata (signature defs);
* ``POST …:predict`` — TF Serving's predict (KServe v1's predict is the same protocol);
* ``POST …:explain`` — KServe v1's explain verb: ``{"instances": [image, ...], "method": "gradcam",
  "parameters": {...}}`` → ``{"explanations": [{"heatmap", "class_index", "probabilities", ...}]}``.
  An image is a nested list ``(H, W, 3)`` (uint8 values, or floats in [0, 1]) or
  ``{"b64": PNG/JPEG or raw uint8 bytes}``. ``parameters`` are the method's parameters; the keys
  ``class_index`` (int or list), ``top_k``, ``theta``, ``rho``, ``target_layer`` and ``resize``
  set the Explain request's fields of the same names. ``method`` defaults to ``gradcam``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format
from starlette.requests import Request
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from serving import convert
from serving.errors import InvalidArgument, NotFound, Unimplemented
from serving.http import tfserving
from serving.http.app import Api, parse_json
from serving.protos.explain.v1 import explain_pb2 as pb

__all__ = ["models_path_handler", "explain_request"]

_FIELDS = {"class_index", "top_k", "theta", "rho", "target_layer", "resize"}


def _dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _spec(target: Any, name: str, version: int | None, label: str | None) -> None:
    target.name = name
    if version is not None:
        target.version.value = version
    if label:
        target.version_label = label


def models_path_handler(api: Api, request: Request, body: bytes) -> Any:
    """Dispatch ``/v1/models/…`` with TF Serving's own path patterns."""
    path = request.url.path
    if request.method == "GET":
        m = tfserving.STATUS_PATH.fullmatch(path)
        if not m or not m.group(1):
            raise NotFound(f"no route for GET {path}; expected /v1/models/NAME[/versions/V|/labels/L][/metadata]")
        name, version, label, sub = m.group(1), tfserving.parse_version(m.group(2)), m.group(3), m.group(4)
        return metadata(api, name, version, label) if sub else status(api, name, version, label)
    m = tfserving.PREDICT_PATH.fullmatch(path)
    if not m:
        raise NotFound(f"no route for POST {path}; expected /v1/models/NAME[/versions/V|/labels/L]:predict or :explain")
    name, version, label, verb = m.group(1), tfserving.parse_version(m.group(2)), m.group(3), m.group(4).lower()
    payload = parse_json(body)
    if verb == "predict":
        return predict(api, name, version, label, payload)
    if verb == "explain":
        return explain(api, name, version, label, payload)
    raise Unimplemented(f":{verb} (tf.Example inputs) is not implemented; use :predict with image tensors")


def status(api: Api, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    """TF Serving's GetModelStatus JSON, plus KServe v1's ``name`` and ``ready``."""
    req = get_model_status_pb2.GetModelStatusRequest()
    _spec(req.model_spec, name, version, label)
    resp = api.call(api.model.GetModelStatus, req)
    out = _dict(resp)
    out["name"] = name
    out["ready"] = any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in resp.model_version_status)
    return out


def metadata(api: Api, name: str, version: int | None, label: str | None) -> dict[str, Any]:
    """TF Serving's GetModelMetadata JSON: ``{"model_spec", "metadata": {"signature_def"}}``."""
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    _spec(req.model_spec, name, version, label)
    resp = api.call(api.prediction.GetModelMetadata, req)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    return {"model_spec": _dict(resp.model_spec), "metadata": {"signature_def": _dict(sig_map)}}


def predict(api: Api, name: str, version: int | None, label: str | None, payload: Any) -> dict[str, Any]:
    """TF Serving's ``:predict``: decode with the signature's specs, Predict, encode."""
    limits = api.runtime.limits
    sv = api.runtime.registry.resolve(name, version, label, field="path")
    signature, inputs, row = tfserving.decode_predict(payload, sv, limits)
    req = predict_pb2.PredictRequest()
    _spec(req.model_spec, name, version, label)
    req.model_spec.signature_name = signature
    for key, value in inputs.items():
        req.inputs[key].CopyFrom(convert.to_tensor(value))
    resp = api.call(api.prediction.Predict, req)
    outputs = {k: convert.to_ndarray(t, k) for k, t in resp.outputs.items()}
    return tfserving.encode_predict(outputs, row)


def _images(instances: Any, size: tuple[int, int, int], limits: Any) -> np.ndarray:
    import tensorflow as tf

    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty list of images", "instances")
    spec = tf.TensorSpec((None, *size), tf.uint8)
    parts = []
    for i, inst in enumerate(instances):
        if isinstance(inst, dict) and set(inst) != {"b64"} and len(inst) == 1:
            inst = next(iter(inst.values()))  # {"image_bytes": {"b64": ...}} and the like
        parts.append(tfserving.decode_value(inst, spec, f"instances[{i}]", limits, size))
    shapes = sorted({tuple(p.shape) for p in parts})
    if len(shapes) > 1:
        raise InvalidArgument(f"the instances have different shapes {[list(s) for s in shapes]}", "instances")
    arr = np.stack(parts)
    if arr.dtype.kind == "f":
        return convert.float_images_to_uint8(arr, "instances")
    if arr.dtype.kind in "iu" and arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InvalidArgument(f"pixel values must be in 0..255; found [{arr.min()}, {arr.max()}]", "instances")
    if arr.dtype.kind not in "iu":
        raise InvalidArgument(f"images must be numbers; got {arr.dtype.name}", "instances")
    return arr.astype(np.uint8)


def explain_request(api: Api, name: str, version: int | None, label: str | None, payload: Any) -> pb.ExplainRequest:
    """The :class:`ExplainRequest` of a KServe v1 ``:explain`` body."""
    if not isinstance(payload, dict):
        raise InvalidArgument(f"the body must be a JSON object; got {type(payload).__name__}", "body")
    unknown = sorted(set(payload) - {"instances", "method", "parameters"})
    if unknown:
        raise InvalidArgument(f"unknown key(s) {unknown}; accepted: ['instances', 'method', 'parameters']", "body")
    method = payload.get("method", "gradcam")
    params = payload.get("parameters") or {}
    if not isinstance(method, str):
        raise InvalidArgument(f"method must be a string; got {method!r}", "method")
    if not isinstance(params, dict):
        raise InvalidArgument(f"parameters must be an object; got {type(params).__name__}", "parameters")
    sv = api.runtime.registry.resolve(name, version, label, field="path")
    req = pb.ExplainRequest(method=method)
    req.model.name = name
    if version is not None:
        req.model.version = version
    elif label:
        req.model.label = label
    req.images.tensor.CopyFrom(convert.to_tensor(_images(payload.get("instances"), tuple(sv.input_shape), api.runtime.limits)))
    for key, value in params.items():
        where = f"parameters[{key!r}]"
        if key in _FIELDS:
            _set_field(req, key, value, where)
        elif isinstance(value, (bool, int, float, str)):
            req.params[key].CopyFrom(convert.python_to_param(value))
        else:
            raise InvalidArgument(f"a parameter value must be a number, a bool or a string; got {value!r}", where)
    return req


def _set_field(req: pb.ExplainRequest, key: str, value: Any, where: str) -> None:
    try:
        if key == "class_index":
            req.class_index.extend([value] if isinstance(value, int) else list(value))
        elif key == "resize":
            req.images.resize = bool(value)
        else:
            setattr(req, key, value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"invalid value {value!r}: {exc}", where) from None


def explain(api: Api, name: str, version: int | None, label: str | None, payload: Any) -> dict[str, Any]:
    """KServe v1 ``:explain``: one explanation per instance (per instance × class with ``top_k``)."""
    resp = api.call(api.explanation.Explain, explain_request(api, name, version, label, payload))
    heat = convert.to_ndarray(resp.heatmap, "heatmap")
    probs = convert.to_ndarray(resp.probabilities, "probabilities") if resp.HasField("probabilities") else None
    mask = convert.to_ndarray(resp.mask, "mask") if resp.HasField("mask") else None
    cls = convert.to_ndarray(resp.class_index, "class_index")
    idx = convert.to_ndarray(resp.image_index, "image_index")
    names = _class_names(api, name, int(resp.model_version))
    vertex = {field: convert.to_ndarray(resp.outputs[key], key) for field, key in _VERTEX_OUTPUTS.items() if key in resp.outputs}
    rows = []
    for i in range(heat.shape[0]):
        row: dict[str, Any] = {"image_index": int(idx[i]), "class_index": int(cls[i]), "heatmap": heat[i].tolist()}
        if probs is not None:
            row["probabilities"] = probs[i].tolist()
        if mask is not None:
            row["mask"] = mask[i].tolist()
        row.update(_vertex_fields(i, int(cls[i]), names, probs, vertex))
        rows.append(row)
    return {"model_name": resp.model_name, "model_version": int(resp.model_version), "method": resp.method,
            "params": convert.params_from_proto(resp.params, "params"), "explanations": rows}


#: Vertex response fields read from a method's extra outputs (Integrated Gradients, XRAI).
_VERTEX_OUTPUTS = {"instanceOutputValue": "instance_output", "baselineOutputValue": "baseline_output",
                   "approximationError": "approximation_error"}


def _class_names(api: Api, name: str, version: int) -> list[str]:
    try:
        return list(api.runtime.registry.resolve(name, version or None, None, field="path").class_names)
    except Exception:  # noqa: BLE001 - the version may have unloaded since; the names are optional
        return []


def _vertex_fields(i: int, cls: int, names: list[str], probs: Any, vertex: dict[str, Any]) -> dict[str, Any]:
    """Vertex Explainable AI's per-attribution fields for row ``i`` (docs/vertex.md).

    ``outputIndex`` and ``outputDisplayName`` are the explained class and its name;
    ``instanceOutputValue`` is the method's explained score when it returns one (IG: the logit),
    else the class probability; ``baselineOutputValue`` and ``approximationError`` only where the
    method computes them (Integrated Gradients; XRAI's gap of its black baseline)."""
    out: dict[str, Any] = {"outputIndex": [cls]}
    if 0 <= cls < len(names):
        out["outputDisplayName"] = names[cls]
    if probs is not None and 0 <= cls < probs.shape[-1]:
        out["instanceOutputValue"] = float(probs[i][cls])
    for field, values in vertex.items():
        if values.ndim == 1 and i < values.shape[0]:
            out[field] = float(values[i])
    return out
