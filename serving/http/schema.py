"""The parameter schema of each explanation method: the ONE function the typed JSON API
(``GET /v1/models``), the OpenAPI document and the viewer's form fields read.

There is no declared schema in :mod:`explain.registry` yet, so the schema is derived from what the
service already knows: the defaults of :func:`serving.inference.method_params` (their types are
what :func:`serving.inference._coerce` accepts), the signature inputs of single-pass methods (the
only parameters a request may change for them; the others are fixed at export) and the server
limits. When the registry declares schemas, :func:`method_param_schema` returns them instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.inference import Limits, method_params
from serving.registry import ServableVersion

__all__ = ["method_param_schema", "json_type"]


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


def method_param_schema(method: Any, sv: ServableVersion, limits: Limits | None = None) -> dict[str, Any]:
    """A JSON Schema object for the ``params`` of ``method`` on model version ``sv``.

    Each property has ``type`` (when the default tells it), ``default`` and, for parameters a
    request cannot change (single-pass methods: fixed when the model was exported), ``readOnly``.
    """
    limits = limits or Limits()
    sig_inputs = sv.input_specs.get(method.name, {}) if method.kind == "single_pass" else {}
    properties: dict[str, Any] = {}
    for name, default in method_params(method, sv).items():
        prop: dict[str, Any] = {"title": name}
        kind = json_type(default)
        if kind is not None:
            prop["type"] = kind
        if default is not None:
            prop["default"] = default.item() if isinstance(default, np.generic) else default
        if method.kind == "single_pass" and name not in sig_inputs:
            prop["readOnly"] = True
            prop["description"] = "fixed when the model was exported"
        if name == "batch_size" and kind == "integer":
            prop["minimum"] = 1
            if limits.max_iterative_batch_size:
                prop["maximum"] = limits.max_iterative_batch_size
        properties[name] = prop
    return {"type": "object", "title": f"{method.name} parameters", "description": method.description,
            "properties": properties, "additionalProperties": False}
