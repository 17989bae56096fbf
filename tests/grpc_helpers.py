"""A gRPC ``ExplanationService`` stub over a real server on loopback, for module-scoped fixtures."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np

from serving.protos.explain.v1 import explain_pb2_grpc as pb_grpc


@contextmanager
def explanation_stub(model_root: Path) -> Iterator[pb_grpc.ExplanationServiceStub]:
    """A server on ``model_root`` (port 0, no warm-up, small batches) and a stub on one channel."""
    from serving.server import start_server

    with start_server(model_root, port=0, file_system_poll_wait_seconds=0, warmup="none",
                      max_batch_size=8, batch_timeout_micros=1000) as running:
        with grpc.insecure_channel(running.address) as channel:
            yield pb_grpc.ExplanationServiceStub(channel)


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``(n, size, size, 3)`` uniform uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
