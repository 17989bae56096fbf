"""A real local Ray cluster for tests and benchmarks: a head and extra nodes on this machine.

Every node is its own ``ray start`` (raylet, object store) with its own CPU count, under a unique
``--temp-dir``, with free ports, so it neither collides with nor stops anyone else's cluster:
:meth:`LocalRayCluster.stop` ends exactly the processes whose command line names that temp dir
(and their children), by PID, instead of ``ray stop`` (which stops every Ray on the machine).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_env() -> dict[str, str]:
    """The environment of the nodes (and drivers): this checkout first on ``PYTHONPATH``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "RAY_USAGE_STATS_ENABLED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


class LocalRayCluster:
    """``ray start --head`` plus ``nodes - 1`` ``ray start --address`` processes on loopback.

    Args:
        nodes: Number of nodes (head included).
        cpus_per_node: ``--num-cpus`` of each node (the tasks each node runs at once).
    """

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1) -> None:
        self.nodes = nodes
        self.cpus_per_node = cpus_per_node
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = cluster_env()

    def _ray(self, *args: str) -> None:
        cmd = [str(Path(sys.executable).with_name("ray")), "start", "--node-ip-address", "127.0.0.1",
               "--num-cpus", str(self.cpus_per_node), "--num-gpus", "0", "--temp-dir", self.temp_dir,
               "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
               "--disable-usage-stats", *args]
        subprocess.run(cmd, check=True, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=180)

    def start(self) -> "LocalRayCluster":
        """Start the head, then the other nodes; returns ``self``."""
        self._ray("--head", "--port", str(self.port), "--include-dashboard", "false",
                  "--ray-client-server-port", str(free_port()))
        for _ in range(self.nodes - 1):
            self._ray("--address", self.address)
        return self

    def processes(self) -> list[int]:
        """PIDs of this cluster's processes: those naming its temp dir, and their descendants."""
        me = os.getpid()
        pids = _pids()
        roots = {p for p in pids if p != me and self.temp_dir in _cmdline(p)}
        parents = {p: _ppid(p) for p in pids}
        found = set(roots)
        changed = True
        while changed:
            new = {p for p, pp in parents.items() if pp in found and p not in found and p != me}
            changed = bool(new)
            found |= new
        return sorted(found)

    def worker_pids(self, title: str) -> list[int]:
        """PIDs of this cluster's worker processes whose process title starts with ``title``
        (Ray sets ``ray::<task function>`` while a task runs, ``ray::IDLE`` between tasks)."""
        return [p for p in self.processes() if _cmdline(p).startswith(title)]

    def stop(self) -> None:
        """SIGTERM this cluster's processes, SIGKILL those still alive after 10 s; remove its temp dir."""
        pids = self.processes()
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and _ppid(p) != -1
                                                        and process_state(p) != "Z" for p in pids):
                time.sleep(0.1)
            pids = [p for p in pids if Path(f"/proc/{p}").exists() and process_state(p) != "Z"]
            if not pids:
                break
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalRayCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def process_state(pid: int) -> str:
    """The state letter of ``pid`` in ``/proc`` (``R``, ``S``, ``Z`` …), ``X`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"
