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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

__all__ = ["Method", "METHODS", "register", "get", "names", "unavailable_reason"]


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
        params: Defaults of the method's parameters (documented, and echoed as "resolved
            parameters" by the service).
        description: One line for ``--help`` and ``ListModels``.
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


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a name can be registered once)."""
    if method.name in METHODS and METHODS[method.name].fn is not method.fn:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.kind not in ("single_pass", "iterative"):
        raise ValueError(f"kind {method.kind!r} is not supported; accepted: ['single_pass', 'iterative']")
    if method.applies_to not in ("classifier", "embedding"):
        raise ValueError(f"applies_to {method.applies_to!r} is not supported; accepted: ['classifier', 'embedding']")
    METHODS[method.name] = method
    return method


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


def names(kind: str | None = None, applies_to: str | None = None) -> list[str]:
    """Registered method names, optionally filtered by kind and model type, sorted."""
    _load_all()
    return sorted(
        n for n, m in METHODS.items()
        if (kind is None or m.kind == kind) and (applies_to is None or m.applies_to == applies_to)
    )


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
