"""Hostile input: a property-based fuzzer (hypothesis) against a real server subprocess.

Every RPC of both APIs gets random and malformed requests: wrong dtypes (also unknown DataType
numbers) and ranks, shapes that disagree with the content size, NaN and Inf, empty batches and
batches over the limit, absurd dimensions, negative or huge class indices, unknown models,
versions, labels, methods and layers, path-like model names, invalid parameters, truncated and
corrupt PNG/JPEG bytes, images whose header claims enormous dimensions, and bytes that are not a
protocol buffer at all. The properties:

* every request gets a *defined* status code — never INTERNAL/UNKNOWN/UNAVAILABLE — and a non-empty
  message without internals (no traceback);
* requests whose outcome is known (unknown model → NOT_FOUND, NaN → INVALID_ARGUMENT, …) get
  exactly that code;
* after every request the process is alive and health answers SERVING.

A further check covers memory amplification: a request of a few bytes (a tensor shape with one
value, or a batch of tiny PNGs that decode to huge images) must be refused before the server
materialises it (peak RSS, ``VmHWM``, hardly moves).

Default run: ``test_fuzz_quick`` (50 examples, derandomised) and the explicit cases. The full
fuzzer (``FUZZ_EXAMPLES``, default 5000) is marked ``fuzz`` and ``slow``: ``make test-fuzz``.
With ``RELIABILITY_OUT=DIR`` the tallies go to ``DIR/fuzz.json`` (bench/RESULTS.md).
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from explain import registry  # noqa: E402
from tests.reliability_helpers import CLASSIFIER, EMBEDDING, SIZE, ServerProcess, health, shared_model_root  # noqa: E402

C = grpc.StatusCode
DEFINED = frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, C.UNIMPLEMENTED,
                     C.RESOURCE_EXHAUSTED, C.DEADLINE_EXCEEDED, C.OUT_OF_RANGE})
REFUSED = frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND, C.FAILED_PRECONDITION, C.RESOURCE_EXHAUSTED})
DEADLINE_S = 6.0
QUICK_EXAMPLES = 50
FULL_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5000"))

# ---------------------------------------------------------------------------- the server
TALLY: dict[str, Counter] = {"rpc": Counter(), "code": Counter(), "category": Counter(), "rpc_code": Counter()}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    root = shared_model_root(tmp_path_factory)
    log = tmp_path_factory.mktemp("fuzz_server") / "server.log"
    server = ServerProcess(root, log_path=log, version_labels=[f"{CLASSIFIER}:stable=1"])
    with server.start():
        yield server
    out = os.environ.get("RELIABILITY_OUT")
    if out and sum(TALLY["rpc"].values()):
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "fuzz.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        data = {k: {str(kk): vv for kk, vv in v.items()} for k, v in TALLY.items()}
        data["cases"] = sum(TALLY["rpc"].values())
        data["runs"] = previous.get("runs", 0) + 1
        path.write_text(json.dumps(data, indent=1, sort_keys=True))


@pytest.fixture(scope="module")
def channel(fuzz_server):
    options = [("grpc.max_receive_message_length", 64 * 2**20), ("grpc.max_send_message_length", 64 * 2**20)]
    with grpc.insecure_channel(fuzz_server.address, options=options) as ch:
        yield ch


# ---------------------------------------------------------------------------- wire helpers
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402
from tensorflow_serving.apis import (  # noqa: E402
    classification_pb2, get_model_metadata_pb2, get_model_status_pb2, inference_pb2, model_management_pb2, predict_pb2,
    regression_pb2)

from serving.protos.explain.v1 import explain_pb2 as pb  # noqa: E402

RPCS = {
    # name: (path, request type, response type)
    "Predict": ("/tensorflow.serving.PredictionService/Predict", predict_pb2.PredictRequest, predict_pb2.PredictResponse),
    "GetModelMetadata": ("/tensorflow.serving.PredictionService/GetModelMetadata",
                         get_model_metadata_pb2.GetModelMetadataRequest, get_model_metadata_pb2.GetModelMetadataResponse),
    "Classify": ("/tensorflow.serving.PredictionService/Classify", classification_pb2.ClassificationRequest,
                 classification_pb2.ClassificationResponse),
    "Regress": ("/tensorflow.serving.PredictionService/Regress", regression_pb2.RegressionRequest,
                regression_pb2.RegressionResponse),
    "MultiInference": ("/tensorflow.serving.PredictionService/MultiInference", inference_pb2.MultiInferenceRequest,
                       inference_pb2.MultiInferenceResponse),
    "GetModelStatus": ("/tensorflow.serving.ModelService/GetModelStatus", get_model_status_pb2.GetModelStatusRequest,
                       get_model_status_pb2.GetModelStatusResponse),
    "HandleReloadConfigRequest": ("/tensorflow.serving.ModelService/HandleReloadConfigRequest",
                                  model_management_pb2.ReloadConfigRequest, model_management_pb2.ReloadConfigResponse),
    "ListModels": ("/explain.v1.ExplanationService/ListModels", pb.ListModelsRequest, pb.ListModelsResponse),
    "Explain": ("/explain.v1.ExplanationService/Explain", pb.ExplainRequest, pb.ExplainResponse),
    "SimilarityMap": ("/explain.v1.ExplanationService/SimilarityMap", pb.SimilarityMapRequest, pb.SimilarityMapResponse),
    "ImportanceMask": ("/explain.v1.ExplanationService/ImportanceMask", pb.ImportanceMaskRequest, pb.ImportanceMaskResponse),
}


@dataclass
class Case:
    """One generated request: the RPC, the message (or raw bytes), the codes it may get."""

    rpc: str
    request: Any
    category: str
    expect: frozenset = DEFINED
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # what hypothesis prints for a failing case: short, no tensor bytes
        size = len(self.request) if isinstance(self.request, (bytes, bytearray)) else self.request.ByteSize()
        return f"Case({self.rpc}, {self.category}, {'; '.join(self.notes)}, {size} bytes)"


def call(channel: grpc.Channel, case: Case, timeout: float = DEADLINE_S) -> tuple[grpc.StatusCode, str, float]:
    path, req_type, resp_type = RPCS[case.rpc]
    raw = isinstance(case.request, (bytes, bytearray))
    fn = channel.unary_unary(path, request_serializer=None if raw else req_type.SerializeToString,
                             response_deserializer=resp_type.FromString)
    start = time.monotonic()
    try:
        fn(bytes(case.request) if raw else case.request, timeout=timeout)
        return C.OK, "", time.monotonic() - start
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", time.monotonic() - start


def check_outcome(server: ServerProcess, channel: grpc.Channel, case: Case) -> tuple[grpc.StatusCode, str]:
    code, message, elapsed = call(channel, case)
    TALLY["rpc"][case.rpc] += 1
    TALLY["code"][code.name] += 1
    TALLY["category"][case.category] += 1
    TALLY["rpc_code"][f"{case.rpc}:{code.name}"] += 1
    where = f"{case.rpc} [{case.category}] {'; '.join(case.notes)} -> {code.name}: {message[:300]!r}"
    assert server.alive(), f"the server died on {where}\n{server.log_tail()}"
    assert health(server.address, timeout=10) == "SERVING", f"no health after {where}"
    assert code in DEFINED, f"undefined status for {where}"
    assert code in case.expect, f"expected one of {sorted(c.name for c in case.expect)} for {where}"
    if code != C.OK:
        assert message.strip(), f"no message for {where}"
        assert "Traceback" not in message and 'File "' not in message, f"internals leaked for {where}"
    if code == C.DEADLINE_EXCEEDED:
        assert elapsed >= DEADLINE_S * 0.5, f"DEADLINE_EXCEEDED long before the deadline for {where}"
    return code, message


# ---------------------------------------------------------------------------- tensors
def _shape(dims: list[int]) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


def tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    import tensorflow as tf

    return tf.make_tensor_proto(np.asarray(array))


def good_images(n: int = 1, seed: int = 0, dtype: str = "uint8") -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    return img if dtype == "uint8" else (img / 255.0).astype(dtype)


DTYPES = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_INT32,
          types_pb2.DT_INT64, types_pb2.DT_INT8, types_pb2.DT_UINT16, types_pb2.DT_BOOL, types_pb2.DT_STRING,
          types_pb2.DT_COMPLEX64, types_pb2.DT_BFLOAT16, types_pb2.DT_QINT8, types_pb2.DT_RESOURCE,
          types_pb2.DT_VARIANT, types_pb2.DT_INVALID, types_pb2.DT_FLOAT_REF, 9999, 77]
SMALL_DIMS = [0, 1, 2, 3, 4, 63, 64, 65]
# Absurd dimensions make the element count >= 2**40 (refused at once by the allocator with
# overcommit, or better by the server) or negative; never a middle size that would really be
# allocated on a shared machine (see test_tensor_shape_amplification_is_refused for that).
ABSURD_DIMS = [2**40, 2**50, -1, -7]


@st.composite
def hostile_tensors(draw: Any) -> tuple[tensor_pb2.TensorProto, str]:
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(0, 6))
    dims = [draw(st.sampled_from(SMALL_DIMS)) for _ in range(rank)]
    absurd = rank > 0 and draw(st.booleans()) and draw(st.booleans())
    if absurd:
        dims[draw(st.integers(0, rank - 1))] = draw(st.sampled_from(ABSURD_DIMS))
    else:
        while int(np.prod(dims, dtype=np.float64)) * 8 > 32 * 2**20:  # keep a legitimate size bounded
            dims[int(np.argmax(dims))] = 1
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=_shape(dims))
    content = draw(st.sampled_from(["none", "one value", "values", "bytes", "exact bytes", "nan", "inf"]))
    if content == "one value":
        value = draw(st.sampled_from([0, 1, -1, 255, 256, 2**31 - 1, -(2**31)]))
        proto.int_val.append(value)
        proto.int64_val.append(value)
        proto.float_val.append(float(value))
    elif content == "values":
        vals = draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20))
        proto.int_val.extend(vals)
        proto.float_val.extend(float(v) for v in vals)
        proto.string_val.extend(str(v).encode() for v in vals)
    elif content == "bytes":
        proto.tensor_content = draw(st.binary(min_size=1, max_size=600))
    elif content == "exact bytes" and not absurd and all(d >= 0 for d in dims):
        n = int(np.prod(dims)) * 4
        if 0 < n <= 2**20:
            proto.tensor_content = bytes(draw(st.binary(min_size=16, max_size=16)) * (n // 16 + 1))[:n]
    elif content in ("nan", "inf"):
        proto.float_val.append(float(content))
        proto.double_val.append(float(content))
    note = f"tensor dtype={dtype} dims={dims} content={content}"
    return proto, note


@st.composite
def image_tensors(draw: Any) -> tuple[tensor_pb2.TensorProto, str, frozenset]:
    """Image tensors: valid, subtly wrong (with a known answer) or hostile."""
    kind = draw(st.sampled_from(["valid", "valid float", "nan", "inf", "out of range float", "wrong size",
                                 "wrong channels", "rank 3", "empty batch", "over the limit", "bool",
                                 "int64", "hostile", "hostile"]))
    n = draw(st.integers(1, 2))
    if kind == "valid":
        return tensor(good_images(n, draw(st.integers(0, 9)))), kind, DEFINED
    if kind == "valid float":
        return tensor(good_images(n, 1, "float32")), kind, DEFINED
    if kind in ("nan", "inf", "out of range float"):
        x = good_images(n, 2, "float32")
        x[0, draw(st.integers(0, SIZE - 1)), 3, 1] = {"nan": np.nan, "inf": np.inf, "out of range float": 1.5}[kind]
        return tensor(x), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "wrong size":
        h = draw(st.sampled_from([1, 32, 63, 65, 128]))
        return tensor(np.zeros((n, h, SIZE, 3), np.uint8)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "wrong channels":
        ch = draw(st.sampled_from([1, 2, 4]))
        return tensor(np.zeros((n, SIZE, SIZE, ch), np.uint8)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "rank 3":
        return tensor(np.zeros((SIZE, SIZE, 3), np.uint8)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "empty batch":
        return tensor(np.zeros((0, SIZE, SIZE, 3), np.uint8)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "over the limit":
        return tensor(np.zeros((257, SIZE, SIZE, 3), np.uint8)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "bool":
        return tensor(np.zeros((n, SIZE, SIZE, 3), bool)), kind, frozenset({C.INVALID_ARGUMENT})
    if kind == "int64":
        return tensor(np.full((n, SIZE, SIZE, 3), 7, np.int64)), kind, DEFINED
    proto, note = draw(hostile_tensors())
    return proto, note, DEFINED


# ---------------------------------------------------------------------------- encoded images
def png_bytes(h: int = SIZE, w: int = SIZE, seed: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(good_images(1, seed)[0][:h, :w] if h <= SIZE and w <= SIZE else np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int = 0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(good_images(1, seed)[0]).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose (valid, CRC-correct) header claims ``width`` × ``height`` with almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG with its SOF0 marker rewritten to claim ``width`` × ``height``."""
    data = bytearray(jpeg_bytes())
    i = data.find(b"\xff\xc0")
    assert i > 0
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def other_format(fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(good_images(1)[0]).save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def encoded_images(draw: Any) -> tuple[pb.EncodedImages, str, frozenset]:
    kind = draw(st.sampled_from(["png", "jpeg", "truncated png", "truncated jpeg", "corrupt png", "corrupt jpeg",
                                 "random bytes", "empty file", "no files", "gif", "bmp", "png too large",
                                 "jpeg too large", "png 4097", "png other size", "mixed sizes"]))
    invalid = frozenset({C.INVALID_ARGUMENT})
    if kind == "png":
        return pb.EncodedImages(data=[png_bytes(seed=draw(st.integers(0, 5)))]), kind, DEFINED
    if kind == "jpeg":
        return pb.EncodedImages(data=[jpeg_bytes()]), kind, DEFINED
    if kind.startswith("truncated"):
        data = png_bytes() if "png" in kind else jpeg_bytes()
        cut = draw(st.integers(0, len(data) - 40))
        return pb.EncodedImages(data=[data[:cut]]), f"{kind} at {cut}", invalid
    if kind.startswith("corrupt"):
        data = bytearray(png_bytes() if "png" in kind else jpeg_bytes())
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return pb.EncodedImages(data=[bytes(data)]), kind, DEFINED  # a flipped pixel byte may still decode
    if kind == "random bytes":
        return pb.EncodedImages(data=[draw(st.binary(max_size=300))]), kind, invalid
    if kind == "empty file":
        return pb.EncodedImages(data=[b""]), kind, invalid
    if kind == "no files":
        return pb.EncodedImages(), kind, invalid
    if kind in ("gif", "bmp"):
        return pb.EncodedImages(data=[other_format(kind.upper())]), kind, invalid
    if kind == "png too large":
        side = draw(st.sampled_from([5000, 65535, 100_000, 2**31 - 1]))
        return pb.EncodedImages(data=[png_claiming(side, side)]), f"{kind} {side}", invalid
    if kind == "jpeg too large":
        return pb.EncodedImages(data=[jpeg_claiming(65000, 65000)]), kind, invalid
    if kind == "png 4097":
        return pb.EncodedImages(data=[png_claiming(4097, 16)]), kind, invalid
    if kind == "png other size":
        return pb.EncodedImages(data=[png_bytes(48, 40)]), kind, DEFINED  # OK with resize, else INVALID_ARGUMENT
    return pb.EncodedImages(data=[png_bytes(), png_bytes(48, 40)]), kind, DEFINED


@st.composite
def image_batches(draw: Any) -> tuple[pb.ImageBatch, str, frozenset]:
    resize = draw(st.booleans())
    if mostly(draw, 55):
        n = draw(st.integers(1, 3))
        return pb.ImageBatch(tensor=tensor(good_images(n, draw(st.integers(0, 9)))), resize=resize), f"valid x{n}", DEFINED
    which = draw(st.sampled_from(["tensor", "tensor", "encoded", "unset"]))
    if which == "unset":
        return pb.ImageBatch(resize=resize), "no images", frozenset({C.INVALID_ARGUMENT})
    if which == "tensor":
        proto, note, expect = draw(image_tensors())
        if resize and note in ("wrong size",):
            expect = DEFINED
        return pb.ImageBatch(tensor=proto, resize=resize), note, expect
    files, note, expect = draw(encoded_images())
    if note in ("png other size", "mixed sizes") and not resize:
        expect = frozenset({C.INVALID_ARGUMENT})
    return pb.ImageBatch(encoded=files, resize=resize), note, expect


# ---------------------------------------------------------------------------- names and parameters
HOSTILE_NAMES = ["", "unknown", "../x", "..", ".", "/etc", "/etc/passwd", "..%2f..%2fetc", "%2e%2e%2f", "simpler/../simpler",
                 "simpler/1", "simpler/..", "./simpler", "a" * 300, "\x00", "simpler\x00", "名前", "simpler\n", " simpler",
                 "SIMPLER", "../../../../tmp", "~root", "\\..\\x", "C:\\Windows", "-rf", "*", "simpler*"]
# The methods and their parameters come from the registry (the only list of methods): a method
# added there is fuzzed with no change here.
CLASSIFIER_METHODS = registry.names(applies_to="classifier")
CHEAP_METHODS = registry.names(applies_to="classifier", cost="cheap")
EMBEDDING_METHODS = registry.names(applies_to="embedding")
HOSTILE_METHODS = ["", "unknown", "../gradcam", "GRADCAM", "gradcam ", "serving_default"]
METHODS = CLASSIFIER_METHODS + EMBEDDING_METHODS + HOSTILE_METHODS


def model_names() -> st.SearchStrategy:
    return st.one_of(st.sampled_from([CLASSIFIER, CLASSIFIER, EMBEDDING]), st.sampled_from(HOSTILE_NAMES),
                     st.text(max_size=30))


def expect_for_name(name: str) -> frozenset | None:
    """Codes a model name alone decides (None: the name is a served model)."""
    if name in (CLASSIFIER, EMBEDDING):
        return None
    if name == "":
        return frozenset({C.INVALID_ARGUMENT})
    return frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND})


def mostly(draw: Any, percent: int) -> bool:
    """True with probability ``percent``/100: keeps most fields valid so the fuzzer reaches deep code."""
    return draw(st.integers(0, 99)) < percent


@st.composite
def model_refs(draw: Any, usual: str = CLASSIFIER) -> tuple[pb.ModelRef, str, frozenset | None]:
    name = usual if mostly(draw, 70) else draw(model_names())
    ref = pb.ModelRef(name=name)
    choice = "none" if mostly(draw, 60) else draw(st.sampled_from(["version", "label"]))
    expect = expect_for_name(name)
    note = f"model={name[:40]!r}"
    if choice == "version":
        v = draw(st.sampled_from([0, 1, 2, 99, -1, 2**62, -(2**63), 2**63 - 1]))
        ref.version = v
        note += f" version={v}"
        if expect is None and v not in (0, 1):
            expect = frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND})
    elif choice == "label":
        label = draw(st.one_of(st.sampled_from(["stable", "canary", "", "../x", "a b", "x" * 100, "1"]), st.text(max_size=20)))
        ref.label = label
        note += f" label={label[:30]!r}"
        if expect is None and label not in ("", "stable"):
            expect = frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND})
        if expect is None and label == "stable" and name != CLASSIFIER:
            expect = frozenset({C.NOT_FOUND})
    return ref, note, expect


def param_values() -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda v: pb.ParamValue(int_value=v), st.sampled_from([0, 1, 2, 4, 16, 56, 224, -1, -(2**63), 2**63 - 1, 2**31])),
        st.builds(lambda v: pb.ParamValue(float_value=v), st.sampled_from([0.0, 0.5, 1.0, 56.0, -1.0, 1e300, float("nan"), float("inf"), -float("inf")])),
        st.builds(lambda v: pb.ParamValue(bool_value=v), st.booleans()),
        st.builds(lambda v: pb.ParamValue(string_value=v), st.sampled_from(["", "x", "nearest", "align_corners", "../etc", "a" * 1000])),
        st.just(pb.ParamValue()),
    )


#: Every parameter any method declares, plus names that are request fields or no parameter at all.
PARAM_NAMES = sorted({p.name for n in registry.names() for p in registry.get(n).parameters}
                     | {"saliency_layer", "contrast_layer"}) + ["class_index", "target_layer", "unknown", "", "__class__"]
#: Cost bound of this test for the costly methods, read from their declarations: an integer count
#: (a declared int with a unit that is not pixels: masks, steps, iterations, images...) is at most
#: COST_CAP (its default too, when larger); a patch size (unit "px at 224") at least PATCH_FLOOR_AT_224.
COST_CAP = 8
PATCH_FLOOR_AT_224 = 56.0


def declared_values(param: Any) -> st.SearchStrategy:
    """Values around a declared parameter's accepted range: inside, on and past its bounds, its choices,
    another type."""
    if param.choices:
        return st.builds(lambda v: pb.ParamValue(string_value=v), st.sampled_from([*param.choices, "x", ""]))
    if param.type is bool:
        return st.one_of(st.builds(lambda v: pb.ParamValue(bool_value=v), st.booleans()), st.just(pb.ParamValue(int_value=1)))
    if param.type is str:
        return st.builds(lambda v: pb.ParamValue(string_value=v), st.sampled_from(["", "x", "a" * 1000]))
    edges = [b for b in (param.lo, param.hi) if b is not None]
    values = [v for b in edges for v in (b - 1, b, b + 1)] + [param.default if param.default is not None else 1]
    if param.type is int:
        ints = [int(v) for v in values if abs(v) < 2**63]
        return st.one_of(st.builds(lambda v: pb.ParamValue(int_value=v), st.sampled_from(ints)),
                         st.just(pb.ParamValue(float_value=0.5)), st.just(pb.ParamValue(string_value="1")))
    return st.one_of(st.builds(lambda v: pb.ParamValue(float_value=v), st.sampled_from([float(v) for v in values])),
                     st.just(pb.ParamValue(float_value=float("nan"))), st.just(pb.ParamValue(bool_value=True)))


@st.composite
def params_maps(draw: Any, method: str | None = None) -> dict[str, pb.ParamValue]:
    declared = registry.get(method).parameters if method in registry.names() else ()
    if declared and draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(declared), max_size=3, unique_by=lambda p: p.name))
        return {p.name: draw(declared_values(p)) for p in chosen}
    names = draw(st.lists(st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=10)), max_size=3, unique=True))
    return {n: draw(param_values()) for n in names}


def _capped(param: Any, value: pb.ParamValue) -> pb.ParamValue:
    """An accepted count above COST_CAP brought down to it (refused values stay as they are)."""
    number = getattr(value, value.WhichOneof("kind")) if value.WhichOneof("kind") in ("int_value", "float_value") else None
    if number is None or not np.isfinite(number) or number != int(number) or number <= COST_CAP:
        return value
    try:
        param.check(int(number))
    except ValueError:
        return value
    return pb.ParamValue(int_value=max(int(param.lo or 1), COST_CAP))


def _bounded_iterative(params: dict[str, pb.ParamValue], method: str) -> None:
    """Keep valid runs of the costly methods short, from their declarations (the deadline still
    stops the long ones)."""
    if method not in registry.names(cost="costly"):
        return
    for p in registry.get(method).parameters:
        if p.type is int and p.unit and not p.unit.startswith("px"):
            if p.name in params:
                params[p.name] = _capped(p, params[p.name])
            elif p.default is not None and p.default > COST_CAP:
                params[p.name] = pb.ParamValue(int_value=COST_CAP)
        elif p.type is float and p.unit == "px at 224":
            params.setdefault(p.name, pb.ParamValue(float_value=max(PATCH_FLOOR_AT_224, p.default)))


# ---------------------------------------------------------------------------- requests per RPC
@st.composite
def explain_cases(draw: Any) -> Case:
    ref, ref_note, expect = draw(model_refs())
    images, img_note, img_expect = draw(image_batches())
    method = (draw(st.sampled_from(CLASSIFIER_METHODS)) if mostly(draw, 75)
              else draw(st.one_of(st.sampled_from(METHODS), st.text(max_size=20))))
    req = pb.ExplainRequest(model=ref, method=method, images=images)
    notes = [ref_note, img_note, f"method={method!r}"]
    if draw(st.booleans()):
        req.class_index.extend(draw(st.lists(st.sampled_from([-1, 0, 1, 2, 3, -2, 2**31 - 1, -(2**31)]), max_size=4)))
        notes.append(f"class_index={list(req.class_index)}")
    if draw(st.integers(0, 4)) == 0:
        req.top_k = draw(st.sampled_from([-1, 1, 2, 3, 4, 100, 2**31 - 1]))
        notes.append(f"top_k={req.top_k}")
    if draw(st.integers(0, 4)) == 0:
        req.target_layer = draw(st.sampled_from(["conv3", "nope", "../x", "predictions", "a" * 200, "conv1"]))
        notes.append(f"target_layer={req.target_layer!r}")
    params = draw(params_maps(method)) if draw(st.booleans()) else {}
    _bounded_iterative(params, method)
    for k, v in params.items():
        req.params[k].CopyFrom(v)
    if params:
        notes.append("params=" + ",".join(f"{k}:{v.WhichOneof('kind')}" for k, v in params.items()))
    if draw(st.integers(0, 3)) == 0:
        req.theta = draw(st.sampled_from([0.0, 0.5, 1.0, -0.1, 2.0, float("nan"), float("inf")]))
        notes.append(f"theta={req.theta}")
    if draw(st.integers(0, 3)) == 0:
        req.rho = draw(st.sampled_from([0.0, 0.25, 1.0, -1.0, 1.5, float("nan")]))
        notes.append(f"rho={req.rho}")
    if expect is None:
        if method not in CLASSIFIER_METHODS:
            expect = frozenset({C.INVALID_ARGUMENT, C.FAILED_PRECONDITION})
        elif img_expect != DEFINED:
            expect = img_expect | {C.NOT_FOUND, C.FAILED_PRECONDITION}  # the model/method may be refused first
        else:
            expect = DEFINED
    return Case("Explain", req, "explain", expect, notes)


@st.composite
def similarity_cases(draw: Any) -> Case:
    ref, ref_note, expect = draw(model_refs(EMBEDDING))
    q, qn, qe = draw(image_batches())
    r, rn, re_ = draw(image_batches()) if draw(st.booleans()) else (pb.ImageBatch(tensor=tensor(good_images(draw(st.integers(1, 3))))), "valid", DEFINED)
    req = pb.SimilarityMapRequest(model=ref, query=q, reference=r)
    notes = [ref_note, f"query={qn}", f"reference={rn}"]
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["valid", "wrong shape", "nan", "out of range", "hostile"]))
        if kind == "valid":
            region = np.zeros((SIZE, SIZE), bool)
            region[10:30, 5:20] = True
            req.region.CopyFrom(tensor(region))
        elif kind == "wrong shape":
            req.region.CopyFrom(tensor(np.ones((3, 5), np.float32)))
        elif kind == "nan":
            req.region.CopyFrom(tensor(np.full((SIZE, SIZE), np.nan, np.float32)))
        elif kind == "out of range":
            req.region.CopyFrom(tensor(np.full((SIZE, SIZE), 2.0, np.float32)))
        else:
            proto, note = draw(hostile_tensors())
            req.region.CopyFrom(proto)
            kind = note
        notes.append(f"region={kind}")
    return Case("SimilarityMap", req, "similarity", expect or DEFINED, notes)


@st.composite
def mask_cases(draw: Any) -> Case:
    ref, ref_note, expect = draw(model_refs())
    images, img_note, _ = draw(image_batches())
    methods = (draw(st.lists(st.sampled_from(CHEAP_METHODS), min_size=1, max_size=2, unique=True)) if mostly(draw, 70)
               else draw(st.lists(st.sampled_from(METHODS), max_size=3)))
    req = pb.ImportanceMaskRequest(model=ref, images=images, methods=methods)
    notes = [ref_note, img_note, f"methods={methods}"]
    mode = draw(st.sampled_from(["theta", "rho"])) if mostly(draw, 75) else draw(st.sampled_from(["both", "neither"]))
    if mode in ("theta", "both"):
        req.theta = 0.5 if mostly(draw, 60) else draw(st.sampled_from([0.0, 1.0, -1.0, 2.0, float("nan"), float("inf")]))
        notes.append(f"theta={req.theta}")
    if mode in ("rho", "both"):
        req.rho = 0.25 if mostly(draw, 60) else draw(st.sampled_from([0.0, 1.0, -0.5, 1.5, float("nan")]))
        notes.append(f"rho={req.rho}")
    req.dilations = 0 if mostly(draw, 50) else draw(st.sampled_from([1, 3, -1, 64, 65, 2**31 - 1]))
    if draw(st.booleans()):
        req.class_index.extend(draw(st.lists(st.sampled_from([-1, 0, 2, 3, -5, 2**31 - 1]), max_size=3)))
    for m in draw(st.lists(st.sampled_from(METHODS), max_size=2, unique=True)):
        p = draw(params_maps(m))
        _bounded_iterative(p, m)
        for k, v in p.items():
            req.method_params[m].params[k].CopyFrom(v)
    for m in methods:
        if m in registry.names(cost="costly") and m not in req.method_params:
            p: dict[str, pb.ParamValue] = {}
            _bounded_iterative(p, m)
            for k, v in p.items():
                req.method_params[m].params[k].CopyFrom(v)
    notes.append(f"dilations={req.dilations}")
    if expect is None and not methods:
        expect = frozenset({C.INVALID_ARGUMENT, C.FAILED_PRECONDITION})
    return Case("ImportanceMask", req, "importance_mask", expect or DEFINED, notes)


SIGNATURES = ["", "serving_default", "predict_float", "features", "gradcam", "saliency", "excitation_backprop",
              "embed", "similarity_map", "occlusion", "__saved_model_init_op", "nope", "../x"]
INPUT_NAMES = ["images", "class_index", "contrastive", "dilations", "query_images", "reference_images", "", "nope"]


@st.composite
def predict_cases(draw: Any) -> Case:
    name = CLASSIFIER if mostly(draw, 60) else draw(model_names())
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = draw(st.sampled_from(SIGNATURES))
    version = None if mostly(draw, 60) else draw(st.sampled_from([1, 2, 0, -1, 2**62]))
    if version is not None:
        req.model_spec.version.value = version
    elif draw(st.integers(0, 4)) == 0:
        req.model_spec.version_label = draw(st.sampled_from(["stable", "nope", "../x", ""]))
    notes = [f"model={name[:40]!r}", f"signature={req.model_spec.signature_name!r}", f"version={version}"]
    names = draw(st.lists(st.sampled_from(INPUT_NAMES), max_size=3, unique=True))
    if mostly(draw, 50):
        names = ["images", "class_index"] if req.model_spec.signature_name in ("gradcam", "saliency") and mostly(draw, 70) else ["images"]
    for input_name in names:
        if input_name == "images" and mostly(draw, 50):
            proto, note = tensor(good_images(draw(st.integers(1, 3)))), "valid"
            req.inputs[input_name].CopyFrom(proto)
            notes.append(f"{input_name}={note}")
            continue
        kind = draw(st.sampled_from(["images", "images", "class_index", "scalar", "hostile"]))
        if kind == "images":
            proto, note, _ = draw(image_tensors())
        elif kind == "class_index":
            proto, note = tensor(np.asarray(draw(st.lists(st.integers(-5, 5), min_size=0, max_size=3)), np.int32)), "class_index"
        elif kind == "scalar":
            proto, note = tensor(np.asarray(draw(st.sampled_from([True, 0, 3, -1, 1.5])))), "scalar"
        else:
            proto, note = draw(hostile_tensors())
        req.inputs[input_name].CopyFrom(proto)
        notes.append(f"{input_name}={note}")
    if draw(st.integers(0, 3)) == 0:
        req.output_filter.extend(draw(st.lists(st.sampled_from(["probabilities", "logits", "heatmap", "nope", ""]), max_size=2)))
        notes.append(f"output_filter={list(req.output_filter)}")
    expect = expect_for_name(name) or DEFINED
    return Case("Predict", req, "predict", expect, notes)


@st.composite
def metadata_cases(draw: Any) -> Case:
    name = draw(model_names())
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = name
    req.metadata_field.extend(draw(st.lists(st.sampled_from(["signature_def", "", "nope", "../x"]), max_size=3)))
    if draw(st.booleans()):
        req.model_spec.version.value = draw(st.sampled_from([1, 0, -1, 7, 2**62]))
    expect = frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND}) if name not in (CLASSIFIER, EMBEDDING) or not req.metadata_field else DEFINED
    return Case("GetModelMetadata", req, "metadata", expect, [f"model={name[:40]!r}", f"fields={list(req.metadata_field)}"])


@st.composite
def status_cases(draw: Any) -> Case:
    name = draw(model_names())
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = name
    choice = draw(st.sampled_from(["none", "version", "label"]))
    if choice == "version":
        req.model_spec.version.value = draw(st.sampled_from([1, 0, -1, 2, 2**62, -(2**63)]))
    elif choice == "label":
        req.model_spec.version_label = draw(st.one_of(st.sampled_from(["stable", "nope", "../x"]), st.text(max_size=10)))
    expect = expect_for_name(name) or DEFINED
    return Case("GetModelStatus", req, "model_status", expect, [f"model={name[:40]!r}", choice])


@st.composite
def list_cases(draw: Any) -> Case:
    name = draw(st.one_of(st.just(""), model_names()))
    expect = DEFINED if name in ("", CLASSIFIER, EMBEDDING) else frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND})
    return Case("ListModels", pb.ListModelsRequest(name=name), "list_models", expect, [f"name={name[:40]!r}"])


@st.composite
def unimplemented_cases(draw: Any) -> Case:
    rpc = draw(st.sampled_from(["Classify", "Regress", "MultiInference", "HandleReloadConfigRequest"]))
    req = RPCS[rpc][1]()
    if rpc in ("Classify", "Regress"):
        req.model_spec.name = draw(model_names())
    return Case(rpc, req, "unimplemented", frozenset({C.UNIMPLEMENTED, C.INVALID_ARGUMENT}), [])


@st.composite
def garbage_cases(draw: Any) -> Case:
    """Bytes that are not a valid message of the RPC's request type."""
    rpc = draw(st.sampled_from(sorted(RPCS)))
    data = draw(st.sampled_from([b"\xff\xff\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05abc", b"\x08" * 3,
                                 b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"]))
    return Case(rpc, data, "undecodable bytes", frozenset({C.INVALID_ARGUMENT}), [repr(data)])


def all_cases() -> st.SearchStrategy:
    return st.one_of(explain_cases(), explain_cases(), explain_cases(), predict_cases(), predict_cases(),
                     similarity_cases(), mask_cases(), metadata_cases(), status_cases(), list_cases(),
                     unimplemented_cases(), garbage_cases())


def run_fuzz(server: ServerProcess, channel: grpc.Channel, examples: int, derandomize: bool) -> None:
    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(case=all_cases())
    def body(case: Case) -> None:
        check_outcome(server, channel, case)

    body()


# ---------------------------------------------------------------------------- tests
def test_fuzz_quick(fuzz_server, channel):
    """≈50 derandomised hostile requests (the default run)."""
    run_fuzz(fuzz_server, channel, QUICK_EXAMPLES, derandomize=True)


@pytest.mark.slow
@pytest.mark.fuzz
def test_fuzz_full(fuzz_server, channel):
    """The full fuzzer (``FUZZ_EXAMPLES`` random cases)."""
    run_fuzz(fuzz_server, channel, FULL_EXAMPLES, derandomize=False)


# ---- explicit cases with a known answer (default run)
def _explain(images: pb.ImageBatch, name: str = CLASSIFIER, method: str = "gradcam", expect: Any = DEFINED) -> Case:
    return Case("Explain", pb.ExplainRequest(model=pb.ModelRef(name=name), method=method, images=images), "explicit",
                frozenset(expect))


@pytest.mark.parametrize("name", ["../x", "/etc", "..%2f..%2fetc", "..", ".", "simpler/../simpler", "", "a" * 300, "\x00"])
def test_path_like_model_names_are_refused(fuzz_server, channel, name):
    code, message = check_outcome(fuzz_server, channel, Case(
        "Explain", pb.ExplainRequest(model=pb.ModelRef(name=name), method="gradcam",
                                     images=pb.ImageBatch(tensor=tensor(good_images()))), "explicit",
        frozenset({C.INVALID_ARGUMENT, C.NOT_FOUND})))
    assert "model" in message


@pytest.mark.parametrize("kind,data", [
    ("png claims 100000x100000", png_claiming(100_000, 100_000)),
    ("png claims 2^31-1 square", png_claiming(2**31 - 1, 2**31 - 1)),
    ("jpeg claims 65000x65000", jpeg_claiming(65000, 65000)),
])
def test_decompression_bomb_header_is_refused_before_decoding(fuzz_server, channel, kind, data):
    fuzz_server.reset_peak()
    before = fuzz_server.peak_rss_kib()
    case = _explain(pb.ImageBatch(encoded=pb.EncodedImages(data=[data]), resize=True), expect={C.INVALID_ARGUMENT})
    code, message = check_outcome(fuzz_server, channel, case)
    assert "data[0]" in message, message  # names the offending file
    grew_mib = (fuzz_server.peak_rss_kib() - before) / 1024
    assert grew_mib < 64, f"{kind}: peak RSS grew by {grew_mib:.0f} MiB: the image was decoded"


def test_batch_of_small_pngs_that_decode_huge_is_refused_before_decoding(fuzz_server, channel):
    """8 PNGs of 4096x4096 black pixels: 0.4 MB on the wire, 400 MB decoded.

    Each image is within --max-image-side, but the batch would materialise far more than the
    server's message limit; the server must refuse it from the headers (sum of H·W·3 over the
    files) before decoding any pixel, like it refuses a raw tensor larger than the message limit.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4096, 4096)).save(buf, format="PNG")
    data = [buf.getvalue()] * 8
    with grpc.insecure_channel(fuzz_server.address) as ch:  # fresh channel: nothing else in flight
        fuzz_server.reset_peak()
        before = fuzz_server.peak_rss_kib()
        code, message = check_outcome(fuzz_server, ch, Case(
            "Explain", pb.ExplainRequest(model=pb.ModelRef(name=CLASSIFIER), method="gradcam",
                                         images=pb.ImageBatch(encoded=pb.EncodedImages(data=data), resize=True)),
            "explicit", frozenset({C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED})))
    grew_mib = (fuzz_server.peak_rss_kib() - before) / 1024
    assert grew_mib < 128, f"peak RSS grew by {grew_mib:.0f} MiB for a {sum(map(len, data)) / 2**20:.1f} MiB request ({code.name})"


def test_tensor_shape_amplification_is_refused(fuzz_server, channel):
    """A 49-byte TensorProto (shape (8, 4096, 4096, 3), one int_val) would expand to 400 MB.

    tf.make_ndarray pads a short value list to the full shape; the server must compare the
    element count with its limits before expanding.
    """
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_shape=_shape([8, 4096, 4096, 3]), int_val=[7])
    fuzz_server.reset_peak()
    before = fuzz_server.peak_rss_kib()
    code, message = check_outcome(fuzz_server, channel, Case(
        "Explain", pb.ExplainRequest(model=pb.ModelRef(name=CLASSIFIER), method="gradcam",
                                     images=pb.ImageBatch(tensor=proto)), "explicit", frozenset({C.INVALID_ARGUMENT})))
    grew_mib = (fuzz_server.peak_rss_kib() - before) / 1024
    assert grew_mib < 128, f"peak RSS grew by {grew_mib:.0f} MiB for a {proto.ByteSize()}-byte tensor"


@pytest.mark.parametrize("dtype", [9999, 77])
def test_unknown_dtype_number_is_invalid_argument(fuzz_server, channel, dtype):
    case = _explain(pb.ImageBatch(tensor=tensor_pb2.TensorProto(dtype=dtype)), expect={C.INVALID_ARGUMENT})
    check_outcome(fuzz_server, channel, case)


@pytest.mark.parametrize("rpc", ["Explain", "Predict", "GetModelStatus"])
def test_undecodable_request_bytes_are_invalid_argument(fuzz_server, channel, rpc):
    check_outcome(fuzz_server, channel, Case(rpc, b"\xff\xff\xff\xff\xff", "explicit", frozenset({C.INVALID_ARGUMENT})))


def test_valid_requests_of_every_kind_succeed(fuzz_server, channel):
    """The generator's 'valid' branches really are valid (so the fuzzer reaches deep code)."""
    img = pb.ImageBatch(tensor=tensor(good_images(2)))
    cases = [
        _explain(img),
        _explain(pb.ImageBatch(encoded=pb.EncodedImages(data=[png_bytes(), jpeg_bytes()]))),
        Case("SimilarityMap", pb.SimilarityMapRequest(model=pb.ModelRef(name=EMBEDDING), query=img, reference=img), "explicit"),
        Case("ImportanceMask", pb.ImportanceMaskRequest(model=pb.ModelRef(name=CLASSIFIER), images=img,
                                                        methods=["gradcam", "saliency"], rho=0.25), "explicit"),
        Case("ListModels", pb.ListModelsRequest(), "explicit"),
    ]
    req = predict_pb2.PredictRequest()
    req.model_spec.name = CLASSIFIER
    req.model_spec.signature_name = "gradcam"
    req.inputs["images"].CopyFrom(tensor(good_images(1)))
    req.inputs["class_index"].CopyFrom(tensor(np.asarray([-1], np.int32)))
    cases.append(Case("Predict", req, "explicit"))
    for case in cases:
        case.expect = frozenset({C.OK})
        check_outcome(fuzz_server, channel, case)
