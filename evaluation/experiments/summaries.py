"""Visual summaries per model and class, and the architecture comparison (seed 004).

For every base classifier (retrained copies are left out: the comparison is between
architectures) and every class:

* **Images**: the first ``2 × ccg_images_per_class`` test images of the class
  (:meth:`Context.sample`; 12 by default). Only the images the model classifies correctly are
  summarised — a summary describes the evidence the network uses *to recognise the class* — and
  the regularity of a summary is a share of those.
* **Masks**: optimised perturbation masks through the service for the predicted class
  (``class_index = -1``), ``ctx.explain(model, "perturbation_mask", idx, **params)`` with
  ``iterations`` from the ``confidence`` experiment's rule
  (:func:`evaluation.experiments.confidence_gains.perturbation_iterations`: the authors' 300 at
  224 px and more, 100 below) and four departures from SPEC.md's defaults (:data:`MASK_PARAMS`),
  each measured on the ``small`` VGG11 (24 test images):

  - ``score="log_odds"``: the deletion game minimises ``max(log(p_c / (1 − p_c)), −2)`` instead of
    ``p_c``. The small two-class models are saturated (``p_c`` rounds to 1.0 in float32), so the
    gradient of ``p_c`` vanishes and the L1 term keeps the mask at 1: with ``p_c``, 22 of 24 masks
    ended with ``p_c(blend) = 1.00``, i.e. deleted nothing.
  - ``perturbation="constant"`` (Fong & Vedaldi's constant perturbation, the image's mean colour)
    instead of the blur: the planted objects are flat colour shapes that a blur with σ = 10 px at
    224 px keeps (blurring the whole image left ``p(city_a)`` at 0.93–1.00 for most images), so
    a blur cannot delete them.
  - ``l1_coeff=10`` instead of 0.5: the log-odds span about 20 units where ``p_c`` spans 1, so the
    sparsity weight is scaled by 20; with 0.5 the masks deleted 25–35 % of the image.
  - ``mask_scale``: :func:`mask_scale_for`, cells of about 1/28 of the image as input/8 gives at
    224 px (5 px at 128 px instead of 16 px), so thin objects (fences, signboards) can be isolated.

  The importance map is the service's ``raw`` output ``1 − M`` (not normalised, so the threshold
  0.5 means "at least half deleted"; the normalised ``heatmap`` is used when a server does not
  return ``raw``). Cost at 128 px on 2 CPU cores: about 13–15 s per model for 24 images.
* **Features**: target-layer activations ``ctx.features(model, idx)`` (cached).
* **Summaries**: :func:`evaluation.summaries.summarize_class` with its defaults (connected
  components of ``1 − M ≥ 0.5``, at least 0.5 % of the image, at most 5 per image; similarity
  ``0.6 · cos + 0.4 · exp(−‖Δg‖²/0.5²)``; affinity propagation with preference 0.3, seeded with
  ``config.seed``; coherence ≥ 0.5; at least 2 images), plus ``min_regularity`` =
  :data:`MIN_REGULARITY` (a third of the class's summarised images), objects from the
  ground-truth label maps.

Reported: a table of every summary (regularity, coherence, objects), one figure per (model, class)
with each summary's member crops side by side and their mean footprint, the architecture table
(number of summaries, mean regularity, coverage = the share of the class's images contributing to
at least one summary) with a bar chart, and the finding "most summaries of a class fall on its
planted discriminative objects": a summary *falls on* them when most of its members hit them in
the pointing game (the member's importance peak inside its region within a tolerance of a planted
pixel of the class, ``ctx.data.discriminative``; :func:`pointing_hits`), and the stricter pixel rule (a majority of
the members' region pixels are planted pixels) is reported beside it; the finding holds when more
than half of all summaries (pooled over models and classes) fall on them.

**Offline, not served.** The service's ``Explain`` does not return an image's regions with the
summaries they belong to: summaries are a data-set-level analysis, and serving them would make the
service keep per-model summary state that depends on a data set (which images, which masks, which
seed), to be invalidated with every model version — state the stateless explanation service does
not have. The evaluation computes them offline and writes them per model to
``REPORT_DIR/summaries/<model>.json`` (members, objects, and the exemplar descriptors); a user maps
a new image's regions onto them in-process with :func:`evaluation.summaries.summaries_from_json` and
:func:`evaluation.summaries.assign_regions` (regions from the image's perturbation mask, activations
from the ``features`` signature).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import plots
from evaluation.cache import atomic_write_text
from evaluation.experiments.confidence_gains import perturbation_iterations
from evaluation.measures import pointing_chance, pointing_game
from evaluation.pipeline import Context, experiment
from evaluation.report import Finding, Section
from evaluation.tables import Table
from evaluation.summaries import Summary, summaries_to_json, summarize_class

__all__ = [
    "planted_pixel_share",
    "falls_on_planted",
    "planted_summary_share",
    "class_coverage",
    "architecture_rows",
    "summaries_finding",
    "summary_figure_rows",
    "mask_scale_for",
    "pointing_tolerance",
    "pointing_hits",
    "falls_on_by_pointing",
    "MASK_PARAMS",
    "MIN_REGULARITY",
    "run",
]

#: Summaries shown per (model, class) figure, and member crops per summary.
MAX_FIGURE_ROWS = 8
MAX_FIGURE_CROPS = 8
#: A summary falls on planted objects when more than this share of its members hit them.
MAJORITY = 0.5
#: Pointing-game tolerance (Zhang et al. 2016, "Top-down neural attention by excitation
#: backprop"): 15 px at 224 px, scaled with the input size.
POINTING_TOLERANCE_AT_224 = 15.0
#: Least share of a class's summarised images that must contribute to a summary (seed 004: parts
#: the network uses "with high regularity"; a cluster of 2 of 12 images is an accident).
MIN_REGULARITY = 1.0 / 3.0
#: The perturbation masks of the summaries (see the module docstring, "Masks").
MASK_PARAMS: dict[str, Any] = {"score": "log_odds", "perturbation": "constant", "l1_coeff": 10.0}


def mask_scale_for(input_size: Sequence[int] | None) -> int:
    """Stage-1 mask cell size: SPEC.md's input/8 at 224 px, i.e. 28 cells across, kept at about
    28 cells for smaller inputs (``round(8 · H / 224)``, at least 1): 5 px cells at 128 px."""
    if input_size is None:
        return 8
    side = min(int(v) for v in list(input_size)[:2])
    return max(1, int(round(8 * side / 224)))


def pointing_tolerance(image_size: Sequence[int]) -> float:
    """The pointing game's tolerance in pixels for an ``(H, W)`` image (15 px at 224 px)."""
    return POINTING_TOLERANCE_AT_224 * min(int(v) for v in list(image_size)[:2]) / 224.0


def pointing_hits(summary: Summary, heat: np.ndarray, planted: np.ndarray, tolerance: float) -> list[bool]:
    """The pointing game per member (:func:`evaluation.measures.pointing_game` with the plateau
    centre as the point): does the member's importance peak, taken inside its region, lie within
    ``tolerance`` px of a planted-object pixel?

    Args:
        summary: A summary whose members' ``image`` index ``heat`` and ``planted``.
        heat: ``(N, H, W)`` importance maps (``≥ 0``) the regions were extracted from.
        planted: ``(N, H, W)`` bool, the class's planted-object pixels.
        tolerance: In pixels.
    """
    if not summary.members:
        return []
    maps = np.stack([np.where(r.footprint(), heat[r.image], -1.0) for r in summary.members])
    targets = np.stack([np.asarray(planted[r.image], bool) for r in summary.members])
    return [bool(v) for v in pointing_game(maps, targets, tolerance, peak="plateau_centre")]


def falls_on_by_pointing(hits: Sequence[bool]) -> bool:
    """A summary falls on the planted objects when more than half of its members hit them."""
    return bool(len(hits) and np.mean(hits) > MAJORITY)


def planted_pixel_share(object_pixels: Mapping[str, int], planted: Sequence[str]) -> float:
    """Share of a summary's member pixels that lie on ``planted`` objects (NaN without pixels)."""
    total = sum(int(v) for v in object_pixels.values())
    if total <= 0:
        return float("nan")
    on = sum(int(v) for k, v in object_pixels.items() if k in set(planted))
    return on / total


def falls_on_planted(object_pixels: Mapping[str, int], planted: Sequence[str]) -> bool:
    """Whether the majority (> 50 %) of a summary's member pixels are planted-object pixels."""
    share = planted_pixel_share(object_pixels, planted)
    return bool(share > MAJORITY) if not math.isnan(share) else False


def planted_summary_share(
    object_pixels: Mapping[str, Sequence[Mapping[str, int]]],
    discriminative: Mapping[str, Sequence[str]],
) -> tuple[int, int, float]:
    """How many summaries fall on their class's planted objects.

    Args:
        object_pixels: Class name -> the ``object_pixels`` of each of its summaries.
        discriminative: Class name -> planted object names.

    Returns:
        ``(on, total, on / total)`` (NaN share without summaries); classes without planted
        objects are not counted.
    """
    on = total = 0
    for cls, per_summary in object_pixels.items():
        planted = list(discriminative.get(cls, []))
        if not planted:
            continue
        for px in per_summary:
            total += 1
            on += int(falls_on_planted(px, planted))
    return on, total, (on / total if total else float("nan"))


def class_coverage(summaries: Sequence[Summary], n_images: int) -> float:
    """Share of the class's ``n_images`` images that contribute to at least one summary."""
    if n_images <= 0:
        return float("nan")
    images = {r.image for s in summaries for r in s.members}
    return len(images) / n_images


def architecture_rows(
    per_model: Mapping[str, Mapping[str, Sequence[Summary]]],
    images: Mapping[str, Mapping[str, int]],
    discriminative: Mapping[str, Sequence[str]] | None = None,
    hits: Mapping[str, Mapping[str, Sequence[Sequence[bool]]]] | None = None,
) -> list[dict[str, Any]]:
    """One row per model for the architecture comparison.

    Args:
        per_model: Model -> class -> its summaries.
        images: Model -> class -> number of images summarised (correctly classified).
        discriminative: Class -> planted objects (for the "on planted" column).
        hits: Model -> class -> per summary its members' pointing-game hits; when given, "on
            planted" counts the summaries most of whose members hit (else the pixel rule).

    Returns:
        Dicts with ``model``, ``summaries`` (total), ``per class`` (mean over the classes that had
        images), ``mean regularity`` and ``mean coherence`` (over summaries), ``coverage`` (mean
        over those classes), ``on planted`` (share of summaries falling on planted objects) and
        ``images``.
    """
    rows = []
    for model, by_class in per_model.items():
        classes = [c for c in by_class if images.get(model, {}).get(c, 0) > 0]
        flat = [s for c in classes for s in by_class[c]]
        counts = [len(by_class[c]) for c in classes]
        cov = [class_coverage(by_class[c], images[model][c]) for c in classes]
        if discriminative and hits is not None:
            flags = [falls_on_by_pointing(h) for c in classes if discriminative.get(c) for h in hits[model][c]]
            share = float(np.mean(flags)) if flags else float("nan")
        elif discriminative:
            _, tot, share = planted_summary_share({c: [s.object_pixels for s in by_class[c]] for c in classes}, discriminative)
        else:
            share = float("nan")
        rows.append({
            "model": model,
            "summaries": len(flat),
            "per class": float(np.mean(counts)) if counts else float("nan"),
            "mean regularity": float(np.mean([s.regularity for s in flat])) if flat else float("nan"),
            "mean coherence": float(np.mean([s.coherence for s in flat])) if flat else float("nan"),
            "coverage": float(np.mean(cov)) if cov else float("nan"),
            "on planted": share,
            "images": int(sum(images.get(model, {}).get(c, 0) for c in classes)),
        })
    return rows


def summaries_finding(
    per_model: Mapping[str, Mapping[str, Sequence[Summary]]],
    discriminative: Mapping[str, Sequence[str]],
    planted_area: Mapping[str, float] | None = None,
    hits: Mapping[str, Mapping[str, Sequence[Sequence[bool]]]] | None = None,
    chance: Mapping[str, float] | None = None,
) -> Finding:
    """"Most summaries of a class fall on its planted discriminative objects", pooled over models
    and classes: holds when more than half of the summaries do.

    A summary falls on the planted objects when most of its members hit them in the pointing
    game (``hits``, from :func:`pointing_hits`); without ``hits``, when most of its member pixels
    are planted pixels (:func:`falls_on_planted`). The pixel rule is always reported too.

    Args:
        per_model: Model -> class -> summaries.
        discriminative: Class -> planted object names.
        planted_area: Class -> share of the summarised images' pixels that are planted pixels (the
            chance level of the pixel share; optional, for the evidence).
        hits: Model -> class -> per summary, the pointing-game hit of each member.
        chance: Class -> chance level of a pointing-game hit (:func:`evaluation.measures.pointing_chance`).
    """
    title = "Most summaries of a class fall on its planted discriminative objects"
    if not any(discriminative.get(c) for c in {c for m in per_model.values() for c in m}):
        return Finding(title, None, "no planted objects are known for these classes (real data)")
    counted = [(m, c, k, s) for m, by in per_model.items() for c, ss in by.items() if discriminative.get(c)
               for k, s in enumerate(ss)]
    if not counted:
        return Finding(title, None, "no summaries were found (no model gave regions that cluster coherently)")
    pixel_shares = [planted_pixel_share(s.object_pixels, discriminative[c]) for _, c, _, s in counted]
    if all(math.isnan(p) for p in pixel_shares):
        return Finding(title, None, f"{len(counted)} summaries, but no label maps to tell which objects they cover")
    by_pixels = {(m, c, k): falls_on_planted(s.object_pixels, discriminative[c]) for m, c, k, s in counted}
    if hits is not None:
        on_map = {(m, c, k): falls_on_by_pointing(hits[m][c][k]) for m, c, k, _ in counted}
        rule = "most of their members hit the class's planted objects in the pointing game"
    else:
        on_map = by_pixels
        rule = "a majority of their member pixels lie on the class's planted objects"
    total = len(counted)
    on = sum(on_map.values())
    share = on / total
    parts = []
    for m in per_model:
        keys = [key for key in on_map if key[0] == m]
        parts.append(f"{m} {sum(on_map[k] for k in keys)}/{len(keys)}")
    evidence = f"{on} of {total} summaries ({share:.0%}) fall on them: {rule}; per model: {', '.join(parts)}"
    if hits is not None:
        members = [h for m, c, k, _ in counted for h in hits[m][c][k]]
        evidence += f"; members hitting: {np.mean(members):.0%}"
        if chance:
            evidence += " (chance level " + ", ".join(f"{c} {v:.2f}" for c, v in chance.items()) + ")"
        evidence += (f"; by the stricter pixel rule (a majority of the member pixels on planted objects) "
                     f"{sum(by_pixels.values())} of {total}")
    valid = [p for p in pixel_shares if not math.isnan(p)]
    evidence += f"; mean planted pixel share over all summaries {np.mean(valid):.2f}"
    if planted_area:
        evidence += " (planted share of the whole images, chance level: " + ", ".join(
            f"{c} {v:.2f}" for c, v in planted_area.items()) + ")"
    return Finding(title, share > MAJORITY, evidence)


def summary_figure_rows(summaries: Sequence[Summary], max_rows: int = MAX_FIGURE_ROWS,
                        max_crops: int = MAX_FIGURE_CROPS) -> tuple[list[list[np.ndarray]], list[str]]:
    """Rows for :func:`evaluation.plots.image_grid`: per summary its exemplar's crop first, then
    the other members' crops (most similar first), then the mean footprint; and the row titles."""
    rows, titles = [], []
    for s in list(summaries)[:max_rows]:
        order = sorted(range(s.size), key=lambda j: (j != s.exemplar, -float(s.similarity[j]), j))[:max_crops]
        row = [s.crops[j] for j in order if j < len(s.crops)]
        if s.mean_mask is not None:
            row.append(s.mean_mask)
        rows.append(row)
        obj = s.majority_object or "?"
        titles.append(f"#{s.index} {obj}\nreg {s.regularity:.2f}")
    return rows, titles


def _objects_text(s: Summary, top: int = 3) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in list(s.object_shares.items())[:top])


@dataclass
class _Collected:
    """What :func:`run` gathers model by model."""

    per_model: dict[str, dict[str, list[Summary]]] = field(default_factory=dict)
    n_images: dict[str, dict[str, int]] = field(default_factory=dict)
    hits: dict[str, dict[str, list[list[bool]]]] = field(default_factory=dict)
    iterations: dict[str, int] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


@experiment("summaries", "Visual summaries (seed 004)")
def run(ctx: Context) -> Section:
    data = ctx.data
    models = ctx.base_classifiers()
    per_class = max(2, 2 * int(ctx.config.ccg_images_per_class))
    idx = ctx.sample(per_class)
    section = Section("summaries", "Visual summaries (seed 004)")
    section.images = int(idx.size)
    table = Table("summaries", "Visual summaries per model and class (seed 004)",
                  ["model", "class", "summary", "images", "regularity", "coherence", "majority object",
                   "objects (pixel share)", "planted pixel share", "pointing hits", "on planted"])
    got = _Collected()
    skipped = []
    for model in models:
        if "perturbation_mask" not in (getattr(ctx.models[model], "methods", None) or ["perturbation_mask"]):
            skipped.append(model)
            continue
        _summarise_model(ctx, model, idx, table, section, got)
    if skipped:
        got.notes.append(f"not summarised, the service offers no perturbation_mask for: {', '.join(skipped)}")
    models = [m for m in models if m not in skipped]
    if got.notes:
        table.note = "; ".join(got.notes)
    section.tables.append(table)
    discriminative = dict(getattr(data, "discriminative", None) or {})
    label_maps = getattr(data, "label_maps", None)
    use_hits = label_maps is not None and bool(discriminative)
    section.tables.append(_architecture_table(got, discriminative, use_hits))
    if models:
        path, rel = ctx.figure("summaries_per_architecture")
        plots.grouped_bars(path, models, {c: [len(got.per_model[m].get(c, [])) for m in models]
                                          for c in data.class_names},
                           "Visual summaries per architecture and class", "summaries")
        section.figures.append((rel, "Number of visual summaries per architecture and class (seed 004: more summaries = more distinct parts used)"))
    if got.per_model:
        planted_area, chance = _planted_area_and_chance(ctx, idx) if use_hits else ({}, {})
        section.findings.append(summaries_finding(got.per_model, discriminative, planted_area or None,
                                                  got.hits if use_hits else None, chance or None))
    else:
        section.findings.append(Finding("Most summaries of a class fall on its planted discriminative objects", None,
                                        "no served classifier offers perturbation_mask"))
    section.text = _section_text(models, got, per_class)
    ctx.results["summaries"] = {m: {c: len(ss) for c, ss in by.items()} for m, by in got.per_model.items()}
    return section


def _summarise_model(ctx: Context, model: str, idx: np.ndarray, table: Table, section: Section,
                     got: _Collected) -> None:
    """Perturbation masks of ``model`` on ``idx``, summarised class by class; written to summaries/MODEL.json."""
    cfg, info = ctx.config, ctx.models[model]
    it = perturbation_iterations(info.input_size)
    got.iterations[model] = it
    params = {"iterations": it, "seed": int(cfg.seed), "mask_scale": mask_scale_for(info.input_size), **MASK_PARAMS}
    r = ctx.explain(model, "perturbation_mask", idx, desc=f"perturbation mask {model}", **params)
    heat = r.get("raw")
    got.sources.add("raw" if heat is not None else "heatmap")
    heat = r["heatmap"] if heat is None else heat
    acts, _ = ctx.features(model, idx)
    predicted = np.asarray(r["class_index"]).reshape(-1)
    got.per_model[model], got.n_images[model], got.hits[model] = {}, {}, {}
    dump: dict[str, Any] = {}
    for c, cname in enumerate(ctx.data.class_names):
        sel = np.flatnonzero((ctx.data.labels[idx] == c) & (predicted == c))
        got.n_images[model][cname] = int(sel.size)
        if sel.size < 2:
            got.notes.append(f"{model} {cname}: {sel.size} correctly classified image(s), not summarised")
            got.per_model[model][cname], got.hits[model][cname] = [], []
            dump[cname] = {"images": int(sel.size), "summaries": []}
            continue
        out, hits, dump[cname] = _summarise_class(ctx, model, cname, idx[sel], heat[sel], acts[sel], table, section)
        got.per_model[model][cname], got.hits[model][cname] = out, hits
    atomic_write_text(ctx.out / "summaries" / f"{model}.json", json.dumps({
        "model": model, "version": ctx.version(model), "method": "perturbation_mask",
        "params": {**params, "class_index": -1},
        "importance": sorted(got.sources)[0] if len(got.sources) == 1 else "mixed",
        "classes": dump,
    }, indent=1))


def _summarise_class(ctx: Context, model: str, cname: str, gi: np.ndarray, heat: np.ndarray, acts: np.ndarray,
                     table: Table, section: Section) -> tuple[list[Summary], list[list[bool]], dict[str, Any]]:
    """Summaries of one class's correctly classified images ``gi``: ``(summaries, pointing hits, JSON dump)``;
    adds the table rows and the figure."""
    data = ctx.data
    object_names = dict(getattr(data, "object_names", None) or {})
    label_maps = getattr(data, "label_maps", None)
    out = summarize_class(heat, acts, label_maps=None if label_maps is None else label_maps[gi],
                          object_names=object_names, seed=int(ctx.config.seed), images=data.images[gi],
                          image_ids=ctx.image_ids(gi), class_name=cname, min_regularity=MIN_REGULARITY)
    planted = dict(getattr(data, "discriminative", None) or {}).get(cname, [])
    index_of = {v: k for k, v in object_names.items()}
    planted_idx = [index_of[o] for o in planted if o in index_of]
    can_point = bool(planted_idx) and label_maps is not None
    pmask = np.isin(label_maps[gi], planted_idx) if can_point else None
    tol = pointing_tolerance(heat.shape[1:3])
    hits = [pointing_hits(s, heat, pmask, tol) if can_point else [] for s in out]
    for s, h in zip(out, hits):
        share = planted_pixel_share(s.object_pixels, planted) if planted else float("nan")
        table.add(model, cname, s.index, s.size, s.regularity, s.coherence, s.majority_object or "",
                  _objects_text(s), share, float(np.mean(h)) if h else float("nan"),
                  ("yes" if falls_on_by_pointing(h) else "no") if can_point else "")
    summaries_json = summaries_to_json(out)
    for d, h in zip(summaries_json, hits):
        d["pointing_hits"] = [bool(v) for v in h]
    if out:
        rows, titles = summary_figure_rows(out)
        path, rel = ctx.figure(f"summaries_{model}_{cname}")
        plots.image_grid(path, rows, row_titles=titles,
                         title=f"{model} · {cname}: visual summaries (member crops, last: mean footprint)")
        section.figures.append((rel, f"Visual summaries of {cname} by {model}: one row per summary, "
                                     f"the exemplar's crop first, the members' mean footprint last"))
    return out, hits, {"images": int(gi.size), "image_ids": ctx.image_ids(gi), "summaries": summaries_json}


def _architecture_table(got: _Collected, discriminative: dict[str, list[str]], use_hits: bool) -> Table:
    rows = architecture_rows(got.per_model, got.n_images, discriminative or None, got.hits if use_hits else None)
    arch = Table("summaries_architectures", "Number of summaries per architecture (seed 004's comparison)",
                 ["model", "summaries", "per class", "mean regularity", "mean coherence", "coverage", "on planted", "images"])
    for row in rows:
        arch.add(*[row[c] for c in arch.columns])
    arch.note = ("coverage: share of a class's summarised images that contribute to at least one summary (mean over "
                 "classes); on planted: share of summaries most of whose members hit the class's planted objects in the "
                 "pointing game")
    return arch


def _planted_area_and_chance(ctx: Context, idx: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """Per class: the planted objects' share of the image and the pointing game's chance level."""
    data = ctx.data
    index_of = {v: k for k, v in dict(getattr(data, "object_names", None) or {}).items()}
    discriminative = dict(getattr(data, "discriminative", None) or {})
    planted_area, chance = {}, {}
    for c, cname in enumerate(data.class_names):
        planted_idx = [index_of[n] for n in discriminative.get(cname, []) if n in index_of]
        gi = idx[data.labels[idx] == c]
        if planted_idx and gi.size:
            pm = np.isin(data.label_maps[gi], planted_idx)
            planted_area[cname] = float(pm.mean())
            chance[cname] = pointing_chance(pm, pointing_tolerance(pm.shape[1:3]))
    return planted_area, chance


def _section_text(models: list[str], got: _Collected, per_class: int) -> str:
    return (
        f"Seed 004's visual summaries: per model and class, regions of the optimised perturbation masks "
        f"({', '.join(f'{m}: {got.iterations[m]}' for m in models) or 'no model'} iterations; deletion by the image's "
        "mean colour, class evidence = the log-odds of the class floored at -2, L1 weight 10, cells of about 1/28 of "
        f"the image) of the first {per_class} test images per class that the "
        "model classifies correctly, described by the model's own target-layer activations pooled over each region plus "
        "the region's position and shape (Proposal Flow is not available), clustered with affinity propagation; incoherent "
        "clusters (mean similarity < 0.5) and clusters to which fewer than 2 images or fewer than a third of the class's "
        "images contribute are dropped and a cluster keeps at most one "
        "region per image. Regularity = share of the class's summarised images that contribute a member. "
        "A member hits the planted objects when its importance peak lies within 15 px (at 224 px; scaled) of a "
        "planted-object pixel (the pointing game); a summary falls on them when most of its members hit. "
        f"Importance map: {' / '.join(sorted(got.sources)) or '–'} (1 − mask). Summaries are computed offline, not by "
        "the service; they are written to summaries/<model>.json with their exemplar descriptors for "
        "evaluation.summaries.assign_regions."
    )
