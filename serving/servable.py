"""One loaded model version: its SavedModel, signatures, card or explanation metadata, backend,
warm-up and in-flight accounting (:class:`ServableVersion`, :func:`load_version`).

:mod:`serving.registry` decides which versions to load and serve; this module loads one.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

__all__ = ["CARD_PATH", "KINDS", "State", "ServableVersion", "load_version", "warm_up_signature"]

log = logging.getLogger("serving.registry")

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
