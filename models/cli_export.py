"""``python -m models export MODEL_FILE --name NAME --model-root ROOT --preprocessing MODE``.

Exports a Keras model file a user already has (``.keras``, or a Keras-saved ``.h5``) as the next
version of ``ROOT/NAME`` in TF Serving's layout, with the explanation signatures that apply to it,
and prints the version folder, the methods exported and the methods left out with the reason.
Everything that can be checked is checked before anything is written, and the export itself
writes into a temporary folder that is renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from models.preprocessing import MODES

__all__ = ["add_export_parser", "run_export", "load_model_file", "read_class_names"]

_SUFFIXES = (".keras", ".h5", ".hdf5")


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``export`` subcommand to the ``python -m models`` sub-parsers."""
    ex = sub.add_parser(
        "export",
        help="export a Keras model file (.keras or .h5) as the next version under a model root",
        description=(
            "Export a Keras image model file as a TF Serving SavedModel with explanation signatures "
            "(the next version of MODEL_ROOT/NAME). Prints the version folder, the methods exported "
            "and the methods left out with the reason."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ex.add_argument("model_file", metavar="MODEL_FILE", help="a .keras file, or a .h5 file saved by Keras")
    ex.add_argument("--name", required=True, help="model name (letters, digits, '.', '_', '-')")
    ex.add_argument("--model-root", required=True, metavar="ROOT", help="TF Serving model root")
    ex.add_argument(
        "--preprocessing", required=True, metavar="MODE",
        help=(f"how the model expects its input, one of {list(MODES)}: unit = [0, 1]; raw = 0-255 floats "
              "(models that scale inside); tf/caffe/torch = the modes of keras.applications' "
              "preprocess_input; custom = (pixel - mean) / std with --mean and --std"),
    )
    ex.add_argument("--mean", metavar="R,G,B", help="per-channel mean in pixel units (with --preprocessing custom)")
    ex.add_argument("--std", metavar="R,G,B", help="per-channel std in pixel units (with --preprocessing custom)")
    ex.add_argument("--kind", default="classifier", choices=["classifier", "embedding"], help="what the model is")
    names = ex.add_mutually_exclusive_group()
    names.add_argument("--class-names", metavar="A,B,...", help="comma-separated class names, in output order")
    names.add_argument("--class-names-file", metavar="FILE", help="class names, one per line, in output order")
    ex.add_argument("--target-layer", metavar="LAYER",
                    help="layer name or path explained by the CAM methods (default: the last 4-D output "
                         "before the pooling head)")
    return ex


def _floats(flag: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} {text!r} must be three comma-separated numbers, e.g. 123.68,116.78,103.94") from None
    if len(values) != 3:
        raise ValueError(f"{flag} {text!r} has {len(values)} values; it needs 3 (R,G,B)")
    return values


def _preprocessing(args: argparse.Namespace) -> Any:
    if args.preprocessing not in MODES:
        raise ValueError(f"--preprocessing {args.preprocessing!r} is not supported; accepted: {list(MODES)}")
    mean, std = _floats("--mean", args.mean), _floats("--std", args.std)
    if args.preprocessing == "custom":
        if mean is None or std is None:
            raise ValueError("--preprocessing custom needs --mean R,G,B and --std R,G,B (pixel units)")
        return {"mode": "custom", "mean": mean, "std": std}
    if mean is not None or std is not None:
        raise ValueError(f"--mean and --std go with --preprocessing custom, not {args.preprocessing!r}")
    return args.preprocessing


def read_class_names(class_names: str | None, class_names_file: str | None) -> list[str] | None:
    """Class names from ``--class-names a,b`` or a file with one name per line (blank lines skipped)."""
    if class_names is not None:
        names = [c.strip() for c in class_names.split(",")]
    elif class_names_file is not None:
        path = Path(class_names_file)
        if not path.is_file():
            raise ValueError(f"--class-names-file {str(path)!r} does not exist")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        return None
    if not names or any(not n for n in names):
        raise ValueError(f"class names {names!r} must be non-empty strings")
    if len(set(names)) != len(names):
        raise ValueError(f"class names {names!r} contain duplicates")
    return names


def load_model_file(path: str | Path) -> Any:
    """Load a ``.keras`` or Keras ``.h5`` file (without compiling it).

    Raises:
        ValueError: no such file, an unsupported suffix, or a file Keras cannot read as a model.
    """
    import keras

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    if path.suffix.lower() not in _SUFFIXES:
        raise ValueError(f"model file {str(path)!r} has suffix {path.suffix!r}; accepted: {list(_SUFFIXES)}")
    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as err:  # noqa: BLE001 - any failure to read it is the user's file
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"model file {str(path)!r} is not a Keras model Keras can load ({type(err).__name__}: {first})") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"model file {str(path)!r} holds a {type(model).__name__}, not a keras.Model")
    return model


def run_export(args: argparse.Namespace, out: Any = None) -> int:
    """Run the ``export`` subcommand; returns the exit status (2 for a bad argument)."""
    out = out if out is not None else sys.stdout
    from models.export import ExportError, export_classifier, export_embedding

    try:
        preprocessing = _preprocessing(args)
        class_names = read_class_names(args.class_names, args.class_names_file)
        if args.kind == "embedding" and class_names is not None:
            raise ValueError("--class-names go with --kind classifier; an embedding has no classes")
        model = load_model_file(args.model_file)
        export_dir = Path(args.model_root) / args.name
        card = {"source": {"model_file": str(Path(args.model_file).resolve())}}
        if args.kind == "classifier":
            version_dir = export_classifier(model, export_dir, class_names=class_names, target_layer=args.target_layer,
                                            card=card, preprocessing=preprocessing)
        else:
            version_dir = export_embedding(model, export_dir, target_layer=args.target_layer, card=card,
                                           preprocessing=preprocessing)
    except (ValueError, ExportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _report(version_dir, out)
    return 0


def _report(version_dir: Path, out: Any) -> None:
    from models.export import read_card

    card = read_card(version_dir)
    print(f"exported {version_dir}", file=out)
    print(f"  preprocessing: {card['preprocessing']['mode']}; target layer: {card['target_layer']} "
          f"{card['target_shape']}", file=out)
    print(f"  methods exported: {', '.join(card['methods']) or '(none)'}", file=out)
    for name, reason in card.get("methods_left_out", {}).items():
        print(f"  left out: {name}: {reason}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.cli_export …`` (the same as ``python -m models export …``)."""
    parser = argparse.ArgumentParser(prog="python -m models")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    return run_export(parser.parse_args(argv))
