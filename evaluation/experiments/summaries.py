"""Visual summaries per model and class, and the architecture comparison (seed 004).

For every base classifier (retrained copies are left out: the comparison is between
architectures) and every class:

* **Images**: the first ``2 × ccg_images_per_class`` test images of the class
  (:meth:`Context.sample`; 12 by default). Only the images the model classifies correctly are
  summarised — a summary describes the evidence the network uses *to recognise the class* — and
  the regularity of a summary is a share of those.
* **Masks**: optimised perturbation masks through the service,
  ``ctx.explain(model, "perturbation_mask", idx, iterations=it, seed=config.seed)`` for the
  predicted class (``class_index = -1``). ``it`` is the ``confidence``/``localisation``
  experiments' rule (:func:`evaluation.experiments.confidence_gains.perturbation_iterations`):
  the authors' 300 iterations at 224 px and more, 100 below, where the stage-1 mask has at most
  16×16 cells (input/8) and converges sooner. With the same parameters the first
  ``ccg_images_per_class`` images per class come from the cache those experiments fill. Cost on
  2 CPU cores at the ``small`` preset (128 px): about 5–15 ms per image and iteration depending
  on the architecture, so 4 models × 24 images × 100 iterations ≈ 50–140 s cold and about half of
  that after the ``confidence`` experiment. The importance map is the service's ``raw`` output
  ``1 − M`` (not normalised, so the threshold 0.5 means "at least half deleted"; the normalised
  ``heatmap`` is used when a server does not return ``raw``).
* **Features**: target-layer activations ``ctx.features(model, idx)`` (cached).
* **Summaries**: :func:`explain.summaries.summarize_class` with its defaults (connected
  components of ``1 − M ≥ 0.5``, at least 0.5 % of the image, at most 5 per image; similarity
  ``0.6 · cos + 0.4 · exp(−‖Δg‖²/0.5²)``; affinity propagation with preference 0.3, seeded with
  ``config.seed``; coherence ≥ 0.5; at least 2 images), objects from the ground-truth label maps.

Reported: a table of every summary (regularity, coherence, objects), one figure per (model, class)
with each summary's member crops side by side and their mean footprint, the architecture table
(number of summaries, mean regularity, coverage = the share of the class's images contributing to
at least one summary) with a bar chart, and the finding "most summaries of a class fall on its
planted discriminative objects": a summary *falls on* them when the majority of its members'
region pixels are pixels of the class's planted objects (``ctx.data.discriminative``); the
finding holds when more than half of all summaries (pooled over models and classes) do.

**Offline, not served.** The service's ``Explain`` does not return an image's regions with the
summaries they belong to: summaries are a data-set-level analysis, and serving them would make the
service keep per-model summary state that depends on a data set (which images, which masks, which
seed), to be invalidated with every model version — state the stateless explanation service does
not have. The evaluation computes them offline and writes them per model to
``REPORT_DIR/summaries/<model>.json`` (members, objects, and the exemplar descriptors); a user maps
a new image's regions onto them in-process with :func:`explain.summaries.summaries_from_json` and
:func:`explain.summaries.assign_regions` (regions from the image's perturbation mask, activations
from the ``features`` signature).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import plots
from evaluation.cache import atomic_write_text
from evaluation.pipeline import Context, experiment
from evaluation.report import Finding, Section
from evaluation.tables import Table
from explain.summaries import Summary, summaries_to_json, summarize_class

__all__ = [
    "planted_pixel_share",
    "falls_on_planted",
    "planted_summary_share",
    "class_coverage",
    "architecture_rows",
    "summaries_finding",
    "summary_figure_rows",
    "iterations_for",
    "run",
]

#: Summaries shown per (model, class) figure, and member crops per summary.
MAX_FIGURE_ROWS = 8
MAX_FIGURE_CROPS = 8
#: A summary falls on planted objects when more than this share of its pixels are planted pixels.
MAJORITY = 0.5


def iterations_for(input_size: Sequence[int] | None) -> int:
    """Perturbation-mask iterations: the ``confidence`` experiment's rule (300 at ≥ 224 px, else 100)."""
    try:
        from evaluation.experiments.confidence_gains import perturbation_iterations
    except ImportError:  # pragma: no cover - the confidence experiment is part of the project
        if input_size is None or min(int(s) for s in list(input_size)[:2]) >= 224:
            return 300
        return 100
    return int(perturbation_iterations(input_size))


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
) -> list[dict[str, Any]]:
    """One row per model for the architecture comparison.

    Args:
        per_model: Model -> class -> its summaries.
        images: Model -> class -> number of images summarised (correctly classified).
        discriminative: Class -> planted objects (for the "on planted" column).

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
        if discriminative:
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
) -> Finding:
    """"Most summaries of a class fall on its planted discriminative objects", pooled over models
    and classes: holds when more than half of the summaries do.

    Args:
        per_model: Model -> class -> summaries.
        discriminative: Class -> planted object names.
        planted_area: Class -> share of the summarised images' pixels that are planted pixels (the
            chance level of the pixel share; optional, for the evidence).
    """
    title = "Most summaries of a class fall on its planted discriminative objects"
    if not any(discriminative.get(c) for c in {c for m in per_model.values() for c in m}):
        return Finding(title, None, "no planted objects are known for these classes (real data)")
    on = total = 0
    for by in per_model.values():
        o, t, _ = planted_summary_share({c: [s.object_pixels for s in ss] for c, ss in by.items()}, discriminative)
        on, total = on + o, total + t
    share = on / total if total else float("nan")
    if total == 0:
        return Finding(title, None, "no summaries were found (no model gave regions that cluster coherently)")
    parts = []
    for m, by in per_model.items():
        o, t, _ = planted_summary_share({c: [s.object_pixels for s in ss] for c, ss in by.items()}, discriminative)
        px = [planted_pixel_share(s.object_pixels, discriminative.get(c, [])) for c, ss in by.items() for s in ss]
        px = [p for p in px if not math.isnan(p)]
        parts.append(f"{m} {o}/{t}" + (f" (mean planted pixel share {np.mean(px):.2f})" if px else ""))
    pixel_shares = [planted_pixel_share(s.object_pixels, discriminative.get(c, []))
                    for by in per_model.values() for c, ss in by.items() for s in ss]
    pixel_shares = [p for p in pixel_shares if not math.isnan(p)]
    if not pixel_shares:
        return Finding(title, None, f"{total} summaries, but no label maps to tell which objects they cover")
    evidence = (
        f"{on} of {total} summaries ({share:.0%}) have a majority of their member pixels on the class's planted "
        f"objects; per model: {', '.join(parts)}; mean planted pixel share over all summaries "
        f"{np.mean(pixel_shares):.2f}"
    )
    if planted_area:
        evidence += "; planted share of the whole images (chance level): " + ", ".join(
            f"{c} {v:.2f}" for c, v in planted_area.items())
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


@experiment("summaries", "Visual summaries (seed 004)")
def run(ctx: Context) -> Section:
    cfg = ctx.config
    data = ctx.data
    models = ctx.base_classifiers()
    per_class = max(2, 2 * int(cfg.ccg_images_per_class))
    idx = ctx.sample(per_class)
    class_names = list(data.class_names)
    discriminative = dict(getattr(data, "discriminative", None) or {})
    object_names = dict(getattr(data, "object_names", None) or {})
    label_maps = getattr(data, "label_maps", None)
    section = Section("summaries", "Visual summaries (seed 004)")
    section.images = int(idx.size)

    per_model: dict[str, dict[str, list[Summary]]] = {}
    n_images: dict[str, dict[str, int]] = {}
    sources: set[str] = set()
    table = Table("summaries", "Visual summaries per model and class (seed 004)",
                  ["model", "class", "summary", "images", "regularity", "coherence", "majority object",
                   "objects (pixel share)", "planted pixel share", "on planted"])
    notes: list[str] = []
    its: dict[str, int] = {}
    skipped: list[str] = []
    for model in models:
        info = ctx.models[model]
        if "perturbation_mask" not in (getattr(info, "methods", None) or ["perturbation_mask"]):
            skipped.append(model)
            continue
        it = iterations_for(info.input_size)
        its[model] = it
        r = ctx.explain(model, "perturbation_mask", idx, desc=f"perturbation mask {model}", iterations=it, seed=int(cfg.seed))
        heat = r.get("raw")
        sources.add("raw" if heat is not None else "heatmap")
        heat = r["heatmap"] if heat is None else heat
        acts, _ = ctx.features(model, idx)
        predicted = np.asarray(r["class_index"]).reshape(-1)
        per_model[model] = {}
        n_images[model] = {}
        dump: dict[str, Any] = {}
        for c, cname in enumerate(class_names):
            sel = np.flatnonzero((data.labels[idx] == c) & (predicted == c))
            n_images[model][cname] = int(sel.size)
            if sel.size < 2:
                notes.append(f"{model} {cname}: {sel.size} correctly classified image(s), not summarised")
                per_model[model][cname] = []
                dump[cname] = {"images": int(sel.size), "summaries": []}
                continue
            gi = idx[sel]
            out = summarize_class(
                heat[sel], acts[sel],
                label_maps=None if label_maps is None else label_maps[gi],
                object_names=object_names, seed=int(cfg.seed),
                images=data.images[gi], image_ids=ctx.image_ids(gi), class_name=cname,
            )
            per_model[model][cname] = out
            planted = discriminative.get(cname, [])
            for s in out:
                share = planted_pixel_share(s.object_pixels, planted) if planted else float("nan")
                table.add(model, cname, s.index, s.size, s.regularity, s.coherence, s.majority_object or "",
                          _objects_text(s), share, ("yes" if falls_on_planted(s.object_pixels, planted) else "no") if planted else "")
            dump[cname] = {"images": int(sel.size), "image_ids": ctx.image_ids(gi), "summaries": summaries_to_json(out)}
            if out:
                rows, titles = summary_figure_rows(out)
                path, rel = ctx.figure(f"summaries_{model}_{cname}")
                plots.image_grid(path, rows, row_titles=titles,
                                 title=f"{model} · {cname}: visual summaries (member crops, last: mean footprint)")
                section.figures.append((rel, f"Visual summaries of {cname} by {model}: one row per summary, "
                                             f"the exemplar's crop first, the members' mean footprint last"))
        atomic_write_text(ctx.out / "summaries" / f"{model}.json", json.dumps({
            "model": model, "version": ctx.version(model), "method": "perturbation_mask",
            "params": {"iterations": it, "seed": int(cfg.seed), "class_index": -1},
            "importance": sorted(sources)[0] if len(sources) == 1 else "mixed",
            "classes": dump,
        }, indent=1))

    if skipped:
        notes.append(f"not summarised, the service offers no perturbation_mask for: {', '.join(skipped)}")
    models = [m for m in models if m not in skipped]
    if notes:
        table.note = "; ".join(notes)
    section.tables.append(table)
    rows = architecture_rows(per_model, n_images, discriminative or None)
    arch = Table("summaries_architectures", "Number of summaries per architecture (seed 004's comparison)",
                 ["model", "summaries", "per class", "mean regularity", "mean coherence", "coverage", "on planted", "images"])
    for row in rows:
        arch.add(*[row[c] for c in arch.columns])
    arch.note = ("coverage: share of a class's summarised images that contribute to at least one summary (mean over "
                 "classes); on planted: share of summaries whose member pixels are mostly planted-object pixels")
    section.tables.append(arch)
    if models:
        path, rel = ctx.figure("summaries_per_architecture")
        plots.grouped_bars(path, models, {c: [len(per_model[m].get(c, [])) for m in models] for c in class_names},
                           "Visual summaries per architecture and class", "summaries")
        section.figures.append((rel, "Number of visual summaries per architecture and class (seed 004: more summaries = more distinct parts used)"))

    planted_area = {}
    if label_maps is not None and discriminative:
        index_of = {v: k for k, v in object_names.items()}
        for c, cname in enumerate(class_names):
            planted_idx = [index_of[n] for n in discriminative.get(cname, []) if n in index_of]
            gi = idx[data.labels[idx] == c]
            if planted_idx and gi.size:
                planted_area[cname] = float(np.isin(label_maps[gi], planted_idx).mean())
    if per_model:
        section.findings.append(summaries_finding(per_model, discriminative, planted_area or None))
    else:
        section.findings.append(Finding("Most summaries of a class fall on its planted discriminative objects", None,
                                        "no served classifier offers perturbation_mask"))
    section.text = (
        f"Seed 004's visual summaries: per model and class, regions of the optimised perturbation masks "
        f"({', '.join(f'{m}: {its[m]}' for m in models) or 'no model'} iterations) of the first {per_class} test images per class that the "
        "model classifies correctly, described by the model's own target-layer activations pooled over each region plus "
        "the region's position and shape (Proposal Flow is not available), clustered with affinity propagation; incoherent "
        "clusters (mean similarity < 0.5) and clusters of fewer than 2 images are dropped and a cluster keeps at most one "
        "region per image. Regularity = share of the class's summarised images that contribute a member. "
        f"Importance map: {' / '.join(sorted(sources)) or '–'} (1 − mask). Summaries are computed offline, not by the "
        "service; they are written to summaries/<model>.json with their exemplar descriptors for "
        "explain.summaries.assign_regions."
    )
    ctx.results["summaries"] = {
        m: {c: len(ss) for c, ss in by.items()} for m, by in per_model.items()
    }
    return section
