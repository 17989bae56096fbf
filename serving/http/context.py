"""A gRPC servicer context for requests that arrived over HTTP.

The servicer methods (wrapped by :func:`serving.errors.rpc_method`) end a failed request with
``context.abort(code, message)``; here that raises :class:`HttpAbort`, which the HTTP wrapper
turns into the HTTP status of ``code`` and ``{"error": message}``.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

__all__ = ["HttpAbort", "HttpContext"]


class HttpAbort(Exception):
    """A servicer method aborted: the gRPC status code and the message for the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HttpContext:
    """What the servicers use of :class:`grpc.ServicerContext`: abort, deadline, liveness, metadata.

    Args:
        metadata: ``(key, value)`` pairs (the HTTP headers the servicers may read).
        timeout: Seconds the request may take (``None`` = no deadline).
        deadline: The deadline as a ``time.monotonic()`` instant (instead of ``timeout``).
    """

    def __init__(self, metadata: tuple[tuple[str, str], ...] = (), timeout: float | None = None,
                 deadline: float | None = None) -> None:
        self._metadata = metadata
        self._deadline = deadline if deadline is not None else None if timeout is None else time.monotonic() + timeout

    def abort(self, code: grpc.StatusCode, details: str) -> Any:
        raise HttpAbort(code, details)

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata
