"""Run Xplique 2.0.2's IG, RISE and occlusion on a saved Keras model (in Xplique's own venv).

Xplique pins ``tensorflow<=2.20``, the project uses 2.21, so this script runs in a separate virtual
environment (``.venv-xplique``, see ``docs/methods/gradients.md``) and talks to the project through
files: ``python bench/xplique_run.py MODEL.keras LOGITS.keras IN.npz OUT.npz``. ``IN.npz`` holds
``images`` (N, H, W, 3) float32 in [0, 1], ``classes`` (N,) and the settings (``ig_steps``,
``rise_masks``, ``rise_grid``, ``occ_patch``, ``occ_value``, ``repeats``); ``OUT.npz`` gets
``ig`` (N, H, W, 3), ``rise`` (N, H, W), ``occlusion`` (N, H, W) and ``*_seconds`` (the best of
``repeats`` timed runs after one warm-up). ``LOGITS.keras`` is the same network without its
softmax (IG attributes the logit, as the project does). Imports nothing from the project.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(model_path: str, logits_path: str, in_path: str, out_path: str) -> None:
    import keras
    from xplique.attributions import IntegratedGradients, Occlusion, Rise

    data = np.load(in_path)
    x = data["images"].astype(np.float32)
    classes = data["classes"].astype(np.int64)
    model = keras.models.load_model(model_path, compile=False)
    logits_model = keras.models.load_model(logits_path, compile=False)
    targets = np.eye(model.output_shape[-1], dtype=np.float32)[classes]
    repeats = int(data["repeats"])
    explainers = {
        "ig": IntegratedGradients(logits_model, steps=int(data["ig_steps"]) + 1, baseline_value=0.0, batch_size=64),
        "rise": Rise(model, nb_samples=int(data["rise_masks"]), grid_size=int(data["rise_grid"]),
                     preservation_probability=0.5, mask_value=0.0, batch_size=64),
        "occlusion": Occlusion(model, patch_size=int(data["occ_patch"]), patch_stride=int(data["occ_patch"]),
                               occlusion_value=float(data["occ_value"]), batch_size=64),
    }
    out = {}
    for name, explainer in explainers.items():
        result = np.asarray(explainer(x, targets))
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            explainer(x, targets)
            best = min(best, time.perf_counter() - start)
        out[name] = result
        out[f"{name}_seconds"] = np.float64(best)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
