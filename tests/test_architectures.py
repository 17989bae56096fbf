"""The networks of SPEC.md §1: target-map sizes, stable layer names, argument checks, embeddings."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from models import architectures as A  # noqa: E402

# Seed 000 Table 1, "Original" column: descriptor length h·w of the Grad-CAM target map at 224.
PAPER_CELLS = {"vgg11": 196, "resnet18": 49, "simple": 324, "simpler": 1764}
LIGHT = 0.0625  # the target map's h·w does not depend on the width


@pytest.fixture(scope="module")
def paper_size_models():
    keras.utils.set_random_seed(0)
    return {name: A.build_classifier(name, 224, 2, LIGHT) for name in A.CLASSIFIERS}


@pytest.mark.parametrize("name", sorted(PAPER_CELLS))
def test_target_map_cells_at_224(paper_size_models, name):
    model = paper_size_models[name]
    h, w = model.get_layer(A.TARGET_LAYERS[name]).output.shape[1:3]
    assert h * w == PAPER_CELLS[name]
    assert h == w


@pytest.mark.parametrize("name", sorted(PAPER_CELLS))
def test_target_layer_is_the_last_conv_after_relu(paper_size_models, name):
    """The named target layer is what ModelView finds on its own (last 4-D, before the pool)."""
    from explain.view import ModelView

    view = ModelView(paper_size_models[name])
    assert view.target_layer == A.TARGET_LAYERS[name]
    assert view.classifier_layer == "predictions"
    assert A.info(name).target_layer == A.TARGET_LAYERS[name]


@pytest.mark.parametrize("name", sorted(PAPER_CELLS))
def test_layer_names_do_not_depend_on_width(name):
    size = max(A.min_input_size(name), 96)
    narrow = [layer.name for layer in A.build_classifier(name, size, 3, 0.0625).layers]
    wide = [layer.name for layer in A.build_classifier(name, size, 3, 0.125).layers]
    assert narrow == wide
    assert narrow[-1] == "predictions"
    assert A.TARGET_LAYERS[name] in narrow


def test_paper_channel_counts_at_width_one():
    """Configuration A of VGG and the Simple/Simpler filter counts (built at the smallest sizes)."""
    vgg = A.vgg11(32, 2, 1.0)
    convs = [layer.filters for layer in vgg.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]
    assert vgg.get_layer("fc1").units == vgg.get_layer("fc2").units == 4096
    simple = A.simple(96, 2, 1.0)
    assert [(l.kernel_size[0], l.filters) for l in simple.layers if isinstance(l, keras.layers.Conv2D)] == [
        (5, 20), (7, 64), (5, 96), (7, 128)]
    assert simple.get_layer("fc1").units == 4096
    simpler = A.simpler(64, 2, 1.0)
    assert [(l.kernel_size[0], l.filters) for l in simpler.layers if isinstance(l, keras.layers.Conv2D)] == [
        (9, 20), (9, 64), (9, 96)]
    assert simpler.get_layer("fc1").units == 100


def test_resnet18_has_basic_blocks_2222():
    model = A.resnet18(64, 2, 0.0625)
    blocks = sorted({l.name.split("_")[0] + "_" + l.name.split("_")[1] for l in model.layers
                     if l.name.startswith("conv") and "_block" in l.name})
    assert blocks == [f"conv{s}_block{b}" for s in (2, 3, 4, 5) for b in (1, 2)]
    # no strided 1x1 convolution (its gradient crashes oneDNN on CPU, see the module notes)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            assert layer.strides == (1, 1)


@pytest.mark.parametrize("name,size", [("simple", 96), ("simpler", 64), ("vgg11", 32), ("resnet18", 32)])
def test_minimum_input_size(name, size):
    """The smallest input builds (every pool gets a non-empty map); one pixel less is refused."""
    assert A.min_input_size(name) == size
    A.build_classifier(name, size, 2, LIGHT)
    with pytest.raises(ValueError, match=rf"input_size {size - 1} is too small for '{name}'.*{size}"):
        A.build_classifier(name, size - 1, 2, LIGHT)


def test_bad_builder_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"unknown classifier 'alexnet'.*'resnet18'.*'vgg11'"):
        A.build_classifier("alexnet")
    with pytest.raises(ValueError, match=r"num_classes 1 must be an integer >= 2"):
        A.vgg11(64, 1, LIGHT)
    with pytest.raises(ValueError, match=r"width 0 must be a positive"):
        A.simple(96, 2, 0)
    with pytest.raises(ValueError, match=r"width -1.0 must be a positive"):
        A.resnet18(64, 2, -1.0)
    with pytest.raises(ValueError, match=r"input_size '96' is too small"):
        A.vgg11("96", 2, LIGHT)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"pooling 'sum' is not supported; accepted: \['avg', 'max'\]"):
        A.embedding_net(64, "sum")
    with pytest.raises(ValueError, match=r"embedding_dim 0 must be a positive integer or None"):
        A.embedding_net(64, "avg", 0)
    with pytest.raises(ValueError, match=r"unknown architecture 'lenet'; accepted"):
        A.min_input_size("lenet")


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("dim", [None, 16])
def test_embedding_output_is_unit_norm(pooling, dim):
    keras.utils.set_random_seed(1)
    model = A.embedding_net(64, pooling, dim, 0.125)
    x = np.random.default_rng(0).random((5, 64, 64, 3), dtype=np.float32)
    e = np.asarray(model(x))
    assert e.shape == (5, dim or A._scaled(256, 0.125))
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    names = [layer.name for layer in model.layers]
    assert A.TARGET_LAYERS["embedding"] in names and "pool" in names and names[-1] == "l2norm"
    assert ("projection" in names) == (dim is not None)
    # the target map keeps 1/8 of the input resolution
    assert model.get_layer("block4_conv2").output.shape[1:3] == (8, 8)


def test_siamese_classifier_shares_its_branch():
    keras.utils.set_random_seed(2)
    classifier, pair = A.siamese_classifier(32, 3, embedding_dim=8, width=0.125)
    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    pa, pb, d = (np.asarray(t) for t in pair([x, x[::-1]]))
    np.testing.assert_allclose(pa, np.asarray(classifier(x)), atol=1e-6)
    np.testing.assert_allclose(pb, np.asarray(classifier(x[::-1])), atol=1e-6)
    np.testing.assert_allclose(d, d[::-1], atol=1e-5)  # pairs (i, 3-i) and (3-i, i)
    assert pa.shape == (4, 3) and d.shape == (4,)
    np.testing.assert_allclose(pa.sum(1), 1.0, atol=1e-5)
