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

Structure: :class:`PerturbationMask` is a subclass of the iterative base
(:class:`explain.iterative.IterativeMethod`, which owns the reference pass, cancellation, the
progress bar and the normalisation). Its steps are small functions: :func:`_settings` (checks),
:func:`_kernels` (blurs), :func:`_stages`, :func:`_noise`, then per batch of images
:meth:`PerturbationMask._optimise_batch` and :meth:`PerturbationMask._run_stage` (Adam). The
differentiable objective and the Adam step are compiled in :mod:`explain.perturbation_ops`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain.backend import Backend, batches
from explain.checks import check_images
from explain.iterative import IterativeMethod
from explain.perturbation_ops import _functions, _upsample, gaussian_blur, gaussian_kernel  # noqa: F401 (re-exported)
from explain.registry import Method, register
from explain.view import ExplainError

__all__ = ["perturbation_mask", "PerturbationMask", "gaussian_kernel", "gaussian_blur", "DEFAULTS", "SCORES", "PERTURBATIONS"]

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


# ---------------------------------------------------------------------------- validation
def _check_images(images: Any, backend: Backend) -> np.ndarray:
    # One image (H, W, 3) or a batch, possibly empty (explain.checks, shared with every method).
    return check_images(images, backend.input_shape, allow_single=True, allow_empty=True)


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
        check_every: ``should_continue()`` is called before every batch of the reference pass
            (so before the first step) and every ``check_every`` steps.
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
    settings = _settings(
        backend, iterations=iterations, refine_iterations=refine_iterations, batch_size=batch_size,
        check_every=check_every, mask_scale=mask_scale, reference_size=reference_size, seed=seed,
        learning_rate=learning_rate, l1_coeff=l1_coeff, tv_coeff=tv_coeff, tv_beta=tv_beta,
        refine_l1_coeff=refine_l1_coeff, refine_tv_coeff=refine_tv_coeff, refine_binary_coeff=refine_binary_coeff,
        blur_sigma=blur_sigma, mask_blur_sigma=mask_blur_sigma, noise_std=noise_std, perturbation=perturbation,
        score=score, log_odds_floor=log_odds_floor,
    )
    method = PerturbationMask(backend, settings, batch_size=batch_size, should_continue=should_continue,
                              progress=progress)
    return method.explain(x_all, class_index)


# ---------------------------------------------------------------------------- the steps
@dataclass(frozen=True)
class _Settings:
    """The validated hyper-parameters (``coeffs``: the non-negative weights and σ, by name)."""

    iterations: int
    refine_iterations: int
    check_every: int
    mask_scale: int
    reference_size: int
    seed: int
    learning_rate: float
    coeffs: dict[str, float]
    perturbation: str
    log_odds: bool
    floor: float


@dataclass(frozen=True)
class _Stage:
    """One optimisation stage: steps, mask shape ``(h, w)``, weights and whether the mask is blurred."""

    iterations: int
    shape: tuple[int, int]
    l1: float
    tv: float
    binary: float
    blur_mask: bool


def _settings(backend: Backend, **given: Any) -> _Settings:
    """Check every hyper-parameter; the messages name the parameter, the value and what is accepted."""
    ints = {name: _positive_int(name, given[name], minimum) for name, minimum in (
        ("iterations", 0), ("refine_iterations", 0), ("batch_size", 1), ("check_every", 1),
        ("mask_scale", 1), ("reference_size", 1), ("seed", 0))}
    lr = _non_negative("learning_rate", given["learning_rate"])
    coeffs = {k: _non_negative(k, given[k]) for k in (
        "l1_coeff", "tv_coeff", "tv_beta", "refine_l1_coeff", "refine_tv_coeff", "refine_binary_coeff",
        "blur_sigma", "mask_blur_sigma", "noise_std")}
    if coeffs["tv_beta"] < 1.0:
        raise ExplainError(f"tv_beta {given['tv_beta']!r} must be >= 1")
    perturbation, score, log_odds_floor = given["perturbation"], given["score"], given["log_odds_floor"]
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
    return _Settings(
        iterations=ints["iterations"], refine_iterations=ints["refine_iterations"],
        check_every=ints["check_every"], mask_scale=ints["mask_scale"], reference_size=ints["reference_size"],
        seed=ints["seed"], learning_rate=lr, coeffs=coeffs, perturbation=perturbation, log_odds=log_odds,
        floor=floor,
    )


def _kernels(s: _Settings, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, bool]:
    """``(ky, kx, mky, mkx, blur_mask)``: the input and mask blurs' 1-D kernels, σ scaled to the input."""
    fy, fx = height / s.reference_size, width / s.reference_size
    ky = tf.constant(gaussian_kernel(s.coeffs["blur_sigma"] * fy, height - 1))
    kx = tf.constant(gaussian_kernel(s.coeffs["blur_sigma"] * fx, width - 1))
    mky = tf.constant(gaussian_kernel(s.coeffs["mask_blur_sigma"] * fy, height - 1))
    mkx = tf.constant(gaussian_kernel(s.coeffs["mask_blur_sigma"] * fx, width - 1))
    blur_mask = s.coeffs["mask_blur_sigma"] > 0 and (mky.shape[0] > 1 or mkx.shape[0] > 1)
    return ky, kx, mky, mkx, bool(blur_mask)


def _stages(s: _Settings, low: tuple[int, int], full: tuple[int, int], blur_mask: bool) -> list[_Stage]:
    """Stage 1 at the low resolution; stage 2 at full resolution when ``refine_iterations > 0``."""
    c = s.coeffs
    stages = [_Stage(s.iterations, low, c["l1_coeff"], c["tv_coeff"], 0.0, blur_mask)]
    if s.refine_iterations:
        stages.append(_Stage(s.refine_iterations, full, c["refine_l1_coeff"], c["refine_tv_coeff"],
                             c["refine_binary_coeff"], False))
    return stages


def _noise(s: _Settings, stage: int, it: int, height: int, width: int) -> tf.Tensor:
    """The blend's noise at a step: a function of the seed only (shared by all images, batch-independent)."""
    if s.coeffs["noise_std"] == 0.0:
        return tf.zeros([1, height, width, 3], tf.float32)
    rng = np.random.default_rng([s.seed, stage, it])
    return tf.constant(rng.normal(0.0, s.coeffs["noise_std"], (1, height, width, 3)).astype(np.float32))


def _f32(value: float) -> tf.Tensor:
    return tf.constant(value, tf.float32)


class PerturbationMask(IterativeMethod):
    """The deletion game on the iterative base: batches of images, each optimised by Adam.

    ``should_continue()`` is checked before every batch of the reference pass and every
    ``check_every`` optimisation steps; the progress bar counts steps.
    """

    name = "perturbation_mask"
    unit = "steps"

    def __init__(self, backend: Backend, settings: _Settings, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.s = settings
        self.steps_done = 0

    def check_images(self, images: Any) -> np.ndarray:
        return _check_images(images, self.backend)

    def reference(self, images: np.ndarray) -> np.ndarray:
        if not len(images):
            self.keep_going("before the first step")
            return np.zeros((0, self.backend.num_classes or 0), np.float32)
        return self.predict_all(images, np.float32)

    def compute(self, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
        height, width = (int(v) for v in self.backend.input_shape[:2])
        low = (max(1, math.ceil(height / self.s.mask_scale)), max(1, math.ceil(width / self.s.mask_scale)))
        self.kernels = _kernels(self.s, height, width)
        self.stages = _stages(self.s, low, (height, width), self.kernels[4])
        self.fns = _functions(self.backend)
        n_batches = len(list(batches(len(images), self.batch_size)))
        self.bar = self._progress_bar(sum(st.iterations for st in self.stages) * n_batches)
        parts: list[tuple[np.ndarray, ...]] = []
        try:
            for sl in batches(len(images), self.batch_size):
                parts.append(self._optimise_batch(images[sl], classes[sl].astype(np.int32)))
        finally:
            if self.bar is not None:
                self.bar.close()
        empty = (np.zeros((0, *low)), np.zeros((0, height, width)), np.zeros((0,)), np.zeros((0,)))
        mask_low, mask, p_pert, loss = (np.concatenate(col).astype(np.float32) for col in zip(*parts or [empty]))
        self.extras.update(mask=mask, mask_lowres=mask_low, probability_perturbed=p_pert, loss=loss)
        return (1.0 - mask).astype(np.float32)

    def outputs(self, raw: np.ndarray, classes: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        return super().outputs(raw, classes.astype(np.int32), probabilities)

    def _progress_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=self.name, unit="step")

    def _optimise_batch(self, images: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Both stages on one batch: ``(mask_lowres, mask, p_c(Φ(x; M)), loss)`` as numpy."""
        ky, kx, mky, mkx, _ = self.kernels
        height, width = images.shape[1:3]
        x = tf.constant(images)
        if self.s.perturbation == "constant":  # each image's mean colour
            xb = tf.broadcast_to(tf.reduce_mean(x, axis=[1, 2], keepdims=True), tf.shape(x))
        else:
            xb = gaussian_blur(x, ky, kx)
        cls = tf.constant(classes)
        m = tf.ones([int(x.shape[0]), *self.stages[0].shape, 1], tf.float32)
        low = m
        for stage_no, stage in enumerate(self.stages):
            if stage_no == 1:
                low = m
                m = tf.clip_by_value(_upsample(m, (height, width)), 0.0, 1.0)
            m = self._run_stage(stage_no, stage, m, x, xb, cls)
        if len(self.stages) == 1:
            low = m
        big = tf.clip_by_value(_upsample(m, (height, width)), 0.0, 1.0)
        last = self.stages[-1]
        per, pc = self.fns["objective"](  # the returned mask, without noise or mask blur
            m, x, xb, cls, tf.zeros([1, height, width, 3], tf.float32), _f32(last.l1), _f32(last.tv),
            _f32(self.s.coeffs["tv_beta"]), _f32(last.binary), mky, mkx, False, self.s.log_odds, _f32(self.s.floor),
        )
        return low.numpy()[..., 0], big.numpy()[..., 0], pc.numpy(), per.numpy()

    def _run_stage(self, stage_no: int, stage: _Stage, m: tf.Tensor, x: tf.Tensor, xb: tf.Tensor,
                   cls: tf.Tensor) -> tf.Tensor:
        """Adam on the mask ``m`` for ``stage.iterations`` steps, clamped to ``[0, 1]`` after each."""
        _, _, mky, mkx, _ = self.kernels
        height, width = int(x.shape[1]), int(x.shape[2])
        m = tf.ensure_shape(m, [int(x.shape[0]), *stage.shape, 1])
        adam_m, adam_v = tf.zeros_like(m), tf.zeros_like(m)
        args = (_f32(self.s.learning_rate), _f32(stage.l1), _f32(stage.tv), _f32(self.s.coeffs["tv_beta"]),
                _f32(stage.binary), mky, mkx, stage.blur_mask, self.s.log_odds, _f32(self.s.floor))
        for it in range(stage.iterations):
            if it % self.s.check_every == 0 and self.steps_done:
                self.keep_going(f"after {self.steps_done} {self.unit}")
            m, adam_m, adam_v, _ = self.fns["step"](
                m, adam_m, adam_v, _f32(it + 1), x, xb, cls, _noise(self.s, stage_no, it, height, width), *args
            )
            self.steps_done += 1
            if self.bar is not None:
                self.bar.update(1)
        return m


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
