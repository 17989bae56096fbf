"""Command line of the models package: ``python -m models train --preset small --out runs/models``.

``train`` trains the four classifiers (``vgg11``, ``resnet18``, ``simple``, ``simpler``), a
retrained copy of each from another seed (``<arch>_retrained``) and one embedding network per
pooling kind (``embedding_avg``, ``embedding_max``, on the synthetic landmarks), exports each
into the model root with :mod:`models.export` (TF Serving layout, next version) and prints a
table of accuracies. The data is regenerated from the seed; the model cards record how.
``--jobs N`` trains N models side by side in worker processes (:mod:`models.parallel_train`).

``train --data-dir DIR`` trains the classifiers on a user's image folder ``DIR/<class>/<image>``
instead (split 6:2:2 with the seed, the recipe of ``--preset``; see :mod:`models.folder_train`).

``presets`` lists the presets.

``export MODEL_FILE --name NAME --model-root ROOT --preprocessing MODE`` exports a Keras model file
a user already has (:mod:`models.cli_export`).

``describe ROOT/NAME --input-range 0,255`` writes the explanation metadata (Vertex's format) of a
SavedModel without a card (:mod:`models.cli_describe`).

``train-segmenter`` trains the small segmenter of :mod:`models.segmenter` on the cities' label
maps and exports it (``kind: "segmenter"``, signature ``segment``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from models.presets import CLASSIFIER_NAMES, MODEL_NAMES, PRESET_ALIASES, PRESETS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models",
        description="Train and export the project's networks (see models/presets.py).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    presets_help = "; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
    tr = sub.add_parser(
        "train",
        help="train the classifiers, their retrained copies and the embedding networks, and export them",
        description=(
            "Train the four classifiers, a retrained copy of each (another seed) and the two embedding "
            "networks of a preset, export them into a TF Serving model root and print their accuracies."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument("--preset", default="small", metavar="NAME",
                    help=f"training preset, one of {sorted(PRESETS)} ({presets_help})")
    tr.add_argument("--out", default="runs/models", metavar="MODEL_ROOT",
                    help="model root; each model becomes MODEL_ROOT/<name>/<version>/ (next version)")
    tr.add_argument("--seed", type=int, default=0,
                    help="seed of the data, the split and the models; retrained copies use seed + 1")
    tr.add_argument("--only", action="append", metavar="NAMES",
                    help=f"comma-separated subset of the models (repeatable); accepted: {', '.join(MODEL_NAMES)}")
    tr.add_argument("--epochs", type=int, default=None,
                    help="override the preset's epochs for every model")
    tr.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                    help="also keep each model's best-on-validation weights as DIR/<name>.weights.h5")
    tr.add_argument("--no-export", action="store_true", help="train only; write nothing to MODEL_ROOT")
    tr.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                    help="train N models at once, each in its own process with cores/N TensorFlow threads (no "
                         "progress bars; one line per model); on 2 cores --jobs 2 trains the small preset 1.5x faster")
    tr.add_argument("--quiet", "-q", action="store_true", help="no progress bars (one line per model)")
    tr.add_argument("--verbose", "-v", action="store_true",
                    help="TensorFlow's start-up lines and Keras's per-epoch lines instead of one bar per model")
    _add_strategy_arguments(tr)
    fo = tr.add_argument_group(
        "your own images", "train the classifiers on DIR/<class>/<image> (PNG, JPEG, BMP) instead of the synthetic "
        "data: split 6:2:2 with --seed, the recipe (widths, lr, batch size, epochs) of --preset")
    fo.add_argument("--data-dir", default=None, metavar="DIR", help="image folder DIR/<class>/<image>")
    fo.add_argument("--labels-dir", default=None, metavar="DIR",
                    help="optional label maps DIR/<class>/<image stem>.png (checked and recorded in the card)")
    fo.add_argument("--architectures", default=None, metavar="NAMES",
                    help=f"comma-separated classifiers to train (default all): {', '.join(CLASSIFIER_NAMES)}")
    fo.add_argument("--image-size", type=int, default=None, metavar="PX",
                    help="square input size the images are resized to (default: the preset's; the papers: 224)")
    fo.add_argument("--retrained", action="store_true",
                    help="also train <arch>_retrained from seed + 1 (as the presets do)")
    sub.add_parser("presets", help="list the presets")
    from models.cli_describe import add_describe_parser
    from models.cli_export import add_export_parser

    add_export_parser(sub)
    add_describe_parser(sub)
    _add_segmenter_parser(sub)
    return parser


def _add_strategy_arguments(tr: argparse.ArgumentParser) -> None:
    """``--strategy`` and ``--lr-scaling`` of ``train`` (see :mod:`models.distribute`)."""
    from models.distribute import LR_SCALINGS, STRATEGIES

    dg = tr.add_argument_group(
        "distributed training", "the preset's batch size is per replica (global batch = batch x replicas); "
        "the learning rate is scaled by --lr-scaling for the replicas; only the chief exports")
    dg.add_argument("--strategy", default="default", choices=STRATEGIES,
                    help="default: one device; mirrored: tf.distribute.MirroredStrategy over the local devices; "
                         "multi-worker: MultiWorkerMirroredStrategy over the cluster in TF_CONFIG")
    dg.add_argument("--lr-scaling", default="sqrt", choices=LR_SCALINGS,
                    help="learning rate for N replicas: x sqrt(N) (Adam), x N (linear rule) or unchanged")


def _add_segmenter_parser(sub) -> None:
    """``train-segmenter``: the small segmenter of :mod:`models.segmenter` (its own presets)."""
    from models.segmenter import SEGMENTER_PRESETS

    sg = sub.add_parser(
        "train-segmenter",
        help="train the small segmenter on the synthetic cities' label maps and export it",
        description=(
            "Train a small fully-convolutional segmenter on the synthetic cities' ADE20K label maps, print its "
            "pixel accuracy and mean IoU on held-out scenes and export it as MODEL_ROOT/<name>/<version>/ "
            "(signatures segment and serving_default)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    presets_help = "; ".join(f"{n}: {p.description}" for n, p in SEGMENTER_PRESETS.items())
    sg.add_argument("--preset", default="small", metavar="NAME",
                    help=f"segmenter preset, one of {sorted(SEGMENTER_PRESETS)} ({presets_help})")
    sg.add_argument("--image-size", type=int, default=None, metavar="N",
                    help="override the preset's image side (a multiple of 4)")
    sg.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    sg.add_argument("--seed", type=int, default=0, help="seed of the data, the split and the weights")
    sg.add_argument("--out", required=True, metavar="MODEL_ROOT",
                    help="model root; the segmenter becomes MODEL_ROOT/<name>/<version>/ (next version)")
    sg.add_argument("--name", default="segmenter", help="model name under the root")
    sg.add_argument("--quiet", "-q", action="store_true", help="no progress bars (one line per epoch)")


def _train_segmenter(args: argparse.Namespace) -> int:
    from models.segmenter import SEGMENTER_PRESETS

    if args.preset not in SEGMENTER_PRESETS:
        print(f"error: --preset {args.preset!r} is not a segmenter preset; accepted: {sorted(SEGMENTER_PRESETS)}",
              file=sys.stderr)
        return 2
    if args.image_size is not None and (args.image_size < 16 or args.image_size % 4):
        print(f"error: --image-size {args.image_size} must be a multiple of 4 and at least 16", file=sys.stderr)
        return 2
    for flag, value, low in (("--epochs", args.epochs, 1), ("--seed", args.seed, 0)):
        if value is not None and value < low:
            print(f"error: {flag} {value} must be an integer >= {low}", file=sys.stderr)
            return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {str(out)!r} exists and is not a directory", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from models.export import ExportError
    from models.segmenter import export_segmenter, train_segmenter

    result = train_segmenter(args.preset, image_size=args.image_size, epochs=args.epochs, seed=args.seed,
                             verbose=2 if args.quiet else 1, log=print)
    try:
        path = export_segmenter(result, out, args.name)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"pixel accuracy {result.pixel_accuracy:.4f}, mean IoU {result.mean_iou:.4f} on "
          f"{result.training_data['test']} held-out scenes (majority-class baseline {result.majority_baseline:.4f})")
    print("per-class IoU: " + ", ".join(f"{result.classes.names[k]} {result.per_class_iou.get(i, float('nan')):.3f}"
                                        for k, i in enumerate(result.classes.indices)))
    print(f"exported {path.resolve()}")
    return 0


def _validate(args: argparse.Namespace) -> None:
    from models.presets import get_preset, resolve_names

    get_preset(args.preset)
    resolve_names(args.only)
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed} must be a non-negative integer")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs {args.epochs} must be a positive integer")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a directory")
    folder_only = [f"--{k.replace('_', '-')}" for k in ("labels_dir", "architectures", "image_size", "retrained")
                   if getattr(args, k)]
    if args.data_dir is None and folder_only:
        raise ValueError(f"{folder_only[0]} needs --data-dir (use --only to choose models of a preset)")
    if args.strategy == "multi-worker":
        from models.distribute import parse_tf_config

        parse_tf_config()
    if args.data_dir is not None and args.strategy != "default":
        raise ValueError(f"--strategy {args.strategy} applies to the presets' synthetic data; with --data-dir "
                         "only --strategy default is supported")
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs} must be a positive integer")
    if args.jobs > 1 and args.strategy != "default":
        raise ValueError(f"--jobs {args.jobs} trains models side by side in separate processes; with --strategy "
                         f"{args.strategy} use --jobs 1")
    if args.jobs > 1 and args.data_dir is not None:
        raise ValueError(f"--jobs {args.jobs} applies to the presets' synthetic data; with --data-dir use --jobs 1")
    if args.data_dir is not None and args.only:
        raise ValueError("--only applies to the presets' synthetic data; with --data-dir use --architectures "
                         f"(accepted: {', '.join(CLASSIFIER_NAMES)}) and --retrained")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.command == "presets":
        for name, p in PRESETS.items():
            print(f"{name:<14} {p.description}")
        for old, new in PRESET_ALIASES.items():
            print(f"{old:<14} former name of {new!r}")
        return 0
    if args.command == "describe":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from models.cli_describe import run_describe

        return run_describe(args)
    if args.command == "export":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from models.cli_export import run_export

        return run_export(args)
    if args.command == "train-segmenter":
        return _train_segmenter(args)
    try:
        _validate(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from models.distribute import is_chief, make_strategy
    from models.quiet import import_tensorflow_quietly, native_stderr_silenced

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if args.verbose else "2")
    with native_stderr_silenced(not args.verbose):
        strategy = make_strategy(args.strategy)  # before any TensorFlow op (collectives need it)
    import_tensorflow_quietly(args.verbose)
    if args.data_dir is not None:
        return _train_folder(args)
    from models.parallel_train import ParallelTrainingError
    from models.presets import format_table, train_preset

    t0 = time.perf_counter()
    try:
        records = train_preset(
            args.preset,
            None if args.no_export else args.out,
            seed=args.seed,
            only=args.only,
            epochs=args.epochs,
            verbose=0 if args.quiet else (2 if args.verbose else 1),
            checkpoint_dir=args.checkpoint_dir,
            log=print,
            strategy=strategy,
            lr_scaling=args.lr_scaling,
            jobs=args.jobs,
        )
    except ParallelTrainingError as err:
        print()
        print(format_table(err.records))
        print(f"error: {err}", file=sys.stderr)
        return 1
    print()
    print(format_table(records))
    exported = not args.no_export and is_chief(strategy)
    print(f"\n{len(records)} models, preset {args.preset!r}, {time.perf_counter() - t0:.0f} s in all"
          + (f"; model root {Path(args.out).resolve()}" if exported else "")
          + ("" if is_chief(strategy) else "; not the chief: nothing exported"))
    return 0


def _train_folder(args: argparse.Namespace) -> int:
    """``train --data-dir``: exit status 2 with a message naming the folder or file on bad data."""
    from models.folder_train import train_folder
    from models.presets import format_table

    t0 = time.perf_counter()
    try:
        records = train_folder(
            args.data_dir, None if args.no_export else args.out, preset=args.preset,
            architectures=args.architectures, labels_dir=args.labels_dir, image_size=args.image_size,
            seed=args.seed, epochs=args.epochs, retrained=args.retrained, verbose=0 if args.quiet else 1,
            checkpoint_dir=args.checkpoint_dir, log=print,
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print()
    print(format_table(records))
    print(f"\n{len(records)} models, image folder {Path(args.data_dir).resolve()}, recipe {args.preset!r}, "
          f"{time.perf_counter() - t0:.0f} s in all" + ("" if args.no_export else f"; model root {Path(args.out).resolve()}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
