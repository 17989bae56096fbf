"""Export small UNTRAINED models into a TF Serving model root, for smoke tests (seconds, no data).

    python deploy/make_tiny_models.py OUT_DIR [--size 64] [--names simpler]

Writes ``OUT_DIR/<name>/1/`` with :func:`models.export.export_classifier` (every signature the
server expects: serving_default, predict_float, features, one per single-pass method). The weights
are random: enough to check that the container loads, predicts and explains; use
``python -m models train --preset tiny --out OUT_DIR`` for trained models.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=64, help="input height = width (simpler needs >= 60)")
    parser.add_argument("--names", nargs="+", default=["simpler"], help="architectures to export")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--classes", type=int, default=2)
    args = parser.parse_args(argv)

    import keras

    from models.architectures import build_classifier
    from models.export import export_classifier

    keras.utils.set_random_seed(0)
    class_names = [f"class_{i}" for i in range(args.classes)]
    for name in args.names:
        model = build_classifier(name, input_size=args.size, num_classes=args.classes, width=args.width)
        path = export_classifier(model, args.out / name, class_names=class_names)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
