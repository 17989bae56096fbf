"""Optimised perturbation masks (seed 004, after Fong & Vedaldi 2017, "Interpretable Explanations
of Black Boxes by Meaningful Perturbation"), the *deletion game*.

A mask ``m ∈ [0, 1]`` at low resolution (input/8 by default) is upsampled bilinearly to
``M`` ``(H, W)`` and blends the image with a blurred copy of itself:

    Φ(x; M) = x ⊙ M + blur_σ(x) ⊙ (1 − M)          (M = 1 keeps the pixel, M = 0 deletes it)

and the optimisation finds the smallest deletion that destroys the class evidence:

    min_m  p_c(Φ(x; M)) + λ1 · mean|1 − m| + λ2 · TV_β(m)                       (stage 1)

``p_c`` is the softmax probability of class ``c`` (``backend.predict_tf``, differentiable),
``TV_β(m) = mean |m[i+1, j] − m[i, j]|^β + mean |m[i, j+1] − m[i, j]|^β``. Adam (lr 0.1,
β1 0.9, β2 0.999, ε 1e-8, written out here so that every example's update depends on its own
gradient only), ``m`` clamped to ``[0, 1]`` after each step. Defaults (SPEC.md §2, from the
authors' code): 300 iterations, λ1 0.5, λ2 0.01, β 3, input blur σ 10 px, and on the forward
pass only (straight-through: ``M + stop_gradient(blur_5(M) − M)``) the upsampled mask blurred
with σ 5 px. Both σ are given at 224 px and scaled with the input (``σ · H / 224`` along rows,
``σ · W / 224`` along columns). Gaussian blurs use a kernel of radius ``ceil(3σ)`` and symmetric
(mirror) padding.

Optional stage 2 (``refine_iterations > 0``, off by default): a full-resolution mask, started
from the stage-1 ``M``, optimised with λ1 0.01, TV weight 1.0 (same β) plus
``2.0 · mean|m (1 − m)|`` (pushes towards a binary mask), no mask blur, 150 iterations.

Options beyond SPEC.md (defaults off, so the defaults are SPEC.md's):

* ``score="log_odds"`` minimises ``max(log(p_c / (1 − p_c)), log_odds_floor)`` (floor −2 by
  default, ``p_c ≈ 0.12``) in place of ``p_c``, computed stably from the logits
  (``backend.logits_tf``: ``z_c − logsumexp_{j≠c} z_j``). A confident model's ``p_c`` rounds to
  1 in float32, its gradient vanishes and the L1 term then keeps the mask at 1: the deletion game
  finds nothing. The log-odds do not saturate; the floor plays the role of ``p_c``'s lower
  bound (no gain from deleting more once the class is gone). The log-odds span tens of units
  where ``p_c`` spans 1, so ``l1_coeff`` is usually raised with it.
* ``perturbation="constant"`` replaces deleted pixels by the image's mean colour (Fong &
  Vedaldi's constant perturbation) in place of the blurred image: a blur keeps a flat-coloured
  object wider than its σ, and a model that looks at colour then cannot be fooled by it.

Choices where the paper is silent:

* Initial mask: all ones (the unperturbed image; as in the authors' PyTorch re-implementation).
  The loss terms other than ``p_c`` have zero gradient there, so the first steps follow ``p_c``.
* Noise: ``noise_std`` (default 0 = none) adds Gaussian noise to the blend at every iteration
  (the authors' code adds it against adversarial masks). It is drawn from ``seed`` and shared by
  every image of the request, so a result does not depend on the batch it was computed in.
  With the defaults the optimisation is deterministic (no randomness at all).
* The loss of a batch is the sum of the per-image objectives and Adam is element-wise, so a
  batch gives what each image gives alone (up to float rounding of the batched forward pass).

What is returned (numpy, ``N`` images, ``(H, W)`` input size):

* ``heatmap`` ``(N, H, W)``: the importance ``1 − M`` normalised per image,
  ``(L − min L)/(max L − min L + 1e-7)`` — **high = deleted by the optimisation = important**;
* ``raw`` ``(N, H, W)``: the importance ``1 − M`` itself (in ``[0, 1]``, not normalised;
  1 = fully replaced by the blur);
* ``mask`` ``(N, H, W)``: ``M`` (1 = kept), the final mask upsampled bilinearly (stage 2's mask
  when it ran); ``mask_lowres`` ``(N, h, w)``: ``m`` after stage 1;
* ``class_index`` ``(N,)``, ``probabilities`` ``(N, C)`` of the original images,
  ``probability_perturbed`` ``(N,)``: ``p_c(Φ(x; M))`` with the returned ``M`` (no noise,
  no mask blur), ``loss`` ``(N,)`` the final objective of the last stage (same, no noise, no
  mask blur).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain.backend import Backend, Cancelled, batches
from explain.registry import Method, register
from explain.view import ExplainError

__all__ = ["perturbation_mask", "gaussian_kernel", "gaussian_blur", "DEFAULTS", "SCORES", "PERTURBATIONS"]

DEFAULTS: dict[str, Any] = {
    "class_index": -1,
    "iterations": 300,
    "seed": 0,
    "learning_rate": 0.1,
    "l1_coeff": 0.5,
    "tv_coeff": 0.01,
    "tv_beta": 3.0,
    "blur_sigma": 10.0,
    "mask_blur_sigma": 5.0,
    "reference_size": 224,
    "mask_scale": 8,
    "refine_iterations": 0,
    "refine_l1_coeff": 0.01,
    "refine_tv_coeff": 1.0,
    "refine_binary_coeff": 2.0,
    "noise_std": 0.0,
    "perturbation": "blur",
    "score": "probability",
    "log_odds_floor": -2.0,
    "batch_size": 16,
    "check_every": 10,
}

#: Accepted values of ``score``: the class evidence the deletion game minimises.
SCORES = ("probability", "log_odds")
#: Accepted values of ``perturbation``: what a deleted pixel is replaced with.
PERTURBATIONS = ("blur", "constant")

_B1, _B2, _EPS = 0.9, 0.999, 1e-8


# ---------------------------------------------------------------------------- blurs
def gaussian_kernel(sigma: float, max_radius: int) -> np.ndarray:
    """Normalised 1-D Gaussian of radius ``min(ceil(3σ), max_radius)``; ``[1]`` for ``σ ≤ 0``."""
    if sigma <= 0 or max_radius < 1:
        return np.ones(1, np.float32)
    r = max(1, min(int(math.ceil(3.0 * sigma)), int(max_radius)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return (k / k.sum()).astype(np.float32)


def gaussian_blur(x: tf.Tensor, ky: tf.Tensor, kx: tf.Tensor) -> tf.Tensor:
    """Separable blur of ``(N, H, W, C)`` with 1-D kernels ``ky``, ``kx`` (odd lengths ≤ 2H+1,
    2W+1), mirror (symmetric) padding, output the same size."""
    c = x.shape[-1]
    ry = (int(ky.shape[0]) - 1) // 2
    rx = (int(kx.shape[0]) - 1) // 2
    if ry > 0:
        x = tf.pad(x, [[0, 0], [ry, ry], [0, 0], [0, 0]], mode="SYMMETRIC")
        f = tf.tile(tf.reshape(ky, [-1, 1, 1, 1]), [1, 1, c, 1])
        x = tf.nn.depthwise_conv2d(x, f, strides=[1, 1, 1, 1], padding="VALID")
    if rx > 0:
        x = tf.pad(x, [[0, 0], [0, 0], [rx, rx], [0, 0]], mode="SYMMETRIC")
        f = tf.tile(tf.reshape(kx, [1, -1, 1, 1]), [1, 1, c, 1])
        x = tf.nn.depthwise_conv2d(x, f, strides=[1, 1, 1, 1], padding="VALID")
    return x


def _tv(m: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Per-example ``TV_β`` of ``(N, h, w, 1)`` (zero along an axis of length 1)."""
    terms = []
    if m.shape[1] is None or m.shape[1] > 1:
        terms.append(tf.reduce_mean(tf.pow(tf.abs(m[:, 1:] - m[:, :-1]), beta), axis=[1, 2, 3]))
    if m.shape[2] is None or m.shape[2] > 1:
        terms.append(tf.reduce_mean(tf.pow(tf.abs(m[:, :, 1:] - m[:, :, :-1]), beta), axis=[1, 2, 3]))
    if not terms:
        return tf.zeros(tf.shape(m)[:1], m.dtype)
    return tf.add_n(terms)


def _upsample(m: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    if tuple(m.shape[1:3]) == tuple(size):
        return m
    return tf.image.resize(m, size, method="bilinear")  # half-pixel centres


# ---------------------------------------------------------------------------- compiled steps
_STEPS: "weakref.WeakKeyDictionary[Backend, dict]" = weakref.WeakKeyDictionary()


def _functions(backend: Backend) -> dict[str, Callable[..., Any]]:
    """``objective`` and ``step`` compiled once per backend (hyper-parameters are tensors)."""
    fns = _STEPS.get(backend)
    if fns is not None:
        return fns
    size = tuple(int(s) for s in backend.input_shape[:2])

    def objective(m, x, xb, cls, noise, l1, tv, beta, binary, mky, mkx, blur_mask, log_odds, floor):
        big = _upsample(m, size)
        if blur_mask:  # straight-through: blurred forward, identity backward
            big = big + tf.stop_gradient(gaussian_blur(big, mky, mkx) - big)
        blend = x * big + xb * (1.0 - big) + noise
        if log_odds:
            z = backend.logits_tf(blend)
            zc = tf.gather(z, cls, axis=1, batch_dims=1)
            others = tf.where(tf.one_hot(cls, tf.shape(z)[1]) > 0, tf.constant(-np.inf, z.dtype), z)
            odds = zc - tf.reduce_logsumexp(others, axis=1)  # log(p_c / (1 - p_c)), no saturation
            pc = tf.sigmoid(odds)
            term = tf.maximum(odds, floor)
        else:
            pc = tf.gather(backend.predict_tf(blend), cls, axis=1, batch_dims=1)
            term = pc
        per = (
            term
            + l1 * tf.reduce_mean(tf.abs(1.0 - m), axis=[1, 2, 3])
            + tv * _tv(m, beta)
            + binary * tf.reduce_mean(tf.abs(m * (1.0 - m)), axis=[1, 2, 3])
        )
        return per, pc

    def step(m, adam_m, adam_v, t, x, xb, cls, noise, lr, l1, tv, beta, binary, mky, mkx, blur_mask, log_odds, floor):
        with tf.GradientTape() as tape:
            tape.watch(m)
            per, _ = objective(m, x, xb, cls, noise, l1, tv, beta, binary, mky, mkx, blur_mask, log_odds, floor)
            total = tf.reduce_sum(per)  # sum of independent per-image objectives
        g = tape.gradient(total, m)
        adam_m = _B1 * adam_m + (1.0 - _B1) * g
        adam_v = _B2 * adam_v + (1.0 - _B2) * tf.square(g)
        m_hat = adam_m / (1.0 - tf.pow(_B1, t))
        v_hat = adam_v / (1.0 - tf.pow(_B2, t))
        m = tf.clip_by_value(m - lr * m_hat / (tf.sqrt(v_hat) + _EPS), 0.0, 1.0)
        return m, adam_m, adam_v, per

    fns = {
        "step": tf.function(step, reduce_retracing=True),
        "objective": tf.function(objective, reduce_retracing=True),
    }
    _STEPS[backend] = fns
    return fns


# ---------------------------------------------------------------------------- validation
def _check_images(images: Any, backend: Backend) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ExplainError(f"images must have shape (N, H, W, 3); got shape {arr.shape}")
    expected = tuple(int(s) for s in backend.input_shape)
    if tuple(arr.shape[1:]) != expected:
        raise ExplainError(
            f"images have shape {list(arr.shape)}; the model accepts (N, {expected[0]}, {expected[1]}, {expected[2]})"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype.kind != "f":
        raise ExplainError(f"images dtype {arr.dtype} is not supported; accepted: uint8, float in [0, 1]")
    return arr.astype(np.float32)


def _resolve_classes(class_index: Any, probs: np.ndarray) -> np.ndarray:
    n, c = probs.shape
    predicted = probs.argmax(axis=1).astype(np.int32)
    if class_index is None:
        return predicted
    idx = np.asarray(class_index)
    if idx.dtype.kind not in "iu":
        raise ExplainError(f"class_index {class_index!r} must be an integer or an array of integers")
    idx = np.broadcast_to(idx.reshape(-1) if idx.ndim else idx, (n,)) if idx.size in (1, n) else None
    if idx is None:
        raise ExplainError(f"class_index has {np.asarray(class_index).size} entries for {n} images; pass one or {n}")
    bad = idx[(idx < -1) | (idx >= c)]
    if bad.size:
        raise ExplainError(
            f"class_index {int(bad[0])} is out of range for a model with {c} classes; "
            f"accepted: -1 (predicted) or 0..{c - 1}"
        )
    return np.where(idx < 0, predicted, idx).astype(np.int32)


def _positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ExplainError(f"{name} {value!r} must be an integer >= {minimum}")
    return int(value)


def _non_negative(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ExplainError(f"{name} {value!r} must be a number >= 0") from None
    if not (v >= 0.0) or not math.isfinite(v):
        raise ExplainError(f"{name} {value!r} must be a finite number >= 0")
    return v


# ---------------------------------------------------------------------------- entry point
def perturbation_mask(
    backend: Backend,
    images: Any,
    class_index: Any = -1,
    iterations: int = DEFAULTS["iterations"],
    seed: int = DEFAULTS["seed"],
    *,
    learning_rate: float = DEFAULTS["learning_rate"],
    l1_coeff: float = DEFAULTS["l1_coeff"],
    tv_coeff: float = DEFAULTS["tv_coeff"],
    tv_beta: float = DEFAULTS["tv_beta"],
    blur_sigma: float = DEFAULTS["blur_sigma"],
    mask_blur_sigma: float = DEFAULTS["mask_blur_sigma"],
    reference_size: int = DEFAULTS["reference_size"],
    mask_scale: int = DEFAULTS["mask_scale"],
    refine_iterations: int = DEFAULTS["refine_iterations"],
    refine_l1_coeff: float = DEFAULTS["refine_l1_coeff"],
    refine_tv_coeff: float = DEFAULTS["refine_tv_coeff"],
    refine_binary_coeff: float = DEFAULTS["refine_binary_coeff"],
    noise_std: float = DEFAULTS["noise_std"],
    perturbation: str = DEFAULTS["perturbation"],
    score: str = DEFAULTS["score"],
    log_odds_floor: float = DEFAULTS["log_odds_floor"],
    batch_size: int = DEFAULTS["batch_size"],
    check_every: int = DEFAULTS["check_every"],
    should_continue: Callable[[], bool] | None = None,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Optimised perturbation (deletion) masks, batched; see the module docstring.

    Args:
        backend: A :class:`~explain.backend.Backend` with ``predict_tf`` (differentiable).
        images: ``(N, H, W, 3)`` float in ``[0, 1]`` or uint8.
        class_index: ``-1``/``None`` = the predicted class, an int, or one per image.
        iterations: Stage-1 Adam steps.
        seed: Seeds the noise (the only randomness; none with ``noise_std = 0``).
        learning_rate, l1_coeff, tv_coeff, tv_beta: Adam step size, λ1, λ2, β.
        blur_sigma, mask_blur_sigma: σ of the input blur and of the forward-pass mask blur, in
            pixels at ``reference_size`` (scaled to the input size); 0 disables.
        mask_scale: The stage-1 mask is ``ceil(H / mask_scale) × ceil(W / mask_scale)``.
        refine_iterations: Stage-2 (full resolution) steps; 0 = no stage 2.
        refine_l1_coeff, refine_tv_coeff, refine_binary_coeff: Stage-2 weights.
        noise_std: Std of Gaussian noise added to the blend each iteration.
        perturbation: What a deleted pixel becomes: ``"blur"`` (the blurred image, SPEC.md) or
            ``"constant"`` (the image's mean colour; Fong & Vedaldi's constant perturbation).
        score: The class evidence minimised: ``"probability"`` (``p_c``, SPEC.md) or
            ``"log_odds"`` (``max(log(p_c / (1 − p_c)), log_odds_floor)`` from the logits; see the
            module docstring).
        log_odds_floor: With ``score="log_odds"``, no gain below this log-odds.
        batch_size: Images optimised together.
        check_every: ``should_continue()`` is called before the first step and every
            ``check_every`` steps.
        should_continue: Returns False to stop; the method then raises
            :class:`~explain.backend.Cancelled`.
        progress: Show a tqdm bar over the iterations.

    Returns:
        ``heatmap``, ``raw``, ``mask``, ``mask_lowres``, ``class_index``, ``probabilities``,
        ``probability_perturbed``, ``loss`` (see the module docstring).

    Raises:
        ExplainError: bad images or parameters; MethodUnavailable: no differentiable input;
        Cancelled: ``should_continue()`` returned False.
    """
    x_all = _check_images(images, backend)
    iterations = _positive_int("iterations", iterations, 0)
    refine_iterations = _positive_int("refine_iterations", refine_iterations, 0)
    batch_size = _positive_int("batch_size", batch_size)
    check_every = _positive_int("check_every", check_every)
    mask_scale = _positive_int("mask_scale", mask_scale)
    reference_size = _positive_int("reference_size", reference_size)
    seed = _positive_int("seed", seed, 0)
    lr = _non_negative("learning_rate", learning_rate)
    coeffs = {k: _non_negative(k, v) for k, v in dict(
        l1_coeff=l1_coeff, tv_coeff=tv_coeff, tv_beta=tv_beta, refine_l1_coeff=refine_l1_coeff,
        refine_tv_coeff=refine_tv_coeff, refine_binary_coeff=refine_binary_coeff,
        blur_sigma=blur_sigma, mask_blur_sigma=mask_blur_sigma, noise_std=noise_std,
    ).items()}
    if coeffs["tv_beta"] < 1.0:
        raise ExplainError(f"tv_beta {tv_beta!r} must be >= 1")
    if perturbation not in PERTURBATIONS:
        raise ExplainError(f"perturbation {perturbation!r} is not one of {list(PERTURBATIONS)}")
    if score not in SCORES:
        raise ExplainError(f"score {score!r} is not one of {list(SCORES)}")
    log_odds = score == "log_odds"
    try:
        floor = float(log_odds_floor)
    except (TypeError, ValueError):
        raise ExplainError(f"log_odds_floor must be a number; got {log_odds_floor!r}") from None
    if not math.isfinite(floor):
        raise ExplainError(f"log_odds_floor must be finite; got {log_odds_floor!r}")
    if log_odds and (backend.num_classes or 0) < 2:
        raise ExplainError(f"score 'log_odds' needs at least 2 classes; the model has {backend.num_classes}")

    def keep_going() -> None:
        if should_continue is not None and not should_continue():
            raise Cancelled("perturbation_mask cancelled (should_continue() returned False)")

    keep_going()
    n = x_all.shape[0]
    H, W = (int(s) for s in backend.input_shape[:2])
    h, w = max(1, math.ceil(H / mask_scale)), max(1, math.ceil(W / mask_scale))
    fy, fx = H / reference_size, W / reference_size
    ky = tf.constant(gaussian_kernel(coeffs["blur_sigma"] * fy, H - 1))
    kx = tf.constant(gaussian_kernel(coeffs["blur_sigma"] * fx, W - 1))
    mky = tf.constant(gaussian_kernel(coeffs["mask_blur_sigma"] * fy, H - 1))
    mkx = tf.constant(gaussian_kernel(coeffs["mask_blur_sigma"] * fx, W - 1))
    blur_mask = coeffs["mask_blur_sigma"] > 0 and (mky.shape[0] > 1 or mkx.shape[0] > 1)

    probs = np.concatenate([backend.predict(x_all[sl]) for sl in batches(n, batch_size)]) if n else np.zeros((0, backend.num_classes or 0), np.float32)
    classes = _resolve_classes(class_index, probs) if n else np.zeros((0,), np.int32)

    fns = _functions(backend)
    f32 = lambda v: tf.constant(v, tf.float32)  # noqa: E731
    stages = [(iterations, (h, w), coeffs["l1_coeff"], coeffs["tv_coeff"], 0.0, blur_mask)]
    if refine_iterations:
        stages.append((refine_iterations, (H, W), coeffs["refine_l1_coeff"], coeffs["refine_tv_coeff"],
                       coeffs["refine_binary_coeff"], False))
    total_steps = (iterations + refine_iterations) * len(list(batches(n, batch_size)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc="perturbation_mask", unit="step")

    # the noise sequence depends only on the seed (shared by all images, batch-independent)
    def noise_for(stage: int, it: int) -> tf.Tensor:
        if coeffs["noise_std"] == 0.0:
            return tf.zeros([1, H, W, 3], tf.float32)
        rng = np.random.default_rng([seed, stage, it])
        return tf.constant(rng.normal(0.0, coeffs["noise_std"], (1, H, W, 3)).astype(np.float32))

    out_low, out_mask, out_p, out_loss = [], [], [], []
    step_count = 0
    try:
        for sl in batches(n, batch_size):
            x = tf.constant(x_all[sl])
            if perturbation == "constant":  # each image's mean colour
                xb = tf.broadcast_to(tf.reduce_mean(x, axis=[1, 2], keepdims=True), tf.shape(x))
            else:
                xb = gaussian_blur(x, ky, kx)
            cls = tf.constant(classes[sl])
            b = int(x.shape[0])
            m = tf.ones([b, h, w, 1], tf.float32)
            low = m
            for stage_no, (iters, shape, l1, tv, binary, blurm) in enumerate(stages):
                if stage_no == 1:
                    low = m
                    m = tf.clip_by_value(_upsample(m, (H, W)), 0.0, 1.0)
                m = tf.ensure_shape(m, [b, *shape, 1])
                adam_m = tf.zeros_like(m)
                adam_v = tf.zeros_like(m)
                args = (f32(lr), f32(l1), f32(tv), f32(coeffs["tv_beta"]), f32(binary), mky, mkx, blurm,
                        log_odds, f32(floor))
                for it in range(iters):
                    if it % check_every == 0 and step_count:
                        keep_going()
                    m, adam_m, adam_v, _ = fns["step"](
                        m, adam_m, adam_v, f32(it + 1), x, xb, cls, noise_for(stage_no, it), *args
                    )
                    step_count += 1
                    if bar is not None:
                        bar.update(1)
            if len(stages) == 1:
                low = m
            big = tf.clip_by_value(_upsample(m, (H, W)), 0.0, 1.0)
            last = stages[-1]
            per, pc = fns["objective"](  # the returned mask, without noise or mask blur
                m, x, xb, cls, tf.zeros([1, H, W, 3], tf.float32), f32(last[2]), f32(last[3]),
                f32(coeffs["tv_beta"]), f32(last[4]), mky, mkx, False, log_odds, f32(floor),
            )
            out_low.append(low.numpy()[..., 0])
            out_mask.append(big.numpy()[..., 0])
            out_p.append(pc.numpy())
            out_loss.append(per.numpy())
    finally:
        if bar is not None:
            bar.close()

    if n:
        mask = np.concatenate(out_mask).astype(np.float32)
        mask_low = np.concatenate(out_low).astype(np.float32)
        p_pert = np.concatenate(out_p).astype(np.float32)
        loss = np.concatenate(out_loss).astype(np.float32)
    else:
        mask = np.zeros((0, H, W), np.float32)
        mask_low = np.zeros((0, h, w), np.float32)
        p_pert = loss = np.zeros((0,), np.float32)
    raw = (1.0 - mask).astype(np.float32)
    lo = raw.min(axis=(1, 2), keepdims=True) if n else 0.0
    hi = raw.max(axis=(1, 2), keepdims=True) if n else 0.0
    heatmap = ((raw - lo) / (hi - lo + 1e-7)).astype(np.float32)
    return {
        "heatmap": heatmap,
        "raw": raw,
        "mask": mask,
        "mask_lowres": mask_low,
        "class_index": classes.astype(np.int32),
        "probabilities": probs.astype(np.float32),
        "probability_perturbed": p_pert,
        "loss": loss,
    }


from explain.schema import Param  # noqa: E402  (the declarations below)

_SIGMA = "px at reference_size"
register(
    Method(
        name="perturbation_mask",
        fn=perturbation_mask,
        kind="iterative",
        applies_to="classifier",
        parameters=(
            Param("iterations", int, 300, lo=0, unit="steps", doc="stage-1 Adam steps"),
            Param("seed", int, 0, lo=0, doc="seeds the noise (none with noise_std = 0)"),
            Param("learning_rate", float, 0.1, lo=0.0, doc="Adam step size"),
            Param("l1_coeff", float, 0.5, lo=0.0, doc="λ1, weight of the deleted area"),
            Param("tv_coeff", float, 0.01, lo=0.0, doc="λ2, weight of the total variation"),
            Param("tv_beta", float, 3.0, lo=1.0, doc="β, exponent of the total variation"),
            Param("blur_sigma", float, 10.0, lo=0.0, unit=_SIGMA, doc="σ of the input blur (0 disables)"),
            Param("mask_blur_sigma", float, 5.0, lo=0.0, unit=_SIGMA, doc="σ of the forward-pass mask blur (0 disables)"),
            Param("reference_size", int, 224, lo=1, unit="px", doc="input size the σ are given at"),
            Param("mask_scale", int, 8, lo=1, doc="the stage-1 mask is input / mask_scale per side"),
            Param("refine_iterations", int, 0, lo=0, unit="steps", doc="stage-2 (full resolution) steps; 0 = none"),
            Param("refine_l1_coeff", float, 0.01, lo=0.0, doc="stage-2 λ1"),
            Param("refine_tv_coeff", float, 1.0, lo=0.0, doc="stage-2 total-variation weight"),
            Param("refine_binary_coeff", float, 2.0, lo=0.0, doc="stage-2 weight of mean|m(1 − m)|"),
            Param("noise_std", float, 0.0, lo=0.0, doc="std of the Gaussian noise added to the blend"),
            Param("perturbation", str, "blur", choices=PERTURBATIONS, doc="what a deleted pixel becomes"),
            Param("score", str, "probability", choices=SCORES, doc="the class evidence minimised"),
            Param("log_odds_floor", float, -2.0, doc="with score=log_odds, no gain below this log-odds"),
            Param("batch_size", int, 16, lo=1, unit="images", doc="images optimised together"),
            Param("check_every", int, 10, lo=1, unit="steps", doc="steps between cancellation checks"),
        ),
        label="perturbation mask",
        label_for_params=lambda p: f"perturbation mask {p['iterations']}",
        cost="costly",
        description=(
            "Optimised perturbation mask (seed 004, Fong & Vedaldi 2017): the smallest blur-deletion that "
            "destroys the class probability; heatmap = 1 - mask (high = important)."
        ),
    )
)
