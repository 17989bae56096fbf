"""Prometheus-format metrics: a few counters and histograms, and a tiny HTTP endpoint.

No dependency on ``prometheus_client``: the text exposition format is simple, and the service
needs only labelled counters, gauges and histograms. ``GET /metrics`` on ``--metrics-port``
(0 = off) returns :meth:`ServingMetrics.render`.

Series:

* ``explain_requests_total{rpc,model,method,code}`` — requests by outcome;
* ``explain_request_latency_seconds{rpc,model,method}`` — latency histogram;
* ``explain_batch_size{model,signature}`` — sizes of the executed (micro-)batches, in images;
* ``explain_batch_requests{model,signature}`` — requests merged into each executed batch;
* ``explain_queue_rejections_total{model,signature}`` — RESOURCE_EXHAUSTED answers of a full queue;
* ``explain_inflight_requests`` and ``explain_model_versions_available`` — gauges.
"""

from __future__ import annotations

import bisect
import http.server
import threading
from typing import Any, Callable, Iterable, Sequence

import grpc

__all__ = ["Counter", "Histogram", "Gauge", "ServingMetrics", "MetricsHTTPServer", "parse_text"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    """A monotonically increasing value per label combination."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(self.label_names, labels)} {value:g}"


class Gauge:
    """A value read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self._read = name, help, read

    def samples(self) -> Iterable[str]:
        yield f"{self.name} {float(self._read()):g}"


class Histogram:
    """Cumulative buckets, sum and count per label combination."""

    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.buckets = tuple(float(b) for b in buckets)
        self._data: dict[tuple[str, ...], list[float]] = {}  # per bucket counts, then +Inf, sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            row = self._data.setdefault(labels, [0.0] * (len(self.buckets) + 3))
            row[bisect.bisect_left(self.buckets, value)] += 1
            row[-2] += value
            row[-1] += 1

    def count(self, *labels: str) -> int:
        with self._lock:
            row = self._data.get(labels)
            return int(row[-1]) if row else 0

    def counts_by_value(self, *labels: str) -> dict[float, int]:
        """Non-cumulative observation counts per bucket upper bound (``inf`` for the last)."""
        with self._lock:
            row = list(self._data.get(labels, [0.0] * (len(self.buckets) + 3)))
        bounds = [*self.buckets, float("inf")]
        return {b: int(c) for b, c in zip(bounds, row[: len(bounds)]) if c}

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        for labels, row in items:
            cumulative = 0.0
            for bound, c in zip([*self.buckets, float("inf")], row):
                cumulative += c
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                label_text = _labels(self.label_names, labels, 'le="' + le + '"')
                yield f"{self.name}_bucket{label_text} {cumulative:g}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {row[-2]:g}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {row[-1]:g}"


class ServingMetrics:
    """The service's metrics (one instance per server)."""

    def __init__(self) -> None:
        self.requests = Counter("explain_requests_total", "RPCs by outcome.", ("rpc", "model", "method", "code"))
        self.latency = Histogram(
            "explain_request_latency_seconds", "RPC latency inside the server.", ("rpc", "model", "method"), LATENCY_BUCKETS
        )
        self.batch_size = Histogram(
            "explain_batch_size", "Images per executed (micro-)batch.", ("model", "signature"), BATCH_BUCKETS
        )
        self.batch_requests = Histogram(
            "explain_batch_requests", "Requests merged into each executed batch.", ("model", "signature"), BATCH_BUCKETS
        )
        self.queue_rejections = Counter(
            "explain_queue_rejections_total", "Requests refused because a batch queue was full.", ("model", "signature")
        )
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._gauges: list[Gauge] = [
            Gauge("explain_inflight_requests", "RPCs being served now.", lambda: self._inflight),
        ]

    # -------------------------------------------------------------- observations
    def observe_request(self, record: Any, code: grpc.StatusCode, seconds: float) -> None:
        """One finished RPC (called by :func:`serving.errors.rpc_method`)."""
        self.requests.inc(record.rpc, record.model, record.method, code.name)
        self.latency.observe(seconds, record.rpc, record.model, record.method)

    def observe_batch(self, model: str, signature: str, images: int, requests: int) -> None:
        """One executed batch (called by :class:`serving.batching.Batcher`)."""
        self.batch_size.observe(images, model, signature)
        self.batch_requests.observe(requests, model, signature)

    def add_gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help, read))

    def inflight(self, delta: int) -> None:
        with self._inflight_lock:
            self._inflight += delta

    # -------------------------------------------------------------- exposition
    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4)."""
        lines: list[str] = []
        for metric in (self.requests, self.latency, self.batch_size, self.batch_requests, self.queue_rejections, *self._gauges):
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


def parse_text(text: str) -> dict[str, float]:
    """Parse an exposition into ``{'name{labels}': value}`` (for tests and the benchmark)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out


class MetricsHTTPServer:
    """``GET /metrics`` on a daemon thread (``http.server``); ``port=0`` picks a free port."""

    def __init__(self, metrics: ServingMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        render = metrics.render

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
