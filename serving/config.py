"""Server options: one dataclass, the command line built from it, and JSON/TOML config files.

Precedence: defaults < config file (``--config FILE``, JSON or TOML) < command-line flags.
Every option has a ``--kebab-case`` flag; the TF Serving names (``--file_system_poll_wait_seconds``,
``--enable_batching``, ``--max_batch_size``, ...) are accepted as aliases. In a config file keys
may use ``_`` or ``-``; a ``[models.<name>]`` table sets a per-model ``version_policy``,
``labels`` and ``explanation_metadata`` (a Vertex-style explanation metadata file used for every
version of the model instead of ``<version>/assets.extra/explanation_metadata.json``; a relative
path is read from the directory the server runs in)::

    model_root = "runs/models"
    port = 8500
    max_batch_size = 16
    [models.vgg11]
    version_policy = "latest:2"
    labels = { stable = 1, canary = 2 }
    [models.resnet_foreign]
    explanation_metadata = "/etc/explain/resnet_foreign.json"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["ServerOptions", "build_parser", "parse_args", "load_config_file", "parse_version_labels",
           "AUTH_TOKEN_ENV", "DEFAULT_MAX_MESSAGE_BYTES"]

AUTH_TOKEN_ENV = "EXPLAIN_AUTH_TOKEN"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20


def _opt(default: Any, help: str, **extra: Any) -> Any:
    meta = {"help": help, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ServerOptions:
    """Every option of ``python -m serving`` (and ``serving.server.start_server(**options)``)."""

    model_root: str = _opt("", "model root in TF Serving's layout <root>/<name>/<version>/saved_model.pb (required)")
    port: int = _opt(8500, "gRPC port (0 = pick a free port)")
    host: str = _opt("0.0.0.0", "address to bind; 127.0.0.1 keeps the server on loopback")
    version_policy: str = _opt("latest:1", "versions to serve: latest, latest:N, all, specific:V1,V2")
    version_labels: list = _opt([], "version label MODEL:LABEL=VERSION (repeatable), e.g. vgg11:stable=1", tf_name="version_label")
    models: dict = _opt({}, "per-model settings (config file only): {name: {version_policy, labels, explanation_metadata}}", cli=False)
    file_system_poll_wait_seconds: float = _opt(2.0, "seconds between polls of the model root for new/removed versions (<= 0: load once at start)")
    warmup: str = _opt("all", "when a version loads, call every signature ('all'), only serving_default ('default') or none ('none') once on zeros", choices=("all", "default", "none"))
    enable_batching: bool = _opt(True, "merge concurrent requests for the same model and signature")
    max_batch_size: int = _opt(32, "images per executed (micro-)batch")
    batch_timeout_micros: int = _opt(0, "how long a batch waits for more requests (0 = run as soon as a thread is free)")
    num_batch_threads: int = _opt(max(1, os.cpu_count() or 1), "batches executing at the same time")
    max_enqueued_batches: int = _opt(64, "batches waiting per (model, signature) queue; beyond: RESOURCE_EXHAUSTED")
    max_request_batch_size: int = _opt(256, "images per request (rows after top-k included); 0 = no limit")
    max_image_side: int = _opt(4096, "largest image height/width accepted, in pixels (also before decoding PNG/JPEG)")
    max_iterative_batch_size: int = _opt(256, "largest batch_size parameter of iterative methods")
    max_message_bytes: int = _opt(DEFAULT_MAX_MESSAGE_BYTES, "largest gRPC message received or sent, in bytes (default 64 MiB)")
    maximum_concurrent_rpcs: int = _opt(128, "RPCs served at once; beyond: RESOURCE_EXHAUSTED (0 = unlimited)")
    num_threads: int = _opt(32, "gRPC worker threads")
    grace_period_seconds: float = _opt(10.0, "on SIGTERM, how long in-flight requests may take to finish")
    deadline_margin_seconds: float = _opt(0.05, "iterative methods stop when less than this remains of the request deadline")
    auth_token: str = _opt("", f"require 'authorization: Bearer <token>' on every RPC but health (or env {AUTH_TOKEN_ENV})")
    tls_cert: str = _opt("", "PEM certificate chain of the server (enables TLS with --tls-key)")
    tls_key: str = _opt("", "PEM private key of the server")
    tls_client_ca: str = _opt("", "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)")
    rest_port: int = _opt(0, "HTTP port of the REST/KServe/JSON APIs and the viewer page at / (0 = off; -1 = pick a free port)")
    rest_host: str = _opt("", "address of the HTTP port (default: --host)")
    metrics_port: int = _opt(0, "port of the Prometheus /metrics endpoint (0 = off)")
    metrics_host: str = _opt("", "address of the metrics endpoint (default: --host)")
    log_level: str = _opt("INFO", "logging level: DEBUG, INFO, WARNING, ERROR")
    log_requests: bool = _opt(True, "log one line per request (rpc, model, method, batch, status, ms)")

    def validate(self) -> "ServerOptions":
        """Check values; raise ``ValueError`` naming the option and the accepted values."""
        from serving.registry import VersionPolicy

        if not self.model_root:
            raise ValueError("model_root is required (--model-root DIR)")
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port {self.port} is out of range 0..65535")
        if not (-1 <= self.rest_port <= 65535):
            raise ValueError(f"rest_port {self.rest_port} is out of range; accepted: 0 (off), -1 (a free port), 1..65535")
        VersionPolicy.parse(self.version_policy)
        parse_version_labels(self.version_labels)
        for key in ("max_batch_size", "num_batch_threads", "max_enqueued_batches", "num_threads", "max_message_bytes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} {getattr(self, key)} must be >= 1")
        for key in ("batch_timeout_micros", "max_request_batch_size", "max_image_side", "maximum_concurrent_rpcs",
                    "max_iterative_batch_size", "grace_period_seconds", "deadline_margin_seconds"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} {getattr(self, key)} must be >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together (both or neither)")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"log_level {self.log_level!r} is invalid; accepted: DEBUG, INFO, WARNING, ERROR, CRITICAL")
        if self.warmup not in ("all", "default", "none"):
            raise ValueError(f"warmup {self.warmup!r} is invalid; accepted: 'all', 'default', 'none'")
        if not isinstance(self.models, dict):
            raise ValueError("models must be a table {name: {version_policy, labels}}")
        return self

    def model_configs(self) -> dict[str, Any]:
        """Per-model :class:`serving.registry.ModelConfig` from ``models`` and ``version_labels``."""
        from serving.registry import ModelConfig, VersionPolicy

        out: dict[str, ModelConfig] = {}
        for name, cfg in (self.models or {}).items():
            if not isinstance(cfg, Mapping):
                raise ValueError(f"models.{name} must be a table with version_policy and/or labels")
            unknown = set(cfg) - {"version_policy", "labels", "explanation_metadata"}
            if unknown:
                raise ValueError(f"models.{name}: unknown key(s) {sorted(unknown)}; "
                                 "accepted: ['explanation_metadata', 'labels', 'version_policy']")
            metadata = cfg.get("explanation_metadata")
            if metadata is not None and (not isinstance(metadata, str) or not metadata):
                raise ValueError(f"models.{name}.explanation_metadata {metadata!r} must be the path of a JSON file")
            policy = VersionPolicy.parse(cfg["version_policy"]) if cfg.get("version_policy") else None
            labels = {str(k): int(v) for k, v in (cfg.get("labels") or {}).items()}
            if any(v < 1 for v in labels.values()):
                raise ValueError(f"models.{name}.labels: versions must be positive integers; got {labels}")
            out[name] = ModelConfig(policy, labels, metadata)
        for name, labels in parse_version_labels(self.version_labels).items():
            out.setdefault(name, ModelConfig()).labels.update(labels)
        return out

    def resolved_auth_token(self) -> str | None:
        return self.auth_token or os.environ.get(AUTH_TOKEN_ENV) or None


def parse_version_labels(items: Sequence[str]) -> dict[str, dict[str, int]]:
    """``["vgg11:stable=1", ...]`` → ``{"vgg11": {"stable": 1}}``."""
    out: dict[str, dict[str, int]] = {}
    for item in items or []:
        try:
            model, _, rest = str(item).partition(":")
            label, _, version = rest.partition("=")
            if not model or not label or not version:
                raise ValueError
            if int(version) < 1:
                raise ValueError
            out.setdefault(model.strip(), {})[label.strip()] = int(version)
        except ValueError:
            raise ValueError(f"version label {item!r} is invalid; expected MODEL:LABEL=VERSION, e.g. vgg11:stable=1") from None
    return out


_FIELDS = {f.name: f for f in dataclasses.fields(ServerOptions)}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into ``{option: value}`` (keys normalised to ``_``)."""
    path = Path(path)
    text = path.read_bytes()
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import tomllib

        try:
            data = tomllib.loads(text.decode())
        except tomllib.TOMLDecodeError:
            if path.suffix.lower() == ".toml":
                raise
            data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a table/object of options")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ValueError(f"config file {str(path)!r}: unknown option {key!r}; accepted: {sorted(_FIELDS)}")
        out[name] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m serving`` argument parser (every option, with TF Serving aliases)."""
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description=(
            "gRPC explanation service: serves every model under a TF Serving model root with "
            "tensorflow.serving.PredictionService/ModelService and explain.v1.ExplanationService, "
            "gRPC health and reflection on one port."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="JSON or TOML file with any of the options below (flags override it)")
    defaults = ServerOptions()
    for f in dataclasses.fields(ServerOptions):
        if f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        names = [flag]
        alias = "--" + (f.metadata.get("tf_name") or f.name)
        if alias != flag:
            names.append(alias)
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = {"help": f.metadata["help"] + (f" (default: {default!r})" if default not in ("", []) else ""), "dest": f.name}
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.type in ("list", list):
            kwargs["action"] = "append"
            kwargs["metavar"] = "MODEL:LABEL=VERSION"
        elif f.metadata.get("choices"):
            kwargs["choices"] = f.metadata["choices"]
        elif f.type in ("int", int):
            kwargs["type"] = int
        elif f.type in ("float", float):
            kwargs["type"] = float
        parser.add_argument(*names, **kwargs)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> ServerOptions:
    """Options from defaults, an optional ``--config`` file and the command line."""
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config = ns.pop("config", None)
    if config:
        try:
            values.update(load_config_file(config))
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
    values.update(ns)
    try:
        return ServerOptions(**values).validate()
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
        raise  # unreachable
