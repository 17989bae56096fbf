"""Built-in synthetic scenes for the viewer: a few synthetic cities at a model's input size.

Generated on request with :func:`models.datasets.make_cities` (numpy and Pillow only) and cached
per size; encoded as PNG.
"""

from __future__ import annotations

import base64
import functools
import threading

__all__ = ["scenes", "SCENES_PER_CLASS"]

SCENES_PER_CLASS = 1
_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _scenes(size: int) -> tuple[dict[str, str], ...]:
    from models.datasets import make_cities

    from serving.convert import encode_png

    data = make_cities(SCENES_PER_CLASS, image_size=size, seed=7)
    pngs = encode_png(data.images)
    return tuple(
        {"id": str(data.ids[i]) if data.ids is not None else f"scene_{i}",
         "label": data.class_names[int(data.labels[i])],
         "png_b64": base64.b64encode(pngs[i]).decode()}
        for i in range(len(pngs)))


def scenes(size: int) -> list[dict[str, str]]:
    """``[{"id", "label", "png_b64"}]``: one synthetic city per class at ``size`` × ``size`` pixels."""
    if not 8 <= size <= 1024:
        from serving.errors import InvalidArgument

        raise InvalidArgument(f"scene size {size} is out of range; accepted: 8..1024", "size")
    with _lock:
        return [dict(s) for s in _scenes(int(size))]
