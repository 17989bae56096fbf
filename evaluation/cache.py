"""A per-item result cache under the output folder, so a killed evaluation resumes.

Every per-image (or per-batch) result is stored as one ``.npz`` file whose name is a hash of its
key: model name, model version, method, its parameters and the image id. A write goes to a
temporary file in the same folder and is renamed into place (``os.replace`` is atomic on POSIX),
so a crash never leaves a truncated file that a rerun would trust; a file that fails to load is
treated as missing and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = ["ResultCache", "atomic_write_bytes", "atomic_write_text", "cache_key"]


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float):
        return float(repr(obj))
    return obj


def cache_key(**parts: Any) -> str:
    """A stable SHA-256 key of JSON-serialisable ``parts`` (order of keys does not matter)."""
    blob = json.dumps(_canonical(parts), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


class ResultCache:
    """Arrays cached on disk by key.

    Args:
        root: Folder for the cache (created if missing).

    Attributes:
        hits: Number of lookups answered from disk.
        misses: Number of lookups that had to compute.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """The cached arrays of ``key``, or ``None`` (also for an unreadable file)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):  # truncated or corrupt: recompute
            return None

    def put(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Store ``arrays`` under ``key`` atomically."""
        import io

        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        atomic_write_bytes(self._path(key), buf.getvalue())

    def cached(self, keys: Sequence[str], progress: Any = None) -> tuple[list[dict[str, np.ndarray] | None], list[int]]:
        """``(results with None where missing, indices of the missing keys)``; counts the hits and
        advances ``progress`` by them."""
        results: list[dict[str, np.ndarray] | None] = [self.get(k) for k in keys]
        cached = sum(r is not None for r in results)
        self.hits += cached
        if progress is not None and cached:
            progress.update(cached)
        return results, [i for i, r in enumerate(results) if r is None]

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: Callable[[list[int]], Sequence[Mapping[str, np.ndarray]]],
        batch_size: int = 16,
        progress: Any = None,
    ) -> list[dict[str, np.ndarray]]:
        """Results for every key, computing the missing ones in batches.

        Args:
            keys: One key per item.
            compute: ``compute(indices) -> results`` for a batch of missing item indices,
                one mapping of arrays per index, in order.
            batch_size: Items per ``compute`` call.
            progress: Optional ``tqdm``-like object with ``update(n)``.

        Returns:
            One dict of arrays per key, in order.
        """
        results, missing = self.cached(keys, progress)
        for start in range(0, len(missing), batch_size):
            idx = missing[start : start + batch_size]
            out = compute(idx)
            if len(out) != len(idx):
                raise RuntimeError(f"compute returned {len(out)} results for {len(idx)} items")
            for i, arrays in zip(idx, out):
                arrays = {k: np.asarray(v) for k, v in arrays.items()}
                self.put(keys[i], arrays)
                results[i] = arrays
            self.misses += len(idx)
            if progress is not None:
                progress.update(len(idx))
        return results  # type: ignore[return-value]
