"""Excitation backprop rules for the layers of the common architectures (issue: any Keras model).

Hand-built cases check each rule against the formula computed in numpy, or against the same
network written with separate layers; MobileNetV2 checks conservation end to end; models whose
activations break the method's assumptions get a refusal that names the layer.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from explain.excitation import check_rules, excitation_backprop  # noqa: E402
from explain.view import ExplainError, ModelView  # noqa: E402

L = keras.layers


def _head(x, n: int = 2):
    """GAP -> Dense with positive weights, so every class receives signal (no vacuous zeros)."""
    x = L.GlobalAveragePooling2D(name="gap")(x)
    init = keras.initializers.RandomUniform(0.1, 1.0)
    return L.Dense(n, activation="softmax", kernel_initializer=init, name="predictions")(x)


def _signals(model, images, layers, saliency=None, class_index=0, preprocessing=None):
    view = ModelView(model, preprocessing=preprocessing)
    out = excitation_backprop(view, images, class_index=class_index, saliency_layer=saliency or layers[0],
                              contrast_layer="gap", return_layers=layers)
    return out["layers"]


def _images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.05, 1.0, shape).astype(np.float32)


def test_depthwise_rule_by_hand():
    """DepthwiseConv2D: per channel, p_in = x⁺ ⊙ (W⁺)ᵀ (p / (W⁺ x⁺)), bias dropped."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((3, 3, 2))
    dw = L.DepthwiseConv2D(2, padding="valid", use_bias=True, name="dw")
    y = dw(inp)
    model = keras.Model(inp, _head(L.ReLU(name="relu")(y)))
    kernel = np.array([[[[1.0], [-0.5]], [[0.5], [2.0]]], [[[-1.0], [1.0]], [[2.0], [0.25]]]], np.float32)
    dw.set_weights([kernel, np.array([0.3, -0.2], np.float32)])
    x = _images((1, 3, 3, 2))
    sig = _signals(model, x, ["dw", "relu"], saliency="dw")
    # At the ReLU output: the signal from the GAP/Dense; at dw's input: the per-channel rule.
    from explain.excitation import excitation_backprop as eb

    p_out = sig["relu"][0]  # (2, 2, 2)
    full = eb(ModelView(model), x, class_index=0, saliency_layer="dw", contrast_layer="gap",
              return_layers=["dw"])["layers"]["dw"][0]
    np.testing.assert_allclose(full, p_out, atol=1e-7)  # ReLU passes where on; dw output > 0 there
    y_val = keras.Model(inp, y)(x).numpy()[0]
    wp = np.maximum(kernel[..., 0], 0)  # (2, 2, C)
    expected = np.zeros((3, 3, 2), np.float32)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                p = p_out[i, j, c] if y_val[i, j, c] > 0 else 0.0
                patch = x[0, i:i + 2, j:j + 2, c]
                z = float((wp[:, :, c] * patch).sum())
                if z > 0:
                    expected[i:i + 2, j:j + 2, c] += patch * wp[:, :, c] * p / z
    # The input signal of dw is read at the model input: ask for it through a 1-layer model.
    inp_signal = _input_signal(model, x)
    assert expected.sum() > 0.1
    np.testing.assert_allclose(inp_signal, expected, rtol=1e-5, atol=1e-7)


def _input_signal(model, x, class_index=0):
    """MWP signal at the image of the first image of ``x`` (the custom gradients end to end)."""
    return _input_signal_class(model, x, class_index)[0]


def test_separable_equals_depthwise_then_pointwise():
    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 6, 3))
    sep = L.SeparableConv2D(4, 3, padding="same", activation="relu", depth_multiplier=2, name="sep")
    a = keras.Model(inp, _head(sep(inp)))
    inp2 = keras.Input((6, 6, 3))
    dw = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False, name="dw")
    pw = L.Conv2D(4, 1, activation="relu", name="pw")
    b = keras.Model(inp2, _head(pw(dw(inp2))))
    dk, pk, bias = sep.get_weights()
    dw.set_weights([dk])
    pw.set_weights([pk, bias])
    b.get_layer("predictions").set_weights(a.get_layer("predictions").get_weights())
    x = _images((2, 6, 6, 3), seed=2)
    np.testing.assert_allclose(a(x).numpy(), b(x).numpy(), atol=1e-6)
    for c in (0, 1):
        sa = _input_signal_class(a, x, c)
        sb = _input_signal_class(b, x, c)
        np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-8)
        # Mass is not exactly conserved here, in either form: the pointwise map's input (the
        # depthwise output, no ReLU) is negative in about half of the units, outside the rule's
        # assumption x >= 0. It stays non-negative and below one unit per image.
        totals = sa.reshape(len(x), -1).sum(axis=1)
        assert np.all(totals <= 1 + 1e-5) and np.all(totals > 0.5) and sa.min() >= 0


def _input_signal_class(model, x, c):
    """MWP signal at the image ``(N, H, W, 3)`` for class ``c`` of every image."""
    from explain.excitation import _Pass

    view = ModelView(model)
    rec = _Pass(view)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        r = view.run(xt, call_wrapper=rec.wrap)
    onehot = tf.one_hot([c] * len(x), r.logits.shape[-1])
    return tape.gradient(r.logits, xt, output_gradients=onehot).numpy()


def test_relu6_passes_clipped_units_and_conserves_mass():
    inp = keras.Input((2, 2, 1))
    conv = L.Conv2D(2, 1, use_bias=False, name="conv")
    model = keras.Model(inp, _head(L.ReLU(6.0, name="relu6")(conv(inp))))
    conv.set_weights([np.array([[[[10.0, 1.0]]]], np.float32)])  # channel 0 clips at 6
    model.get_layer("predictions").set_weights([np.array([[1.0, 0.0], [1.0, 0.0]], np.float32), np.zeros(2, np.float32)])
    x = np.full((1, 2, 2, 1), 0.9, np.float32)
    sig = _signals(model, x, ["conv", "relu6"], saliency="conv")
    # z = GAP(relu6) · W⁺: channel 0 gives 6, channel 1 gives 0.9 -> shares 6/6.9 and 0.9/6.9.
    np.testing.assert_allclose(sig["conv"][0].sum(axis=(0, 1)), [6 / 6.9, 0.9 / 6.9], rtol=1e-5)
    assert sig["conv"].sum() == pytest.approx(1.0, rel=1e-6)
    np.testing.assert_allclose(_input_signal(model, x).sum(), 1.0, rtol=1e-5)


def test_squeeze_excitation_gate_is_a_fixed_weight():
    keras.utils.set_random_seed(4)
    inp = keras.Input((4, 4, 3))
    feat = L.Conv2D(4, 3, padding="same", activation="relu", name="feat")(inp)
    squeeze = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(feat)
    gate = L.Conv2D(4, 1, activation="sigmoid", name="gate")(squeeze)
    scaled = L.Multiply(name="excite")([feat, gate])
    model = keras.Model(inp, _head(scaled))
    x = _images((1, 4, 4, 3), seed=5)
    sig = _signals(model, x, ["feat", "excite"], saliency="feat")
    np.testing.assert_allclose(sig["feat"], sig["excite"], rtol=1e-6)  # the gate takes nothing
    assert sig["feat"].sum() == pytest.approx(1.0, rel=1e-5)
    # The gate's own Conv2D has a sigmoid: the main path never needs its rule.
    assert _input_signal(model, x).sum() == pytest.approx(1.0, rel=1e-4)


def test_rescaling_normalization_and_preprocessing_pass_the_signal():
    keras.utils.set_random_seed(6)
    inp = keras.Input((5, 5, 3))
    x = L.Rescaling(1 / 255.0, name="scale")(inp)
    x = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.04, 0.05, 0.06], name="norm")(x)
    model = keras.Model(inp, _head(L.Conv2D(4, 3, activation="relu", name="conv")(x)))
    imgs = _images((1, 5, 5, 3), seed=7)
    check_rules(ModelView(model, preprocessing="raw"))
    out = excitation_backprop(ModelView(model, preprocessing="raw"), imgs, class_index=1, saliency_layer="scale",
                              contrast_layer="gap", return_layers=["scale", "norm"])["layers"]
    np.testing.assert_allclose(out["scale"], out["norm"], rtol=1e-6)


@pytest.mark.parametrize(
    "layer, fragment",
    [
        (lambda: L.Activation("swish", name="act"), "layer 'act' (Activation with activation 'silu')"),
        (lambda: L.Activation("gelu", name="act"), "layer 'act' (Activation with activation 'gelu')"),
        (lambda: L.LayerNormalization(name="act"), "layer 'act' (LayerNormalization)"),
        (lambda: L.Rescaling(-1.0, name="act"), "layer 'act' (Rescaling with a non-positive scale -1.0)"),
    ],
)
def test_models_outside_the_assumptions_are_refused_with_the_layer(layer, fragment):
    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, _head(layer()(L.Conv2D(3, 3, name="conv")(inp))))
    with pytest.raises(ExplainError, match="has no excitation backprop rule") as err:
        check_rules(ModelView(model))
    assert fragment in str(err.value)


def test_hard_swish_product_is_refused():
    inp = keras.Input((4, 4, 3))
    x = L.Conv2D(3, 3, name="conv")(inp)
    hs = L.Multiply(name="hswish")([x, L.ReLU(6.0, name="r6")(x)])
    with pytest.raises(ExplainError, match=r"layer 'hswish' \(Multiply of inputs shaped"):
        check_rules(ModelView(keras.Model(inp, _head(hs))))


def test_mobilenet_v2_conserves_mass_where_the_inputs_are_non_negative():
    """Every rule conserves mass when its input is non-negative (the paper's assumption): across a
    depthwise conv reading a ReLU6, a projection conv reading a ReLU6, BN and ReLU6 themselves, and
    the head. MobileNetV2's linear bottlenecks break that assumption at the expansion convs (they
    read a BN output, negative in about half its units), where some mass is lost; the total that
    reaches the first convolution stays between 0.9 and 1."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(64, 64, 3), classes=3, alpha=0.35)
    view = ModelView(model, preprocessing="tf")
    check_rules(view)
    x = _images((2, 64, 64, 3), seed=9)
    pairs = [  # (the rule's output, its input), both read after the layer
        ("block_16_depthwise", "block_16_expand_relu"),
        ("block_16_project", "block_16_depthwise_relu"),
        ("block_16_depthwise_relu", "block_16_depthwise_BN"),
        ("Conv_1", "block_16_project_BN"),
        ("out_relu", "Conv_1_bn"),
    ]
    layers = sorted({n for pair in pairs for n in pair} | {"Conv1"})
    # Keras numbers automatic names per process ("global_average_pooling2d_3" after other tests)
    pool = next(layer.name for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    out = excitation_backprop(view, x, class_index=2, saliency_layer="Conv1",
                              contrast_layer=pool, return_layers=layers)["layers"]
    total = {name: signal.reshape(len(x), -1).sum(axis=1) for name, signal in out.items()}
    np.testing.assert_allclose(total["out_relu"], 1.0, rtol=1e-5)
    for after, before in pairs:
        np.testing.assert_allclose(total[before], total[after], rtol=1e-5, err_msg=f"{after} -> {before}")
    assert np.all(total["Conv1"] > 0.9) and np.all(total["Conv1"] <= 1 + 1e-5), total["Conv1"]
    assert min(float(s.min()) for s in out.values()) >= -1e-7
