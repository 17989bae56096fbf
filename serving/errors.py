"""Domain exceptions of the service and the one place that maps exceptions to gRPC status codes.

Library code (the registry, the converters, the inference functions) raises the exceptions below,
or the ``explain`` package's own (:class:`explain.view.ExplainError`,
:class:`explain.backend.MethodUnavailable`, :class:`explain.backend.Cancelled`). Every servicer
method is wrapped in :func:`rpc_method`, which

* maps the exception to a status code and a message (:func:`status_for`):

  ==========================================  ====================================================
  exception                                   status
  ==========================================  ====================================================
  :class:`InvalidArgument`, ``ExplainError``  INVALID_ARGUMENT (shape, dtype, NaN, class index, ...)
  :class:`NotFound`                           NOT_FOUND (model, version, label)
  :class:`FailedPrecondition`,                FAILED_PRECONDITION (method not available for the
  ``MethodUnavailable``                       model)
  :class:`ResourceExhausted`                  RESOURCE_EXHAUSTED (queue full)
  :class:`Unavailable`                        UNAVAILABLE (loading, draining)
  ``Cancelled``                               DEADLINE_EXCEEDED if the deadline passed, else
                                              CANCELLED (the client went away)
  ``tf.errors.InvalidArgumentError``          INVALID_ARGUMENT (a graph assertion; sanitised)
  anything else                               INTERNAL "internal error (reference …)"; the
                                              traceback goes to the server log only
  ==========================================  ====================================================

* logs one line per request (rpc, model, version, method, batch, status, milliseconds) and
  records the request in the metrics (:class:`serving.metrics.ServingMetrics`).

No exception escapes a servicer method except gRPC's own abort, so no request can crash the server.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import grpc

__all__ = [
    "ServingError",
    "InvalidArgument",
    "NotFound",
    "FailedPrecondition",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Unimplemented",
    "RequestRecord",
    "current_record",
    "status_for",
    "rpc_method",
    "HTTP_STATUS",
    "http_status",
]

log = logging.getLogger("serving.requests")
_internal_log = logging.getLogger("serving.errors")


class ServingError(Exception):
    """Base of the service's domain exceptions: a status code and a message for the client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    """A bad request field; the message names the field, the value and what is accepted."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class NotFound(ServingError):
    """Unknown model, version or version label."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    """The request is valid but the model cannot serve it (e.g. a similarity map on a classifier)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServingError):
    """A bounded queue is full; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServingError):
    """The server or the model is not ready (loading, shutting down)."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServingError):
    """The request's deadline passed before it finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(ServingError):
    """An RPC of the TF Serving API this server does not implement."""

    code = grpc.StatusCode.UNIMPLEMENTED


@dataclass
class RequestRecord:
    """What the request log line and the metrics say about one RPC; servicers fill it in."""

    rpc: str
    model: str = ""
    version: int | None = None
    method: str = ""
    batch: int | None = None

    def describe(self) -> str:
        version = "" if self.version is None else str(self.version)
        batch = "" if self.batch is None else str(self.batch)
        return f"rpc={self.rpc} model={self.model or '-'} version={version or '-'} method={self.method or '-'} batch={batch or '-'}"


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("serving_request", default=None)


def current_record() -> RequestRecord:
    """The :class:`RequestRecord` of the RPC running in this thread (a throw-away one outside RPCs)."""
    record = _current.get()
    return record if record is not None else RequestRecord(rpc="")


def _deadline_passed(context: grpc.ServicerContext | None, margin: float = 0.0) -> bool:
    if context is None:
        return False
    remaining = context.time_remaining()
    return remaining is not None and remaining <= margin + 1e-3


def _sanitise_tf_message(message: str) -> str:
    """First line of a TensorFlow error without graph internals (node names, stack traces).

    A graph assertion (``tf.debugging.Assert``) is reported by its own message, e.g. ``steps 0 is
    out of range; accepted: 1..1024``, wherever it sits in the error text.
    """
    asserted = re.search(r"assertion failed: \[([^\]]*)\]", message)
    if asserted and asserted.group(1).strip():  # TensorFlow C-escapes the assertion's strings
        text = asserted.group(1).strip().replace("\\'", "'").replace('\\"', '"')
        return text[:300]
    first = message.strip().splitlines()[0] if message.strip() else "the model rejected the inputs"
    for marker in (" [[", "\t[[", " [Op:", "Graph execution error", "Detected at node"):
        cut = first.find(marker)
        if cut > 0:
            first = first[:cut]
    return first.strip()[:300]


def status_for(exc: BaseException, context: grpc.ServicerContext | None = None) -> tuple[grpc.StatusCode, str]:
    """The ``(status code, message)`` for an exception raised while serving a request.

    Unknown exceptions are logged with their traceback under a reference id and answered as
    ``INTERNAL`` with only that reference in the message.
    """
    from explain.backend import Cancelled, MethodUnavailable  # local: keeps this module light
    from explain.view import ExplainError

    if isinstance(exc, ServingError):
        return exc.code, exc.message
    if isinstance(exc, Cancelled):
        if context is not None and not _deadline_passed(context, 0.0) and not context.is_active():
            return grpc.StatusCode.CANCELLED, "the client cancelled the request"
        return grpc.StatusCode.DEADLINE_EXCEEDED, f"deadline exceeded: {exc}" if str(exc) else "deadline exceeded"
    if isinstance(exc, MethodUnavailable):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ExplainError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    try:
        import tensorflow as tf

        if isinstance(exc, tf.errors.InvalidArgumentError):
            return grpc.StatusCode.INVALID_ARGUMENT, f"the model rejected the inputs: {_sanitise_tf_message(exc.message)}"
        if isinstance(exc, tf.errors.ResourceExhaustedError):
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "out of memory running the model; send a smaller batch"
    except ImportError:  # pragma: no cover - TensorFlow is a dependency
        pass
    reference = uuid.uuid4().hex[:12]
    _internal_log.error("internal error (reference %s)", reference, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (reference {reference}); see the server log"


# The HTTP side (serving/http) answers with the status of the same gRPC code, as TF Serving's REST
# server does (tensorflow_serving/model_servers/http_server.cc, ToHTTPStatusCode).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC status code (TF Serving's REST mapping; 500 for anything unknown)."""
    return HTTP_STATUS.get(code, 500)


F = TypeVar("F", bound=Callable[..., Any])


def _model_name(request: Any) -> str:
    for attr in ("model_spec", "model"):
        spec = getattr(request, attr, None)
        name = getattr(spec, "name", None)
        if isinstance(name, str):
            return name
    return ""


def rpc_method(fn: F) -> F:
    """Wrap a servicer method ``(self, request, context) -> response``: map errors, log, measure.

    The servicer's ``telemetry`` attribute (a :class:`serving.metrics.ServingMetrics` or ``None``)
    receives one observation per request. Inside the method, :func:`current_record` returns the
    record to annotate (model version, method, executed batch size).
    """
    rpc = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        record = RequestRecord(rpc=rpc, model=_model_name(request))
        token = _current.set(record)
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        message = ""
        try:
            return fn(self, request, context)
        except Exception as exc:  # noqa: BLE001 - this is the one place that catches everything
            code, message = status_for(exc, context)
        finally:
            _current.reset(token)
            elapsed = time.perf_counter() - start
            telemetry = getattr(self, "telemetry", None)
            if telemetry is not None:
                try:
                    telemetry.observe_request(record, code, elapsed)
                except Exception:  # noqa: BLE001 - metrics must never fail a request
                    _internal_log.exception("recording metrics failed")
            level = logging.INFO if code == grpc.StatusCode.OK else logging.WARNING
            if code == grpc.StatusCode.INTERNAL:
                level = logging.ERROR
            log.log(level, "%s status=%s ms=%.1f%s", record.describe(), code.name, elapsed * 1e3,
                    f" error={message!r}" if message else "")
        context.abort(code, message)  # raises; outside `finally` so the log line comes first

    return wrapper  # type: ignore[return-value]
