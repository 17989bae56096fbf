"""Parameter checks shared by the methods, in Python and inside a graph.

A parameter given as a Python value is checked at once and raises
:class:`~explain.view.ExplainError`; a parameter that is a graph tensor (a SavedModel signature
input) is checked by a ``tf.debugging.Assert`` whose message has the same form,
``"<name> <value> is out of range; accepted: <lo>..<hi>"`` — the service reports it as
``INVALID_ARGUMENT`` with that text (:func:`serving.errors.status_for`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from explain.view import ExplainError

__all__ = ["check_int", "check_float", "check_choice", "int_in_range", "choice_index"]


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an int in ``lo..hi`` (``hi=None``: no upper bound), else :class:`ExplainError`."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    accepted = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ExplainError(f"{name} {value!r} must be an integer; accepted: {accepted}")
    if value < lo or (hi is not None and value > hi):
        raise ExplainError(f"{name} {value!r} is out of range; accepted: {accepted}")
    return int(value)


def check_float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    """``value`` as a float in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), else :class:`ExplainError`."""
    bracket = "(" if lo_open else "["
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ExplainError(f"{name} {value!r} must be a number; accepted: {bracket}{lo}, {hi}]")
    v = float(value)
    if not np.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise ExplainError(f"{name} {value!r} is out of range; accepted: {bracket}{lo}, {hi}]")
    return v


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ExplainError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ExplainError(f"{name} {value!r} is not supported; accepted: {list(choices)}")
    return value


def int_in_range(name: str, value: Any, lo: int, hi: int) -> tf.Tensor:
    """An int32 tensor equal to ``value``, checked in ``lo..hi`` (in Python when it is not a tensor)."""
    if not tf.is_tensor(value):
        return tf.constant(check_int(name, value, lo, hi), tf.int32)
    value = tf.cast(value, tf.int32)
    ok = tf.logical_and(value >= lo, value <= hi)
    msg = tf.strings.format(f"{name} {{}} is out of range; accepted: {lo}..{hi}", [value])
    with tf.control_dependencies([tf.debugging.Assert(ok, [msg])]):
        return tf.identity(value)


def choice_index(name: str, value: Any, choices: Sequence[str]) -> tf.Tensor:
    """The int32 position of ``value`` in ``choices`` (a string or a string tensor), checked."""
    if not tf.is_tensor(value):
        return tf.constant(list(choices).index(check_choice(name, value, choices)), tf.int32)
    hits = tf.equal(tf.constant(list(choices)), value)
    msg = tf.strings.join([f"{name} '", value, f"' is not supported; accepted: {', '.join(choices)}"])
    with tf.control_dependencies([tf.debugging.Assert(tf.reduce_any(hits), [msg])]):
        return tf.argmax(tf.cast(hits, tf.int32), output_type=tf.int32)
