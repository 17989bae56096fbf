"""Validated calls of one SavedModel signature: inputs checked against its specs (names, dtype,
shape, NaN, class index range, server limits), micro-batched, and the call's context (deadline,
cancellation). :mod:`serving.inference` builds the explanation flows on :func:`run_signature`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from explain.checks import ExplainError, check_class_range
from serving.batching import Batcher, BatchResult
from serving.errors import FailedPrecondition, InvalidArgument
from serving.servable import ServableVersion

__all__ = ["Limits", "CallContext", "SignatureRun", "validate_inputs", "signature_missing", "run_signature",
           "predict_probabilities", "check_class_index_values"]


@dataclass(frozen=True)
class Limits:
    """Server limits on requests (0 = no limit)."""

    max_images: int = 256
    max_side: int = 4096
    max_iterative_batch_size: int = 256
    max_top_k: int = 16
    max_dilations: int = 64
    max_input_bytes: int = 64 * 2**20  # decoded size of one request tensor or image batch


@dataclass
class CallContext:
    """Per-request execution context: the batcher, limits and the deadline/cancellation checks."""

    batcher: Batcher
    limits: Limits = field(default_factory=Limits)
    is_active: Callable[[], bool] = lambda: True
    time_remaining: Callable[[], float | None] = lambda: None
    deadline_margin: float = 0.05

    def should_continue(self) -> bool:
        """False once the client cancelled or the deadline is within ``deadline_margin`` seconds."""
        if not self.is_active():
            return False
        remaining = self.time_remaining()
        return remaining is None or remaining > self.deadline_margin

    @classmethod
    def from_grpc(cls, context: Any, batcher: Batcher, limits: Limits, margin: float) -> "CallContext":
        return cls(batcher, limits, context.is_active, context.time_remaining, margin)


@dataclass
class SignatureRun:
    """Outputs of one signature call and how it was batched."""

    outputs: dict[str, np.ndarray]
    batch_size: int
    queue_s: float = 0.0
    compute_s: float = 0.0


# ---------------------------------------------------------------------------- signatures
_INT_KINDS = "iu"


def _cast_input(name: str, value: np.ndarray, spec: Any, where: str, sig_desc: str) -> np.ndarray:
    want = np.dtype(spec.dtype.as_numpy_dtype)
    have = value.dtype
    if have == want:
        return value
    if have.kind in _INT_KINDS and want.kind in _INT_KINDS:
        info = np.iinfo(want)
        if value.size == 0 or (value.min() >= info.min and value.max() <= info.max):
            return value.astype(want)
    if have == np.float64 and want == np.float32:
        return value.astype(np.float32)
    if have == np.bool_ and want == np.bool_:
        return value
    raise InvalidArgument(f"dtype {have.name} is not accepted; {sig_desc} expects {want.name}", where)


def _check_shape(value: np.ndarray, spec: Any, where: str, sig_desc: str) -> None:
    shape = spec.shape
    if shape.rank is None:
        return
    expected = [-1 if d is None else int(d) for d in shape.as_list()]
    if value.ndim != len(expected) or any(e not in (-1, s) for e, s in zip(expected, value.shape)):
        raise InvalidArgument(f"shape {list(value.shape)} is not accepted; {sig_desc} expects {expected} (-1 = any)", where)


def check_class_index_values(values: np.ndarray, sv: ServableVersion, where: str) -> None:
    """Every value must be -1 (predicted) or a class of the model."""
    if sv.num_classes is None:
        return
    try:
        check_class_range(values, sv.num_classes, sv.name)
    except ExplainError as err:
        raise InvalidArgument(str(err), where) from None


def validate_inputs(sv: ServableVersion, signature: str, inputs: Mapping[str, np.ndarray], limits: Limits,
                    field: str = "inputs") -> dict[str, np.ndarray]:
    """Check ``inputs`` against the specs of ``signature``; return them cast to the spec dtypes."""
    specs = sv.input_specs[signature]
    sig_desc = f"signature {signature!r} of model {sv.name!r}"
    missing = sorted(set(specs) - set(inputs))
    extra = sorted(set(inputs) - set(specs))
    if missing:
        raise InvalidArgument(f"missing input(s) {missing}; {sig_desc} takes {sorted(specs)}", field)
    if extra:
        raise InvalidArgument(f"unknown input(s) {extra}; {sig_desc} takes {sorted(specs)}", field)
    out: dict[str, np.ndarray] = {}
    batch: int | None = None
    for name, value in inputs.items():
        where = f"{field}[{name!r}]"
        spec = specs[name]
        value = _cast_input(name, np.asarray(value), spec, where, sig_desc)
        _check_shape(value, spec, where, sig_desc)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise InvalidArgument("the tensor contains NaN or infinity", where)
        if value.ndim == 4:
            if limits.max_side and (value.shape[1] > limits.max_side or value.shape[2] > limits.max_side):
                raise InvalidArgument(
                    f"image size {value.shape[1]}x{value.shape[2]} exceeds the server limit of {limits.max_side} pixels per side", where)
            if tuple(value.shape[1:]) != tuple(sv.input_shape) and value.shape[-1] == 3:
                raise InvalidArgument(
                    f"images have shape {list(value.shape)}; model {sv.name!r} accepts (N, {sv.input_shape[0]}, "
                    f"{sv.input_shape[1]}, {sv.input_shape[2]})", where)
        if spec.shape.rank and spec.shape[0] is None:
            if value.shape[0] == 0:
                raise InvalidArgument("the batch is empty; send at least one example", where)
            if limits.max_images and value.shape[0] > limits.max_images:
                raise InvalidArgument(f"batch of {value.shape[0]} exceeds the server limit of {limits.max_images} per request", where)
            if batch is not None and value.shape[0] != batch:
                raise InvalidArgument(f"batch size {value.shape[0]} differs from the other inputs' {batch}", where)
            batch = int(value.shape[0])
        if name == "class_index":
            check_class_index_values(value, sv, where)
        out[name] = value
    return out


def signature_missing(sv: ServableVersion, signature: str, field: str) -> Exception:
    """The error for a signature the model does not have."""
    from explain import registry as methods

    available = sorted(sv.signatures)
    if signature in methods.names():
        m = methods.get(signature)
        return FailedPrecondition(
            f"method {signature!r} is not available for model {sv.name!r} version {sv.version} ({sv.kind}); "
            f"its signatures: {available}"
            + ("; iterative methods run through explain.v1.ExplanationService.Explain" if m.kind == "iterative" else "")
        )
    return InvalidArgument(f"signature {signature!r} not found in model {sv.name!r} version {sv.version}; accepted: {available}", field)


def run_signature(sv: ServableVersion, signature: str, inputs: Mapping[str, np.ndarray], ctx: CallContext,
                  field: str = "inputs", signature_field: str = "model_spec.signature_name") -> SignatureRun:
    """Validate ``inputs`` and run ``signature`` of ``sv`` through the micro-batcher."""
    if signature not in sv.signatures:
        raise signature_missing(sv, signature, signature_field)
    checked = validate_inputs(sv, signature, inputs, ctx.limits, field)
    specs = sv.input_specs[signature]
    batched = {k: v for k, v in checked.items() if specs[k].shape.rank and specs[k].shape[0] is None}
    fixed = {k: v for k, v in checked.items() if k not in batched}
    fn = sv.signatures[signature]
    out_specs = sv.output_specs[signature]
    batched_outputs = {k for k, s in out_specs.items() if s.shape.rank and s.shape[0] is None}

    def run(x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        result = fn(**{k: tf.constant(v) for k, v in {**x, **fixed}.items()})
        return {k: v.numpy() for k, v in result.items()}

    key = (
        sv.name, sv.version, id(sv), signature,
        tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in batched.items())),
        tuple(sorted((k, v.dtype.str, v.shape, v.tobytes()) for k, v in fixed.items())),
    )
    if not batched:  # nothing to merge along
        start = time.perf_counter()
        outputs = run({})
        return SignatureRun(outputs, 1, 0.0, time.perf_counter() - start)
    remaining = ctx.time_remaining()
    res: BatchResult = ctx.batcher.run(
        key, batched, run, label=(sv.name, signature), batched_outputs=batched_outputs,
        is_active=ctx.is_active, timeout=remaining,
    )
    return SignatureRun(res.outputs, res.batch_size, res.queue_s, res.compute_s)


def _images_input_name(sv: ServableVersion, signature: str = "serving_default") -> str:
    specs = sv.input_specs[signature]
    if "images" in specs:
        return "images"
    return next(iter(specs))


def predict_probabilities(sv: ServableVersion, images: np.ndarray, ctx: CallContext) -> SignatureRun:
    """The serving signature on uint8 images (classifiers: ``probabilities``, ``logits``).

    A model without a card is scored through its backend (the explanation metadata's input
    scale and score output), under the key ``probabilities``."""
    if not sv.card and sv.kind == "classifier":
        start = time.perf_counter()
        probs = sv.backend.predict(images.astype(np.float32) / 255.0)
        return SignatureRun({"probabilities": np.asarray(probs, np.float32)}, int(images.shape[0]), 0.0,
                            time.perf_counter() - start)
    return run_signature(sv, sv.serving_signature, {_images_input_name(sv, sv.serving_signature): images}, ctx,
                         field="images")


# ---------------------------------------------------------------------------- methods and parameters
