"""What every servicer shares: the model registry, the batcher, the limits and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from serving.batching import Batcher
from serving.signatures import CallContext, Limits
from serving.metrics import ServingMetrics
from serving.registry import ModelRegistry

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """Shared state of one server (one instance per :class:`serving.server.RunningServer`)."""

    registry: ModelRegistry
    batcher: Batcher
    metrics: ServingMetrics
    limits: Limits = field(default_factory=Limits)
    deadline_margin: float = 0.05

    def call_context(self, context: Any) -> CallContext:
        """A :class:`CallContext` bound to a gRPC servicer context (deadline, cancellation)."""
        return CallContext.from_grpc(context, self.batcher, self.limits, self.deadline_margin)
