"""Descriptors, PCA and openTSNE layouts (seed 000 §3.3–3.4, Table 1, Figs. 4, 5, 8, 10).

``D_cam = L`` flattened (length h·w) and ``D_short = Σ_k (L ∘ A_k)`` flattened (length h·w), with
``L`` the Grad-CAM map at target-layer resolution before normalisation and ``A`` the target-layer
activations (the ``features`` signature). Each is reduced by PCA to 50 components and to the
fewest components reaching 90% explained variance (Table 1 lists both counts), then laid out in
2-D by openTSNE. Scatter plots are coloured by class, by the top object inside the visual
explanation (θ = 0.5) and by annotation; the mosaic draws the thresholded visual explanations as
thumbnails at their t-SNE positions (Fig. 5).
"""

from __future__ import annotations

import numpy as np

from evaluation import plots
from evaluation.layouts import pca, tsne_layout
from evaluation.measures import descriptor_cam, descriptor_short
from evaluation.pipeline import Context, experiment
from evaluation.report import Section
from evaluation.tables import Table
from explain.masks import threshold, visual_explanation

__all__ = ["top_object_names", "run"]


def top_object_names(label_maps: np.ndarray, masks: np.ndarray, object_names: dict[int, str]) -> list[str]:
    """Name of the object with most pixels inside each mask (``"none"`` for an empty mask).

    Args:
        label_maps: ``(N, H, W)`` object indices.
        masks: ``(N, H, W)`` bool.
    """
    out = []
    for lm, m in zip(label_maps, masks):
        inside = lm[m]
        if inside.size == 0:
            out.append("none")
            continue
        counts = np.bincount(inside.ravel().astype(np.int64), minlength=256)
        k = int(np.argmax(counts))
        out.append(object_names.get(k, str(k)))
    return out


def _annotation_labels(ctx: Context, idx: np.ndarray) -> list[str] | None:
    path = ctx.config.annotations or (ctx.out / "annotations.csv")
    try:
        from evaluation.annotations import read_annotations
    except ImportError:
        return None
    if not path.exists():
        return None
    ann = read_annotations(path)
    ids = ctx.image_ids(idx)
    return ["+".join(ann.get(i, ("unannotated",))) for i in ids]


@experiment("descriptors", "Descriptors, PCA and t-SNE layouts")
def run(ctx: Context) -> Section:
    idx = ctx.sample(ctx.config.tsne_images_per_class)
    section = Section("descriptors", "Descriptors, PCA and t-SNE layouts")
    section.images = int(idx.size)
    section.text = (
        "D_cam is the Grad-CAM map L at target-layer resolution; D_short = Σ_k L·A_k (seed 000 §3.3). "
        "Both are reduced by PCA (50 components, and the fewest reaching 90% explained variance) and "
        "laid out by openTSNE (seed fixed, so the layout is reproducible)."
    )
    counts = Table("descriptor_dimensions", "Descriptor length before and after PCA (seed 000 Table 1)",
                   ["model", "descriptor", "original (h·w)", "PCA(50)", "PCA(90%)", "variance kept by PCA(50)"])
    coords = Table("tsne_coordinates", "t-SNE coordinates of D_short per image (the data of the scatter plots and "
                   "the mosaic)", ["model", "image_id", "class", "top object", "annotation", "x", "y"], digits=3,
                   inline=False)
    labels_class = [ctx.data.class_names[c] for c in ctx.data.labels[idx]]
    annotations = _annotation_labels(ctx, idx)
    mosaic_done = False
    for model in ctx.base_classifiers():
        r = ctx.explain(model, "gradcam", idx)
        cam = r["raw"] if "raw" in r else r["heatmap_lowres"]
        acts, _ = ctx.features(model, idx)
        descs = {"D_cam": descriptor_cam(cam), "D_short": descriptor_short(cam, acts)}
        layout = None
        for name, d in descs.items():
            p50, k50, cum50 = pca(d, 50, seed=ctx.config.seed)
            _, k90, _ = pca(d, 0.9, seed=ctx.config.seed)
            counts.add(model, name, d.shape[1], k50, k90, float(cum50[-1]) if len(cum50) else float("nan"))
            if name == "D_short":
                layout = tsne_layout(p50, seed=ctx.config.seed)
        assert layout is not None
        masks = threshold(r["heatmap"], 0.5)
        colourings = {"class": labels_class}
        if ctx.data.label_maps is not None:
            colourings["top object"] = top_object_names(ctx.data.label_maps[idx], masks, ctx.data.object_names)
        if annotations is not None:
            colourings["annotation"] = annotations
        for j, image_id in enumerate(ctx.image_ids(idx)):
            coords.add(model, image_id, labels_class[j], colourings.get("top object", [""] * len(idx))[j],
                       annotations[j] if annotations is not None else "", float(layout[j, 0]), float(layout[j, 1]))
        for cname, labels in colourings.items():
            path, rel = ctx.figure(f"tsne_{model}_{cname.replace(' ', '_')}")
            plots.scatter(path, layout, labels, f"{model}: t-SNE of D_short, coloured by {cname}")
            section.figures.append((rel, f"{model}: t-SNE layout of D_short coloured by {cname} (seed 000 Figs. 4, 8, 10)"))
        if not mosaic_done:
            thumbs = visual_explanation(ctx.data.images[idx], r["heatmap"], 0.5)
            path, rel = ctx.figure(f"mosaic_{model}")
            n = min(500, len(idx))
            plots.mosaic(path, layout[:n], thumbs[:n], f"{model}: visual explanations (θ = 0.5) at their t-SNE positions")
            section.figures.append((rel, f"{model}: mosaic of {n} thresholded visual explanations (seed 000 Fig. 5)"))
            mosaic_done = True
    section.tables += [counts, coords]
    return section
