"""Versioned model directories: which versions to serve, version policy, labels, hot reload, in-flight
accounting. Loading one version is :mod:`serving.servable`'s (``KINDS``, ``State`` and
``ServableVersion`` are re-exported here).

Layout (TF Serving's)::

    <model_root>/<name>/<version>/saved_model.pb
                                 /variables/
                                 /assets.extra/model_card.json   (written by models.export)

Every directory under the root whose name matches :data:`NAME_RE` is a model; every sub-directory
whose name is a positive integer is a version (anything else, e.g. an exporter's temporary
directory, is ignored). A :class:`VersionPolicy` chooses the versions to serve: the latest ``N``
(default 1), all, or specific ones. Version labels (``stable`` → 3) come from the configuration.

Hot reload (:meth:`ModelRegistry.poll`, every ``--file-system-poll-wait-seconds``):

* a new version is loaded *fully* (SavedModel, signatures, card, a warm-up call) while the old one
  keeps serving; then the served set is swapped atomically (copy-on-write dictionaries);
* a version that fails to load (garbage ``saved_model.pb``, missing variables, bad card) is
  reported — log line and ``GetModelStatus`` state ``END`` with the error — and skipped; with a
  ``latest`` policy the newest *loadable* versions are served, so the previous one keeps serving.
  It is retried when its files change. A version directory without ``saved_model.pb`` yet is
  reported as incomplete (state ``START``) and looked at again at the next poll;
* a version that leaves the served set (deleted, or superseded under ``latest``) is ``UNLOADING``
  until the requests holding it finish (:meth:`ModelRegistry.acquire` counts them), then ``END``.

Names and labels are checked against strict regular expressions before they are used, so a
request can never address a path outside the model root.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Mapping

import grpc

from serving.errors import InvalidArgument, NotFound, Unavailable
from serving.servable import KINDS, ServableVersion, State, _fingerprint, _IncompleteVersion, _metadata_stamp, load_version

__all__ = [
    "NAME_RE",
    "LABEL_RE",
    "KINDS",
    "State",
    "VersionPolicy",
    "ModelConfig",
    "ServableVersion",
    "VersionStatus",
    "ModelRegistry",
    "validate_name",
    "validate_label",
]

log = logging.getLogger("serving.registry")

#: Model names: a letter or digit, then letters, digits, ``_``, ``.``, ``-`` (no ``/``, no ``..`` alone).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
#: Version labels: a letter, then letters, digits, ``_``, ``.``, ``-``.
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


def validate_name(name: str, field: str = "model_spec.name") -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidArgument`."""
    if not name:
        raise InvalidArgument("the model name is empty", field)
    if not NAME_RE.match(name) or name in (".", ".."):
        raise InvalidArgument(f"model name {name[:80]!r} is invalid; it must match {NAME_RE.pattern}", field)
    return name


def validate_label(label: str, field: str = "model_spec.version_label") -> str:
    """Return ``label`` if it is a valid version label, else raise :class:`InvalidArgument`."""
    if not LABEL_RE.match(label):
        raise InvalidArgument(f"version label {label[:80]!r} is invalid; it must match {LABEL_RE.pattern}", field)
    return label


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve (TF Serving's ``model_version_policy``).

    Text form (CLI, config files): ``latest`` (= ``latest:1``), ``latest:N``, ``all``,
    ``specific:1,3``.
    """

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str | "VersionPolicy") -> "VersionPolicy":
        if isinstance(text, VersionPolicy):
            return text
        raw = str(text).strip().lower()
        kind, _, arg = raw.partition(":")
        try:
            if kind == "latest":
                n = int(arg) if arg else 1
                if n < 1:
                    raise ValueError
                return cls("latest", num_versions=n)
            if kind == "all" and not arg:
                return cls("all")
            if kind == "specific":
                versions = tuple(sorted({int(v) for v in arg.split(",") if v.strip()}))
                if not versions or min(versions) < 1:
                    raise ValueError
                return cls("specific", versions=versions)
        except ValueError:
            pass
        raise ValueError(f"version policy {text!r} is invalid; accepted: 'latest', 'latest:N' (N >= 1), 'all', 'specific:V1,V2'")

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return "specific:" + ",".join(map(str, self.versions))
        return "all"


@dataclass
class ModelConfig:
    """Per-model configuration: version policy, version labels, and the path of an explanation
    metadata file used instead of each version's ``assets.extra/explanation_metadata.json``."""

    version_policy: VersionPolicy | None = None
    labels: dict[str, int] = field(default_factory=dict)
    metadata_path: str | None = None


@dataclass
class VersionStatus:
    """The state of one version, as ``GetModelStatus`` reports it."""

    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class ModelRegistry:
    """The models under a model root, with version policies, labels and hot reload.

    Args:
        root: The model root directory.
        version_policy: Default policy for every model.
        models: Per-model :class:`ModelConfig` (policy override, labels).
        warmup: ``"all"`` calls every signature once on zeros when a version loads (the first call
            of a loaded function is slow), ``"default"`` only ``serving_default``, ``"none"`` none.
    """

    def __init__(
        self,
        root: str | Path,
        version_policy: VersionPolicy | str = "latest",
        models: Mapping[str, ModelConfig] | None = None,
        warmup: str | bool = "all",
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"model root {str(root)!r} is not a directory")
        self.default_policy = VersionPolicy.parse(version_policy)
        self.configs: dict[str, ModelConfig] = {validate_name(k, "models"): v for k, v in (models or {}).items()}
        for name, cfg in self.configs.items():
            for label in cfg.labels:
                validate_label(label, f"models.{name}.labels")
        self.warmup = warmup
        self._served: dict[str, dict[int, ServableVersion]] = {}
        self._status: dict[str, dict[int, VersionStatus]] = {}
        self._failed: dict[tuple[str, int], tuple] = {}
        self._incomplete_logged: set[tuple[str, int]] = set()
        self._outside_logged: set[Path] = set()
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    # ---------------------------------------------------------------- polling
    def start_polling(self, interval: float) -> None:
        """Poll every ``interval`` seconds on a daemon thread (``interval <= 0``: never)."""
        if interval <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - the poller must survive anything
                    log.exception("polling the model root failed")

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (served versions stay loaded until the registry is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def poll(self) -> None:
        """Scan the model root once and load / unload versions to match the policies."""
        with self._poll_lock:
            self.polls += 1
            names = set()
            try:
                entries = sorted(self.root.iterdir())
            except OSError as exc:
                log.error("cannot list the model root %s: %s", self.root, exc)
                return
            for entry in entries:
                if entry.is_dir() and NAME_RE.match(entry.name) and self._inside_root(entry):
                    names.add(entry.name)
                    self._poll_model(entry.name, entry)
            for gone in set(self._served) - names:
                log.info("model %r left the model root; unloading every version", gone)
                self._swap(gone, {})

    def _inside_root(self, path: Path) -> bool:
        """False (with a warning, once) for a directory that resolves outside the model root,
        e.g. a symlink to elsewhere: the server never reads outside its model root."""
        try:
            resolved = path.resolve()
        except OSError:
            return False
        if resolved == self.root or self.root in resolved.parents:
            return True
        if path not in self._outside_logged:
            self._outside_logged.add(path)
            log.warning("ignoring %s: it resolves to %s, outside the model root %s", path, resolved, self.root)
        return False

    def metadata_path(self, name: str) -> str | None:
        """The configured explanation metadata file of model ``name``, or ``None``."""
        cfg = self.configs.get(name)
        return cfg.metadata_path if cfg else None

    def policy_for(self, name: str) -> VersionPolicy:
        cfg = self.configs.get(name)
        return cfg.version_policy if cfg and cfg.version_policy else self.default_policy

    def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
        with self._lock:
            self._status.setdefault(name, {})[version] = status

    def _try_load(self, name: str, version: int, path: Path) -> ServableVersion | None:
        fp = (_fingerprint(path), _metadata_stamp(path, self.metadata_path(name)))
        if self._failed.get((name, version)) == fp:
            return None
        self._set_status(name, version, VersionStatus(State.LOADING))
        start = time.perf_counter()
        try:
            sv = load_version(name, version, path, warmup=self.warmup, metadata_path=self.metadata_path(name))
        except _IncompleteVersion as exc:
            if (name, version) not in self._incomplete_logged:
                log.warning("model %r version %d: %s; will look again", name, version, exc)
                self._incomplete_logged.add((name, version))
            self._set_status(name, version, VersionStatus(State.START, grpc.StatusCode.UNAVAILABLE, str(exc)))
            return None
        except Exception as exc:  # noqa: BLE001 - report, keep serving the others
            self._failed[(name, version)] = fp
            message = str(exc) or type(exc).__name__
            log.error("model %r version %d failed to load from %s: %s", name, version, path, message,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self._set_status(name, version, VersionStatus(State.END, grpc.StatusCode.DATA_LOSS, f"failed to load: {message}"))
            return None
        self._failed.pop((name, version), None)
        self._incomplete_logged.discard((name, version))
        log.info("model %r version %d loaded in %.2f s (%s, methods %s)", name, version,
                 time.perf_counter() - start, sv.kind, sv.methods)
        return sv

    def _poll_model(self, name: str, model_dir: Path) -> None:
        on_disk: dict[int, Path] = {}
        try:
            for d in model_dir.iterdir():
                if d.is_dir() and d.name.isdigit() and int(d.name) > 0 and self._inside_root(d):
                    on_disk.setdefault(int(d.name), d)
        except OSError as exc:
            log.error("cannot list %s: %s", model_dir, exc)
            return
        served = dict(self._served.get(name, {}))
        policy = self.policy_for(name)
        wanted: dict[int, ServableVersion] = {}
        if policy.kind == "latest":
            for v in sorted(on_disk, reverse=True):
                if len(wanted) == policy.num_versions:
                    break
                sv = self._current(name, v, served.get(v), on_disk[v])
                if sv is not None:
                    wanted[v] = sv
        else:
            targets = sorted(on_disk) if policy.kind == "all" else [v for v in policy.versions if v in on_disk]
            for v in targets:
                sv = self._current(name, v, served.get(v), on_disk[v])
                if sv is not None:
                    wanted[v] = sv
            if policy.kind == "specific":
                for v in policy.versions:
                    if v not in on_disk:
                        self._set_status(name, v, VersionStatus(
                            State.START, grpc.StatusCode.NOT_FOUND, f"version {v} is configured but not in {model_dir}"))
        # Versions that vanished from disk and never loaded: forget their failure records.
        for key in [k for k in self._failed if k[0] == name and k[1] not in on_disk]:
            del self._failed[key]
        if set(wanted) != set(served) or any(wanted[v] is not served.get(v) for v in wanted):
            self._swap(name, wanted)

    def _current(self, name: str, version: int, served: ServableVersion | None, path: Path) -> ServableVersion | None:
        """The served version, reloaded when its explanation metadata changed (like a new version;
        the old one keeps serving if the reload fails)."""
        if served is None:
            return self._try_load(name, version, path)
        if served.metadata_stamp == _metadata_stamp(path, self.metadata_path(name)):
            return served
        log.info("model %r version %d: explanation metadata changed; reloading", name, version)
        return self._try_load(name, version, path) or served

    def _swap(self, name: str, wanted: dict[int, ServableVersion]) -> None:
        """Atomically replace the served versions of ``name``; unload the ones that left."""
        with self._lock:
            old = self._served.get(name, {})
            served = dict(self._served)
            if wanted:
                served[name] = dict(wanted)
            else:
                served.pop(name, None)
            self._served = served  # the atomic swap: readers see the old or the new dict
            for v in wanted:
                self._status.setdefault(name, {})[v] = VersionStatus(State.AVAILABLE)
        for v in sorted(set(wanted) - set(old)):
            log.info("model %r now serves version %d (served: %s)", name, v, sorted(wanted))
        for v, sv in old.items():
            if wanted.get(v) is sv:
                continue
            self._set_status(name, v, VersionStatus(State.UNLOADING))
            log.info("model %r version %d unloading (%d requests in flight)", name, v, sv.inflight)
            sv._begin_unload(self._ended)

    def _ended(self, sv: ServableVersion) -> None:
        current = self._served.get(sv.name, {}).get(sv.version)
        if current is not None and current is not sv:  # replaced by a reload of the same version
            log.info("model %r version %d: the replaced copy unloaded", sv.name, sv.version)
            return
        self._set_status(sv.name, sv.version, VersionStatus(State.END))
        log.info("model %r version %d unloaded", sv.name, sv.version)

    def unload_all(self) -> None:
        """Unload everything (at shutdown, after the requests have drained)."""
        for name in list(self._served):
            self._swap(name, {})

    # ---------------------------------------------------------------- lookups
    def model_names(self) -> list[str]:
        """Names with at least one available version, sorted."""
        return sorted(self._served)

    def served_versions(self, name: str) -> dict[int, ServableVersion]:
        return dict(self._served.get(name, {}))

    def labels(self, name: str) -> dict[str, int]:
        cfg = self.configs.get(name)
        return dict(cfg.labels) if cfg else {}

    def statuses(self, name: str) -> dict[int, VersionStatus]:
        with self._lock:
            return dict(self._status.get(name, {}))

    def resolve(self, name: str, version: int | None = None, label: str | None = None,
                field: str = "model_spec") -> ServableVersion:
        """The served version a request addresses (no in-flight accounting; see :meth:`acquire`).

        Raises:
            InvalidArgument: a malformed name or label, a negative version.
            NotFound: unknown model, version or label.
            Unavailable: the model or the version is still loading.
        """
        validate_name(name, f"{field}.name")
        served = self._served.get(name)
        statuses = self.statuses(name)
        if label:
            validate_label(label, f"{field}.version_label")
            labels = self.labels(name)
            if label not in labels:
                raise NotFound(f"model {name!r} has no version label {label!r}; labels: {sorted(labels)}")
            version = labels[label]
        if version is not None and version < 0:
            raise InvalidArgument(f"version {version} is invalid; versions are positive integers", f"{field}.version")
        if not served:
            if any(s.state in (State.LOADING, State.START) and s.error_code == grpc.StatusCode.OK for s in statuses.values()):
                raise Unavailable(f"model {name!r} is loading; retry shortly")
            failures = [f"version {v}: {s.error_message}" for v, s in sorted(statuses.items()) if s.error_message]
            if failures:
                raise NotFound(f"model {name!r} has no available version ({'; '.join(failures)})")
            raise NotFound(f"model {name!r} not found; available models: {self.model_names()}")
        if not version:
            return served[max(served)]
        if version in served:
            return served[version]
        st = statuses.get(version)
        if st is not None and st.state == State.LOADING:
            raise Unavailable(f"version {version} of model {name!r} is loading; retry shortly")
        via = f" (label {label!r})" if label else ""
        detail = f": {st.error_message}" if st is not None and st.error_message else ""
        raise NotFound(f"version {version}{via} of model {name!r} is not available{detail}; available versions: {sorted(served)}")

    @contextlib.contextmanager
    def acquire(self, name: str, version: int | None = None, label: str | None = None,
                field: str = "model_spec") -> Iterator[ServableVersion]:
        """Hold a served version for the duration of a request (it is not unloaded meanwhile)."""
        for _ in range(5):
            sv = self.resolve(name, version, label, field)
            if sv._try_acquire():
                break
        else:  # swapped out five times in a row while we looked: very unlikely
            raise Unavailable(f"model {name!r} is being reloaded; retry shortly")
        try:
            yield sv
        finally:
            sv._release()
