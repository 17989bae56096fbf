"""Localisation of the planted objects by every explanation method (beyond the seed papers).

On data with object label maps and known planted objects (the synthetic cities), the *target* of
an image is the set of pixels whose object is one of the planted (discriminative) objects of the
image's **true** class. For each method and classifier:

* mass share: ``Σ_target L / Σ L`` of the normalised heat map ``L`` at the input size
  (``measures.mass_share``), against its chance level, the target's share of the image area
  (``measures.area_share``); a method that localises the planted objects puts more mass on them
  than their area;
* pointing game: whether the maximum of ``L`` (first in row-major order) falls on the target
  (``measures.pointing_game``); its chance level is again the area share.

Images whose target is empty (no planted object visible) are left out and counted. Every method
explains the class the model predicts (``class_index = -1``, shared with the other experiments'
cache). The costly methods (the registry's cost class, as ``ListModels`` publishes it: occlusion,
the optimised perturbation mask, Score-CAM) run on the first ``ccg_images_per_class`` images of each class — the same images and
parameters as the ``confidence`` experiment, so their maps come from the cache — the others on
``images_per_class``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import plots
from evaluation.experiments.confidence_gains import perturbation_iterations
from evaluation.measures import area_share, mass_share, pointing_game, resize_maps
from evaluation.pipeline import Context, experiment
from evaluation.report import Section
from evaluation.tables import Table

__all__ = ["is_costly", "localisation_methods", "target_masks", "localisation_scores", "localisation_table", "run"]

#: The methods and parameters of the table (labels come from the registry).
_METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gradcam", {}), ("gradcam_plus_plus", {}), ("layercam", {}), ("saliency", {"dilations": 0}),
    ("excitation_backprop", {"contrastive": True}), ("occlusion", {"patch_size_at_224": 10}),
    ("perturbation_mask", {}), ("scorecam", {}),
)


def is_costly(method: str, info: Any = None) -> bool:
    """Whether ``method`` is in the registry's ``"costly"`` class (run on fewer images).

    The class the server publishes in ``ListModels`` (``info.method_costs``) is used when the
    model's info has it; otherwise the local registry's.
    """
    costs = getattr(info, "method_costs", None) or {}
    if method in costs:
        return costs[method] == "costly"
    from explain import registry

    return registry.get(method).cost == "costly"
#: Example rows in the figure.
EXAMPLES = 4


def localisation_methods(input_size: Sequence[int] | None, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, registry method, params)`` of every method, in table order.

    Parameters match the ``confidence`` experiment's where both use a method (cache sharing).
    """
    from explain import registry

    it = perturbation_iterations(input_size)
    out = []
    for method, params in _METHODS:
        if method == "perturbation_mask":
            params = {"iterations": it, "seed": int(seed)}
        out.append((registry.get(method).label_for(params), method, dict(params)))
    return out


def target_masks(
    label_maps: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    object_names: Mapping[int, str],
    discriminative: Mapping[str, Sequence[str]],
) -> np.ndarray:
    """Pixels of each image whose object is planted in the image's true class.

    Args:
        label_maps: ``(N, H, W)`` integer object indices.
        labels: ``(N,)`` true classes.
        class_names: Names of the classes.
        object_names: Object index -> name.
        discriminative: Class name -> planted object names.

    Returns:
        bool ``(N, H, W)``.
    """
    lm = np.asarray(label_maps)
    lab = np.asarray(labels)
    to_idx = {v: k for k, v in object_names.items()}
    out = np.zeros(lm.shape, dtype=bool)
    for c, name in enumerate(class_names):
        objs = [to_idx[n] for n in discriminative.get(name, ()) if n in to_idx]
        sel = lab == c
        if objs and sel.any():
            out[sel] = np.isin(lm[sel], objs)
    return out


def localisation_scores(heatmaps: np.ndarray, targets: np.ndarray) -> dict[str, float | int]:
    """Mean mass share, area share, their ratio and the pointing-game hit rate.

    Images with an empty target are left out (``left_out``). A constant ("flat") map has neither a
    mass distribution nor a maximum (the service normalises it to all zeros), so it is left out of
    the mass share and the pointing game and counted in ``flat``.

    Returns:
        ``images`` (with a target), ``left_out``, ``flat``, ``mass_share``, ``area_share`` (over the
        images with a target), ``ratio`` (mean mass share / mean area share), ``pointing`` (hit rate),
        ``above_chance`` (share of the non-flat images whose mass share exceeds their area share).
    """
    maps = np.asarray(heatmaps, dtype=np.float64)
    t = np.asarray(targets, dtype=bool)
    keep = t.reshape(t.shape[0], -1).any(axis=1)
    n = int(keep.sum())
    nan = float("nan")
    if n == 0:
        return {"images": 0, "left_out": int(t.shape[0]), "flat": 0, "mass_share": nan, "area_share": nan,
                "ratio": nan, "pointing": nan, "above_chance": nan}
    maps, t = maps[keep], t[keep]
    flat_maps = maps.reshape(n, -1).max(axis=1) <= maps.reshape(n, -1).min(axis=1)
    ar = area_share(t)
    a_mean = float(ar.mean())
    ok = ~flat_maps
    if ok.any():
        ms = mass_share(maps[ok], t[ok])
        hits = pointing_game(maps[ok], t[ok])
        m_mean = float(np.mean(ms))
        pointing = float(hits.mean())
        above = float(np.mean(ms > ar[ok]))
    else:
        m_mean = pointing = above = nan
    return {
        "images": n,
        "left_out": int(keep.size - n),
        "flat": int(flat_maps.sum()),
        "mass_share": m_mean,
        "area_share": a_mean,
        "ratio": m_mean / a_mean if a_mean > 0 and np.isfinite(m_mean) else nan,
        "pointing": pointing,
        "above_chance": above,
    }


def localisation_table(scores: Mapping[tuple[str, str], Mapping[str, Any]], note: str = "") -> Table:
    """Rows (method, model) with the scores of :func:`localisation_scores`."""
    t = Table("localisation", "Localisation of the planted objects of the true class: mass share vs area share "
              "and pointing game", ["method", "model", "images", "left out (no planted object)", "flat maps", "mass share",
                                    "area share (chance)", "mass / area", "pointing game", "images above chance"],
              digits=3, note=note)
    for (method, model), s in scores.items():
        t.add(method, model, s["images"], s["left_out"], s["flat"], s["mass_share"], s["area_share"], s["ratio"], s["pointing"],
              s["above_chance"])
    return t


def _at_size(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if maps.shape[1:] == tuple(shape):
        return maps
    return np.clip(resize_maps(maps, tuple(int(s) for s in shape)), 0.0, 1.0)


@experiment("localisation", "Localisation of the planted objects by every method")
def run(ctx: Context) -> Section:
    from models.datasets.ade20k import INDEX_TO_NAME

    section = Section("localisation", "Localisation of the planted objects by every method")
    data = ctx.data
    discriminative = getattr(data, "discriminative", None) or {}
    if data.label_maps is None or not discriminative:
        section.text = ("The evaluation images have no label maps or no known planted objects (real data), so the "
                        "localisation of the planted objects cannot be measured.")
        return section
    names = dict(data.object_names or {}) or dict(INDEX_TO_NAME)
    idx_all = ctx.sample(ctx.config.images_per_class)
    idx_costly = ctx.sample(min(ctx.config.ccg_images_per_class, ctx.config.images_per_class))
    section.images = int(idx_all.size)
    scores: dict[tuple[str, str], dict[str, Any]] = {}
    maps_by: dict[tuple[str, str], np.ndarray] = {}
    idx_by: dict[tuple[str, str], np.ndarray] = {}
    skipped: list[str] = []
    for model in ctx.classifiers:
        info = ctx.models[model]
        available = set(getattr(info, "methods", None) or [])
        for label, method, params in localisation_methods(getattr(info, "input_size", None), ctx.config.seed):
            if available and method not in available:
                skipped.append(f"{label} ({model})")
                continue
            idx = idx_costly if is_costly(method, info) else idx_all
            r = ctx.explain(model, method, idx, desc=f"{label} {model}", **params)
            lm = data.label_maps[idx]
            maps = _at_size(np.asarray(r["heatmap"], np.float64), lm.shape[1:])
            targets = target_masks(lm, data.labels[idx], data.class_names, names, discriminative)
            scores[(label, model)] = localisation_scores(maps, targets)
            maps_by[(label, model)] = maps
            idx_by[(label, model)] = idx
    costly = [m for _, m, _ in localisation_methods(None, 0) if is_costly(m)]
    note = (f"cheap methods on {idx_all.size} images ({ctx.config.images_per_class} per class); "
            f"{', '.join(costly)} on {idx_costly.size} ({min(ctx.config.ccg_images_per_class, ctx.config.images_per_class)} per class); "
            "target = pixels of the planted objects of the true class; chance level of both scores = area share; "
            "flat (constant) maps are left out of the mass share and the pointing game")
    if skipped:
        note += f"; not served: {', '.join(skipped)}"
    section.tables.append(localisation_table(scores, note))
    section.text = (
        "For every method and classifier: the share of the heat map's mass on the planted objects of the image's true "
        "class (mass share) against the share of the image those objects cover (area share, the chance level), and the "
        "pointing game (the map's maximum on a planted object). Maps explain the predicted class, normalised to [0, 1] "
        "at the input size. Not from the seed papers: a check that the synthetic data's known discriminative objects "
        "make possible."
    )
    methods = list(dict.fromkeys(k[0] for k in scores))
    models = list(dict.fromkeys(k[1] for k in scores))
    if scores:
        for metric, ylabel in (("mass_share", "mass share"), ("pointing", "pointing-game hit rate")):
            series = {m: [scores.get((meth, m), {}).get(metric, np.nan) for meth in methods] for m in models}
            series["chance (area share)"] = [float(np.nanmean([scores.get((meth, m), {}).get("area_share", np.nan)
                                                               for m in models])) for meth in methods]
            path, rel = ctx.figure(f"localisation_{metric}")
            plots.grouped_bars(path, methods, series, f"{ylabel} on the planted objects", ylabel)
            section.figures.append((rel, f"{ylabel.capitalize()} on the planted objects per method and model, with the "
                                         "chance level"))
        # examples: images of the costly subset, one model
        show_model = next((m for m in ("vgg11", *models) if m in models), models[0])
        pos = []
        for c in np.unique(data.labels[idx_costly]):
            pos += [int(j) for j in np.flatnonzero(data.labels[idx_costly] == c)[:2]]
        pos = pos[:EXAMPLES]
        rows = []
        shown = [meth for meth in methods if (meth, show_model) in maps_by]
        for j in pos:
            i = idx_costly[j]
            target = target_masks(data.label_maps[[i]], data.labels[[i]], data.class_names, names, discriminative)[0]
            row = [data.images[i], data.label_maps[i].astype(np.float32), target.astype(np.float32)]
            for meth in shown:
                k = int(np.flatnonzero(idx_by[(meth, show_model)] == i)[0])
                row.append(plots.heatmap_overlay(data.images[i], maps_by[(meth, show_model)][k]))
            rows.append(row)
        if rows:
            path, rel = ctx.figure("localisation_examples")
            plots.image_grid(path, rows, col_titles=["image", "label map", "planted (target)", *shown],
                             row_titles=[data.class_names[data.labels[idx_costly[j]]] for j in pos],
                             title=f"{show_model}: heat maps of every method")
            section.figures.append((rel, f"Examples: image, object label map, planted-object target and each "
                                         f"method's heat map ({show_model})"))
    ctx.results["localisation"] = {f"{a}|{b}": s for (a, b), s in scores.items()}
    return section
