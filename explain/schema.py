"""Declared parameters of the explanation methods, and the one place they are checked.

Each registry entry (:class:`explain.registry.Method`) declares its parameters as a tuple of
:class:`Param` — name, type, default, accepted range or choices, unit and one line of doc, in the
spirit of scikit-learn's ``_parameter_constraints``. :func:`check_params` resolves a request's
parameters against the declarations: unknown names are refused (naming the accepted ones),
values are checked and coerced, defaults are filled in. In-process callers reach it through
:meth:`explain.registry.Method.call`, the service through :func:`serving.inference.resolve_params`;
``ListModels`` and ``GET /v1/models`` publish the same declarations (:meth:`Param.to_dict`).

Messages have the form of :mod:`explain.params`:
``"<method>: <name> <value> is out of range; accepted: <range>"``.

``class_index`` is not a declared parameter: it is a request field of its own, checked by the
shared checks (:func:`explain.checks.check_class_index`, :func:`serving.inference.resolve_class_index`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Param", "TYPES", "check_params", "check_value", "ParamError"]

#: Accepted declared types, by name.
TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _error_class() -> type[Exception]:
    from explain.view import ExplainError

    return ExplainError


class ParamError(ValueError):
    """A bad declaration (raised when a method is registered, not when it is called)."""


@dataclass(frozen=True)
class Param:
    """One declared parameter of an explanation method.

    Attributes:
        name: The keyword the method takes and a request sets.
        type: ``int``, ``float``, ``str`` or ``bool`` (an int is accepted for a float parameter;
            a float with an integral value for an int parameter).
        default: The value used when a request leaves the parameter out; ``None`` means "the
            method decides" (e.g. occlusion's ``stride`` = half the patch) and is then accepted.
        lo: Lower bound of a numeric parameter (``None``: none); ``lo_open``: excluded.
        hi: Upper bound of a numeric parameter (``None``: none); ``hi_open``: excluded.
        choices: The accepted values of a ``str`` parameter (empty: any string).
        unit: Unit of the value (``"px at 224"``, ``"images"``...), empty when it has none.
        doc: One line describing the parameter.
    """

    name: str
    type: type
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] = ()
    unit: str = ""
    doc: str = ""

    def __post_init__(self) -> None:
        if self.type not in TYPES.values():
            raise ParamError(f"parameter {self.name!r}: type {self.type!r} is not supported; accepted: {list(TYPES)}")
        if self.choices and self.type is not str:
            raise ParamError(f"parameter {self.name!r}: choices need type str; got {self.type.__name__}")
        if (self.lo is not None or self.hi is not None) and self.type not in (int, float):
            raise ParamError(f"parameter {self.name!r}: a range needs type int or float; got {self.type.__name__}")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ParamError(f"parameter {self.name!r}: lo {self.lo} > hi {self.hi}")
        object.__setattr__(self, "choices", tuple(self.choices))
        if self.default is not None:
            try:
                self.check(self.default)
            except ValueError as err:
                raise ParamError(f"parameter {self.name!r}: the default does not pass its own check: {err}") from None

    @property
    def type_name(self) -> str:
        """``"int"``, ``"float"``, ``"str"`` or ``"bool"``."""
        return self.type.__name__

    @property
    def numeric(self) -> bool:
        """Whether the parameter is an int or a float."""
        return self.type in (int, float)

    def accepted(self) -> str:
        """The accepted values in words, e.g. ``"1..1024"``, ``"(0, 1]"``, ``">= 0"``, ``"['a', 'b']"``."""
        if self.choices:
            text = str(list(self.choices))
        elif self.type is bool:
            text = "true or false"
        elif self.type is str:
            text = "any string"
        elif self.type is int and not self.lo_open and not self.hi_open:
            lo = None if self.lo is None else int(self.lo)
            hi = None if self.hi is None else int(self.hi)
            text = (f"{lo}..{hi}" if lo is not None and hi is not None else f">= {lo}" if lo is not None
                    else f"<= {hi}" if hi is not None else "any integer")
        elif self.lo is not None and self.hi is not None:
            text = f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{'>' if self.lo_open else '>='} {_num(self.lo)}"
        elif self.hi is not None:
            text = f"{'<' if self.hi_open else '<='} {_num(self.hi)}"
        else:
            text = "any finite number" if self.type is float else "any integer"
        if self.default is None:
            text += " or None (the method decides)"
        return text

    def check(self, value: Any) -> Any:
        """``value`` checked and coerced to the declared type.

        Raises:
            explain.view.ExplainError: wrong type, out of range or not a choice; the message names
                the parameter, the value and the accepted values (its ``param`` attribute names
                the parameter).
        """
        name = self.name

        def err(message: str) -> Exception:
            exc = _error_class()(message)
            exc.param = name  # type: ignore[attr-defined]
            return exc

        if value is None and self.default is None:
            return None
        try:
            import numpy as np

            if isinstance(value, np.generic):
                value = value.item()
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        bad_type = f"{self.name} {value!r} must be {_article(self.type_name)}; accepted: {self.accepted()}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise err(bad_type)
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise err(bad_type)
            if self.choices and value not in self.choices:
                raise err(f"{self.name} {value!r} is not supported; accepted: {self.accepted()}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise err(bad_type)
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                raise err(bad_type)
            value = int(value)
        elif not math.isfinite(value):
            raise err(f"{self.name} {value!r} is out of range; accepted: {self.accepted()}")
        else:
            value = float(value)
        lo, hi = self.lo, self.hi
        if (lo is not None and (value < lo or (self.lo_open and value == lo))) or \
                (hi is not None and (value > hi or (self.hi_open and value == hi))):
            raise err(f"{self.name} {value!r} is out of range; accepted: {self.accepted()}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The declaration as JSON-ready data (what ``ListModels`` and ``GET /v1/models`` publish)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type_name, "default": self.default,
                               "accepted": self.accepted()}
        if self.lo is not None:
            out["min"] = self.lo
            out["min_open"] = self.lo_open
        if self.hi is not None:
            out["max"] = self.hi
            out["max_open"] = self.hi_open
        if self.choices:
            out["choices"] = list(self.choices)
        if self.unit:
            out["unit"] = self.unit
        if self.doc:
            out["doc"] = self.doc
        return out


def _num(x: float) -> str:
    return repr(float(x))


def _article(type_name: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "a bool (true or false)"}[type_name]


def check_value(method: Any, name: str, value: Any) -> Any:
    """One parameter of ``method`` (a :class:`explain.registry.Method`) checked and coerced."""
    declared = {p.name: p for p in method.parameters}
    if name not in declared:
        raise _error_class()(
            f"unknown parameter(s) [{name!r}] for method {method.name!r}; accepted: {sorted(declared)}")
    return declared[name].check(value)


def check_params(method: Any, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters of ``method`` resolved: ``params`` checked, defaults filled in.

    Args:
        method: A :class:`explain.registry.Method` (its ``parameters`` declarations).
        params: Parameter values by name (``None`` or empty: every default).

    Returns:
        Every declared parameter → its value (given and coerced, or the default), in
        declaration order.

    Raises:
        explain.view.ExplainError: an unknown name (the message lists the accepted names), or a
            value of the wrong type or outside its range / choices (the message names the
            parameter, the value and the accepted values).
    """
    params = dict(params or {})
    declared = {p.name: p for p in method.parameters}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise _error_class()(f"unknown parameter(s) {unknown} for method {method.name!r}; accepted: {sorted(declared)}")
    return {name: (p.check(params[name]) if name in params else p.default) for name, p in declared.items()}

