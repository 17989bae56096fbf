"""``tensorflow.serving.PredictionService``: Predict and GetModelMetadata, message-compatible with TF Serving.

A stock TF Serving client (``prediction_service_pb2_grpc.PredictionServiceStub``) works unchanged:
``Predict`` with ``model_spec.signature_name = "gradcam"`` returns a Grad-CAM, because every
single-pass method is a signature of the exported SavedModel. Classify, Regress and MultiInference
(tf.Example inputs) answer UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import grpc
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from serving import convert, inference
from serving.errors import InvalidArgument, Unimplemented, current_record, rpc_method
from serving.runtime import Runtime

__all__ = ["PredictionServicer", "spec_version"]


def spec_version(spec: Any) -> tuple[int | None, str | None]:
    """``(version, label)`` of a ``tensorflow.serving.ModelSpec`` (both ``None`` = the default)."""
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return int(spec.version.value), None
    if which == "version_label":
        return None, spec.version_label
    return None, None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Thin servicer: decode, call :mod:`serving.inference`, encode."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.telemetry = runtime.metrics

    @rpc_method
    def Predict(self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        spec = request.model_spec
        signature = spec.signature_name or "serving_default"
        record = current_record()
        record.method = signature
        version, label = spec_version(spec)
        with self.runtime.registry.acquire(spec.name, version, label) as sv:
            record.version = sv.version
            inputs = {name: convert.to_ndarray(t, f"inputs[{name!r}]", self.runtime.limits.max_input_bytes) for name, t in request.inputs.items()}
            run = inference.run_signature(sv, signature, inputs, self.runtime.call_context(context))
            record.batch = run.batch_size
            outputs = run.outputs
            if request.output_filter:
                unknown = sorted(set(request.output_filter) - set(outputs))
                if unknown:
                    raise InvalidArgument(
                        f"output(s) {unknown} not in signature {signature!r}; its outputs: {sorted(outputs)}", "output_filter")
                outputs = {k: outputs[k] for k in request.output_filter}
            response = predict_pb2.PredictResponse()
            response.model_spec.name = sv.name
            response.model_spec.version.value = sv.version
            response.model_spec.signature_name = signature
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(convert.to_tensor(value))
        return response

    @rpc_method
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext) -> get_model_metadata_pb2.GetModelMetadataResponse:
        fields = list(request.metadata_field)
        if not fields:
            raise InvalidArgument("no metadata field requested; accepted: ['signature_def']", "metadata_field")
        bad = [f for f in fields if f != "signature_def"]
        if bad:
            raise InvalidArgument(f"metadata field(s) {bad} not supported; accepted: ['signature_def']", "metadata_field")
        version, label = spec_version(request.model_spec)
        with self.runtime.registry.acquire(request.model_spec.name, version, label) as sv:
            current_record().version = sv.version
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            for name, sig in sv.signature_defs.items():
                sig_map.signature_def[name].CopyFrom(sig)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = sv.name
            response.model_spec.version.value = sv.version
            response.metadata["signature_def"].Pack(sig_map)
        return response

    @rpc_method
    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented("Classify (tf.Example inputs) is not implemented; use Predict with uint8 image tensors")

    @rpc_method
    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented("Regress (tf.Example inputs) is not implemented; use Predict with uint8 image tensors")

    @rpc_method
    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented("MultiInference is not implemented; use Predict (one signature per call)")
