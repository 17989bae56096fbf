"""Request deadlines over HTTP: the ``X-Request-Timeout`` header or the ``?timeout=`` parameter.

A gRPC call carries its deadline; an HTTP request states one in seconds, as a header
(``X-Request-Timeout: 2.5``) or a query parameter (``POST /v1/models/m:predict?timeout=2.5``);
when both are given the smaller one applies. The deadline starts when the request arrives (reading
the body counts) and works as a gRPC deadline does (:class:`serving.signatures.CallContext`):

* the servicer sees it through :meth:`serving.http.context.HttpContext.time_remaining`, so the
  micro-batching queue gives up waiting at the deadline and the iterative methods (occlusion,
  RISE, Score-CAM …) stop at their next ``should_continue`` check;
* the client is answered ``504`` with TF Serving's ``{"error": "deadline exceeded …"}`` at the
  deadline, even when a forward pass that cannot be interrupted is still running (its thread
  finishes in the background and still counts as in flight for the graceful stop).

Without either, a request has no deadline (as a gRPC call without one).
"""

from __future__ import annotations

import contextvars
import math
from typing import Any, Callable, Mapping

from serving.errors import InvalidArgument

__all__ = ["HEADER", "QUERY", "MAX_TIMEOUT_S", "parse_timeout", "request_deadline", "current_deadline",
           "run_with_deadline", "timeout_message"]

HEADER = "X-Request-Timeout"
QUERY = "timeout"
MAX_TIMEOUT_S = 86400.0

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("http_deadline", default=None)


def parse_timeout(text: str, where: str) -> float:
    """Seconds of a timeout value; :class:`InvalidArgument` naming the value and the accepted range."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise InvalidArgument(f"{where} {text[:40]!r} is not a timeout; accepted: a number of seconds "
                              f"> 0 and <= {MAX_TIMEOUT_S:g} (e.g. 2.5)", where)
    return value


def request_deadline(headers: Mapping[str, str], query: Mapping[str, str], start: float) -> tuple[float | None, float | None]:
    """``(deadline, timeout)`` of a request that arrived at ``start`` (``time.monotonic()``).

    Both are ``None`` when the request states no timeout.
    """
    timeouts = []
    if headers.get(HEADER) is not None:
        timeouts.append(parse_timeout(headers[HEADER], f"header {HEADER}"))
    if query.get(QUERY) is not None:
        timeouts.append(parse_timeout(query[QUERY], f"query parameter {QUERY!r}"))
    if not timeouts:
        return None, None
    timeout = min(timeouts)
    return start + timeout, timeout


def current_deadline() -> float | None:
    """The deadline (``time.monotonic()`` seconds) of the HTTP request this thread serves, if any."""
    return _deadline.get()


def run_with_deadline(deadline: float | None, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with :func:`current_deadline` returning ``deadline`` (run on the worker thread)."""
    token = _deadline.set(deadline)
    try:
        return fn(*args)
    finally:
        _deadline.reset(token)


def timeout_message(timeout: float) -> str:
    """The 504 message of a request that ran past its ``timeout`` seconds."""
    return (f"deadline exceeded: the request did not finish within its timeout of {timeout:g} s "
            f"({HEADER} header / ?{QUERY}= parameter)")

