"""Explanation metadata in Vertex Explainable AI's format, for SavedModels without a model card.

A model root that TF Serving already serves needs no re-export: the file
``<version>/assets.extra/explanation_metadata.json`` says which tensor holds the image and which
the scores, the input's value range, the class names and how heat maps are drawn. The format is
Vertex's ``ExplanationMetadata`` (a Vertex user's file works unchanged)::

    {
      "inputs": {
        "image": {
          "inputTensorName": "images",
          "modality": "image",
          "inputBaselines": [0.0],
          "featureValueDomain": {"minValue": 0, "maxValue": 255},
          "visualization": {"type": "Pixels", "polarity": "positive",
                            "clipPercentUpperbound": 99.9, "clipPercentLowerbound": 70,
                            "colorMap": "pink_green", "overlayType": "grayscale"}
        }
      },
      "outputs": {
        "scores": {"outputTensorName": "probabilities",
                   "indexDisplayNameMapping": ["tokyo", "pittsburgh"]}
      },
      "framework": "tensorflow",
      "cnnExplain": {"preprocessing": "caffe", "activationOutputName": "activations"}
    }

The input's range is ``featureValueDomain`` (Vertex's field), or the project's ``cnnExplain``
block: ``preprocessing`` (a mode of :mod:`models.preprocessing`, for a model exported with one)
and ``activationOutputName`` (the serving signature's output that holds the target-layer
activations, for the Grad-CAM family). A uint8 input is pixels and needs no range; a float input
without one cannot be fed synthesised images (occlusion, masks, baselines): the service answers
FAILED_PRECONDITION with a message that says how to declare it.

Every field is checked when the file is read; an unknown or malformed field is refused with its
path named (``inputs.image.visualization.polarity 'up' is not supported; accepted: [...]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = [
    "METADATA_PATH",
    "MetadataError",
    "ExplanationMetadata",
    "parse_metadata",
    "read_metadata",
    "read_metadata_file",
    "write_metadata",
    "make_metadata",
]

#: Where the file lives inside a version directory (Vertex's place for it).
METADATA_PATH = Path("assets.extra") / "explanation_metadata.json"

# Vertex's documented fields (ExplanationMetadata, InputMetadata, OutputMetadata, Visualization).
_TOP = {"inputs", "outputs", "featureAttributionsSchemaUri", "latentSpaceSource", "framework", "tags",
        "cnnExplain"}
_INPUT = {"inputTensorName", "encoding", "modality", "featureValueDomain", "indicesTensorName",
          "denseShapeTensorName", "indexFeatureMapping", "encodedTensorName", "encodedBaselines",
          "visualization", "groupName", "inputBaselines"}
_OUTPUT = {"outputTensorName", "indexDisplayNameMapping", "displayNameMappingKey"}
_VISUALIZATION = {"type", "polarity", "colorMap", "clipPercentUpperbound", "clipPercentLowerbound", "overlayType"}
_DOMAIN = {"minValue", "maxValue", "originalMean", "originalStddev"}
_PROJECT = {"preprocessing", "activationOutputName", "signatureName"}
_CHOICES = {
    "type": ("PIXELS", "OUTLINES", "TYPE_UNSPECIFIED"),
    "polarity": ("POSITIVE", "NEGATIVE", "BOTH", "POLARITY_UNSPECIFIED"),
    "colorMap": ("PINK_GREEN", "VIRIDIS", "RED", "GREEN", "RED_GREEN", "PINK_WHITE_GREEN",
                 "COLOR_MAP_UNSPECIFIED"),
    "overlayType": ("NONE", "ORIGINAL", "GRAYSCALE", "MASK_BLACK", "OVERLAY_TYPE_UNSPECIFIED"),
    "modality": ("image", "numeric", "text", "categorical"),
}


class MetadataError(ValueError):
    """A malformed metadata file (the message names the field and the accepted values)."""


@dataclass(frozen=True)
class ExplanationMetadata:
    """The parts of the metadata the service uses.

    Attributes:
        input_name, input_tensor: The input's key in ``inputs`` and the signature input it names.
        output_name, output_tensor: The output's key in ``outputs`` and the signature output.
        input_range: ``(min, max)`` of the input values, or ``None`` (unknown).
        preprocessing: A preprocessing mode (project field), or ``None``.
        class_names: ``indexDisplayNameMapping``, or ``[]``.
        baselines: ``inputBaselines`` as given (scalars or arrays), or ``[]``.
        visualization: Vertex's visualization settings (upper-case enum values), or ``{}``.
        activation_output: The signature output with target-layer activations, or ``None``.
        signature: The serving signature the metadata describes (default ``serving_default``).
        raw: The whole file as read.
    """

    input_name: str
    input_tensor: str
    output_name: str
    output_tensor: str
    input_range: tuple[float, float] | None = None
    preprocessing: str | None = None
    class_names: list[str] = field(default_factory=list)
    baselines: list[Any] = field(default_factory=list)
    visualization: dict[str, Any] = field(default_factory=dict)
    activation_output: str | None = None
    signature: str = "serving_default"
    raw: dict[str, Any] = field(default_factory=dict)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise MetadataError(f"{where} must be a JSON object, got {type(value).__name__}")
    return dict(value)


def _known(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise MetadataError(f"{where}.{key} is not a field of the explanation metadata; accepted: {sorted(allowed)}")


def _string(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise MetadataError(f"{where}.{key} is required (the signature's tensor name)")
        return None
    if not isinstance(value, str) or not value:
        raise MetadataError(f"{where}.{key} {value!r} must be a non-empty string")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MetadataError(f"{where} {value!r} must be a number")
    return float(value)


def _visualization(value: Any, where: str) -> dict[str, Any]:
    vis = _object(value, where)
    _known(vis, _VISUALIZATION, where)
    out: dict[str, Any] = {}
    for key, raw in vis.items():
        if key in _CHOICES:
            text = str(raw).upper()
            if text not in _CHOICES[key]:
                raise MetadataError(f"{where}.{key} {raw!r} is not supported; accepted: {list(_CHOICES[key])}")
            out[key] = text
        else:
            pct = _number(raw, f"{where}.{key}")
            if not 0 <= pct <= 100:
                raise MetadataError(f"{where}.{key} {raw!r} must be a percentage in [0, 100]")
            out[key] = pct
    lo, hi = out.get("clipPercentLowerbound", 0.0), out.get("clipPercentUpperbound", 100.0)
    if lo >= hi:
        raise MetadataError(f"{where}.clipPercentLowerbound {lo} must be below clipPercentUpperbound {hi}")
    return out


def _input(name: str, value: Any) -> tuple[str, tuple[float, float] | None, list[Any], dict[str, Any]]:
    where = f"inputs.{name}"
    inp = _object(value, where)
    _known(inp, _INPUT, where)
    tensor = _string(inp, "inputTensorName", where)
    modality = inp.get("modality", "image")
    if modality not in _CHOICES["modality"]:
        raise MetadataError(f"{where}.modality {modality!r} is not supported; accepted: {list(_CHOICES['modality'])}")
    if modality != "image":
        raise MetadataError(f"{where}.modality {modality!r}: this service explains images; accepted: ['image']")
    rng = None
    if "featureValueDomain" in inp:
        dom = _object(inp["featureValueDomain"], f"{where}.featureValueDomain")
        _known(dom, _DOMAIN, f"{where}.featureValueDomain")
        if "minValue" in dom or "maxValue" in dom:
            if not ("minValue" in dom and "maxValue" in dom):
                raise MetadataError(f"{where}.featureValueDomain needs both minValue and maxValue")
            lo = _number(dom["minValue"], f"{where}.featureValueDomain.minValue")
            hi = _number(dom["maxValue"], f"{where}.featureValueDomain.maxValue")
            if not lo < hi:
                raise MetadataError(f"{where}.featureValueDomain minValue {lo} must be below maxValue {hi}")
            rng = (lo, hi)
    baselines = inp.get("inputBaselines", [])
    if not isinstance(baselines, list):
        raise MetadataError(f"{where}.inputBaselines must be a list of baselines")
    vis = _visualization(inp["visualization"], f"{where}.visualization") if "visualization" in inp else {}
    return tensor, rng, baselines, vis  # type: ignore[return-value]


def _output(name: str, value: Any) -> tuple[str, list[str]]:
    where = f"outputs.{name}"
    out = _object(value, where)
    _known(out, _OUTPUT, where)
    tensor = _string(out, "outputTensorName", where)
    names = out.get("indexDisplayNameMapping", [])
    if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
        raise MetadataError(f"{where}.indexDisplayNameMapping must be a list of class names")
    return tensor, [str(n) for n in names]  # type: ignore[return-value]


def _single(block: Mapping[str, Any], what: str) -> tuple[str, Any]:
    if len(block) != 1:
        raise MetadataError(f"{what} must have exactly one entry (one image input / one score output); "
                            f"it has {sorted(block)}")
    return next(iter(block.items()))


def parse_metadata(data: Any) -> ExplanationMetadata:
    """Check a metadata document and extract what the service needs.

    Raises:
        MetadataError: naming the first bad field and the accepted values.
    """
    from models.preprocessing import MODES

    top = _object(data, "explanation metadata")
    _known(top, _TOP, "explanation metadata")
    if "framework" in top and str(top["framework"]).lower() not in ("tensorflow", "keras"):
        raise MetadataError(f"framework {top['framework']!r} is not supported; accepted: ['tensorflow']")
    inputs = _object(top.get("inputs"), "inputs") if "inputs" in top else {}
    outputs = _object(top.get("outputs"), "outputs") if "outputs" in top else {}
    if not inputs:
        raise MetadataError("inputs is required: one entry naming the image input tensor")
    if not outputs:
        raise MetadataError("outputs is required: one entry naming the score output tensor")
    in_name, in_value = _single(inputs, "inputs")
    out_name, out_value = _single(outputs, "outputs")
    tensor, rng, baselines, vis = _input(in_name, in_value)
    out_tensor, names = _output(out_name, out_value)
    project = _object(top.get("cnnExplain", {}), "cnnExplain")
    _known(project, _PROJECT, "cnnExplain")
    prep = project.get("preprocessing")
    if prep is not None and prep not in MODES[:-1]:
        raise MetadataError(f"cnnExplain.preprocessing {prep!r} is not supported; accepted: {list(MODES[:-1])}")
    if prep is not None and rng is not None:
        raise MetadataError("give either inputs.*.featureValueDomain or cnnExplain.preprocessing, not both")
    return ExplanationMetadata(
        input_name=in_name, input_tensor=tensor, output_name=out_name, output_tensor=out_tensor,
        input_range=rng, preprocessing=prep, class_names=names, baselines=baselines, visualization=vis,
        activation_output=_string(project, "activationOutputName", "cnnExplain", required=False),
        signature=_string(project, "signatureName", "cnnExplain", required=False) or "serving_default",
        raw=top,
    )


def read_metadata(version_dir: str | Path) -> ExplanationMetadata | None:
    """The metadata of a version directory, or ``None`` when it has no file.

    Raises:
        MetadataError: the file is not JSON or is malformed.
    """
    path = Path(version_dir) / METADATA_PATH
    if not path.is_file():
        return None
    return _read_json(path, str(METADATA_PATH))


def read_metadata_file(path: str | Path) -> ExplanationMetadata:
    """The metadata in the file ``path`` (a server config's per-model ``explanation_metadata``).

    Raises:
        MetadataError: the file is missing, not JSON, or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"explanation metadata file {str(path)!r} does not exist")
    return _read_json(path, str(path))


def _read_json(path: Path, shown: str) -> ExplanationMetadata:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise MetadataError(f"{shown} is not valid JSON: {err}") from None
    return parse_metadata(data)


def make_metadata(
    input_tensor: str,
    output_tensor: str,
    input_range: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    preprocessing: str | None = None,
    activation_output: str | None = None,
    visualization: Mapping[str, Any] | None = None,
    baselines: Sequence[Any] | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """A metadata document (checked with :func:`parse_metadata` before it is returned)."""
    inp: dict[str, Any] = {"inputTensorName": input_tensor, "modality": "image"}
    if input_range is not None:
        inp["featureValueDomain"] = {"minValue": float(input_range[0]), "maxValue": float(input_range[1])}
    if baselines:
        inp["inputBaselines"] = list(baselines)
    if visualization:
        inp["visualization"] = dict(visualization)
    out: dict[str, Any] = {"outputTensorName": output_tensor}
    if class_names:
        out["indexDisplayNameMapping"] = list(class_names)
    doc: dict[str, Any] = {"inputs": {"image": inp}, "outputs": {"scores": out}, "framework": "tensorflow"}
    project = {k: v for k, v in (("preprocessing", preprocessing), ("activationOutputName", activation_output),
                                 ("signatureName", signature if signature != "serving_default" else None)) if v}
    if project:
        doc["cnnExplain"] = project
    parse_metadata(doc)
    return doc


def write_metadata(version_dir: str | Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` atomically (temporary file, then rename) into ``version_dir``."""
    parse_metadata(doc)
    path = Path(version_dir) / METADATA_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
