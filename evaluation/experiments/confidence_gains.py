"""Confidence gains SCG and CCG of importance masks (seed 003 Table 1, eqs. 2 and 3).

For each model of :data:`MODELS` that is served (default VGG11 and ResNet18 only: CCG classifies
every hybrid at every growth step, so it is the costliest experiment; every other base classifier
is left out on purpose — edit :data:`MODELS` to add them) and the first ``ccg_images_per_class``
test images of each class:

* heat maps of the importance functions of seed 003 and two more (:data:`SINGLE_METHODS`):
  occlusion with patches of 10, 50 and 100 pixels at 224 (``patch_size_at_224``), gradient saliency
  dilated 0, 2 and 5 times (``dilations``), contrastive MWP (``excitation_backprop``,
  ``contrastive=True``), Grad-CAM, and the optimised perturbation mask (seed 004) with
  :func:`perturbation_iterations` iterations (300, the authors' default, at 224 px and above;
  :data:`SMALL_IMAGE_ITERATIONS` below that, where the tiny/small presets run on a CPU);
* binary masks ``M`` = the top ρ of each heat map (``explain.masks.top_rho``), ρ ∈ {5%, 25%}, and
  the intersections of pairs of them (:data:`PAIRS`: seed 003's occ10 ∩ grad5, C-MWP ∩ grad5,
  C-MWP ∩ occ10, plus the Grad-CAM pairs);
* base images ``I_K`` with the Gaussian kernel ``G_k`` scaled with the input side ``s``
  (``evaluation.confidence.blur_params``: radius ``round(8·s/224)``, size ``2r + 1``, σ = 2.9·s/224;
  17×17 and σ = 2.9 at 224 px as in seed 003, 7×7 and σ = 1.24 at the tiny preset's 96 px) and the
  zero kernel ``Z_k`` (``evaluation.confidence.base_images``); hybrids ``I_{M,K} = M·I + (1 − M)·I_K``
  with ``M`` itself, as Algorithm 1 starts (:data:`DILATE_FIRST` = False; True grows it once first);
* SCG (eq. 2) and CCG (eq. 3; ``M`` grown by 3×3 dilations until the hybrid is classified as ``y``,
  at most 50 growths, ``evaluation.confidence.ccg``), with the distribution of the growth steps
  (table ``confidence_growths`` and a histogram per model).

``y`` is the class the model predicts for the original image: the class every heat map explains
(``class_index = -1``); the text reports how many sampled images the model gets wrong.

Every (method, image) mask of one model, kernel and ρ goes through one call of ``ccg``, so each
growth step classifies all pending hybrids of all methods in one batch (the service is asked in
requests of at most ``max(64, batch_size)`` images); a call holds at most :data:`MAX_ROWS` masks.
Hybrids are blended in float32 and **quantised to uint8 by ``Context.predict``**
(``rint(255·x)``, the wire format) before they are classified; with binary masks a hybrid pixel is
either the original pixel (exact) or the base pixel, and ``p(I_K)`` is computed on the identically
quantised base image. Hybrid predictions are cached by pixel content (tag ``"hybrid"``), so a resumed
run repeats no forward pass.

Images left out (``p(I) − p(I_K) ≤ 0``, a base image already classified as ``y``, negative gain,
more than 50 growths, an empty intersection) are counted per method, kernel and ρ in a table; the
images whose base image is classified as ``y`` are also counted per model and kernel (table
``confidence_base_images``): for them any mask stops Algorithm 1 at once, so CCG would measure only
the mask's area. An empty intersection (the two methods share no
top-ρ pixel) is left out of both SCG and CCG: its hybrid is the base image (SCG would be 0) and eq. 3
would be 0/0; how often that happens is itself a result (column ``empty_mask``).

Reference finding 3 (SPEC §4) is evaluated per case (model, kernel, ρ, pair): the intersection's
mean CCG must exceed each single method's, shown by paired 95% bootstrap intervals over the images
(holds / does not hold / inconclusive per case, :func:`finding3_cases`); the finding is the verdict
of a strict majority of the evaluated cases (cases with a NaN mean are not evaluated).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from evaluation import plots
from evaluation.confidence import (CCGResult, base_classified_as_y, base_images, blur_params, ccg, scg_for_masks,
                                   summarize)
from evaluation.findings import grid_text, overall_verdict
from evaluation.intervals import VERDICTS, Interval, compare_intervals, paired_bootstrap_ci
from evaluation.measures import resize_maps
from evaluation.pipeline import Context, experiment
from evaluation.report import Finding, Section
from evaluation.tables import Table
from explain.masks import intersect, top_rho

__all__ = [
    "MODELS",
    "RHOS",
    "KERNELS",
    "MAX_GROWTH",
    "MethodSpec",
    "SINGLE_METHODS",
    "PAIRS",
    "perturbation_iterations",
    "single_methods",
    "method_masks",
    "evaluate_masks",
    "table1",
    "exclusion_rows",
    "utilisation_row",
    "growth_counts",
    "growth_bin_labels",
    "finding3_cases",
    "finding3",
    "run",
]

#: Models evaluated (those of them that are served); the costliest experiment, so two by default.
MODELS: tuple[str, ...] = ("vgg11", "resnet18")
#: Mask sizes ρ (seed 003 §5).
RHOS: tuple[float, ...] = (0.05, 0.25)
#: Base-image kernels (seed 003 §5): 17×17 Gaussian blur and zeros.
KERNELS: tuple[str, ...] = ("gaussian", "zero")
KERNEL_LABELS = {"gaussian": "G_k", "zero": "Z_k"}
#: CCG growth cap (seed 003 §5).
MAX_GROWTH = 50
#: Grow ``M`` once before the first hybrid (SPEC §3's earlier reading); seed 003 Alg. 1 does not.
DILATE_FIRST = False
#: Bins of the growth-step distribution: [0, 1), [1, 2), [2, 5), [5, 10), [10, 20), [20, 51).
GROWTH_BINS: tuple[int, ...] = (0, 1, 2, 5, 10, 20, MAX_GROWTH + 1)
#: Perturbation-mask iterations at 224 px and above (the authors' default) and below.
PERTURBATION_ITERATIONS = 300
SMALL_IMAGE_ITERATIONS = 100
#: Most masks per ``ccg`` call (bounds the memory of the stacked images, bases and hybrids).
MAX_ROWS = 384


@dataclass(frozen=True)
class MethodSpec:
    """One importance function with its parameters; ``key`` names its row in Table 1."""

    key: str
    label: str
    param: str
    method: str
    params: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


#: Single importance functions, in Table 1 order (the perturbation mask's iterations are filled in
#: per model by :func:`single_methods`).
SINGLE_METHODS: tuple[MethodSpec, ...] = (
    MethodSpec("occ 10", "occ", "10", "occlusion", (("patch_size_at_224", 10),)),
    MethodSpec("occ 50", "occ", "50", "occlusion", (("patch_size_at_224", 50),)),
    MethodSpec("occ 100", "occ", "100", "occlusion", (("patch_size_at_224", 100),)),
    MethodSpec("grad 0", "grad", "0", "saliency", (("dilations", 0),)),
    MethodSpec("grad 2", "grad", "2", "saliency", (("dilations", 2),)),
    MethodSpec("grad 5", "grad", "5", "saliency", (("dilations", 5),)),
    MethodSpec("C-MWP", "C-MWP", "", "excitation_backprop", (("contrastive", True),)),
    MethodSpec("Grad-CAM", "Grad-CAM", "", "gradcam", ()),
    MethodSpec("perturbation", "perturbation mask", "", "perturbation_mask", ()),
)
#: Pairs whose intersection is evaluated (seed 003 §5 plus the Grad-CAM pairs).
PAIRS: tuple[tuple[str, str], ...] = (
    ("occ 10", "grad 5"),
    ("C-MWP", "grad 5"),
    ("C-MWP", "occ 10"),
    ("Grad-CAM", "grad 5"),
    ("Grad-CAM", "occ 10"),
    ("Grad-CAM", "C-MWP"),
)


def pair_key(a: str, b: str) -> str:
    return f"{a} ∩ {b}"


def perturbation_iterations(input_size: Sequence[int] | None) -> int:
    """300 iterations (seed 004's authors) when the input side is at least 224, else 100."""
    if input_size is None or min(int(s) for s in list(input_size)[:2]) >= 224:
        return PERTURBATION_ITERATIONS
    return SMALL_IMAGE_ITERATIONS


def single_methods(input_size: Sequence[int] | None, seed: int, available: Sequence[str] | None = None) -> list[MethodSpec]:
    """:data:`SINGLE_METHODS` with the perturbation mask's iterations and seed set, restricted to the
    registry methods in ``available`` (all when ``None`` or empty)."""
    out = []
    for spec in SINGLE_METHODS:
        if available and spec.method not in available:
            continue
        if spec.method == "perturbation_mask":
            it = perturbation_iterations(input_size)
            spec = MethodSpec(spec.key, spec.label, str(it), spec.method, (("iterations", it), ("seed", int(seed))))
        out.append(spec)
    return out


def method_masks(
    heatmaps: Mapping[str, np.ndarray], rho: float, pairs: Sequence[tuple[str, str]] = PAIRS
) -> dict[str, np.ndarray]:
    """Top-ρ masks of every heat map and the intersections of the pairs whose two maps exist.

    Returns:
        ``{key: bool (N, H, W)}``: the single methods in the order of ``heatmaps``, then
        ``"a ∩ b"`` for each pair.
    """
    masks = {k: top_rho(h, rho) for k, h in heatmaps.items()}
    for a, b in pairs:
        if a in masks and b in masks:
            masks[pair_key(a, b)] = intersect(masks[a], masks[b])
    return masks


@dataclass
class MaskScores:
    """SCG and CCG of the masks of one model, kernel and ρ, split per mask key."""

    scg: dict[str, np.ndarray]
    ccg: dict[str, np.ndarray]
    growths: dict[str, np.ndarray]
    reasons: dict[str, list[str | None]]
    calls: list[dict[str, Any]]


def evaluate_masks(
    images: np.ndarray,
    masks: Mapping[str, np.ndarray],
    labels: np.ndarray,
    classify,
    base: np.ndarray,
    p_full: np.ndarray,
    p_base: np.ndarray,
    max_growth: int = MAX_GROWTH,
    max_rows: int = MAX_ROWS,
    dilate_first: bool = DILATE_FIRST,
) -> MaskScores:
    """SCG and CCG of every mask of ``masks`` on the same N images, batched across masks.

    The ``(key, image)`` rows are stacked (at most ``max_rows`` per call) so that one
    ``classify`` batch serves every method at each growth step.

    Args:
        images: ``(N, H, W, 3)`` float32 in [0, 1].
        masks: key -> bool ``(N, H, W)``.
        labels: ``(N,)`` class ``y``.
        classify: batched ``float32 images -> probabilities``.
        base: ``(N, H, W, 3)`` base images.
        p_full, p_base: ``(N, C)`` probabilities of the images and of the base images (CCG leaves
            out the images whose base image is classified as ``y``).
        dilate_first: Grow each mask once before the first hybrid (default: no, as Algorithm 1).
    """
    keys = list(masks)
    n = images.shape[0]
    per_call = max(1, max_rows // max(1, n))
    out = MaskScores({}, {}, {}, {}, [])
    for start in range(0, len(keys), per_call):
        chunk = keys[start : start + per_call]
        k = len(chunk)
        X = np.concatenate([images] * k)
        M = np.concatenate([masks[key] for key in chunk])
        Y = np.concatenate([labels] * k)
        B = np.concatenate([base] * k)
        PF = np.concatenate([p_full] * k)
        PB = np.concatenate([p_base] * k)
        t0 = time.perf_counter()
        s = np.full(M.shape[0], np.nan)  # empty intersections stay NaN: no mask to score
        nonempty = M.reshape(M.shape[0], -1).any(axis=1)
        if nonempty.any():
            s[nonempty] = scg_for_masks(X[nonempty], M[nonempty], Y[nonempty], classify, B[nonempty], PF[nonempty],
                                        PB[nonempty], dilate_first=dilate_first)
        t1 = time.perf_counter()
        r = ccg(X, M, Y, classify, B, PF, PB, max_growth=max_growth, dilate_first=dilate_first)
        t2 = time.perf_counter()
        out.calls.append(utilisation_row(r, k * n, t1 - t0, t2 - t1))
        for j, key in enumerate(chunk):
            sl = slice(j * n, (j + 1) * n)
            out.scg[key] = s[sl]
            out.ccg[key] = r.ccg[sl]
            out.growths[key] = r.growths[sl]
            out.reasons[key] = list(r.excluded_reason[sl])
    return out


def utilisation_row(result: CCGResult, rows: int, scg_seconds: float = 0.0, ccg_seconds: float = 0.0) -> dict[str, Any]:
    """Forward passes and batch utilisation of one ``ccg`` call over ``rows`` (mask, image) rows.

    ``hybrids per mask`` is the number of hybrids classified per (mask, image) row: growths + 1
    for the rows that were classified, 0 for the rows never classified.
    """
    bs = np.asarray(result.batch_sizes, dtype=np.int64)
    per_row = np.where(result.growths >= 0, result.growths + 1, 0)
    return {
        "masks": int(rows),
        "classify calls": int(result.forward_passes),
        "hybrids classified": int(bs.sum()),
        "mean batch": float(bs.mean()) if bs.size else float("nan"),
        "max batch": int(bs.max()) if bs.size else 0,
        "last batch": int(bs[-1]) if bs.size else 0,
        "hybrids per mask (mean)": float(per_row.mean()) if per_row.size else float("nan"),
        "hybrids per mask (max)": int(per_row.max()) if per_row.size else 0,
        "SCG s": float(scg_seconds),
        "CCG s": float(ccg_seconds),
    }


def _col(kernel: str, rho: float, metric: str) -> str:
    return f"{KERNEL_LABELS.get(kernel, kernel)} ρ={rho * 100:g}% {metric}"


def table1(
    name: str,
    title: str,
    summaries: Mapping[tuple[str, str, float], Mapping[str, float]],
    rows: Sequence[tuple[str, str, str]],
    kernels: Sequence[str] = KERNELS,
    rhos: Sequence[float] = RHOS,
    note: str = "",
) -> Table:
    """Seed 003 Table 1 layout: rows method + parameter; columns kernel × ρ × {SCG, CCG} (means ×100).

    Args:
        summaries: ``(row key, kernel, ρ)`` -> ``{"scg": mean ×100, "ccg": mean ×100}``; a missing
            entry is NaN.
        rows: ``(row key, method label, parameter)`` in display order.
    """
    cols = ["method", "param"] + [_col(k, r, m) for k in kernels for r in rhos for m in ("SCG", "CCG")]
    t = Table(name, title, cols, digits=1, note=note)
    for key, label, param in rows:
        vals = []
        for k in kernels:
            for r in rhos:
                s = summaries.get((key, k, r), {})
                vals += [float(s.get("scg", np.nan)), float(s.get("ccg", np.nan))]
        t.add(label, param, *vals)
    return t


_REASONS = ("not_confident", "base_is_y", "negative_gain", "over_max_growth", "empty_mask")


def growth_bin_labels(bins: Sequence[int] = GROWTH_BINS) -> list[str]:
    """Labels of the growth bins: ``"0"``, ``"1"``, ``"2–4"``, ... (closed ranges)."""
    return [str(a) if b - a == 1 else f"{a}–{b - 1}" for a, b in zip(bins[:-1], bins[1:])]


def growth_counts(growths: np.ndarray, used: np.ndarray, bins: Sequence[int] = GROWTH_BINS) -> list[int]:
    """Histogram of the growth steps of the images used by CCG (``used``), over ``bins`` edges."""
    g = np.asarray(growths)[np.asarray(used, bool)]
    return [int(c) for c in np.histogram(g, bins=np.asarray(bins))[0]]


def exclusion_rows(key: str, kernel: str, rho: float, scg_values: np.ndarray, ccg_values: np.ndarray,
                   growths: np.ndarray, reasons: Sequence[str | None]) -> list[Any]:
    """One row of the exclusion table: images used and left out (by reason) for SCG and CCG."""
    s = summarize(scg_values)
    c = summarize(ccg_values)
    used = np.isfinite(np.asarray(ccg_values, float))
    g = np.asarray(growths)[used]
    counts = [sum(r == reason for r in reasons) for reason in _REASONS]
    return [key, KERNEL_LABELS.get(kernel, kernel), f"{rho * 100:g}%", s["n_used"], s["n_excluded"], c["n_used"],
            *counts, float(g.mean()) if g.size else float("nan")]


def finding3_cases(
    summaries: Mapping[str, Mapping[tuple[str, str, float], Mapping[str, Any]]],
    pairs: Sequence[tuple[str, str]] = PAIRS,
    kernels: Sequence[str] = KERNELS,
    rhos: Sequence[float] = RHOS,
    seed: int = 0,
    n_boot: int = 2000,
) -> list[dict[str, Any]]:
    """Cases (model, kernel, ρ, pair): the intersection's mean CCG against each of its two methods'.

    Args:
        summaries: model -> ``(row key, kernel, ρ)`` -> ``{"ccg": mean ×100, "ccg_values": (N,) per-image
            CCG ×100, NaN where the image is left out}``; the ``N`` images are the same for every key.
        seed, n_boot: Seed and resamples of the paired bootstrap over the images.

    Returns:
        Dicts with model, kernel, rho, pair, pair_ccg, a, a_ccg, b, b_ccg, the paired differences
        ``vs_a`` / ``vs_b`` (:class:`~evaluation.intervals.Interval` of mean(pair) − mean(method),
        each mean over its own images left in) and ``verdict``: "holds" when both intervals lie
        above 0, "does not hold" when either lies below 0, "inconclusive" otherwise, ``None`` (not
        evaluated) when a mean is NaN or missing.
    """
    cases = []
    for model, summ in summaries.items():
        for a, b in pairs:
            for k in kernels:
                for r in rhos:
                    pk = pair_key(a, b)
                    if (pk, k, r) not in summ:
                        continue
                    rows = [summ.get((x, k, r), {}) for x in (pk, a, b)]
                    v = [float(row.get("ccg", np.nan)) for row in rows]
                    case = {"model": model, "kernel": k, "rho": r, "pair": pk, "pair_ccg": v[0], "a": a,
                            "a_ccg": v[1], "b": b, "b_ccg": v[2], "vs_a": None, "vs_b": None, "verdict": None}
                    if np.all(np.isfinite(v)):
                        values = [np.asarray(row["ccg_values"], np.float64) for row in rows]
                        case["vs_a"] = paired_bootstrap_ci(values[0], values[1], n_boot=n_boot, seed=seed)
                        case["vs_b"] = paired_bootstrap_ci(values[0], values[2], n_boot=n_boot, seed=seed)
                        case["verdict"] = _case_verdict(case["vs_a"], case["vs_b"])
                    cases.append(case)
    return cases


def _case_verdict(*differences: Interval) -> str:
    zero = Interval(0.0, 0.0, 0.0)
    states = [compare_intervals(d, zero) for d in differences]
    if all(st == "holds" for st in states):
        return "holds"
    return "does not hold" if "does not hold" in states else "inconclusive"


def finding3(cases: Sequence[Mapping[str, Any]], grids: Mapping[str, str] | None = None) -> Finding:
    """SPEC §4 finding 3: the verdict of a strict majority of the evaluated cases (else inconclusive).

    Args:
        cases: From :func:`finding3_cases`.
        grids: Model -> its target layer's map grid (``"8×8"``), printed in the evidence.
    """
    title = "Intersections of two methods' masks give a higher CCG than either method alone, on average"
    ev = [c for c in cases if c["verdict"] is not None]
    if not ev:
        return Finding.from_verdict(title, None, "no case with finite mean CCG for a pair and both of its methods")
    counts = {st: sum(c["verdict"] == st for c in ev) for st in VERDICTS}
    parts = []
    for pk in dict.fromkeys(c["pair"] for c in ev):
        pc = [c for c in ev if c["pair"] == pk]
        gain = np.mean([c["pair_ccg"] - max(c["a_ccg"], c["b_ccg"]) for c in pc])
        parts.append(f"{pk}: {sum(c['verdict'] == 'holds' for c in pc)}/{len(pc)} hold (mean CCG×100 "
                     f"{np.mean([c['pair_ccg'] for c in pc]):.1f} vs best single "
                     f"{np.mean([max(c['a_ccg'], c['b_ccg']) for c in pc]):.1f}, mean difference {gain:+.1f})")
    evidence = (f"per case (model × kernel × ρ × pair), the paired 95% bootstrap intervals over the images of the "
                f"intersection's mean CCG minus each method's: holds in {counts['holds']}, does not hold in "
                f"{counts['does not hold']}, inconclusive in {counts['inconclusive']} of {len(ev)} cases; per pair: "
                + "; ".join(parts))
    if grids:
        evidence += "; grids: " + ", ".join(f"{m} {g}" for m, g in grids.items())
    skipped = len(cases) - len(ev)
    if skipped:
        evidence += f"; {skipped} cases not evaluated (no image left for a mean)"
    return Finding.from_verdict(title, overall_verdict([c["verdict"] for c in ev]), evidence)


def _at_size(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if maps.shape[1:] == tuple(shape):
        return maps
    return resize_maps(maps, tuple(int(s) for s in shape))


def _kernel_text(shape: Sequence[int]) -> str:
    size, sigma = blur_params(int(min(shape)))
    return f"{size}×{size}, σ = {sigma:.2f} at {int(min(shape))} px"


def _add_base_row(table: Table, model: str, kernel: str, shape: Sequence[int], p_full: np.ndarray,
                  p_base: np.ndarray, y: np.ndarray) -> None:
    """One row of ``confidence_base_images``: how many base images the model already classifies as y."""
    size, sigma = blur_params(int(min(shape))) if kernel == "gaussian" else (0, float("nan"))
    is_y = base_classified_as_y(p_base, y)
    rows = np.arange(y.size)
    confident = p_full[rows, y] - p_base[rows, y] > 0
    table.add(model, KERNEL_LABELS.get(kernel, kernel), f"{size}×{size}" if size else "–", sigma, int(y.size),
              int(is_y.sum()), int((is_y & confident).sum()))


def _models(ctx: Context) -> list[str]:
    return [m for m in MODELS if m in ctx.classifiers]


@dataclass
class _Tables:
    """The experiment's tables, filled model by model."""

    exclusions: Table
    utilisation: Table
    bases: Table
    growths: Table
    steps: Table

    @classmethod
    def empty(cls) -> "_Tables":
        return cls(
            exclusions=Table(
                "confidence_exclusions", "Images used and left out per method, kernel and ρ (SCG, CCG)",
                ["model", "mask", "kernel", "ρ", "SCG used", "SCG left out", "CCG used",
                 *[f"CCG {r}" for r in _REASONS], "mean growths (CCG used)"], digits=2,
                note="CCG left out by reason — not_confident: p(I) − p(I_K) ≤ 0; base_is_y: the base image I_K is "
                     "already classified as y (any mask would stop at once); negative_gain: p(I_{AM,K}) − p(I_K) < 0 "
                     "for the accurate mask; over_max_growth: not classified as y within 50 growths; empty_mask: an "
                     "empty intersection. SCG leaves out not_confident, empty masks and a negative gain of the "
                     "mask (M itself; grown once first only with dilate_first), so its count can differ from "
                     "CCG's."),
            utilisation=Table(
                "confidence_utilisation", "CCG forward passes and batch utilisation per ccg call "
                "(all masks of one model, kernel and ρ batched together)",
                ["model", "kernel", "ρ", "masks", "classify calls", "hybrids classified", "mean batch", "max batch",
                 "last batch", "hybrids per mask (mean)", "hybrids per mask (max)", "SCG s", "CCG s"], digits=2),
            bases=Table(
                "confidence_base_images", "Base images already classified as y (left out of CCG as base_is_y)",
                ["model", "kernel", "kernel size", "σ", "images", "base classified as y", "of which confident"],
                digits=2, note="confident: p(I) − p(I_K) > 0, i.e. not already left out as not_confident"),
            growths=Table(
                "confidence_growths", "Distribution of the CCG growth steps (images used by CCG)",
                ["model", "mask", "kernel", "ρ", "CCG used", *[f"{b} growths" for b in growth_bin_labels()],
                 "median"], digits=1),
            steps=Table(
                "confidence_growth_steps", "CCG growth steps per image, mask, kernel and ρ (the data of the growth "
                "histograms)", ["model", "mask", "kernel", "ρ", "image_id", "growths", "CCG"], inline=False),
        )

    def all(self) -> list[Table]:
        return [self.bases, self.exclusions, self.growths, self.utilisation, self.steps]


@experiment("confidence", "Confidence gains SCG and CCG of importance masks (seed 003 Table 1)")
def run(ctx: Context) -> Section:
    section = Section("confidence", "Confidence gains SCG and CCG of importance masks (seed 003 Table 1)")
    models = _models(ctx)
    idx = ctx.sample(ctx.config.ccg_images_per_class)
    section.images = int(idx.size)
    if not models:
        section.text = (f"None of the models {', '.join(MODELS)} is served (confidence_gains.MODELS), so SCG/CCG "
                        "were not computed.")
        section.findings.append(finding3([]))
        return section
    images_u8 = ctx.data.images[idx]
    x = images_u8.astype(np.float32) / 255.0
    tables = _Tables.empty()
    summaries: dict[str, dict[tuple[str, str, float], dict[str, float]]] = {}
    notes: list[str] = []
    for model in models:
        specs, heat, p_full = _explain_model(ctx, model, idx, x, notes)
        summ, pooled = _gains_of_model(ctx, model, heat, x, p_full, ctx.image_ids(idx), tables)
        summaries[model] = summ
        _model_figures(ctx, section, model, specs, heat, summ, pooled, images_u8, idx.size)
    section.tables += tables.all()
    cases = finding3_cases(summaries, seed=ctx.config.seed)
    section.findings.append(finding3(cases, {m: grid_text(ctx.models[m].target_shape) for m in models}))
    section.text = _section_text(models, idx.size, x.shape[1:3], notes)
    ctx.results["confidence"] = {"finding3_cases": cases}
    return section


def _explain_model(ctx: Context, model: str, idx: np.ndarray, x: np.ndarray,
                   notes: list[str]) -> tuple[list, dict[str, np.ndarray], np.ndarray]:
    """``(method specs, heat maps at input size per key, p(original))``; notes what differs or is missing."""
    info = ctx.models[model]
    specs = single_methods(getattr(info, "input_size", None), ctx.config.seed, getattr(info, "methods", None))
    missing = [s.method for s in SINGLE_METHODS if s.method not in {t.method for t in specs}]
    p_full = ctx.predict(model, ctx.data.images[idx], tag="original")
    y = np.argmax(p_full, axis=1)
    heat = {}
    for spec in specs:
        r = ctx.explain(model, spec.method, idx, desc=f"{spec.key} {model}", **spec.kwargs)
        heat[spec.key] = _at_size(np.asarray(r["heatmap"], np.float64), x.shape[1:3])
        explained = np.asarray(r["class_index"]).ravel()
        if np.any(explained != y):
            notes.append(f"{model}/{spec.key}: the explained class differs from the predicted one for "
                         f"{int(np.sum(explained != y))} images")
    notes.append(f"{model}: {int(np.sum(y != ctx.data.labels[idx]))} of {y.size} images misclassified"
                 + (f"; methods not served: {', '.join(missing)}" if missing else ""))
    return specs, heat, p_full


def _gains_of_model(ctx: Context, model: str, heat: dict[str, np.ndarray], x: np.ndarray, p_full: np.ndarray,
                    ids: list, tables: _Tables) -> tuple[dict, dict[str, np.ndarray]]:
    """SCG/CCG of every mask for every kernel and ρ: ``(summary per (mask, kernel, ρ), growths pooled per
    kernel × ρ)``; the rows of ``tables`` are added on the way."""
    y = np.argmax(p_full, axis=1)
    summ: dict[tuple[str, str, float], dict[str, float]] = {}
    pooled: dict[str, np.ndarray] = {}
    for kernel in KERNELS:
        base = base_images(x, kernel)
        p_base = ctx.predict(model, base, tag=f"base-{kernel}")
        _add_base_row(tables.bases, model, kernel, x.shape[1:3], p_full, p_base, y)
        for rho in RHOS:
            masks = method_masks(heat, rho)
            with ctx.bar(None, f"hybrids {model} {KERNEL_LABELS[kernel]} ρ={rho:g}") as bar:
                def classify(imgs, _m=model, _bar=bar):
                    _bar.update(len(imgs))
                    return ctx.predict(_m, imgs, tag="hybrid")

                res = evaluate_masks(x, masks, y, classify, base, p_full, p_base)
            rho_text = f"{rho * 100:g}%"
            for key in masks:
                summ[(key, kernel, rho)] = {"scg": summarize(res.scg[key])["mean_x100"],
                                            "ccg": summarize(res.ccg[key])["mean_x100"],
                                            "ccg_values": 100.0 * np.asarray(res.ccg[key], np.float64)}
                tables.exclusions.add(model, *exclusion_rows(key, kernel, rho, res.scg[key], res.ccg[key],
                                                             res.growths[key], res.reasons[key]))
                used = np.isfinite(res.ccg[key])
                g = res.growths[key][used]
                tables.growths.add(model, key, KERNEL_LABELS[kernel], rho_text, int(used.sum()),
                                   *growth_counts(res.growths[key], used), float(np.median(g)) if g.size else np.nan)
                for j in np.flatnonzero(used):
                    tables.steps.add(model, key, KERNEL_LABELS[kernel], rho_text, ids[j],
                                     int(res.growths[key][j]), float(res.ccg[key][j]))
            pooled[f"{KERNEL_LABELS[kernel]} ρ={rho_text}"] = np.concatenate(
                [res.growths[k][np.isfinite(res.ccg[k])] for k in masks])
            for call in res.calls:
                tables.utilisation.add(model, KERNEL_LABELS[kernel], rho_text, *call.values())
    return summ, pooled


def _model_figures(ctx: Context, section: Section, model: str, specs: list, heat: dict[str, np.ndarray],
                   summ: dict, pooled: dict[str, np.ndarray], images_u8: np.ndarray, n_images: int) -> None:
    """Table 1 of ``model``, its CCG bars, growth histograms and example masks (seed 003 Figs. 2, 3)."""
    rows = [(s.key, s.label, s.param) for s in specs]
    rows += [(pair_key(a, b), pair_key(a, b), "") for a, b in PAIRS if pair_key(a, b) in {k for k, _, _ in summ}]
    section.tables.append(table1(
        f"confidence_table1_{model}", f"{model}: average SCG and CCG (×100) of the importance masks (seed 003 Table 1)",
        summ, rows, note=f"{n_images} images ({ctx.config.ccg_images_per_class} per class); y = predicted class; "
                         "pairs: intersections of the two top-ρ masks"))
    path, rel = ctx.figure(f"confidence_ccg_{model}")
    plots.grouped_bars(path, [r[0] for r in rows],
                       {f"{KERNEL_LABELS[k]} ρ={r * 100:g}%": [summ.get((key, k, r), {}).get("ccg", np.nan) for key, _, _ in rows]
                        for k in KERNELS for r in RHOS},
                       f"{model}: mean CCG ×100 per importance mask", "CCG ×100")
    section.figures.append((rel, f"{model}: mean CCG (×100) of each importance mask and intersection"))
    path, rel = ctx.figure(f"confidence_growths_{model}")
    plots.histograms(path, pooled, f"{model}: CCG growth steps (all masks)", "3×3 growths until classified as y",
                     bins=np.arange(0, MAX_GROWTH + 2) - 0.5)
    section.figures.append((rel, f"{model}: distribution of the growth steps of the images used by CCG, all masks "
                                 "pooled, per kernel and ρ"))
    m25 = method_masks(heat, RHOS[-1])
    for part, keys in (("single", list(heat)), ("pairs", [k for k in m25 if k not in heat])):
        if not keys:
            continue
        grid = [[images_u8[0]] + [np.where(m25[k][0][..., None], images_u8[0], 0).astype(np.uint8) for k in keys]]
        path, rel = ctx.figure(f"confidence_masks_{part}_{model}")
        plots.image_grid(path, grid, col_titles=["image", *keys],
                         title=f"{model}: top-{RHOS[-1] * 100:g}% masks" + (" and their intersections" if part == "pairs" else ""))
        section.figures.append((rel, f"{model}: top-{RHOS[-1] * 100:g}% masks of one image, "
                                     + ("single methods (seed 003 Fig. 2)" if part == "single" else "pairwise intersections (seed 003 Fig. 3)")))


def _section_text(models: list[str], n_images: int, shape: tuple[int, int], notes: list[str]) -> str:
    return (
        f"SCG (seed 003 eq. 2) and CCG (eq. 3) of the top-ρ masks of each importance function and of the "
        f"intersections of pairs, for the models {', '.join(models)} (confidence_gains.MODELS) on "
        f"{n_images} test images. Base images: a Gaussian blur G_k scaled with the input side s (radius round(8·s/224), "
        f"size 2r + 1, σ = 2.9·s/224: 17×17, σ = 2.9 at 224 px; {_kernel_text(shape)} here) and zeros Z_k; "
        + ("masks are grown once by a 3×3 dilation before blending; " if DILATE_FIRST else
           "the hybrids start from the mask M itself (seed 003 Alg. 1); ")
        + "CCG grows them until the hybrid is classified as y, at most 50 times, and leaves out the images whose base "
        "image is already classified as y (table confidence_base_images). "
        "y is the class the model predicts for the original image (the class the heat maps explain). Hybrids are "
        "blended in float32 and quantised to uint8 (rint(255·x)) before classification, like every image sent to "
        "the service. All masks of one model, kernel and ρ are classified together at each growth step.\n\n"
        + "; ".join(notes) + "."
    )
