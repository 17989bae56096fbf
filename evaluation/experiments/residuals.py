"""Average residuals between models (seed 000 eq. 5, seed 001 eq. 2 and Table 2).

``AR(m1, m2) = Σ_ij |mask_norm_m1 − mask_norm_m2| / (H·W)`` per image, with both Grad-CAM maps
normalised per image and resized to the input size (the service returns them upsampled), then
averaged over the test images. Pairs of different architectures and pairs of retrained copies of
one architecture go in one table laid out like seed 001 Table 2; the histogram over images is
seed 000 Fig. 3. Finding 1 (:func:`evaluation.findings.residual_finding_ci`) compares the two kinds
with a seeded 95% bootstrap interval paired over the images and names each model's map grid.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

from evaluation import plots
from evaluation.findings import N_BOOT, grid_text, residual_finding_ci
from evaluation.intervals import bootstrap_ci
from evaluation.measures import average_residual
from evaluation.pipeline import Context, experiment
from evaluation.report import Finding, Section
from evaluation.tables import Table

__all__ = ["model_pairs", "residual_table", "residual_finding", "run"]

_PRETTY = {"vgg11": "VGG11", "resnet18": "ResNet18", "simple": "Simple", "simpler": "Simpler"}


def _pretty(name: str) -> str:
    base = name.removesuffix("_retrained")
    return _PRETTY.get(base, base) + (" retrained" if name.endswith("_retrained") else "")


def model_pairs(classifiers: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(m1, m2, kind)`` in seed 001 Table 2's order.

    ``kind`` is ``"architectures"`` for two different base architectures (retrained copies are not
    paired with other architectures) and ``"initialisations"`` for an architecture and its
    retrained copy.
    """
    base = [c for c in classifiers if not c.endswith("_retrained")]
    order = {n: i for i, n in enumerate(["vgg11", "resnet18", "simple", "simpler"])}
    base.sort(key=lambda n: (order.get(n, 99), n))
    pairs = [(a, b, "architectures") for a, b in combinations(base, 2)]
    pairs += [(a, f"{a}_retrained", "initialisations") for a in base if f"{a}_retrained" in classifiers]
    return pairs


def residual_table(per_pair: dict[tuple[str, str, str], np.ndarray], seed: int = 0) -> Table:
    """Seed 001 Table 2: mean (and spread) of AR per model pair, with the mean's seeded 95% bootstrap
    interval over the images."""
    t = Table("residuals", "Average residual AR between Grad-CAM maps (seed 001 Table 2)",
              ["models (m1-m2)", "kind", "mean AR", "std", "median", "images", "95% low", "95% high"])
    for (a, b, kind), values in per_pair.items():
        iv = bootstrap_ci(values, n_boot=N_BOOT, seed=seed)
        t.add(f"{_pretty(a)}-{_pretty(b)}", "different architectures" if kind == "architectures" else "different initialisations",
              float(np.mean(values)), float(np.std(values)), float(np.median(values)), int(values.size), iv.low, iv.high)
    return t


def residual_finding(per_pair: dict[tuple[str, str, str], np.ndarray], grids: dict[str, str] | None = None,
                     seed: int = 0) -> Finding:
    """SPEC §4 finding 1: AR between architectures exceeds AR between retrained copies, with a
    seeded bootstrap interval and each model's grid (:func:`evaluation.findings.residual_finding_ci`)."""
    return residual_finding_ci(per_pair, grids or {}, n_boot=N_BOOT, seed=seed)


@experiment("residuals", "Average residuals between models")
def run(ctx: Context) -> Section:
    idx = ctx.sample(ctx.config.images_per_class)
    maps = {m: ctx.explain(m, "gradcam", idx)["heatmap"] for m in ctx.classifiers}
    per_pair = {(a, b, k): average_residual(maps[a], maps[b]) for a, b, k in model_pairs(ctx.classifiers)}
    section = Section("residuals", "Average residuals between models")
    section.images = int(idx.size)
    section.text = (
        "AR(m1, m2) = Σ|mask_m1 − mask_m2| / (H·W) per test image (seed 000 eq. 5), with Grad-CAM maps "
        "normalised to [0, 1] and upsampled to the input size; the table lists the mean over images."
    )
    section.tables.append(residual_table(per_pair, ctx.config.seed))
    per_image = Table("residuals_per_image", "AR per image and model pair (the data of the histograms)",
                      ["models (m1-m2)", "image_id", "AR"], inline=False)
    for (a, b, _), values in per_pair.items():
        for image_id, v in zip(ctx.image_ids(idx), values):
            per_image.add(f"{_pretty(a)}-{_pretty(b)}", image_id, float(v))
    section.tables.append(per_image)
    path, rel = ctx.figure("residual_histograms")
    plots.histograms(path, {f"{_pretty(a)}-{_pretty(b)}": v for (a, b, _), v in per_pair.items()},
                     "AR per image (seed 000 Fig. 3)", "average residual", bins=20, range_=(0.0, 1.0))
    section.figures.append((rel, "Histogram of AR over test images for each model pair"))
    # examples: the same images explained by every model
    show = idx[: min(4, idx.size)]
    pos = [int(np.flatnonzero(idx == i)[0]) for i in show]
    rows = [[ctx.data.images[i] for i in show]] + [
        [plots.heatmap_overlay(ctx.data.images[i], maps[m][p]) for i, p in zip(show, pos)] for m in ctx.classifiers
    ]
    path, rel = ctx.figure("residual_examples")
    plots.image_grid(path, rows, row_titles=["image", *[_pretty(m) for m in ctx.classifiers]], title="Grad-CAM per model")
    section.figures.append((rel, "Grad-CAM of the same test images by every model"))
    grids = {m: grid_text(ctx.models[m].target_shape) for m in ctx.classifiers}
    section.findings.append(residual_finding(per_pair, grids, ctx.config.seed))
    ctx.results["residuals"] = {f"{a}|{b}": float(np.mean(v)) for (a, b, _), v in per_pair.items()}
    return section
