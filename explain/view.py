"""A *model view*: a Keras model plus the names of its target layer, classifier and pooling.

Every explanation method works on a :class:`ModelView`. The view runs the model's own graph
(:meth:`ModelView.run`) and intercepts layer calls, so it can hand back the target-layer
activations ``A`` and the logits ``y`` from one forward pass — also when the target layer sits
inside a nested model (a Functional backbone inside a Functional model), where building a
sub-model from ``inner_layer.output`` fails in most libraries.

Layers are addressed by *path*: ``"block5_conv2"`` or, inside a nested model,
``"backbone/block5_conv2"``. A bare name is accepted when it is unique in the whole tree.

Logits: the classifier is a ``Dense`` layer; the view records its pre-activation
``x @ kernel + bias`` as the logits (SPEC.md §2: Grad-CAM uses the logit, never the softmax
output), whatever activation the layer has, and ``probabilities = softmax(logits)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import keras
import tensorflow as tf

from explain.checks import ExplainError, check_image_tensor, check_layer, resolve_class_tensor

__all__ = ["ModelView", "ForwardResult", "ExplainError", "iter_layers", "find_layer"]

_POOL_TYPES = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
_SKIP_FOR_TARGET = _POOL_TYPES + (
    keras.layers.Dropout,
    keras.layers.ZeroPadding2D,
    keras.layers.BatchNormalization,
)


def _functional(layer: Any) -> Any | None:
    """The Functional graph behind a (built) Functional or Sequential model, else ``None``."""
    if isinstance(layer, keras.Sequential):
        return getattr(layer, "_functional", None)
    if isinstance(layer, keras.Model) and hasattr(layer, "_run_through_graph") and hasattr(layer, "_nodes_by_depth"):
        return layer
    return None


def _ordered_operations(model: Any) -> list[Any]:
    """Operations of a Functional graph in execution (topological) order."""
    fn = _functional(model)
    ops: list[Any] = []
    seen: set[int] = set()
    for depth in sorted(fn._nodes_by_depth.keys(), reverse=True):
        for node in fn._nodes_by_depth[depth]:
            op = node.operation
            if op is None or node.is_input or isinstance(op, keras.layers.InputLayer) or id(op) in seen:
                continue
            seen.add(id(op))
            ops.append(op)
    return ops


def iter_layers(model: keras.Model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """Yield ``(path, layer)`` for every layer in execution order, recursing into nested models.

    A nested model is yielded too (before its own layers).
    """
    for op in _ordered_operations(model):
        path = f"{prefix}{op.name}"
        yield path, op
        if _functional(op) is not None:
            yield from iter_layers(op, prefix=f"{path}/")


def find_layer(model: keras.Model, name: str) -> str:
    """Resolve a layer name or path to its full path.

    Raises:
        ExplainError: unknown name (the message lists the accepted ones) or an ambiguous bare name.
    """
    return check_layer(name, [p for p, _ in iter_layers(model)], model.name)


def _output_rank(layer: keras.layers.Layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        return None


@dataclass
class ForwardResult:
    """What one intercepted forward pass returns.

    Attributes:
        outputs: The model's outputs, as ``model(images)`` gives them.
        activations: Target-layer activations ``A``, ``(N, h, w, K)``, or ``None``.
        logits: Classifier pre-activations ``y``, ``(N, C)``, or ``None`` for models without one.
        captured: Outputs of the extra layers asked for with ``capture``, by path.
    """

    outputs: Any
    activations: tf.Tensor | None = None
    logits: tf.Tensor | None = None
    captured: dict[str, tf.Tensor] = field(default_factory=dict)

    @property
    def probabilities(self) -> tf.Tensor:
        if self.logits is None:
            raise ExplainError("this model has no classifier layer, so it has no probabilities")
        return tf.nn.softmax(self.logits, axis=-1)


CallWrapper = Callable[[str, keras.layers.Layer, Callable[..., Any]], Callable[..., Any]]


class ModelView:
    """A Keras model with its target layer, classifier layer and pooling resolved.

    Args:
        model: A built Keras Functional or Sequential model taking float32 images ``(N, H, W, 3)``.
        target_layer: Layer name or path of the feature map to explain. ``None`` = the last
            layer with a 4-D output that is not a pooling, padding, dropout or normalisation
            layer (the output of the last convolution after its ReLU), also in nested models.
        classifier_layer: Name or path of the final ``Dense`` layer. ``None`` = the last
            ``Dense`` layer with more than one unit after the target layer (if any).
        pooling: ``"avg"``/``"max"``/``None``; ``None`` = the global pooling layer after the
            target layer, if any.
        projection_layer: Name or path of a linear projection after the pooling (embedding
            networks); ``None`` = the ``Dense`` directly after the pooling when there is no
            classifier.
        preprocessing: How images in ``[0, 1]`` become the model's input
            (:mod:`models.preprocessing`: ``"unit"``, ``"raw"``, ``"tf"``, ``"caffe"``,
            ``"torch"``, or ``{"mean": …, "std": …}``); applied first in :meth:`run`, so every
            method keeps working on ``[0, 1]`` images. Default ``"unit"``.

    Raises:
        ExplainError: the model has no 4-D layer, or a named layer does not exist, or the
            preprocessing is not one of the accepted ones.
    """

    def __init__(
        self,
        model: keras.Model,
        target_layer: str | None = None,
        classifier_layer: str | None = None,
        pooling: str | None = None,
        projection_layer: str | None = None,
        preprocessing: Any = None,
    ) -> None:
        from models.preprocessing import PreprocessingError, resolve_preprocessing

        if _functional(model) is None:
            raise ExplainError(
                f"model {getattr(model, 'name', model)!r} is not a built Functional or Sequential Keras model"
            )
        self.model = model
        try:
            self.preprocessing = resolve_preprocessing(preprocessing)
        except PreprocessingError as err:
            raise ExplainError(str(err)) from None
        self._layers = list(iter_layers(model))
        self._by_path = dict(self._layers)
        order = {p: i for i, (p, _) in enumerate(self._layers)}

        if target_layer is None:
            self.target_layer = _default_target(model, self._layers)
        else:
            self.target_layer = find_layer(model, target_layer)
            if _output_rank(self._by_path[self.target_layer]) != 4:
                raise ExplainError(
                    f"target layer {self.target_layer!r} has a {_output_rank(self._by_path[self.target_layer])}-D output; "
                    "it must be a 4-D feature map (N, h, w, K)"
                )
        t = order[self.target_layer]
        after = [(p, layer) for p, layer in self._layers if order[p] > t]

        if classifier_layer is None:
            dense = [p for p, layer in after if isinstance(layer, keras.layers.Dense) and layer.units > 1]
            pools = [p for p, layer in after if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))]
            is_embedding = any(isinstance(layer, keras.layers.UnitNormalization) for _, layer in after)
            self.classifier_layer = dense[-1] if dense and not is_embedding else None
        else:
            self.classifier_layer = find_layer(model, classifier_layer)
            if not isinstance(self._by_path[self.classifier_layer], keras.layers.Dense):
                raise ExplainError(f"classifier layer {self.classifier_layer!r} must be a Dense layer")
            pools = []

        pool_layers = [
            (p, layer) for p, layer in after
            if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D))
        ]
        if pooling is None and pool_layers:
            pooling = "avg" if isinstance(pool_layers[0][1], keras.layers.GlobalAveragePooling2D) else "max"
        if pooling not in (None, "avg", "max"):
            raise ExplainError(f"pooling {pooling!r} is not supported; accepted: ['avg', 'max', None]")
        self.pooling = pooling
        self.pool_layer = pool_layers[0][0] if pool_layers else None

        if projection_layer is not None:
            self.projection_layer: str | None = find_layer(model, projection_layer)
        elif self.classifier_layer is None and self.pool_layer is not None:
            p_idx = order[self.pool_layer]
            nxt = [(p, layer) for p, layer in after if order[p] > p_idx]
            self.projection_layer = (
                nxt[0][0] if nxt and isinstance(nxt[0][1], keras.layers.Dense) else None
            )
        else:
            self.projection_layer = None
        del pools

    # ------------------------------------------------------------------ properties
    def layer(self, path: str) -> keras.layers.Layer:
        """The layer object at ``path`` (resolved with :func:`find_layer`)."""
        return self._by_path[find_layer(self.model, path)]

    @property
    def layer_paths(self) -> list[str]:
        return [p for p, _ in self._layers]

    def layer_paths_and_layers(self) -> list[tuple[str, keras.layers.Layer]]:
        """``(path, layer)`` of every leaf layer (nested models resolved), in execution order."""
        return [(p, layer) for p, layer in self._layers if _functional(layer) is None]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        shape = self.model.inputs[0].shape
        return tuple(int(s) for s in shape[1:])  # type: ignore[return-value]

    @property
    def target_shape(self) -> tuple[int, int, int]:
        """``(h, w, K)`` of the target layer."""
        return tuple(int(s) for s in self._by_path[self.target_layer].output.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int | None:
        if self.classifier_layer is None:
            return None
        return int(self._by_path[self.classifier_layer].units)

    @property
    def is_classifier(self) -> bool:
        return self.classifier_layer is not None

    @property
    def projection_kernel(self) -> tf.Variable | None:
        """Kernel ``(K, D)`` of the linear projection after the pooling, if any."""
        if self.projection_layer is None:
            return None
        return self._by_path[self.projection_layer].kernel

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable summary (for model cards and ``ListModels``)."""
        return {
            "target_layer": self.target_layer,
            "target_shape": list(self.target_shape),
            "classifier_layer": self.classifier_layer,
            "num_classes": self.num_classes,
            "pooling": self.pooling,
            "projection_layer": self.projection_layer,
            "input_shape": list(self.input_shape),
            "preprocessing": self.preprocessing.to_card(),
        }

    # ------------------------------------------------------------------ execution
    def run(
        self,
        images: tf.Tensor,
        capture: tuple[str, ...] | list[str] = (),
        call_wrapper: CallWrapper | None = None,
        replace_target: Callable[[tf.Tensor], tf.Tensor] | None = None,
        training: bool = False,
    ) -> ForwardResult:
        """One forward pass through the model's own graph with interception.

        Args:
            images: ``(N, H, W, 3)`` float32 in ``[0, 1]`` (the view's preprocessing maps them to
                the model's own input scale).
            capture: Extra layer paths whose outputs to return in ``captured``.
            call_wrapper: ``f(path, layer, call) -> call`` applied to every leaf layer call,
                e.g. to attach a custom gradient (excitation backprop).
            replace_target: ``g(A) -> A'`` applied to the target activations before the rest of
                the network consumes them (``activations`` holds ``A``, the value before ``g``).
            training: Passed to layers that take it (always ``False`` for explanations).

        Returns:
            A :class:`ForwardResult`. Call it under a ``tf.GradientTape`` to differentiate
            ``logits`` with respect to ``activations`` (an intermediate tensor on the tape).
        """
        wanted = {find_layer(self.model, c) for c in capture}
        result = ForwardResult(outputs=None)
        x = self.preprocessing.apply(images)
        result.outputs = self._run(self.model, "", x, result, wanted, call_wrapper, replace_target, training)
        return result

    def _run(self, model, prefix, inputs, result, wanted, call_wrapper, replace_target, training):
        fn = _functional(model)

        def operation_fn(op):
            path = f"{prefix}{op.name}"
            if _functional(op) is not None:
                def nested(*args, **kwargs):
                    x = args[0] if len(args) == 1 else list(args)
                    return self._run(op, f"{path}/", x, result, wanted, call_wrapper, replace_target, training)
                return nested

            def call(*args, **kwargs):
                if "training" in getattr(op, "_call_context_args", {}) or _accepts_training(op):
                    kwargs.setdefault("training", training)
                if path == self.classifier_layer:
                    def dense_logits(x, **_):
                        z = tf.matmul(x, op.kernel)
                        if op.use_bias:
                            z = z + op.bias
                        return z
                    inner = call_wrapper(path, op, dense_logits) if call_wrapper else dense_logits
                    z = inner(*args)
                    result.logits = z
                    return op.activation(z)
                inner = call_wrapper(path, op, op) if call_wrapper else op
                out = inner(*args, **kwargs)
                if path == self.target_layer:
                    result.activations = out
                    if replace_target is not None:
                        out = replace_target(out)
                if path in wanted:
                    result.captured[path] = out
                return out

            return call

        flat = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        out = fn._run_through_graph(flat, operation_fn=operation_fn)
        if isinstance(out, (list, tuple)) and len(out) == 1:
            return out[0]
        return out

    # ------------------------------------------------------------------ helpers
    def logits_and_activations(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """``(logits (N, C), A (N, h, w, K))`` from one forward pass."""
        r = self.run(images)
        return r.logits, r.activations

    def resolve_class_index(self, class_index: tf.Tensor | int | None, logits: tf.Tensor) -> tf.Tensor:
        """Per-example class indices ``(N,)`` int32; ``-1`` (or ``None``) means the predicted class.

        Out-of-range indices raise :class:`ExplainError` in eager mode and fail a
        ``tf.debugging`` assertion inside a graph (:func:`explain.checks.resolve_class_tensor`).
        """
        return resolve_class_tensor(class_index, logits, self.model.name)


_GLOBAL_POOLS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def _default_target(model: keras.Model, layers: list[tuple[str, keras.layers.Layer]]) -> str:
    """The last 4-D leaf output before the pooling head (also inside nested models).

    The pooling head starts at the last global pooling layer (or the first ``Flatten``
    after the last 4-D layer); a global pooling with ``keepdims=True`` inside the body, as in a
    squeeze-and-excitation block, is not the head because 4-D layers follow it that are wider
    than 1×1. Pooling, padding, dropout and normalisation layers are skipped, so the target is
    the last convolution's activation.
    """
    def spatial(layer: keras.layers.Layer) -> int:
        try:
            shape = layer.output.shape
            return int(shape[1] or 0) * int(shape[2] or 0)
        except (AttributeError, ValueError, TypeError, IndexError):
            return 0

    leaves = [(p, layer) for p, layer in layers if _functional(layer) is None]
    head = len(leaves)
    for i in range(len(leaves) - 1, -1, -1):
        path, layer = leaves[i]
        if isinstance(layer, _GLOBAL_POOLS):
            later_maps = [l for _, l in leaves[i + 1:] if _output_rank(l) == 4 and spatial(l) > 1]
            if not later_maps:
                head = i
                break
    candidates = [
        p for p, layer in leaves[:head]
        if _output_rank(layer) == 4 and not isinstance(layer, _SKIP_FOR_TARGET + _GLOBAL_POOLS)
    ]
    if not candidates:
        raise ExplainError(
            f"model {model.name!r} has no layer with a 4-D output (N, h, w, K); "
            "explanations need a convolutional feature map"
        )
    return candidates[-1]


def _accepts_training(layer: keras.layers.Layer) -> bool:
    import inspect

    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


def as_view(model_or_view: keras.Model | ModelView, **kwargs: Any) -> ModelView:
    """Wrap a Keras model in a :class:`ModelView` (a view is returned unchanged)."""
    if isinstance(model_or_view, ModelView):
        return model_or_view
    return ModelView(model_or_view, **kwargs)


def check_images(images: Any, view: ModelView) -> tf.Tensor:
    """Validate an image batch for ``view`` and return it as float32 (:func:`explain.checks.check_image_tensor`).

    Accepts ``(N, H, W, 3)`` float in ``[0, 1]`` or uint8 (scaled by 1/255).

    Raises:
        ExplainError: wrong rank, wrong spatial size or channel count, unsupported dtype or an
            empty batch.
    """
    return check_image_tensor(images, view.input_shape, model=view.model.name)
