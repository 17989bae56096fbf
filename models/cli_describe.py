"""``python -m models describe ROOT/NAME --input-range 0,255 --class-names a,b``.

Writes (and checks) the explanation metadata of a SavedModel that has no model card — any model
TF Serving serves — so the explanation service knows its input tensor and range, its score
output and its class names without a re-export. The file is Vertex Explainable AI's
``explanation_metadata.json`` (:mod:`models.metadata`), written atomically into
``<version>/assets.extra/``; a running server picks it up like a new version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_describe_parser", "run_describe", "describe"]


def add_describe_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``describe`` subcommand to the ``python -m models`` sub-parsers."""
    from models.preprocessing import MODES

    d = sub.add_parser(
        "describe",
        help="write the explanation metadata (Vertex's format) of a SavedModel without a model card",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d.add_argument("model_dir", metavar="ROOT/NAME", help="the model's folder in a TF Serving model root")
    d.add_argument("--version", type=int, help="the version to describe (default: every version)")
    d.add_argument("--input-range", metavar="MIN,MAX", help="value range of a float image input, e.g. 0,255 or (with =) --input-range=-1,1")
    d.add_argument("--preprocessing", metavar="MODE", choices=list(MODES[:-1]),
                   help=f"instead of --input-range: the input's preprocessing mode, one of {list(MODES[:-1])}")
    d.add_argument("--class-names", metavar="A,B,...", help="class names in output order")
    d.add_argument("--input-tensor", help="the image input of the signature (default: its only input)")
    d.add_argument("--output-tensor", help="the score output (default: 'probabilities' or the only output)")
    d.add_argument("--activation-output", help="the output holding target-layer activations, if the signature has one")
    d.add_argument("--signature", default="serving_default", help="the signature described")
    return d


def _range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--input-range {text!r} must be MIN,MAX, e.g. 0,255 or -1,1") from None
    if not lo < hi:
        raise ValueError(f"--input-range {text!r}: MIN must be below MAX")
    return lo, hi


def _pick(name: str | None, choices: list[str], flag: str, default: str | None) -> str:
    if name is None:
        if default is not None and default in choices:
            return default
        if len(choices) == 1:
            return choices[0]
        raise ValueError(f"the signature has several candidates {choices}; choose one with {flag}")
    if name not in choices:
        raise ValueError(f"{flag} {name!r} is not in the signature; accepted: {choices}")
    return name


def describe(version_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Check the options against the SavedModel in ``version_dir`` and build the metadata."""
    import tensorflow as tf

    from models.metadata import make_metadata

    loaded = tf.saved_model.load(str(version_dir))
    if args.signature not in loaded.signatures:
        raise ValueError(f"--signature {args.signature!r} is not in {version_dir}; accepted: {sorted(loaded.signatures)}")
    fn = loaded.signatures[args.signature]
    inputs = fn.structured_input_signature[1]
    outputs = fn.structured_outputs
    in_key = _pick(args.input_tensor, sorted(inputs), "--input-tensor", None)
    out_key = _pick(args.output_tensor, sorted(outputs), "--output-tensor", "probabilities")
    spec = inputs[in_key]
    if spec.shape.rank != 4 or spec.shape[-1] != 3:
        raise ValueError(f"input {in_key!r} has shape {spec.shape}; an image input is (N, H, W, 3)")
    rng = _range(args.input_range)
    if rng is not None and args.preprocessing:
        raise ValueError("give --input-range or --preprocessing, not both")
    if spec.dtype.is_floating and rng is None and not args.preprocessing:
        raise ValueError(f"input {in_key!r} is {spec.dtype.name}: give --input-range MIN,MAX (e.g. 0,255) "
                         "or --preprocessing MODE, so synthesised images can be fed to it")
    names = [c.strip() for c in args.class_names.split(",")] if args.class_names else None
    n_out = outputs[out_key].shape[-1]
    if names is not None and n_out is not None and len(names) != int(n_out):
        raise ValueError(f"--class-names has {len(names)} names; output {out_key!r} has {int(n_out)} classes")
    if args.activation_output is not None:
        _pick(args.activation_output, sorted(outputs), "--activation-output", None)
    doc = make_metadata(in_key, out_key, input_range=rng, class_names=names, preprocessing=args.preprocessing,
                        activation_output=args.activation_output)
    if args.signature != "serving_default":
        doc.setdefault("cnnExplain", {})["signatureName"] = args.signature
    return doc


def run_describe(args: argparse.Namespace) -> int:
    """Run the subcommand; returns the exit status (2 for a bad argument)."""
    from models.export import list_versions
    from models.metadata import MetadataError, write_metadata

    model_dir = Path(args.model_dir)
    versions = list_versions(model_dir)
    try:
        if not versions:
            raise ValueError(f"{str(model_dir)!r} has no version folders (ROOT/NAME/<version>/saved_model.pb)")
        if args.version is not None and args.version not in versions:
            raise ValueError(f"--version {args.version} does not exist in {str(model_dir)!r}; accepted: {versions}")
        chosen = [args.version] if args.version is not None else versions
        docs = {v: describe(model_dir / str(v), args) for v in chosen}  # check all before writing any
    except (ValueError, MetadataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for v, doc in docs.items():
        print(f"wrote {write_metadata(model_dir / str(v), doc)}")
    return 0
