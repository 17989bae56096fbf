"""``explain.v1.ExplanationService``: ListModels, Explain, SimilarityMap, ImportanceMask.

Thin servicer: each RPC decodes its request with :mod:`serving.convert`, holds the addressed model
version (:meth:`serving.registry.ModelRegistry.acquire`), calls one function of
:mod:`serving.inference` and encodes the result. Errors are mapped by
:func:`serving.errors.rpc_method`.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np

from serving import convert, inference
from serving.errors import current_record, rpc_method
from serving.protos.explain.v1 import explain_pb2 as pb
from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc
from serving.registry import ServableVersion, State, validate_name
from serving.runtime import Runtime

__all__ = ["ExplanationServicer", "model_ref"]


def model_ref(ref: pb.ModelRef) -> tuple[str, int | None, str | None]:
    """``(name, version, label)`` of a :class:`ModelRef` (version 0 = the default)."""
    which = ref.WhichOneof("version_choice")
    version = int(ref.version) if which == "version" and ref.version else None
    label = ref.label if which == "label" else None
    return ref.name, version, label


def _optional(msg: Any, name: str) -> float | None:
    return getattr(msg, name) if msg.HasField(name) else None


def _timing(target: pb.Timing, start: float, queue_s: float, compute_s: float) -> None:
    target.elapsed_ms = (time.perf_counter() - start) * 1e3
    target.queue_ms = queue_s * 1e3
    target.compute_ms = compute_s * 1e3


class ExplanationServicer(pb_grpc.ExplanationServiceServicer):
    """The project's typed API (see ``serving/protos/explain/v1/explain.proto``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.telemetry = runtime.metrics

    def _images(self, batch: pb.ImageBatch, field: str, sv: ServableVersion) -> np.ndarray:
        limits = self.runtime.limits
        return convert.images_from_batch(batch, field, sv.input_shape, limits.max_images, limits.max_side,
                                         limits.max_input_bytes)

    # ------------------------------------------------------------------ ListModels
    def _model_info(self, name: str, sv: ServableVersion) -> pb.ModelInfo:
        from explain import registry as methods

        registry = self.runtime.registry
        info = pb.ModelInfo(
            name=name, version=sv.version, kind=sv.kind, class_names=sv.class_names,
            input_size=list(sv.input_shape), target_layer=sv.target_layer, target_shape=sv.target_shape,
            signatures=sorted(sv.signatures), card_json=sv.card_json(), preprocessing=sv.preprocessing,
        )
        for m_name, reason in sorted(sv.methods_left_out.items()):
            info.methods_left_out[m_name] = reason
        for v, st in sorted(registry.statuses(name).items()):
            info.versions.add(version=v, state=State.NAMES.get(st.state, "UNKNOWN"), error=st.error_message)
        for label, v in sorted(registry.labels(name).items()):
            info.labels[label] = v
        for m_name in sv.methods:
            m = methods.get(m_name)
            mi = info.methods.add(name=m_name, kind=m.kind, description=m.description, in_graph=m_name in sv.signatures,
                                  label=m.label, cost=m.cost, applies_to=m.applies_to)
            convert.params_to_proto(mi.params, {k: v for k, v in inference.method_params(m, sv).items() if v is not None})
            settable = {p.name for p in m.request_params}
            for p in m.parameters:
                mi.parameters.append(convert.parameter_spec(p, fixed=p.name not in settable))
        return info

    @rpc_method
    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        registry = self.runtime.registry
        response = pb.ListModelsResponse()
        names = [validate_name(request.name, "name")] if request.name else registry.model_names()
        for name in names:
            with registry.acquire(name, field="request") as sv:
                response.models.append(self._model_info(name, sv))
        return response

    # ------------------------------------------------------------------ Explain
    @rpc_method
    def Explain(self, request: pb.ExplainRequest, context: grpc.ServicerContext) -> pb.ExplainResponse:
        start = time.perf_counter()
        record = current_record()
        record.method = request.method
        name, version, label = model_ref(request.model)
        with self.runtime.registry.acquire(name, version, label, field="model") as sv:
            record.version = sv.version
            images = self._images(request.images, "images", sv)
            out = inference.explain(
                sv, request.method, images, self.runtime.call_context(context),
                class_index=list(request.class_index), top_k=request.top_k, target_layer=request.target_layer,
                params=convert.params_from_proto(request.params, "params"),
                theta=_optional(request, "theta"), rho=_optional(request, "rho"),
            )
            record.batch = out.batch_size
            response = pb.ExplainResponse(model_name=sv.name, model_version=sv.version, method=out.method,
                                          batch_size=out.batch_size)
        response.heatmap.CopyFrom(convert.to_tensor(out.heatmap))
        if out.heatmap_lowres is not None:
            response.heatmap_lowres.CopyFrom(convert.to_tensor(out.heatmap_lowres))
        if out.raw is not None:
            response.raw.CopyFrom(convert.to_tensor(out.raw))
        if out.probabilities is not None:
            response.probabilities.CopyFrom(convert.to_tensor(out.probabilities))
        response.class_index.CopyFrom(convert.to_tensor(out.class_index))
        response.image_index.CopyFrom(convert.to_tensor(out.image_index))
        if out.mask is not None:
            response.mask.CopyFrom(convert.to_tensor(out.mask))
        convert.params_to_proto(response.params, {k: v for k, v in out.params.items() if v is not None})
        for key, value in out.outputs.items():
            response.outputs[key].CopyFrom(convert.to_tensor(value))
        _timing(response.timing, start, out.queue_s, out.compute_s)
        return response

    # ------------------------------------------------------------------ SimilarityMap
    @rpc_method
    def SimilarityMap(self, request: pb.SimilarityMapRequest, context: grpc.ServicerContext) -> pb.SimilarityMapResponse:
        start = time.perf_counter()
        record = current_record()
        record.method = request.method or inference.DEFAULT_EMBEDDING_METHOD
        name, version, label = model_ref(request.model)
        with self.runtime.registry.acquire(name, version, label, field="model") as sv:
            record.version = sv.version
            query = self._images(request.query, "query", sv)
            reference = self._images(request.reference, "reference", sv)
            region = convert.to_ndarray(request.region, "region", self.runtime.limits.max_input_bytes) if request.HasField("region") else None
            out = inference.similarity(sv, query, reference, self.runtime.call_context(context), region,
                                       method=request.method, params=convert.params_from_proto(request.params, "params"))
            record.batch = out.batch_size
            response = pb.SimilarityMapResponse(model_name=sv.name, model_version=sv.version, batch_size=out.batch_size,
                                                method=out.method)
        for key, value in out.outputs.items():
            target = getattr(response, key) if key in inference.SIMILARITY_FIELDS else response.outputs[key]
            target.CopyFrom(convert.to_tensor(value))
        convert.params_to_proto(response.params, {k: v for k, v in out.params.items() if v is not None})
        if out.region_score is not None:
            response.region_score.CopyFrom(convert.to_tensor(out.region_score))
        _timing(response.timing, start, out.queue_s, out.compute_s)
        return response

    # ------------------------------------------------------------------ ImportanceMask
    @rpc_method
    def ImportanceMask(self, request: pb.ImportanceMaskRequest, context: grpc.ServicerContext) -> pb.ImportanceMaskResponse:
        start = time.perf_counter()
        record = current_record()
        record.method = "+".join(request.methods)
        name, version, label = model_ref(request.model)
        with self.runtime.registry.acquire(name, version, label, field="model") as sv:
            record.version = sv.version
            images = self._images(request.images, "images", sv)
            method_params = {
                m: convert.params_from_proto(p.params, f"method_params[{m!r}]") for m, p in request.method_params.items()
            }
            out = inference.importance_mask(
                sv, images, list(request.methods), self.runtime.call_context(context),
                class_index=list(request.class_index), theta=_optional(request, "theta"), rho=_optional(request, "rho"),
                dilations=request.dilations, method_params=method_params,
            )
            record.batch = out.batch_size
            response = pb.ImportanceMaskResponse(model_name=sv.name, model_version=sv.version, batch_size=out.batch_size)
        response.mask.CopyFrom(convert.to_tensor(out.mask))
        for m, heat in out.heatmaps.items():
            response.heatmaps[m].CopyFrom(convert.to_tensor(heat))
            response.masks[m].CopyFrom(convert.to_tensor(out.masks[m]))
        response.probabilities.CopyFrom(convert.to_tensor(out.probabilities))
        response.class_index.CopyFrom(convert.to_tensor(out.class_index))
        for m, params in out.params.items():
            convert.params_to_proto(response.params[m].params, {k: v for k, v in params.items() if v is not None})
        _timing(response.timing, start, out.queue_s, out.compute_s)
        return response
