"""``python -m evaluation --model-root MODEL_ROOT --out REPORT_DIR``: the papers' measures, through
the explanation service, into an HTML report.

Without ``--server`` an embedded server is started on a free loopback port (the evaluation still
talks to it over gRPC); with ``--server HOST:PORT[,HOST:PORT…]`` running servers are used,
round-robin (``ipv4:a:p,b:p`` and ``dns:///name:port`` targets are one balanced address each).
With ``--ray auto|ADDRESS`` the per-image work runs as Ray tasks on a cluster
(:mod:`evaluation.distributed`; ``docs/scaling.md``). Every per-image result is cached under
``REPORT_DIR/cache``: a killed run, started again with the same arguments, resumes and ends with
the same numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parser() -> argparse.ArgumentParser:
    from evaluation.pipeline import EvalConfig, experiment_keys

    defaults = EvalConfig(out=Path("."))
    keys = experiment_keys()
    p = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="experiments: " + ", ".join(keys),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-root", type=Path, help="serve this TF Serving model root with an embedded server")
    src.add_argument("--server", help="use running servers: HOST:PORT[,HOST:PORT...], ipv4:HOST:PORT,HOST:PORT or "
                     "dns:///NAME:PORT")
    p.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run the per-image work as tasks on this Ray cluster ('auto': the one started on this "
                        "machine); --out must be a folder every node can write; with --model-root every worker "
                        "starts its own embedded server on that (shared) model root")
    p.add_argument("--out", type=Path, required=True, help="report folder (created; reused to resume)")
    p.add_argument("--experiments", default="all", help=f"comma-separated subset of: {', '.join(keys)}")
    p.add_argument("--images-per-class", type=int, default=defaults.images_per_class, help="test images per class for most experiments")
    p.add_argument("--ccg-images-per-class", type=int, default=defaults.ccg_images_per_class, help="images per class for the costly work: SCG/CCG, faithfulness, occlusion/perturbation mask/Score-CAM in localisation and causal (summaries take twice this)")
    p.add_argument("--tsne-images-per-class", type=int, default=defaults.tsne_images_per_class, help="images per class for descriptors and t-SNE")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of t-SNE, sampling and perturbation masks")
    p.add_argument("--data-dir", type=Path, help="real images <root>/<class>/<image>: for models trained on it (python -m "
                   "models train --data-dir), its test split as recorded in their cards; otherwise the whole folder "
                   "instead of the synthetic cities")
    p.add_argument("--labels-dir", type=Path, help="label maps <labels>/<class>/<image>.png for --data-dir")
    p.add_argument("--annotations", type=Path, help="CSV image_id,label[,label2] for the agreement curves")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per request")
    p.add_argument("--timeout", type=float, default=defaults.timeout, help="deadline per request in seconds")
    p.add_argument("--token", default=os.environ.get("EXPLAIN_TOKEN"), help="bearer token for a server with auth (env EXPLAIN_TOKEN)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verbose", "-v", action="store_true", help="TensorFlow's native start-up lines too")
    p.add_argument("--segmenter", metavar="NAME",
                   help="served segmenter (kind 'segmenter', signature 'segment') whose label maps the objects "
                        "experiment puts beside the ground truth (alone when the images have none)")
    return p


def main(argv: list[str] | None = None) -> int:
    from models.quiet import import_tensorflow_quietly

    import_tensorflow_quietly(verbose=any(a in ("--verbose", "-v") for a in (sys.argv[1:] if argv is None else argv)))
    from evaluation.data import load_evaluation_data
    from evaluation.pipeline import EvalConfig, experiment_keys, run_evaluation

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    keys = experiment_keys()
    chosen = keys if args.experiments == "all" else [k.strip() for k in args.experiments.split(",") if k.strip()]
    bad = [k for k in chosen if k not in keys]
    if bad:
        print(f"error: unknown experiment {bad[0]!r}; accepted: {', '.join(keys)}", file=sys.stderr)
        return 2
    for name in ("images_per_class", "ccg_images_per_class", "tsne_images_per_class", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.model_root is not None and not args.model_root.is_dir():
        print(f"error: --model-root {str(args.model_root)!r} is not a directory", file=sys.stderr)
        return 2
    from serving.client import parse_addresses

    try:
        servers = parse_addresses(args.server) if args.server is not None else None
    except ValueError as err:
        print(f"error: --server {args.server!r}: {err}", file=sys.stderr)
        return 2
    config = EvalConfig(
        out=args.out, model_root=args.model_root, servers=servers,
        experiments=chosen, images_per_class=args.images_per_class, ccg_images_per_class=args.ccg_images_per_class,
        tsne_images_per_class=args.tsne_images_per_class, seed=args.seed, data_dir=args.data_dir,
        labels_dir=args.labels_dir, annotations=args.annotations, batch_size=args.batch_size,
        progress=not args.quiet, timeout=args.timeout, segmenter=args.segmenter,
    )
    from serving.client import ExplanationClient

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if config.servers:
            addresses = config.servers
        else:
            from serving.server import start_server

            # No warm-up: the evaluation is the server's only client, so a signature's first call pays its
            # set-up instead, and the signatures it never calls (most of the retrained copies') cost nothing:
            # 9 s instead of 26 s to start on the ten `small` models.
            server = stack.enter_context(start_server(str(config.model_root), port=0, host="127.0.0.1",
                                                      warmup="none"))
            addresses = [server.address]
            print(f"[evaluation] embedded server on {server.address}", file=sys.stderr)
        # retries with backoff (about 30 s in all) so a run rides through a server restart
        client = stack.enter_context(
            ExplanationClient(addresses, timeout=config.timeout, token=args.token, retries=8, backoff_max=5.0)
        )
        infos = client.list_models()
        if not infos:
            print("error: the server has no models loaded", file=sys.stderr)
            return 1
        if config.segmenter:
            from evaluation.segmentation import SegmenterError, check_segmenter

            try:
                check_segmenter({m.name: m for m in infos}, config.segmenter)
            except SegmenterError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        size = next((m.input_size[0] for m in infos if m.kind == "classifier"), None)
        try:
            data, landmarks = load_evaluation_data([m.card for m in infos], config.data_dir, config.labels_dir, size,
                                                   progress=config.progress)
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if data is None and any(m.kind == "classifier" for m in infos):
            print("error: no evaluation data: the model cards name no synthetic data set; pass --data-dir", file=sys.stderr)
            return 1
        context = _ray_context(args, config) if args.ray is not None else None
        if context is not None and not callable(context):
            return context
        if args.ray is not None:
            import ray

            stack.callback(ray.shutdown)
        report = run_evaluation(config, client, data, landmarks, context=context)
    print(f"[evaluation] report written to {report.resolve()} in {time.perf_counter() - t0:.0f} s")
    return 0


def _ray_context(args: argparse.Namespace, config: Any) -> Any:
    """Joins the Ray cluster of ``--ray``; the context factory of the run, or an exit status."""
    from evaluation.distributed import RayContext, connect, print_cluster
    from evaluation.ray_worker import ServiceSpec

    try:
        resources = connect(args.ray)
    except (ValueError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_cluster(resources)
    root = str(Path(config.model_root).resolve()) if config.model_root is not None and not config.servers else None
    service = ServiceSpec(addresses=tuple(config.servers) if config.servers else None, model_root=root,
                          token=args.token, timeout=config.timeout)
    return functools.partial(RayContext, service=service)


if __name__ == "__main__":
    sys.exit(main())
