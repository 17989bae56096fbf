"""The container image, end to end (``make test-docker``): builds it with podman and runs deploy/smoke.sh.

``test_smoke_image`` is marked ``docker`` (excluded from ``make test``); the static Dockerfile check runs
in the default suite. Skips with the script's reason when podman is
missing or unusable. The first build downloads TensorFlow (several minutes); later builds reuse
the cached dependency layer. Environment: ``SMOKE_MODEL_ROOT`` to serve an existing model root
(default: tiny untrained models exported by the script), and the variables of deploy/smoke.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "deploy" / "smoke.sh"


def _run_smoke(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run(["bash", str(SMOKE), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _skip_reason(output: str) -> str | None:
    for line in output.splitlines():
        if line.startswith("SKIP:"):
            return line[len("SKIP:"):].strip()
    return None


def test_dockerfile_is_complete():
    text = (ROOT / "Dockerfile").read_text()
    for needle in ("ARG BASE_IMAGE=", "EXPOSE 8500", "HEALTHCHECK", "serving.healthcheck", "USER 10001",
                   'ENTRYPOINT ["/usr/bin/tini"', '"--model-root", "/models"', "--mount=type=secret,id=ca"):
        assert needle in text, needle
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "runs", "tests"):
        assert path in ignored, path


@pytest.mark.docker
def test_smoke_image():
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman runc; see deploy/README.md)")
    model_root = os.environ.get("SMOKE_MODEL_ROOT")
    result = _run_smoke(*([model_root] if model_root else []))
    output = result.stdout + result.stderr
    reason = _skip_reason(result.stdout)
    if reason is not None:
        pytest.skip(reason)
    assert result.returncode == 0, output[-6000:]
    assert "SMOKE OK" in result.stdout, output[-6000:]
