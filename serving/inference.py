"""What the servicers do, on numpy arrays: validated signature calls and the explanation flows.

The servicers are thin: they decode a request with :mod:`serving.convert`, call one function
here, and encode the result. Everything here works on a :class:`serving.servable.ServableVersion`
and numpy arrays and raises the domain exceptions of :mod:`serving.errors` (or the ``explain``
package's), which :func:`serving.errors.rpc_method` maps to status codes.

* :func:`run_signature` — one SavedModel signature, inputs checked against its specs (names,
  dtype, shape, NaN, class index range, server limits) and micro-batched.
* :func:`explain` — one registry method: single-pass methods call the signature of the same name;
  iterative methods (occlusion, Score-CAM, perturbation masks) run here on
  :class:`explain.backend.SavedModelBackend` with ``should_continue`` checking the deadline.
* :func:`importance_mask` — θ-threshold or top-ρ masks of one or several methods, intersected
  (:mod:`explain.masks`).
* :func:`similarity` — an embedding method (``similarity_map`` by default, or any registry method
  with ``applies_to="embedding"``) on (query, reference) pairs, plus a region score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from explain.result import as_explanation
from serving.errors import FailedPrecondition, InvalidArgument
from serving.servable import ServableVersion
from serving.signatures import (CallContext, Limits, SignatureRun, check_class_index_values, predict_probabilities,
                                run_signature)

__all__ = [
    "Limits",
    "CallContext",
    "SignatureRun",
    "ExplainOutcome",
    "MaskOutcome",
    "SimilarityOutcome",
    "run_signature",
    "predict_probabilities",
    "resolve_class_index",
    "lookup_method",
    "method_params",
    "explain",
    "importance_mask",
    "similarity",
    "lookup_embedding_method",
    "DEFAULT_EMBEDDING_METHOD",
    "SIMILARITY_FIELDS",
]


def lookup_method(sv: ServableVersion, name: str, field: str = "method") -> Any:
    """The registry :class:`explain.registry.Method` called ``name``, if this model supports it."""
    from explain import registry as methods

    if not name:
        raise InvalidArgument(f"no method given; model {sv.name!r} offers {sv.methods}", field)
    try:
        method = methods.get(name)
    except KeyError:
        raise InvalidArgument(f"unknown method {name!r}; accepted: {methods.names()}", field) from None
    if name not in sv.methods:
        why = getattr(sv, "methods_left_out", {}).get(name)
        raise FailedPrecondition(
            f"method {name!r} is not available for model {sv.name!r} version {sv.version} ({sv.kind})"
            + (f": {why}" if why else "") + f"; available: {sv.methods}")
    return method


def method_params(method: Any, sv: ServableVersion | None = None) -> dict[str, Any]:
    """The declared parameters of ``method`` with their defaults (``class_index`` is a field of its own)."""
    return {p.name: p.default for p in method.parameters}


def resolve_params(method: Any, sv: ServableVersion, given: Mapping[str, Any], limits: Limits,
                   field: str = "params") -> tuple[dict[str, Any], dict[str, Any]]:
    """Check the request's parameters; return ``(resolved values for the echo, call arguments)``.

    The values are checked against the method's declarations by :func:`explain.schema.check_params`
    (the one check in-process callers get too): unknown names, wrong types, values outside the
    declared range or choices are INVALID_ARGUMENT naming the parameter, the value and what is
    accepted. Single-pass methods: parameters that are signature inputs (e.g. ``contrastive``,
    ``dilations``) become inputs; the others were fixed at export and may only be given at their
    default. Iterative methods: every declared parameter, ``batch_size`` within the server limit.
    """
    from explain.schema import check_params
    from explain.view import ExplainError

    if "class_index" in given:
        raise InvalidArgument("set class indices with the class_index field, not as a parameter", f"{field}['class_index']")
    try:
        resolved = check_params(method, given)
    except ExplainError as err:
        name = getattr(err, "param", None)
        raise InvalidArgument(str(err), f"{field}[{name!r}]" if name else field) from None
    call: dict[str, Any] = {}
    if method.kind == "single_pass":
        sig_inputs = sv.input_specs.get(method.name)
        if sig_inputs is None:  # run in the service (explain.foreign): the registry's declared inputs
            sig_inputs = {k: spec() for k, spec in method.signature_inputs.items()}
        for name, value in resolved.items():
            if name in sig_inputs:
                call[name] = np.asarray(value, dtype=np.dtype(sig_inputs[name].dtype.as_numpy_dtype))
            elif name in given and value != method.param(name).default:
                raise InvalidArgument(
                    f"parameter {name!r} of method {method.name!r} is fixed when the model is exported "
                    f"(value {method.param(name).default!r}); run the method in-process to change it", f"{field}[{name!r}]")
        return resolved, call
    batch = resolved.get("batch_size")
    if isinstance(batch, int) and limits.max_iterative_batch_size and batch > limits.max_iterative_batch_size:
        raise InvalidArgument(f"batch_size {batch} exceeds the server limit of {limits.max_iterative_batch_size}; "
                              f"accepted: 1..{limits.max_iterative_batch_size}", f"{field}['batch_size']")
    call = {k: v for k, v in resolved.items() if not (v is None and method.param(k).default is None)}
    return resolved, call


def resolve_class_index(values: Sequence[int], n: int, sv: ServableVersion, field: str = "class_index") -> np.ndarray:
    """Per-image class indices ``(n,)`` int32 from an empty, one-element or ``n``-element list."""
    if sv.kind != "classifier":
        if len(values):
            raise InvalidArgument(f"model {sv.name!r} is an embedding model; it has no classes", field)
        return np.full(n, -1, np.int32)
    arr = np.asarray(list(values), dtype=np.int64)
    if arr.size == 0:
        arr = np.full(n, -1, np.int64)
    elif arr.size == 1:
        arr = np.full(n, int(arr[0]), np.int64)
    elif arr.size != n:
        raise InvalidArgument(f"{arr.size} class indices for {n} images; send none, one, or one per image", field)
    check_class_index_values(arr, sv, field)
    return arr.astype(np.int32)


# ---------------------------------------------------------------------------- Explain
@dataclass
class ExplainOutcome:
    """An explanation in numpy (rows = images, or images × top-k classes)."""

    method: str
    heatmap: np.ndarray
    heatmap_lowres: np.ndarray | None
    raw: np.ndarray | None
    probabilities: np.ndarray | None
    class_index: np.ndarray
    image_index: np.ndarray
    mask: np.ndarray | None
    params: dict[str, Any]
    outputs: dict[str, np.ndarray]
    batch_size: int
    queue_s: float
    compute_s: float


def _mask(heatmap: np.ndarray, theta: float | None, rho: float | None, field_prefix: str = "") -> np.ndarray | None:
    from explain import masks

    if theta is not None and rho is not None:
        raise InvalidArgument("give theta or rho, not both", f"{field_prefix}theta")
    try:
        if theta is not None:
            return masks.threshold(heatmap, float(theta))
        if rho is not None:
            return masks.top_rho(heatmap, float(rho))
    except ValueError as exc:
        raise InvalidArgument(str(exc), f"{field_prefix}{'theta' if theta is not None else 'rho'}") from exc
    return None


def _check_target_layer(sv: ServableVersion, target_layer: str, method: Any) -> None:
    if not target_layer or target_layer == sv.target_layer or (sv.target_layer and sv.target_layer.endswith("/" + target_layer)):
        return
    raise InvalidArgument(
        f"target layer {target_layer!r} is not available: model {sv.name!r} version {sv.version} was exported "
        f"with target layer {sv.target_layer!r} (methods on the server use that layer)", "target_layer")


def _declared_baselines(sv: ServableVersion, method: Any, given: Mapping[str, Any],
                        resolved: dict[str, Any]) -> np.ndarray | None:
    """The explanation metadata's ``inputBaselines`` in ``[0, 1]`` for Integrated Gradients on a
    model without a card, when the request chooses no ``baseline`` (the echo says
    ``"inputBaselines"``); else ``None``. A baseline that does not fit is FAILED_PRECONDITION."""
    from explain.backend import MethodUnavailable
    from explain.foreign import declared_baselines

    md = sv.metadata
    if method.name != "integrated_gradients" or "baseline" in given or md is None or not md.baselines:
        return None
    try:
        out = declared_baselines(md.baselines, sv.backend, f"inputs.{md.input_name}.inputBaselines")
    except MethodUnavailable as err:
        raise FailedPrecondition(f"model {sv.name!r} version {sv.version}: explanation metadata {err}") from None
    resolved["baseline"] = "inputBaselines"
    return out


def explain(
    sv: ServableVersion,
    method_name: str,
    images: np.ndarray,
    ctx: CallContext,
    class_index: Sequence[int] = (),
    top_k: int = 0,
    target_layer: str = "",
    params: Mapping[str, Any] | None = None,
    theta: float | None = None,
    rho: float | None = None,
    params_field: str = "params",
) -> ExplainOutcome:
    """Run one registry method on uint8 ``images`` ``(N, H, W, 3)`` of ``sv``."""
    method = lookup_method(sv, method_name)
    if method.applies_to == "embedding":
        raise FailedPrecondition(
            f"method {method_name!r} compares a query with a reference image; call ExplanationService.SimilarityMap")
    _check_target_layer(sv, target_layer, method)
    resolved, call = resolve_params(method, sv, params or {}, ctx.limits, params_field)
    n = images.shape[0]
    batch_size, queue_s, compute_s = 0, 0.0, 0.0
    if top_k:
        if class_index:
            raise InvalidArgument("give class_index or top_k, not both", "top_k")
        c = sv.num_classes or 0
        if top_k < 0 or top_k > min(c, ctx.limits.max_top_k or c):
            raise InvalidArgument(f"top_k {top_k} is out of range; accepted: 1..{min(c, ctx.limits.max_top_k or c)}", "top_k")
        pre = predict_probabilities(sv, images, ctx)
        batch_size, queue_s, compute_s = pre.batch_size, pre.queue_s, pre.compute_s
        order = np.argsort(-pre.outputs["probabilities"], axis=1, kind="stable")[:, :top_k]
        image_index = np.repeat(np.arange(n, dtype=np.int32), top_k)
        classes = order.reshape(-1).astype(np.int32)
        images = images[image_index]
        resolved["top_k"] = int(top_k)
    else:
        classes = resolve_class_index(class_index, n, sv)
        image_index = np.arange(n, dtype=np.int32)
    if ctx.limits.max_images and images.shape[0] > ctx.limits.max_images:
        raise InvalidArgument(f"{images.shape[0]} rows (images × top_k) exceed the server limit of {ctx.limits.max_images}", "top_k")
    resolved["target_layer"] = sv.target_layer

    if method.kind == "single_pass" and method.name not in sv.signatures:  # a model without a card
        from explain.foreign import run_single_pass

        baselines = _declared_baselines(sv, method, params or {}, resolved)
        start = time.perf_counter()
        out = run_single_pass(method.name, sv.backend, images.astype(np.float32) / 255.0, classes,
                              model_name=sv.name, baselines=baselines,
                              **{k: v.item() if hasattr(v, "item") else v for k, v in call.items()})
        compute_s += time.perf_counter() - start
        batch_size = max(batch_size, images.shape[0])
    elif method.kind == "single_pass":
        inputs: dict[str, Any] = {"images": images, **call}
        if "class_index" in sv.input_specs[method.name]:
            inputs["class_index"] = classes
        run = run_signature(sv, method.name, inputs, ctx, field="images", signature_field="method")
        out = run.outputs
        batch_size = max(batch_size, run.batch_size)
        queue_s += run.queue_s
        compute_s += run.compute_s
    else:
        start = time.perf_counter()
        x = images.astype(np.float32) / 255.0
        out = method.fn(sv.backend, x, class_index=classes, should_continue=ctx.should_continue, **call)
        compute_s += time.perf_counter() - start
        batch_size = max(batch_size, int(resolved.get("batch_size") or images.shape[0]))
    res = as_explanation(out)  # one output shape, whatever the method's dialect
    resolved_classes = res.class_index if res.class_index is not None else np.asarray(classes, np.int32)
    mask = _mask(res.heatmap, theta, rho)
    if theta is not None:
        resolved["theta"] = float(theta)
    if rho is not None:
        resolved["rho"] = float(rho)
    return ExplainOutcome(method.name, res.heatmap, res.heatmap_lowres, res.raw, res.probabilities, resolved_classes,
                          image_index, mask, resolved, res.extras, batch_size, queue_s, compute_s)


# ---------------------------------------------------------------------------- ImportanceMask
@dataclass
class MaskOutcome:
    mask: np.ndarray
    heatmaps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    probabilities: np.ndarray
    class_index: np.ndarray
    params: dict[str, dict[str, Any]]
    batch_size: int
    queue_s: float
    compute_s: float


def importance_mask(
    sv: ServableVersion,
    images: np.ndarray,
    methods: Sequence[str],
    ctx: CallContext,
    class_index: Sequence[int] = (),
    theta: float | None = None,
    rho: float | None = None,
    dilations: int = 0,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> MaskOutcome:
    """Masks of each method (θ-threshold or top-ρ of its normalised heat map, after ``dilations``
    3×3 grey dilations) and their intersection; the class index is resolved once for all methods."""
    from explain import masks as mk

    if sv.kind != "classifier":
        raise FailedPrecondition(f"importance masks need a classifier; model {sv.name!r} is an {sv.kind} model")
    if not methods:
        raise InvalidArgument(f"no methods given; model {sv.name!r} offers {sv.methods}", "methods")
    if len(set(methods)) != len(methods):
        raise InvalidArgument(f"methods {list(methods)} contain duplicates", "methods")
    if (theta is None) == (rho is None):
        raise InvalidArgument("give exactly one of theta (threshold of the normalised map) or rho (top fraction)", "theta")
    if dilations < 0 or (ctx.limits.max_dilations and dilations > ctx.limits.max_dilations):
        raise InvalidArgument(f"dilations {dilations} is out of range; accepted: 0..{ctx.limits.max_dilations}", "dilations")
    method_params = dict(method_params or {})
    unknown = sorted(set(method_params) - set(methods))
    if unknown:
        raise InvalidArgument(f"parameters given for method(s) {unknown} that are not in methods {list(methods)}", "method_params")
    for name in methods:
        lookup_method(sv, name, "methods")
    n = images.shape[0]
    classes = resolve_class_index(class_index, n, sv)
    pre = predict_probabilities(sv, images, ctx)
    probabilities = np.asarray(pre.outputs["probabilities"], np.float32)
    classes = np.where(classes < 0, np.argmax(probabilities, axis=1), classes).astype(np.int32)
    batch_size, queue_s, compute_s = pre.batch_size, pre.queue_s, pre.compute_s
    heatmaps: dict[str, np.ndarray] = {}
    per_method: dict[str, np.ndarray] = {}
    resolved: dict[str, dict[str, Any]] = {}
    for name in methods:
        outcome = explain(sv, name, images, ctx, class_index=classes.tolist(), params=method_params.get(name, {}),
                          params_field=f"method_params[{name!r}]")
        batch_size = max(batch_size, outcome.batch_size)
        queue_s += outcome.queue_s
        compute_s += outcome.compute_s
        heat = outcome.heatmap
        if dilations:
            heat = mk.dilate_heatmap(heat, int(dilations)).astype(np.float32)
        heatmaps[name] = heat
        per_method[name] = _mask(heat, theta, rho)  # type: ignore[assignment]
        resolved[name] = outcome.params
    mask = mk.intersect(*per_method.values())
    mask_params: dict[str, Any] = {"dilations": int(dilations)}
    if theta is not None:
        mask_params["theta"] = float(theta)
    if rho is not None:
        mask_params["rho"] = float(rho)
    resolved["mask"] = mask_params
    return MaskOutcome(mask, heatmaps, per_method, probabilities, classes, resolved, batch_size, queue_s, compute_s)


# ---------------------------------------------------------------------------- SimilarityMap
#: The embedding method of a SimilarityMap request that names none (backward compatible).
DEFAULT_EMBEDDING_METHOD = "similarity_map"
#: Outputs of an embedding method that SimilarityMapResponse carries as fields of their own.
SIMILARITY_FIELDS = ("query_map", "reference_map", "similarity", "query_map_upsampled", "reference_map_upsampled")


@dataclass
class SimilarityOutcome:
    """An embedding method's outputs (``query_map``, ``similarity``, ... and any further ones)."""

    outputs: dict[str, np.ndarray]
    region_score: np.ndarray | None
    batch_size: int
    queue_s: float
    compute_s: float
    method: str = DEFAULT_EMBEDDING_METHOD
    params: dict[str, Any] = field(default_factory=dict)


def region_fractions(region: np.ndarray, n: int, input_hw: tuple[int, int], target_hw: tuple[int, int],
                     field: str = "region") -> np.ndarray:
    """Fraction of each target-layer cell covered by ``region`` ``(H, W)`` or ``(N, H, W)`` → ``(N, h, w)``.

    Area interpolation (``tf.image.resize(method='area')``): a cell's value is the mean of the
    region weights over the input pixels it covers, fractional overlaps weighted.
    """
    import tensorflow as tf

    r = np.asarray(region)
    if r.ndim == 2:
        r = np.broadcast_to(r, (n, *r.shape))
    if r.ndim != 3 or r.shape[0] != n or tuple(r.shape[1:]) != tuple(input_hw):
        raise InvalidArgument(f"region must have shape (H, W) or (N, H, W) = {[n, *input_hw]}; got {list(np.shape(region))}", field)
    if r.dtype.kind not in "biuf":
        raise InvalidArgument(f"region dtype {r.dtype} is not supported; accepted: bool, integers 0/1, floats in [0, 1]", field)
    r = r.astype(np.float32)
    if not np.all(np.isfinite(r)) or r.min() < 0 or r.max() > 1:
        raise InvalidArgument("region values must be finite and in [0, 1]", field)
    out = tf.image.resize(tf.constant(r[..., None]), target_hw, method="area")
    return out.numpy()[..., 0]


def lookup_embedding_method(sv: ServableVersion, name: str, field: str = "method") -> Any:
    """The registry embedding method called ``name`` (empty = ``similarity_map``) for ``sv``.

    Raises:
        FailedPrecondition: ``sv`` is not an embedding model, or it does not offer the method
            (e.g. a version exported before the method was registered; the reason when recorded).
        InvalidArgument: ``name`` is not a registered embedding method; the message lists the
            embedding methods this model offers.
    """
    from explain import registry as methods

    offered = [m for m in sv.methods if methods.get(m).applies_to == "embedding"] if sv.kind == "embedding" else []
    if sv.kind != "embedding" or not offered:
        raise FailedPrecondition(
            f"similarity maps need an embedding model with an embedding method (e.g. a 'similarity_map' signature); "
            f"model {sv.name!r} version {sv.version} is a {sv.kind} (methods: {sv.methods})")
    name = name or DEFAULT_EMBEDDING_METHOD
    try:
        method = methods.get(name)
    except KeyError:
        method = None
    if method is None or method.applies_to != "embedding":
        what = f"unknown method {name!r}" if method is None else f"method {name!r} is a {method.applies_to} method"
        raise InvalidArgument(f"{what}; accepted embedding methods for model {sv.name!r}: {offered}", field)
    if name not in sv.methods:
        why = sv.methods_left_out.get(name)
        raise FailedPrecondition(
            f"method {name!r} is not available for model {sv.name!r} version {sv.version} ({sv.kind})"
            + (f": {why}" if why else "") + f"; available: {offered}")
    return method


def _run_embedding_method(sv: ServableVersion, method: Any, query: np.ndarray, reference: np.ndarray,
                          call: Mapping[str, Any], ctx: CallContext) -> SignatureRun:
    """A single-pass method: its signature (micro-batched); an iterative one: in the service on
    :attr:`ServableVersion.backend` with images in ``[0, 1]`` and the deadline check."""
    if method.kind == "single_pass":
        return run_signature(sv, method.name, {"query_images": query, "reference_images": reference, **call}, ctx,
                             field="query", signature_field="method")
    start = time.perf_counter()
    out = method.fn(sv.backend, query.astype(np.float32) / 255.0, reference.astype(np.float32) / 255.0,
                    should_continue=ctx.should_continue, **call)
    return SignatureRun({k: np.asarray(v) for k, v in out.items() if v is not None}, int(query.shape[0]), 0.0,
                        time.perf_counter() - start)


def similarity(sv: ServableVersion, query: np.ndarray, reference: np.ndarray, ctx: CallContext,
               region: np.ndarray | None = None, method: str = "", params: Mapping[str, Any] | None = None,
               params_field: str = "params") -> SimilarityOutcome:
    """An embedding method on (query, reference) pairs (``reference`` of one image is compared with every query).

    ``method`` is a registry method with ``applies_to="embedding"`` offered by ``sv`` (empty =
    ``similarity_map``); ``params`` are checked against its declarations as :func:`explain`'s are
    (:func:`resolve_params`). A single-pass method runs the exported signature of its name with
    ``query_images``, ``reference_images`` and its declared signature inputs.
    """
    m = lookup_embedding_method(sv, method)
    resolved, call = resolve_params(m, sv, params or {}, ctx.limits, params_field)
    n = query.shape[0]
    if reference.shape[0] == 1 and n > 1:
        reference = np.repeat(reference, n, axis=0)
    if reference.shape[0] != n:
        raise InvalidArgument(f"{reference.shape[0]} reference images for {n} query images; send {n} or 1", "reference")
    run = _run_embedding_method(sv, m, query, reference, call, ctx)
    out = {k: np.asarray(v) for k, v in run.outputs.items()}
    score = None
    if region is not None:
        if "query_map" not in out:
            raise FailedPrecondition(f"method {m.name!r} returns no query_map, so a region cannot be scored")
        qmap = out["query_map"]
        frac = region_fractions(region, n, tuple(sv.input_shape[:2]), tuple(qmap.shape[1:3]))
        score = (qmap.astype(np.float64) * frac).sum(axis=(1, 2)).astype(np.float32)
    return SimilarityOutcome(out, score, run.batch_size, run.queue_s, run.compute_s, m.name, resolved)
