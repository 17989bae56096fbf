"""``python -m serving --model-root MODEL_ROOT --port 8500``: run the explanation service.

``python -m serving --help`` lists every option; ``--config FILE`` (JSON or TOML) may set them.
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from serving.config import parse_args

    options = parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, options.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from serving.server import serve

    try:
        return serve(options)
    except (FileNotFoundError, OSError, ValueError) as exc:
        logging.getLogger("serving").error("cannot start: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
