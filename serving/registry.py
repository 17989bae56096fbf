"""Versioned model directories: loading, version policy, labels, hot reload, in-flight accounting.

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
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

import grpc

from serving.errors import InvalidArgument, NotFound, Unavailable

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
CARD_PATH = Path("assets.extra") / "model_card.json"
#: Model kinds the registry serves. A ``segmenter`` (models.segmenter) has no explanation methods;
#: its signatures (``segment``, ``serving_default``) answer plain ``Predict`` calls.
KINDS: tuple[str, ...] = ("classifier", "embedding", "segmenter")


class State:
    """TF Serving's ``ModelVersionStatus.State`` numbers."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50
    NAMES = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


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


class ServableVersion:
    """One loaded SavedModel version with what the servicers need to know about it.

    Attributes:
        name, version, path: Identity and directory.
        card: The model card (``{}`` if the export has none).
        kind: ``"classifier"``, ``"embedding"`` or ``"segmenter"``.
        class_names: Class names (classifiers; a segmenter's object names).
        input_shape: ``(H, W, 3)``.
        num_classes: Number of classes, or ``None`` for embedding models and segmenters.
        target_layer, target_shape: The explained layer and its ``(h, w, K)``.
        signatures: Signature name → concrete function.
        serving_signature: The signature that scores images: ``serving_default``, or the one the
            explanation metadata names (``cnnExplain.signatureName``).
        input_specs, output_specs: Signature name → {tensor name → ``tf.TensorSpec``}.
        signature_defs: Signature name → ``SignatureDef`` proto (for ``GetModelMetadata``).
        methods: Registry method names usable on this version.
    """

    def __init__(self, name: str, version: int, path: Path, loaded: Any, card: dict[str, Any],
                 signature_defs: dict[str, Any], metadata: Any = None, metadata_error: str = "") -> None:
        self.name = name
        self.metadata = metadata  # models.metadata.ExplanationMetadata or None
        self.metadata_error = metadata_error
        self.metadata_stamp: tuple[int, int] | None = None  # set by load_version
        self.version = version
        self.path = path
        self.loaded = loaded
        self.card = card
        self.signature_defs = signature_defs
        self.signatures: dict[str, Any] = dict(loaded.signatures)
        self.input_specs = {k: dict(fn.structured_input_signature[1]) for k, fn in self.signatures.items()}
        self.output_specs = {k: dict(fn.structured_outputs) for k, fn in self.signatures.items()}
        self.serving_signature = "serving_default"
        if metadata is not None and metadata.signature != "serving_default":
            if metadata.signature not in self.signatures:
                raise ValueError(f"the explanation metadata names signature {metadata.signature!r} "
                                 f"(cnnExplain.signatureName); the SavedModel has {sorted(self.signatures)}")
            self.serving_signature = metadata.signature
        if self.serving_signature not in self.signatures:
            raise ValueError("the SavedModel has no 'serving_default' signature (name another one in the explanation "
                             f"metadata, cnnExplain.signatureName; it has {sorted(self.signatures)})")
        default_out = self.output_specs[self.serving_signature]
        self.kind: str = card.get("kind") or ("embedding" if "embed" in self.signatures or "embedding" in default_out else "classifier")
        if self.kind not in KINDS:
            raise ValueError(f"model card kind {self.kind!r} is not supported; accepted: {list(KINDS)}")
        self.class_names: list[str] = [str(c) for c in card.get("class_names") or []]
        if not self.class_names and metadata is not None:
            self.class_names = list(metadata.class_names)
        self.input_shape = self._input_shape(card)
        if self.kind == "classifier":
            key = "probabilities" if "probabilities" in default_out else next(iter(default_out))
            if metadata is not None and metadata.output_tensor in default_out:
                key = metadata.output_tensor
            dim = default_out[key].shape[-1]
            self.num_classes: int | None = int(dim) if dim is not None else len(self.class_names) or None
            if not self.class_names and self.num_classes:
                self.class_names = [str(i) for i in range(self.num_classes)]
        else:
            self.num_classes = None
        self.target_layer: str = card.get("target_layer") or ""
        self.target_shape: list[int] = [int(s) for s in card.get("target_shape") or []]
        self.methods: list[str] = self._methods(card)
        self.methods_left_out: dict[str, str] = self._left_out(card)
        self.preprocessing: str = self._preprocessing(card)
        self._backend: Any = None
        self._refuse_synthesis()
        self._foreign_methods()
        self._lock = threading.Lock()
        self._inflight = 0
        self.state = State.AVAILABLE
        self._on_end: Any = None

    def _input_shape(self, card: Mapping[str, Any]) -> tuple[int, int, int]:
        size = card.get("input_size")
        if size:
            return tuple(int(s) for s in size)  # type: ignore[return-value]
        specs = self.input_specs[self.serving_signature]
        md = self.metadata
        spec = specs[md.input_tensor] if md is not None and md.input_tensor in specs else next(iter(specs.values()))
        dims = [spec.shape[i] for i in range(1, 4)]
        if any(d is None for d in dims):
            raise ValueError("the model card has no input_size and serving_default has no static image shape")
        return tuple(int(d) for d in dims)  # type: ignore[return-value]

    def _methods(self, card: Mapping[str, Any]) -> list[str]:
        """Single-pass methods with a signature of their name, and every iterative method for this
        kind of model (one that needs a signature the export lacks, e.g. Score-CAM without
        ``features``, answers FAILED_PRECONDITION when called)."""
        from explain import registry as methods

        out = []
        for name in methods.names(applies_to=self.kind):
            if methods.get(name).kind == "single_pass" and name not in self.signatures:
                continue
            out.append(name)
        return out

    def _left_out(self, card: Mapping[str, Any]) -> dict[str, str]:
        """Registry methods of this model's kind that it does not offer, with the reason."""
        from explain import registry as methods

        recorded = {str(k): str(v) for k, v in (card.get("methods_left_out") or {}).items()}
        out: dict[str, str] = {}
        for name in methods.names(applies_to=self.kind):
            if name in self.methods:
                continue
            out[name] = recorded.get(name) or f"this version was exported without a {name!r} signature"
        return out

    def _refuse_synthesis(self) -> None:
        """A float input of unknown range cannot take synthesised images: the iterative methods
        move to ``methods_left_out`` with the reason (calling them answers FAILED_PRECONDITION)."""
        from explain import registry as methods
        from explain.backend import MethodUnavailable

        if self.kind not in ("classifier", "embedding"):
            return
        try:
            backend = self.backend
        except MethodUnavailable as err:
            reason = str(err)
        else:
            if backend.feeds_floats:
                return
            reason = str(backend._unknown_range())
        for name in list(self.methods):
            if methods.get(name).kind == "iterative":
                self.methods.remove(name)
                self.methods_left_out[name] = reason

    def _foreign_methods(self) -> None:
        """A classifier without a card: the gradient methods and the Grad-CAM family run in the
        service on its signature (:mod:`explain.foreign`) where they apply; ``methods_left_out``
        says why the others do not."""
        from explain import registry as methods
        from explain.backend import MethodUnavailable
        from explain.foreign import applicable

        if self.card or self.kind != "classifier":
            return
        try:
            ok, left_out = applicable(self.backend)
        except MethodUnavailable as err:
            ok, left_out = [], {}
            self.methods_left_out.update({n: str(err) for n in methods.names("single_pass", "classifier")
                                          if n not in self.methods})
        self.methods = sorted(set(self.methods) | set(ok))
        for name in ok:
            self.methods_left_out.pop(name, None)
        self.methods_left_out.update(left_out)
        for name in methods.names("single_pass", "classifier"):
            if name not in self.methods and name not in left_out:
                self.methods_left_out[name] = (f"{name!r} needs the model's own layers (a SavedModel exported by "
                                               "`python -m models export`); a model without a card has none")
        if "xrai" in self.methods and self.backend.gradient_reason() is not None:
            self.methods.remove("xrai")
            self.methods_left_out["xrai"] = self.backend.gradient_reason()

    @staticmethod
    def _preprocessing(card: Mapping[str, Any]) -> str:
        from models.preprocessing import PreprocessingError, resolve_preprocessing

        entry = card.get("preprocessing")
        if entry is None:
            return "unit (pixels / 255 in [0, 1])" if card else ""
        try:
            return resolve_preprocessing(entry).describe()
        except PreprocessingError as err:
            raise ValueError(f"the model card's preprocessing entry is invalid: {err}") from None

    # ---------------------------------------------------------------- helpers
    @property
    def backend(self) -> Any:
        """An :class:`explain.backend.SavedModelBackend` over this version (created on first use)."""
        if self._backend is None:
            from explain.backend import SavedModelBackend

            self._backend = SavedModelBackend(self.loaded, input_shape=self.input_shape, **self._backend_options())
        return self._backend

    def _backend_options(self) -> dict[str, Any]:
        """How synthesised images reach the model: from the metadata (the card's models take uint8)."""
        from models.metadata import METADATA_PATH
        from models.preprocessing import resolve_preprocessing

        how = (f"declare it with `python -m models describe {self.path.parent} --input-range MIN,MAX` "
               f"(writes {METADATA_PATH}, Vertex's explanation metadata: inputs.<name>.featureValueDomain)")
        if self.metadata_error:
            how += f"; the model's metadata file was refused: {self.metadata_error}"
        md = self.metadata
        if md is None:
            return {"how_to_declare": how}
        return {
            "input_key": md.input_tensor,
            "output_key": md.output_tensor,
            "input_range": md.input_range,
            "preprocessing": resolve_preprocessing(md.preprocessing) if md.preprocessing else None,
            "how_to_declare": how,
            "signature": self.serving_signature,
            "activation_key": md.activation_output,
        }

    def card_json(self) -> str:
        return json.dumps(self.card, sort_keys=True, default=str)

    @property
    def inflight(self) -> int:
        return self._inflight

    def _try_acquire(self) -> bool:
        with self._lock:
            if self.state != State.AVAILABLE:
                return False
            self._inflight += 1
            return True

    def _release(self) -> None:
        finalize = False
        with self._lock:
            self._inflight -= 1
            finalize = self.state == State.UNLOADING and self._inflight == 0
        if finalize:
            self._finalize()

    def _begin_unload(self, on_end: Any) -> None:
        with self._lock:
            self.state = State.UNLOADING
            self._on_end = on_end
            finalize = self._inflight == 0
        if finalize:
            self._finalize()

    def _finalize(self) -> None:
        with self._lock:
            if self.state == State.END:
                return
            self.state = State.END
            on_end = self._on_end
        self.loaded = None  # drop the references; TensorFlow frees the variables with them
        self.signatures = {}
        self._backend = None
        if on_end is not None:
            on_end(self)

    def __repr__(self) -> str:
        return f"ServableVersion({self.name!r}, {self.version}, {State.NAMES[self.state]})"


class _IncompleteVersion(Exception):
    pass


def _fingerprint(path: Path) -> tuple:
    """Cheap identity of a version directory's contents (names, sizes, mtimes)."""
    items = []
    try:
        for p in sorted(path.rglob("*")):
            try:
                st = p.stat()
            except OSError:
                continue
            items.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    except OSError:
        pass
    return tuple(items)


def _metadata_stamp(path: Path, metadata_path: str | None = None) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a version's explanation metadata file (the configured
    ``metadata_path`` when given), or ``None`` without one."""
    from models.metadata import METADATA_PATH

    try:
        st = (Path(metadata_path) if metadata_path else path / METADATA_PATH).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _read_metadata(name: str, version: int, path: Path, metadata_path: str | None = None) -> tuple[Any, str]:
    """The version's explanation metadata, or ``(None, why)`` when its file is refused.

    A malformed file does not stop the version from serving ``serving_default``; the methods that
    need it answer FAILED_PRECONDITION naming the bad field."""
    from models.metadata import MetadataError, read_metadata, read_metadata_file

    try:
        return (read_metadata_file(metadata_path) if metadata_path else read_metadata(path)), ""
    except MetadataError as err:
        log.error("model %r version %d: explanation metadata refused: %s", name, version, err)
        return None, str(err)


def load_version(name: str, version: int, path: Path, warmup: str | bool = "all",
                 metadata_path: str | None = None) -> ServableVersion:
    """Load one version directory fully (SavedModel, signatures, card, optional warm-up call).

    ``metadata_path``: an explanation metadata file to use instead of the version's own
    ``assets.extra/explanation_metadata.json`` (the server config's per-model setting).

    Raises:
        _IncompleteVersion: no ``saved_model.pb`` yet.
        Exception: anything else that goes wrong (reported by the registry as a load failure).
    """
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = path / "saved_model.pb"
    if not pb_path.is_file():
        raise _IncompleteVersion("incomplete version directory: no saved_model.pb (yet)")
    card: dict[str, Any] = {}
    card_path = path / CARD_PATH
    if card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"the model card {CARD_PATH} is not valid JSON: {exc}") from exc
        if not isinstance(card, dict):
            raise ValueError(f"the model card {CARD_PATH} is not a JSON object")
    try:
        saved = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    except Exception as exc:  # DecodeError and friends
        raise ValueError("saved_model.pb is not a valid SavedModel protocol buffer (corrupt file?)") from exc
    if not saved.meta_graphs:
        raise ValueError("saved_model.pb has no meta graph")
    signature_defs = {k: v for k, v in saved.meta_graphs[0].signature_def.items() if not k.startswith("__")}
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"tf.saved_model.load failed: {first}") from exc
    stamp = _metadata_stamp(path, metadata_path)
    metadata, metadata_error = _read_metadata(name, version, path, metadata_path)
    sv = ServableVersion(name, version, path, loaded, card, signature_defs, metadata, metadata_error)
    sv.metadata_stamp = stamp
    mode = warmup if isinstance(warmup, str) else ("default" if warmup else "none")
    if mode not in ("all", "default", "none"):
        raise ValueError(f"warmup {warmup!r} is invalid; accepted: 'all', 'default', 'none'")
    if mode != "none":
        names = sorted(sv.signatures) if mode == "all" else [sv.serving_signature]
        for sig in names:
            try:
                warm_up_signature(sv, sig)
            except Exception as exc:  # noqa: BLE001
                if sig == sv.serving_signature:
                    raise ValueError(f"warm-up call of {sig} failed: {str(exc).strip()[:200]}") from exc
                log.warning("model %r version %d: warm-up of signature %r failed: %s", name, version, sig,
                            str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
    return sv


def _declared_defaults(signature: str) -> dict[str, Any]:
    """The declared parameter defaults of the explanation method named like ``signature`` (``{}``
    for ``serving_default`` and other signatures that are not a registered method)."""
    from explain import registry

    try:
        return dict(registry.get(signature).params)
    except KeyError:
        return {}


def warm_up_signature(sv: ServableVersion, signature: str) -> None:
    """Call ``signature`` once on a batch of one zero example (the first call of a loaded
    function is much slower than the next ones; TF Serving's warm-up records do the same).

    Scalar inputs that are parameters of the method (``steps``, ``baseline``, ``seed`` …) get the
    method's declared default: zero is out of range for some of them (Integrated Gradients'
    ``steps`` accepts ``1..1024``), and a failed warm-up leaves the signature cold.
    """
    import tensorflow as tf

    declared = _declared_defaults(signature)
    inputs = {}
    for key, spec in sv.input_specs[signature].items():
        dims = spec.shape.as_list() if spec.shape.rank is not None else []
        if len(dims) == 4:  # images (N, H, W, 3)
            shape = [1, *sv.input_shape]
        else:
            shape = [1 if d is None else d for d in dims]
        if not dims and declared.get(key) is not None and key != "class_index":
            inputs[key] = tf.constant(declared[key], spec.dtype)
        else:
            inputs[key] = tf.zeros(shape, spec.dtype)
    sv.signatures[signature](**inputs)


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
