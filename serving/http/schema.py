"""The parameter schema of each explanation method: the ONE function the typed JSON API
(``GET /v1/models``), the OpenAPI document and the viewer's form fields read.

It is the JSON Schema form of the registry's declarations (:class:`explain.schema.Param`: type,
default, range or choices, unit, doc), the same declarations ``ListModels`` publishes as
``ParameterSpec``: parameters a request cannot change (single-pass methods: fixed at export) are
``readOnly``, and ``batch_size`` is capped at the server limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.signatures import Limits
from serving.registry import ServableVersion

__all__ = ["method_param_schema", "json_type", "param_property"]

_JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}


def json_type(default: Any) -> str | None:
    """The JSON Schema type of a parameter with this default (``None``: any value)."""
    if isinstance(default, (bool, np.bool_)):
        return "boolean"
    if isinstance(default, (int, np.integer)):
        return "integer"
    if isinstance(default, (float, np.floating)):
        return "number"
    if isinstance(default, str):
        return "string"
    return None


def param_property(param: Any) -> dict[str, Any]:
    """The JSON Schema property of one declared parameter (:class:`explain.schema.Param`)."""
    prop: dict[str, Any] = {"title": param.name, "type": _JSON_TYPES[param.type_name]}
    if param.default is None:
        prop["type"] = [prop["type"], "null"]
    else:
        prop["default"] = param.default
    if param.lo is not None:
        prop["exclusiveMinimum" if param.lo_open else "minimum"] = param.lo
    if param.hi is not None:
        prop["exclusiveMaximum" if param.hi_open else "maximum"] = param.hi
    if param.choices:
        prop["enum"] = list(param.choices)
    description = param.doc + (f" ({param.unit})" if param.unit else "")
    prop["description"] = f"{description}; accepted: {param.accepted()}" if description else f"accepted: {param.accepted()}"
    if param.unit:
        prop["x-unit"] = param.unit
    return prop


def method_param_schema(method: Any, sv: ServableVersion, limits: Limits | None = None) -> dict[str, Any]:
    """A JSON Schema object for the ``params`` of ``method`` on model version ``sv``.

    Each property has ``type``, ``default``, ``minimum``/``maximum`` (``exclusive…`` for open
    bounds), ``enum`` for choices, ``description`` (doc, unit and the accepted values) and, for
    parameters a request cannot change (single-pass methods: fixed when the model was exported),
    ``readOnly``.
    """
    limits = limits or Limits()
    sig_inputs = sv.input_specs.get(method.name, {}) if method.kind == "single_pass" else {}
    properties: dict[str, Any] = {}
    for param in method.parameters:
        prop = param_property(param)
        if method.kind == "single_pass" and param.name not in sig_inputs:
            prop["readOnly"] = True
            prop["description"] = "fixed when the model was exported; " + prop["description"]
        if param.name == "batch_size" and param.type is int and limits.max_iterative_batch_size:
            prop["maximum"] = min(prop.get("maximum", limits.max_iterative_batch_size), limits.max_iterative_batch_size)
        properties[param.name] = prop
    return {"type": "object", "title": f"{method.name} parameters", "description": method.description,
            "properties": properties, "additionalProperties": False}
