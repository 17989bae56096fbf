"""The HTTP app (Starlette) and its server thread (uvicorn), started by :mod:`serving.server`.

Routes (all JSON; errors are ``{"error": "..."}`` with the HTTP status of the gRPC code):

==========================================================  =========================================
``GET /``, ``/static/…``                                    the viewer page (no token needed)
``GET /openapi.json``                                       the OpenAPI document (no token needed)
``GET /v1/models``                                          typed ListModels + each method's schema
``POST /v1/explain``, ``/v1/similarity``, ``/v1/masks``     typed Explain, SimilarityMap, ImportanceMask
``GET /v1/scenes?size=S``                                   built-in synthetic scenes (PNG, base64)
``GET /v1/models/NAME[/versions/V|/labels/L][/metadata]``   TF Serving status (+ KServe readiness), metadata
``POST /v1/models/NAME[/versions/V|/labels/L]:predict``     TF Serving predict (row and columnar)
``POST /v1/models/NAME[/versions/V|/labels/L]:explain``     KServe v1 explain
==========================================================  =========================================

Every request passes :func:`_endpoint`, the one wrapper: bearer token (the gRPC gate's check),
refusal while draining (503), in-flight accounting for the graceful stop, the body limit
(``max_message_bytes``; 413 beyond), the request deadline (``X-Request-Timeout`` / ``?timeout=``,
:mod:`serving.http.deadline`; 504 beyond), JSON parsing, and the error map.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from serving.errors import DeadlineExceeded, InvalidArgument, http_status, status_for
from serving.explanation_service import ExplanationServicer
from serving.http.context import HttpAbort, HttpContext
from serving.http.deadline import current_deadline, request_deadline, run_with_deadline, timeout_message
from serving.interceptors import ServerGate
from serving.model_service import ModelServicer
from serving.prediction_service import PredictionServicer
from serving.runtime import Runtime

__all__ = ["Api", "create_app", "HttpServer", "parse_json", "json_response", "STATIC_DIR"]

log = logging.getLogger("serving.http")
STATIC_DIR = Path(__file__).parent / "static"


class BodyTooLarge(Exception):
    """The request body exceeds the server limit (``complete``: the whole body was read anyway)."""

    def __init__(self, message: str, complete: bool) -> None:
        super().__init__(message)
        self.complete = complete


def json_response(status: int, body: Any) -> Response:
    """A compact JSON response (NaN/Infinity written as TF Serving writes them)."""
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message})


def parse_json(raw: bytes) -> Any:
    """The request body as JSON; :class:`InvalidArgument` naming the position of a syntax error."""
    if not raw.strip():
        raise InvalidArgument("the body is empty; send a JSON object", "body")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidArgument("the body is not UTF-8 text", "body") from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", "body") from None
    except RecursionError:
        raise InvalidArgument("the body nests JSON arrays or objects too deeply (accepted: a few hundred levels)", "body") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidArgument(f"the body is not acceptable JSON: {str(exc)[:200]}", "body") from None


class Api:
    """What the routes share: the runtime, the gate and servicers over the same runtime as gRPC."""

    def __init__(self, runtime: Runtime, gate: ServerGate, max_body_bytes: int) -> None:
        self.runtime = runtime
        self.gate = gate
        self.max_body_bytes = max_body_bytes
        self.prediction = PredictionServicer(runtime)
        self.model = ModelServicer(runtime)
        self.explanation = ExplanationServicer(runtime)

    def call(self, method: Callable[[Any, Any], Any], request: Any) -> Any:
        """Run a servicer method (wrapped by :func:`serving.errors.rpc_method`) for an HTTP request
        (with the request's deadline, :func:`serving.http.deadline.current_deadline`)."""
        return method(request, HttpContext(deadline=current_deadline()))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body of {int(declared):,} bytes exceeds the server limit of {limit:,} bytes "
                           "(--max-message-bytes)", complete=False)
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise InvalidArgument("the client closed the connection before the body was complete", "body")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the request body exceeds the server limit of {limit:,} bytes (--max-message-bytes)",
                               complete=not more)
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


async def _discard(request: Request, limit: int) -> None:
    """Read and drop a body we answer without (401, 413), so the client is not reset mid-send;
    at most ``limit`` bytes, then the connection may close."""
    size = 0
    try:
        while size <= limit:
            message = await request.receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
    except Exception:  # noqa: BLE001 - the client went away; nothing to answer
        return


Handler = Callable[[Api, Request, bytes], Any]


def _leave_when_done(gate: ServerGate) -> Callable[[asyncio.Future], None]:
    """A done-callback for a handler answered 504 while its thread still runs: count it out then."""

    def done(future: asyncio.Future) -> None:
        if not future.cancelled():
            future.exception()  # retrieved: asyncio does not log it; the servicer logged it already
        gate.leave()

    return done


def _endpoint(api: Api, handler: Handler, public: bool = False) -> Callable[[Request], Any]:
    """Wrap ``handler(api, request, body) -> JSON-able | Response``, run on a worker thread."""

    async def endpoint(request: Request) -> Response:
        start, arrived = time.perf_counter(), time.monotonic()
        if not public:
            problem = api.gate.check_authorization(request.headers.get("authorization"))
            if problem is not None:
                await _discard(request, api.max_body_bytes)
                return _error(401, problem.replace("metadata 'authorization", "header 'Authorization"))
        if not api.gate.enter():
            return _error(503, "the server is shutting down; retry on another replica")
        leave = True
        try:
            deadline, timeout = request_deadline(request.headers, request.query_params, arrived)
            body = await _read_body(request, api.max_body_bytes) if request.method == "POST" else b""
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(timeout_message(timeout))
            work = asyncio.ensure_future(run_in_threadpool(run_with_deadline, deadline, handler, api, request, body))
            if deadline is not None:
                await asyncio.wait({work}, timeout=max(0.0, deadline - time.monotonic()))
                if not work.done():  # answer at the deadline; the thread ends at its next check
                    leave = False
                    work.add_done_callback(_leave_when_done(api.gate))
                    raise DeadlineExceeded(timeout_message(timeout))
            result = await work
            return result if isinstance(result, Response) else json_response(200, result)
        except BodyTooLarge as exc:
            if not exc.complete:
                await _discard(request, 2 * api.max_body_bytes)
            return _error(413, str(exc))
        except HttpAbort as exc:  # the servicer logged and measured it already
            return _error(http_status(exc.code), exc.message)
        except Exception as exc:  # noqa: BLE001 - decoding errors before the servicer; nothing escapes
            code, message = status_for(exc)
            log.warning("http %s %s status=%s ms=%.1f error=%r", request.method, request.url.path, code.name,
                        (time.perf_counter() - start) * 1e3, message)
            return _error(http_status(code), message)
        finally:
            if leave:
                api.gate.leave()

    return endpoint


def _index(api: Api, request: Request, body: bytes) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


def create_app(runtime: Runtime, gate: ServerGate, max_body_bytes: int) -> Starlette:
    """The Starlette app of one server (see the module docstring for the routes)."""
    from serving.http import kserve, typed

    api = Api(runtime, gate, max_body_bytes)

    def route(path: str, handler: Handler, methods: list[str], public: bool = False) -> Route:
        return Route(path, _endpoint(api, handler, public), methods=methods)

    routes = [
        route("/", _index, ["GET"], public=True),
        route("/openapi.json", typed.openapi_handler, ["GET"], public=True),
        route("/v1/models", typed.list_models_handler, ["GET"]),
        route("/v1/explain", typed.explain_handler, ["POST"]),
        route("/v1/similarity", typed.similarity_handler, ["POST"]),
        route("/v1/masks", typed.masks_handler, ["POST"]),
        route("/v1/scenes", typed.scenes_handler, ["GET"]),
        route("/v1/models/{rest:path}", kserve.models_path_handler, ["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes)

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(404, f"no route for {request.method} {request.url.path}; see /openapi.json")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _error(405, f"method {request.method} is not allowed on {request.url.path}")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    return app


class HttpServer:
    """uvicorn serving ``app`` on a thread with its own event loop; :meth:`stop` ends it gracefully.

    Args:
        app: The ASGI app.
        host: Address to bind.
        port: Port; 0 picks a free one (see :attr:`port`).
        ssl: uvicorn's ``ssl_certfile``/``ssl_keyfile``/``ssl_ca_certs``/``ssl_cert_reqs`` (TLS).
        limit_concurrency: Connections and tasks at once before uvicorn answers 503 (``None`` = no limit).
        grace: Seconds open connections get to finish at :meth:`stop`.
    """

    def __init__(self, app: Any, host: str, port: int, ssl: dict[str, Any] | None = None,
                 limit_concurrency: int | None = None, grace: float = 5.0) -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host.strip("[]"), port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"cannot bind the HTTP port {host}:{port}: {exc}") from exc
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off",
                                limit_concurrency=limit_concurrency, timeout_graceful_shutdown=max(1, int(grace)),
                                **(ssl or {}))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise OSError(f"the HTTP server on {host}:{port} did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let open requests finish (uvicorn's graceful shutdown), join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()
