from tensorflow.core.framework import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRef(_message.Message):
    __slots__ = ("name", "version", "label")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    label: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class EncodedImages(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, data: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ImageBatch(_message.Message):
    __slots__ = ("tensor", "encoded", "resize")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    tensor: _tensor_pb2.TensorProto
    encoded: EncodedImages
    resize: bool
    def __init__(self, tensor: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., encoded: _Optional[_Union[EncodedImages, _Mapping]] = ..., resize: _Optional[bool] = ...) -> None: ...

class ParamValue(_message.Message):
    __slots__ = ("int_value", "float_value", "bool_value", "string_value")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    float_value: float
    bool_value: bool
    string_value: str
    def __init__(self, int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., string_value: _Optional[str] = ...) -> None: ...

class MethodParams(_message.Message):
    __slots__ = ("params",)
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: _containers.MessageMap[str, ParamValue]
    def __init__(self, params: _Optional[_Mapping[str, ParamValue]] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("elapsed_ms", "queue_ms", "compute_ms")
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    elapsed_ms: float
    queue_ms: float
    compute_ms: float
    def __init__(self, elapsed_ms: _Optional[float] = ..., queue_ms: _Optional[float] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ParameterSpec(_message.Message):
    __slots__ = ("name", "type", "default", "min", "max", "min_open", "max_open", "choices", "unit", "doc", "accepted", "fixed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_OPEN_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FIXED_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default: ParamValue
    min: float
    max: float
    min_open: bool
    max_open: bool
    choices: _containers.RepeatedScalarFieldContainer[str]
    unit: str
    doc: str
    accepted: str
    fixed: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default: _Optional[_Union[ParamValue, _Mapping]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., min_open: _Optional[bool] = ..., max_open: _Optional[bool] = ..., choices: _Optional[_Iterable[str]] = ..., unit: _Optional[str] = ..., doc: _Optional[str] = ..., accepted: _Optional[str] = ..., fixed: _Optional[bool] = ...) -> None: ...

class MethodInfo(_message.Message):
    __slots__ = ("name", "kind", "description", "params", "in_graph", "parameters", "label", "cost", "applies_to")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IN_GRAPH_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    APPLIES_TO_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    description: str
    params: _containers.MessageMap[str, ParamValue]
    in_graph: bool
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    label: str
    cost: str
    applies_to: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., in_graph: _Optional[bool] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., label: _Optional[str] = ..., cost: _Optional[str] = ..., applies_to: _Optional[str] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "state", "error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: str
    error: str
    def __init__(self, version: _Optional[int] = ..., state: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "versions", "labels", "kind", "class_names", "input_size", "methods", "target_layer", "target_shape", "signatures", "card_json", "preprocessing", "methods_left_out")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MethodsLeftOutEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    TARGET_LAYER_FIELD_NUMBER: _ClassVar[int]
    TARGET_SHAPE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    METHODS_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    labels: _containers.ScalarMap[str, int]
    kind: str
    class_names: _containers.RepeatedScalarFieldContainer[str]
    input_size: _containers.RepeatedScalarFieldContainer[int]
    methods: _containers.RepeatedCompositeFieldContainer[MethodInfo]
    target_layer: str
    target_shape: _containers.RepeatedScalarFieldContainer[int]
    signatures: _containers.RepeatedScalarFieldContainer[str]
    card_json: str
    preprocessing: str
    methods_left_out: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ..., labels: _Optional[_Mapping[str, int]] = ..., kind: _Optional[str] = ..., class_names: _Optional[_Iterable[str]] = ..., input_size: _Optional[_Iterable[int]] = ..., methods: _Optional[_Iterable[_Union[MethodInfo, _Mapping]]] = ..., target_layer: _Optional[str] = ..., target_shape: _Optional[_Iterable[int]] = ..., signatures: _Optional[_Iterable[str]] = ..., card_json: _Optional[str] = ..., preprocessing: _Optional[str] = ..., methods_left_out: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("model", "method", "images", "class_index", "top_k", "target_layer", "params", "theta", "rho")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TARGET_LAYER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    method: str
    images: ImageBatch
    class_index: _containers.RepeatedScalarFieldContainer[int]
    top_k: int
    target_layer: str
    params: _containers.MessageMap[str, ParamValue]
    theta: float
    rho: float
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., method: _Optional[str] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., class_index: _Optional[_Iterable[int]] = ..., top_k: _Optional[int] = ..., target_layer: _Optional[str] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., theta: _Optional[float] = ..., rho: _Optional[float] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "method", "heatmap", "heatmap_lowres", "raw", "probabilities", "class_index", "image_index", "mask", "params", "outputs", "timing", "batch_size")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.TensorProto
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_LOWRES_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    method: str
    heatmap: _tensor_pb2.TensorProto
    heatmap_lowres: _tensor_pb2.TensorProto
    raw: _tensor_pb2.TensorProto
    probabilities: _tensor_pb2.TensorProto
    class_index: _tensor_pb2.TensorProto
    image_index: _tensor_pb2.TensorProto
    mask: _tensor_pb2.TensorProto
    params: _containers.MessageMap[str, ParamValue]
    outputs: _containers.MessageMap[str, _tensor_pb2.TensorProto]
    timing: Timing
    batch_size: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., method: _Optional[str] = ..., heatmap: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., heatmap_lowres: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., raw: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., probabilities: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., class_index: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., image_index: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., mask: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., outputs: _Optional[_Mapping[str, _tensor_pb2.TensorProto]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., batch_size: _Optional[int] = ...) -> None: ...

class SimilarityMapRequest(_message.Message):
    __slots__ = ("model", "query", "reference", "region", "method", "params")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    query: ImageBatch
    reference: ImageBatch
    region: _tensor_pb2.TensorProto
    method: str
    params: _containers.MessageMap[str, ParamValue]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., query: _Optional[_Union[ImageBatch, _Mapping]] = ..., reference: _Optional[_Union[ImageBatch, _Mapping]] = ..., region: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., method: _Optional[str] = ..., params: _Optional[_Mapping[str, ParamValue]] = ...) -> None: ...

class SimilarityMapResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "query_map", "reference_map", "similarity", "query_map_upsampled", "reference_map_upsampled", "region_score", "timing", "batch_size", "method", "params", "outputs")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ParamValue, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.TensorProto
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    QUERY_MAP_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MAP_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    QUERY_MAP_UPSAMPLED_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_MAP_UPSAMPLED_FIELD_NUMBER: _ClassVar[int]
    REGION_SCORE_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    query_map: _tensor_pb2.TensorProto
    reference_map: _tensor_pb2.TensorProto
    similarity: _tensor_pb2.TensorProto
    query_map_upsampled: _tensor_pb2.TensorProto
    reference_map_upsampled: _tensor_pb2.TensorProto
    region_score: _tensor_pb2.TensorProto
    timing: Timing
    batch_size: int
    method: str
    params: _containers.MessageMap[str, ParamValue]
    outputs: _containers.MessageMap[str, _tensor_pb2.TensorProto]
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., query_map: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., reference_map: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., similarity: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., query_map_upsampled: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., reference_map_upsampled: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., region_score: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., batch_size: _Optional[int] = ..., method: _Optional[str] = ..., params: _Optional[_Mapping[str, ParamValue]] = ..., outputs: _Optional[_Mapping[str, _tensor_pb2.TensorProto]] = ...) -> None: ...

class ImportanceMaskRequest(_message.Message):
    __slots__ = ("model", "images", "methods", "class_index", "theta", "rho", "dilations", "method_params")
    class MethodParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MethodParams
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MethodParams, _Mapping]] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    DILATIONS_FIELD_NUMBER: _ClassVar[int]
    METHOD_PARAMS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    images: ImageBatch
    methods: _containers.RepeatedScalarFieldContainer[str]
    class_index: _containers.RepeatedScalarFieldContainer[int]
    theta: float
    rho: float
    dilations: int
    method_params: _containers.MessageMap[str, MethodParams]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., images: _Optional[_Union[ImageBatch, _Mapping]] = ..., methods: _Optional[_Iterable[str]] = ..., class_index: _Optional[_Iterable[int]] = ..., theta: _Optional[float] = ..., rho: _Optional[float] = ..., dilations: _Optional[int] = ..., method_params: _Optional[_Mapping[str, MethodParams]] = ...) -> None: ...

class ImportanceMaskResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "mask", "heatmaps", "masks", "probabilities", "class_index", "params", "timing", "batch_size")
    class HeatmapsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.TensorProto
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ...) -> None: ...
    class MasksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.TensorProto
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MethodParams
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MethodParams, _Mapping]] = ...) -> None: ...
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    HEATMAPS_FIELD_NUMBER: _ClassVar[int]
    MASKS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    mask: _tensor_pb2.TensorProto
    heatmaps: _containers.MessageMap[str, _tensor_pb2.TensorProto]
    masks: _containers.MessageMap[str, _tensor_pb2.TensorProto]
    probabilities: _tensor_pb2.TensorProto
    class_index: _tensor_pb2.TensorProto
    params: _containers.MessageMap[str, MethodParams]
    timing: Timing
    batch_size: int
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., mask: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., heatmaps: _Optional[_Mapping[str, _tensor_pb2.TensorProto]] = ..., masks: _Optional[_Mapping[str, _tensor_pb2.TensorProto]] = ..., probabilities: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., class_index: _Optional[_Union[_tensor_pb2.TensorProto, _Mapping]] = ..., params: _Optional[_Mapping[str, MethodParams]] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., batch_size: _Optional[int] = ...) -> None: ...
