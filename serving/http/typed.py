"""The typed API over JSON (``explain.v1`` in protobuf's JSON mapping) and the OpenAPI document.

``POST /v1/explain`` (ExplainRequest → ExplainResponse), ``POST /v1/similarity``
(SimilarityMapRequest → SimilarityMapResponse), ``POST /v1/masks`` (ImportanceMaskRequest →
ImportanceMaskResponse) and ``GET /v1/models[?name=NAME]`` (ListModelsResponse, each method with
``param_schema`` added, from :func:`serving.http.schema.method_param_schema`, and each model with
the ``visualization`` settings of its explanation metadata, which the viewer colours heat maps
with: :mod:`models.visualization`). Bodies are parsed with
:func:`google.protobuf.json_format.ParseDict` (field names in snake_case or lowerCamelCase;
tensors as ``tensorflow.TensorProto``, e.g. ``{"dtype": "DT_UINT8", "tensor_shape": {...},
"tensor_content": "<base64>"}``, images also as ``{"encoded": {"data": ["<base64 PNG>"]}}``);
responses use the proto field names. ``GET /openapi.json`` describes every route, its schemas
generated from the same message descriptors.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as _d
from google.protobuf import json_format
from starlette.requests import Request

from serving.errors import InvalidArgument
from serving.http import schema
from serving.http.app import Api, parse_json
from serving.http.deadline import HEADER, MAX_TIMEOUT_S, QUERY
from serving.protos.explain.v1 import explain_pb2 as pb

__all__ = ["parse_message", "to_dict", "list_models", "openapi", "openapi_handler", "list_models_handler",
           "explain_handler", "similarity_handler", "masks_handler", "scenes_handler"]


def parse_message(raw: bytes, cls: type) -> Any:
    """A request message from a JSON body (protobuf's JSON mapping); 400 naming the problem."""
    body = parse_json(raw)
    name = cls.DESCRIPTOR.full_name
    if not isinstance(body, dict):
        raise InvalidArgument(f"the body must be a JSON object ({name}); got {type(body).__name__}", "body")
    try:
        return json_format.ParseDict(body, cls())
    except json_format.ParseError as exc:
        raise InvalidArgument(f"the body is not a valid {name} in protobuf's JSON mapping: {exc}", "body") from None


def to_dict(message: Any) -> dict[str, Any]:
    """A response message as JSON (proto field names)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def list_models(api: Api, name: str = "") -> dict[str, Any]:
    """ListModels as JSON, each method with its ``param_schema``."""
    from explain import registry as methods

    out = to_dict(api.call(api.explanation.ListModels, pb.ListModelsRequest(name=name)))
    for model in out.get("models", []):
        with api.runtime.registry.acquire(model["name"], field="name") as sv:
            for m in model.get("methods", []):
                m["param_schema"] = schema.method_param_schema(methods.get(m["name"]), sv, api.runtime.limits)
            vis = sv.metadata.visualization if sv.metadata is not None else {}
            if vis:
                model["visualization"] = dict(vis)
    return out


def list_models_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    return list_models(api, request.query_params.get("name", ""))


def explain_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    return to_dict(api.call(api.explanation.Explain, parse_message(body, pb.ExplainRequest)))


def similarity_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    return to_dict(api.call(api.explanation.SimilarityMap, parse_message(body, pb.SimilarityMapRequest)))


def masks_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    return to_dict(api.call(api.explanation.ImportanceMask, parse_message(body, pb.ImportanceMaskRequest)))


def scenes_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    from serving.http.scenes import scenes

    text = request.query_params.get("size", "64")
    if not (text.isascii() and text.isdigit()):
        raise InvalidArgument(f"size {text!r} is not a positive integer", "size")
    return {"scenes": scenes(int(text))}


# ---------------------------------------------------------------------------- OpenAPI
_SCALARS = {
    _d.FieldDescriptor.TYPE_DOUBLE: {"type": "number"}, _d.FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    _d.FieldDescriptor.TYPE_INT32: {"type": "integer"}, _d.FieldDescriptor.TYPE_SINT32: {"type": "integer"},
    _d.FieldDescriptor.TYPE_UINT32: {"type": "integer"}, _d.FieldDescriptor.TYPE_FIXED32: {"type": "integer"},
    _d.FieldDescriptor.TYPE_SFIXED32: {"type": "integer"}, _d.FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    _d.FieldDescriptor.TYPE_STRING: {"type": "string"},
    _d.FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_INT64 = {"type": ["string", "integer"], "format": "int64"}


def _field_schema(f: Any, components: dict[str, Any]) -> dict[str, Any]:
    if f.type == _d.FieldDescriptor.TYPE_MESSAGE:
        if f.message_type.GetOptions().map_entry:
            value = f.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": _single(value, components)}
    one = _single(f, components)
    repeated = getattr(f, "is_repeated", None)
    repeated = repeated if repeated is not None else f.label == _d.FieldDescriptor.LABEL_REPEATED
    return {"type": "array", "items": one} if repeated else one


def _single(f: Any, components: dict[str, Any]) -> dict[str, Any]:
    if f.type == _d.FieldDescriptor.TYPE_MESSAGE:
        _message_schema(f.message_type, components)
        return {"$ref": f"#/components/schemas/{f.message_type.full_name}"}
    if f.type == _d.FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in f.enum_type.values]}
    return dict(_SCALARS.get(f.type, _INT64))


def _message_schema(desc: Any, components: dict[str, Any]) -> None:
    if desc.full_name in components:
        return
    components[desc.full_name] = {}  # placeholder: recursive messages (TensorProto ↔ VariantTensorDataProto)
    components[desc.full_name] = {
        "type": "object",
        "properties": {f.name: _field_schema(f, components) for f in desc.fields},
    }


def openapi(base_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP routes (typed schemas from the ``explain.v1`` descriptors)."""
    components: dict[str, Any] = {}
    for cls in (pb.ListModelsResponse, pb.ExplainRequest, pb.ExplainResponse, pb.SimilarityMapRequest,
                pb.SimilarityMapResponse, pb.ImportanceMaskRequest, pb.ImportanceMaskResponse):
        _message_schema(cls.DESCRIPTOR, components)
    components["Error"] = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    components["ParamSchema"] = {"type": "object", "description": "JSON Schema of a method's params"}
    components["explain.v1.MethodInfo"]["properties"]["param_schema"] = {"$ref": "#/components/schemas/ParamSchema"}
    components["explain.v1.ModelInfo"]["properties"]["visualization"] = {
        "type": "object", "description": "the explanation metadata's visualization settings (Vertex's: type, polarity, "
        "colorMap, clipPercentUpperbound, clipPercentLowerbound, overlayType), when it has them"}
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    free = {"type": "object"}

    def op(summary: str, request: Any | None, response: Any, params: list[dict] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
            "default": {"description": "error (HTTP status of the gRPC code)",
                        "content": {"application/json": {"schema": ref("Error")}}}}}
        if request is not None:
            out["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
        out["parameters"] = [*(params or []), *deadline_params]
        return out

    seconds = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S}
    deadline_params = [  # serving.http.deadline: the gRPC deadline of an HTTP request (504 beyond)
        {"name": HEADER, "in": "header", "required": False, "schema": seconds,
         "description": "deadline in seconds from arrival; 504 {\"error\"} beyond it"},
        {"name": QUERY, "in": "query", "required": False, "schema": seconds,
         "description": f"the same as the {HEADER} header (the smaller applies)"},
    ]
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    paths = {
        "/v1/models": {"get": op("Models, versions, methods and their parameter schemas (typed ListModels)", None,
                                 ref("explain.v1.ListModelsResponse"),
                                 [{"name": "name", "in": "query", "required": False, "schema": {"type": "string"}}])},
        "/v1/explain": {"post": op("Explain (typed)", ref("explain.v1.ExplainRequest"), ref("explain.v1.ExplainResponse"))},
        "/v1/similarity": {"post": op("SimilarityMap (typed)", ref("explain.v1.SimilarityMapRequest"),
                                      ref("explain.v1.SimilarityMapResponse"))},
        "/v1/masks": {"post": op("ImportanceMask (typed)", ref("explain.v1.ImportanceMaskRequest"),
                                 ref("explain.v1.ImportanceMaskResponse"))},
        "/v1/scenes": {"get": op("Built-in synthetic scenes as base64 PNG", None, free,
                                 [{"name": "size", "in": "query", "required": False, "schema": {"type": "integer"}}])},
        "/v1/models/{name}": {"get": op("TF Serving model status + KServe v1 readiness (name, ready)", None, free, [name])},
        "/v1/models/{name}/versions/{version}": {"get": op("TF Serving model status of one version", None, free, [
            name, {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}])},
        "/v1/models/{name}/metadata": {"get": op("TF Serving model metadata (signature defs)", None, free, [name])},
        "/v1/models/{name}:predict": {"post": op(
            "TF Serving predict: {signature_name, instances | inputs}; {\"b64\": ...} for binary data", free, free, [name])},
        "/v1/models/{name}:explain": {"post": op(
            "KServe v1 explain: {instances, method, parameters} → {explanations: [...]}", free, free, [name])},
    }
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": {"title": "cnn-explain explanation service", "version": "1"},
                           "paths": paths, "components": {"schemas": components,
                                                          "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}
    if base_url:
        doc["servers"] = [{"url": base_url}]
    return doc


def openapi_handler(api: Api, request: Request, body: bytes) -> dict[str, Any]:
    return openapi()
