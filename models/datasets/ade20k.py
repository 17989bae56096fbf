"""ADE20K object names and indices used by the built-in data.

Indices are the 1-based class indices of the MIT SceneParsing benchmark (ADE20K, 150 classes,
``objectInfo150``); 0 means "unlabelled". Only the objects the project draws or expects are listed,
so that a real segmentation model trained on ADE20K can replace the synthetic ground truth later
without renumbering anything.
"""

from __future__ import annotations

UNLABELLED = 0

#: ADE20K SceneParsing-150 name -> 1-based index (objectInfo150 order).
NAME_TO_INDEX: dict[str, int] = {
    "building": 2,
    "sky": 3,
    "tree": 5,
    "road": 7,
    "grass": 10,
    "sidewalk": 12,
    "person": 13,
    "earth": 14,
    "mountain": 17,
    "plant": 18,
    "car": 21,
    "fence": 33,
    "column": 43,
    "signboard": 44,
    "skyscraper": 49,
    "bridge": 62,
    "tower": 85,
    "awning": 87,
    "streetlight": 88,
    "pole": 94,
    "canopy": 107,
    "tent": 115,
    "sculpture": 133,
    "clock": 149,
    "flag": 150,
}

#: 1-based index -> ADE20K name; the inverse of :data:`NAME_TO_INDEX`.
INDEX_TO_NAME: dict[int, str] = {index: name for name, index in NAME_TO_INDEX.items()}


def index_of(name: str) -> int:
    """Return the ADE20K index of an object name.

    Args:
        name: An ADE20K object name, e.g. ``"skyscraper"``.

    Returns:
        The 1-based SceneParsing-150 index.

    Raises:
        ValueError: If the name is not one of :data:`NAME_TO_INDEX`; the message lists the
            accepted names.
    """
    try:
        return NAME_TO_INDEX[name]
    except KeyError:
        raise ValueError(
            f"unknown ADE20K object name {name!r}; known names: {', '.join(sorted(NAME_TO_INDEX))}"
        ) from None


def name_of(index: int) -> str:
    """Return the name of an ADE20K index, ``"unlabelled"`` for 0 and ``"object_<i>"`` otherwise.

    Args:
        index: A SceneParsing-150 index (0-150).

    Returns:
        The object name.
    """
    index = int(index)
    if index == UNLABELLED:
        return "unlabelled"
    return INDEX_TO_NAME.get(index, f"object_{index}")
