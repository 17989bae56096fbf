"""Assemble and run the server: :func:`start_server` (embeddable) and :func:`serve` (the CLI).

One gRPC port carries

* ``tensorflow.serving.PredictionService`` and ``tensorflow.serving.ModelService`` (TF Serving's API),
* ``explain.v1.ExplanationService`` (the typed API),
* ``grpc.health.v1.Health`` (overall ``""`` and per service) and server reflection.

Embedding (the evaluation and the tests)::

    from serving.server import start_server
    with start_server("runs/models", port=0) as server:   # 127.0.0.1, a free port
        client = ExplanationClient(server.address)
        ...

With ``rest_port`` (``--rest-port 8501``; -1 = a free port) an HTTP port in the same process
serves TF Serving's REST API, KServe's v1 explain verb, the typed API over JSON and the viewer
page (:mod:`serving.http`), through the same servicers, gate, limits and metrics.

Shutdown (:meth:`RunningServer.stop`, also on SIGTERM in :func:`serve`): health turns
NOT_SERVING, new RPCs get UNAVAILABLE, in-flight RPCs get ``grace`` seconds to finish, then the
port closes and the models are unloaded.

Limits (all options of :class:`serving.config.ServerOptions`): gRPC messages up to
``max_message_bytes`` (default 64 MiB) in both directions — larger ones get RESOURCE_EXHAUSTED
from gRPC itself; ``maximum_concurrent_rpcs`` (default 128) RPCs at once, beyond that
RESOURCE_EXHAUSTED; ``max_request_batch_size`` images per request and ``max_image_side`` pixels
per side (INVALID_ARGUMENT); ``max_enqueued_batches`` per micro-batching queue
(RESOURCE_EXHAUSTED). RPCs run on ``num_threads`` worker threads (health checks share them).

Security: bearer-token authentication (``auth_token`` or ``$EXPLAIN_AUTH_TOKEN``; health is
exempt) and TLS (``tls_cert`` + ``tls_key``; with ``tls_client_ca`` clients must present a
certificate — mutual TLS) are off by default; the CLI warns when it listens beyond loopback
without either.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.batching import Batcher, BatchingOptions
from serving.config import ServerOptions
from serving.explanation_service import ExplanationServicer
from serving.signatures import Limits
from serving.interceptors import ServerGate
from serving.metrics import MetricsHTTPServer, ServingMetrics
from serving.model_service import ModelServicer
from serving.prediction_service import PredictionServicer
from serving.protos.explain.v1 import explain_pb2
from serving.registry import ModelRegistry
from serving.runtime import Runtime

__all__ = ["RunningServer", "start_server", "serve", "SERVICE_NAMES"]

log = logging.getLogger("serving.server")

SERVICE_NAMES = (
    explain_pb2.DESCRIPTOR.services_by_name["ExplanationService"].full_name,
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
)


def _bind_address(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


class RunningServer:
    """A started server (see :func:`start_server`).

    Attributes:
        port: The bound gRPC port.
        host: The bound host.
        address: ``"host:port"`` for clients.
        runtime: Registry, batcher, limits and metrics (for tests and the benchmark).
        metrics_port: Port of ``/metrics`` or ``None``.
        rest_port: The bound HTTP port, or ``None`` when HTTP is off.
        rest_url: ``"http://host:port"`` (``https`` with TLS) for clients, or ``None``.
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options.validate()
        o = self.options
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self.metrics = ServingMetrics()
        registry = ModelRegistry(o.model_root, o.version_policy, o.model_configs(), warmup=o.warmup)
        registry.poll()  # initial load, before the port opens
        batching = BatchingOptions(o.enable_batching, o.max_batch_size, o.batch_timeout_micros,
                                   o.num_batch_threads, o.max_enqueued_batches)
        batcher = Batcher(
            batching,
            on_batch=lambda label, n, r: self.metrics.observe_batch(str(label[0]), str(label[1]), n, r),
            on_reject=lambda label: self.metrics.queue_rejections.inc(str(label[0]), str(label[1])),
        )
        limits = Limits(max_images=o.max_request_batch_size, max_side=o.max_image_side,
                        max_iterative_batch_size=o.max_iterative_batch_size, max_input_bytes=o.max_message_bytes)
        self.runtime = Runtime(registry, batcher, self.metrics, limits, o.deadline_margin_seconds)
        self.metrics.add_gauge(
            "explain_model_versions_available", "Model versions being served.",
            lambda: sum(len(registry.served_versions(n)) for n in registry.model_names()))
        self.gate = ServerGate(o.resolved_auth_token(), on_change=self.metrics.inflight)
        self._executor = futures.ThreadPoolExecutor(max_workers=o.num_threads, thread_name_prefix="grpc")
        self.server = grpc.server(
            self._executor,
            interceptors=[self.gate],
            options=[
                ("grpc.max_receive_message_length", o.max_message_bytes),
                ("grpc.max_send_message_length", o.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=o.maximum_concurrent_rpcs or None,
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.runtime), self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.runtime), self.server)
        from serving.protos.explain.v1 import explain_pb2_grpc

        explain_pb2_grpc.add_ExplanationServiceServicer_to_server(ExplanationServicer(self.runtime), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        bind = _bind_address(o.host, o.port)
        if o.tls_cert:
            key = Path(o.tls_key).read_bytes()
            cert = Path(o.tls_cert).read_bytes()
            ca = Path(o.tls_client_ca).read_bytes() if o.tls_client_ca else None
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
            self.port = self.server.add_secure_port(bind, creds)
        else:
            self.port = self.server.add_insecure_port(bind)
        if not self.port:
            raise OSError(f"cannot bind the gRPC port {bind}")
        self.host = o.host
        connect_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(o.host, o.host)
        self.address = _bind_address(connect_host, self.port)
        self.server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        registry.start_polling(o.file_system_poll_wait_seconds)
        self._metrics_http: MetricsHTTPServer | None = None
        self.metrics_port: int | None = None
        if o.metrics_port:
            self._metrics_http = MetricsHTTPServer(self.metrics, o.metrics_host or o.host, o.metrics_port)
            self.metrics_port = self._metrics_http.port
        self._http: Any = None
        self.rest_port: int | None = None
        self.rest_url: str | None = None
        if o.rest_port:
            self._start_http(connect_host)
        if not _is_loopback(o.host) and not o.resolved_auth_token() and not o.tls_cert:
            log.warning("listening on %s without authentication or TLS", bind)
        logging.getLogger("serving.requests").disabled = not o.log_requests
        log.info("serving %s on %s (models: %s)", ", ".join(SERVICE_NAMES), self.address,
                 {n: sorted(registry.served_versions(n)) for n in registry.model_names()})

    def _start_http(self, connect_host: str) -> None:
        from serving.http import HttpServer, create_app

        o = self.options
        host = o.rest_host or o.host
        ssl: dict[str, Any] = {}
        if o.tls_cert:
            ssl = {"ssl_certfile": o.tls_cert, "ssl_keyfile": o.tls_key}
            if o.tls_client_ca:
                import ssl as _ssl

                ssl.update(ssl_ca_certs=o.tls_client_ca, ssl_cert_reqs=_ssl.CERT_REQUIRED)
        app = create_app(self.runtime, self.gate, o.max_message_bytes)
        try:
            self._http = HttpServer(app, host, max(0, o.rest_port), ssl, o.maximum_concurrent_rpcs or None,
                                    o.grace_period_seconds)
        except OSError:
            self.server.stop(0)
            self.registry.stop()
            raise
        self.rest_port = self._http.port
        if o.rest_host:
            connect_host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(o.rest_host, o.rest_host)
        self.rest_url = f"{'https' if o.tls_cert else 'http'}://{_bind_address(connect_host, self.rest_port)}"
        log.info("serving HTTP (TF Serving REST, KServe v1, JSON API, viewer) on %s", self.rest_url)

    @property
    def registry(self) -> ModelRegistry:
        return self.runtime.registry

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, refuse new RPCs, let in-flight ones finish (``grace`` s), close.

        ``grace=None`` uses ``--grace-period-seconds``. Safe to call more than once.
        """
        with self._stop_lock:
            if self._stopped.is_set():
                return
            grace = self.options.grace_period_seconds if grace is None else float(grace)
            start = time.monotonic()
            self.health.enter_graceful_shutdown()
            self.gate.drain()
            log.info("draining: %d request(s) in flight, grace period %.1f s", self.gate.inflight, grace)
            if not self.gate.wait_idle(grace):
                log.warning("grace period over with %d request(s) still in flight; cancelling them", self.gate.inflight)
            remaining = max(0.0, grace - (time.monotonic() - start))
            if self._http is not None:
                self._http.stop(timeout=max(remaining, 1.0))
            self.server.stop(min(remaining, 1.0)).wait()
            self.registry.stop()
            self.registry.unload_all()
            if self._metrics_http is not None:
                self._metrics_http.stop()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()
            log.info("stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stopped (True) or ``timeout`` passed (False)."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop(grace=self.options.grace_period_seconds if exc[0] is None else 0.0)

    def __repr__(self) -> str:
        return f"RunningServer(address={self.address!r}, rest_url={self.rest_url!r}, models={self.registry.model_names()})"


def start_server(model_root: str | Path, port: int = 0, host: str = "127.0.0.1", **options: Any) -> RunningServer:
    """Start a server in this process (threads) and return it once the models are loaded.

    Args:
        model_root: The model root directory.
        port: gRPC port; 0 picks a free one (see ``RunningServer.port``).
        host: Address to bind (loopback by default).
        **options: Any :class:`serving.config.ServerOptions` field, e.g. ``max_batch_size=8``,
            ``file_system_poll_wait_seconds=0.5``, ``auth_token="..."``, ``enable_batching=False``.
    """
    return RunningServer(ServerOptions(model_root=str(model_root), port=port, host=host, **options))


def serve(options: ServerOptions) -> int:
    """Run until SIGTERM/SIGINT, then stop gracefully (the ``python -m serving`` entry point)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = RunningServer(options)
    print(f"serving on {server.address}" + (f" and {server.rest_url}" if server.rest_url else ""), flush=True)
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0

