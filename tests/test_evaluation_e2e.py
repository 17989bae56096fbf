"""End to end: the evaluation through a real gRPC server on loopback, on the tiny models.

- every section is in the report, every table written as CSV and JSON;
- a second run resumes from the cache without calling the service for cached items;
- a run killed midway (SIGKILL) and started again ends with the same tables as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evaluation.__main__ import main as evaluation_main
from tests.table_compare import assert_same_tables as _assert_same_tables

SMALL = ["--images-per-class", "3", "--ccg-images-per-class", "1", "--tsne-images-per-class", "6",
         "--batch-size", "8", "--quiet"]


def _tables(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((folder / "tables").glob("*.csv"))}


@pytest.fixture(scope="module")
def server(tiny_model_root):
    from serving.server import start_server

    with start_server(str(tiny_model_root), port=0, host="127.0.0.1") as srv:
        yield srv


@pytest.fixture(scope="module")
def full_report(server, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert evaluation_main(["--server", server.address, "--out", str(out), *SMALL]) == 0
    return out


@pytest.mark.slow  # the full report through a server (~3 min); `make test-ci-slow`
def test_report_has_every_section(full_report):
    from evaluation.pipeline import experiment_keys

    html = (full_report / "report.html").read_text()
    for key in experiment_keys():
        assert f'id="{key}"' in html, f"section {key} missing from the report"
    assert "Reference findings" in html
    tables = _tables(full_report)
    for name in ("residuals.csv", "descriptor_dimensions.csv", "similarity_summary.csv", "models_used.csv"):
        assert name in tables
        assert (full_report / "tables" / name.replace(".csv", ".json")).exists()
    figures = list((full_report / "figures").glob("*.png"))
    assert len(figures) >= 8
    assert all(f.stat().st_size > 1000 for f in figures)
    # the residual table holds architecture pairs and retrained pairs with AR in [0, 1]
    rows = json.loads((full_report / "tables" / "residuals.json").read_text())["rows"]
    kinds = {r[1] for r in rows}
    assert kinds == {"different architectures", "different initialisations"}
    assert all(0.0 <= r[2] <= 1.0 for r in rows)


@pytest.mark.slow  # the full report through a server (~3 min); `make test-ci-slow`
def test_second_run_resumes_from_cache(full_report, server):
    before = _tables(full_report)
    assert evaluation_main(["--server", server.address, "--out", str(full_report), *SMALL]) == 0
    run = json.loads((full_report / "run.json").read_text())
    assert run["service_calls"] == 0, run
    _assert_same_tables(_tables(full_report), before)


@pytest.mark.slow  # a subprocess evaluation killed and resumed (~30 s beside the shared fixtures); `make test-ci-slow`
def test_killed_run_resumes_to_identical_tables(server, tmp_path):
    subset = ["--experiments", "residuals,descriptors"]
    reference = tmp_path / "reference"
    assert evaluation_main(["--server", server.address, "--out", str(reference), *subset, *SMALL]) == 0

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluation", "--server", server.address, "--out", str(out), *subset, *SMALL,
         "--batch-size", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    cache = out / "cache"
    deadline = time.monotonic() + 120
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if cache.exists() and sum(1 for _ in cache.rglob("*.npz")) >= 5:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed, "the run finished before it could be killed; the test did not exercise a crash"
    assert not (out / "report.html").exists()
    assert evaluation_main(["--server", server.address, "--out", str(out), *subset, *SMALL]) == 0
    _assert_same_tables(_tables(out), _tables(reference))
