"""``python -m bench.run_load``: drive the explanation service with the load generator.

Examples::

    # start a server subprocess on the tiny untrained test models (exported to a temp folder)
    .venv/bin/python -m bench.run_load --concurrency 1,4,16,64 --seconds 12 --json runs/reliability/load.json

    # a running server (give its pid to get its memory figures)
    .venv/bin/python -m bench.run_load --server 127.0.0.1:8500 --pid 12345 --classifier vgg11 --embedding embedding_avg

    # render the "## Reliability" section of bench/RESULTS.md from the suites' JSON files
    .venv/bin/python -m bench.run_load --report runs/reliability

Prints a table per level (throughput, p50/p95/p99 latency, status codes) and the server's
resident memory after the warm-up and after the run. Exit status 1 when a target is missed:
an error other than RESOURCE_EXHAUSTED, or memory after the run more than ``--max-growth``
(10%) above memory after the warm-up.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"


def _parse_mix(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        out[kind.strip()] = float(weight) if weight else 1.0
    return out


def _parse_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            out[key.replace("-", "_")] = value.lower() == "true"
        else:
            try:
                out[key.replace("-", "_")] = int(value)
            except ValueError:
                try:
                    out[key.replace("-", "_")] = float(value)
                except ValueError:
                    out[key.replace("-", "_")] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    from bench.load import DEFAULT_MIX, KINDS

    p = argparse.ArgumentParser(prog="python -m bench.run_load", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--server", help="HOST:PORT of a running server (default: start one)")
    src.add_argument("--model-root", type=Path, help="start a server subprocess on this model root")
    src.add_argument("--report", type=Path, metavar="DIR",
                     help="only render the Reliability section of bench/RESULTS.md from DIR/{load,fuzz,faults,security}.json")
    p.add_argument("--note", default="", help="with --report: a paragraph added under the heading")
    p.add_argument("--pid", type=int, help="pid of the --server process (for its memory figures)")
    p.add_argument("--classifier", default="simpler", help="classifier model")
    p.add_argument("--embedding", default="embed", help="embedding model ('' = no similarity maps)")
    p.add_argument("--concurrency", default="1,4,16,64", help="concurrent clients per level")
    p.add_argument("--seconds", type=float, default=12.0, help="traffic time per level")
    p.add_argument("--warmup", type=float, default=6.0, help="warm-up traffic time (half at 1, half at the highest level)")
    p.add_argument("--mix", default=",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items()),
                   help=f"kind=weight pairs; kinds: {', '.join(KINDS)}")
    p.add_argument("--images", type=int, default=1, help="images per request")
    p.add_argument("--timeout", type=float, default=60.0, help="deadline per request (s)")
    p.add_argument("--occlusion", default="patch_size_at_224=56", help="occlusion parameters k=v,...")
    p.add_argument("--token", default=os.environ.get("EXPLAIN_AUTH_TOKEN"), help="bearer token")
    p.add_argument("--server-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the started server, e.g. max_enqueued_batches=4 (repeatable)")
    p.add_argument("--max-growth", type=float, default=0.10, help="largest accepted RSS growth after warm-up")
    p.add_argument("--json", type=Path, help="write the full report here")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report:
        section = render_section(args.report, args.note)
        write_section(section)
        print(section)
        return 0

    from bench.load import LoadConfig, run_load

    server = None
    tmp = None
    try:
        if args.server:
            address, pid = args.server, args.pid
        else:
            sys.path.insert(0, str(REPO))
            from tests.reliability_helpers import ServerProcess, export_tiny_models

            root = args.model_root
            if root is None:
                tmp = tempfile.TemporaryDirectory(prefix="load-models-")
                root = export_tiny_models(tmp.name)
            server = ServerProcess(root, log_path=Path(tmp.name if tmp else tempfile.gettempdir()) / "load-server.log",
                                   warmup="all", **_parse_options(args.server_option))
            server.start(timeout=600)
            address, pid = server.address, server.pid
            print(f"[load] server pid {pid} on {address}, model root {root}", file=sys.stderr)
        config = LoadConfig(
            address=address, classifier=args.classifier, embedding=args.embedding or None,
            concurrency=[int(c) for c in args.concurrency.split(",")], seconds_per_level=args.seconds,
            warmup_seconds=args.warmup, mix=_parse_mix(args.mix), images_per_request=args.images,
            request_timeout=args.timeout, occlusion_params=_parse_options(args.occlusion.split(",")) if args.occlusion else {},
            token=args.token, seed=args.seed,
        )
        report = run_load(config, pid, progress=lambda lv: print(
            f"[load] {lv.concurrency:>3} clients: {lv.requests} requests, {lv.throughput:.1f}/s, "
            f"p50 {lv.p50_ms:.0f} ms, p99 {lv.p99_ms:.0f} ms, {lv.codes}", file=sys.stderr))
        if server is not None:
            server_log = server.log_text()
            report.config["server_options"] = server.options
            report.config["server_internal_errors"] = server_log.count("status=INTERNAL")
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            tmp.cleanup()
    print(report.table())
    data = report.to_json()
    data["machine"] = _machine()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str))
    ok = not report.errors and (report.memory_growth is None or report.memory_growth <= args.max_growth)
    if not ok:
        print(f"[load] target missed: errors {report.errors}, memory growth {report.memory_growth}", file=sys.stderr)
    return 0 if ok else 1


def _machine() -> str:
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return f"{os.cpu_count()} CPUs (nproc), load average {load:.1f}; Python {platform.python_version()}"


# ---------------------------------------------------------------------------- RESULTS.md
def _read(directory: Path, name: str) -> Any:
    path = directory / name
    return json.loads(path.read_text()) if path.exists() else None


def _fmt_codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(codes.items(), key=lambda kv: (-kv[1], kv[0]))) or "—"


def _fmt_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(_fmt_value(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_section(directory: Path, note: str = "") -> str:
    """The markdown of ``## Reliability`` from the JSON files the suites wrote."""
    load, queue = _read(directory, "load.json"), _read(directory, "load_queue.json")
    fuzz, faults, security = _read(directory, "fuzz.json"), _read(directory, "faults.json"), _read(directory, "security.json")
    date = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["## Reliability", "",
             f"{date}; machine: {_machine()}. Suites: `make test-load`, `make test-fuzz`, `make test-faults`, "
             "`make test-security` (tests/test_reliability_*.py); every server is a real `python -m serving` subprocess "
             "on 127.0.0.1 with small untrained models (a 64 px `simpler` classifier, 3 classes, and a 64 px average-"
             "pooling embedding network; the evaluation fault uses the trained tiny preset). Figures: "
             f"`make reliability` (= `RELIABILITY_OUT={directory} make test-load test-fuzz test-faults "
             f"test-security`, then `.venv/bin/python -m bench.run_load --report {directory}`).", ""]
    if note:
        lines += [note, ""]
    if load:
        cfg = load["config"]
        lines += ["### Load", "",
                  f"Mix (weights) {', '.join(f'{k} {v:g}' for k, v in cfg['mix'].items())}; {cfg['images_per_request']} image per "
                  f"request; occlusion {cfg['occlusion_params']}; {cfg['seconds_per_level']:g} s per level after "
                  f"{cfg['warmup_seconds']:g} s of warm-up; deadline {cfg['request_timeout']:g} s per request. "
                  "Latency is measured by the client (grpc.aio, one channel), throughput counts every answer.", "",
                  "| clients | requests | req/s | p50 ms | p95 ms | p99 ms | status codes |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        for lv in load["levels"]:
            lines.append(f"| {lv['concurrency']} | {lv['requests']:,} | {lv['throughput']:.1f} | {lv['p50_ms']:.0f} | "
                         f"{lv['p95_ms']:.0f} | {lv['p99_ms']:.0f} | {_fmt_codes(lv['codes'])} |")
        lines += ["", "| request kind (all levels) | requests | p50 ms | p95 ms | p99 ms | status codes |",
                  "|---|---:|---:|---:|---:|---|"]
        per_kind: dict[str, dict[str, Any]] = {}
        for lv in load["levels"]:
            for kind, ks in lv["kinds"].items():
                agg = per_kind.setdefault(kind, {"requests": 0, "codes": {}, "p50": [], "p95": [], "p99": []})
                agg["requests"] += ks["requests"]
                for c, n in ks["codes"].items():
                    agg["codes"][c] = agg["codes"].get(c, 0) + n
                agg["p50"].append(ks["p50_ms"])
                agg["p95"].append(ks["p95_ms"])
                agg["p99"].append(ks["p99_ms"])
        for kind, agg in per_kind.items():
            lines.append(f"| {kind} | {agg['requests']:,} | {min(agg['p50']):.0f}–{max(agg['p50']):.0f} | "
                         f"{min(agg['p95']):.0f}–{max(agg['p95']):.0f} | {min(agg['p99']):.0f}–{max(agg['p99']):.0f} | "
                         f"{_fmt_codes(agg['codes'])} |")
        growth = load.get("memory_growth")
        lines += ["", f"Requests served: **{load['requests']:,}**; errors other than RESOURCE_EXHAUSTED: "
                      f"**{sum(load['errors'].values())}** ({_fmt_codes(load['errors'])}). Server RSS after warm-up "
                      f"{load['rss_after_warmup_kib'] / 1024:.0f} MiB, after the run {load['rss_after_kib'] / 1024:.0f} MiB "
                      f"(**{growth:+.1%}**, target ≤ +10%), peak {load['peak_rss_kib'] / 1024:.0f} MiB. "
                      "(Per-kind latency columns give the range over the levels.)"]
    if queue:
        lines += ["", f"Bounded queue (`--max-enqueued-batches {queue['server_options'].get('max_enqueued_batches')}`, "
                      f"`--num-batch-threads {queue['server_options'].get('num_batch_threads')}`, "
                      f"`--max-batch-size {queue['server_options'].get('max_batch_size')}`), {queue['concurrency']} clients "
                      f"sending Predict for {queue['seconds']:g} s: {queue['requests']:,} requests, "
                      f"{_fmt_codes(queue['codes'])}; the server stayed healthy and served normally afterwards."]
    if fuzz:
        lines += ["", "### Hostile input", "",
                  f"Property-based fuzzer (hypothesis) over every RPC of both APIs: **{fuzz['cases']:,} cases** "
                  f"({fuzz.get('runs', 1)} session(s): the derandomised default-run budget plus `FUZZ_EXAMPLES` random "
                  "cases, plus the explicit cases). After every case the process was alive and health answered SERVING.", "",
                  "| RPC | cases | outcomes |", "|---|---:|---|"]
        by_rpc: dict[str, dict[str, int]] = {}
        for key, n in fuzz["rpc_code"].items():
            rpc, _, code = key.partition(":")
            by_rpc.setdefault(rpc, {})[code] = n
        for rpc in sorted(by_rpc):
            lines.append(f"| {rpc} | {sum(by_rpc[rpc].values()):,} | {_fmt_codes(by_rpc[rpc])} |")
        lines.append(f"| **all** | **{fuzz['cases']:,}** | {_fmt_codes(fuzz['code'])} |")
    if faults:
        lines += ["", "### Faults", "", "| fault injected | what happened | lost |", "|---|---|---|"]
        for fault, fig in faults.items():
            detail = "; ".join(f"{k.replace('_', ' ')}: {_fmt_value(v)}" for k, v in fig.items() if k != "lost")
            lines.append(f"| {fault} | {detail} | {fig.get('lost', '')} |")
    if security:
        lines += ["", "### Security", "", "| check | result |", "|---|---|"]
        for check, result in security.items():
            lines.append(f"| {check} | {result} |")
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## Reliability`` section of RESULTS.md, atomically."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find("\n## Reliability\n")
    if start >= 0:
        end = text.find("\n## ", start + 5)
        text = text[: start + 1] + section + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
