"""The papers' networks as Keras builder functions with stable, hierarchical layer names.

Every classifier takes float32 images in ``[0, 1]`` of shape ``(N, H, W, 3)`` (the exported
SavedModel casts and scales uint8 inside its graph) and ends in a ``Dense`` layer named
``predictions`` with a softmax activation. Its pre-activation is the logit ``y_c`` that Grad-CAM
differentiates (SPEC.md §2); :mod:`explain.view` recomputes it from the layer's kernel and bias.

Layer names follow Keras applications (``block1_conv1``, ``conv2_block1_1_conv``, ``fc1``,
``predictions``) and never depend on the width multiplier, so checkpoints, target layers and the
model card stay stable across presets.

Architectures (SPEC.md §1, seed 000 Table 1, seed 001):

=========  ==============================================================  =====================
name       body                                                            target map at 224
=========  ==============================================================  =====================
vgg11      configuration A, 3×3 same convs, five 2×2 max pools             14×14 = 196
resnet18   basic blocks [2, 2, 2, 2], global average pool                  7×7 = 49
simple     5×5-20, 7×7-64, 5×5-96, 7×7-128 valid convs, each + 2×2 pool    18×18 = 324
simpler    9×9-20, 9×9-64, 9×9-96 valid convs, each + 2×2 pool             42×42 = 1764
=========  ==============================================================  =====================

Known TensorFlow bug worked around here: on CPU with oneDNN (the default), the gradient of a
``Conv2D`` with a 1×1 kernel and stride 2 crashes the process (heap corruption) in TF 2.21.
ResNet18's projection shortcuts are therefore written as a 1×1 ``MaxPooling2D`` with stride 2
(pure subsampling) followed by a stride-1 1×1 convolution, which is the same function.

The Grad-CAM target layer is the output of the last convolution after its ReLU and before the
following pool (:data:`TARGET_LAYERS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers

__all__ = [
    "ArchitectureInfo",
    "CLASSIFIERS",
    "EMBEDDINGS",
    "TARGET_LAYERS",
    "build_classifier",
    "build_embedding",
    "embedding_net",
    "min_input_size",
    "resnet18",
    "siamese_classifier",
    "simple",
    "simpler",
    "vgg11",
]


@dataclass(frozen=True)
class ArchitectureInfo:
    """What the rest of the project needs to know about a built network.

    Attributes:
        name: Architecture name (``vgg11``, ``resnet18``, ``simple``, ``simpler``, ``embedding``).
        target_layer: Name of the Grad-CAM target layer.
        classifier_layer: Name of the final ``Dense`` layer (``None`` for embedding networks).
        pooling: ``"avg"``/``"max"`` for embedding networks and ResNet18's head, else ``None``.
        projection_layer: Name of the linear projection of an embedding network, if any.
    """

    name: str
    target_layer: str
    classifier_layer: str | None = "predictions"
    pooling: str | None = None
    projection_layer: str | None = None


TARGET_LAYERS: dict[str, str] = {
    "vgg11": "block5_conv2",
    "resnet18": "conv5_block2_out",
    "simple": "conv4",
    "simpler": "conv3",
    "embedding": "block4_conv2",
}

# VGG configuration A (Simonyan & Zisserman): filters per conv, "M" = 2×2 max pool.
_VGG11_BLOCKS: tuple[tuple[int, ...], ...] = ((64,), (128,), (256, 256), (512, 512), (512, 512))

# He-normal initialisation for every layer followed by a ReLU (as torchvision's VGG and ResNet).
# Keras' default Glorot-uniform halves the activation variance at every ReLU layer, and VGG11
# (ten ReLU layers, no normalisation) then does not train at all from scratch (loss stays at
# ln 2). BatchNormalization momentum 0.9 = PyTorch's default (0.1 in its convention); Keras'
# 0.99 leaves the moving statistics far from the data after short training runs.
_RELU_INIT = "he_normal"
_BN_MOMENTUM = 0.9


def _scaled(units: int, width: float) -> int:
    return max(1, int(round(units * width)))


def _check_common(input_size: int, num_classes: int, width: float, name: str) -> None:
    if not isinstance(input_size, int) or input_size < min_input_size(name):
        raise ValueError(
            f"input_size {input_size!r} is too small for {name!r}: it needs at least "
            f"{min_input_size(name)} pixels"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes {num_classes!r} must be an integer >= 2")
    if not (width > 0):
        raise ValueError(f"width {width!r} must be a positive multiplier (1.0 = the paper's width)")


def min_input_size(name: str) -> int:
    """Smallest square input on which ``name`` still has a non-empty target map.

    Simple and Simpler use valid convolutions with large kernels, so they need larger inputs
    than the padded networks.
    """
    # Simple at 95 px: 91→45→39→19→15→7→1, and pool4 of a 1×1 map is empty; likewise Simpler at 63.
    sizes = {"vgg11": 32, "resnet18": 32, "simple": 96, "simpler": 64, "embedding": 16}
    if name not in sizes:
        raise ValueError(f"unknown architecture {name!r}; accepted: {sorted(sizes)}")
    return sizes[name]


def _inputs(input_size: int) -> keras.KerasTensor:
    return keras.Input(shape=(input_size, input_size, 3), name="images", dtype="float32")


def vgg11(
    input_size: int = 224,
    num_classes: int = 2,
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "vgg11",
) -> keras.Model:
    """VGG11 (configuration A) with FC-4096, FC-4096, FC-classes.

    Target layer ``block5_conv2``: 14×14 at 224 input.
    """
    _check_common(input_size, num_classes, width, "vgg11")
    inputs = _inputs(input_size)
    x = inputs
    for b, filters in enumerate(_VGG11_BLOCKS, start=1):
        for c, f in enumerate(filters, start=1):
            x = layers.Conv2D(
                _scaled(f, width), 3, padding="same", activation="relu", kernel_initializer=_RELU_INIT,
                name=f"block{b}_conv{c}",
            )(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(_scaled(4096, width), activation="relu", kernel_initializer=_RELU_INIT, name=f"fc{i}")(x)
        x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _basic_block(x, filters: int, stride: int, prefix: str):
    """ResNet basic block: two 3×3 conv-BN (ReLU between), identity or 1×1 projection shortcut."""
    shortcut = x
    block_input = x
    if stride != 1 or x.shape[-1] != filters:
        if stride != 1:
            # A 1×1 convolution with stride s equals subsampling by s followed by a 1×1
            # convolution. Written that way because TF 2.21's oneDNN kernel for the gradient of a
            # strided 1×1 Conv2D corrupts the heap on CPU (double free); see the module notes.
            x = layers.MaxPooling2D(1, strides=stride, name=f"{prefix}_0_subsample")(x)
        shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{prefix}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1.001e-5, momentum=_BN_MOMENTUM, name=f"{prefix}_0_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{prefix}_1_conv")(block_input)
    y = layers.BatchNormalization(epsilon=1.001e-5, momentum=_BN_MOMENTUM, name=f"{prefix}_1_bn")(y)
    y = layers.Activation("relu", name=f"{prefix}_1_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{prefix}_2_conv")(y)
    y = layers.BatchNormalization(epsilon=1.001e-5, momentum=_BN_MOMENTUM, name=f"{prefix}_2_bn")(y)
    y = layers.Add(name=f"{prefix}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{prefix}_out")(y)


def resnet18(
    input_size: int = 224,
    num_classes: int = 2,
    width: float = 1.0,
    name: str = "resnet18",
) -> keras.Model:
    """ResNet18: 7×7/2 stem, 3×3/2 max pool, basic blocks [2, 2, 2, 2], GAP, FC-classes.

    Target layer ``conv5_block2_out``: 7×7 at 224 input.
    """
    _check_common(input_size, num_classes, width, "resnet18")
    inputs = _inputs(input_size)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(_scaled(64, width), 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, momentum=_BN_MOMENTUM, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, filters in enumerate((64, 128, 256, 512), start=2):
        for block in (1, 2):
            stride = 2 if (block == 1 and stage > 2) else 1
            x = _basic_block(x, _scaled(filters, width), stride, f"conv{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def simple(
    input_size: int = 224,
    num_classes: int = 2,
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "simple",
) -> keras.Model:
    """Simple: conv5×5-20, pool, conv7×7-64, pool, conv5×5-96, pool, conv7×7-128, pool, FC-4096.

    Valid padding. Target layer ``conv4``: 18×18 at 224 input.
    """
    _check_common(input_size, num_classes, width, "simple")
    inputs = _inputs(input_size)
    x = inputs
    for i, (k, f) in enumerate(((5, 20), (7, 64), (5, 96), (7, 128)), start=1):
        x = layers.Conv2D(_scaled(f, width), k, activation="relu", kernel_initializer=_RELU_INIT, name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(4096, width), activation="relu", kernel_initializer=_RELU_INIT, name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def simpler(
    input_size: int = 224,
    num_classes: int = 2,
    width: float = 1.0,
    dropout: float = 0.5,
    name: str = "simpler",
) -> keras.Model:
    """Simpler: conv9×9-20, pool, conv9×9-64, pool, conv9×9-96, pool, FC-100.

    Valid padding. Target layer ``conv3``: 42×42 at 224 input.
    """
    _check_common(input_size, num_classes, width, "simpler")
    inputs = _inputs(input_size)
    x = inputs
    for i, f in enumerate((20, 64, 96), start=1):
        x = layers.Conv2D(_scaled(f, width), 9, activation="relu", kernel_initializer=_RELU_INIT, name=f"conv{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(100, width), activation="relu", kernel_initializer=_RELU_INIT, name="fc1")(x)
    x = layers.Dropout(dropout, name="fc1_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


CLASSIFIERS: dict[str, Callable[..., keras.Model]] = {
    "vgg11": vgg11,
    "resnet18": resnet18,
    "simple": simple,
    "simpler": simpler,
}

POOLINGS = ("avg", "max")


def embedding_net(
    input_size: int = 224,
    pooling: str = "avg",
    embedding_dim: int | None = None,
    width: float = 1.0,
    name: str | None = None,
) -> keras.Model:
    """Embedding network of seed 002: conv body, global avg or max pool, optional projection, L2.

    Body: four VGG-style blocks (64, 128, 256, 256-256 filters × width), the last without a
    pool, so the target layer ``block4_conv2`` keeps 1/8 of the input resolution. Then
    ``pool`` (``GlobalAveragePooling2D`` or ``GlobalMaxPooling2D``), an optional bias-free
    ``projection`` Dense (linear, so similarity maps stay exact), and ``l2norm``.

    Args:
        input_size: Square input side.
        pooling: ``"avg"`` or ``"max"``.
        embedding_dim: Output size of the linear projection; ``None`` = no projection.
        width: Width multiplier.
        name: Model name; default ``embedding_<pooling>``.

    Returns:
        A model mapping ``(N, H, W, 3)`` float images to ``(N, D)`` unit-norm embeddings.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not supported; accepted: {list(POOLINGS)}")
    if embedding_dim is not None and (not isinstance(embedding_dim, int) or embedding_dim < 1):
        raise ValueError(f"embedding_dim {embedding_dim!r} must be a positive integer or None")
    _check_common(input_size, 2, width, "embedding")
    inputs = _inputs(input_size)
    x = inputs
    blocks = ((64,), (128,), (256,), (256, 256))
    for b, filters in enumerate(blocks, start=1):
        for c, f in enumerate(filters, start=1):
            x = layers.Conv2D(
                _scaled(f, width), 3, padding="same", activation="relu", kernel_initializer=_RELU_INIT,
                name=f"block{b}_conv{c}",
            )(x)
        if b < len(blocks):
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    pool = layers.GlobalAveragePooling2D if pooling == "avg" else layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    if embedding_dim is not None:
        x = layers.Dense(embedding_dim, use_bias=False, name="projection")(x)
    outputs = layers.UnitNormalization(name="l2norm")(x)
    return keras.Model(inputs, outputs, name=name or f"embedding_{pooling}")


EMBEDDINGS: dict[str, Callable[..., keras.Model]] = {"embedding": embedding_net}


def siamese_classifier(
    input_size: int = 224,
    num_classes: int = 2,
    embedding_dim: int = 128,
    width: float = 1.0,
    name: str = "siamese",
) -> tuple[keras.Model, keras.Model]:
    """The Siamese classifier of seed 003: a shared embedding branch trained with softmax +
    contrastive loss.

    Returns:
        ``(classifier, pair_model)``. ``classifier`` maps images to class probabilities through
        ``embedding`` (the shared branch: VGG-style body, GAP, linear ``projection``) and a
        ``predictions`` Dense softmax; it is what gets explained and exported. ``pair_model``
        maps ``[images_a, images_b]`` to ``[probs_a, probs_b, distance]`` with the Euclidean
        distance between the two embeddings, for the contrastive term.
    """
    _check_common(input_size, num_classes, width, "embedding")
    inputs = _inputs(input_size)
    x = inputs
    for b, f in enumerate((64, 128, 256), start=1):
        x = layers.Conv2D(
            _scaled(f, width), 3, padding="same", activation="relu", kernel_initializer=_RELU_INIT, name=f"block{b}_conv1"
        )(x)
        if b < 3:
            x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    emb = layers.Dense(embedding_dim, name="projection")(x)
    branch = keras.Model(inputs, emb, name="embedding")
    image = _inputs(input_size)
    feat = branch(image)
    probs = layers.Dense(num_classes, activation="softmax", name="predictions")(layers.ReLU(name="embedding_relu")(feat))
    classifier = keras.Model(image, probs, name=name)
    a = keras.Input(shape=(input_size, input_size, 3), name="images_a")
    b = keras.Input(shape=(input_size, input_size, 3), name="images_b")
    ea, eb = branch(a), branch(b)
    dist = layers.Lambda(
        lambda t: keras.ops.sqrt(keras.ops.sum(keras.ops.square(t[0] - t[1]), axis=-1) + 1e-12),
        name="distance",
    )([ea, eb])
    pair = keras.Model([a, b], [classifier(a), classifier(b), dist], name=f"{name}_pair")
    return classifier, pair


def build_classifier(name: str, input_size: int = 224, num_classes: int = 2, width: float = 1.0) -> keras.Model:
    """Build one of :data:`CLASSIFIERS` by name."""
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; accepted: {sorted(CLASSIFIERS)}")
    return CLASSIFIERS[name](input_size=input_size, num_classes=num_classes, width=width)


def build_embedding(
    pooling: str = "avg", input_size: int = 224, embedding_dim: int | None = None, width: float = 1.0
) -> keras.Model:
    """Build an embedding network (see :func:`embedding_net`)."""
    return embedding_net(input_size=input_size, pooling=pooling, embedding_dim=embedding_dim, width=width)


def info(name: str, pooling: str | None = None, projection: bool = False) -> ArchitectureInfo:
    """The :class:`ArchitectureInfo` of an architecture built by this module."""
    if name in CLASSIFIERS:
        return ArchitectureInfo(name, TARGET_LAYERS[name], "predictions", "avg" if name == "resnet18" else None)
    if name == "embedding":
        return ArchitectureInfo(name, TARGET_LAYERS[name], None, pooling, "projection" if projection else None)
    raise ValueError(f"unknown architecture {name!r}; accepted: {sorted([*CLASSIFIERS, 'embedding'])}")
