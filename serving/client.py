"""Python client of the explanation service: numpy in, numpy out.

::

    from serving.client import ExplanationClient

    with ExplanationClient("127.0.0.1:8500") as client:           # or "h1:8500,h2:8500"
        [info] = client.list_models()[:1]
        probs = client.predict("vgg11", images)["probabilities"]   # TF Serving Predict
        cam = client.explain("vgg11", "gradcam", images)           # explain.v1 Explain
        cam.heatmap                                                 # (N, H, W) float32 in [0, 1]

One client talks to one or several replicas:

* **load balancing** — one channel per address; every call starts on the next address
  (round-robin). A gRPC name-resolver target, ``dns:///name:port`` (or ``ipv4:a:p,b:p`` /
  ``ipv6:…``), is one channel that resolves the name to *every* address (all A/AAAA records, e.g.
  of a Kubernetes headless Service) and balances calls over them per call (gRPC's ``round_robin``
  policy); it re-resolves when a connection fails. A plain ``host:port`` keeps gRPC's default
  (``pick_first``: the first address that answers);
* **fail-over and retries** — only ``UNAVAILABLE`` is retried (the server is starting, draining
  or unreachable; every RPC of the service is idempotent). A call that gets ``UNAVAILABLE`` moves on
  at once to the next address it has not tried yet; when every address failed, it sleeps
  (exponential backoff with jitter) and starts another round, at most ``retries`` times. So a
  single dead address costs ``retries + 1`` attempts before :class:`ServiceError` (``UNAVAILABLE``).
* **deadlines** — ``timeout`` seconds (default 120) is the deadline of a whole call, retries
  included; each call may pass its own ``timeout=``.
* **security** — ``token`` sends ``authorization: Bearer <token>`` (call credentials on TLS
  channels, plain metadata on insecure ones); ``root_certificates`` / ``private_key`` /
  ``certificate_chain`` (PEM bytes) switch to TLS, the last two for mutual TLS.
* **messages** up to ``max_message_bytes`` (64 MiB) both ways.

Every failure is a :class:`ServiceError` carrying the server's status code and message.
All tensors go through :mod:`serving.convert` (the project's only TensorProto ↔ numpy converter).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import grpc
import numpy as np
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import convert
from serving.protos.explain.v1 import explain_pb2 as pb
from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc

__all__ = [
    "ExplanationClient",
    "ServiceError",
    "ModelInfo",
    "ExplainResult",
    "SimilarityResult",
    "MaskResult",
    "parse_addresses",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_BYTES",
]

DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20

_ImageInput = Any  # np.ndarray (N, H, W, 3) uint8 / float32 in [0, 1], or a sequence of PNG/JPEG bytes


class ServiceError(Exception):
    """A failed call: the gRPC status ``code`` and the server's ``message``.

    Attributes:
        code: ``grpc.StatusCode`` (e.g. ``INVALID_ARGUMENT``, ``NOT_FOUND``, ``UNAVAILABLE``).
        message: The server's explanation (names the bad field), or gRPC's for transport errors.
        address: The address of the last attempt.
        attempts: How many RPCs the call made (retries and fail-overs included).
    """

    def __init__(self, code: grpc.StatusCode, message: str, address: str | None = None, attempts: int = 1) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.address = address
        self.attempts = attempts

    def __reduce__(self) -> Any:  # picklable (e.g. across multiprocessing)
        return (type(self), (self.code, self.message, self.address, self.attempts))


# ------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class ModelInfo:
    """One served model (its default version) as reported by ``ListModels``."""

    name: str
    version: int
    kind: str
    class_names: list[str]
    input_size: tuple[int, int, int]
    methods: list[str]
    target_layer: str
    target_shape: tuple[int, ...]
    labels: dict[str, int]
    card: dict[str, Any]
    signatures: list[str] = field(default_factory=list)
    versions: dict[int, str] = field(default_factory=dict)  # every known version -> state
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> default params
    preprocessing: str = ""  # input preprocessing of the export, e.g. "caffe (BGR, ...)"
    methods_left_out: dict[str, str] = field(default_factory=dict)  # method -> why it is not offered
    method_costs: dict[str, str] = field(default_factory=dict)  # method -> "cheap" | "costly"
    method_labels: dict[str, str] = field(default_factory=dict)  # method -> display label
    method_parameters: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> ParameterSpec as dicts

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ExplainResult:
    """An ``Explain`` answer. Rows are images (or image × class with ``top_k``; see ``image_index``)."""

    heatmap: np.ndarray  # (N, H, W) float32 in [0, 1], at the input size
    heatmap_lowres: np.ndarray | None  # (N, h, w) at the target layer, when the method has one
    raw: np.ndarray | None  # map before normalisation, when the method has one
    probabilities: np.ndarray | None  # (N, C)
    class_index: np.ndarray  # (N,) int32, resolved
    model_version: int
    params: dict[str, Any]  # resolved parameters
    elapsed_ms: float  # time inside the server
    image_index: np.ndarray | None = None  # (N,) int32
    mask: np.ndarray | None = None  # (N, H, W) bool when theta or rho was given
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    model_name: str = ""
    method: str = ""
    batch_size: int = 0  # images in the batch the server executed
    queue_ms: float = 0.0
    compute_ms: float = 0.0
    roundtrip_ms: float = 0.0  # measured by the client, retries included


@dataclass(frozen=True)
class SimilarityResult:
    """A ``SimilarityMap`` answer (embedding models)."""

    query_map: np.ndarray  # (N, h, w), sums to similarity
    reference_map: np.ndarray  # (N, h, w)
    similarity: np.ndarray  # (N,)
    query_map_upsampled: np.ndarray | None  # (N, H, W)
    reference_map_upsampled: np.ndarray | None
    region_score: np.ndarray | None  # (N,) when a region was given
    model_version: int
    elapsed_ms: float = 0.0
    model_name: str = ""
    batch_size: int = 0
    method: str = ""  # the embedding method that ran (resolved: "similarity_map" by default)
    params: dict[str, Any] = field(default_factory=dict)  # resolved parameters
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # further method outputs (e.g. topk_share)


@dataclass(frozen=True)
class MaskResult:
    """An ``ImportanceMask`` answer."""

    mask: np.ndarray  # (N, H, W) bool, intersection of the methods
    heatmaps: dict[str, np.ndarray]  # method -> (N, H, W) float32
    probabilities: np.ndarray | None
    class_index: np.ndarray | None
    model_version: int
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (N, H, W) bool
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    model_name: str = ""
    batch_size: int = 0


# ------------------------------------------------------------------------------------- helpers
# gRPC name-resolver targets that may stand for several servers: one channel, balanced per call.
_BALANCED_SCHEMES = ("dns:", "ipv4:", "ipv6:")


def _is_balanced_target(address: str) -> bool:
    """Whether ``address`` is a resolver target (``dns:///name:port``, ``ipv4:…``, ``ipv6:…``).

    Such a target gets one channel with gRPC's ``round_robin`` policy over every address it
    resolves to (a headless Service name reaches every replica).
    """
    return address.startswith(_BALANCED_SCHEMES)


def _split_address_list(item: str) -> list[str]:
    # ipv4:/ipv6: targets list their addresses with commas themselves: keep them whole.
    if item.strip().startswith(("ipv4:", "ipv6:")):
        return [item]
    return item.split(",")


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """``"h1:p1,h2:p2"`` or a sequence of such strings -> ``["h1:p1", "h2:p2"]`` (order kept).

    A gRPC resolver target stays one address: ``"dns:///svc:8500"``, and ``"ipv4:a:p,b:p"`` whose
    commas belong to it (balanced per call, see the module docstring).
    """
    items = [addresses] if isinstance(addresses, str) else list(addresses)
    out = [a.strip() for item in items for a in _split_address_list(str(item)) if a.strip()]
    if not out:
        raise ValueError("no server address given (expected 'host:port' or 'h1:p1,h2:p2')")
    for a in out:
        if a.startswith(("http://", "https://")):
            raise ValueError(f"address {a!r}: give host:port (gRPC), not a URL")
    return out


def _tensor_or_none(msg: Any, name: str) -> np.ndarray | None:
    return convert.to_ndarray(getattr(msg, name), name) if msg.HasField(name) else None


def _image_batch(images: _ImageInput, resize: bool = False) -> pb.ImageBatch:
    batch = pb.ImageBatch(resize=bool(resize))
    if isinstance(images, (list, tuple)) and images and isinstance(images[0], (bytes, bytearray)):
        batch.encoded.data.extend(bytes(b) for b in images)
        return batch
    arr = np.asarray(images)
    if arr.ndim == 3:  # one image
        arr = arr[None]
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"images must be uint8 (N, H, W, 3) or float in [0, 1]; got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
    batch.tensor.CopyFrom(convert.to_tensor(np.ascontiguousarray(arr)))
    return batch


def _class_indices(class_index: int | Sequence[int] | np.ndarray | None) -> list[int]:
    if class_index is None:
        return []
    arr = np.asarray(class_index)
    if arr.ndim == 0:
        return [int(arr)]
    return [int(c) for c in arr.reshape(-1)]


def _set_model(ref: pb.ModelRef, model: str, version: int | None, label: str | None) -> None:
    ref.name = model
    if version is not None and label is not None:
        raise ValueError("give version or label, not both")
    if version is not None:
        ref.version = int(version)
    elif label is not None:
        ref.label = label


# ------------------------------------------------------------------------------------- client
class _Endpoint:
    """One address: its channel and the stubs on it."""

    def __init__(self, address: str, channel: grpc.Channel) -> None:
        self.address = address
        self.channel = channel
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.explain = pb_grpc.ExplanationServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)


class ExplanationClient:
    """Client of the explanation service (TF Serving Predict + ``explain.v1``); see the module docstring.

    Args:
        addresses: ``"host:port"``, ``"h1:p1,h2:p2"`` or a sequence of addresses (round-robin);
            ``"dns:///name:port"`` balances over every address the name resolves to.
        timeout: Default deadline of a call in seconds, retries included.
        retries: Extra rounds over the addresses after ``UNAVAILABLE`` (0 = no retry).
        token: Bearer token sent as ``authorization: Bearer <token>``.
        root_certificates: PEM CA certificates; any of the three PEM arguments enables TLS.
        private_key: PEM client key (mutual TLS), with ``certificate_chain``.
        certificate_chain: PEM client certificate chain (mutual TLS).
        max_message_bytes: Largest message sent or received.
        tls: Force TLS on (with the system's roots when no ``root_certificates``) or off;
            ``None`` = TLS iff a PEM argument is given.
        ssl_target_name: Expected server name in its certificate when it differs from the host
            (e.g. a certificate for ``localhost`` reached as ``127.0.0.1``).
        backoff_initial: First backoff in seconds; doubles each round (``backoff_multiplier``)
            up to ``backoff_max``; each sleep is drawn uniformly in ``[d/2, d]`` (jitter).
        interceptors: ``grpc`` client interceptors applied to every channel (tracing, metrics).
        channel_options: Extra ``grpc`` channel options.
    """

    def __init__(
        self,
        addresses: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        token: str | None = None,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        tls: bool | None = None,
        ssl_target_name: str | None = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        backoff_multiplier: float = 2.0,
        interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds; got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0; got {retries}")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("private_key and certificate_chain go together (mutual TLS)")
        self.addresses = parse_addresses(addresses)
        self.timeout = timeout
        self.retries = int(retries)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.backoff_multiplier = float(backoff_multiplier)
        self.max_message_bytes = int(max_message_bytes)
        use_tls = tls if tls is not None else any(x is not None for x in (root_certificates, private_key, certificate_chain))
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # Reconnect to a restarted replica quickly (gRPC's default first backoff is 1 s, max 120 s).
            ("grpc.initial_reconnect_backoff_ms", 250),
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if ssl_target_name:
            options.append(("grpc.ssl_target_name_override", ssl_target_name))
        options.extend(channel_options)
        self._metadata: tuple[tuple[str, str], ...] = ()
        credentials: grpc.ChannelCredentials | None = None
        if use_tls:
            credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
            if token:
                credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
        elif token:
            # Call credentials need a secure channel; on plaintext (loopback, a mesh sidecar) send the header.
            self._metadata = (("authorization", f"Bearer {token}"),)
        self._endpoints: list[_Endpoint] = []
        for address in self.addresses:
            channel_opts = options
            if _is_balanced_target(address):
                channel_opts = [*options, ("grpc.lb_policy_name", "round_robin")]
            if credentials is not None:
                channel = grpc.secure_channel(address, credentials, options=channel_opts)
            else:
                channel = grpc.insecure_channel(address, options=channel_opts)
            if interceptors:
                channel = grpc.intercept_channel(channel, *interceptors)
            self._endpoints.append(_Endpoint(address, channel))
        self._next = 0
        self._lock = threading.Lock()
        self._closed = False

    # ---------------------------------------------------------------- plumbing
    def _start_index(self) -> int:
        with self._lock:
            i = self._next
            self._next = (self._next + 1) % len(self._endpoints)
        return i

    def _backoff(self, round_index: int) -> float:
        d = min(self.backoff_max, self.backoff_initial * self.backoff_multiplier**round_index)
        return random.uniform(d / 2.0, d)

    def _call(
        self,
        rpc: Callable[[_Endpoint], Callable[..., Any]],
        request: Any,
        timeout: float | None = None,
        wait_for_ready: bool | None = None,
    ) -> Any:
        """Run one unary RPC with round-robin, fail-over on UNAVAILABLE and backoff between rounds."""
        if self._closed:
            raise ServiceError(grpc.StatusCode.CANCELLED, "the client is closed")
        budget = self.timeout if timeout is None else timeout
        deadline = None if budget is None else time.monotonic() + budget
        n = len(self._endpoints)
        start = self._start_index()
        attempts = 0
        last: grpc.RpcError | None = None
        last_address = self._endpoints[start].address
        for round_index in range(self.retries + 1):
            for k in range(n):
                endpoint = self._endpoints[(start + k) % n]
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                attempts += 1
                last_address = endpoint.address
                try:
                    return rpc(endpoint)(request, timeout=remaining, metadata=self._metadata or None,
                                         wait_for_ready=wait_for_ready)
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise ServiceError(error.code(), error.details() or "", endpoint.address, attempts) from None
                    last = error
            if round_index == self.retries:
                break
            pause = self._backoff(round_index)
            if deadline is not None and time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
        if last is None:
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, f"no attempt fitted in the {budget} s deadline",
                               last_address, attempts)
        raise ServiceError(
            grpc.StatusCode.UNAVAILABLE,
            f"{last.details() or 'unavailable'} (after {attempts} attempt(s) on {', '.join(self.addresses)})",
            last_address,
            attempts,
        )

    # ---------------------------------------------------------------- discovery / health
    def list_models(self, name: str | None = None, timeout: float | None = None) -> list[ModelInfo]:
        """The served models (their default versions); ``name`` restricts to one."""
        response = self._call(lambda e: e.explain.ListModels, pb.ListModelsRequest(name=name or ""), timeout)
        return [self._model_info(m) for m in response.models]

    def model_info(self, name: str, timeout: float | None = None) -> ModelInfo:
        """``list_models(name)[0]``."""
        return self.list_models(name, timeout)[0]

    @staticmethod
    def _model_info(m: pb.ModelInfo) -> ModelInfo:
        card = json.loads(m.card_json) if m.card_json else {}
        return ModelInfo(
            name=m.name,
            version=int(m.version),
            kind=m.kind,
            class_names=list(m.class_names),
            input_size=tuple(int(x) for x in m.input_size),  # type: ignore[arg-type]
            methods=[mi.name for mi in m.methods],
            target_layer=m.target_layer,
            target_shape=tuple(int(x) for x in m.target_shape),
            labels={k: int(v) for k, v in m.labels.items()},
            card=card,
            signatures=list(m.signatures),
            versions={int(v.version): v.state for v in m.versions},
            method_params={mi.name: convert.params_from_proto(mi.params, f"methods[{mi.name!r}].params") for mi in m.methods},
            preprocessing=m.preprocessing,
            methods_left_out=dict(m.methods_left_out),
            method_costs={mi.name: mi.cost for mi in m.methods if mi.cost},
            method_labels={mi.name: mi.label for mi in m.methods if mi.label},
            method_parameters={mi.name: [json_format.MessageToDict(p, preserving_proto_field_name=True)
                                         for p in mi.parameters] for mi in m.methods},
        )

    def health(self, service: str = "", timeout: float | None = 10.0) -> str:
        """``grpc.health.v1`` status of the server (``""``) or of one service, e.g. ``'SERVING'``.

        An unknown service gives ``'SERVICE_UNKNOWN'``; an unreachable server raises
        :class:`ServiceError` (``UNAVAILABLE``) after the retries.
        """
        try:
            response = self._call(lambda e: e.health.Check, health_pb2.HealthCheckRequest(service=service), timeout)
        except ServiceError as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            raise
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self, timeout: float = 60.0, service: str = "", poll: float = 0.25) -> None:
        """Block until every address reports SERVING; :class:`ServiceError` (``DEADLINE_EXCEEDED``) otherwise."""
        deadline = time.monotonic() + timeout
        for endpoint in self._endpoints:
            status = "UNKNOWN"
            while True:
                try:
                    r = endpoint.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                    status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
                except grpc.RpcError as error:
                    status = error.code().name
                if status == "SERVING":
                    break
                if time.monotonic() + poll > deadline:
                    raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"{endpoint.address} not SERVING after {timeout} s (last: {status})", endpoint.address)
                time.sleep(poll)

    # ---------------------------------------------------------------- TF Serving Predict
    def predict_signature(
        self,
        model: str,
        signature_name: str,
        inputs: Mapping[str, Any],
        output_filter: Iterable[str] = (),
        version: int | None = None,
        label: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Raw TF Serving ``Predict`` on one signature; inputs and outputs are numpy arrays."""
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature_name
        if version is not None and label is not None:
            raise ValueError("give version or label, not both")
        if version is not None:
            request.model_spec.version.value = int(version)
        elif label is not None:
            request.model_spec.version_label = label
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(convert.to_tensor(np.ascontiguousarray(value)))
        request.output_filter.extend(output_filter)
        response = self._call(lambda e: e.prediction.Predict, request, timeout)
        return {name: convert.to_ndarray(t, f"outputs[{name!r}]") for name, t in response.outputs.items()}

    def predict(self, model: str, images: np.ndarray, version: int | None = None, label: str | None = None,
                timeout: float | None = None) -> dict[str, np.ndarray]:
        """``serving_default``: ``{'probabilities', 'logits'}`` (classifiers) or ``{'embedding'}``."""
        return self.predict_signature(model, "serving_default", {"images": _as_uint8(images)}, (), version, label, timeout)

    def features(self, model: str, images: np.ndarray, version: int | None = None, label: str | None = None,
                 timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Signature ``features``: ``(activations (N, h, w, K), logits (N, C))``."""
        out = self.predict_signature(model, "features", {"images": _as_uint8(images)}, (), version, label, timeout)
        return out["activations"], out["logits"]

    def embed(self, model: str, images: np.ndarray, version: int | None = None, label: str | None = None,
              timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Signature ``embed`` of an embedding model: ``(embedding (N, D), activations (N, h, w, K))``."""
        out = self.predict_signature(model, "embed", {"images": _as_uint8(images)}, (), version, label, timeout)
        return out["embedding"], out["activations"]

    # ---------------------------------------------------------------- explain.v1
    def explain(
        self,
        model: str,
        method: str,
        images: _ImageInput,
        class_index: int | Sequence[int] | None = -1,
        version: int | None = None,
        *,
        label: str | None = None,
        top_k: int = 0,
        target_layer: str | None = None,
        theta: float | None = None,
        rho: float | None = None,
        resize: bool = False,
        timeout: float | None = None,
        **params: Any,
    ) -> ExplainResult:
        """One explanation method on a batch of images.

        Args:
            model: Model name.
            method: Registry name (``gradcam``, ``occlusion``, ``scorecam``, ...).
            images: uint8 ``(N, H, W, 3)`` (float32 in ``[0, 1]`` accepted), or PNG/JPEG bytes.
            class_index: -1 = predicted class; one int for all images, or one per image.
                Ignored with ``top_k``.
            version / label: Model version or version label (default: the latest served).
            top_k: Explain the k most probable classes of each image (rows image-major).
            target_layer: Another layer (iterative CAM methods only).
            theta / rho: Also return a binary mask (heat >= theta, or the top-rho fraction).
            resize: Let the server resize images to the model's input size.
            timeout: Deadline of this call (default: the client's).
            **params: Method parameters (see ``list_models()[i].method_params``), e.g.
                ``patch_size_at_224=10``, ``stride=5``, ``batch_size=32``, ``iterations=300``,
                ``seed=0``, ``contrastive=True``.
        """
        request = pb.ExplainRequest(method=method, images=_image_batch(images, resize), top_k=int(top_k))
        _set_model(request.model, model, version, label)
        if not top_k:
            request.class_index.extend(_class_indices(class_index))
        if target_layer:
            request.target_layer = target_layer
        if theta is not None:
            request.theta = float(theta)
        if rho is not None:
            request.rho = float(rho)
        convert.params_to_proto(request.params, params)
        t0 = time.perf_counter()
        r = self._call(lambda e: e.explain.Explain, request, timeout)
        roundtrip = (time.perf_counter() - t0) * 1e3
        return ExplainResult(
            heatmap=convert.to_ndarray(r.heatmap, "heatmap"),
            heatmap_lowres=_tensor_or_none(r, "heatmap_lowres"),
            raw=_tensor_or_none(r, "raw"),
            probabilities=_tensor_or_none(r, "probabilities"),
            class_index=convert.to_ndarray(r.class_index, "class_index"),
            model_version=int(r.model_version),
            params=convert.params_from_proto(r.params, "params"),
            elapsed_ms=float(r.timing.elapsed_ms),
            image_index=_tensor_or_none(r, "image_index"),
            mask=_tensor_or_none(r, "mask"),
            outputs={k: convert.to_ndarray(v, f"outputs[{k!r}]") for k, v in r.outputs.items()},
            model_name=r.model_name,
            method=r.method,
            batch_size=int(r.batch_size),
            queue_ms=float(r.timing.queue_ms),
            compute_ms=float(r.timing.compute_ms),
            roundtrip_ms=roundtrip,
        )

    def similarity_map(
        self,
        model: str,
        query: _ImageInput,
        reference: _ImageInput,
        region: np.ndarray | None = None,
        version: int | None = None,
        *,
        label: str | None = None,
        resize: bool = False,
        timeout: float | None = None,
        method: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> SimilarityResult:
        """Similarity maps of (query, reference) pairs (N and N, or N and 1) on an embedding model.

        ``region``: optional query region mask ``(H, W)`` or ``(N, H, W)`` (bool or weights in [0, 1]);
        then ``region_score`` is the part of the similarity inside it. ``method``: an embedding
        method listed by ``list_models()`` for the model (empty = ``similarity_map``); ``params``:
        its parameters (see the model's ``method_parameters``), checked by the server.
        """
        request = pb.SimilarityMapRequest(query=_image_batch(query, resize), reference=_image_batch(reference, resize),
                                          method=method)
        _set_model(request.model, model, version, label)
        convert.params_to_proto(request.params, dict(params or {}))
        if region is not None:
            request.region.CopyFrom(convert.to_tensor(np.ascontiguousarray(region)))
        r = self._call(lambda e: e.explain.SimilarityMap, request, timeout)
        return SimilarityResult(
            query_map=convert.to_ndarray(r.query_map, "query_map"),
            reference_map=convert.to_ndarray(r.reference_map, "reference_map"),
            similarity=convert.to_ndarray(r.similarity, "similarity"),
            query_map_upsampled=_tensor_or_none(r, "query_map_upsampled"),
            reference_map_upsampled=_tensor_or_none(r, "reference_map_upsampled"),
            region_score=_tensor_or_none(r, "region_score"),
            model_version=int(r.model_version),
            elapsed_ms=float(r.timing.elapsed_ms),
            model_name=r.model_name,
            batch_size=int(r.batch_size),
            method=r.method,
            params=convert.params_from_proto(r.params, "params"),
            outputs={k: convert.to_ndarray(v, f"outputs[{k!r}]") for k, v in r.outputs.items()},
        )

    def importance_mask(
        self,
        model: str,
        images: _ImageInput,
        methods: Sequence[str],
        theta: float | None = None,
        rho: float | None = None,
        dilations: int = 0,
        class_index: int | Sequence[int] | None = -1,
        version: int | None = None,
        method_params: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        label: str | None = None,
        resize: bool = False,
        timeout: float | None = None,
    ) -> MaskResult:
        """Binary importance mask: θ-threshold or top-ρ of each method's heat map, intersected."""
        if isinstance(methods, str):
            methods = [methods]
        request = pb.ImportanceMaskRequest(images=_image_batch(images, resize), methods=list(methods),
                                           dilations=int(dilations))
        _set_model(request.model, model, version, label)
        request.class_index.extend(_class_indices(class_index))
        if theta is not None:
            request.theta = float(theta)
        if rho is not None:
            request.rho = float(rho)
        for name, p in (method_params or {}).items():
            convert.params_to_proto(request.method_params[name].params, p)
        r = self._call(lambda e: e.explain.ImportanceMask, request, timeout)
        return MaskResult(
            mask=convert.to_ndarray(r.mask, "mask"),
            heatmaps={k: convert.to_ndarray(v, f"heatmaps[{k!r}]") for k, v in r.heatmaps.items()},
            probabilities=_tensor_or_none(r, "probabilities"),
            class_index=_tensor_or_none(r, "class_index"),
            model_version=int(r.model_version),
            masks={k: convert.to_ndarray(v, f"masks[{k!r}]") for k, v in r.masks.items()},
            params={k: convert.params_from_proto(v.params, f"params[{k!r}]") for k, v in r.params.items()},
            elapsed_ms=float(r.timing.elapsed_ms),
            model_name=r.model_name,
            batch_size=int(r.batch_size),
        )

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close every channel (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for endpoint in self._endpoints:
            endpoint.channel.close()

    def __enter__(self) -> "ExplanationClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExplanationClient({','.join(self.addresses)!r}, timeout={self.timeout}, retries={self.retries})"


def _as_uint8(images: Any) -> np.ndarray:
    """Images for the SavedModel signatures, which take uint8 ``(N, H, W, 3)``.

    Float input is taken as ``[0, 1]`` and quantised with ``rint(x·255)`` (as the server does for
    ``ImageBatch`` float tensors).
    """
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError("float images must be finite and in [0, 1] (send uint8 for 0..255)")
        return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    raise ValueError(f"images must be uint8 (N, H, W, 3) or float in [0, 1]; got dtype {arr.dtype}")
