"""Benchmark of the gRPC service: latency overhead, throughput with micro-batching, wire formats.

Run ``.venv/bin/python -m bench.bench_serving``; prints three tables and appends a "Serving" section
to ``bench/RESULTS.md`` (``--no-record`` to skip).

Set-up: untrained classifiers (``--models``, default VGG11 at widths 0.25 and 0.5 and ResNet18 at
0.25; timings do not depend on the weights) at 224×224 are exported with
:func:`models.export.export_classifier` (signature ``gradcam``) and served by ``python -m serving``
in a **separate process** on 127.0.0.1 (the benchmark process is the client, as in production;
the server has its own interpreter and GIL). The request image is a synthetic street scene.

1. **Latency** of Grad-CAM for one image: the in-process call of the SavedModel's ``gradcam``
   signature (``loaded.signatures["gradcam"](images=..., class_index=...)``, numpy out) against the
   same request over gRPC — TF Serving's ``Predict(signature_name="gradcam")`` and explain.v1
   ``Explain(method="gradcam")`` — interleaved call by call in one run, so that all three see
   the same machine load; p50 and p99 and the ratio to in-process (target ≤ 1.15 at p50).
2. **Throughput** with 1, 8 and 32 concurrent clients (threads, one channel each, one image per
   request, explain.v1 Explain/gradcam) against a server with micro-batching (``max_batch_size``
   32, ``batch_timeout_micros`` 0: batches form while the execution threads are busy) and one
   without (``--no-enable-batching``); the mean executed batch size is read from the responses'
   ``batch_size`` field (target ≥ 1.5× at 32 clients). The CPU column is client + server process
   CPU time per request and "cores" the CPU they got: on a shared machine the scheduler shares
   CPU per thread, so a server running 32 single-image graphs at once gets more of it than one
   running two batches — the CPU-per-request ratio is the comparison that this does not bias.
3. **Wire formats**: the same Explain request with images as a uint8 tensor, as PNG files and as a
   float32 tensor in [0, 1]: request size and p50 latency (PNG encoding happens once, before).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------
# helpers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (``None`` = this one), all threads."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """``python -m serving`` in a child process, waited for until health says SERVING."""

    def __init__(self, root: Path, batching: bool, max_batch_size: int, threads: int, batch_threads: int = 0) -> None:
        self.port = _free_port()
        args = [
            sys.executable, "-m", "serving", "--model-root", str(root), "--host", "127.0.0.1",
            "--port", str(self.port), "--file-system-poll-wait-seconds", "0", "--no-log-requests",
            "--max-batch-size", str(max_batch_size), "--batch-timeout-micros", "0",
            "--num-threads", str(threads), "--maximum-concurrent-rpcs", "0", "--log-level", "WARNING",
            "--enable-batching" if batching else "--no-enable-batching",
            *(["--num-batch-threads", str(batch_threads)] if batch_threads else []),
        ]
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.address = f"127.0.0.1:{self.port}"
        self._wait_ready()

    def _wait_ready(self, timeout: float = 300.0) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                with grpc.insecure_channel(self.address) as ch:
                    r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the server did not become SERVING")

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: graceful shutdown
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q))


# ------------------------------------------------------------------------------------------------
# the three measurements
def measure_latency(address: str, model: str, version_dir: Path, image: np.ndarray, n: int) -> dict[str, list[float]]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving import convert
    from serving.protos.explain.v1 import explain_pb2 as pb
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    sig = tf.saved_model.load(str(version_dir)).signatures["gradcam"]
    ch = grpc.insecure_channel(address)
    predict = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    explain = pb_grpc.ExplanationServiceStub(ch)
    class_index = np.array([-1], np.int32)

    def in_process() -> None:
        out = sig(images=tf.constant(image), class_index=tf.constant(class_index))
        {k: v.numpy() for k, v in out.items()}

    def over_predict() -> None:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.model_spec.signature_name = "gradcam"
        req.inputs["images"].CopyFrom(tf.make_tensor_proto(image))
        req.inputs["class_index"].CopyFrom(tf.make_tensor_proto(class_index))
        r = predict.Predict(req, timeout=60)
        {k: tf.make_ndarray(v) for k, v in r.outputs.items()}

    def over_explain() -> None:
        req = pb.ExplainRequest(model=pb.ModelRef(name=model), method="gradcam",
                                images=pb.ImageBatch(tensor=convert.to_tensor(image)))
        r = explain.Explain(req, timeout=60)
        convert.to_ndarray(r.heatmap, "heatmap")

    calls: dict[str, Callable[[], None]] = {"in-process signature": in_process, "gRPC Predict": over_predict,
                                            "gRPC Explain": over_explain}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(10):  # warm-up
        for fn in calls.values():
            fn()
    for _ in range(n):
        for name, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    ch.close()
    return times


def measure_throughput(server: ServerProcess, model: str, image: np.ndarray, clients: int, duration: float) -> dict[str, float]:
    import grpc

    from serving import convert
    from serving.protos.explain.v1 import explain_pb2 as pb
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    payload = pb.ExplainRequest(model=pb.ModelRef(name=model), method="gradcam",
                                images=pb.ImageBatch(tensor=convert.to_tensor(image))).SerializeToString()
    start_evt, stop_evt = threading.Event(), threading.Event()
    counting = threading.Event()
    done = [0] * clients
    batch_sum = [0] * clients
    errors: list[str] = []

    def client(i: int) -> None:
        with grpc.insecure_channel(server.address) as ch:
            stub = pb_grpc.ExplanationServiceStub(ch)
            req = pb.ExplainRequest.FromString(payload)
            start_evt.wait()
            while not stop_evt.is_set():
                try:
                    r = stub.Explain(req, timeout=120)
                except grpc.RpcError as err:  # pragma: no cover - reported
                    errors.append(f"{err.code()}: {err.details()}")
                    continue
                if counting.is_set():
                    done[i] += 1
                    batch_sum[i] += r.batch_size

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start_evt.set()
    time.sleep(min(2.0, duration / 3))  # warm-up: fill the pipeline
    cpu0, scpu0, t0 = _cpu_seconds(), server.cpu(), time.perf_counter()
    counting.set()
    time.sleep(duration)
    counting.clear()
    elapsed = time.perf_counter() - t0
    cpu1, scpu1 = _cpu_seconds(), server.cpu()
    stop_evt.set()
    for t in threads:
        t.join()
    total = sum(done)
    return {
        "clients": clients, "requests": total, "rps": total / elapsed,
        "mean_batch": (sum(batch_sum) / total) if total else 0.0,
        "cpu_ms": ((cpu1 - cpu0) + (scpu1 - scpu0)) / max(total, 1) * 1e3, "errors": len(errors),
    }


def measure_batch_ceiling(version_dir: Path, image: np.ndarray, batch: int, rounds: int = 3) -> dict[str, float]:
    """CPU time per image of the in-process ``gradcam`` signature at batch 1 and at ``batch``: the
    most micro-batching can gain on this model (it cannot remove per-image compute)."""
    import tensorflow as tf

    sig = tf.saved_model.load(str(version_dir)).signatures["gradcam"]
    one = (tf.constant(image), tf.constant([-1], tf.int32))
    many = (tf.constant(np.repeat(image, batch, axis=0)), tf.constant([-1] * batch, tf.int32))
    for x, c in (one, many):
        sig(images=x, class_index=c)
    cpu = {1: 0.0, batch: 0.0}
    for _ in range(rounds):
        for n, (x, c) in ((1, one), (batch, many)):
            reps = max(1, batch // n)
            t = _cpu_seconds()
            for _ in range(reps):
                {k: v.numpy() for k, v in sig(images=x, class_index=c).items()}
            cpu[n] += (_cpu_seconds() - t) / (reps * n)
    return {"batch1_ms": cpu[1] / rounds * 1e3, "batchB_ms": cpu[batch] / rounds * 1e3}


def measure_wire(address: str, model: str, image: np.ndarray, n: int) -> list[dict[str, Any]]:
    import grpc

    from serving import convert
    from serving.protos.explain.v1 import explain_pb2 as pb
    from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

    t = time.perf_counter()
    png = convert.encode_png(image)
    png_ms = (time.perf_counter() - t) * 1e3
    batches = {
        "uint8 tensor": pb.ImageBatch(tensor=convert.to_tensor(image)),
        "PNG bytes": pb.ImageBatch(encoded=pb.EncodedImages(data=png)),
        "float32 tensor": pb.ImageBatch(tensor=convert.to_tensor(image.astype(np.float32) / 255.0)),
    }
    reqs = {k: pb.ExplainRequest(model=pb.ModelRef(name=model), method="gradcam", images=b) for k, b in batches.items()}
    ch = grpc.insecure_channel(address)
    stub = pb_grpc.ExplanationServiceStub(ch)
    times: dict[str, list[float]] = {k: [] for k in reqs}
    heat: dict[str, np.ndarray] = {}
    for _ in range(5):
        for r in reqs.values():
            stub.Explain(r, timeout=60)
    for _ in range(n):
        for k, r in reqs.items():
            t = time.perf_counter()
            resp = stub.Explain(r, timeout=60)
            times[k].append(time.perf_counter() - t)
            heat[k] = convert.to_ndarray(resp.heatmap, "heatmap")
    ch.close()
    rows = []
    for k, r in reqs.items():
        rows.append({"format": k, "bytes": r.images.ByteSize(), "p50": _pct(times[k], 50), "p99": _pct(times[k], 99),
                     "same": bool(np.allclose(heat[k], heat["uint8 tensor"], atol=1e-6)),
                     "encode_ms": png_ms if k == "PNG bytes" else 0.0})
    return rows


# ------------------------------------------------------------------------------------------------
def _name(arch: str, width: float) -> str:
    return f"{arch}_w{width:g}".replace(".", "_")


def _city_image(size: int) -> np.ndarray:
    """One synthetic street scene (PNG compresses it like a photograph, unlike noise)."""
    from models.datasets import make_cities

    return np.ascontiguousarray(make_cities(1, image_size=size, seed=0).images[:1])


def run(args: argparse.Namespace) -> str:
    import keras
    import tensorflow as tf

    from models.architectures import build_classifier
    from models.export import export_classifier

    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    results: dict[str, Any] = {"latency": {}, "on": {}, "off": {}}
    try:
        version_dirs = {}
        for arch, width in args.models:
            keras.utils.set_random_seed(0)
            name = _name(arch, width)
            model = build_classifier(arch, args.size, 2, width)
            version_dirs[name] = export_classifier(model, work / name, methods=["gradcam"])
        image = _city_image(args.size)
        results["ceiling"] = {_name(a, w): measure_batch_ceiling(version_dirs[_name(a, w)], image, args.max_batch_size)
                              for a, w in args.throughput_models}

        server = ServerProcess(work, batching=True, max_batch_size=args.max_batch_size, threads=args.grpc_threads,
                               batch_threads=args.num_batch_threads)
        try:
            for name, vdir in version_dirs.items():
                results["latency"][name] = measure_latency(server.address, name, vdir, image, args.requests)
            results["wire"] = measure_wire(server.address, next(iter(version_dirs)), image, max(20, args.requests // 4))
            throughput = [_name(a, w) for a, w in args.throughput_models]
            for name in throughput:
                results["on"][name] = [measure_throughput(server, name, image, c, args.duration) for c in args.clients]
        finally:
            server.stop()
        server = ServerProcess(work, batching=False, max_batch_size=args.max_batch_size, threads=args.grpc_threads)
        try:
            for name in throughput:
                results["off"][name] = [measure_throughput(server, name, image, c, args.duration) for c in args.clients]
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, results, tf.__version__)


def report(args, results, tf_version) -> str:
    lines = [
        "| model | call | p50 (ms) | p99 (ms) | p50 / in-process | p99 / in-process |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for model, latency in results["latency"].items():
        base50 = _pct(latency["in-process signature"], 50)
        base99 = _pct(latency["in-process signature"], 99)
        for name, xs in latency.items():
            lines.append(f"| {model} | {name} | {_pct(xs, 50):.2f} | {_pct(xs, 99):.2f} | {_pct(xs, 50) / base50:.2f} | "
                         f"{_pct(xs, 99) / base99:.2f} |")
    lat_table = "\n".join(lines)
    lines = [
        "| model | clients | batching: req/s | mean batch | CPU ms/req | cores | no batching: req/s | CPU ms/req | cores "
        "| speed-up (req/s; CPU) | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in results["on"]:
        for on, off in zip(results["on"][model], results["off"][model]):
            lines.append(f"| {model} | {on['clients']} | {on['rps']:.1f} | {on['mean_batch']:.1f} | {on['cpu_ms']:.1f} | "
                         f"{on['rps'] * on['cpu_ms'] / 1e3:.2f} | {off['rps']:.1f} | {off['cpu_ms']:.1f} | "
                         f"{off['rps'] * off['cpu_ms'] / 1e3:.2f} | {on['rps'] / off['rps']:.2f}×; "
                         f"{off['cpu_ms'] / on['cpu_ms']:.2f}× | {on['errors'] + off['errors']} |")
    thr_table = "\n".join(lines)
    lines = [f"| model | in-process CPU ms/image, batch 1 | batch {args.max_batch_size} | ceiling of the speed-up |",
             "|---|---:|---:|---:|"]
    for model, c in results["ceiling"].items():
        lines.append(f"| {model} | {c['batch1_ms']:.1f} | {c['batchB_ms']:.1f} | {c['batch1_ms'] / c['batchB_ms']:.2f}× |")
    ceiling_table = "\n".join(lines)
    lines = ["| images on the wire | request bytes | p50 (ms) | p99 (ms) | client encode (ms) | same heat map |",
             "|---|---:|---:|---:|---:|---|"]
    for row in results["wire"]:
        lines.append(f"| {row['format']} | {row['bytes']:,} | {row['p50']:.2f} | {row['p99']:.2f} | "
                     f"{row['encode_ms']:.1f} | {'yes' if row['same'] else 'no'} |")
    wire_table = "\n".join(lines)
    load = os.getloadavg()[0]
    models = ", ".join(f"{a} at width {w:g}" for a, w in args.models)
    header = (
        f"{_dt.datetime.now():%Y-%m-%d %H:%M}; machine: {os.cpu_count()} CPUs (nproc), {platform.processor() or platform.machine()}, "
        f"load average {load:.1f} at the end; TensorFlow {tf_version} on CPU; server = `python -m serving` in a "
        f"separate process on 127.0.0.1, client = the benchmark process. Untrained {models} "
        f"(timings do not depend on the weights), {args.size}×{args.size} input (a synthetic street scene), one image "
        f"per request, Grad-CAM of the predicted class. Command: `.venv/bin/python -m bench.bench_serving`."
    )
    return "\n\n".join([
        "## Serving", header,
        f"Latency, {args.requests} interleaved calls of each kind after 10 warm-up rounds (target: gRPC ≤ 1.15× "
        "the in-process signature call at p50):",
        lat_table,
        f"Throughput over {args.duration:g} s per row (after a warm-up), explain.v1 Explain, every client a thread "
        f"with its own channel; micro-batching `max_batch_size` {args.max_batch_size}, `batch_timeout_micros` 0, "
        f"`num_batch_threads` {args.num_batch_threads or 'CPUs'}; CPU = client + server process CPU time per request, "
        "cores = the CPU the two processes got (req/s × CPU s/req); speed-up in req/s and in CPU per request "
        "(target: ≥ 1.5× at 32 clients):",
        thr_table,
        "What batching can gain at most: the in-process signature's CPU time per image at batch 1 and at the "
        "largest batch (same process, interleaved):",
        ceiling_table,
        f"Images on the wire (explain.v1 Explain on {next(iter(results['latency']))}, one {args.size}×{args.size} "
        "image, sequential, interleaved):",
        wire_table,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    models = lambda s: [(a, float(w)) for a, w in (x.split(":") for x in s.split(","))]  # noqa: E731
    parser.add_argument("--models", default="vgg11:0.25,vgg11:0.5,resnet18:0.25", type=models,
                        help="ARCH:WIDTH,... for the latency table; the first is used for the wire-format table")
    parser.add_argument("--throughput-models", default="vgg11:0.25,resnet18:0.25", type=models,
                        help="ARCH:WIDTH,... for the throughput table (each must be in --models)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=200, help="latency samples per call kind")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per throughput row")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--grpc-threads", type=int, default=64)
    parser.add_argument("--num-batch-threads", type=int, default=0, help="0 = the server's default (CPUs)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    text = run(args)
    print(text)
    if not args.no_record:
        with RESULTS.open("a") as fh:
            fh.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
