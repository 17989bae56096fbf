"""Label maps from a served segmenter, its scores, and R_pc side by side with the ground truth.

Seeds 000 and 001 labelled the objects inside the explanations with a segmentation network. With
``--segmenter NAME`` the ``objects`` experiment also takes label maps from the served segmenter
``NAME`` (``kind: "segmenter"``, signature ``segment``; see :mod:`models.segmenter`):

* :func:`segmenter_maps` asks the service for the label maps of the evaluation images (through the
  same gRPC client as every other call, so ``--model-root`` and ``--server`` behave alike, and
  cached per image like the explanations). Images of another size than the segmenter's input are
  resized bilinearly to it (half-pixel centres), and the label maps resized back to the image size
  by nearest neighbour.
* :func:`scores_tables`: the segmenter's pixel accuracy and mean IoU on the evaluation images
  against their ground truth (:func:`models.segmenter.segmentation_scores`; unlabelled pixels, 0,
  are not counted), with the per-object IoU.
* :func:`side_by_side_table`: per model, class and object, R_pc and the mean pixels inside the
  explanations (the histograms) computed from the ground truth and from the segmenter's maps, and
  their differences (segmenter − ground truth): how much a segmenter's errors move the papers'
  measures. Rows are the objects selected (>100 pixels at 224², seed 000) for that model and
  class by either source.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from evaluation.cache import cache_key
from evaluation.measures import resize_maps
from evaluation.tables import Table
from models.segmenter import segmentation_scores

__all__ = ["SegmenterError", "check_segmenter", "segmenter_maps", "resize_nearest", "scores_tables",
           "side_by_side_table"]

SIGNATURE = "segment"


class SegmenterError(ValueError):
    """The named segmenter is not served, or is not a segmenter (the message lists the served ones)."""


def check_segmenter(models: Mapping[str, Any], name: str) -> Any:
    """The ``ModelInfo`` of segmenter ``name`` among the served ``models``.

    Raises:
        SegmenterError: ``name`` is not served or has no ``segment`` signature.
    """
    served = sorted(n for n, m in models.items() if m.kind == "segmenter")
    info = models.get(name)
    if info is None or info.kind != "segmenter" or SIGNATURE not in (info.signatures or [SIGNATURE]):
        what = "is not served" if info is None else f"is a {info.kind}, not a segmenter with a '{SIGNATURE}' signature"
        raise SegmenterError(f"--segmenter {name!r} {what}; served segmenters: {served or 'none'}")
    return info


def resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``(N, h, w)`` label maps: output pixel ``i`` takes input pixel
    ``floor((i + 0.5) · in / out)`` (half-pixel centres)."""
    maps = np.asarray(maps)
    h, w = maps.shape[1:3]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return maps[:, rows[:, None], cols[None, :]]


def _resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    n, h, w, c = images.shape
    planes = np.moveaxis(images, -1, 1).reshape(n * c, h, w).astype(np.float64)
    out = resize_maps(planes, (int(size[0]), int(size[1]))).reshape(n, c, *size)
    return np.clip(np.rint(np.moveaxis(out, 1, -1)), 0, 255).astype(np.uint8)


def segmenter_maps(ctx: Any, name: str, indices: Sequence[int], data: Any = None) -> np.ndarray:
    """ADE20K label maps ``(N, H, W)`` uint8 of the images ``indices`` from segmenter ``name``.

    Args:
        ctx: The evaluation :class:`~evaluation.pipeline.Context` (client, cache, models).
        name: A served segmenter.
        indices: Positions of the images in ``data``.
        data: The image set (default ``ctx.data``).

    Raises:
        SegmenterError: ``name`` is not a served segmenter.
    """
    data = ctx.data if data is None else data
    info = check_segmenter(ctx.models, name)
    size = tuple(int(s) for s in data.images.shape[1:3])
    seg_size = tuple(int(s) for s in info.input_size[:2])
    ids = ctx.image_ids(indices, data)
    keys = [cache_key(kind="segment", model=name, version=ctx.version(name), size=list(size), image=i) for i in ids]
    indices = list(indices)

    def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
        images = data.images[[indices[b] for b in batch]]
        if size != seg_size:
            images = _resize_images(images, seg_size)
        ctx.service_calls += 1
        out = ctx.client.predict_signature(name, SIGNATURE, {"images": images}, ("label_map",))["label_map"]
        if size != seg_size:
            out = resize_nearest(out, size)
        return [{"label_map": np.asarray(m, np.uint8)} for m in out]

    with ctx.bar(len(keys), f"segment {name}") as bar:
        items = ctx.cache.get_or_compute(keys, compute, batch_size=ctx.config.batch_size, progress=bar)
    return np.stack([it["label_map"] for it in items])


def scores_tables(
    name: str, version: int, predicted: np.ndarray, truth: np.ndarray, object_names: Mapping[int, str],
    card: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], Table, Table]:
    """The segmenter's scores on the evaluation images: ``(scores, summary table, per-object IoU table)``."""
    card = card or {}
    classes = [int(e["index"]) for e in card.get("classes") or []] or None
    s = segmentation_scores(predicted, truth, classes)
    summary = Table("objects_segmenter_scores", f"Segmenter {name!r} on the evaluation images against their "
                    "ground truth (unlabelled pixels not counted)",
                    ["segmenter", "version", "images", "pixel accuracy", "mean IoU",
                     "pixel accuracy (card, held-out scenes)", "mean IoU (card, held-out scenes)"], digits=4)
    summary.add(name, int(version), int(len(truth)), s["pixel_accuracy"], s["mean_iou"],
                card.get("pixel_accuracy"), card.get("mean_iou"))
    per = Table("objects_segmenter_iou", f"IoU per object of segmenter {name!r} on the evaluation images",
                ["object", "ADE20K index", "IoU", "pixels (ground truth)", "pixels (segmenter)"], digits=4)
    t_counts = np.bincount(np.asarray(truth, np.int64).ravel(), minlength=256)
    p_counts = np.bincount(np.asarray(predicted, np.int64).ravel(), minlength=256)
    for idx, iou in sorted(s["per_class_iou"].items(), key=lambda kv: -t_counts[kv[0]]):
        per.add(object_names.get(idx, str(idx)), idx, iou, int(t_counts[idx]), int(p_counts[idx]))
    return s, summary, per


def side_by_side_table(
    name: str,
    title: str,
    truth: Mapping[str, Any],
    segmented: Mapping[str, Any],
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    kind: Callable[[int, int], str],
) -> Table:
    """R_pc and mean pixels from the ground truth beside those from the segmenter.

    Args:
        truth, segmented: Model -> object statistics (``ratios``, ``mean_pixels``, ``selected``,
            each ``(C, P)``) from the ground-truth and from the segmenter's label maps.
        kind: ``kind(class, object)`` -> "planted", "shared", ...

    Returns:
        Rows per model, per class (in order), the objects selected by either source, by descending
        ground-truth R_pc; differences are segmenter − ground truth (NaN where either is NaN).
    """
    t = Table(name, title, ["model", "class", "object", "kind", "selected (ground truth)", "selected (segmenter)",
                            "R_pc (ground truth)", "R_pc (segmenter)", "R_pc difference",
                            "mean pixels (ground truth)", "mean pixels (segmenter)", "mean pixels difference"],
              digits=3)
    for m in truth:
        g, s = truth[m], segmented[m]
        for c, cname in enumerate(class_names):
            objs = np.flatnonzero(np.asarray(g.selected[c], bool) | np.asarray(s.selected[c], bool))
            order = np.argsort(-np.nan_to_num(np.asarray(g.ratios[c, objs], float), nan=-1.0), kind="stable")
            for p in (int(objs[j]) for j in order):
                rg, rs = float(g.ratios[c, p]), float(s.ratios[c, p])
                mg, ms = float(g.mean_pixels[c, p]), float(s.mean_pixels[c, p])
                t.add(m, cname, object_names.get(p, str(p)), kind(c, p), "yes" if g.selected[c, p] else "no",
                      "yes" if s.selected[c, p] else "no", rg, rs, rs - rg, mg, ms, ms - mg)
    return t


def add_comparison(
    ctx: Any,
    section: Any,
    name: str,
    heatmaps: Mapping[str, np.ndarray],
    truth_stats: Mapping[float, Mapping[str, Any]],
    seg_maps: np.ndarray,
    truth_maps: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    kind: Callable[[int, int], str],
) -> dict[float, dict[str, Any]]:
    """Add the segmenter's scores and the side-by-side R_pc tables (one per θ) to ``section``.

    Args:
        heatmaps: Model -> normalised maps ``(N, H, W)`` at the label-map size.
        truth_stats: θ -> model -> object statistics from the ground truth.
        seg_maps, truth_maps: ``(N, H, W)`` label maps from the segmenter and the ground truth.

    Returns:
        θ -> model -> object statistics from the segmenter's maps.
    """
    from evaluation import plots
    from evaluation.experiments.objects import object_statistics

    info = ctx.models[name]
    scores, summary, per = scores_tables(name, info.version, seg_maps, truth_maps, object_names, info.card)
    section.tables += [summary, per]
    seg_stats: dict[float, dict[str, Any]] = {}
    for th, by_model in truth_stats.items():
        seg_stats[th] = {m: object_statistics(heatmaps[m], seg_maps, labels, len(class_names), th) for m in by_model}
        tag = int(th * 100)
        table = side_by_side_table(
            f"objects_r_pc_segmenter_theta{tag}",
            f"R_pc and mean pixels per object from the ground truth and from segmenter {name!r} at θ = {th}, "
            "per model and class (difference = segmenter − ground truth)",
            by_model, seg_stats[th], class_names, object_names, kind)
        diffs = np.abs(np.asarray([v for v in table.column("R_pc difference") if v is not None], float))
        diffs = diffs[np.isfinite(diffs)]
        table.note = (f"objects selected for the model and class by either source; segmenter pixel accuracy "
                      f"{scores['pixel_accuracy']:.4f}, mean IoU {scores['mean_iou']:.4f} on these images"
                      + (f"; |R_pc difference| mean {diffs.mean():.3f}, max {diffs.max():.3f}" if diffs.size else ""))
        section.tables.append(table)
        if table.rows:
            cells: dict[str, dict[str, float]] = {}
            for r in table.rows:
                cells.setdefault(f"{r[2]} ({r[1]})", {})[r[0]] = np.nan if r[8] is None else float(r[8])
            groups = list(cells)
            series = {m: [cells[g].get(m, np.nan) for g in groups] for m in by_model}
            path, rel = ctx.figure(f"objects_r_pc_segmenter_difference_theta{tag}")
            plots.grouped_bars(path, groups, series, f"R_pc from segmenter {name!r} − R_pc from the ground truth, "
                               f"θ = {th}", "R_pc difference")
            section.figures.append((rel, f"How much the segmenter's errors move R_pc per object, class and model, "
                                         f"θ = {th} (0 = no change)"))
    ctx.results["segmenter"] = {"name": name, "pixel_accuracy": scores["pixel_accuracy"], "mean_iou": scores["mean_iou"]}
    return seg_stats
