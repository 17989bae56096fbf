"""Shared helpers of the reliability suites (load, fuzz, faults, security).

* :func:`export_tiny_models` — a model root with small UNTRAINED models exported by
  :mod:`models.export` (a classifier and an embedding network at 64 px): reliability needs real
  SavedModels with every signature, not trained weights.
* :class:`ServerProcess` — ``python -m serving`` in a SUBPROCESS on a free loopback port: wait for
  health, read its resident memory (``VmRSS``), peak memory (``VmHWM``) and CPU time from
  ``/proc/<pid>``, scrape ``/metrics``, stop it with SIGTERM or SIGKILL. A request that crashed
  the server would kill that process, never the test runner.
* :func:`make_pki` — a CA, server and client certificates (and a rogue CA with its own client
  certificate) made with the ``openssl`` command line (the ``cryptography`` package is not
  installed in the project's environment).
* :func:`health` — one ``grpc.health.v1`` check.

Network: 127.0.0.1 only. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import grpc

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
CLASSES = ["alpha", "beta", "gamma"]
CLASSIFIER = "simpler"
EMBEDDING = "embed"

__all__ = [
    "REPO", "SIZE", "CLASSES", "CLASSIFIER", "EMBEDDING",
    "free_port", "export_tiny_models", "shared_model_root", "copy_model_root",
    "ServerProcess", "health", "make_pki", "read_proc_status", "process_cpu_seconds",
]


def free_port() -> int:
    """A loopback port that was free a moment ago (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- models
def export_tiny_models(root: str | Path, classifier: bool = True, embedding: bool = True) -> Path:
    """Export the small untrained test models into ``root`` (``simpler`` 3 classes, ``embed``)."""
    import keras

    from models.architectures import build_classifier, embedding_net
    from models.export import export_classifier, export_embedding

    root = Path(root)
    keras.utils.set_random_seed(0)
    if classifier:
        export_classifier(build_classifier("simpler", SIZE, len(CLASSES), 0.125), root / CLASSIFIER,
                          class_names=CLASSES, card={"seed": 0})
    if embedding:
        export_embedding(embedding_net(SIZE, "avg", 8, 0.125), root / EMBEDDING, card={"seed": 0})
    return root


_SHARED: dict[str, Path] = {}
_SHARED_LOCK = threading.Lock()


def shared_model_root(tmp_path_factory: Any) -> Path:
    """One read-only export of the tiny models per test session (tests copy it to change it)."""
    key = str(tmp_path_factory.getbasetemp())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = export_tiny_models(tmp_path_factory.mktemp("reliability_models"))
        return _SHARED[key]


def copy_model_root(src: Path, dest: Path) -> Path:
    """A private, writable copy of a model root."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


# ---------------------------------------------------------------------------- /proc
def read_proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``, ``VmHWM``, ``Threads`` … of ``/proc/<pid>/status`` (memory in KiB)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0])
    return out


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ---------------------------------------------------------------------------- health
def health(address: str, timeout: float = 5.0, credentials: grpc.ChannelCredentials | None = None,
           service: str = "", options: Sequence[tuple[str, Any]] = ()) -> str:
    """The ``grpc.health.v1`` status name of ``address`` (raises ``grpc.RpcError`` on failure)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = (grpc.secure_channel(address, credentials, options=list(options)) if credentials is not None
               else grpc.insecure_channel(address, options=list(options)))
    with channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


# ---------------------------------------------------------------------------- the server
class ServerProcess:
    """``python -m serving`` as a subprocess on 127.0.0.1 (a free port unless ``port`` is given).

    Args:
        model_root: The model root.
        port: gRPC port (0 = a free one).
        metrics: Also serve ``/metrics`` on a free loopback port.
        log_path: Where stdout/stderr go (default: a temporary file).
        **options: ``python -m serving`` flags by their option name, e.g. ``max_batch_size=8``
            → ``--max-batch-size 8``; ``True``/``False`` → ``--flag`` / ``--no-flag``.
    """

    def __init__(self, model_root: str | Path, port: int = 0, metrics: bool = False,
                 log_path: str | Path | None = None, env: dict[str, str] | None = None, cwd: str | Path | None = None,
                 **options: Any) -> None:
        self.model_root = Path(model_root)
        self.port = port or free_port()
        self.metrics_port = free_port() if metrics else None
        self.options = {"file_system_poll_wait_seconds": 0, "warmup": "default", **options}
        if self.metrics_port:
            self.options["metrics_port"] = self.metrics_port
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="serving-", suffix=".log")[1])
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        # PYTHONPATH: the server runs the code of this checkout whatever its working directory
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, **(env or {})}
        self.cwd = Path(cwd) if cwd else REPO
        self.proc: subprocess.Popen | None = None
        self.address = f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "serving", "--model-root", str(self.model_root), "--host", "127.0.0.1",
                "--port", str(self.port)]
        for key, value in self.options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + key.replace("_", "-"))
            elif isinstance(value, (list, tuple)):
                for v in value:
                    args += [flag, str(v)]
            else:
                args += [flag, str(value)]
        return args

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 240.0, credentials: grpc.ChannelCredentials | None = None,
              health_address: str | None = None) -> "ServerProcess":
        """Start and wait until health answers SERVING (``timeout`` seconds at most)."""
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.argv(), cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            log.close()
        self.wait_healthy(timeout, credentials, health_address)
        return self

    def wait_healthy(self, timeout: float = 240.0, credentials: grpc.ChannelCredentials | None = None,
                     health_address: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                if health(health_address or self.address, timeout=2.0, credentials=credentials) == "SERVING":
                    return
            except grpc.RpcError as exc:
                last = exc
            time.sleep(0.25)
        raise TimeoutError(f"the server did not become healthy within {timeout:.0f} s ({last}):\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful drain) and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> int:
        """SIGKILL and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(30)

    def stop(self) -> None:
        """Terminate (SIGKILL after 30 s); safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> "ServerProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- observation
    def status(self) -> dict[str, int]:
        return read_proc_status(self.pid)

    def rss_kib(self) -> int:
        """Resident memory now (``VmRSS``), KiB."""
        return self.status()["VmRSS"]

    def peak_rss_kib(self) -> int:
        """Peak resident memory so far (``VmHWM``), KiB."""
        return self.status()["VmHWM"]

    def reset_peak(self) -> bool:
        """Reset ``VmHWM`` to the current RSS (``/proc/<pid>/clear_refs`` 5); False if not allowed."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` parsed into ``{'name{labels}': value}``."""
        from serving.metrics import parse_text

        assert self.metrics_port, "start the server with metrics=True"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            return parse_text(reply.read().decode())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]


# ---------------------------------------------------------------------------- certificates
def make_pki(directory: str | Path) -> dict[str, Path]:
    """Certificates for TLS tests, made with ``openssl``.

    Returns paths: ``ca.pem``/``ca.key`` (the trusted CA), ``server.pem``/``server.key`` (SAN
    localhost, 127.0.0.1), ``client.pem``/``client.key`` (signed by the CA), ``rogue-ca.pem`` and
    ``rogue-client.pem``/``rogue-client.key`` (a client certificate from another CA).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for ca in ("ca", "rogue-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    for name, ca in (("server", "ca"), ("client", "ca"), ("rogue-client", "rogue-ca")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem")
    return {p.name: p for p in directory.iterdir() if p.suffix in (".pem", ".key")}
