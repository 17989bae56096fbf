"""The server's gate: bearer-token authentication, draining at shutdown, in-flight accounting.

One :class:`grpc.ServerInterceptor` in front of every service:

* health (``/grpc.health.v1.Health/*``) always passes, without a token and while draining, so
  load balancers and probes keep working;
* with a token configured, other RPCs need metadata ``authorization: Bearer <token>``
  (compared in constant time); otherwise UNAUTHENTICATED;
* once :meth:`ServerGate.drain` was called, new RPCs get UNAVAILABLE ("shutting down") and
  :meth:`ServerGate.wait_idle` waits for the unary RPCs in flight to finish.
"""

from __future__ import annotations

import hmac
import threading
from typing import Any, Callable

import grpc

__all__ = ["ServerGate", "HEALTH_PREFIX"]

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class _Undecodable:
    """Stands for a request whose bytes are not a valid message of the RPC's request type."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name


def _safe_deserializer(deserialize: Any) -> Any:
    """Wrap a request deserializer so that garbage bytes become :class:`_Undecodable`.

    gRPC answers a deserializer exception with INTERNAL ("Exception deserializing request!");
    a malformed request is the client's error, so the handler answers INVALID_ARGUMENT instead.
    """
    if deserialize is None:
        return None
    owner = getattr(deserialize, "__self__", None)
    type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")

    def safe(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - DecodeError and friends
            return _Undecodable(type_name)

    return safe


def _aborting_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that only aborts."""

    def abort(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    def abort_stream(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)
        yield  # pragma: no cover - makes this a generator

    kw = {"request_deserializer": _safe_deserializer(handler.request_deserializer),
          "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kw)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)


class ServerGate(grpc.ServerInterceptor):
    """Authentication, draining and in-flight counting (see the module docstring)."""

    def __init__(self, token: str | None = None, on_change: Callable[[int], None] | None = None) -> None:
        self._token = token.encode() if token else None
        self._draining = threading.Event()
        self._inflight = 0
        self._cv = threading.Condition()
        self._on_change = on_change

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def drain(self) -> None:
        """Refuse new RPCs from now on (health excepted)."""
        self._draining.set()

    def wait_idle(self, timeout: float | None) -> bool:
        """Wait until no unary RPC is in flight; False if ``timeout`` passed first."""
        with self._cv:
            return self._cv.wait_for(lambda: self._inflight == 0, timeout)

    def _check_token(self, metadata: Any) -> str | None:
        if self._token is None:
            return None
        values = [v for k, v in (metadata or ()) if k == "authorization"]
        if not values:
            return "missing bearer token: send metadata 'authorization: Bearer <token>'"
        value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._token):
            return "invalid bearer token"
        return None

    def check_authorization(self, value: str | None) -> str | None:
        """What is wrong with an HTTP ``Authorization`` header value (``None``: accepted).

        The same bearer-token check as for gRPC metadata (the HTTP side of the server uses it).
        """
        return self._check_token([] if value is None else [("authorization", value)])

    def enter(self) -> bool:
        """Count one (HTTP) request in flight; False, and nothing counted, while draining."""
        with self._cv:
            if self._draining.is_set():
                return False
            self._inflight += 1
        if self._on_change:
            self._on_change(1)
        return True

    def leave(self) -> None:
        """The request counted by :meth:`enter` finished."""
        with self._cv:
            self._inflight -= 1
            self._cv.notify_all()
        if self._on_change:
            self._on_change(-1)

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        problem = self._check_token(details.invocation_metadata)
        if problem is not None:
            return _aborting_handler(handler, grpc.StatusCode.UNAUTHENTICATED, problem)
        if self._draining.is_set():
            return _aborting_handler(handler, grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another replica")
        if not handler.unary_unary:
            return handler
        inner = handler.unary_unary

        def tracked(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"the request is not a valid {request.type_name} protocol buffer message")
            with self._cv:
                if self._draining.is_set():
                    refused = True
                else:
                    refused = False
                    self._inflight += 1
            if refused:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another replica")
            if self._on_change:
                self._on_change(1)
            try:
                return inner(request, context)
            finally:
                with self._cv:
                    self._inflight -= 1
                    self._cv.notify_all()
                if self._on_change:
                    self._on_change(-1)

        return grpc.unary_unary_rpc_method_handler(
            tracked, request_deserializer=_safe_deserializer(handler.request_deserializer),
            response_serializer=handler.response_serializer)
