"""Similarity analyses of the embedding networks (seed 002).

For each embedding model (average and max pooling side by side) on the landmark test images:
retrieval by cosine similarity; pairwise similarity maps of every query with its top retrievals;
the share of each map's positive mass that falls on the landmark object (SPEC §4 finding 4, from
the label maps); class similarity maps; region-specific retrieval (rank the database by the query
map summed inside the landmark's region); and the top-k component share curve of seed 002 Fig. 3
(the share of the cosine similarity carried by the k largest products β_k⁽ⁱ⁾β_k⁽ʲ⁾).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation import plots
from evaluation.pipeline import Context, experiment
from evaluation.report import Section
from evaluation.tables import Table

__all__ = ["topk_share", "landmark_mass_share", "retrieval_precision", "run"]


def topk_share(emb_a: np.ndarray, emb_b: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Share of the cosine similarity carried by the k largest component products.

    Args:
        emb_a, emb_b: ``(N, D)`` embeddings (any norm).
        ks: Component counts.

    Returns:
        ``(N, len(ks))``: ``Σ_{top k} β_a,k β_b,k / Σ_k β_a,k β_b,k``.
    """
    a = emb_a / np.linalg.norm(emb_a, axis=1, keepdims=True)
    b = emb_b / np.linalg.norm(emb_b, axis=1, keepdims=True)
    prod = np.sort(a * b, axis=1)[:, ::-1]
    csum = np.cumsum(prod, axis=1)
    total = csum[:, -1:]
    ks = np.clip(np.asarray(ks), 1, prod.shape[1])
    return csum[:, ks - 1] / np.where(np.abs(total) > 1e-12, total, np.nan)


def _resize_nearest(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    n, h, w = maps.shape
    rows = (np.arange(size[0]) * h // size[0]).astype(int)
    cols = (np.arange(size[1]) * w // size[1]).astype(int)
    return maps[:, rows][:, :, cols]


def landmark_mass_share(maps: np.ndarray, object_masks: np.ndarray) -> np.ndarray:
    """Share of each map's positive mass on the object, ``(N,)``.

    Each cell of the map ``(N, h, w)`` (target-layer resolution) spreads its positive value evenly
    over the input pixels that nearest-neighbour resizing assigns to it (value / pixels of the
    cell), so every cell keeps its mass even when the input size is not a multiple of the grid
    (128 px over 12 cells: cells of 10 and 11 pixels). ``object_masks`` ``(N, H, W)`` is 1 on the
    object's pixels. NaN where a map has no positive mass.
    """
    size = object_masks.shape[1:]
    n, h, w = maps.shape
    rows = (np.arange(size[0]) * h // size[0]).astype(int)
    cols = (np.arange(size[1]) * w // size[1]).astype(int)
    per_pixel = 1.0 / np.outer(np.bincount(rows, minlength=h)[rows], np.bincount(cols, minlength=w)[cols])
    up = _resize_nearest(np.maximum(maps, 0.0), size) * per_pixel
    total = up.sum(axis=(1, 2))
    inside = (up * object_masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def retrieval_precision(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Mean precision@k of ranking the database by ``scores`` (``(Q, N)``, self excluded by −inf)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(labels[top] == labels[:, None]))


@experiment("similarity", "Similarity maps of embedding networks", needs="embedding")
def run(ctx: Context) -> Section:
    data = ctx.landmarks
    section = Section("similarity", "Similarity maps of embedding networks")
    if data is None:
        section.text = "No landmark data is described by the embedding models' cards; nothing to analyse."
        return section
    per_class = max(2, ctx.config.images_per_class // 2)
    idx = ctx.sample(per_class, data)
    labels = data.labels[idx]
    images = data.images[idx]
    objects = _landmark_masks(data, idx)
    section.images = int(idx.size)
    k_top = 3
    table = Table("similarity_summary", "Retrieval and similarity-map statistics per pooling (seed 002)",
                  ["model", "pooling", "precision@1", "precision@3", "region precision@3",
                   "landmark mass share (same landmark)", "landmark area share", "pairs"])
    curves: dict[str, np.ndarray] = {}
    ks = None
    shares_all: dict[str, float] = {}
    per_pair: dict[str, np.ndarray] = {}
    per_query: dict[str, np.ndarray] = {}
    poolings: dict[str, str] = {}
    example_rows, example_titles = [], []
    for model in ctx.embeddings:
        emb, _ = ctx.client.embed(model, images)
        ctx.service_calls += 1
        sims = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k_top]
        q = np.repeat(np.arange(len(idx)), k_top)
        r = order.ravel()
        res = ctx.client.similarity_map(model, images[q], images[r])
        ctx.service_calls += 1
        same = labels[q] == labels[r]
        share = landmark_mass_share(res.query_map, objects[q]) if objects is not None else np.full(q.size, np.nan)
        area = objects[q].mean(axis=(1, 2)) if objects is not None else np.full(q.size, np.nan)
        # region retrieval: the landmark region of each query, every other image as database
        region_prec = _region_precision(ctx, model, images, labels, objects, k_top) if objects is not None else float("nan")
        d = emb.shape[1]
        ks = np.unique(np.clip(np.array([1, 2, 4, 8, 16, 32, 64, 128, 256]), 1, d))
        curves[model] = np.nanmean(topk_share(emb[q], emb[r], ks), axis=0)
        pooling = ctx.models[model].card.get("pooling", "") if ctx.models[model].card else ""
        shares_all[model] = float(np.nanmean(share[same])) if same.any() else float("nan")
        per_pair[model], per_query[model] = _enrichments(share, area, same, len(idx), k_top)
        poolings[model] = str(pooling)
        table.add(model, pooling, retrieval_precision(sims, labels, 1), retrieval_precision(sims, labels, k_top),
                  region_prec, shares_all[model], float(np.nanmean(area[same])) if same.any() else float("nan"), int(same.sum()))
        # examples: the first three queries with their best retrieval
        for j in range(min(3, len(idx))):
            row = j * k_top
            example_rows.append([
                images[q[row]], plots.heatmap_overlay(images[q[row]], _norm(res.query_map_upsampled[row])),
                images[r[row]], plots.heatmap_overlay(images[r[row]], _norm(res.reference_map_upsampled[row])),
            ])
            example_titles.append(f"{model} s={res.similarity[row]:.2f}")
        _class_maps_figure(ctx, section, model, images, labels, len(data.class_names))
    section.tables.append(table)
    _shared_figures(ctx, section, example_rows, example_titles, curves, ks)
    from evaluation.findings import grid_text, landmark_enrichment_findings

    section.findings += landmark_enrichment_findings(
        per_pair, per_query, poolings, {m: grid_text(ctx.models[m].target_shape) for m in per_pair},
        seed=ctx.config.seed)
    section.text = (
        "Each query is paired with its top-3 retrievals. A similarity map decomposes the cosine similarity over "
        "the target-layer cells (it sums to s); the landmark mass share is the share of a map's positive mass "
        "that lies on the planted landmark's pixels (label maps). Region retrieval ranks the database by the "
        "query map summed inside the landmark region."
    )
    return section


def _landmark_masks(data: Any, idx: np.ndarray) -> np.ndarray | None:
    """Per sampled image, the pixels of its class's landmark (None without label maps)."""
    if data.label_maps is None:
        return None
    landmark_idx = {n: i for i, n in data.object_names.items()}
    objects = np.zeros(data.label_maps[idx].shape, bool)
    for j, c in enumerate(data.labels[idx]):
        names = data.discriminative.get(data.class_names[c], [])
        objects[j] = np.isin(data.label_maps[idx][j], [landmark_idx[n] for n in names if n in landmark_idx])
    return objects


def _region_precision(ctx: Context, model: str, images: np.ndarray, labels: np.ndarray, objects: np.ndarray,
                      k_top: int) -> float:
    """Region retrieval: each query's landmark region against every other image; precision@k of the ranking."""
    n = len(images)
    scores = np.full((n, n), -np.inf)
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        rr = ctx.client.similarity_map(model, np.repeat(images[i : i + 1], others.size, 0), images[others],
                                       region=objects[i])
        ctx.service_calls += 1
        scores[i, others] = rr.region_score
    return retrieval_precision(scores, labels, k_top)


def _class_maps_figure(ctx: Context, section: Section, model: str, images: np.ndarray, labels: np.ndarray,
                       n_classes: int) -> None:
    """Class similarity maps: an image of each class against up to three others of its class, summed."""
    cls_maps = []
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)[:4]
        if members.size < 2:
            continue
        i0, rest = members[0], members[1:]
        rc = ctx.client.similarity_map(model, np.repeat(images[i0 : i0 + 1], rest.size, 0), images[rest])
        ctx.service_calls += 1
        cls_maps.append((images[i0], rc.query_map.sum(axis=0)))
    if cls_maps:
        path, rel = ctx.figure(f"class_similarity_{model}")
        plots.image_grid(path, [[im for im, _ in cls_maps], [m for _, m in cls_maps]],
                         row_titles=["image", "class map"], title=f"{model}: class similarity maps")
        section.figures.append((rel, f"{model}: class similarity maps (sum of the pairwise maps against other images of the class)"))


def _shared_figures(ctx: Context, section: Section, example_rows: list, example_titles: list[str],
                    curves: dict[str, np.ndarray], ks: np.ndarray | None) -> None:
    """The examples grid of all models and the top-k component share curves (figure and table)."""
    if example_rows:
        path, rel = ctx.figure("similarity_examples")
        plots.image_grid(path, example_rows, row_titles=example_titles,
                         col_titles=["query", "query map", "retrieved", "retrieved map"], title="Pairwise similarity maps")
        section.figures.append((rel, "Query, its top retrieval and both similarity maps, average and max pooling side by side"))
    if curves and ks is not None:
        path, rel = ctx.figure("topk_component_share")
        plots.curves(path, ks, curves, "Share of the similarity carried by the top-k components (seed 002 Fig. 3)",
                     "k", "share of cosine similarity", ylim=(0, 1.05))
        section.figures.append((rel, "Top-k component share of the similarity of each query and its retrievals"))
        curve_table = Table("topk_component_share", "Top-k component share", ["k", *curves])
        for i, k in enumerate(ks):
            curve_table.add(int(k), *[float(curves[m][i]) for m in curves])
        section.tables.append(curve_table)


def _enrichments(share: np.ndarray, area: np.ndarray, same: np.ndarray, queries: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmark enrichment (mass share / area share) of each same-landmark pair, and its mean per query
    (NaN for a query without a same-landmark pair among its ``k`` retrievals)."""
    from evaluation.intervals import enrichment

    e = np.where(same, enrichment(share, area), np.nan)
    grid = e.reshape(queries, k)
    counts = np.isfinite(grid).sum(axis=1)
    per_query = np.where(counts > 0, np.nansum(grid, axis=1) / np.maximum(counts, 1), np.nan)
    return e[same], per_query


def _norm(m: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(m)), float(np.max(m))
    return (m - lo) / (hi - lo + 1e-7)
