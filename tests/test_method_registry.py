"""The registry as the only list, with declared parameters (issue 13).

* Two toy methods are added through the registry alone — an iterative ``toy_constant`` (a
  constant map of a declared ``value``) and a single-pass ``toy_channel_mean`` (the channel mean
  times a declared ``scale``) — and reached through a real export (a SavedModel signature), a real
  in-process gRPC server (``ListModels`` with their parameter schema, ``Explain``) and
  :meth:`explain.registry.Method.call`, with no other file changed.
* Generated from the declarations: for every method and every declared numeric or choice
  parameter, a bad value sent through gRPC is INVALID_ARGUMENT naming the parameter, the value
  and the accepted range (one server for all cases; nothing is computed, the check comes first).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import grpc
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from explain import registry  # noqa: E402
from explain.schema import Param, check_params  # noqa: E402
from explain.view import ExplainError  # noqa: E402
from serving import convert  # noqa: E402
from serving.protos.explain.v1 import explain_pb2 as pb  # noqa: E402
from tests.grpc_helpers import explanation_stub, random_images  # noqa: E402
from tests.registry_helpers import registered  # noqa: E402

SIZE, CLF = 32, "clf"
INT64_MAX = 2**63 - 1


# ---------------------------------------------------------------------------- the toy methods
def toy_constant(backend: Any, images: np.ndarray, class_index: Any = -1, value: float = 0.5,
                 should_continue: Any = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Iterative toy: a constant map ``value`` at the input size."""
    n, h, w, _ = np.asarray(images).shape
    probs = backend.predict(np.asarray(images, np.float32))
    classes = np.broadcast_to(np.asarray(class_index), (n,))
    classes = np.where(classes < 0, probs.argmax(axis=1), classes).astype(np.int32)
    return {"heatmap": np.full((n, h, w), value, np.float32), "raw": np.full((n, h, w), value, np.float32),
            "probabilities": probs, "class_index": classes}


def toy_channel_mean(view: Any, images: tf.Tensor, class_index: Any = -1, scale: Any = 1.0) -> dict[str, tf.Tensor]:
    """Single-pass toy: ``scale`` × the channel mean of the image, in the graph."""
    logits = view.run(images).logits
    idx = tf.where(tf.convert_to_tensor(class_index) < 0, tf.argmax(logits, axis=1, output_type=tf.int32),
                   tf.cast(class_index, tf.int32))
    heat = tf.reduce_mean(images, axis=-1) * tf.cast(scale, tf.float32)
    return {"heatmap": heat, "heatmap_upsampled": heat, "logits": logits, "class_index": idx}


TOYS = (
    registry.Method(
        name="toy_constant", fn=toy_constant, kind="iterative", applies_to="classifier",
        parameters=(Param("value", float, 0.5, lo=0.0, hi=1.0, unit="heat", doc="the constant"),),
        label="Toy constant", cost="cheap", description="a constant map (test)",
    ),
    registry.Method(
        name="toy_channel_mean", fn=toy_channel_mean, kind="single_pass", applies_to="classifier",
        signature_inputs={"class_index": lambda: tf.TensorSpec([None], tf.int32),
                          "scale": lambda: tf.TensorSpec([], tf.float32)},
        parameters=(Param("scale", float, 1.0, lo=0.0, hi=10.0, lo_open=True, doc="factor of the mean"),),
        label="Toy channel mean", description="the channel mean (test)",
    ),
)


@pytest.fixture(scope="module")
def toys():
    with registered(TOYS) as methods:
        yield methods


@pytest.fixture(scope="module")
def exported(toys, tmp_path_factory):
    """A tiny untrained VGG11 exported with the single-pass toy and the single-pass methods that have
    declared ranges or choices (the others add export time and no case)."""
    import keras

    from models.architectures import build_classifier
    from models.export import export_classifier

    root = tmp_path_factory.mktemp("registry_models")
    keras.utils.set_random_seed(0)
    model = build_classifier("vgg11", SIZE, 3, 0.0625)
    single = sorted({c.values[0] for c in CASES if registry.get(c.values[0]).kind == "single_pass"})
    export_classifier(model, root / CLF, class_names=["a", "b", "c"], methods=single + ["toy_channel_mean"])
    return root, model


@pytest.fixture(scope="module")
def stub(exported):
    with explanation_stub(exported[0]) as stub:
        yield stub


@pytest.fixture(scope="module")
def images():
    return random_images(2, SIZE)


def request(images: np.ndarray, method: str, params: dict[str, Any] | None = None) -> pb.ExplainRequest:
    req = pb.ExplainRequest(model=pb.ModelRef(name=CLF), method=method,
                            images=pb.ImageBatch(tensor=convert.to_tensor(images)))
    for k, v in (params or {}).items():
        req.params[k].CopyFrom(convert.python_to_param(v))
    return req


def array(t) -> np.ndarray:
    return convert.to_ndarray(t, "test")


# ---------------------------------------------------------------------------- toys end to end
def test_toy_methods_reach_export_listmodels_and_explain(toys, exported, stub, images):
    # Export: the single-pass toy is a signature with its declared input.
    loaded = tf.saved_model.load(str(exported[0] / CLF / "1"))
    sig = loaded.signatures["toy_channel_mean"]
    assert set(sig.structured_input_signature[1]) == {"images", "class_index", "scale"}
    # ListModels: both toys, with their label, cost and parameter schema.
    info = stub.ListModels(pb.ListModelsRequest(name=CLF), timeout=60).models[0]
    methods = {m.name: m for m in info.methods}
    const, mean = methods["toy_constant"], methods["toy_channel_mean"]
    assert (const.kind, const.label, const.cost, const.in_graph) == ("iterative", "Toy constant", "cheap", False)
    assert (mean.kind, mean.label, mean.cost, mean.in_graph) == ("single_pass", "Toy channel mean", "cheap", True)
    (spec,) = const.parameters
    assert (spec.name, spec.type, spec.default.float_value, spec.min, spec.max) == ("value", "float", 0.5, 0.0, 1.0)
    assert (spec.unit, spec.doc, spec.accepted, spec.fixed) == ("heat", "the constant", "[0.0, 1.0]", False)
    (spec,) = mean.parameters
    assert spec.min_open and spec.accepted == "(0.0, 10.0]" and not spec.fixed
    # Explain: the iterative toy runs in the service, with the value asked for.
    r = stub.Explain(request(images, "toy_constant", {"value": 0.25}), timeout=60)
    np.testing.assert_array_equal(array(r.heatmap), np.full((2, SIZE, SIZE), 0.25, np.float32))
    assert r.params["value"].float_value == 0.25
    # ... and the single-pass toy in the exported graph, its declared input fed from the request.
    r = stub.Explain(request(images, "toy_channel_mean", {"scale": 2}), timeout=60)
    want = 2.0 * (images.astype(np.float32) / 255.0).mean(axis=-1)
    np.testing.assert_allclose(array(r.heatmap), want, rtol=1e-5, atol=1e-6)
    assert r.params["scale"].float_value == 2.0
    r = stub.Explain(request(images[:1], "toy_channel_mean"), timeout=60)  # the default
    np.testing.assert_allclose(array(r.heatmap), want[:1] / 2.0, rtol=1e-5, atol=1e-6)
    # A bad value is refused by the declaration, naming it.
    with pytest.raises(grpc.RpcError) as err:
        stub.Explain(request(images, "toy_constant", {"value": 1.5}), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "params['value']: value 1.5 is out of range; accepted: [0.0, 1.0]" in err.value.details()


def test_toy_method_in_process_is_checked_by_the_same_declarations(toys, exported, images):
    from explain.backend import KerasBackend
    from explain.view import ModelView

    backend = KerasBackend(ModelView(exported[1]))
    x = images.astype(np.float32) / 255.0
    out = toys["toy_constant"].call(backend, x, value=0.75)
    np.testing.assert_array_equal(out["heatmap"], np.full((2, SIZE, SIZE), 0.75, np.float32))
    with pytest.raises(ExplainError, match=r"value -0\.1 is out of range; accepted: \[0\.0, 1\.0\]"):
        toys["toy_constant"].call(backend, x, value=-0.1)
    with pytest.raises(ExplainError, match=r"unknown parameter\(s\) \['zoom'\] for method 'toy_constant'; accepted: \['value'\]"):
        toys["toy_constant"].call(backend, x, zoom=2)
    assert check_params(toys["toy_constant"], {}) == {"value": 0.5}
    assert check_params(toys["toy_channel_mean"], {"scale": 3}) == {"scale": 3.0}


# ---------------------------------------------------------------------------- generated bad values
def _bad_values(p: Param) -> list[Any]:
    """Values just outside the declared range, and a value that is not a choice."""
    if p.choices:
        return ["not-" + p.choices[0]]
    bad: list[Any] = []
    step = 1 if p.type is int else 0.5
    if p.lo is not None:
        bad.append(p.type(p.lo) if p.lo_open else p.type(p.lo - step))
    if p.hi is not None and p.hi + step <= INT64_MAX:
        bad.append(p.type(p.hi) if p.hi_open else p.type(p.hi + step))
    return bad


def _cases() -> list[Any]:
    cases = []
    for name in registry.names(applies_to="classifier"):
        for p in registry.get(name).parameters:
            for value in _bad_values(p):
                cases.append(pytest.param(name, p.name, value, id=f"{name}-{p.name}={value!r}"))
    return cases


CASES = _cases()


def test_every_method_with_a_range_has_generated_cases():
    covered = {c.values[0] for c in CASES}
    with_range = {n for n in registry.names(applies_to="classifier") if n not in {t.name for t in TOYS}
                  and any(p.choices or p.lo is not None or p.hi is not None for p in registry.get(n).parameters)}
    assert with_range == covered and {"occlusion", "rise", "perturbation_mask", "integrated_gradients"} <= covered


@pytest.mark.parametrize("method, param, value", CASES)
def test_bad_declared_value_is_invalid_argument(stub, images, method, param, value):
    p = registry.get(method).param(param)
    with pytest.raises(grpc.RpcError) as err:
        stub.Explain(request(images[:1], method, {param: value}), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    what = "is not supported" if p.choices else "is out of range"
    assert f"params['{param}']: {param} {value!r} {what}; accepted: {p.accepted()}" in err.value.details()


# ---------------------------------------------------------------------------- declarations vs code
@pytest.mark.parametrize("name", registry.names())
def test_declarations_match_the_entry_points(name):
    """Every keyword parameter of an iterative entry point is declared with the same default, and
    every declared parameter is a keyword the entry point takes."""
    m = registry.get(name)
    sig = inspect.signature(m.fn)
    takes = {k: v for k, v in list(sig.parameters.items())[2:]
             if k not in registry.RESERVED and v.kind not in (v.VAR_POSITIONAL, v.VAR_KEYWORD)}
    declared = {p.name: p for p in m.parameters}
    if not any(v.kind == v.VAR_KEYWORD for v in sig.parameters.values()):
        assert set(declared) <= set(takes), f"{name}: declared {sorted(declared)}, takes {sorted(takes)}"
    if m.kind == "iterative":
        assert set(takes) <= set(declared), f"{name}: takes {sorted(takes)}, declared {sorted(declared)}"
        for k, v in takes.items():
            assert declared[k].default == v.default, (name, k)
    assert m.label and m.cost in registry.COSTS


def test_param_declaration_errors_and_messages():
    with pytest.raises(ValueError, match="does not pass its own check"):
        Param("n", int, 0, lo=1)
    with pytest.raises(ValueError, match="choices need type str"):
        Param("n", int, 1, choices=("a",))
    p = Param("n", int, 4, lo=1, hi=8)
    assert p.check(5.0) == 5 and isinstance(p.check(5.0), int)
    for bad, text in ((9, "n 9 is out of range; accepted: 1..8"), (2.5, "n 2.5 must be an integer; accepted: 1..8"),
                      (True, "n True must be an integer"), ("3", "n '3' must be an integer")):
        with pytest.raises(ExplainError, match=text.replace("(", r"\(").replace(".", r"\.")) as err:
            p.check(bad)
        assert err.value.param == "n"
    f = Param("p", float, 0.5, lo=0.0, hi=1.0, lo_open=True)
    assert f.check(1) == 1.0 and f.accepted() == "(0.0, 1.0]"
    for bad in (0.0, float("nan"), float("inf"), 1.01):
        with pytest.raises(ExplainError, match="is out of range; accepted: \\(0.0, 1.0\\]"):
            f.check(bad)
    assert Param("s", int, None, lo=1).check(None) is None


def test_labels_costs_and_table_come_from_the_entries():
    assert registry.get("occlusion").label_for({"patch_size_at_224": 10}) == "occlusion 10"
    assert registry.get("excitation_backprop").label_for({"contrastive": True}) == "C-MWP"
    assert registry.get("perturbation_mask").label_for({"iterations": 100}) == "perturbation mask 100"
    assert registry.get("gradcam_plus_plus").label_for({}) == "Grad-CAM++"
    costly = registry.names(cost="costly")
    assert {"occlusion", "scorecam", "perturbation_mask", "rise"} <= set(costly) and "gradcam" not in costly
    assert all(registry.get(n).in_graph == (registry.get(n).kind == "single_pass") for n in registry.names())
    rows = registry.table().splitlines()
    assert len(rows) == 2 + len(registry.names())
    assert "| `rise` | RISE | in the service | costly | classifier | `n_masks` (4000; 1..100000)" in registry.table()

