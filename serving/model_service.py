"""``tensorflow.serving.ModelService``: GetModelStatus (TF Serving's states and error statuses).

HandleReloadConfigRequest answers UNIMPLEMENTED: the server reloads by polling the model root
(``--file-system-poll-wait-seconds``).
"""

from __future__ import annotations

from typing import Any

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

from serving.errors import NotFound, Unimplemented, current_record, rpc_method
from serving.prediction_service import spec_version
from serving.registry import validate_label, validate_name
from serving.runtime import Runtime

__all__ = ["ModelServicer"]


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """Thin servicer over :class:`serving.registry.ModelRegistry` statuses."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.telemetry = runtime.metrics

    @rpc_method
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext) -> get_model_status_pb2.GetModelStatusResponse:
        registry = self.runtime.registry
        name = validate_name(request.model_spec.name, "model_spec.name")
        version, label = spec_version(request.model_spec)
        statuses = registry.statuses(name)
        if not statuses:
            raise NotFound(f"model {name!r} not found; available models: {registry.model_names()}")
        if label:
            validate_label(label, "model_spec.version_label")
            labels = registry.labels(name)
            if label not in labels:
                raise NotFound(f"model {name!r} has no version label {label!r}; labels: {sorted(labels)}")
            version = labels[label]
        if version:
            if version not in statuses:
                raise NotFound(f"version {version} of model {name!r} is unknown; known versions: {sorted(statuses)}")
            statuses = {version: statuses[version]}
            current_record().version = version
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, st in sorted(statuses.items()):
            item = response.model_version_status.add()
            item.version = v
            item.state = st.state
            item.status.error_code = st.error_code.value[0]
            item.status.error_message = st.error_message
        return response

    @rpc_method
    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise Unimplemented(
            "HandleReloadConfigRequest is not implemented; the server picks up model versions by polling the "
            "model root (--file-system-poll-wait-seconds)")
