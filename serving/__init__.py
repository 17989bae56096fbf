"""The gRPC explanation service (TF Serving's PredictionService/ModelService + explain.v1).

``python -m serving --model-root DIR`` runs it; :func:`serving.server.start_server` embeds it.
Importing this package is cheap (no TensorFlow); ``serving.start_server`` is loaded lazily.
"""

from __future__ import annotations

from typing import Any

__all__ = ["start_server"]


def __getattr__(name: str) -> Any:
    if name == "start_server":
        from serving.server import start_server

        return start_server
    raise AttributeError(f"module 'serving' has no attribute {name!r}")
