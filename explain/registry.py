"""Registry of explanation methods: names → entry points.

The exporter, the service and the tests enumerate methods through this registry; adding a method
touches no serving code.

Two kinds of method:

* ``single_pass`` — a TensorFlow function ``fn(view, images, **inputs) -> dict[str, Tensor]`` over a
  :class:`explain.view.ModelView` and float32 images in ``[0, 1]``. It is graph-compatible, so
  :mod:`models.export` turns it into a SavedModel signature whose extra inputs are
  ``signature_inputs`` (name → ``tf.TensorSpec``; images are always the uint8 ``images`` input).
  Classifier methods return at least ``heatmap`` ``(N, h, w)`` normalised per example,
  ``heatmap_upsampled`` ``(N, H, W)``, ``raw`` (the map before normalisation), ``logits`` and
  ``class_index`` ``(N,)`` int32 (−1 in the request = the predicted class).
* ``iterative`` — ``fn(backend, images, **params) -> dict[str, np.ndarray]`` over an
  :class:`explain.backend.Backend` (an in-process Keras model or a loaded SavedModel), numpy in
  and out; they batch their forward passes and call ``should_continue()`` between batches.

Each entry **declares** its parameters (:class:`explain.schema.Param`: type, default, range or
choices, unit, doc); :func:`explain.schema.check_params` checks a call against them, in one place
for in-process callers (:meth:`Method.call`) and for the service. Each entry also carries its
``label`` (for tables and figures), its ``cost`` class (``"cheap"``: one pass, ``"costly"``: many
forward passes or an optimisation) and whether it runs in the exported graph (``in_graph``): the
exporter, the service, the evaluation experiments and the fuzzer enumerate the registry and read
these fields instead of keeping lists of their own. ``docs/methods/README.md`` shows how to add a
method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from explain.schema import Param, check_params

__all__ = ["Method", "METHODS", "COSTS", "register", "get", "names", "unavailable_reason", "Param", "table"]

#: Accepted cost classes.
COSTS = ("cheap", "costly")
# Keyword arguments of a method's entry point that are not parameters.
RESERVED = frozenset({"backend", "view", "images", "class_index", "should_continue", "progress"})


@dataclass(frozen=True)
class Method:
    """One registered explanation method.

    Attributes:
        name: Registry name, also the SavedModel signature name of single-pass methods.
        fn: The entry point (see the module docstring for the two calling conventions).
        kind: ``"single_pass"`` or ``"iterative"``.
        applies_to: ``"classifier"`` or ``"embedding"``.
        signature_inputs: Extra signature inputs of single-pass methods, name → ``tf.TensorSpec``
            factory (a zero-argument callable, so importing the registry needs no TensorFlow).
        params: Defaults of the method's parameters, by name (derived from ``parameters``; a
            method that gives only ``params`` gets undocumented declarations of the defaults'
            types, without ranges).
        description: One line for ``--help`` and ``ListModels``.
        parameters: The declared parameters (:class:`explain.schema.Param`), in the order
            ``ListModels`` shows them. ``class_index`` is not one: it is a request field.
        label: Display name in tables and figures (default: ``name``).
        cost: ``"cheap"`` (one forward/backward pass) or ``"costly"`` (many passes or an
            optimisation; evaluations run these on fewer images). Default: ``"cheap"`` for
            single-pass methods, ``"costly"`` for iterative ones.
        label_for_params: Optional ``f(params) -> str``, the label of a parameter choice (e.g.
            ``"occlusion 10"``, ``"C-MWP"``); see :meth:`label_for`.
        check: Optional ``check(view) -> None`` that raises :class:`explain.view.ExplainError`
            with the reason when the method does not apply to a model (e.g. a layer without an
            excitation rule). The exporter leaves such methods out and records the reason.
    """

    name: str
    fn: Callable[..., Any]
    kind: Literal["single_pass", "iterative"]
    applies_to: Literal["classifier", "embedding"]
    signature_inputs: dict[str, Callable[[], Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    check: Callable[[Any], None] | None = None
    parameters: tuple[Param, ...] = ()
    label: str = ""
    cost: str = ""
    label_for_params: Callable[[Mapping[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        declared = tuple(self.parameters)
        if not declared and self.params:
            declared = tuple(_undeclared(k, v) for k, v in self.params.items() if k != "class_index")
        names_ = [p.name for p in declared]
        if len(set(names_)) != len(names_) or "class_index" in names_:
            raise ValueError(f"method {self.name!r}: parameter names {names_} must be unique and exclude 'class_index'")
        object.__setattr__(self, "parameters", declared)
        object.__setattr__(self, "params", {**({"class_index": -1} if self.applies_to == "classifier" else {}),
                                            **{p.name: p.default for p in declared}})
        object.__setattr__(self, "label", self.label or self.name)
        cost = self.cost or ("cheap" if self.kind == "single_pass" else "costly")
        if cost not in COSTS:
            raise ValueError(f"method {self.name!r}: cost {cost!r} is not supported; accepted: {list(COSTS)}")
        object.__setattr__(self, "cost", cost)

    @property
    def in_graph(self) -> bool:
        """Whether the method runs inside the exported graph (a SavedModel signature of its name)."""
        return self.kind == "single_pass"

    @property
    def request_params(self) -> tuple[Param, ...]:
        """The parameters a request may change: every one of an iterative method, the signature
        inputs of a single-pass method (the others are fixed when the model is exported)."""
        if self.kind == "iterative":
            return self.parameters
        return tuple(p for p in self.parameters if p.name in self.signature_inputs)

    def label_for(self, params: Mapping[str, Any] | None = None) -> str:
        """The display label of the method run with ``params`` (:attr:`label` unless the entry names its variants)."""
        if self.label_for_params is None:
            return self.label
        return self.label_for_params(self.resolve(params))

    def param(self, name: str) -> Param:
        """The declaration of parameter ``name`` (``KeyError`` names the declared ones)."""
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"method {self.name!r} has no parameter {name!r}; declared: {[p.name for p in self.parameters]}")

    def resolve(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``params`` checked against the declarations, defaults filled in (:func:`explain.schema.check_params`)."""
        return check_params(self, params)

    def call(self, target: Any, images: Any, class_index: Any = -1, **kwargs: Any) -> dict[str, Any]:
        """Run the method in-process with checked parameters.

        Args:
            target: A :class:`explain.view.ModelView` (single-pass) or a
                :class:`explain.backend.Backend` (iterative).
            images: float32 ``(N, H, W, 3)`` in ``[0, 1]`` (a tensor for single-pass methods).
            class_index: ``-1`` = the predicted class, an int, or one per image.
            **kwargs: Declared parameters, plus ``should_continue`` / ``progress`` for iterative methods.

        Raises:
            explain.view.ExplainError: an unknown parameter or a bad value (naming it and the accepted values).
        """
        runtime = {k: kwargs.pop(k) for k in ("should_continue", "progress") if k in kwargs}
        resolved = check_params(self, kwargs)
        args = {k: v for k, v in resolved.items() if not (v is None and self.param(k).default is None)}
        if self.applies_to == "classifier":
            args["class_index"] = class_index
        return self.fn(target, images, **args, **runtime)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a name can be registered once)."""
    if method.name in METHODS and METHODS[method.name].fn is not method.fn:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.kind not in ("single_pass", "iterative"):
        raise ValueError(f"kind {method.kind!r} is not supported; accepted: ['single_pass', 'iterative']")
    if method.applies_to not in ("classifier", "embedding"):
        raise ValueError(f"applies_to {method.applies_to!r} is not supported; accepted: ['classifier', 'embedding']")
    if method.kind == "single_pass":
        undeclared = sorted(set(method.signature_inputs) - {p.name for p in method.parameters} - {"class_index"}
                            - {k for k in method.signature_inputs if k.endswith("_images")})
        if undeclared:
            raise ValueError(f"method {method.name!r}: signature inputs {undeclared} are not declared parameters")
    METHODS[method.name] = method
    return method


def _undeclared(name: str, default: Any) -> Param:
    """A declaration inferred from a bare default (its type, no range): for entries without ``parameters``."""
    kind = type(default) if isinstance(default, (bool, int, float, str)) else str
    return Param(name, kind, default, doc="(undeclared: inferred from the default)")


def _load_all() -> None:
    # Importing the method modules registers them. Kept lazy so `explain.registry` imports fast.
    import importlib

    for module in (
        "explain.cam",
        "explain.saliency",
        "explain.occlusion",
        "explain.scorecam",
        "explain.excitation",
        "explain.similarity",
        "explain.perturbation",
        "explain.integrated_gradients",
        "explain.guided",
        "explain.rise",
        "explain.ablationcam",
        "explain.xrai",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:  # a module not written yet must not break the others
            if err.name != module:
                raise


def get(name: str) -> Method:
    """The method called ``name``.

    Raises:
        KeyError: unknown name; the message lists the accepted names.
    """
    _load_all()
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; accepted: {sorted(METHODS)}")
    return METHODS[name]


def names(kind: str | None = None, applies_to: str | None = None, cost: str | None = None) -> list[str]:
    """Registered method names, optionally filtered by kind, model type and cost class, sorted."""
    _load_all()
    return sorted(
        n for n, m in METHODS.items()
        if (kind is None or m.kind == kind) and (applies_to is None or m.applies_to == applies_to)
        and (cost is None or m.cost == cost)
    )


def table() -> str:
    """The registered methods as a Markdown table (name, label, kind, cost, model kind, parameters)."""
    _load_all()
    rows = ["| method | label | runs | cost | models | parameters (default; accepted) |", "|---|---|---|---|---|---|"]
    for name in sorted(METHODS):
        m = METHODS[name]
        params = "; ".join(f"`{p.name}` ({p.default!r}; {p.accepted()})" for p in m.parameters) or "—"
        runs = "in the graph" if m.in_graph else "in the service"
        rows.append(f"| `{name}` | {m.label} | {runs} | {m.cost} | {m.applies_to} | {params} |")
    return "\n".join(rows)


def unavailable_reason(method: Method, view: Any) -> str | None:
    """Why ``method`` does not apply to the model behind ``view``, or ``None`` when it does.

    Runs the method's own ``check``; a method without one applies to every model of its kind.
    """
    from explain.view import ExplainError

    if method.check is None:
        return None
    try:
        method.check(view)
    except ExplainError as err:
        return str(err)
    return None
