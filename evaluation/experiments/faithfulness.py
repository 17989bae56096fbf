"""Faithfulness and sanity checks of every method: deletion/insertion AUC (Petsiuk et al. 2018) and
the cascading model-parameter randomisation test (Adebayo et al. 2018).

Deletion and insertion (``evaluation.faithfulness``), through the service: for each base classifier
and the first ``ccg_images_per_class`` test images of each class, the heat map of every method the
model serves (:func:`method_specs`: the in-graph methods, occlusion with 50-pixel patches at 224,
RISE with :data:`RISE_MASKS` masks, Score-CAM, the optimised perturbation mask with the SCG/CCG
experiment's iterations and seed, so their explanations share the cache) and of a seeded
uniform-noise map (``random``, the baseline a method must beat) orders the pixels; :data:`STEPS` + 1
images per curve (the pixels removed or put back in 5% steps) are classified through
``serving_default`` (``Context.predict``, uint8 on the wire, batched). Deletion replaces pixels by
zeros (the paper); insertion starts from the Gaussian base image of the SCG/CCG experiment
(``evaluation.confidence.base_images``: 17×17, σ = 2.9 at 224, scaled with the input size). ``y`` is
the class the model predicts for the original image. Each image's two curves are cached under
``REPORT_DIR/cache`` (kind ``faithfulness``), so a resumed run repeats no forward pass.

Randomisation: Adebayo et al. re-initialise the layers of the trained model top-down,
cumulatively, and compare the maps with the original model's (Spearman rank correlation and SSIM,
``evaluation.sanity``). The evaluation reaches models only through the service, which serves
SavedModels, and a SavedModel cannot be turned back into a Keras model. So this experiment loads the
*same* SavedModel the service serves (``MODEL_ROOT/<name>/<version>``, the embedded-server case)
in-process with ``tf.saved_model.load``, re-initialises its variables in place
(``evaluation.sanity.reinitialized``: Keras' default initialisers; moving statistics kept) and calls
its method signatures — the very graphs the service runs, so the unrandomised maps are the
service's. Exporting a randomised copy per depth and serving it would add a save and a load per
depth and give the same numbers. With ``--server`` only (no model root on this machine) the test is
left out and the section says so. The maps are measured after :data:`MAX_DEPTHS` evenly spaced
depths (the number of randomised layers, from the logits down to all of them); the explained class
stays the original model's prediction.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import faithfulness as fa
from evaluation import plots
from evaluation import sanity as sa
from evaluation.cache import cache_key
from evaluation.confidence import base_images, zero_base
from evaluation.experiments.confidence_gains import perturbation_iterations
from evaluation.intervals import bootstrap_ci
from evaluation.measures import resize_maps
from evaluation.pipeline import Context, experiment
from evaluation.report import Section
from evaluation.tables import Table

__all__ = ["STEPS", "MAX_DEPTHS", "RISE_MASKS", "RANDOMISATION_PARAMS", "method_specs", "random_maps",
           "measure_depths", "randomisation_maps", "randomisation_scores", "add_auc_rows", "run"]

#: Steps of the deletion/insertion curves (5% of the pixels each).
STEPS = 20
#: Depths at which the randomisation test measures the maps (at most).
MAX_DEPTHS = 8
#: RISE's masks in this experiment (the method's default is 4000, the paper's). 4000 masks took a
#: quarter of ``make demo``'s evaluation; 1000 score deletion AUCs 0.015-0.07 worse on the ``small-planted``
#: models (bench/RESULTS.md, "`make demo` within its budget again"), so the table labels it ``rise 1000``.
RISE_MASKS = 1000
#: Scalar inputs of the randomisation test that differ from the methods' declared defaults. Integrated
#: Gradients at 16 steps instead of 64: it is called at every depth, and on the ``small`` VGG11 and
#: Simple its Spearman curves over the depths equal the 64-step ones within 0.002 (maps ρ 0.97-0.99
#: against 64 steps) at 0.4x the time (bench/RESULTS.md, "The balanced cities become the demo").
RANDOMISATION_PARAMS: dict[str, dict[str, Any]] = {"integrated_gradients": {"steps": 16}}
#: Methods with a signature in the SavedModel (single pass) and their extra inputs.
_SINGLE_PASS_INPUTS = {"dilations": 0, "contrastive": False}


def method_specs(methods: Sequence[str], input_size: Sequence[int] | None, seed: int) -> list[tuple[str, str, dict[str, Any]]]:
    """``(key, method, params)`` for every served method, in the registry's order, plus nothing else.

    Occlusion uses 50-pixel patches at 224, RISE :data:`RISE_MASKS` masks and the perturbation mask the
    SCG/CCG experiment's iterations and seed (so the explanations are shared through the cache).
    """
    out = []
    for m in methods:
        if m == "occlusion":
            out.append(("occlusion 50", m, {"patch_size_at_224": 50}))
        elif m == "rise":
            out.append((f"rise {RISE_MASKS}", m, {"n_masks": RISE_MASKS}))
        elif m == "perturbation_mask":
            out.append(("perturbation", m, {"iterations": perturbation_iterations(input_size), "seed": int(seed)}))
        else:
            out.append((m, m, {}))
    return out


def random_maps(image_ids: Sequence[str], shape: Sequence[int], seed: int) -> np.ndarray:
    """Seeded uniform-noise maps ``(N, H, W)``, the baseline ordering: image ``i``'s map depends only
    on ``(seed, image_ids[i])``, not on its place in the sample, so its cached curves stay valid
    whatever sample a later run draws."""
    return np.stack([np.random.default_rng([int(seed), 1806, zlib.crc32(str(i).encode())]).random(
        (int(shape[0]), int(shape[1]))) for i in image_ids]) if len(image_ids) else np.zeros((0, *shape[:2]))


def measure_depths(num_layers: int, max_depths: int = MAX_DEPTHS) -> list[int]:
    """Evenly spaced depths in ``1 … num_layers`` (always both ends), at most ``max_depths``."""
    if num_layers < 1:
        return []
    return sorted({int(round(d)) for d in np.linspace(1, num_layers, min(max_depths, num_layers))})


# ------------------------------------------------------------------------------------- randomisation
def randomisation_maps(
    version_dir: str | Path,
    images: np.ndarray,
    class_index: np.ndarray,
    methods: Sequence[str],
    depths: Sequence[int] | None = None,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, np.ndarray], list[int], list[str]]:
    """Maps of the original SavedModel and of its cascading randomisations.

    Args:
        version_dir: ``MODEL_ROOT/<name>/<version>``.
        images: uint8 ``(N, H, W, 3)``.
        class_index: int ``(N,)``, the class explained at every depth.
        methods: signature names (single-pass methods).
        depths: numbers of randomised layers (top-down) to measure; default :func:`measure_depths`.
        seed: seed of the re-initialisation (layer ``d`` uses ``default_rng([seed, d])``).
        params: ``{method: {input: value}}`` for the methods' scalar inputs (``steps`` …); the
            others get the registry's declared defaults.

    Returns:
        ``({method: (1 + len(depths), N, H, W) heatmap_upsampled}, depths, layer names top-down)``;
        index 0 is the original model.
    """
    import tensorflow as tf

    from explain import registry  # the declared defaults of the methods' extra signature inputs

    obj = tf.saved_model.load(str(version_dir))
    variables = list(obj.model_variables)
    groups = sa.layer_groups([v.name for v in variables])
    depths = list(measure_depths(len(groups)) if depths is None else depths)
    bad = [d for d in depths if not 1 <= d <= len(groups)]
    if bad:
        raise ValueError(f"depths {bad} are out of range; the model has {len(groups)} layers with parameters")
    x = tf.constant(np.asarray(images, np.uint8))
    idx = tf.constant(np.asarray(class_index, np.int32))

    def maps() -> dict[str, np.ndarray]:
        out = {}
        for m in methods:
            fn = obj.signatures[m]
            specs = fn.structured_input_signature[1]
            extra = {k: tf.constant(v) for k, v in _SINGLE_PASS_INPUTS.items() if k in specs}
            declared = {**registry.get(m).params, **(params or {}).get(m, {})}
            for k, spec in specs.items():  # the method's other inputs: as given, else their declared defaults
                if k not in ("images", "class_index", *extra) and k in declared:
                    extra[k] = tf.constant(declared[k], spec.dtype)
            out[m] = fn(images=x, class_index=idx, **extra)["heatmap_upsampled"].numpy()
        return out

    first = maps()
    result = {m: [first[m]] for m in methods}
    done = 0
    for d in depths:
        while done < d:
            for i in groups[done][1]:
                v = variables[i]
                v.assign(sa.reinitialized(v.name, v.shape, np.random.default_rng([int(seed), done])))
            done += 1
        for m, arr in maps().items():
            result[m].append(arr)
    return {m: np.stack(v) for m, v in result.items()}, depths, [g[0] for g in groups]


def randomisation_scores(maps: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman and SSIM of every depth's maps against depth 0's: ``(D + 1, N)`` each (row 0 is 1)."""
    ref = maps[0]
    return {"spearman": np.stack([sa.spearman(ref, m) for m in maps]),
            "ssim": np.stack([sa.ssim(ref, m, data_range=1.0) for m in maps])}


# ------------------------------------------------------------------------------------- experiment
def _curves(ctx: Context, model: str, key: str, params: dict[str, Any], idx: np.ndarray, maps: np.ndarray,
            x: np.ndarray, y: np.ndarray, bases: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ids = ctx.image_ids(idx)
    keys = [cache_key(kind="faithfulness", model=model, version=ctx.version(model), method=key, params=params,
                      steps=STEPS, seed=ctx.config.seed, image=i) for i in ids]

    def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
        r = fa.deletion_insertion(x[batch], maps[batch], y[batch], lambda im: ctx.predict(model, im),
                                  bases["deletion"][batch], bases["insertion"][batch], steps=STEPS,
                                  seed=ctx.config.seed, batch_size=max(64, ctx.config.batch_size))
        return [{"deletion": r.deletion[j], "insertion": r.insertion[j]} for j in range(len(batch))]

    with ctx.bar(len(keys), f"deletion/insertion {key} {model}") as bar:
        items = ctx.cache.get_or_compute(keys, compute, batch_size=8, progress=bar)
    return {k: np.stack([it[k] for it in items]) for k in ("deletion", "insertion")}


def _randomisation(ctx: Context, model: str, idx: np.ndarray, y: np.ndarray) -> tuple[dict[str, dict[str, np.ndarray]], list[int], list[str]] | None:
    root = ctx.config.model_root
    if root is None:
        return None
    info = ctx.models[model]
    version_dir = Path(root) / model / str(ctx.version(model))
    methods = [m for m in info.methods if m in (info.card or {}).get("signatures", [])]
    if not version_dir.is_dir() or not methods:
        return None
    keys = [cache_key(kind="randomisation", model=model, version=ctx.version(model), seed=ctx.config.seed,
                      max_depths=MAX_DEPTHS, methods=methods, params=RANDOMISATION_PARAMS, image=i, y=int(c))
            for i, c in zip(ctx.image_ids(idx), y)]
    meta: dict[str, Any] = {}

    def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
        maps, depths, layers = randomisation_maps(version_dir, ctx.data.images[idx[batch]], y[batch], methods,
                                                  seed=ctx.config.seed, params=RANDOMISATION_PARAMS)
        meta.update(depths=depths, layers=layers)
        scores = {m: randomisation_scores(a) for m, a in maps.items()}
        out = [{f"{m}/{s}": v[s][:, j] for m, v in scores.items() for s in v} for j in range(len(batch))]
        for item in out:
            item["depths"] = np.asarray(depths)
            item["layers"] = np.asarray(layers)
        return out

    items = ctx.cache.get_or_compute(keys, compute, batch_size=len(keys))
    depths = [int(d) for d in items[0]["depths"]]
    layers = [str(s) for s in items[0]["layers"]]
    return ({m: {s: np.stack([it[f"{m}/{s}"] for it in items], axis=1) for s in ("spearman", "ssim")} for m in methods},
            depths, layers)


_AUC_COLUMNS = ["model", "method", "images", "deletion AUC", "insertion AUC", "insertion − deletion",
                "deletion 95% low", "deletion 95% high", "insertion 95% low", "insertion 95% high",
                "deletion − random", "deletion − random 95% low", "deletion − random 95% high", "deletion beats random",
                "insertion − random", "insertion − random 95% low", "insertion − random 95% high",
                "insertion beats random"]


def _auc_tables() -> tuple[Table, Table, Table]:
    aucs = Table("faithfulness_auc", "Deletion and insertion AUC per method and architecture (Petsiuk et al. 2018)",
                 _AUC_COLUMNS, digits=3,
                 note="Mean over the images of the area under p_y as 5% steps of pixels are removed (deletion, lower "
                      "is better) or put back (insertion, higher is better), most salient first; 'random' orders the "
                      "pixels by seeded noise. Intervals: seeded 95% percentile bootstrap over the images; '− random' "
                      "is the paired mean difference from the random ordering on the same images, and 'beats random' "
                      "says holds / does not hold / inconclusive by whether its interval excludes 0 on the good side.")
    per_image = Table("faithfulness_auc_images", "Deletion and insertion AUC per image",
                      ["model", "method", "image", "deletion AUC", "insertion AUC"], digits=4, inline=False)
    curves_t = Table("faithfulness_curves", "Mean deletion and insertion curves (p_y at each fraction of pixels)",
                     ["model", "method", "curve", *[f"{k / STEPS:g}" for k in range(STEPS + 1)]], digits=3)
    return aucs, per_image, curves_t


def add_auc_rows(aucs: Table, per_image: Table, model: str, image_ids: Sequence[str],
                 per_key: dict[str, dict[str, np.ndarray]], seed: int) -> None:
    """One row per method of ``per_key`` (``{key: {"deletion": (N,), "insertion": (N,)}}`` AUCs, with a
    ``"random"`` key as the paired baseline when present) and its per-image rows."""
    rnd = per_key.get("random")
    for key, a in per_key.items():
        base = None if key == "random" or rnd is None else rnd
        s = fa.auc_summary(a["deletion"], a["insertion"], None if base is None else base["deletion"],
                           None if base is None else base["insertion"], seed=seed)
        aucs.add(model, key, len(a["deletion"]), s.deletion.estimate, s.insertion.estimate,
                 float(np.mean(a["insertion"] - a["deletion"])), s.deletion.low, s.deletion.high, s.insertion.low,
                 s.insertion.high, *s.deletion_vs_random, s.beats_random_deletion if base is not None else "–",
                 *s.insertion_vs_random, s.beats_random_insertion if base is not None else "–")
        for i, d, ins in zip(image_ids, a["deletion"], a["insertion"]):
            per_image.add(model, key, i, float(d), float(ins))


def _spearman_interval(values: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Mean Spearman ρ over the images (NaN = constant map, left out) and its bootstrap interval."""
    if not np.isfinite(values).any():
        return float("nan"), float("nan"), float("nan")
    return tuple(bootstrap_ci(values, n_boot=2000, seed=seed))  # type: ignore[return-value]


@experiment("faithfulness", "Faithfulness: deletion/insertion AUC and the model-randomisation sanity check")
def run(ctx: Context) -> Section:
    section = Section("faithfulness", "Faithfulness: deletion/insertion AUC and the model-randomisation sanity check")
    idx = ctx.sample(ctx.config.ccg_images_per_class)
    section.images = int(idx.size)
    images_u8 = ctx.data.images[idx]
    x = images_u8.astype(np.float32) / 255.0
    bases = {"deletion": zero_base(x), "insertion": base_images(x, "gaussian")}
    aucs, per_image, curves_t = _auc_tables()
    rand_t = Table("faithfulness_randomisation",
                   "Cascading model-parameter randomisation (Adebayo et al. 2018): similarity to the original maps",
                   ["model", "method", "randomised layers", "down to layer", "Spearman", "SSIM", "constant maps",
                    "Spearman 95% low", "Spearman 95% high"],
                   digits=3, note="Layers re-initialised top-down, cumulatively; mean over the images of the Spearman "
                                  "rank correlation and SSIM with the unrandomised model's map (NaN Spearman where a map "
                                  "is constant, counted and left out of the mean and of its seeded 95% bootstrap "
                                  "interval over the images). A method that passes falls towards 0.")
    notes = []
    for model in ctx.base_classifiers():
        info = ctx.models[model]
        p_full = ctx.predict(model, images_u8, tag="original")
        y = np.argmax(p_full, axis=1)
        specs = method_specs(info.methods, getattr(info, "input_size", None), ctx.config.seed)
        mean_curves: dict[str, dict[str, np.ndarray]] = {}
        per_key: dict[str, dict[str, np.ndarray]] = {}
        for key, method, params in [*specs, ("random", "random", {"noise": "per image id"})]:
            if method == "random":
                maps = random_maps(ctx.image_ids(idx), x.shape[1:3], ctx.config.seed)
            else:
                r = ctx.explain(model, method, idx, desc=f"{key} {model}", **params)
                maps = np.asarray(r["heatmap"], np.float64)
                if maps.shape[1:] != x.shape[1:3]:
                    maps = resize_maps(maps, tuple(x.shape[1:3]))
            c = _curves(ctx, model, key, params, idx, maps, x, y, bases)
            per_key[key] = {"deletion": fa.auc(c["deletion"]), "insertion": fa.auc(c["insertion"])}
            mean_curves[key] = {k: v.mean(axis=0) for k, v in c.items()}
            for k, v in mean_curves[key].items():
                curves_t.add(model, key, k, *[float(a) for a in v])
        add_auc_rows(aucs, per_image, model, ctx.image_ids(idx), per_key, ctx.config.seed)
        frac = np.arange(STEPS + 1) / STEPS
        for kind in ("deletion", "insertion"):
            path, rel = ctx.figure(f"faithfulness_{kind}_{model}")
            plots.curves(path, frac, {k: v[kind] for k, v in mean_curves.items()},
                         f"{model}: mean {kind} curves", f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}",
                         "p(y)", ylim=(0.0, 1.0))
            section.figures.append((rel, f"{model}: mean {kind} curve of each method (Petsiuk et al. 2018 Fig. 3)"))
        rnd = _randomisation(ctx, model, idx, y)
        if rnd is None:
            notes.append(f"{model}: randomisation test not run (it needs the model root: --model-root)")
            continue
        scores, depths, layers = rnd
        for m, s in scores.items():
            for row, d in enumerate([0, *depths]):
                sp = s["spearman"][row]
                mean_sp, low, high = _spearman_interval(sp, ctx.config.seed)
                rand_t.add(model, m, d, layers[d - 1] if d else "–", mean_sp, float(np.mean(s["ssim"][row])),
                           int(np.sum(~np.isfinite(sp))), low, high)
        path, rel = ctx.figure(f"faithfulness_randomisation_{model}")
        plots.curves(path, np.asarray([0, *depths]), {m: np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan
                                                                   for r in s["spearman"]]) for m, s in scores.items()},
                     f"{model}: cascading randomisation", "layers randomised (top-down)", "Spearman ρ vs original",
                     ylim=(-0.2, 1.05))
        section.figures.append((rel, f"{model}: Spearman rank correlation of each method's map with the original model's "
                                     f"as layers are re-initialised from the logits down ({len(layers)} layers)"))
    section.tables += [aucs, per_image, curves_t, rand_t]
    section.text = (
        f"Deletion and insertion curves (Petsiuk et al. 2018) of every served method on {idx.size} test images per "
        f"model ({STEPS} steps of {100 / STEPS:g}% of the pixels; deletion to zeros, insertion from the blurred image), "
        "with seeded 95% bootstrap intervals over the images and the paired difference from a random ordering, and "
        "the cascading model-parameter randomisation test (Adebayo et al. 2018) computed in-process on the served "
        "SavedModels (Integrated Gradients there at "
        f"{RANDOMISATION_PARAMS['integrated_gradients']['steps']} steps). y is the class the model predicts for the "
        "original image."
        + ("\n\n" + "; ".join(notes) + "." if notes else "")
    )
    return section
