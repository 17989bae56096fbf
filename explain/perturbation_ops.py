"""The differentiable pieces of the optimised perturbation masks (:mod:`explain.perturbation`).

Gaussian blurs (separable, mirror padding), the total variation ``TV_β`` of a mask, the bilinear
upsampling of a mask, and the objective and Adam step compiled once per backend. The formulas
are stated in :mod:`explain.perturbation` and ``docs/methods/perturbation.md``.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain.backend import Backend

__all__ = ["gaussian_kernel", "gaussian_blur"]

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
