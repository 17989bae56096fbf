"""Objects inside the visual explanations: histograms, R_pc and annotation agreement.

Seed 000 Fig. 7 (histograms of the objects in the visual explanations per class and threshold),
seed 001 Fig. 5 / eq. 1 (object ratio ``R_pc`` per object, class and architecture, retrained
copies included) and seed 000 Figs. 11–12 (agreement of the objects that dominate each explanation
with an annotation, strict and lenient, against the second-label threshold ``t``).

Procedure (SPEC §3 "Object ratios R_pc and histograms"):

* every classifier served (retrained copies included) explains the sampled test images with
  Grad-CAM, for the class it predicts (``class_index = -1``, as every other experiment, so the maps
  are shared through the cache); the normalised map at the input size is thresholded at
  θ ∈ {0.5, 0.6} (``explain.masks.threshold``: ``mask_norm ≥ θ``);
* with the per-pixel object label maps (ground truth of the synthetic cities, or real label maps)
  ``M_p,i`` = pixels of object ``p`` inside the explanation of image ``i``, ``N_p,i`` = pixels of
  ``p`` in the image; ``R_pc = Σ_{i∈c} M_p,i / Σ_{i∈c} N_p,i`` over the images of *true* class ``c``;
* the per-class histogram is the mean over the class's images of ``M_p,i``; an object is "selected"
  for a class when that mean exceeds 100 pixels at 224×224, scaled with the image area
  (``measures.selected_objects``); the R_pc table lists the objects selected by at least one model;
* index 0 ("unlabelled" in real label maps) is never an object.

Finding 2 is stated as an *enrichment* comparison (:func:`evaluation.findings.finding2_enrichment`):
per (model, class), the R_pc enrichment (R_pc divided by the share of the image the thresholded map
covers) of the class's causally most important cue (from the causal twins) must exceed that of
every shared background object present in every image (sky, road, building), with seeded 95%
bootstrap intervals over the images; each case says holds / does not hold / inconclusive, and the
finding is the majority of the evaluated cases. The older rule ("min over the planted objects of
R_pc > max over the shared objects"), which a perfect map marking one planted object fails, is kept
only as the ``objects_finding2`` table. Stated at θ = 0.5.

With ``config.segmenter`` (``--segmenter NAME``) the label maps of a served segmenter are used beside the
ground truth (side-by-side R_pc and histogram tables, its pixel accuracy and mean IoU; see
:mod:`evaluation.segmentation`), or alone when the images have no label maps.

Annotations come from ``config.annotations`` or, for synthetic data, are written from the ground
truth into ``REPORT_DIR/annotations.csv`` (see :mod:`evaluation.annotations` for the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import plots
from evaluation.annotations import annotation_indices, read_annotations, write_annotations_from_ground_truth
from evaluation.measures import (
    agreement_curve,
    mean_pixels_per_object,
    object_pixels_in_masks,
    object_ratios,
    resize_maps,
    selected_objects,
)
from evaluation.pipeline import Context, experiment
from evaluation.report import Finding, Section
from evaluation.tables import Table
from explain.masks import threshold, visual_explanation

__all__ = [
    "THETAS",
    "SHARED_OBJECTS",
    "AGREEMENT_THRESHOLDS",
    "ObjectStats",
    "object_statistics",
    "object_kinds",
    "r_pc_table",
    "mean_pixels_table",
    "finding2_cases",
    "agreement_table",
    "run",
]

#: Thresholds of the visual explanations (seeds 000, 001).
THETAS: tuple[float, ...] = (0.5, 0.6)
#: Objects shared by every synthetic city (finding 2 compares the planted objects against these).
SHARED_OBJECTS: tuple[str, ...] = ("sky", "building", "road", "tree", "car")
#: Second-label thresholds t of the agreement curves (seed 000 Figs. 11, 12).
AGREEMENT_THRESHOLDS = np.round(np.linspace(0.5, 1.0, 11), 2)
#: Label maps are uint8 ADE20K indices.
NUM_OBJECTS = 256
#: Examples per class in the visual-explanation figure.
EXAMPLES_PER_CLASS = 2


@dataclass
class ObjectStats:
    """Per-image and per-class object statistics of one model at one θ.

    Attributes:
        inside: ``(N, P)`` ``M_p,i`` (object 0 zeroed).
        total: ``(N, P)`` ``N_p,i`` (object 0 zeroed).
        mean_pixels: ``(C, P)`` mean of ``M_p,i`` over the images of each class.
        ratios: ``(C, P)`` ``R_pc`` (NaN where ``p`` never occurs in class ``c``).
        selected: ``(C, P)`` the >100-pixel (at 224²) selection.
    """

    inside: np.ndarray
    total: np.ndarray
    mean_pixels: np.ndarray
    ratios: np.ndarray
    selected: np.ndarray


def object_statistics(
    heatmaps: np.ndarray,
    label_maps: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    theta: float,
    num_objects: int = NUM_OBJECTS,
) -> ObjectStats:
    """Threshold the maps at ``theta`` and count the objects inside (seed 001 eq. 1).

    Args:
        heatmaps: ``(N, H, W)`` normalised maps at the label-map size.
        label_maps: ``(N, H, W)`` integer object indices (0 = unlabelled, ignored).
        labels: ``(N,)`` true class of each image.
        num_classes: Number of classes.
        theta: Threshold θ of the visual explanation.
        num_objects: Object indices are ``< num_objects``.
    """
    masks = threshold(heatmaps, theta)
    inside, total = object_pixels_in_masks(masks, np.asarray(label_maps), num_objects=num_objects)
    inside = inside.copy()
    total = total.copy()
    inside[:, 0] = 0
    total[:, 0] = 0
    h, w = masks.shape[1:]
    mean = mean_pixels_per_object(inside, labels, num_classes)
    return ObjectStats(
        inside=inside,
        total=total,
        mean_pixels=mean,
        ratios=object_ratios(inside, total, labels, num_classes),
        selected=selected_objects(mean, int(h * w)),
    )


def object_kinds(
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    discriminative: Mapping[str, Sequence[str]],
    shared: Sequence[str] = SHARED_OBJECTS,
) -> tuple[dict[int, set[int]], set[int]]:
    """``(planted object indices per class index, shared object indices)`` from the names."""
    to_idx = {v: k for k, v in object_names.items()}
    planted = {c: {to_idx[n] for n in discriminative.get(name, ()) if n in to_idx} for c, name in enumerate(class_names)}
    return planted, {to_idx[n] for n in shared if n in to_idx}


def _kind(c: int, p: int, planted: Mapping[int, set[int]], shared: set[int]) -> str:
    if p in planted.get(c, set()):
        return "planted"
    if p in shared:
        return "shared"
    if any(p in s for s in planted.values()):
        return "planted (other class)"
    return "other"


def _rows(
    values: Mapping[str, np.ndarray], include: np.ndarray, class_names: Sequence[str]
) -> list[tuple[int, int]]:
    """(class, object) pairs where ``include`` is set, per class ordered by the largest value."""
    pairs = []
    for c in range(len(class_names)):
        objs = np.flatnonzero(include[c])
        best = np.nanmax(np.stack([np.nan_to_num(values[m][c, objs], nan=-1.0) for m in values]), axis=0) if len(values) else np.zeros(objs.size)
        order = np.argsort(-best, kind="stable")
        pairs += [(c, int(objs[j])) for j in order]
    return pairs


def r_pc_table(
    name: str,
    title: str,
    ratios: Mapping[str, np.ndarray],
    selected: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    planted: Mapping[int, set[int]] | None = None,
    shared: set[int] | None = None,
) -> Table:
    """R_pc table: rows (object, class) selected by at least one model, one column per model.

    Args:
        ratios: Model -> ``(C, P)`` ``R_pc``.
        selected: Model -> ``(C, P)`` bool selection.
    """
    models = list(ratios)
    t = Table(name, title, ["object", "class", "kind", "selected by", *models], digits=3)
    if not models:
        return t
    sel = np.stack([np.asarray(selected[m], bool) for m in models])
    for c, p in _rows(ratios, sel.any(axis=0), class_names):
        t.add(object_names.get(p, str(p)), class_names[c], _kind(c, p, planted or {}, shared or set()),
              int(sel[:, c, p].sum()), *[float(ratios[m][c, p]) for m in models])
    return t


def mean_pixels_table(
    name: str,
    title: str,
    mean_pixels: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    image_area: int,
) -> Table:
    """Histogram data: mean pixels of each object inside the explanations, per class, per model.

    Rows are the objects with a non-zero mean for some model; the note gives the selection limit.
    """
    models = list(mean_pixels)
    limit = 100.0 * image_area / (224.0 * 224.0)
    t = Table(name, title, ["object", "class", *models], digits=1,
              note=f"selection limit: mean > {limit:.1f} pixels (100 at 224×224, scaled to {image_area} pixels)")
    if not models:
        return t
    stack = np.stack([np.nan_to_num(np.asarray(mean_pixels[m], float)) for m in models])
    for c, p in _rows(mean_pixels, (stack > 0).any(axis=0), class_names):
        t.add(object_names.get(p, str(p)), class_names[c], *[float(mean_pixels[m][c, p]) for m in models])
    return t


def finding2_cases(
    ratios: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    planted: Mapping[int, set[int]],
    shared: set[int],
) -> list[dict]:
    """One case per (model, class): min R_pc over planted objects present vs max over shared ones.

    Objects whose R_pc is NaN (absent from every image of the class) are not present. A case with
    no planted or no shared object present has ``holds = None`` (not evaluated).

    Returns:
        Dicts with keys model, class, planted_min, planted_object, shared_max, shared_object, holds.
    """
    cases = []
    for m, r in ratios.items():
        r = np.asarray(r, dtype=float)
        for c, cname in enumerate(class_names):
            pl = sorted(p for p in planted.get(c, ()) if p < r.shape[1] and np.isfinite(r[c, p]))
            sh = sorted(p for p in shared if p < r.shape[1] and np.isfinite(r[c, p]))
            case = {"model": m, "class": cname, "planted_min": float("nan"), "planted_object": "",
                    "shared_max": float("nan"), "shared_object": "", "holds": None}
            if pl:
                p = min(pl, key=lambda q: (r[c, q], q))
                case.update(planted_min=float(r[c, p]), planted_object=object_names.get(p, str(p)))
            if sh:
                p = max(sh, key=lambda q: (r[c, q], -q))
                case.update(shared_max=float(r[c, p]), shared_object=object_names.get(p, str(p)))
            if pl and sh:
                case["holds"] = bool(case["planted_min"] > case["shared_max"])
            cases.append(case)
    return cases


def _tally(cases: Sequence[dict]) -> tuple[int, int]:
    ev = [c for c in cases if c["holds"] is not None]
    return sum(bool(c["holds"]) for c in ev), len(ev)


def agreement_table(curves: Mapping[tuple[str, float], Mapping[str, np.ndarray]], thresholds: np.ndarray) -> Table:
    """Rows (model, θ, strict|lenient), columns the thresholds t."""
    t = Table("objects_agreement", "Agreement of the top explanation objects with the annotations "
              "(seed 000 Figs. 11–12), against the second-label threshold t",
              ["model", "θ", "kind", *[f"t={x:.2f}" for x in thresholds]], digits=3)
    for (m, th), cur in curves.items():
        for kind in ("strict", "lenient"):
            t.add(m, th, kind, *[float(v) for v in cur[kind]])
    return t


def _object_names(data) -> dict[int, str]:
    from models.datasets.ade20k import INDEX_TO_NAME

    return dict(getattr(data, "object_names", None) or {}) or dict(INDEX_TO_NAME)


def _at_size(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if maps.shape[1:] == tuple(shape):
        return maps
    return np.clip(resize_maps(maps, tuple(int(s) for s in shape)), 0.0, 1.0)


def _examples(labels: np.ndarray, per_class: int) -> list[int]:
    out: list[int] = []
    for c in np.unique(labels):
        out += [int(i) for i in np.flatnonzero(labels == c)[:per_class]]
    return out[:8]


@experiment("objects", "Objects in the visual explanations (R_pc, histograms, annotation agreement)")
def run(ctx: Context) -> Section:
    data = ctx.data
    idx = ctx.sample(ctx.config.images_per_class)
    models = list(ctx.classifiers)
    section = Section("objects", "Objects in the visual explanations (R_pc, histograms, annotation agreement)")
    section.images = int(idx.size)
    results = {m: ctx.explain(m, "gradcam", idx) for m in models}
    images = data.images[idx]
    labels = data.labels[idx]
    class_names = list(data.class_names)
    wrong = {m: int(np.sum(np.asarray(r["class_index"]).ravel() != labels)) for m, r in results.items()}
    section.text = (
        f"Grad-CAM of {idx.size} test images ({ctx.config.images_per_class} per class) by every classifier, "
        "explaining the predicted class; visual explanations keep the pixels with mask_norm ≥ θ, θ ∈ {0.5, 0.6}. "
        "R_pc = Σ_i M_p,i / Σ_i N_p,i over the images of each true class (seed 001 eq. 1); an object is selected "
        "for a class when its mean pixel count inside the explanations exceeds 100 at 224×224, scaled to the "
        "image area (seed 000 §4.3.3). Misclassified sampled images per model: "
        + ", ".join(f"{m} {k}" for m, k in wrong.items()) + "."
    )

    _visual_explanations(ctx, section, images, labels, results, models)
    segmenter = getattr(ctx.config, "segmenter", None)
    seg_maps = None
    if segmenter:
        from evaluation.segmentation import segmenter_maps

        seg_maps = segmenter_maps(ctx, segmenter, idx)
    if data.label_maps is None and seg_maps is None:
        section.text += ("\n\nThe evaluation images have no object label maps, so the object histograms, R_pc and the "
                         "annotation agreement are not computed (give --labels-dir with real data, or --segmenter).")
        from evaluation.findings import finding2_enrichment

        section.findings.append(finding2_enrichment([], THETAS[0], "nowhere (no label maps)"))
        return section

    label_maps = data.label_maps[idx] if data.label_maps is not None else seg_maps
    if data.label_maps is None:
        section.text += (f"\n\nThe evaluation images have no ground-truth label maps: every object count below comes "
                         f"from the label maps of segmenter {segmenter!r}.")
    names = _object_names(data)
    planted, shared = object_kinds(class_names, names, getattr(data, "discriminative", {}) or {})
    area = int(label_maps.shape[1] * label_maps.shape[2])
    stats: dict[float, dict[str, ObjectStats]] = {}
    for th in THETAS:
        stats[th] = {m: object_statistics(_at_size(results[m]["heatmap"], label_maps.shape[1:]), label_maps, labels,
                                          len(class_names), th) for m in models}

    _object_tables(ctx, section, stats, models, class_names, names, planted, shared, area)
    cases = {th: finding2_cases({m: s.ratios for m, s in stats[th].items()}, class_names, names, planted, shared)
             for th in THETAS}
    if seg_maps is not None and data.label_maps is not None:  # segmenter beside the ground truth
        _segmenter_comparison(ctx, section, segmenter, results, stats, seg_maps, label_maps, labels, names,
                              planted, shared, cases)
    ft = Table("objects_finding2", f"Strict rule at θ = {THETAS[0]} (not the finding: fails even for a perfect map of "
               f"one planted object): min R_pc of the planted objects present vs max R_pc of the shared objects "
               f"present ({', '.join(SHARED_OBJECTS)})",
               ["model", "class", "min planted R_pc", "planted object", "max shared R_pc", "shared object", "holds"])
    for c in cases[THETAS[0]]:
        ft.add(c["model"], c["class"], c["planted_min"], c["planted_object"], c["shared_max"], c["shared_object"],
               "" if c["holds"] is None else ("yes" if c["holds"] else "no"))
    section.tables.append(ft)
    heat = {m: _at_size(results[m]["heatmap"], label_maps.shape[1:]) for m in models}
    section.findings.append(_finding2(ctx, idx, heat, stats[THETAS[0]], label_maps, labels, names, planted, section))

    _annotation_agreement(ctx, section, idx, stats, names, models)
    ctx.results["objects"] = {"finding2_cases": cases[THETAS[0]]}
    return section


def _visual_explanations(ctx: Context, section: Section, images: np.ndarray, labels: np.ndarray,
                         results: Mapping[str, Any], models: list[str]) -> None:
    """Figures: the visual explanations of a few images per class by every model, per θ."""
    class_names = list(ctx.data.class_names)
    # seed 000 Fig. 5 / seed 001 Fig. 4 style
    ex = _examples(labels, EXAMPLES_PER_CLASS)
    for th in THETAS:
        rows = [[images[i]] + [visual_explanation(images[i][None], _at_size(results[m]["heatmap"][i][None], images.shape[1:3]), th)[0]
                               for m in models] for i in ex]
        path, rel = ctx.figure(f"objects_visual_explanations_theta{int(th * 100)}")
        plots.image_grid(path, rows, row_titles=[class_names[labels[i]] for i in ex], col_titles=["image", *models],
                         title=f"Visual explanations, θ = {th}")
        section.figures.append((rel, f"Visual explanations (Grad-CAM ≥ {th}) of the same test images by every classifier"))


def _object_tables(ctx: Context, section: Section, stats: Mapping[float, Mapping[str, ObjectStats]], models: list[str],
                   class_names: list[str], names: Mapping[int, str], planted: Mapping[int, set[int]],
                   shared: Any, area: int) -> None:
    """Tables and figures per θ: R_pc, mean pixels per object, histograms per class, R_pc bars."""
    for th in THETAS:
        tag = int(th * 100)
        table = r_pc_table(
            f"objects_r_pc_theta{tag}", f"R_pc per object, class and model at θ = {th} (seed 001 Fig. 5); objects "
            "selected by the >100-pixel rule for at least one model",
            {m: s.ratios for m, s in stats[th].items()}, {m: s.selected for m, s in stats[th].items()},
            class_names, names, planted, shared)
        section.tables.append(table)
        section.tables.append(mean_pixels_table(
            f"objects_mean_pixels_theta{tag}", f"Mean pixels per object inside the visual explanations at θ = {th} "
            "(seed 000 Fig. 7 histograms)", {m: s.mean_pixels for m, s in stats[th].items()}, class_names, names, area))
        # histograms: one bar chart per class
        for c, cname in enumerate(class_names):
            stack = np.stack([np.nan_to_num(stats[th][m].mean_pixels[c]) for m in models])
            objs = [int(p) for p in np.argsort(-stack.max(axis=0), kind="stable")[:12] if stack[:, p].max() > 0]
            if not objs:
                continue
            path, rel = ctx.figure(f"objects_histogram_{cname}_theta{tag}")
            plots.grouped_bars(path, [names.get(p, str(p)) for p in objs],
                               {m: [float(stack[j, p]) for p in objs] for j, m in enumerate(models)},
                               f"{cname}: mean pixels per object inside the explanations, θ = {th}", "mean pixels")
            section.figures.append((rel, f"Histogram of objects in the visual explanations of class {cname}, θ = {th} "
                                         "(seed 000 Fig. 7)"))
        # grouped bars of R_pc for the selected (object, class) pairs
        if table.rows:
            groups = [f"{r[0]} ({r[1]})" for r in table.rows]
            path, rel = ctx.figure(f"objects_r_pc_theta{tag}")
            plots.grouped_bars(path, groups, {m: [float(v) if v is not None else np.nan for v in table.column(m)]
                                              for m in models}, f"R_pc per object and class, θ = {th}", "R_pc")
            section.figures.append((rel, f"R_pc of the selected objects per class and model, θ = {th} (seed 001 Fig. 5)"))


def _segmenter_comparison(ctx: Context, section: Section, segmenter: str, results: Mapping[str, Any],
                          stats: Mapping[float, Mapping[str, ObjectStats]], seg_maps: np.ndarray,
                          label_maps: np.ndarray, labels: np.ndarray, names: Mapping[int, str],
                          planted: Mapping[int, set[int]], shared: Any, cases: Mapping[float, list]) -> None:
    """The segmenter's label maps beside the ground truth: its statistics and the strict rule's tally."""
    from evaluation.segmentation import add_comparison

    class_names = list(ctx.data.class_names)
    models = list(results)
    heat = {m: _at_size(results[m]["heatmap"], label_maps.shape[1:]) for m in models}
    seg_stats = add_comparison(ctx, section, segmenter, heat, stats, seg_maps, label_maps, labels, class_names, names,
                               lambda c, p: _kind(c, p, planted, shared))
    k, n = _tally(finding2_cases({m: s.ratios for m, s in seg_stats[THETAS[0]].items()}, class_names, names,
                                 planted, shared))
    k0, n0 = _tally(cases[THETAS[0]])
    section.text += (f"\n\nWith the label maps of segmenter {segmenter!r} instead of the ground truth, the strict "
                     f"rule (min planted R_pc > max shared R_pc, θ = {THETAS[0]}) holds in {k} of {n} (model, class) cases (ground truth: {k0} of {n0}).")


def _annotation_agreement(ctx: Context, section: Section, idx: np.ndarray,
                          stats: Mapping[float, Mapping[str, ObjectStats]], names: Mapping[int, str],
                          models: list[str]) -> None:
    """Agreement of the selected objects with the annotations (seed 000 Figs. 11, 12)."""
    data = ctx.data
    ann_path = ctx.config.annotations
    source = "the annotations file"
    if ann_path is None and getattr(data, "discriminative", None):
        ann_path = write_annotations_from_ground_truth(data, ctx.out / "annotations.csv")
        source = "annotations written from the ground truth into annotations.csv (synthetic annotator, see evaluation.annotations)"
    if ann_path is None:
        section.text += "\n\nNo annotations were given (config.annotations), so the agreement curves are not drawn."
        return
    from models.datasets.ade20k import NAME_TO_INDEX

    to_idx = {**NAME_TO_INDEX, **{v: k for k, v in names.items()}}
    pos, annotated, unknown = annotation_indices(read_annotations(ann_path), ctx.image_ids(idx), to_idx)
    if pos.size == 0:
        section.text += f"\n\nNone of the {idx.size} sampled images is annotated in {ann_path}; no agreement curves."
        return
    curves = {(m, th): agreement_curve(stats[th][m].inside[pos], annotated, AGREEMENT_THRESHOLDS)
              for m in models for th in THETAS}
    tab = agreement_table(curves, AGREEMENT_THRESHOLDS)
    tab.note = (f"{pos.size} annotated images of {idx.size}; source: {source}; strict: every selected label is "
                "annotated; lenient: any selected label is annotated"
                + (f"; unknown label names dropped: {', '.join(unknown)}" if unknown else ""))
    section.tables.append(tab)
    for kind, fig in (("strict", "Fig. 11"), ("lenient", "Fig. 12")):
        path, rel = ctx.figure(f"objects_agreement_{kind}")
        plots.curves(path, AGREEMENT_THRESHOLDS, {f"{m} θ={th}": cur[kind] for (m, th), cur in curves.items()},
                     f"{kind} agreement with the annotations (seed 000 {fig})",
                     "threshold t for selecting the second label", "accuracy", ylim=(0.0, 1.0))
        section.figures.append((rel, f"{kind.capitalize()} agreement of the objects selected from each "
                                     f"explanation with the annotations against t (seed 000 {fig})"))


def _finding2(ctx: Context, idx: np.ndarray, heat: Mapping[str, np.ndarray], stats: Mapping[str, ObjectStats],
              label_maps: np.ndarray, labels: np.ndarray, names: Mapping[int, str],
              planted: Mapping[int, set[int]], section: Section) -> Finding:
    """Finding 2 restated (issue 12): the top causal cue's R_pc enrichment vs sky, road, building."""
    from evaluation.findings import (BACKGROUND_OBJECTS, causal_deltas, finding2_enrichment, finding2_enrichment_cases,
                                     grid_text, top_cues)

    class_names = list(ctx.data.class_names)
    to_idx = {v: k for k, v in names.items()}
    background = [to_idx[n] for n in BACKGROUND_OBJECTS if n in to_idx]
    twins = causal_deltas(ctx, idx, list(heat)) if ctx.data.label_maps is not None else "no ground-truth label maps"
    if isinstance(twins, str):
        source = f"the highest R_pc among the planted objects (causal Δ unavailable: {twins})"
    else:
        source = "the causal Δ of object-removal twins (largest mean p_y(I) − p_y(I without it))"
    cases = []
    for m, h in heat.items():
        if isinstance(twins, str):
            r = stats[m].ratios
            cues = {c: max(ps, key=lambda p: (np.nan_to_num(r[c, p], nan=-1.0), -p)) for c, ps in planted.items() if ps}
        else:
            tw, deltas = twins
            planted_names = {c: [names.get(p, str(p)) for p in ps] for c, ps in planted.items()}
            cues = {c: to_idx[n] for c, (n, _) in top_cues(deltas[m], tw.present, labels, tw.objects,
                                                           planted_names).items() if n in to_idx}
        mask_share = threshold(h, THETAS[0]).mean(axis=(1, 2))
        cases += finding2_enrichment_cases(m, grid_text(ctx.models[m].target_shape), stats[m].inside, stats[m].total,
                                           mask_share, labels, class_names, names, cues, background,
                                           seed=ctx.config.seed)
    t = Table("objects_finding2_enrichment", f"Finding 2 per (model, class) at θ = {THETAS[0]}: R_pc enrichment of the "
              "top cue vs the background objects present in every image, 95% bootstrap intervals over images",
              ["model", "grid", "class", "object", "role", "enrichment", "low", "high", "verdict"], digits=3,
              note=f"top cue from {source}")
    for c in cases:
        if c["cue_ci"] is not None:
            t.add(c["model"], c["grid"], c["class"], c["cue"], "top cue", *c["cue_ci"], c["verdict"] or "")
        for n, iv in c["background"].items():
            t.add(c["model"], c["grid"], c["class"], n, "background", *iv, "")
    section.tables.append(t)
    return finding2_enrichment(cases, THETAS[0], source)
