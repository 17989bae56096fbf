"""The iterative base (explain/iterative.py): batching, cancellation, progress and normalisation.

Every iterative method gives the same maps whatever its batch size (pairs are streamed across
image boundaries), never sends a backend more than ``batch_size`` images, and stops with
:class:`~explain.backend.Cancelled` as soon as ``should_continue()`` returns False. Tiny
hand-built models (a few units wide), so the file runs in seconds.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from explain import masks  # noqa: E402
from explain.ablationcam import ablationcam  # noqa: E402
from explain.backend import Cancelled, KerasBackend  # noqa: E402
from explain.iterative import IterativeMethod, PairwiseMethod  # noqa: E402
from explain.occlusion import occlusion  # noqa: E402
from explain.perturbation import perturbation_mask  # noqa: E402
from explain.rise import rise  # noqa: E402
from explain.scorecam import scorecam  # noqa: E402
from explain.view import ExplainError, ModelView  # noqa: E402

SIZE = 16
L = keras.layers


class CountingBackend(KerasBackend):
    """A real in-process backend that records the size of every batch it is sent."""

    def __init__(self, view: ModelView) -> None:
        super().__init__(view)
        self.sizes: list[int] = []

    def predict(self, images):
        self.sizes.append(len(images))
        return super().predict(images)

    def features(self, images):
        self.sizes.append(len(images))
        return super().features(images)

    def ablated_logits(self, images, channel_mask):
        self.sizes.append(len(images))
        return super().ablated_logits(images, channel_mask)


@pytest.fixture(scope="module")
def backend() -> CountingBackend:
    """Channel 0 of 'conv' measures saturated red, channel 1 saturated green (fixed weights);
    class 0 = red, 1 = green, 2 = neither, so every method has something to find."""
    inp = keras.Input((SIZE, SIZE, 3))
    conv = L.Conv2D(2, 1, strides=2, activation="relu", name="conv")  # target layer at 8×8
    dense = L.Dense(3, activation="softmax", name="predictions")
    model = keras.Model(inp, dense(L.GlobalAveragePooling2D()(conv(inp))))
    conv.set_weights([np.array([[1, -0.5], [-0.5, 1], [-0.5, -0.5]], np.float32).reshape(1, 1, 3, 2),
                      np.array([-0.3, -0.3], np.float32)])
    dense.set_weights([np.array([[300.0, 0.0, -100.0], [0.0, 300.0, -100.0]], np.float32), np.zeros(3, np.float32)])
    return CountingBackend(ModelView(model, target_layer="conv"))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Grey images with a red and a green 3×3 square at seeded places."""
    rng = np.random.default_rng(5)
    x = np.full((3, SIZE, SIZE, 3), 0.5, np.float32)
    for i in range(3):
        for colour in ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)):
            r, c = rng.integers(0, SIZE - 3, size=2)
            x[i, r:r + 3, c:c + 3] = colour
    return x


METHODS = {
    "occlusion": lambda be, x, **kw: occlusion(be, x, None, patch_size_at_224=60, stride=2, **kw),
    "rise": lambda be, x, **kw: rise(be, x, None, n_masks=20, grid=3, seed=1, **kw),
    "scorecam": lambda be, x, **kw: scorecam(be, x, [0, 1, 2], **kw),
    "ablationcam": lambda be, x, **kw: ablationcam(be, x, -1, **kw),
    "perturbation_mask": lambda be, x, **kw: perturbation_mask(be, x, iterations=6, mask_scale=4,
                                                                  blur_sigma=40.0, **kw),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_batch_size_one_and_n_give_the_same_maps(backend, images, name):
    backend.sizes.clear()
    one = METHODS[name](backend, images, batch_size=1)
    assert set(backend.sizes) == {1}
    backend.sizes.clear()
    many = METHODS[name](backend, images, batch_size=4)
    # pairs are streamed across images (full batches of 4); perturbation_mask batches the 3 images
    assert max(backend.sizes) == (3 if name == "perturbation_mask" else 4)
    assert one.keys() == many.keys()
    for key in ("heatmap", "raw", "class_index", "probabilities"):
        np.testing.assert_allclose(many[key], one[key], rtol=0, atol=1e-6, err_msg=f"{name} {key}")
    assert one["heatmap"].shape == images.shape[:3]  # every method: the heat map at input size
    if "heatmap_lowres" not in one:  # the CAM family normalises at the target layer, then resizes
        np.testing.assert_allclose(one["heatmap"], masks.normalize(np.asarray(one["raw"], np.float64)), atol=1e-6)
    assert np.ptp(one["heatmap"]) > 0.5  # a real map, not a constant


@pytest.mark.parametrize("name", sorted(METHODS))
def test_should_continue_false_stops_before_the_next_batch(backend, images, name):
    calls: list[int] = []

    def should_continue() -> bool:
        calls.append(1)
        return len(calls) < 3

    kwargs = {"check_every": 1} if name == "perturbation_mask" else {}
    backend.sizes.clear()
    with pytest.raises(Cancelled, match=name):
        METHODS[name](backend, images, batch_size=2, should_continue=should_continue, **kwargs)
    # two checks before the two reference batches (2 + 1 images), the third one stops the method
    # before its first perturbed batch (perturbation_mask: before its second Adam step)
    assert len(calls) == 3
    assert backend.sizes == [2, 1]  # nothing reached the backend after the False


class PixelMean(PairwiseMethod):
    """A toy method on the base: pair ``(i, j)`` scores ``j`` plus image ``i``'s probability of
    its class; the map of image ``i`` is the sum of its pair scores, spread over the pixels."""

    name = "pixel_mean"
    unit = "pairs"

    def __init__(self, backend, per_image: int, **kwargs) -> None:
        super().__init__(backend, **kwargs)
        self.per_image = per_image
        self.seen: list[tuple[int, int]] = []

    def compute(self, images, classes):
        self.images, self.classes = images, classes
        self.total = np.zeros(images.shape[:3])
        self.stream(len(images), self.per_image)
        return self.total

    def on_pairs(self, sl, image_index, item_index):
        probs = self.backend.predict(self.images[image_index])
        for b, (i, j) in enumerate(zip(image_index, item_index)):
            self.seen.append((int(i), int(j)))
            self.total[i] += j + probs[b, self.classes[i]]


def test_pairs_cross_image_boundaries_in_full_batches(backend, images):
    backend.sizes.clear()
    method = PixelMean(backend, per_image=5, batch_size=4)
    out = method.explain(images)
    # 3 reference images in batches of 4, then 15 pairs in batches of 4 (the last one 3)
    assert backend.sizes == [3, 4, 4, 4, 3]
    assert method.seen == [(i, j) for i in range(3) for j in range(5)]  # each pair once, in order
    p = backend.predict(images)
    expected = 10 + 5 * p[np.arange(3), np.argmax(p, axis=1)]  # Σ_j j + 5·p_c
    np.testing.assert_allclose(out["raw"][:, 0, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(out["class_index"], np.argmax(p, axis=1))
    assert np.all(out["heatmap"] == 0)  # a constant map normalises to zeros


def test_cancellation_message_names_the_method_and_the_progress(backend, images):
    answers = iter([True, True, True])  # reference pass (1 batch), then two chunks of pairs
    method = PixelMean(backend, per_image=5, batch_size=4, should_continue=lambda: next(answers, False))
    with pytest.raises(Cancelled, match=r"pixel_mean cancelled after 8 of 15 pairs"):
        method.explain(images)
    assert len(method.seen) == 8


def test_progress_bar_gives_the_same_result(backend, images):
    pytest.importorskip("tqdm")
    a = PixelMean(backend, per_image=2, batch_size=3, progress=True).explain(images)
    b = PixelMean(backend, per_image=2, batch_size=3).explain(images)
    np.testing.assert_array_equal(a["raw"], b["raw"])


def test_base_checks_and_normalisation(backend, images):
    with pytest.raises(ExplainError, match="batch_size 0 must be an integer >= 1"):
        PixelMean(backend, per_image=1, batch_size=0)
    with pytest.raises(ExplainError, match="class_index 3 is out of range"):
        PixelMean(backend, per_image=1).explain(images, class_index=3)
    with pytest.raises(ExplainError, match="model accepts"):
        PixelMean(backend, per_image=1).explain(images[:, :8])
    raw = np.random.default_rng(0).normal(size=(2, 4, 5))
    np.testing.assert_array_equal(IterativeMethod.normalize(raw), masks.normalize(raw))
    assert IterativeMethod.normalize(np.zeros((0, 4, 5))).shape == (0, 4, 5)
    with pytest.raises(NotImplementedError):
        IterativeMethod(backend).explain(images)


def test_one_output_shape_for_both_dialects(backend, images):
    """A single-pass signature's outputs (heatmap at the target layer + heatmap_upsampled) and an
    iterative method's (heatmap at input size + heatmap_lowres) become the same Explanation."""
    from explain.cam import gradcam
    from explain.result import as_explanation

    signature_like = {k: np.asarray(v) for k, v in gradcam(backend.view, images, 0).items()}
    a = as_explanation(signature_like, {"class_index": 0})
    b = as_explanation(scorecam(backend, images, 0))
    c = as_explanation(occlusion(backend, images, 0, patch_size_at_224=60))
    for e in (a, b, c):
        assert e.heatmap.shape == images.shape[:3] and e.heatmap.dtype == np.float32
        np.testing.assert_array_equal(e.class_index, [0, 0, 0])
    np.testing.assert_array_equal(a.heatmap, signature_like["heatmap_upsampled"])
    np.testing.assert_array_equal(a.heatmap_lowres, signature_like["heatmap"])
    assert a.heatmap_lowres.shape == b.heatmap_lowres.shape == (3, SIZE // 2, SIZE // 2)
    assert c.heatmap_lowres is None and "eq1" in c.extras and "heatmap" not in c.extras
    assert a.params == {"class_index": 0} and b.probabilities.shape == (3, 3)
    with pytest.raises(ValueError, match="must include 'heatmap'"):
        as_explanation({"raw": np.zeros((1, 2, 2))})
