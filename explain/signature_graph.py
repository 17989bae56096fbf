"""A SavedModel signature as one flat graph: gradients a loaded signature cannot give by itself.

A loaded signature is one opaque function call on a ``tf.GradientTape``: the tape can
differentiate its outputs with respect to its *inputs*, but not

* with respect to another *output* — Grad-CAM needs ``∂y_c/∂A`` where the signature returns both
  the scores ``y`` and the target-layer activations ``A`` (``cnnExplain.activationOutputName``);
* with respect to an input that is not a float — a uint8 image input has no gradient;
* through a softmax it cannot see into — the class **logit** that the project's gradient methods
  differentiate (saliency, Integrated Gradients, XRAI) is inside the signature when the output
  is ``probabilities``.

:class:`SignatureGraph` freezes the signature (variables become constants, nested function calls
are inlined: ``convert_variables_to_constants_v2(..., aggressive_inlining=True)``) and reads the
flat ``GraphDef``:

* the image input is the signature's placeholder, or — for a uint8 input — the output of the
  ``Cast`` op(s) that turn it into floats (gradients are taken with respect to the cast float,
  i.e. the pixel value ``0..255`` as a real number); an input that reaches anything but a
  ``Cast`` to float is refused;
* the score output and the activation output are followed back through ``Identity`` ops to the
  tensors that compute them, so ``A`` is the intermediate tensor the scores depend on;
* the logits are the input of the score output's ``Softmax`` op when it has one; otherwise there
  are none and callers use ``log p`` (same gradient up to the softmax normaliser).

The graph is imported (``tf.graph_util.import_graph_def`` with an ``input_map``) inside a
``tf.function``: an outer tape differentiates a call of it like any function, and
:meth:`SignatureGraph.activation_gradients` takes ``tf.gradients`` inside the graph.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from explain.view import ExplainError

__all__ = ["SignatureGraph", "SignatureGraphError"]


class SignatureGraphError(ExplainError):
    """The signature cannot be differentiated as asked (the message says why)."""


def _op_name(tensor_name: str) -> tuple[str, int]:
    name, _, index = tensor_name.lstrip("^").partition(":")
    return name, int(index or 0)


def _data_inputs(node: Any) -> list[str]:
    return [i for i in node.input if not i.startswith("^")]


class SignatureGraph:
    """The flat graph of one signature (see the module docstring).

    Args:
        fn: The loaded signature (a concrete function with keyword inputs and a dict of outputs).
        input_key: The image input of the signature.
        score_key: The output with the class scores (probabilities or logits).
        activation_key: The output with the target-layer activations, or ``None``.

    Raises:
        SignatureGraphError: the signature cannot be frozen, the input is not float and not cast
            to float, or a named output does not exist.
    """

    def __init__(self, fn: Any, input_key: str, score_key: str, activation_key: str | None = None) -> None:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        in_keys = sorted(fn.structured_input_signature[1])
        out_keys = sorted(fn.structured_outputs)
        for key, keys, what in ((input_key, in_keys, "input"), (score_key, out_keys, "output"),
                                (activation_key, out_keys, "output")):
            if key is not None and key not in keys:
                raise SignatureGraphError(f"the signature has no {what} {key!r}; accepted: {keys}")
        try:
            frozen = convert_variables_to_constants_v2(fn, aggressive_inlining=True)
        except Exception as err:  # noqa: BLE001 - any TF failure: the signature is not differentiable here
            raise SignatureGraphError(f"the signature could not be frozen into one graph ({type(err).__name__})") from None
        self.graph_def = frozen.graph.as_graph_def()
        self._nodes = {n.name: n for n in self.graph_def.node}
        placeholder = frozen.inputs[in_keys.index(input_key)].name
        self.input_dtype: tf.DType = frozen.inputs[in_keys.index(input_key)].dtype
        outputs = {k: t.name for k, t in zip(out_keys, frozen.outputs)}
        self._input_map_keys = self._float_inputs(placeholder)
        score = self._source(outputs[score_key])
        self.scores_name = score
        node = self._nodes[_op_name(score)[0]]
        self.logits_name = self._source(_data_inputs(node)[0]) if node.op == "Softmax" else None
        self.activations_name = self._source(outputs[activation_key]) if activation_key else None

    def _source(self, tensor: str) -> str:
        """``tensor`` followed back through ``Identity`` ops (``op:index``)."""
        name, index = _op_name(tensor)
        while self._nodes[name].op in ("Identity", "Snapshot") and index == 0:
            name, index = _op_name(_data_inputs(self._nodes[name])[0])
        return f"{name}:{index}"

    def _float_inputs(self, placeholder: str) -> list[str]:
        """The tensors to replace by the float image: the placeholder, or the casts of a uint8 one."""
        if self.input_dtype.is_floating:
            return [placeholder]
        consumers: dict[str, list[Any]] = {}
        for node in self.graph_def.node:
            for inp in _data_inputs(node):
                consumers.setdefault(f"{_op_name(inp)[0]}:{_op_name(inp)[1]}", []).append(node)
        casts, todo = [], [placeholder]
        while todo:
            for node in consumers.get(todo.pop(), []):
                if node.op == "Identity":
                    todo.append(f"{node.name}:0")
                elif node.op == "Cast" and tf.as_dtype(node.attr["DstT"].type) == tf.float32:
                    casts.append(f"{node.name}:0")
                else:
                    raise SignatureGraphError(
                        f"the {self.input_dtype.name} input reaches a {node.op!r} op before any cast to float32, "
                        "so it has no gradient")
        if not casts:
            raise SignatureGraphError(f"the {self.input_dtype.name} input is never cast to float32")
        return casts

    def _import(self, x: tf.Tensor, names: list[str]) -> list[tf.Tensor]:
        mapping = {key: x for key in self._input_map_keys}
        return tf.graph_util.import_graph_def(self.graph_def, input_map=mapping, return_elements=names,
                                              name="signature")

    def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor | None]:
        """``(scores, logits or None)`` for float images ``x`` at the model's input scale (uint8
        models: ``0..255``); differentiable with respect to ``x`` on an outer tape."""
        if not hasattr(self, "_forward"):
            names = [self.scores_name] + ([self.logits_name] if self.logits_name else [])
            self._forward = tf.function(lambda v: tuple(self._import(v, names)), reduce_retracing=True)
        out = self._forward(tf.convert_to_tensor(x, tf.float32))
        return out[0], (out[1] if len(out) > 1 else None)

    def activation_gradients(self, x: tf.Tensor, class_index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """``(A, ∂y_c/∂A, y, c)``: activations, the gradient of the class score, the scores ``y``
        (logits, or ``log p`` without a softmax) and the resolved class ``c`` (−1 = predicted).

        Raises:
            SignatureGraphError: no activation output was named.
        """
        if self.activations_name is None:
            raise SignatureGraphError("no activation output is declared (cnnExplain.activationOutputName)")
        if not hasattr(self, "_act_grads"):
            def run(v: tf.Tensor, idx: tf.Tensor) -> tuple[tf.Tensor, ...]:
                names = [self.activations_name, self.logits_name or self.scores_name]
                a, y = self._import(v, names)
                if self.logits_name is None:
                    y = tf.math.log(tf.maximum(y, 1e-30))
                idx = tf.where(idx < 0, tf.argmax(y, axis=-1, output_type=tf.int32), idx)
                score = tf.gather(y, idx, axis=1, batch_dims=1)
                return a, tf.gradients(score, a)[0], y, idx

            self._act_grads = tf.function(run, reduce_retracing=True)
        return self._act_grads(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(class_index, tf.int32))
