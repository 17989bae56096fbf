"""Excitation backprop and contrastive MWP (Zhang et al. 2016; seed 003's ``C-MWP``; SPEC §2).

Excitation backprop is a top-down *probabilistic* pass: every unit passes its marginal winning
probability (MWP) ``p`` to its children in proportion to their excitatory contribution. It is
implemented here as **custom gradients**: :meth:`explain.view.ModelView.run` is called with a
``call_wrapper`` that gives every leaf layer call (and the classifier's logit computation) a
backward rule, so ``tape.gradient(logits, T, output_gradients=one_hot)`` *is* the MWP signal at
any intermediate tensor ``T``. Fan-out (a tensor read by several layers, as a ResNet block input
read by the shortcut and the residual branch) sums the signals of all parents, as MWP requires.

Rules (``p`` at a layer's output → ``p_in`` at its input; ``x⁺ = max(x, 0)``)
----------------------------------------------------------------------------
* **Linear maps** — ``Dense``, ``Conv2D``, ``AveragePooling2D``, ``GlobalAveragePooling2D`` and the
  classifier ``Dense``: ``W⁺ = max(W, 0)``, bias dropped, ``z = layer(x⁺; W⁺)``,
  ``p_in = x⁺ ⊙ Jᵀ_{W⁺}(p / (z + ε))``, with the share set to 0 where ``z = 0`` (``ε = 1e-30``
  only guards the division; it is far below any float32 response, because untrained deep
  networks such as MobileNetV2 have responses near 1e-11 where a larger ε loses mass). ``Jᵀ`` is the vector–Jacobian product of the positive-weight layer
  (an inner ``GradientTape``), so strides, padding and the pooling windows are the layer's own.
  SPEC states the rule for ``x ≥ 0``; all four classifiers satisfy it (the image is in ``[0, 1]``
  and every conv/dense input is post-ReLU, post-max-pool or a global average of such). For a
  negative input the project uses ``x⁺`` — a negative activation carries no excitation — which
  equals SPEC's rule whenever ``x ≥ 0``.
* **Fused activation** of ``Conv2D``/``Dense`` (``activation="relu"``): the ReLU rule first
  (``p`` passes where the pre-activation ``Wx + b > 0``, i.e. where the output is positive), then
  the linear rule. Only ``relu`` and ``linear`` activations are supported.
* **ReLU** (``Activation('relu')``, ``ReLU``), **max pooling** (incl. ResNet18's
  ``MaxPooling2D(1, strides=2)`` subsampling) and **global max pooling**: the plain gradient — the
  signal goes to the unit that won the max (TF's first argmax on ties).
* **BatchNormalization** and **Dropout**: ``p`` passes unchanged (SPEC). BN is affine per
  channel, so it is read as part of the unit of the preceding convolution: the signal of a BN
  output unit is handed, unscaled, to the conv output unit it normalises, and the conv rule then
  shares it among the conv's inputs by their positive-weight contributions. BN's *input* (the conv
  output) may be negative; that does not matter for this rule (it never multiplies by it), and the
  convolution's own input is post-ReLU. Mass is conserved through BN exactly. (Seed 003's and
  Zhang et al.'s networks have no BN; folding BN's scale into ``W`` would change which weights are
  positive when ``γ < 0`` — SPEC's choice keeps the conv's own weights.)
* **Flatten, Reshape, ZeroPadding2D, Cropping2D, Permute, Concatenate, Identity**: the plain
  gradient (reshape / crop / route).
* **DepthwiseConv2D**: a linear map per channel, so the ``W⁺`` rule of the linear maps applies
  with the layer's own depthwise convolution (``z = dw(x⁺; W⁺)``). **SeparableConv2D** is a
  depthwise map followed by a 1×1 pointwise map inside one layer: the rule is applied to both in
  turn, with the depthwise output ``m = dw(x; D)`` as the pointwise map's input
  (``p₁ = m⁺ ⊙ Jᵀ_{P⁺}(p / pw(m⁺; P⁺))``, ``p_in = x⁺ ⊙ Jᵀ_{D⁺}(p₁ / dw(x⁺; D⁺))``), which is
  exactly what a ``DepthwiseConv2D`` followed by a 1×1 ``Conv2D`` would get.
* **Rescaling and Normalization** (``invert=False``): affine per channel with a positive scale,
  like BatchNormalization, so ``p`` passes unchanged (a ``Rescaling`` with a non-positive scale
  has no rule). The input preprocessing of the view (:mod:`models.preprocessing`) is such a map too.
* **ReLU with ``max_value``** (ReLU6 of MobileNetV2) and the ``relu6`` activation: ``p`` passes
  where the unit is on (``y > 0``), including units clipped at the maximum — the unit is active
  there, only its rate is bounded. The plain gradient would drop the signal of clipped units and
  break conservation.
* **Squeeze-and-excitation ``Multiply``** ``y = g ⊙ x`` with a gate ``g`` broadcast over the
  spatial dimensions (shape ``(N, 1, 1, K)``): the gate is read as a fixed, non-negative weight of
  the main branch (as layer-wise relevance propagation treats multiplicative gates), so
  ``p_x = p`` where ``g·x⁺ > 0`` and the gate receives nothing. Mass is conserved along the main
  branch. The gate's own sigmoid layer is accepted only in that position (a ``(N, 1, 1, K)``
  output that only feeds such a ``Multiply``) and receives no signal. A product of two full
  feature maps (hard-swish written as ``x · relu6(x + 3) / 6``) has no rule.
* Not supported, by design: swish, GELU, hard-swish and the other non-ReLU activations, and
  ``LayerNormalization``. Excitation backprop assumes non-negative responses of ReLU units
  (Zhang et al. 2016, §3); for those models the method is left out of the export with the reason
  instead of inventing a rule.
* **Residual sum** ``s = Σ_m x_m`` (``Add``): ``p_m = x_m⁺ / (Σ_k x_k⁺ + ε) · p``. SPEC writes
  ``x_m / (s + ε)``, which presupposes ``x_m ≥ 0``; in ResNet18 a summand is a BatchNorm output and
  can be negative, where the signed split gives negative shares and unbounded ones as ``s → 0⁺``
  (the other summand then receives more than ``p``). The project takes positive parts, the same
  convention as for the linear maps: it equals SPEC's rule whenever all summands are ``≥ 0``,
  keeps every signal non-negative and still conserves mass (``p ≠ 0`` only where the following
  ReLU is active, i.e. ``s > 0``, so some ``x_m⁺ > 0``).

Start: a one-hot on the target **logit** (the view recomputes the classifier's pre-softmax
``x·W + b``). The map is read at the saliency layer's output and summed over channels:
``raw = Σ_k P_ijk``.

Contrastive MWP (c-MWP)
-----------------------
The classifier's weights are negated (the "dual" unit of the target class, ``W_dual = −W_c``) and
the dual signal is propagated with the same rules down to the *contrast layer*; there it is
subtracted from the target's signal, and the (signed) difference is propagated further down to the
saliency layer, where ``raw = max(Σ_k P_ijk, 0)`` (sum over channels, then clamp at 0, as in
TorchRay's ``contrastive_excitation_backprop``). Every rule is linear in ``p``, so this equals
``MWP(target) − MWP(dual)`` at the saliency layer when the contrast layer separates it from the
classifier; the contrast layer must do so (see below). The dual pass shares the forward pass of
the target pass (only the classifier rule differs), so one forward and three backward passes
serve both variants.

Layers and defaults
-------------------
Both layers are named by layer name or path (``"block2_pool"``, ``"embedding/block2_pool"``).

* **Contrast layer** (default: the input of the classifier ``Dense`` — ``fc2_dropout`` in VGG11,
  ``fc1_dropout`` in Simple/Simpler, ``avg_pool`` in ResNet18): any leaf layer whose output every
  path from the image to the classifier goes through (so a layer inside a residual branch, which
  the shortcut bypasses, is refused).
* **Saliency layer** (default: "the output of the second pooling stage", SPEC): a leaf layer with a
  4-D output ``(N, h, w, K)`` at or below the contrast layer. The default is

  - the second spatial pooling layer (pool size > 1) when the network has two or more: VGG11
    ``block2_pool``, Simple ``pool2``, Simpler ``pool2`` (seed 003 reads C-MWP at ``pool2``);
  - ResNet18 has a single pooling layer (``pool1_pool``, after the stem; its later stages
    downsample with strided convolutions). Its second stage is ``conv2_x``, which works at the
    resolution of ``pool1_pool``, so the default is **the last layer at the first pool's
    resolution that every path goes through**: ``conv2_block2_out``. It has the same resolution as
    VGG11's ``block2_pool`` (1/4 of the input, 56×56 at 224) after the stem and two residual
    blocks; ``pool1_pool`` itself is only one convolution deep, which gives edge-like maps;
  - without any pooling layer, the view's target layer.

A saliency layer that is not on every path (e.g. a conv inside a residual branch) is accepted: its
MWP is the marginal of those units, which sums to less than 1.

Conservation (the tests' check): through every rule the total signal entering a layer equals the
total leaving it, as long as every unit that receives signal has ``z > 0`` (with zero biases and
identity BN statistics, as in untrained Keras models, this holds by construction: a unit with
positive output has a positive ``W⁺x⁺``). So the non-contrastive signal sums to 1 at every layer
on all paths, and the contrastive difference sums to 0 at the contrast layer.

Entry points
------------
* Registry ``excitation_backprop`` (``single_pass``; SavedModel signature of the same name):
  :func:`excitation_backprop_graph` ``(view, images, class_index, contrastive, saliency_layer=None,
  contrast_layer=None)``; inputs ``class_index`` int32 ``(N,)`` (−1 = predicted) and
  ``contrastive`` bool scalar (both variants are computed and one is selected with ``tf.where``,
  so a single graph serves both). Outputs: ``heatmap`` ``(N, h, w)`` normalised per example,
  ``heatmap_upsampled`` ``(N, H, W)`` (bilinear, half-pixel centres, clipped to [0, 1]), ``raw``
  ``(N, h, w)``, ``logits``, ``probabilities``, ``class_index``.
* Eager :func:`excitation_backprop` ``(model_or_view, images, class_index=-1, contrastive=False,
  saliency_layer=None, contrast_layer=None, return_layers=()) -> dict`` of numpy arrays; with
  ``return_layers`` also ``layers = {path: signal}`` (the full signal at those layers' outputs,
  before summing over channels or clamping). Compiled once per (view, saliency, contrast,
  return_layers) and cached on the view.
* :func:`resolve_layers` ``(model_or_view, saliency_layer=None, contrast_layer=None) ->
  (saliency_path, contrast_path)`` — the defaults and the validation, without computing a map.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from explain import registry
from explain.cam import check_class_index, compiled, get_view
from explain.resize import heatmap_outputs
from explain.view import ExplainError, ModelView, find_layer

__all__ = [
    "EPSILON",
    "excitation_backprop",
    "excitation_backprop_graph",
    "resolve_layers",
    "SUPPORTED_LAYERS",
]

#: Guards the divisions ``p / (z + ε)``; where ``z == 0`` the share is 0 anyway. Small enough not
#: to matter for responses of 1e-11 (untrained MobileNetV2), large enough that ``p / ε`` stays finite.
EPSILON = 1e-30

L = keras.layers

# Layer classes by rule. Order matters where classes inherit from each other.
_LINEAR_WEIGHTED = (L.Dense, L.Conv2D, L.DepthwiseConv2D, L.SeparableConv2D)
_LINEAR_POOL = (L.AveragePooling2D, L.GlobalAveragePooling2D)
_IDENTITY = (L.BatchNormalization, L.Dropout, L.Rescaling, L.Normalization)
_PLAIN = (
    L.MaxPooling2D,
    L.GlobalMaxPooling2D,
    L.Flatten,
    L.Reshape,
    L.ZeroPadding2D,
    L.Cropping2D,
    L.Permute,
    L.Concatenate,
    L.Identity,
)
_SPATIAL_POOLS = (L.MaxPooling2D, L.AveragePooling2D)

#: Layer types with an excitation rule (for error messages and documentation).
SUPPORTED_LAYERS = sorted(
    {c.__name__ for c in (*_LINEAR_WEIGHTED, *_LINEAR_POOL, *_IDENTITY, *_PLAIN, L.Add, L.Multiply, L.Activation, L.ReLU)}
)


# ---------------------------------------------------------------------------------------------
# Backward rules


def _activation_kind(fn: Any) -> str | None:
    """``"relu"``, ``"linear"`` or ``None`` (unsupported) for a Keras activation function."""
    if fn is None:
        return "linear"
    name = getattr(fn, "__name__", None)
    if name in ("relu", "linear"):
        return name
    if name == "relu6":
        return "relu"
    if name in _GATE_ACTIVATIONS:
        return "gate"
    return None


#: Activations that only appear as squeeze-and-excitation gates here: their units receive no signal.
_GATE_ACTIVATIONS = ("sigmoid", "hard_sigmoid")


def _activation_name(layer: Any) -> str:
    return str(getattr(layer.activation, "__name__", layer.activation))


def _attach(inputs: Sequence[tf.Tensor], y: tf.Tensor, rule: Callable[..., list]) -> tf.Tensor:
    """``y`` with the backward rule ``rule(inputs, y, dy) -> [p_in per input]`` towards ``inputs``.

    The forward value is the layer's own output (computed outside, its gradient stopped), so no
    variable is read inside the custom-gradient function.
    """
    n = len(inputs)

    @tf.custom_gradient
    def f(*args):
        xs, out = list(args[:n]), args[n]

        def grad(dy):
            return [*rule(xs, out, dy), None]

        return tf.identity(out), grad

    return f(*inputs, tf.stop_gradient(y))


def _share(p: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
    """``p / (z + ε)`` where ``z > 0``, else 0."""
    return tf.where(z > 0, p / (z + EPSILON), tf.zeros_like(p))


def _linear_rule(forward_pos: Callable[[tf.Tensor], tf.Tensor], relu: bool) -> Callable[..., list]:
    """The excitation rule of a linear map whose positive-weight, bias-free version is ``forward_pos``."""

    def rule(xs, y, dy):
        p = dy * tf.cast(y > 0, dy.dtype) if relu else dy
        xp = tf.nn.relu(xs[0])
        with tf.GradientTape(watch_accessed_variables=False) as t:
            t.watch(xp)
            z = forward_pos(xp)
        return [xp * t.gradient(z, xp, output_gradients=_share(p, z))]

    return rule


def _identity_rule(xs, y, dy):
    return [dy]


def _nothing_rule(xs, y, dy):
    """A gate's own layers: the gate is a fixed weight of the main branch, so nothing flows here."""
    return [tf.zeros_like(xs[0])]


def _on_rule(xs, y, dy):
    """Pass ``p`` where the unit is on (``y > 0``): ReLU with a ``max_value``."""
    return [dy * tf.cast(y > 0, dy.dtype)]


def _gate_rule(main: int) -> Callable[..., list]:
    """A multiplicative gate read as a fixed non-negative weight of input ``main``."""

    def rule(xs, y, dy):
        on = tf.cast(tf.nn.relu(xs[main]) * tf.nn.relu(xs[1 - main]) > 0, dy.dtype)
        return [dy * on if i == main else tf.zeros_like(x) for i, x in enumerate(xs)]

    return rule


def _separable_rule(layer: Any, relu: bool) -> Callable[..., list]:
    """Two linear rules in turn: the pointwise map, then the depthwise map (see the module doc)."""

    def depthwise(x, positive: bool):
        k = tf.convert_to_tensor(layer.depthwise_kernel)
        return keras.ops.depthwise_conv(
            x, tf.nn.relu(k) if positive else k, strides=layer.strides,
            padding=layer.padding, data_format=layer.data_format, dilation_rate=layer.dilation_rate,
        )

    def pointwise(x):
        return keras.ops.conv(x, tf.nn.relu(tf.convert_to_tensor(layer.pointwise_kernel)), strides=1,
                              padding="valid", data_format=layer.data_format)

    def rule(xs, y, dy):
        p = dy * tf.cast(y > 0, dy.dtype) if relu else dy
        xp = tf.nn.relu(xs[0])
        # The pointwise map's input is the depthwise output itself (its positive part), as it
        # would be for a separate DepthwiseConv2D layer followed by a 1x1 Conv2D.
        mid = tf.nn.relu(depthwise(xs[0], positive=False))
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as t:
            t.watch(xp)
            t.watch(mid)
            z1 = depthwise(xp, positive=True)
            z2 = pointwise(mid)
        p1 = mid * t.gradient(z2, mid, output_gradients=_share(p, z2))
        return [xp * t.gradient(z1, xp, output_gradients=_share(p1, z1))]

    return rule


def _add_rule(xs, y, dy):
    xps = [tf.nn.relu(x) for x in xs]
    share = _share(dy, tf.add_n(xps))
    return [xp * share for xp in xps]


def _matmul(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    if x.shape.rank == 2:
        return tf.matmul(x, w)
    return tf.tensordot(x, w, axes=[[x.shape.rank - 1], [0]])


def _dense_positive(layer: Any, sign: float = 1.0) -> Callable[[tf.Tensor], tf.Tensor]:
    def forward_pos(x):
        return _matmul(x, tf.nn.relu(sign * tf.convert_to_tensor(layer.kernel)))

    return forward_pos


def _conv_positive(layer: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    def forward_pos(x):
        return layer.convolution_op(x, tf.nn.relu(tf.convert_to_tensor(layer.kernel)))

    return forward_pos


def _depthwise_positive(layer: Any) -> Callable[[tf.Tensor], tf.Tensor]:
    def forward_pos(x):
        return keras.ops.depthwise_conv(
            x, tf.nn.relu(tf.convert_to_tensor(layer.kernel)), strides=layer.strides,
            padding=layer.padding, data_format=layer.data_format, dilation_rate=layer.dilation_rate,
        )

    return forward_pos


def _gate_input(path: str, layer: Any, inputs: Sequence[tf.Tensor]) -> int:
    """Which input of a two-input ``Multiply`` is the main branch (the other is a broadcast gate)."""
    if len(inputs) == 2:
        shapes = [list(t.shape[1:]) for t in inputs]
        sizes = [int(_prod(s)) for s in shapes]
        if sizes[0] != sizes[1] and min(sizes) > 0:
            main = 0 if sizes[0] > sizes[1] else 1
            gate = shapes[1 - main]
            if len(gate) == 3 and gate[0] == 1 and gate[1] == 1:
                return main
    raise _unsupported(
        path, layer, f" of inputs shaped {[list(t.shape) for t in inputs]}; only a squeeze-and-excitation "
        "gate (N, 1, 1, K) times a feature map has a rule"
    )


def _prod(values: Sequence[Any]) -> int:
    out = 1
    for v in values:
        out *= int(v) if v is not None else 0
    return out


def _unsupported(path: str, layer: Any, why: str = "") -> ExplainError:
    return ExplainError(
        f"layer {path!r} ({type(layer).__name__}{why}) has no excitation backprop rule; "
        f"supported layer types: {SUPPORTED_LAYERS} (Conv2D/Dense/Activation with 'relu' or 'linear' "
        "activations only)"
    )


@dataclass
class _Call:
    path: str
    layer: Any
    inputs: list
    output: Any


class _Pass:
    """The ``call_wrapper`` of one forward pass: attaches the rules and records the graph."""

    def __init__(self, view: ModelView) -> None:
        self.view = view
        self.calls: list[_Call] = []
        self.dual: tf.Tensor | None = None

    def wrap(self, path: str, layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
        if path == self.view.classifier_layer:
            return self._wrap_classifier(path, layer, call)
        kind = self._kind(path, layer)
        if kind == "gate_source":
            _check_gate(path, layer)  # a sigmoid on the main path would silently block the signal

        def wrapped(*args, **kwargs):
            y = call(*args, **kwargs)
            inputs = tf.nest.flatten(args)
            if kind == "plain":
                # A layer that returns its input object (Identity, linear Activation) gets a
                # fresh tensor, so the recorded graph keeps one producer per tensor.
                out = tf.identity(y) if any(y is t for t in inputs) else y
            elif kind == "identity":
                out = _attach(inputs[:1], y, _identity_rule)
            elif kind == "on":
                out = _attach(inputs[:1], y, _on_rule)
            elif kind == "gate_source":
                out = _attach(inputs[:1], y, _nothing_rule)
            elif kind == "add":
                shapes = {tuple(t.shape) for t in inputs}
                if len(shapes) != 1:
                    raise _unsupported(path, layer, f" with broadcasting inputs {sorted(shapes)}")
                out = _attach(inputs, y, _add_rule)
            elif kind == "gate":
                out = _attach(inputs, y, _gate_rule(_gate_input(path, layer, inputs)))
            else:
                relu = kind == "linear_relu"
                if isinstance(layer, L.SeparableConv2D):
                    rule = _separable_rule(layer, relu)
                elif isinstance(layer, L.Dense):
                    rule = _linear_rule(_dense_positive(layer), relu)
                elif isinstance(layer, L.Conv2D):
                    rule = _linear_rule(_conv_positive(layer), relu)
                elif isinstance(layer, L.DepthwiseConv2D):
                    rule = _linear_rule(_depthwise_positive(layer), relu)
                else:
                    rule = _linear_rule(layer.call, relu)
                out = _attach(inputs[:1], y, rule)
            self.calls.append(_Call(path, layer, inputs, out))
            return out

        return wrapped

    def _wrap_classifier(self, path: str, layer: Any, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args, **kwargs):
            x = args[0]
            z = call(*args, **kwargs)
            out = _attach([x], z, _linear_rule(_dense_positive(layer, 1.0), relu=False))
            # The dual unit (Zhang et al.): the classifier with negated weights, W_dual = −W.
            self.dual = _attach([x], -z, _linear_rule(_dense_positive(layer, -1.0), relu=False))
            self.calls.append(_Call(path, layer, [x], out))
            return out

        return wrapped

    @staticmethod
    def _kind(path: str, layer: Any) -> str:
        if isinstance(layer, _LINEAR_WEIGHTED):
            if getattr(layer, "groups", 1) != 1:
                raise _unsupported(path, layer, " with groups > 1")
            act = _activation_kind(layer.activation)
            if act is None:
                raise _unsupported(path, layer, f" with activation {_activation_name(layer)!r}")
            if act == "gate":
                return "gate_source"
            return "linear_relu" if act == "relu" else "linear"
        if isinstance(layer, _LINEAR_POOL):
            return "linear"
        if isinstance(layer, L.Rescaling) and not np.all(np.asarray(layer.scale, np.float64) > 0):
            raise _unsupported(path, layer, f" with a non-positive scale {layer.scale!r}")
        if isinstance(layer, L.Normalization) and getattr(layer, "invert", False):
            raise _unsupported(path, layer, " with invert=True")
        if isinstance(layer, _IDENTITY):
            return "identity"
        if isinstance(layer, L.Add):
            return "add"
        if isinstance(layer, L.Multiply):
            return "gate"
        if isinstance(layer, L.Activation):
            act = _activation_kind(layer.activation)
            if act is None:
                raise _unsupported(path, layer, f" with activation {_activation_name(layer)!r}")
            if act == "gate":
                return "gate_source"
            return "on" if getattr(layer.activation, "__name__", "") == "relu6" else "plain"
        if isinstance(layer, L.ReLU):
            if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
                raise _unsupported(path, layer, " with negative_slope or threshold != 0")
            return "on" if layer.max_value is not None else "plain"
        if isinstance(layer, _PLAIN):
            return "plain"
        raise _unsupported(path, layer)


# ---------------------------------------------------------------------------------------------
# The recorded graph: defaults and validation of the layer names


@dataclass(frozen=True)
class _Graph:
    """Leaf-layer calls of one forward pass as a DAG (call order is topological)."""

    paths: tuple[str, ...]
    ranks: tuple[int | None, ...]
    spatial: tuple[tuple | None, ...]
    is_pool: tuple[bool, ...]
    preds: tuple[tuple[int, ...], ...]
    classifier: int
    target_layer: str

    @classmethod
    def from_pass(cls, rec: _Pass) -> "_Graph":
        calls = rec.calls
        producer = {id(c.output): i for i, c in enumerate(calls)}
        preds = tuple(tuple(sorted({producer[id(t)] for t in c.inputs if id(t) in producer})) for c in calls)
        ranks, spatial, is_pool = [], [], []
        for c in calls:
            rank = c.output.shape.rank
            ranks.append(rank)
            spatial.append(tuple(c.output.shape[1:3]) if rank == 4 else None)
            pool = False
            if isinstance(c.layer, _SPATIAL_POOLS):
                pool = int(np.prod(c.layer.pool_size)) > 1
            is_pool.append(pool)
        classifier = [i for i, c in enumerate(calls) if c.path == rec.view.classifier_layer]
        if len(classifier) != 1:
            raise ExplainError(
                f"excitation backprop needs the classifier layer {rec.view.classifier_layer!r} to be called "
                f"exactly once; it was called {len(classifier)} times"
            )
        return cls(
            paths=tuple(c.path for c in calls),
            ranks=tuple(ranks),
            spatial=tuple(spatial),
            is_pool=tuple(is_pool),
            preds=preds,
            classifier=classifier[0],
            target_layer=rec.view.target_layer,
        )

    # --- graph helpers
    @property
    def succ(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.paths]
        for j, ps in enumerate(self.preds):
            for i in ps:
                out[i].append(j)
        return out

    def _reach(self, start: Sequence[int], blocked: int | None = None) -> set[int]:
        succ = self.succ
        seen: set[int] = set()
        stack = [s for s in start if s != blocked]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(j for j in succ[i] if j != blocked and j not in seen)
        return seen

    @property
    def unique(self) -> dict[str, int]:
        counts = Counter(self.paths)
        return {p: i for i, p in enumerate(self.paths) if counts[p] == 1}

    def dominators(self) -> list[int]:
        """Calls every path from the input to the classifier goes through (excluding the classifier)."""
        sources = [i for i, ps in enumerate(self.preds) if not ps]
        unique = set(self.unique.values())
        return [
            i for i in range(len(self.paths))
            if i != self.classifier and i in unique and self.classifier not in self._reach(sources, blocked=i)
        ]

    # --- the two layers
    def contrast_choices(self) -> list[str]:
        return [self.paths[i] for i in self.dominators()]

    def default_contrast(self) -> int:
        preds = self.preds[self.classifier]
        if len(preds) != 1:
            raise ExplainError(
                f"the classifier layer {self.paths[self.classifier]!r} has no input produced by a layer; "
                "excitation backprop needs one"
            )
        return preds[0]

    def resolve_contrast(self, name: str | None, model: Any) -> int:
        if name is None:
            return self.default_contrast()
        choices = self.contrast_choices()
        path = _find(model, name, "contrast_layer", choices)
        if path not in choices:
            raise ExplainError(
                f"contrast_layer {name!r} is not on every path from the input to the classifier "
                f"{self.paths[self.classifier]!r} (a residual shortcut bypasses it, or it is not a layer call); "
                f"accepted: {choices}"
            )
        return self.unique[path]

    def saliency_choices(self, contrast: int) -> list[int]:
        unique = set(self.unique.values())
        return [
            i for i in range(len(self.paths))
            if i in unique and self.ranks[i] == 4 and (i == contrast or contrast in self._reach([i]))
        ]

    def default_saliency(self, contrast: int) -> int:
        choices = self.saliency_choices(contrast)
        if not choices:
            raise ExplainError(
                f"no layer with a 4-D output (N, h, w, K) lies below the contrast layer {self.paths[contrast]!r}"
            )
        pools = [i for i in choices if self.is_pool[i]]
        if len(pools) >= 2:
            return pools[1]
        if len(pools) == 1:
            doms = set(self.dominators())
            same = [i for i in choices if i >= pools[0] and i in doms and self.spatial[i] == self.spatial[pools[0]]]
            return same[-1] if same else pools[0]
        unique = self.unique
        if self.target_layer in unique and unique[self.target_layer] in choices:
            return unique[self.target_layer]
        return choices[-1]

    def resolve_saliency(self, name: str | None, contrast: int, model: Any) -> int:
        if name is None:
            return self.default_saliency(contrast)
        choices = [self.paths[i] for i in self.saliency_choices(contrast)]
        path = _find(model, name, "saliency_layer", choices)
        if path not in choices:
            raise ExplainError(
                f"saliency_layer {name!r} is not a layer with a 4-D output (N, h, w, K) at or below the "
                f"contrast layer {self.paths[contrast]!r}; accepted: {choices}"
            )
        return self.unique[path]

    def resolve_returns(self, names: Sequence[str], model: Any) -> list[int]:
        unique = self.unique
        choices = list(unique)
        out = []
        for name in names:
            path = _find(model, name, "return_layers entry", choices)
            if path not in unique:
                raise ExplainError(
                    f"return_layers entry {name!r} is not a leaf layer called once; accepted: {choices}"
                )
            out.append(unique[path])
        return out

    def reaches(self, i: int, j: int) -> bool:
        """``j`` is ``i`` or downstream of ``i``."""
        return i == j or j in self._reach([i])


def _find(model: Any, name: Any, what: str, choices: list[str]) -> str:
    if not isinstance(name, str):
        raise ExplainError(f"{what} {name!r} must be a layer name or path; accepted: {choices}")
    try:
        return find_layer(model, name)
    except ExplainError as err:
        why = "is ambiguous" if "ambiguous" in str(err) else f"is not a layer of model {model.name!r}"
        raise ExplainError(f"{what} {name!r} {why}; accepted: {choices}") from None


# ---------------------------------------------------------------------------------------------
# The pass


def _mwp(
    view: ModelView,
    images: tf.Tensor,
    class_index: Any,
    contrastive: Any,
    saliency_layer: str | None,
    contrast_layer: str | None,
    return_layers: Sequence[str] = (),
) -> dict[str, Any]:
    """One forward pass, the target/dual/contrastive backward passes; see the module docstring.

    ``contrastive`` is a Python bool (only that variant is computed) or a bool tensor (both are
    computed and selected with ``tf.where``).
    """
    if not view.is_classifier:
        raise ExplainError(
            f"excitation backprop explains a class score; model {view.model.name!r} has no classifier layer "
            "(accepted: classifiers)"
        )
    images = tf.convert_to_tensor(images, tf.float32)
    rec = _Pass(view)
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(images)
        result = view.run(images, call_wrapper=rec.wrap)
    logits = result.logits
    graph = _Graph.from_pass(rec)
    con = graph.resolve_contrast(contrast_layer, view.model)
    sal = graph.resolve_saliency(saliency_layer, con, view.model)
    extras = graph.resolve_returns(tuple(return_layers), view.model)

    idx = view.resolve_class_index(class_index, logits)
    onehot = tf.one_hot(idx, tf.shape(logits)[1], dtype=logits.dtype)
    tensor = {i: rec.calls[i].output for i in {sal, con, *extras}}
    zero = tf.UnconnectedGradients.ZERO

    def grads(target, output_gradients, indices):
        indices = list(dict.fromkeys(indices))
        gs = tape.gradient(target, [tensor[i] for i in indices], output_gradients=output_gradients,
                           unconnected_gradients=zero)
        return dict(zip(indices, gs))

    normal = grads(logits, onehot, [sal, con, *extras])
    do_contrast = not (isinstance(contrastive, bool) and not contrastive)
    if do_contrast:
        below = [i for i in [sal, *extras] if graph.reaches(i, con) and i != con]
        above = [i for i in extras if not graph.reaches(i, con)]
        dual = grads(rec.dual, onehot, [con, *above])
        diff = normal[con] - dual[con]
        contrast = grads(tensor[con], diff, below) if below else {}
        contrast[con] = diff
        for i in above:
            contrast[i] = normal[i] - dual[i]

    def select(i):
        if not do_contrast:
            return normal[i]
        if isinstance(contrastive, bool):
            return contrast[i]
        return tf.where(tf.convert_to_tensor(contrastive, tf.bool), contrast[i], normal[i])

    summed = tf.reduce_sum(select(sal), axis=-1)
    raw = tf.nn.relu(summed) if do_contrast else summed
    if do_contrast and not isinstance(contrastive, bool):
        raw = tf.where(tf.convert_to_tensor(contrastive, tf.bool), raw, summed)
    out = heatmap_outputs(raw, view.input_shape[:2])
    out.update(logits=logits, probabilities=tf.nn.softmax(logits, axis=-1), class_index=idx)
    if extras:
        out["layers"] = {graph.paths[i]: select(i) for i in extras}
    return out


def excitation_backprop_graph(
    view: ModelView,
    images: tf.Tensor,
    class_index: Any = -1,
    contrastive: Any = False,
    saliency_layer: str | None = None,
    contrast_layer: str | None = None,
) -> dict[str, tf.Tensor]:
    """The graph-compatible method (registry ``excitation_backprop``; see the module docstring).

    Args:
        view: A classifier view.
        images: float32 ``(N, H, W, 3)`` in ``[0, 1]``.
        class_index: int32 ``(N,)`` or scalar; −1 = the predicted class.
        contrastive: bool scalar (tensor or Python bool): contrastive MWP instead of MWP.
        saliency_layer, contrast_layer: Layer names or paths; ``None`` = the defaults.

    Returns:
        ``heatmap`` ``(N, h, w)``, ``heatmap_upsampled`` ``(N, H, W)``, ``raw`` ``(N, h, w)``,
        ``logits``, ``probabilities``, ``class_index``.
    """
    if not isinstance(contrastive, bool):
        contrastive = tf.reshape(tf.convert_to_tensor(contrastive, tf.bool), [])
    return _mwp(view, images, class_index, contrastive, saliency_layer, contrast_layer)


# ---------------------------------------------------------------------------------------------
# Eager entry points


def _structure(view: ModelView) -> _Graph:
    """The recorded layer graph of ``view`` (one eager forward pass on a zero image, cached)."""

    def build():
        rec = _Pass(view)
        view.run(tf.zeros([1, *view.input_shape], tf.float32), call_wrapper=rec.wrap)
        graph = _Graph.from_pass(rec)
        return lambda: graph

    return compiled(view, ("excitation_backprop", "structure"), build)()


def resolve_layers(
    model_or_view: Any, saliency_layer: str | None = None, contrast_layer: str | None = None
) -> tuple[str, str]:
    """``(saliency_path, contrast_path)`` after defaults and validation.

    The contrast path of the default is the layer whose output feeds the classifier.

    Raises:
        ExplainError: not a classifier; unknown or unsuitable layer (the message lists the choices);
            a layer without an excitation rule.
    """
    view = get_view(model_or_view)
    if not view.is_classifier:
        raise ExplainError(
            f"excitation backprop explains a class score; model {view.model.name!r} has no classifier layer "
            "(accepted: classifiers)"
        )
    graph = _structure(view)
    con = graph.resolve_contrast(contrast_layer, view.model)
    sal = graph.resolve_saliency(saliency_layer, con, view.model)
    return graph.paths[sal], graph.paths[con]


def excitation_backprop(
    model_or_view: Any,
    images: Any,
    class_index: Any = -1,
    contrastive: bool = False,
    saliency_layer: str | None = None,
    contrast_layer: str | None = None,
    return_layers: Sequence[str] = (),
) -> dict[str, Any]:
    """Excitation backprop (MWP) or contrastive MWP of ``images``; see the module docstring.

    Args:
        model_or_view: A Keras classifier or a :class:`~explain.view.ModelView`.
        images: ``(N, H, W, 3)`` float in ``[0, 1]`` or uint8.
        class_index: −1 (predicted), an int, or one per image.
        contrastive: c-MWP instead of MWP.
        saliency_layer: Where the map is read (``None`` = the output of the second pooling stage).
        contrast_layer: Where the dual signal is subtracted (``None`` = the classifier's input).
        return_layers: Layer names/paths whose full signal to return under ``layers``.

    Returns:
        numpy ``heatmap`` ``(N, h, w)``, ``heatmap_upsampled`` ``(N, H, W)``, ``raw`` ``(N, h, w)``,
        ``logits``, ``probabilities``, ``class_index``; and ``layers`` ``{path: (N, ...)}`` when
        ``return_layers`` is given.

    Raises:
        ExplainError: bad images, class index, layer names (naming the value and the choices).
    """
    from explain.view import check_images

    view = get_view(model_or_view)
    if isinstance(return_layers, str):
        return_layers = (return_layers,)
    sal_path, con_path = resolve_layers(view, saliency_layer, contrast_layer)
    graph = _structure(view)
    returns = tuple(graph.paths[i] for i in graph.resolve_returns(tuple(return_layers), view.model))
    x = check_images(images, view)
    idx = check_class_index(class_index, int(x.shape[0]), view.num_classes, view.model.name)

    def build():
        spec = [
            tf.TensorSpec([None, *view.input_shape], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([], tf.bool),
        ]
        return tf.function(
            lambda x, c, k: _mwp(view, x, c, k, sal_path, con_path, returns), input_signature=spec
        )

    fn = compiled(view, ("excitation_backprop", sal_path, con_path, returns), build)
    out = fn(x, idx, tf.constant(bool(contrastive)))
    result: dict[str, Any] = {k: v.numpy() for k, v in out.items() if k != "layers"}
    if returns:
        result["layers"] = {k: v.numpy() for k, v in out["layers"].items()}
    return result


# ---------------------------------------------------------------------------------------------
# Registration


def _class_index_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.int32)


def _contrastive_spec() -> tf.TensorSpec:
    return tf.TensorSpec([], tf.bool)


def check_rules(view: ModelView) -> None:
    """Raise :class:`ExplainError` naming the first layer without an excitation rule.

    Looks at every leaf layer of the model (nested models included); the classifier ``Dense``
    has its own rule. The exporter calls this to leave the method out of a model it cannot
    explain (``registry.Method.check``).
    """
    for path, layer in view.layer_paths_and_layers():
        if path == view.classifier_layer:
            break  # the signal starts at the logits: what follows the classifier is never crossed
        if isinstance(layer, L.InputLayer):
            continue
        if isinstance(layer, L.Multiply):
            _gate_input(path, layer, list(_input_tensors(layer)))
            continue
        if _Pass._kind(path, layer) == "gate_source":
            _check_gate(path, layer)


def _check_gate(path: str, layer: Any) -> None:
    """A sigmoid unit must be a squeeze-and-excitation gate: a (N, 1, 1, K) output that only
    multiplies a feature map. Elsewhere it would block the signal, so the method refuses."""
    shape = list(layer.output.shape[1:])
    consumers = [node.operation for node in getattr(layer, "_outbound_nodes", [])]
    is_gate = (
        len(shape) == 3 and shape[0] == 1 and shape[1] == 1 and consumers
        and all(isinstance(c, L.Multiply) for c in consumers)
    )
    if not is_gate:
        raise _unsupported(path, layer, f" with activation {_activation_name(layer)!r} outside a "
                           "squeeze-and-excitation gate")


def _input_tensors(layer: Any) -> list[Any]:
    inputs = layer.input
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


registry.register(
    registry.Method(
        name="excitation_backprop",
        fn=excitation_backprop_graph,
        kind="single_pass",
        applies_to="classifier",
        signature_inputs={"class_index": _class_index_spec, "contrastive": _contrastive_spec},
        parameters=(
            registry.Param("contrastive", bool, False, doc="contrastive MWP (c-MWP): subtract the dual network's map"),
            registry.Param("saliency_layer", str, None, doc="layer of the map (fixed at export; None = the second pooling stage)"),
            registry.Param("contrast_layer", str, None, doc="layer of the contrast (fixed at export; None = the classifier's input)"),
        ),
        label="MWP",
        label_for_params=lambda p: "C-MWP" if p["contrastive"] else "MWP",
        cost="cheap",
        description=(
            "Excitation backprop (MWP) / contrastive MWP (Zhang et al. 2016): top-down winning "
            "probabilities at the second pooling stage, summed over channels"
        ),
        check=check_rules,
    )
)
