"""The evaluation pipeline: a context that talks to the service, caches every per-image result,
and runs experiments into report sections.

An experiment is a function ``run(ctx: Context) -> Section`` registered in
:data:`EXPERIMENTS`. It asks the context for explanations and predictions; the context calls the
service through :class:`serving.client.ExplanationClient` (gRPC, also when the server is embedded)
and caches each image's result under ``REPORT_DIR/cache`` keyed by model name, model version,
method, parameters and image id. A run that is killed and started again reuses every cached item
and every finished section, and ends with the same numbers.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from evaluation.cache import ResultCache, atomic_write_text, cache_key
from evaluation.report import Section, load_section, save_section, write_report

__all__ = ["EvalConfig", "Context", "EXPERIMENTS", "experiment", "run_evaluation", "progress_bar"]

log = logging.getLogger("evaluation")


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A ``tqdm`` progress bar on stderr (a no-op object when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, leave=False, dynamic_ncols=True)


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        out: Report folder.
        model_root: Model root for the embedded server (ignored with ``servers``).
        servers: ``HOST:PORT`` addresses of running servers (round-robin).
        experiments: Experiment keys to run, in order (default: all).
        images_per_class: Test images per class used by most experiments.
        ccg_images_per_class: Images per class for SCG/CCG (the costliest experiment).
        tsne_images_per_class: Images per class for descriptors and t-SNE layouts.
        seed: Seed for everything random in the evaluation (t-SNE, sampling, perturbation masks).
        data_dir: Real data folder ``<root>/<class>/<image>``; ``None`` = the synthetic cities the
            models were trained on (regenerated from the model card).
        labels_dir: Label maps of the real data (optional).
        annotations: CSV of annotations ``image_id,label[,label2]`` (optional; the synthetic cities
            write one from their ground truth).
        batch_size: Images per request.
        progress: Show progress bars.
        timeout: Deadline per request in seconds.
        segmenter: A served segmenter (``kind: "segmenter"``) whose label maps the ``objects``
            experiment uses beside the ground truth, or alone when the images have none.
    """

    out: Path
    model_root: Path | None = None
    servers: list[str] | None = None
    experiments: list[str] | None = None
    images_per_class: int = 24
    ccg_images_per_class: int = 4
    tsne_images_per_class: int = 60
    seed: int = 0
    data_dir: Path | None = None
    labels_dir: Path | None = None
    annotations: Path | None = None
    batch_size: int = 16
    progress: bool = True
    timeout: float = 600.0
    segmenter: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


@dataclass
class Experiment:
    key: str
    title: str
    run: Callable[["Context"], Section]
    needs: str = "classifier"  # "classifier" | "embedding"


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(key: str, title: str, needs: str = "classifier"):
    """Decorator registering ``run(ctx) -> Section`` as an experiment."""

    def deco(fn: Callable[["Context"], Section]) -> Callable[["Context"], Section]:
        if not inspect.isfunction(fn):
            raise TypeError(f"@experiment({key!r}) must decorate a function run(ctx) -> Section; got {fn!r}")
        EXPERIMENTS[key] = Experiment(key, title, fn, needs)
        return fn

    return deco


def _load_experiments() -> None:
    import importlib

    for mod in (
        "evaluation.experiments.residuals",
        "evaluation.experiments.descriptors",
        "evaluation.experiments.objects",
        "evaluation.experiments.confidence_gains",
        "evaluation.experiments.similarity",
        "evaluation.experiments.localisation",
        "evaluation.experiments.causal",
        "evaluation.experiments.summaries",
        "evaluation.experiments.faithfulness",
    ):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name != mod:
                raise


def experiment_keys() -> list[str]:
    """Registered experiment keys in their canonical order."""
    _load_experiments()
    return list(EXPERIMENTS)


def _image_digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


class Context:
    """Everything an experiment needs: the client, the models, the data, the cache, the output.

    Attributes:
        config: The :class:`EvalConfig`.
        client: A connected :class:`serving.client.ExplanationClient`.
        models: ``ModelInfo`` by model name (from ``ListModels``).
        classifiers: Names of the classifier models, sorted.
        embeddings: Names of the embedding models, sorted.
        data: The evaluation images (an :class:`models.datasets.ImageSet`, test split).
        landmarks: Test images for the embedding models (or ``None``).
        cache: The per-image :class:`ResultCache`.
        out: The report folder.
        results: Values experiments share (e.g. the residual means that the findings use).
    """

    def __init__(self, config: EvalConfig, client: Any, data: Any, landmarks: Any = None) -> None:
        self.config = config
        self.client = client
        self.out = Path(config.out)
        (self.out / "figures").mkdir(parents=True, exist_ok=True)
        self.cache = ResultCache(self.out / "cache")
        infos = client.list_models()
        self.models = {m.name: m for m in infos}
        self.classifiers = sorted(n for n, m in self.models.items() if m.kind == "classifier")
        self.embeddings = sorted(n for n, m in self.models.items() if m.kind == "embedding")
        self.data = data
        self.landmarks = landmarks
        self.results: dict[str, Any] = {}
        self.service_calls = 0

    # ------------------------------------------------------------------ data helpers
    def sample(self, per_class: int, data: Any = None) -> np.ndarray:
        """The first ``per_class`` indices of each class (deterministic)."""
        data = self.data if data is None else data
        idx = [np.flatnonzero(data.labels == c)[:per_class] for c in range(len(data.class_names))]
        return np.sort(np.concatenate(idx))

    def image_ids(self, indices: Sequence[int], data: Any = None) -> list[str]:
        data = self.data if data is None else data
        if data.ids is not None:
            return [data.ids[i] for i in indices]
        return [_image_digest(data.images[i]) for i in indices]

    def figure(self, name: str) -> tuple[Path, str]:
        """``(absolute path, path relative to the report)`` for a figure called ``name``.png."""
        rel = f"figures/{name}.png"
        return self.out / rel, rel

    def version(self, model: str) -> int:
        return int(self.models[model].version)

    def retrained_pairs(self) -> list[tuple[str, str]]:
        """(architecture, retrained copy) pairs present among the classifiers."""
        return [(n, f"{n}_retrained") for n in self.classifiers if f"{n}_retrained" in self.models]

    def base_classifiers(self) -> list[str]:
        """Classifiers that are not retrained copies."""
        return [n for n in self.classifiers if not n.endswith("_retrained")]

    # ------------------------------------------------------------------ cached service calls
    def explain(
        self,
        model: str,
        method: str,
        indices: Sequence[int],
        data: Any = None,
        desc: str | None = None,
        **params: Any,
    ) -> dict[str, np.ndarray]:
        """Explanations of the images ``indices`` (one cache entry per image), stacked.

        Returns:
            ``heatmap (N, H, W)``, ``heatmap_lowres (N, h, w)`` (when the method has one),
            ``probabilities (N, C)``, ``class_index (N,)``.
        """
        data = self.data if data is None else data
        ids = self.image_ids(indices, data)
        keys = [
            cache_key(kind="explain", model=model, version=self.version(model), method=method,
                      params=params, image=i)
            for i in ids
        ]
        indices = list(indices)

        def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
            images = data.images[[indices[b] for b in batch]]
            self.service_calls += 1
            r = self.client.explain(model, method, images, **params)
            out = []
            for j in range(len(batch)):
                item = {"heatmap": r.heatmap[j], "probabilities": r.probabilities[j], "class_index": np.asarray(r.class_index[j])}
                if r.heatmap_lowres is not None:
                    item["heatmap_lowres"] = r.heatmap_lowres[j]
                if getattr(r, "raw", None) is not None:
                    item["raw"] = r.raw[j]
                out.append(item)
            return out

        bs = self.config.batch_size if method not in ("occlusion", "perturbation_mask", "scorecam") else max(1, self.config.batch_size // 4)
        with self.bar(len(keys), desc or f"{method} {model}") as bar:
            items = self.cache.get_or_compute(keys, compute, batch_size=bs, progress=bar)
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    def predict(self, model: str, images: np.ndarray, tag: str | None = None) -> np.ndarray:
        """Class probabilities ``(N, C)``; cached per image content when ``tag`` is given.

        Args:
            tag: A name for the kind of image (e.g. ``"hybrid"``); cache keys hash the pixels.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            images = np.clip(np.rint(images * 255.0 if images.max() <= 1.0 else images), 0, 255).astype(np.uint8)
        if tag is None:
            self.service_calls += 1
            return self.client.predict(model, images)["probabilities"]
        keys = [cache_key(kind="predict", model=model, version=self.version(model), tag=tag, image=_image_digest(im)) for im in images]

        def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
            self.service_calls += 1
            p = self.client.predict(model, images[batch])["probabilities"]
            return [{"p": row} for row in p]

        items = self.cache.get_or_compute(keys, compute, batch_size=max(64, self.config.batch_size))
        return np.stack([it["p"] for it in items])

    def features(self, model: str, indices: Sequence[int], data: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Target-layer activations and logits of images ``indices`` (cached per image)."""
        data = self.data if data is None else data
        ids = self.image_ids(indices, data)
        keys = [cache_key(kind="features", model=model, version=self.version(model), image=i) for i in ids]
        indices = list(indices)

        def compute(batch: list[int]) -> list[dict[str, np.ndarray]]:
            self.service_calls += 1
            a, logits = self.client.features(model, data.images[[indices[b] for b in batch]])
            return [{"a": a[j], "logits": logits[j]} for j in range(len(batch))]

        with self.bar(len(keys), f"features {model}") as bar:
            items = self.cache.get_or_compute(keys, compute, batch_size=self.config.batch_size, progress=bar)
        return np.stack([it["a"] for it in items]), np.stack([it["logits"] for it in items])

    @contextlib.contextmanager
    def bar(self, total: int, desc: str) -> Iterator[Any]:
        b = progress_bar(total, desc, self.config.progress)
        try:
            yield b
        finally:
            b.close()


def _model_rows(ctx: Context) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(ctx.models):
        m = ctx.models[name]
        card = m.card or {}
        rows.append({
            "model": name, "version": m.version, "kind": m.kind,
            "architecture": card.get("architecture", ""), "seed": card.get("seed", ""),
            "test_accuracy": card.get("test_accuracy", ""), "target_layer": m.target_layer,
        })
    return rows


def _code_version(fn: Callable[..., Any]) -> str:
    """A short hash of the source file of an experiment's ``run``: a saved section is reused only
    by the code that wrote it (per-image results stay in the cache, keyed by their inputs)."""
    import inspect

    try:
        source = Path(inspect.getsourcefile(fn) or "").read_bytes()
    except (OSError, TypeError):
        return "nosrc"
    return hashlib.sha1(source).hexdigest()[:8]


def run_evaluation(config: EvalConfig, client: Any, data: Any, landmarks: Any = None,
                   context: Callable[..., Context] | None = None) -> Path:
    """Run the selected experiments and write the report; returns the path of ``report.html``.

    Sections already saved under ``REPORT_DIR/sections`` by an earlier run of the same
    configuration, models and experiment code (a hash of the experiment's module) are reused, and per-image results come from the cache, so a
    resumed run does only the missing work.

    Args:
        context: Builds the :class:`Context` from ``(config, client, data, landmarks)``
            (default: :class:`Context`; :class:`evaluation.distributed.RayContext` on Ray).
    """
    _load_experiments()
    keys = config.experiments or list(EXPERIMENTS)
    unknown = [k for k in keys if k not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; accepted: {list(EXPERIMENTS)}")
    ctx = (context or Context)(config, client, data, landmarks)
    if config.annotations is None and data is not None and data.label_maps is not None and data.discriminative:
        # synthetic data: annotations written from the ground truth, before any experiment needs them
        from evaluation.annotations import write_annotations_from_ground_truth

        path = ctx.out / "annotations.csv"
        if not path.exists():
            write_annotations_from_ground_truth(data, path)
    fingerprint = cache_key(config={k: v for k, v in config.to_json().items() if k not in ("progress", "servers", "model_root", "experiments", "timeout")},
                            models={n: m.version for n, m in ctx.models.items()})
    sections: list[Section] = []
    for key in keys:
        exp = EXPERIMENTS[key]
        if exp.needs == "classifier" and not ctx.classifiers or exp.needs == "embedding" and not ctx.embeddings:
            log.warning("skipping %s: no %s models are served", key, exp.needs)
            continue
        section_key = f"{key}-{fingerprint[:12]}-{_code_version(exp.run)}"
        saved = load_section(ctx.out, section_key)
        if saved is not None:
            log.info("%s: reused the finished section", key)
            saved.key = key
            sections.append(saved)
            continue
        t0 = time.perf_counter()
        print(f"[evaluation] {exp.title} ...", file=sys.stderr, flush=True)
        section = exp.run(ctx)
        section.seconds = time.perf_counter() - t0
        keyed = Section(**{**section.__dict__, "key": section_key})
        save_section(keyed, ctx.out)
        sections.append(section)
    report = write_report(ctx.out, sections, config.to_json(), _model_rows(ctx))
    atomic_write_text(ctx.out / "run.json", json.dumps({"service_calls": ctx.service_calls, "cache_hits": ctx.cache.hits, "cache_misses": ctx.cache.misses}))
    return report
