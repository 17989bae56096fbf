"""Causal agreement: do the methods find the evidence a model actually used? (issue 12, SPEC §5)

On the synthetic cities the generator re-renders every sampled test scene as *twins*: the same
scene without one of its planted objects, and without all of them
(:func:`models.datasets.twins.render_twins`, rebuilt from the model card's ``dataset`` entry). For
each base classifier (retrained copies left out):

* causal importance of object ``p`` in image ``I`` of true class ``y``:
  ``Δ_p = p_y(I) − p_y(I without p)`` (:func:`evaluation.twins.causal_importance`);
* each method explains the **true** class ``y`` (``class_index = y``); its mass on ``p`` is the sum
  of the map (normalised, at the input size) over ``p``'s pixels in ``I``;
* per image with at least two planted objects present: Spearman's ρ between masses and ``Δ`` and
  top-1 agreement (:func:`evaluation.twins.causal_agreement`), averaged per method and model;
* the object-free twins say what a model infers from the scene alone: mean ``p_y`` there (chance
  is ``1 / classes``), and the mean ``Δ`` of each planted object.

The single-pass methods run on ``images_per_class`` images per class, occlusion on
``ccg_images_per_class`` (Score-CAM and the optimised mask are left out: their cost).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from evaluation.measures import resize_maps
from evaluation.pipeline import Context, experiment
from evaluation.report import Section
from evaluation.tables import Table
from evaluation.twins import causal_agreement, causal_importance, object_mass, summarise_agreement

__all__ = ["CAUSAL_METHODS", "causal_methods", "cities_entry", "model_twin_probabilities", "true_class_maps", "run"]

#: ``(registry method, params)``; params as in the localisation experiment (labels come from the registry).
CAUSAL_METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("gradcam", {}),
    ("gradcam_plus_plus", {}),
    ("layercam", {}),
    ("saliency", {"dilations": 0}),
    ("excitation_backprop", {"contrastive": True}),
    ("occlusion", {"patch_size_at_224": 10}),
)


def causal_methods() -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, registry method, params)`` of :data:`CAUSAL_METHODS`, the label the registry's
    :meth:`~explain.registry.Method.label_for` those params (e.g. ``"C-MWP"``, ``"occlusion 10"``)."""
    from explain import registry

    return [(registry.get(method).label_for(params), method, dict(params)) for method, params in CAUSAL_METHODS]


def _costly_methods() -> tuple[str, ...]:
    """The methods of :data:`CAUSAL_METHODS` in the registry's ``"costly"`` class (run on fewer images)."""
    from evaluation.experiments.localisation import is_costly

    return tuple(m for m, _ in CAUSAL_METHODS if is_costly(m))


def cities_entry(ctx: Context) -> Mapping[str, Any] | None:
    """The ``dataset`` entry of the first base classifier trained on the synthetic cities."""
    from models.datasets.rebuild import dataset_kind

    for model in ctx.base_classifiers():
        dataset = (ctx.models[model].card or {}).get("dataset")
        if dataset_kind(dataset) == "cities":
            return dataset
    return None


def model_twin_probabilities(ctx: Context, model: str, twins: Any) -> dict[str, np.ndarray]:
    """``p_y`` of the true class on the scenes ``(N,)``, their twins without each object ``(N, P)``
    and the object-free twins ``(N,)``, plus the scenes' predictions ``(N,)`` (cached per image)."""
    y = twins.labels
    n, p = twins.present.shape
    rows = np.arange(n)
    scene = ctx.predict(model, twins.images, tag="twin-scene")
    flat = twins.without.reshape((n * p, *twins.without.shape[2:]))
    without = ctx.predict(model, flat, tag="twin-without").reshape(n, p, -1)
    empty = ctx.predict(model, twins.empty, tag="twin-empty")
    return {"scene": scene[rows, y], "without": without[rows, :, y], "empty": empty[rows, y],
            "predicted": scene.argmax(axis=1)}


def _method_agreement(ctx: Context, model: str, method: str, params: Mapping[str, Any], idx: np.ndarray,
                      rows: np.ndarray, twins: Any, delta: np.ndarray, label: str) -> dict[str, float]:
    """Agreement of one method on the twins' rows ``rows`` (data indices ``idx``), per true class."""
    heat = true_class_maps(ctx, model, method, params, idx, twins.labels[rows], label)
    maps = twins.label_maps[rows]
    if heat.shape[1:] != maps.shape[1:]:
        heat = resize_maps(heat, tuple(int(s) for s in maps.shape[1:]))
    masses = object_mass(heat, maps, twins.object_indices)
    return summarise_agreement(causal_agreement(masses, delta[rows], twins.present[rows]))


def true_class_maps(ctx: Context, model: str, method: str, params: Mapping[str, Any], idx: np.ndarray,
                    labels: np.ndarray, label: str) -> np.ndarray:
    """Heat maps ``(N, H, W)`` of the true classes ``labels`` of the images ``idx``.

    The images are first explained for the predicted class, as every other experiment does, so
    the cached explanations of the localisation and SCG/CCG experiments are reused; only the
    images the model gets wrong are explained again for their true class.
    """
    r = ctx.explain(model, method, idx, desc=f"{label} {model}", **params)
    heat = np.asarray(r["heatmap"], np.float64).copy()
    wrong = np.asarray(r["class_index"]).ravel() != labels
    for c in np.unique(labels[wrong]):
        sel = np.flatnonzero(wrong & (labels == c))
        again = ctx.explain(model, method, idx[sel], desc=f"{label} {model} class {c}", class_index=int(c), **params)
        heat[sel] = np.asarray(again["heatmap"], np.float64)
    return heat


def _probability_rows(model: str, probs: Mapping[str, np.ndarray], twins: Any, num_classes: int,
                      table: Table, objects_table: Table) -> None:
    y = twins.labels
    table.add(model, int(y.size), float((probs["predicted"] == y).mean()), float(probs["scene"].mean()),
              float(probs["empty"].mean()), 1.0 / num_classes, float((probs["empty"] > 0.5).mean()))
    delta = causal_importance(probs["scene"], probs["without"])
    for j, name in enumerate(twins.objects):
        here = twins.present[:, j]
        if here.any():
            d = delta[here, j]
            objects_table.add(model, name, int(here.sum()), float(d.mean()), float((d > 0.05).mean()))


def _not_applicable(section: Section, why: str) -> Section:
    section.text = f"Causal agreement needs the synthetic cities' twins: {why}."
    return section


@experiment("causal", "Causal agreement of the explanations with object-removal twins")
def run(ctx: Context) -> Section:
    from models.datasets.rebuild import cities_config_of
    from models.datasets.twins import render_twins

    section = Section("causal", "Causal agreement of the explanations with object-removal twins")
    data, dataset = ctx.data, cities_entry(ctx)
    if dataset is None or data is None or data.label_maps is None or data.ids is None:
        return _not_applicable(section, "no classifier was trained on them, or the images have no ids/label maps")
    idx = ctx.sample(ctx.config.images_per_class)
    try:
        twins = render_twins(ctx.image_ids(idx), int(dataset["image_size"]), int(dataset["seed"]),
                             cities_config_of(dataset))
    except ValueError as err:
        return _not_applicable(section, str(err))
    if not np.array_equal(twins.images, data.images[idx]):
        return _not_applicable(section, "the rendered scenes differ from the evaluation images")
    costly = ctx.sample(min(ctx.config.ccg_images_per_class, ctx.config.images_per_class))
    costly_rows = np.searchsorted(idx, costly)
    section.images = int(idx.size)
    agree = Table("causal_agreement", "Mass per object against causal importance (Spearman ρ, top-1 agreement)",
                  ["method", "model", "images (≥ 2 objects)", "mean ρ", "top-1 agreement", "top-1 chance"], digits=3)
    probs_t = Table("causal_object_free", "What the models infer from the scene alone (object-free twins)",
                    ["model", "images", "accuracy", "mean p_y(scene)", "mean p_y(object-free twin)", "chance",
                     "object-free twins with p_y > 0.5"], digits=3)
    objects_t = Table("causal_importance", "Causal importance Δ = p_y(I) − p_y(I without the object)",
                      ["model", "object", "images with it", "mean Δ", "share with Δ > 0.05"], digits=3)
    summary: dict[str, dict[str, float]] = {}
    for model in ctx.base_classifiers():
        info = ctx.models[model]
        probs = model_twin_probabilities(ctx, model, twins)
        _probability_rows(model, probs, twins, len(data.class_names), probs_t, objects_t)
        delta = causal_importance(probs["scene"], probs["without"])
        for label, method, params in causal_methods():
            if info.methods and method not in info.methods:
                continue
            rows, sub = (costly_rows, costly) if method in _costly_methods() else (np.arange(idx.size), idx)
            s = _method_agreement(ctx, model, method, params, sub, rows, twins, delta, label)
            summary[f"{label}|{model}"] = s
            agree.add(label, model, s["images_top1"], s["rho"], s["top1"], s["chance"])
    section.tables += [agree, probs_t, objects_t]
    section.text = (
        "Each sampled test scene is rendered again without each of its planted objects and without all of them "
        "(same random draws: only the removed object's pixels change). Δ = p_y(scene) − p_y(twin) is the object's "
        "causal importance for the model; each method's mass on an object is the sum of its map (true class y) over "
        "the object's pixels. Per image with at least two planted objects: Spearman's ρ between masses and Δ, and "
        "whether the object with the most mass has the largest Δ (top-1; chance = 1 / objects present). "
        f"Single-pass methods on {idx.size} images, {', '.join(_costly_methods())} on {costly.size}.")
    ctx.results["causal"] = summary
    return section
