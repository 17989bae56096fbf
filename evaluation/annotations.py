"""Annotations of the dominating objects of images: a small CSV, read and written here.

Seed 000 §4.3.3 (Figs. 9, 11, 12) compares the object labels selected from a segmentation of each
visual explanation with a *human* annotation of "two dominating objects in a single image at most":
the main object, plus a second one "if there are two main objects ... with similar areas".

File format (UTF-8 CSV, one image per line, an optional header line ``image_id,label,label2``)::

    image_id,label[,label2]
    city_a/000017,skyscraper
    city_b/000003,signboard,fence

``image_id`` is the id of the evaluation image (``ImageSet.ids``); the labels are ADE20K object
names (``models.datasets.ade20k.NAME_TO_INDEX``). Blank lines and lines starting with ``#`` are
ignored.

Synthetic data has no human annotator. :func:`write_annotations_from_ground_truth` stands in for one
that knows what each city plants; the rule, stated exactly (:func:`annotations_from_label_maps`):

* Candidates are the *planted* (discriminative) objects of the image's class that are visible in
  its label map. A human annotator of seed 000 looked at the explanation and named what dominates
  it; the synthetic annotator names what *should* dominate a good explanation: the objects that
  distinguish the class. (Every synthetic image holds at least one planted object.)
* If the class has no known planted object, or none is visible, the candidates are all objects of
  the image except the ubiquitous background :data:`UBIQUITOUS` = sky, building, road (present in
  every synthetic image of every class, so naming them says nothing about the image).
* The candidate with the most pixels is annotated; the runner-up is added when its pixel count is at
  least ``threshold`` × the top one's ("two main objects with similar areas"; default 0.5).
  Ties are broken by the lower ADE20K index.

The agreement curves of the ``objects`` experiment then ask whether the objects that dominate each
explanation (``measures.top_labels``) are the planted ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from evaluation.cache import atomic_write_text

__all__ = [
    "UBIQUITOUS",
    "read_annotations",
    "write_annotations",
    "annotations_from_label_maps",
    "write_annotations_from_ground_truth",
    "annotation_indices",
]

#: Objects every synthetic city image holds (shared with probability 1); never annotated unless
#: nothing else is visible.
UBIQUITOUS: tuple[str, ...] = ("sky", "building", "road")

_HEADER = ("image_id", "label", "label2")


def read_annotations(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Read an annotations CSV into ``{image_id: (label,) or (label, label2)}``.

    Raises:
        ValueError: a line without a label, with more than two labels, or a repeated image id
            (the message names the line).
    """
    text = Path(path).read_text(encoding="utf-8")
    out: dict[str, tuple[str, ...]] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells or cells[0].startswith("#"):
            continue
        if lineno == 1 and cells[0].lower() == "image_id":
            continue
        if len(cells) < 2:
            raise ValueError(f"{path}:{lineno}: expected image_id,label[,label2]; got {row!r}")
        if len(cells) > 3:
            raise ValueError(f"{path}:{lineno}: at most two labels per image (seed 000); got {cells[1:]!r}")
        image_id, labels = cells[0], tuple(c for c in cells[1:] if c)
        if image_id in out:
            raise ValueError(f"{path}:{lineno}: image {image_id!r} is annotated twice")
        out[image_id] = labels
    return out


def write_annotations(path: str | Path, annotations: Mapping[str, Sequence[str]]) -> Path:
    """Write ``{image_id: labels}`` as an annotations CSV (with header), atomically.

    Raises:
        ValueError: an image with no label or more than two labels, or a label holding a comma.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_HEADER)
    for image_id, labels in annotations.items():
        labels = [str(v) for v in labels]
        if not 1 <= len(labels) <= 2:
            raise ValueError(f"image {image_id!r}: one or two labels expected; got {labels!r}")
        w.writerow([image_id, *labels])
    path = Path(path)
    atomic_write_text(path, buf.getvalue())
    return path


def annotations_from_label_maps(
    label_maps: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    discriminative: Mapping[str, Sequence[str]] | None = None,
    threshold: float = 0.5,
    ubiquitous: Sequence[str] = UBIQUITOUS,
) -> list[tuple[str, ...]]:
    """The synthetic annotator's one or two object names per image (rule in the module docstring).

    Args:
        label_maps: ``(N, H, W)`` integer object indices (0 = unlabelled, never annotated).
        labels: ``(N,)`` class of each image.
        class_names: Class names (``labels`` index them).
        object_names: Object index -> name.
        discriminative: Class name -> planted object names (empty / None: no planted objects known).
        threshold: The runner-up is added when ``pixels(2nd) >= threshold · pixels(1st)``; in (0, 1].
        ubiquitous: Names left out of the fallback candidates.

    Returns:
        One tuple of names per image; ``()`` when the image holds no candidate at all.
    """
    lm = np.asarray(label_maps)
    if lm.ndim != 3 or not np.issubdtype(lm.dtype, np.integer):
        raise ValueError(f"label_maps must be integer (N, H, W); got {lm.dtype} {lm.shape}")
    lab = np.asarray(labels)
    if lab.shape != (lm.shape[0],):
        raise ValueError(f"labels must have shape ({lm.shape[0]},); got {lab.shape}")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be in (0, 1]; got {threshold!r}")
    discriminative = discriminative or {}
    name_to_idx = {v: k for k, v in object_names.items()}
    ubiq = {name_to_idx[n] for n in ubiquitous if n in name_to_idx}
    out: list[tuple[str, ...]] = []
    for i in range(lm.shape[0]):
        counts = np.bincount(lm[i].ravel().astype(np.int64))
        present = [int(p) for p in np.flatnonzero(counts) if p != 0]
        planted = {name_to_idx[n] for n in discriminative.get(class_names[int(lab[i])], ()) if n in name_to_idx}
        cand = [p for p in present if p in planted]
        if not cand:
            cand = [p for p in present if p not in ubiq]
        if not cand:
            out.append(())
            continue
        cand.sort(key=lambda p: (-int(counts[p]), p))
        chosen = [cand[0]]
        if len(cand) > 1 and counts[cand[1]] >= threshold * counts[cand[0]]:
            chosen.append(cand[1])
        out.append(tuple(object_names.get(p, str(p)) for p in chosen))
    return out


def write_annotations_from_ground_truth(imageset, path: str | Path, threshold: float = 0.5) -> Path:
    """Write the synthetic annotator's labels of every image of ``imageset`` (module docstring).

    Args:
        imageset: An ``ImageSet`` with ``label_maps`` (and, for synthetic data, ``discriminative``).
        path: Output CSV.
        threshold: Runner-up rule of :func:`annotations_from_label_maps`.

    Returns:
        ``path``. Images without any candidate object are left out of the file.
    """
    if imageset.label_maps is None:
        raise ValueError("the image set has no label maps; annotations cannot come from ground truth")
    from models.datasets.ade20k import INDEX_TO_NAME

    names = dict(imageset.object_names) or dict(INDEX_TO_NAME)
    ids = imageset.ids if imageset.ids is not None else [str(i) for i in range(len(imageset))]
    chosen = annotations_from_label_maps(imageset.label_maps, imageset.labels, imageset.class_names, names,
                                         imageset.discriminative, threshold)
    return write_annotations(path, {i: c for i, c in zip(ids, chosen) if c})


def annotation_indices(
    annotations: Mapping[str, Sequence[str]],
    image_ids: Sequence[str],
    name_to_index: Mapping[str, int],
) -> tuple[np.ndarray, list[tuple[int, ...]], list[str]]:
    """Object indices of the annotations of ``image_ids`` (for ``measures.agreement_curve``).

    Returns:
        ``(positions, annotated, unknown)``: positions into ``image_ids`` of the annotated images,
        their annotations as index tuples, and the label names not in ``name_to_index`` (dropped;
        an image left with no known label is dropped too).
    """
    positions: list[int] = []
    annotated: list[tuple[int, ...]] = []
    unknown: list[str] = []
    for pos, image_id in enumerate(image_ids):
        labels = annotations.get(image_id)
        if not labels:
            continue
        idx = []
        for name in labels:
            if name in name_to_index:
                idx.append(int(name_to_index[name]))
            else:
                unknown.append(name)
        if idx:
            positions.append(pos)
            annotated.append(tuple(idx))
    return np.asarray(positions, dtype=np.int64), annotated, sorted(set(unknown))
