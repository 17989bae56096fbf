"""Backends: what iterative methods run on.

An iterative method (occlusion, Score-CAM, optimised perturbation masks, CCG growth) only needs
forward passes, so it runs on a :class:`Backend`: either an in-process Keras model
(:class:`KerasBackend`) or a loaded SavedModel (:class:`SavedModelBackend`). A SavedModel that
has only ``serving_default`` (a black box) still supports occlusion; Score-CAM also needs the
``features`` signature, and the perturbation mask needs a differentiable float input
(``predict_float``, exported by :mod:`models.export`).

Images are float32 ``(B, H, W, 3)`` in ``[0, 1]`` everywhere in this module.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain.view import ExplainError, ModelView

__all__ = ["Backend", "KerasBackend", "SavedModelBackend", "MethodUnavailable", "Cancelled", "batches",
           "ablated_run"]


class MethodUnavailable(ExplainError):
    """The backend lacks what a method needs (e.g. no ``features`` signature)."""


class Cancelled(RuntimeError):
    """Raised by an iterative method when ``should_continue()`` returns False (deadline, cancel)."""


def batches(n: int, batch_size: int):
    """Yield ``slice`` objects covering ``range(n)`` in chunks of at most ``batch_size``."""
    if batch_size < 1:
        raise ExplainError(f"batch_size {batch_size!r} must be >= 1")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


class Backend:
    """Forward passes for iterative methods.

    Attributes:
        input_shape: ``(H, W, 3)``.
        num_classes: Number of classes, or ``None`` for embedding models.
    """

    input_shape: tuple[int, int, int]
    num_classes: int | None

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(B, C)`` for float images ``(B, H, W, 3)``."""
        raise NotImplementedError

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(activations (B, h, w, K), logits (B, C))`` at the target layer."""
        raise MethodUnavailable("this model exposes no target-layer features (no 'features' signature)")

    def ablated_logits(self, images: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
        """Logits ``(B, C)`` with the target activations multiplied by ``channel_mask`` ``(B, K)``
        (0 = channel ablated) before the rest of the network reads them (for Ablation-CAM)."""
        raise MethodUnavailable("this model cannot ablate target-layer channels (no 'ablate_channels' signature)")

    def predict_tf(self, images: tf.Tensor) -> tf.Tensor:
        """Differentiable probabilities ``(B, C)`` for a float32 tensor (for optimised masks)."""
        raise MethodUnavailable("this model has no differentiable float input (no 'predict_float' signature)")

    def logits_tf(self, images: tf.Tensor) -> tf.Tensor:
        """Differentiable logits ``(B, C)`` (the pre-softmax scores) for a float32 tensor.

        The default takes the log of :meth:`predict_tf`'s probabilities (logits up to a per-row
        constant, which the log-odds do not depend on); float32 probabilities that round to 1
        lose the margin, so backends that have the logits return them.
        """
        return tf.math.log(tf.maximum(self.predict_tf(images), 1e-30))


class KerasBackend(Backend):
    """A backend over an in-process :class:`ModelView` (graph-compiled forward passes)."""

    def __init__(self, view: ModelView) -> None:
        self.view = view
        self.input_shape = view.input_shape
        self.num_classes = view.num_classes
        spec = tf.TensorSpec([None, *view.input_shape], tf.float32)
        self._probs = tf.function(lambda x: view.run(x).probabilities, input_signature=[spec])
        self._feats = tf.function(
            lambda x: (lambda r: (r.activations, r.logits))(view.run(x)), input_signature=[spec]
        )

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._probs(tf.convert_to_tensor(images, tf.float32)).numpy()

    def ablated_logits(self, images: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_ablated"):
            spec = [tf.TensorSpec([None, *self.view.input_shape], tf.float32),
                    tf.TensorSpec([None, self.view.target_shape[-1]], tf.float32)]
            self._ablated = tf.function(lambda x, m: ablated_run(self.view, x, m), input_signature=spec)
        return self._ablated(tf.convert_to_tensor(images, tf.float32),
                             tf.convert_to_tensor(channel_mask, tf.float32)).numpy()

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, logits = self._feats(tf.convert_to_tensor(images, tf.float32))
        return a.numpy(), logits.numpy()

    def predict_tf(self, images: tf.Tensor) -> tf.Tensor:
        return self.view.run(images).probabilities

    def logits_tf(self, images: tf.Tensor) -> tf.Tensor:
        return self.view.run(images).logits


class SavedModelBackend(Backend):
    """A backend over a loaded SavedModel (``tf.saved_model.load``) and its signatures.

    Uses ``predict_float`` when present (exact float inputs, the project's exports); otherwise
    calls ``serving_default`` as a black box, reading the ``probabilities`` output (or the one
    named by ``output_key``, or the only output). Images in ``[0, 1]`` reach such a model as:

    * uint8 pixels (rounded) when its input is uint8;
    * ``min + u · (max − min)`` when ``input_range`` is declared (explanation metadata);
    * the affine map of ``preprocessing`` when one is declared;
    * otherwise not at all: a float input of unknown range cannot be fed synthesised images,
      so every method that needs them raises :class:`MethodUnavailable` (FAILED_PRECONDITION in
      the service) with the way to declare the range — never a silent guess.

    Args:
        loaded: The loaded SavedModel.
        input_shape: ``(H, W, 3)``; default from the signature's static shape.
        input_key, output_key: The image input and the score output of the signature (default:
            its only input; ``probabilities`` or its first output).
        input_range: ``(min, max)`` of a float input.
        preprocessing: A :class:`models.preprocessing.Preprocessing` for a float input.
        signature: The serving signature to use (default ``serving_default``).
        how_to_declare: The sentence appended to the FAILED_PRECONDITION message.
        activation_key: The signature output with the target-layer activations (explanation
            metadata ``cnnExplain.activationOutputName``), for Score-CAM and the Grad-CAM family.

    Gradients of a signature without ``predict_float`` go through its flat graph
    (:class:`explain.signature_graph.SignatureGraph`): with respect to the image in ``[0, 1]``
    (a uint8 input: with respect to the float its ``Cast`` produces, ``255·u``), of the class
    logit when the score output is a softmax (else of ``log p``).
    """

    def __init__(
        self,
        loaded: Any,
        input_shape: tuple[int, int, int] | None = None,
        input_key: str | None = None,
        output_key: str | None = None,
        input_range: tuple[float, float] | None = None,
        preprocessing: Any = None,
        signature: str = "serving_default",
        how_to_declare: str = "",
        activation_key: str | None = None,
    ) -> None:
        self.loaded = loaded
        self.signatures = dict(loaded.signatures)
        if signature not in self.signatures:
            raise MethodUnavailable(f"the SavedModel has no {signature!r} signature; it has {sorted(self.signatures)}")
        self._signature = signature
        default = self.signatures[signature]
        specs = default.structured_input_signature[1]
        if input_key is not None and input_key not in specs:
            raise MethodUnavailable(f"signature {signature!r} has no input {input_key!r}; its inputs: {sorted(specs)}")
        self._input_key = input_key or next(iter(specs.keys()))
        spec = specs[self._input_key]
        self._input_dtype = spec.dtype
        if input_shape is None:
            input_shape = tuple(int(s) for s in spec.shape[1:])
        self.input_shape = input_shape  # type: ignore[assignment]
        outputs = default.structured_outputs
        if output_key is not None and output_key not in outputs:
            raise MethodUnavailable(f"signature {signature!r} has no output {output_key!r}; its outputs: {sorted(outputs)}")
        self._prob_key = output_key or ("probabilities" if "probabilities" in outputs else next(iter(outputs)))
        self.num_classes = int(outputs[self._prob_key].shape[-1])
        self._input_range = input_range
        self._preprocessing = preprocessing
        self._how_to_declare = how_to_declare
        if activation_key is not None and activation_key not in outputs:
            raise MethodUnavailable(f"signature {signature!r} has no activation output {activation_key!r}; "
                                    f"its outputs: {sorted(outputs)}")
        self.activation_key = activation_key
        self._graph: Any = None
        self._graph_error = ""

    @property
    def feeds_floats(self) -> bool:
        """Whether synthesised ``[0, 1]`` images can be fed (uint8 input, or a declared scale)."""
        return ("predict_float" in self.signatures or self._input_dtype == tf.uint8
                or self._input_range is not None or self._preprocessing is not None)

    def _unknown_range(self) -> MethodUnavailable:
        return MethodUnavailable(
            f"input {self._input_key!r} of signature {self._signature!r} is {self._input_dtype.name} with no "
            "declared value range, so synthesised images (occlusion, masks, baselines) cannot be fed to it; "
            + (self._how_to_declare or "declare the range in the explanation metadata "
               "(inputs.<name>.featureValueDomain minValue/maxValue)")
        )

    def _to_model(self, images: Any) -> Any:
        """``[0, 1]`` images (numpy or tensor) → the signature's input scale (float)."""
        if self._input_range is not None:
            lo, hi = self._input_range
            return images * (hi - lo) + lo
        if self._preprocessing is not None:
            return self._preprocessing.apply(tf.convert_to_tensor(images, tf.float32))
        raise self._unknown_range()

    def from_model(self, values: Any) -> np.ndarray:
        """The inverse of how ``[0, 1]`` images reach the signature: values in the model's input
        units (e.g. a declared baseline) → float32 in ``[0, 1]`` image space (a uint8 input:
        ``v / 255``; a declared range: ``(v − min) / (max − min)``; a preprocessing: its inverse).

        Raises:
            MethodUnavailable: a float input of unknown range (the way to declare it).
        """
        v = np.asarray(values, np.float64)
        if self._input_dtype == tf.uint8:
            return (v / 255.0).astype(np.float32)
        if self._input_range is not None:
            lo, hi = self._input_range
            return ((v - lo) / (hi - lo)).astype(np.float32)
        if self._preprocessing is not None:
            p = self._preprocessing
            u = (v - p.offset.astype(np.float64)) / p.scale.astype(np.float64)
            return (u[..., ::-1] if p.bgr else u).astype(np.float32)
        raise self._unknown_range()

    def _to_input(self, images: np.ndarray) -> tf.Tensor:
        if self._input_dtype == tf.uint8:
            return tf.convert_to_tensor(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
        return tf.cast(self._to_model(tf.convert_to_tensor(images, tf.float32)), self._input_dtype)

    def _call(self, inputs: Any) -> Any:
        return self.signatures[self._signature](**{self._input_key: inputs})

    def predict(self, images: np.ndarray) -> np.ndarray:
        if "predict_float" in self.signatures:
            out = self.signatures["predict_float"](images=tf.convert_to_tensor(images, tf.float32))
            return out["probabilities"].numpy()
        return self._call(self._to_input(images))[self._prob_key].numpy()

    def features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if "features" not in self.signatures and self.activation_key is not None:
            out = self._call(self._to_input(images))
            scores = out[self._prob_key].numpy()
            return out[self.activation_key].numpy(), np.log(np.maximum(scores, 1e-30))
        if "features" not in self.signatures:
            return super().features(images)
        out = self.signatures["features"](images=self._to_input(images))
        return out["activations"].numpy(), out["logits"].numpy()

    def ablated_logits(self, images: np.ndarray, channel_mask: np.ndarray) -> np.ndarray:
        if "ablate_channels" not in self.signatures:
            return super().ablated_logits(images, channel_mask)
        out = self.signatures["ablate_channels"](images=self._to_input(images),
                                                 channel_mask=tf.convert_to_tensor(channel_mask, tf.float32))
        return out["logits"].numpy()

    def gradient_reason(self) -> str | None:
        """Why gradients w.r.t. the image are not available, or ``None`` when they are."""
        if "predict_float" in self.signatures:
            return None
        if not self.feeds_floats:
            return str(self._unknown_range())
        try:
            self.signature_graph()
        except MethodUnavailable as err:
            return str(err)
        return None

    def signature_graph(self) -> Any:
        """The flat graph of the signature (built once; see :mod:`explain.signature_graph`).

        Raises:
            MethodUnavailable: the signature cannot be differentiated (the reason).
        """
        from explain.signature_graph import SignatureGraph, SignatureGraphError

        if self._graph is None and not self._graph_error:
            try:
                self._graph = SignatureGraph(self.signatures[self._signature], self._input_key, self._prob_key,
                                             self.activation_key)
            except SignatureGraphError as err:
                self._graph_error = f"signature {self._signature!r} is not differentiable: {err}"
        if self._graph is None:
            raise MethodUnavailable(self._graph_error)
        return self._graph

    def _graph_input(self, images: Any) -> tf.Tensor:
        """``[0, 1]`` images → the float the flat graph takes (uint8 models: the cast ``255·u``)."""
        images = tf.convert_to_tensor(images, tf.float32)
        if self._input_dtype == tf.uint8:
            return images * 255.0
        return tf.cast(self._to_model(images), tf.float32)

    def predict_tf(self, images: tf.Tensor) -> tf.Tensor:
        if "predict_float" in self.signatures:
            return self.signatures["predict_float"](images=images)["probabilities"]
        if self.gradient_reason() is None:
            return self.signature_graph().forward(self._graph_input(images))[0]
        if self._input_dtype.is_floating and self.feeds_floats:  # a float signature is differentiable
            return self._call(tf.cast(self._to_model(images), self._input_dtype))[self._prob_key]
        return super().predict_tf(images)

    def logits_tf(self, images: tf.Tensor) -> tf.Tensor:
        if "predict_float" not in self.signatures:
            if self.gradient_reason() is None:
                scores, logits = self.signature_graph().forward(self._graph_input(images))
                return logits if logits is not None else tf.math.log(tf.maximum(scores, 1e-30))
            return super().logits_tf(images)  # log of predict_tf's probabilities
        out = self.signatures["predict_float"](images=images)
        if "logits" in out:
            return out["logits"]
        return tf.math.log(tf.maximum(out["probabilities"], 1e-30))  # as the base class, one call

    def activation_gradients(self, images: Any, class_index: Any) -> tuple[tf.Tensor, ...]:
        """``(A, ∂y_c/∂A, y, c)`` at the declared activation output (Grad-CAM family), for
        ``[0, 1]`` images; ``y`` are the logits (``log p`` without a softmax), ``c`` the resolved classes.

        Raises:
            MethodUnavailable: no activation output, or the signature is not differentiable.
        """
        if self.activation_key is None:
            raise MethodUnavailable("the explanation metadata names no activation output "
                                    "(cnnExplain.activationOutputName), so the Grad-CAM family has no target layer")
        reason = self.gradient_reason()
        if reason is not None:
            raise MethodUnavailable(reason)
        return self.signature_graph().activation_gradients(self._graph_input(images), class_index)


def ablated_run(view: ModelView, images: tf.Tensor, channel_mask: tf.Tensor) -> tf.Tensor:
    """Logits of ``images`` with the target activations ``A`` replaced by ``A ⊙ channel_mask``."""
    mask = tf.cast(channel_mask, tf.float32)[:, tf.newaxis, tf.newaxis, :]
    return view.run(images, replace_target=lambda a: a * mask).logits


ShouldContinue = Callable[[], bool]
