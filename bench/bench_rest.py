"""Benchmark of TF Serving's REST ``:predict`` against gRPC ``Predict`` on the same server.

Run ``.venv/bin/python -m bench.bench_rest``; prints a markdown table (``--json FILE`` also writes
the figures). Nothing is appended to ``bench/RESULTS.md``.

Set-up: an untrained classifier (``--model``, default VGG11 at width 0.375, 224×224; timings do
not depend on the weights) is exported with :func:`models.export.export_classifier` and served by
``python -m serving --rest-port`` in a **separate process** on 127.0.0.1 (gRPC and HTTP in the
same process, as deployed). The request images are synthetic street scenes. For one image and for
a batch of 32, the same ``serving_default`` request is sent, interleaved call by call in one run
(so that every kind sees the same machine load):

* **gRPC** ``Predict`` with a uint8 tensor (request built once, outputs decoded with
  ``tf.make_ndarray``);
* **REST lists**: ``POST /v1/models/NAME:predict`` ``{"instances": [image as nested lists]}``;
* **REST b64**: the same with ``{"b64": ...}`` per image (the raw ``H·W·3`` uint8 bytes);
* **REST b64 PNG**: ``{"b64": ...}`` holding a PNG file per image;
* **REST b64, http.client**: the REST b64 body sent with the standard library's ``http.client``.

REST bodies are encoded once before the loop (as the gRPC request is built once; the client
encode time is its own column); every call includes sending, the server's work and parsing the
response (``json.loads``, numpy for the probabilities) on one kept-alive HTTP/1.1 connection of a
``requests.Session`` (the usual Python REST client) or one gRPC channel. The ``http.client`` row is
there because that client showed an intermittent ≈ 40 ms stall per call on this server (a whole
run at +40 ms, the next at none), which ``requests`` on the same server in the same run did not. The forward pass alone (the SavedModel's
``serving_default`` signature in this process) is measured the same way for reference. Every
kind must return the same probabilities (1e-5). Target: REST b64 ≤ 1.3× gRPC at p50.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.bench_serving import REPO, _city_image, _free_port, _pct  # noqa: E402

KINDS = ("in-process forward", "gRPC Predict", "REST lists", "REST b64", "REST b64 PNG", "REST b64, http.client")
PLAIN_KIND = "REST b64, http.client"


class RestServer:
    """``python -m serving --rest-port`` in a child process, waited for until HTTP answers."""

    def __init__(self, root: Path, threads: int) -> None:
        self.port, self.rest_port = _free_port(), _free_port()
        args = [sys.executable, "-m", "serving", "--model-root", str(root), "--host", "127.0.0.1",
                "--port", str(self.port), "--rest-port", str(self.rest_port), "--file-system-poll-wait-seconds", "0",
                "--no-log-requests", "--log-level", "WARNING", "--num-threads", str(threads), "--no-enable-batching"]
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.address = f"127.0.0.1:{self.port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {self.proc.stderr.read()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=2)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the server did not answer over HTTP")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def rest_bodies(images: np.ndarray) -> dict[str, tuple[bytes, float]]:
    """``kind → (body bytes, client encode seconds)`` of the three REST forms."""
    from serving.convert import encode_png

    forms: dict[str, Callable[[], Any]] = {
        "REST lists": lambda: {"instances": images.tolist()},
        "REST b64": lambda: {"instances": [{"b64": base64.b64encode(im.tobytes()).decode()} for im in images]},
        "REST b64 PNG": lambda: {"instances": [{"b64": base64.b64encode(p).decode()} for p in encode_png(images)]},
    }
    out = {}
    for kind, make in forms.items():
        start = time.perf_counter()
        body = json.dumps(make(), separators=(",", ":")).encode()
        out[kind] = (body, time.perf_counter() - start)
    return out


def measure(server: RestServer, model: str, version_dir: Path, images: np.ndarray, n: int) -> dict[str, Any]:
    """Latencies (seconds) of every kind, interleaved; also request sizes and encode times."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    forward = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_receive_message_length", 256 * 2**20),
                                                             ("grpc.max_send_message_length", 256 * 2**20)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    bodies = rest_bodies(images)
    import requests

    sessions = {k: requests.Session() for k in ("REST lists", "REST b64", "REST b64 PNG")}  # one connection each
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=300)
    path = f"/v1/models/{model}:predict"
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    got: dict[str, np.ndarray] = {}

    def in_process() -> np.ndarray:
        return forward(images=tf.constant(images))["probabilities"].numpy()

    def over_grpc() -> np.ndarray:
        return tf.make_ndarray(stub.Predict(req, timeout=300).outputs["probabilities"])

    def decoded(status: int, data: Any, kind: str) -> np.ndarray:
        if status != 200:
            raise RuntimeError(f"{kind}: HTTP {status} {data}")
        return np.asarray([p["probabilities"] for p in data["predictions"]], np.float32)

    def over_rest(kind: str) -> Callable[[], np.ndarray]:
        body = bodies[kind][0]

        def call() -> np.ndarray:
            reply = sessions[kind].post(url, data=body, headers={"Content-Type": "application/json"}, timeout=300)
            return decoded(reply.status_code, json.loads(reply.content), kind)

        return call

    def over_http_client() -> np.ndarray:
        body = bodies["REST b64"][0]
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # uvicorn closes a connection idle for 5 s (slow batch rounds): reconnect once
            conn.close()
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
        return decoded(reply.status, json.loads(reply.read()), PLAIN_KIND)

    calls = {"in-process forward": in_process, "gRPC Predict": over_grpc,
             **{k: over_rest(k) for k in ("REST lists", "REST b64", "REST b64 PNG")}, PLAIN_KIND: over_http_client}
    for kind, fn in calls.items():  # warm-up (traces, connections) and the parity check
        got[kind] = fn()
        fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(n):
        for kind, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[kind].append(time.perf_counter() - start)
    conn.close()
    for session in sessions.values():
        session.close()
    channel.close()
    ref = got["in-process forward"]
    return {
        "times": times,
        "same": {k: bool(np.allclose(v, ref, atol=1e-5)) for k, v in got.items()},
        "bytes": {"gRPC Predict": req.ByteSize(), **{k: len(b) for k, (b, _) in bodies.items()},
                  PLAIN_KIND: len(bodies["REST b64"][0])},
        "encode_ms": {k: e * 1e3 for k, (_, e) in bodies.items()},
    }


def table(results: dict[int, dict[str, Any]]) -> str:
    lines = ["| images | call | request bytes | client encode (ms) | p50 (ms) | p99 (ms) | p50 / gRPC | same probabilities |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    for batch, r in results.items():
        grpc_p50 = _pct(r["times"]["gRPC Predict"], 50)
        for kind in KINDS:
            t = r["times"][kind]
            size = r["bytes"].get(kind)
            enc = r["encode_ms"].get(kind)
            lines.append(f"| {batch} | {kind} | {'' if size is None else f'{size:,}'} | "
                         f"{'' if enc is None else f'{enc:.1f}'} | {_pct(t, 50):.2f} | {_pct(t, 99):.2f} | "
                         f"{_pct(t, 50) / grpc_p50:.2f} | {'yes' if r['same'][kind] else 'NO'} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    import keras
    import tensorflow as tf

    from models.architectures import build_classifier
    from models.export import export_classifier

    arch, width = args.model.split(":")
    name = f"{arch}_w{float(width):g}".replace(".", "_")
    root = Path(tempfile.mkdtemp(prefix="bench_rest_"))
    keras.utils.set_random_seed(0)
    export_classifier(build_classifier(arch, args.size, 10, float(width)), root / name, class_names=[f"c{i}" for i in range(10)])
    version_dir = root / name / "1"
    scene = _city_image(args.size)
    server = RestServer(root, args.grpc_threads)
    try:
        results = {}
        for batch, n in ((1, args.requests), (args.batch, args.batch_requests)):
            images = np.ascontiguousarray(np.repeat(scene, batch, axis=0))
            results[batch] = measure(server, name, version_dir, images, n)
    finally:
        server.stop()
    text = (f"`python -m bench.bench_rest` — {arch} width {width} at {args.size}×{args.size}, untrained, "
            f"`serving_default`; {args.requests} calls per kind for 1 image, {args.batch_requests} for {args.batch}; "
            f"TensorFlow {tf.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}\n\n" + table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({str(b): {**r, "times": {k: [t * 1e3 for t in v] for k, v in r["times"].items()}}
                                               for b, r in results.items()}, indent=1))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg11:0.375", help="ARCH:WIDTH of the untrained classifier")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--requests", type=int, default=100, help="calls per kind for one image")
    parser.add_argument("--batch-requests", type=int, default=20, help="calls per kind for the batch")
    parser.add_argument("--grpc-threads", type=int, default=8)
    parser.add_argument("--json", help="also write the figures (milliseconds) to this file")
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
