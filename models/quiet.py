"""A quiet start: TensorFlow's native start-up lines stay off the terminal unless asked for.

TensorFlow prints from C++ before its own log level applies (absl's "All log messages before
absl::InitializeLog()" banner, oneDNN and CUDA-stub notices, and ``failed call to cuInit`` on every
machine without a GPU), so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. The command-line entry points
import TensorFlow once with the process's native stderr pointed at ``/dev/null``; ``--verbose``
keeps it. Python warnings and errors raised later are untouched.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["native_stderr_silenced", "import_tensorflow_quietly"]


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Point file descriptor 2 at ``/dev/null`` for the duration (a no-op when not ``enabled``)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly(verbose: bool = False) -> None:
    """Import TensorFlow and initialise its devices, silently unless ``verbose``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    with native_stderr_silenced(not verbose):
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.constant(0.0) + 1.0  # the first op loads the CPU kernels (oneDNN notice)
