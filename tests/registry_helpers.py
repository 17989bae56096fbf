"""Methods registered for one test module only (the registry is process-wide)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from explain import registry


@contextmanager
def registered(methods: Sequence[registry.Method]) -> Iterator[dict[str, registry.Method]]:
    """Register ``methods`` after the real ones are loaded; remove them afterwards (no leak)."""
    registry.names()  # load the real methods first
    for m in methods:
        registry.register(m)
    try:
        yield {m.name: m for m in methods}
    finally:
        for m in methods:
            registry.METHODS.pop(m.name, None)
