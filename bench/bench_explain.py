"""Benchmark of the explanation methods, side by side with a plain forward pass and tf-keras-vis.

Run ``.venv/bin/python -m bench.bench_explain``; prints three tables and appends an
"Explanation methods" section to ``bench/RESULTS.md`` (``--no-record`` to skip).

1. **Grad-CAM** (:func:`explain.cam.gradcam`, the public eager entry point: validation, the
   compiled graph with upsampling and normalisation, numpy out) on a batch of 32 at 128 px (and
   224 px): its time over a compiled plain forward pass of the same batch (target ≤ 1.3), and its
   throughput over tf-keras-vis 0.8.7 ``Gradcam`` (``ReplaceToLinear``, default
   ``expand_cam=True, normalize_cam=True``) on the same model and batch (target ≥ 3×).
2. **Occlusion** (:func:`explain.occlusion.occlusion` on a :class:`~explain.backend.KerasBackend`):
   its time over a plain forward pass of the same number of (pre-generated) occluded images in
   batches of the same size through the same backend (target ≤ 1.2).
3. **Score-CAM peak memory** against the number of target channels ``K`` (VGG11 at three widths),
   ours (:func:`explain.scorecam.scorecam`, streamed batches) and tf-keras-vis ``Scorecam``, each in
   a fresh subprocess: the growth of peak RSS over the process's peak before the call (after
   building the model and one warm-up forward pass of a batch), and ``tracemalloc``'s peak of
   Python/NumPy allocations during the call.

Timings are the best of ``--repeats`` runs after warm-up (each compiled function is traced once in
the warm-up and never again), interleaving the compared calls so that both see the same machine
load. The ratio columns compare wall-clock times; the CPU-time ratios (process CPU time, all
threads) are given too because the benchmark machine is shared.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


# ------------------------------------------------------------------------------------------------
# helpers


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    low = rng.random((n, 8, 8, 3)).astype(np.float32)
    return np.clip(tf.image.resize(low, (size, size)).numpy(), 0, 1).astype(np.float32)


def _model(arch: str, size: int, width: float, seed: int = 0):
    import keras

    from models.architectures import build_classifier

    keras.utils.set_random_seed(seed)
    return build_classifier(arch, size, 2, width)


def _best(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each function over ``repeats`` interleaved rounds."""
    best = {k: (float("inf"), float("inf")) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            best[k] = (min(best[k][0], w), min(best[k][1], c))
    return best


# ------------------------------------------------------------------------------------------------
# 1. Grad-CAM


def bench_gradcam(archs: Sequence[str], sizes: Sequence[int], width: float, batch: int, repeats: int) -> list[dict]:
    import tensorflow as tf

    from explain import cam
    from explain.reference import reference_visualizer
    from explain.view import ModelView
    from tf_keras_vis.utils.scores import CategoricalScore

    rows = []
    for size in sizes:
        for arch in archs:
            model = _model(arch, size, width)
            view = ModelView(model)
            x = _images(batch, size)
            forward = tf.function(lambda t: model(t, training=False),
                                  input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            vis = reference_visualizer("gradcam", model)
            classes = [0] * batch

            def ours():
                return cam.gradcam(view, x, 0)["heatmap_upsampled"]

            def plain():  # numpy in, numpy out, like the Grad-CAM entry point
                return forward(tf.convert_to_tensor(x)).numpy()

            def tkv():
                return vis(CategoricalScore(classes), x, penultimate_layer=view.target_layer,
                           seek_penultimate_conv_layer=False)

            for fn in (ours, plain, tkv, ours, plain):  # warm-up: trace once, build tf-keras-vis' sub-model
                fn()
            t = _best({"ours": ours, "forward": plain, "tkv": tkv}, repeats)
            compiled_fn = view.__dict__["_explain_compiled"][("gradcam", True)]
            rows.append({
                "arch": arch, "size": size, "batch": batch, "K": view.target_shape[-1],
                "forward_s": t["forward"][0], "ours_s": t["ours"][0], "tkv_s": t["tkv"][0],
                "ratio_forward": t["ours"][0] / t["forward"][0],
                "ratio_forward_cpu": t["ours"][1] / t["forward"][1],
                "speedup_tkv": t["tkv"][0] / t["ours"][0],
                "speedup_tkv_cpu": t["tkv"][1] / t["ours"][1],
                "traces": compiled_fn.experimental_get_tracing_count(),
            })
            print(f"gradcam {arch} {size}px: {rows[-1]}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------
# 2. Occlusion


def bench_occlusion(arch: str, size: int, width: float, n_images: int, patch: int, batch: int, repeats: int) -> dict:
    from explain.backend import KerasBackend
    from explain.occlusion import occlusion, patch_positions, patch_side
    from explain.view import ModelView

    model = _model(arch, size, width)
    backend = KerasBackend(ModelView(model))
    x = _images(n_images, size, seed=1)
    side = patch_side(patch, size)
    stride = max(1, side // 2)
    pos = patch_positions(size, side, stride)
    occluded = np.repeat(x, len(pos) ** 2, axis=0)
    k = 0
    for i in range(n_images):
        for r in pos:
            for c in pos:
                occluded[k, r:r + side, c:c + side] = 0.5
                k += 1
    total = len(occluded)

    def ours():
        return occlusion(backend, x, None, patch_size_at_224=patch, batch_size=batch)

    def plain():  # the same number of images, the same batches, the same backend
        for s in range(0, total, batch):
            backend.predict(occluded[s:s + batch])
        backend.predict(x)

    ours(), plain()
    t = _best({"ours": ours, "forward": plain}, repeats)
    row = {"arch": arch, "size": size, "images": n_images, "patch_at_224": patch, "patch_px": side,
           "stride": stride, "occluded": total, "batch": batch,
           "forward_s": t["forward"][0], "ours_s": t["ours"][0],
           "ratio_forward": t["ours"][0] / t["forward"][0], "ratio_forward_cpu": t["ours"][1] / t["forward"][1]}
    print(f"occlusion: {row}", flush=True)
    return row


# ------------------------------------------------------------------------------------------------
# 3. Score-CAM memory (one subprocess per measurement)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux ≥ 4.0: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _scorecam_child(impl: str, width: float, size: int, n_images: int, batch: int) -> dict:
    import resource
    import tracemalloc

    from explain.view import ModelView

    model = _model("vgg11", size, width)
    view = ModelView(model)
    x = _images(n_images, size, seed=2)
    model.predict(np.repeat(x, batch // n_images + 1, axis=0)[:batch], batch_size=batch, verbose=0)
    if impl == "ours":
        from explain.backend import KerasBackend
        from explain.scorecam import scorecam

        backend = KerasBackend(view)
        backend.predict(x)
        backend.features(x)
        run = lambda x=x: scorecam(backend, x, 0, batch_size=batch)["raw"]  # noqa: E731
    else:
        from explain.reference import reference_cam, reference_visualizer

        reference_visualizer("scorecam", model)
        run = lambda x=x: reference_cam("scorecam", model, x, 0, view.target_layer, batch_size=batch)  # noqa: E731
    run(x[:1])  # warm-up on one image (tracing, Keras predict functions); the peak counter is reset below
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak_rss()
    before = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = _status_kb("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    growth = (after - rss_before) if reset else (after - before)
    return {"impl": impl, "K": view.target_shape[-1], "rss_growth_mb": growth / 1024.0, "peak_reset": reset,
            "tracemalloc_peak_mb": py_peak / 2**20, "seconds": seconds}


def bench_scorecam_memory(widths: Sequence[float], size: int, n_images: int, batch: int) -> list[dict]:
    rows = []
    for width in widths:
        for impl in ("ours", "tf-keras-vis"):
            cmd = [sys.executable, "-m", "bench.bench_explain", "--scorecam-child", impl, str(width),
                   str(size), str(n_images), str(batch)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                 cwd=Path(__file__).resolve().parent.parent)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(width=width, size=size, images=n_images, batch=batch)
            rows.append(row)
            print(f"scorecam memory: {row}", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------
# report


def _tables(grad: list[dict], occ: dict | None, mem: list[dict]) -> str:
    out = []
    if grad:
        out += ["| model | input | batch | K | forward (s) | ours (s) | ours / forward (wall; CPU) "
                "| tf-keras-vis (s) | speed-up vs tf-keras-vis (wall; CPU) | traces |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in grad:
            out.append(f"| {r['arch']} | {r['size']} | {r['batch']} | {r['K']} | {r['forward_s']:.3f} | "
                       f"{r['ours_s']:.3f} | {r['ratio_forward']:.2f}; {r['ratio_forward_cpu']:.2f} | "
                       f"{r['tkv_s']:.3f} | {r['speedup_tkv']:.1f}×; {r['speedup_tkv_cpu']:.1f}× | {r['traces']} |")
        out.append("")
    if occ:
        out += ["| model | input | images | patch (224 → px) | stride | occluded images | batch | forward (s) "
                "| occlusion (s) | occlusion / forward (wall; CPU) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {occ['arch']} | {occ['size']} | {occ['images']} | {occ['patch_at_224']} → {occ['patch_px']} | "
                f"{occ['stride']} | {occ['occluded']} | {occ['batch']} | {occ['forward_s']:.3f} | "
                f"{occ['ours_s']:.3f} | {occ['ratio_forward']:.2f}; {occ['ratio_forward_cpu']:.2f} |", ""]
    if mem:
        out += ["| implementation | K (channels) | images | input | batch | peak RSS growth (MB) "
                "| tracemalloc peak (MB) | time (s) |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mem:
            out.append(f"| {r['impl']} | {r['K']} | {r['images']} | {r['size']} | {r['batch']} | "
                       f"{r['rss_growth_mb']:.1f} | {r['tracemalloc_peak_mb']:.1f} | {r['seconds']:.2f} |")
        out.append("")
    return "\n".join(out)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def record(text: str, args: argparse.Namespace, path: Path = RESULTS) -> None:
    import tensorflow as tf

    header = "" if path.exists() else "# Benchmark results\n"
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    try:
        load = "load average %.1f" % os.getloadavg()[0]
    except OSError:
        load = "load average unknown"
    body = (
        f"{header}\n## Explanation methods\n\n"
        f"{when}; machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}, {load} at the end; TensorFlow "
        f"{tf.__version__} on CPU. Untrained models of the project's architectures at width {args.width} "
        f"(timings do not depend on the weights). Best of {args.repeats} interleaved runs after warm-up. "
        f"Command: `.venv/bin/python -m bench.bench_explain`.\n\n"
        f"Grad-CAM (eager entry point `explain.cam.gradcam`: checks, compiled graph with the bilinear "
        f"upsampling and per-image normalisation, numpy out) against a compiled plain forward pass of the "
        f"same batch, numpy in and out (target ≤ 1.3) and against tf-keras-vis 0.8.7 `Gradcam` with its default upsampling "
        f"and normalisation (target ≥ 3×); `traces` = how often our graph was traced in the whole run.\n\n"
        f"Occlusion (`explain.occlusion.occlusion` on a `KerasBackend`, default stride = side // 2) against "
        f"the same backend predicting the same number of pre-generated occluded images in the same batches, "
        f"plus the originals (target ≤ 1.2).\n\n"
        f"Score-CAM memory (VGG11 at widths {', '.join(str(w) for w in args.mem_widths)}, target layer "
        f"`block5_conv2`): peak RSS during the call minus the RSS just before it (the kernel's peak "
        f"counter VmHWM is reset before the call via `/proc/self/clear_refs`), and "
        f"tracemalloc's peak (NumPy/Python allocations only), one fresh process per row. tf-keras-vis "
        f"materialises all N·K masked images (and their masks) before predicting; ours streams chunks of "
        f"`batch` masked images.\n\n{text}"
    )
    with path.open("a", encoding="utf-8") as out:
        out.write(body)


def main(argv: Sequence[str] | None = None) -> None:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--scorecam-child":
        impl, width, size, n_images, batch = argv[1], float(argv[2]), int(argv[3]), int(argv[4]), int(argv[5])
        print(json.dumps(_scorecam_child(impl, width, size, n_images, batch)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg11", "resnet18", "simple", "simpler"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--occ-arch", default="vgg11")
    parser.add_argument("--occ-size", type=int, default=128)
    parser.add_argument("--occ-images", type=int, default=4)
    parser.add_argument("--occ-patch", type=int, default=50)
    parser.add_argument("--mem-widths", type=float, nargs="+", default=[0.0625, 0.125, 0.25])
    parser.add_argument("--mem-size", type=int, default=96)
    parser.add_argument("--mem-images", type=int, default=4)
    parser.add_argument("--skip", nargs="*", default=[], choices=["gradcam", "occlusion", "memory"])
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = parser.parse_args(argv)

    grad = [] if "gradcam" in args.skip else bench_gradcam(args.archs, args.sizes, args.width, args.batch, args.repeats)
    occ = None if "occlusion" in args.skip else bench_occlusion(
        args.occ_arch, args.occ_size, args.width, args.occ_images, args.occ_patch, args.batch, max(2, args.repeats // 2))
    mem = [] if "memory" in args.skip else bench_scorecam_memory(args.mem_widths, args.mem_size, args.mem_images, args.batch)
    text = _tables(grad, occ, mem)
    print(text)
    if not args.no_record:
        record(text, args)
        print(f"appended to {RESULTS}")


if __name__ == "__main__":
    main()
