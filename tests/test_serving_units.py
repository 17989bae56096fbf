"""Unit tests of the service's parts that need no model: batching, config, policies, metrics, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.config import ServerOptions, build_parser, load_config_file, parse_args
from serving.errors import InvalidArgument, ResourceExhausted, status_for
from serving.metrics import ServingMetrics, parse_text
from serving.registry import VersionPolicy, validate_label, validate_name


# ---------------------------------------------------------------------------- batching
def _double(x):
    time.sleep(0.05)
    return {"y": x["x"] * 2, "calls": np.array(1)}


def test_batcher_merges_concurrent_requests_and_splits_results():
    seen = []
    b = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=200_000, num_batch_threads=1),
                on_batch=lambda label, n, r: seen.append((n, r)))
    results = {}

    def go(i):
        results[i] = b.run("k", {"x": np.full((1, 2), i, np.float32)}, _double, label=("m", "s"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in results.items():
        np.testing.assert_array_equal(r.outputs["y"], np.full((1, 2), 2 * i))
        assert r.outputs["calls"] == 1  # non-batched output handed whole to every task
    assert max(r.batch_size for r in results.values()) == 4, results
    assert seen == [(4, 4)]


def test_batcher_respects_max_batch_size_and_runs_big_requests_alone():
    sizes = []
    b = Batcher(BatchingOptions(max_batch_size=3, batch_timeout_micros=100_000, num_batch_threads=2),
                on_batch=lambda label, n, r: sizes.append(n))
    threads = [threading.Thread(target=b.run, args=("k", {"x": np.ones((2, 1))}, _double)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s <= 3 for s in sizes) and sum(sizes) == 6
    r = b.run("k", {"x": np.ones((5, 1))}, _double)  # larger than max_batch_size: alone
    assert r.batch_size == 5 and r.outputs["y"].shape == (5, 1)


def test_batcher_bounded_queue_answers_resource_exhausted():
    gate = threading.Event()

    def slow(x):
        gate.wait(5)
        return {"y": x["x"]}

    rejected = []
    errors = []

    def go():
        try:
            b.run("k", {"x": np.ones((1, 1))}, slow, label=("m", "s"))
        except ResourceExhausted as exc:
            errors.append(exc)

    # One execution slot, one waiting batch of at most 2 images per queue.
    b = Batcher(BatchingOptions(max_batch_size=2, num_batch_threads=1, max_enqueued_batches=1), on_reject=rejected.append)
    first = threading.Thread(target=b.run, args=("k", {"x": np.ones((2, 1))}, slow))  # runs alone, holds the slot
    first.start()
    time.sleep(0.1)
    waiting = threading.Thread(target=go)  # opens batch 1 of the queue and waits for the slot
    waiting.start()
    time.sleep(0.1)
    extra = [threading.Thread(target=go) for _ in range(2)]  # joins the open batch, then overflows
    for t in extra:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in [first, waiting, *extra]:
        t.join()
    assert len(errors) == 1 and "full" in str(errors[0]) and rejected == [("m", "s")]


def test_batcher_passes_errors_to_every_task():
    def boom(x):
        raise InvalidArgument("bad", "inputs")

    b = Batcher(BatchingOptions())
    with pytest.raises(InvalidArgument, match="inputs: bad"):
        b.run("k", {"x": np.ones((1, 1))}, boom)


def test_batching_disabled_runs_directly():
    b = Batcher(BatchingOptions(enabled=False))
    r = b.run("k", {"x": np.ones((3, 1))}, _double)
    assert r.batch_size == 3 and r.requests == 1


# ---------------------------------------------------------------------------- policies and names
@pytest.mark.parametrize("text, expected", [
    ("latest", VersionPolicy("latest", 1)),
    ("latest:3", VersionPolicy("latest", 3)),
    ("all", VersionPolicy("all")),
    ("specific:3,1", VersionPolicy("specific", versions=(1, 3))),
])
def test_version_policy_parse(text, expected):
    assert VersionPolicy.parse(text) == expected
    assert VersionPolicy.parse(str(expected)) == expected


@pytest.mark.parametrize("bad", ["latest:0", "newest", "specific:", "specific:a", "all:2"])
def test_version_policy_rejects(bad):
    with pytest.raises(ValueError, match="version policy"):
        VersionPolicy.parse(bad)


@pytest.mark.parametrize("name", ["../etc", "..", ".", "a/b", "", "a\\b", "x" * 200, "-x", "a b"])
def test_model_name_regex_rejects_path_tricks(name):
    with pytest.raises(InvalidArgument, match="model"):
        validate_name(name)


def test_names_and_labels_accepted():
    assert validate_name("vgg11_retrained.v2-a") == "vgg11_retrained.v2-a"
    assert validate_label("stable") == "stable"
    with pytest.raises(InvalidArgument, match="version label"):
        validate_label("../1")


# ---------------------------------------------------------------------------- config
def test_help_lists_every_option():
    out = subprocess.run([sys.executable, "-m", "serving", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    import dataclasses

    for f in dataclasses.fields(ServerOptions):
        if f.metadata.get("cli") is False:
            continue
        assert "--" + f.name.replace("_", "-") in text, f.name
    for tf_name in ("--file_system_poll_wait_seconds", "--max_batch_size", "--batch_timeout_micros", "--enable_batching"):
        assert tf_name in text


def test_config_file_toml_and_json_with_cli_precedence(tmp_path):
    toml = tmp_path / "serving.toml"
    toml.write_text(
        'model_root = "/models"\nport = 9000\nmax-batch-size = 4\n'
        '[models.vgg11]\nversion_policy = "latest:2"\nlabels = { stable = 1 }\n'
    )
    opts = parse_args(["--config", str(toml), "--port", "9100", "--version-label", "vgg11:canary=2"])
    assert (opts.model_root, opts.port, opts.max_batch_size) == ("/models", 9100, 4)
    cfg = opts.model_configs()["vgg11"]
    assert cfg.version_policy == VersionPolicy("latest", 2) and cfg.labels == {"stable": 1, "canary": 2}
    js = tmp_path / "serving.json"
    js.write_text(json.dumps({"model_root": "/m", "enable_batching": False, "file_system_poll_wait_seconds": 0.5}))
    opts = parse_args(["--config", str(js)])
    assert opts.enable_batching is False and opts.file_system_poll_wait_seconds == 0.5
    js.write_text(json.dumps({"model_root": "/m", "max_batch": 3}))
    with pytest.raises(ValueError, match="unknown option 'max_batch'"):
        load_config_file(js)


def test_cli_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--model-root", "/m", "--version-policy", "newest"])
    assert "version policy 'newest' is invalid" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--model-root", "/m", "--tls-cert", "c.pem"])
    assert "tls_cert and tls_key" in capsys.readouterr().err
    assert build_parser().parse_args(["--no-enable-batching"]).enable_batching is False


# ---------------------------------------------------------------------------- metrics and errors
def test_metrics_render_and_parse():
    m = ServingMetrics()

    class R:
        rpc, model, method = "Explain", "vgg11", "gradcam"

    m.observe_request(R, grpc.StatusCode.OK, 0.02)
    m.observe_batch("vgg11", "gradcam", 5, 3)
    parsed = parse_text(m.render())
    assert parsed['explain_requests_total{rpc="Explain",model="vgg11",method="gradcam",code="OK"}'] == 1
    assert parsed['explain_batch_size_bucket{model="vgg11",signature="gradcam",le="4"}'] == 0
    assert parsed['explain_batch_size_bucket{model="vgg11",signature="gradcam",le="8"}'] == 1
    assert parsed['explain_request_latency_seconds_count{rpc="Explain",model="vgg11",method="gradcam"}'] == 1


class _Ctx:
    def __init__(self, remaining, active):
        self._r, self._a = remaining, active

    def time_remaining(self):
        return self._r

    def is_active(self):
        return self._a


def test_status_mapping():
    from explain.backend import Cancelled, MethodUnavailable
    from explain.view import ExplainError

    assert status_for(InvalidArgument("x", "f"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(ExplainError("bad"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_for(MethodUnavailable("no features"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(Cancelled("stop"), _Ctx(0.0, False))[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert status_for(Cancelled("stop"), _Ctx(5.0, False))[0] == grpc.StatusCode.CANCELLED
    code, message = status_for(KeyError("/secret/path internals"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in message and "reference" in message
