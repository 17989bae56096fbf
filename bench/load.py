"""A gRPC load generator (``grpc.aio``) for the explanation service.

It drives a running server with a mix of requests from ``c`` concurrent clients for a bounded
time per concurrency level and reports, per level and per request kind, the throughput, the
p50/p95/p99 latency and the status-code distribution; with the server's process id it also
reads the server's resident memory (``VmRSS`` in ``/proc/<pid>/status``) after the warm-up and
after the run, and its peak (``VmHWM``).

Request kinds (:data:`KINDS`):

* ``predict`` — ``tensorflow.serving.PredictionService/Predict``, ``serving_default``;
* ``gradcam_predict`` — the same RPC with ``signature_name: "gradcam"`` (a stock TF Serving client);
* ``gradcam_explain`` — ``explain.v1.ExplanationService/Explain``, method ``gradcam``;
* ``similarity`` — ``explain.v1.ExplanationService/SimilarityMap`` on the embedding model;
* ``occlusion`` — ``Explain`` with method ``occlusion`` (iterative, runs in the server).

Requests are serialised once and sent as bytes, and responses are not parsed (only their size
is checked), so the generator spends little CPU per call: on a shared machine the figures are
the server's. Every request has a deadline (``request_timeout``); a worker that gets an error
keeps going. Concurrency ``c`` = ``c`` asyncio tasks on one HTTP/2 channel (gRPC multiplexes
the streams).

Used by ``python -m bench.run_load`` (the CLI, which can start its own server) and by
``tests/test_reliability_load.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import grpc
import numpy as np

__all__ = [
    "KINDS",
    "DEFAULT_MIX",
    "LoadConfig",
    "KindStats",
    "LevelResult",
    "LoadReport",
    "percentile",
    "summarise",
    "read_memory_kib",
    "run_load",
    "LoadGenerator",
]

KINDS = ("predict", "gradcam_predict", "gradcam_explain", "similarity", "occlusion")
DEFAULT_MIX = {"predict": 3.0, "gradcam_predict": 2.0, "gradcam_explain": 2.0, "similarity": 2.0, "occlusion": 1.0}
#: Codes that are not errors under load: OK, and the refusal a bounded queue promises.
EXPECTED_CODES = ("OK", "RESOURCE_EXHAUSTED")

_PATHS = {
    "predict": "/tensorflow.serving.PredictionService/Predict",
    "gradcam_predict": "/tensorflow.serving.PredictionService/Predict",
    "gradcam_explain": "/explain.v1.ExplanationService/Explain",
    "similarity": "/explain.v1.ExplanationService/SimilarityMap",
    "occlusion": "/explain.v1.ExplanationService/Explain",
}


@dataclass
class LoadConfig:
    """What to send, how hard and for how long.

    Attributes:
        address: ``host:port`` of the server (loopback in the tests).
        classifier: Classifier model for predict / Grad-CAM / occlusion.
        embedding: Embedding model for similarity maps (``None``: no similarity requests).
        concurrency: Concurrent clients per level, e.g. ``(1, 4, 16, 64)``.
        seconds_per_level: Traffic time of each level.
        warmup_seconds: Traffic before the measured levels (half at concurrency 1 through every
            kind, half at the highest level), so that memory after warm-up is the steady state.
        mix: Relative weights of the request kinds.
        images_per_request: Batch size of each request.
        request_timeout: Deadline of each request, seconds.
        occlusion_params: Parameters of the occlusion requests (kept small: bounded work).
        token: Bearer token, if the server requires one.
        seed: Seed of the images and of each worker's choice of kinds.
        pool: Distinct image batches per kind (requests cycle through them).
    """

    address: str
    classifier: str = "simpler"
    embedding: str | None = "embed"
    concurrency: Sequence[int] = (1, 4, 16, 64)
    seconds_per_level: float = 12.0
    warmup_seconds: float = 6.0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    images_per_request: int = 1
    request_timeout: float = 60.0
    occlusion_params: Mapping[str, Any] = field(default_factory=lambda: {"patch_size_at_224": 56})
    token: str | None = None
    seed: int = 0
    pool: int = 8

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["concurrency"] = list(self.concurrency)
        d["mix"] = dict(self.mix)
        d["occlusion_params"] = dict(self.occlusion_params)
        d.pop("token", None)
        return d


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100, linear interpolation); NaN for no values."""
    if not len(values):
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass
class KindStats:
    requests: int
    codes: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass
class LevelResult:
    """One concurrency level: every finished request, summarised."""

    concurrency: int
    seconds: float  # from the first request to the last answer
    requests: int
    throughput: float  # answers per second (every status)
    ok_throughput: float  # OK answers per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    codes: dict[str, int]
    kinds: dict[str, KindStats]


def summarise(concurrency: int, samples: Sequence[tuple[str, str, float]], seconds: float) -> LevelResult:
    """Summarise ``(kind, code name, latency seconds)`` samples of one level."""
    lat = [s[2] * 1e3 for s in samples]
    codes = Counter(s[1] for s in samples)
    kinds: dict[str, KindStats] = {}
    for kind in sorted({s[0] for s in samples}):
        ks = [s for s in samples if s[0] == kind]
        kl = [s[2] * 1e3 for s in ks]
        kinds[kind] = KindStats(len(ks), dict(Counter(s[1] for s in ks)), percentile(kl, 50), percentile(kl, 95),
                                percentile(kl, 99))
    seconds = max(seconds, 1e-9)
    return LevelResult(concurrency, seconds, len(samples), len(samples) / seconds, codes.get("OK", 0) / seconds,
                       percentile(lat, 50), percentile(lat, 95), percentile(lat, 99), dict(codes), kinds)


@dataclass
class LoadReport:
    """The whole run: configuration, levels, memory and the verdict."""

    config: dict[str, Any]
    levels: list[LevelResult]
    warmup: LevelResult | None
    rss_after_warmup_kib: int | None
    rss_after_kib: int | None
    peak_rss_kib: int | None
    started: str = ""

    @property
    def codes(self) -> dict[str, int]:
        total: Counter = Counter()
        for level in self.levels:
            total.update(level.codes)
        return dict(total)

    @property
    def requests(self) -> int:
        return sum(level.requests for level in self.levels)

    @property
    def errors(self) -> dict[str, int]:
        """Codes other than OK and RESOURCE_EXHAUSTED (the target is none)."""
        return {k: v for k, v in self.codes.items() if k not in EXPECTED_CODES}

    @property
    def memory_growth(self) -> float | None:
        """``rss_after / rss_after_warmup - 1`` (the target is ≤ 0.10)."""
        if not self.rss_after_warmup_kib or self.rss_after_kib is None:
            return None
        return self.rss_after_kib / self.rss_after_warmup_kib - 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "started": self.started,
            "levels": [dataclasses.asdict(level) for level in self.levels],
            "warmup": dataclasses.asdict(self.warmup) if self.warmup else None,
            "requests": self.requests,
            "codes": self.codes,
            "errors": self.errors,
            "rss_after_warmup_kib": self.rss_after_warmup_kib,
            "rss_after_kib": self.rss_after_kib,
            "peak_rss_kib": self.peak_rss_kib,
            "memory_growth": self.memory_growth,
        }

    def table(self) -> str:
        """A plain-text table of the levels."""
        rows = [f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  codes"]
        for lv in self.levels:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(lv.codes.items()))
            rows.append(f"{lv.concurrency:>7} {lv.requests:>8} {lv.throughput:>7.1f} {lv.p50_ms:>8.1f} {lv.p95_ms:>8.1f} "
                        f"{lv.p99_ms:>8.1f}  {codes}")
        if self.memory_growth is not None:
            rows.append(f"server RSS after warm-up {self.rss_after_warmup_kib / 1024:.0f} MiB, after the run "
                        f"{self.rss_after_kib / 1024:.0f} MiB ({self.memory_growth:+.1%}), peak {self.peak_rss_kib / 1024:.0f} MiB")
        return "\n".join(rows)


def read_memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in KiB (``/proc/<pid>/status``)."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


# ---------------------------------------------------------------------------- the generator
class LoadGenerator:
    """Builds the requests once and sends them from asyncio workers."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.mix = {k: float(w) for k, w in config.mix.items() if w > 0}
        unknown = sorted(set(self.mix) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown request kind(s) {unknown}; accepted: {list(KINDS)}")
        if not config.embedding:
            self.mix.pop("similarity", None)
        if not self.mix:
            raise ValueError("the mix has no request kind with a positive weight")
        self.payloads: dict[str, list[bytes]] = {}
        self.metadata = (("authorization", f"Bearer {config.token}"),) if config.token else None

    def _build(self, input_sizes: Mapping[str, tuple[int, int, int]]) -> None:
        from tensorflow_serving.apis import predict_pb2

        from serving import convert
        from serving.protos.explain.v1 import explain_pb2 as pb

        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = cfg.images_per_request

        def images(model: str) -> np.ndarray:
            h, w, ch = input_sizes[model]
            return rng.integers(0, 256, size=(n, h, w, ch), dtype=np.uint8)

        for kind in self.mix:
            batch = []
            for _ in range(cfg.pool):
                if kind in ("predict", "gradcam_predict"):
                    req = predict_pb2.PredictRequest()
                    req.model_spec.name = cfg.classifier
                    req.model_spec.signature_name = "serving_default" if kind == "predict" else "gradcam"
                    req.inputs["images"].CopyFrom(convert.to_tensor(images(cfg.classifier)))
                    if kind == "gradcam_predict":
                        req.inputs["class_index"].CopyFrom(convert.to_tensor(np.full(n, -1, np.int32)))
                elif kind in ("gradcam_explain", "occlusion"):
                    req = pb.ExplainRequest(model=pb.ModelRef(name=cfg.classifier),
                                            method="gradcam" if kind == "gradcam_explain" else "occlusion",
                                            images=pb.ImageBatch(tensor=convert.to_tensor(images(cfg.classifier))))
                    if kind == "occlusion":
                        convert.params_to_proto(req.params, dict(cfg.occlusion_params))
                else:
                    assert cfg.embedding
                    req = pb.SimilarityMapRequest(model=pb.ModelRef(name=cfg.embedding),
                                                  query=pb.ImageBatch(tensor=convert.to_tensor(images(cfg.embedding))),
                                                  reference=pb.ImageBatch(tensor=convert.to_tensor(images(cfg.embedding))))
                batch.append(req.SerializeToString())
            self.payloads[kind] = batch

    async def _input_sizes(self, channel: grpc.aio.Channel) -> dict[str, tuple[int, int, int]]:
        from serving.protos.explain.v1 import explain_pb2 as pb
        from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

        stub = pb_grpc.ExplanationServiceStub(channel)
        reply = await stub.ListModels(pb.ListModelsRequest(), timeout=60, metadata=self.metadata)
        sizes = {m.name: tuple(int(x) for x in m.input_size) for m in reply.models}
        for model in (self.config.classifier, self.config.embedding):
            if model and model not in sizes:
                raise ValueError(f"model {model!r} is not served; served: {sorted(sizes)}")
        return sizes  # type: ignore[return-value]

    async def _worker(self, channel: grpc.aio.Channel, wid: int, end: float, samples: list) -> None:
        rng = random.Random(self.config.seed * 10_007 + wid)
        kinds = list(self.mix)
        weights = [self.mix[k] for k in kinds]
        calls = {k: channel.unary_unary(_PATHS[k]) for k in kinds}  # bytes in, bytes out
        i = wid
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            payload = self.payloads[kind][i % len(self.payloads[kind])]
            i += 1
            start = time.perf_counter()
            try:
                reply = await calls[kind](payload, timeout=self.config.request_timeout, metadata=self.metadata)
                code = "OK" if reply else "EMPTY_REPLY"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a generator bug must show up in the figures, not hang
                code = f"CLIENT_{type(exc).__name__}"
            samples.append((kind, code, time.perf_counter() - start))

    async def _level(self, channel: grpc.aio.Channel, concurrency: int, seconds: float) -> LevelResult:
        samples: list[tuple[str, str, float]] = []
        start = time.monotonic()
        end = start + seconds
        await asyncio.gather(*(self._worker(channel, w, end, samples) for w in range(concurrency)))
        return summarise(concurrency, samples, time.monotonic() - start)

    async def _every_kind_once(self, channel: grpc.aio.Channel) -> LevelResult:
        samples = []
        start = time.monotonic()
        for kind in self.mix:
            for payload in self.payloads[kind][:2]:
                t0 = time.perf_counter()
                try:
                    await channel.unary_unary(_PATHS[kind])(payload, timeout=self.config.request_timeout, metadata=self.metadata)
                    code = "OK"
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                samples.append((kind, code, time.perf_counter() - t0))
        return summarise(1, samples, time.monotonic() - start)

    async def run(self, pid: int | None = None, progress: Any = None) -> LoadReport:
        cfg = self.config
        options = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        async with grpc.aio.insecure_channel(cfg.address, options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout=60)
            self._build(await self._input_sizes(channel))
            first = await self._every_kind_once(channel)
            warm = first
            if cfg.warmup_seconds > 0:
                low = await self._level(channel, 1, cfg.warmup_seconds / 2)
                high = await self._level(channel, max(cfg.concurrency), cfg.warmup_seconds / 2)
                warm = summarise(max(cfg.concurrency), [], 0.0)
                warm.requests = first.requests + low.requests + high.requests
                warm.codes = dict(Counter(first.codes) + Counter(low.codes) + Counter(high.codes))
            rss_warm = await _settled_rss(pid)
            levels = []
            for c in cfg.concurrency:
                level = await self._level(channel, c, cfg.seconds_per_level)
                levels.append(level)
                if progress is not None:
                    progress(level)
            rss_after = await _settled_rss(pid)
        peak = read_memory_kib(pid)["VmHWM"] if pid else None
        return LoadReport(cfg.to_json(), levels, warm, rss_warm, rss_after, peak, started)


async def _settled_rss(pid: int | None, wait: float = 1.0) -> int | None:
    """The server's RSS after ``wait`` seconds without traffic from us."""
    if not pid:
        return None
    await asyncio.sleep(wait)
    return read_memory_kib(pid)["VmRSS"]


def run_load(config: LoadConfig, pid: int | None = None, progress: Any = None) -> LoadReport:
    """Run the warm-up and every level of ``config`` (blocking); ``pid`` = the server process."""
    return asyncio.run(LoadGenerator(config).run(pid, progress))
