"""Hand-computed checks of evaluation.confidence: base images, hybrids, SCG and CCG (seed 003)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import confidence as cf


# ----------------------------------------------------------------------------------- Gaussian kernel
def test_gaussian_kernel_17_matches_closed_form_and_printed_digits():
    g = cf.gaussian_kernel_1d(17)
    sigma = 0.3 * ((17 - 1) * 0.5 - 1) + 0.8
    assert sigma == pytest.approx(2.9)
    closed = np.array([math.exp(-((i - 8) ** 2) / (2 * 2.9**2)) for i in range(17)])
    closed /= closed.sum()
    np.testing.assert_allclose(g, closed, rtol=0, atol=1e-15)
    # Σ_{i=-8..8} exp(-i²/16.82) = 7.2457898 (worked out term by term), so:
    assert g[8] == pytest.approx(0.1380112, abs=5e-8)  # 1 / 7.2457898
    assert g[7] == pytest.approx(0.1300451, abs=5e-8)  # exp(-1/16.82) / 7.2457898
    assert g[0] == pytest.approx(0.0030720, abs=5e-8)  # exp(-64/16.82) / 7.2457898
    assert g.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(g, g[::-1])


def test_gaussian_kernel_small_sizes_use_opencv_tables_and_explicit_sigma():
    np.testing.assert_array_equal(cf.gaussian_kernel_1d(3), [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(cf.gaussian_kernel_1d(5), np.array([1, 4, 6, 4, 1]) / 16)
    g = cf.gaussian_kernel_1d(3, sigma=1.0)
    e = math.exp(-0.5)
    np.testing.assert_allclose(g, [e / (1 + 2 * e), 1 / (1 + 2 * e), e / (1 + 2 * e)])
    with pytest.raises(ValueError, match="odd integer"):
        cf.gaussian_kernel_1d(4)


# ----------------------------------------------------------------------------------- base images
def test_blur_reflect_101_borders_on_a_tiny_row():
    # rows [1, 2, 3, 4]; reflect-101 padding by 2: [3, 2, | 1, 2, 3, 4, | 3, 2]
    img = np.tile(np.array([1.0, 2.0, 3.0, 4.0]), (4, 1)).reshape(1, 4, 4, 1)
    out = cf.blur_base(img, size=5)  # kernel [1, 4, 6, 4, 1] / 16
    # (3+8+6+8+3)/16, (2+4+12+12+4)/16, (1+8+18+16+3)/16, (2+12+24+12+2)/16
    expected_row = np.array([28, 34, 46, 52]) / 16
    assert out.dtype == np.float32
    for r in range(4):  # the columns are constant, so the vertical pass leaves them alone
        np.testing.assert_allclose(out[0, r, :, 0], expected_row, rtol=0, atol=1e-6)
    # 3-tap table [0.25, 0.5, 0.25], padded [2, | 1, 2, 3, 4, | 3]
    out3 = cf.blur_base(img, size=3)
    np.testing.assert_allclose(out3[0, 0, :, 0], [1.5, 2.0, 3.0, 3.5], rtol=0, atol=1e-6)


def _reflect101(p: int, n: int) -> int:
    """OpenCV borderInterpolate for BORDER_REFLECT_101, written out independently."""
    if n == 1:
        return 0
    while p < 0 or p >= n:
        p = -p if p < 0 else 2 * n - p - 2
    return p


def test_blur_17_on_an_image_smaller_than_the_kernel_matches_direct_sum():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(2, 5, 6, 3)).astype(np.uint8)
    out = cf.blur_base(img)  # 17x17, sigma 2.9: every border reflects more than once
    g = np.array([math.exp(-((i - 8) ** 2) / (2 * 2.9**2)) for i in range(17)])
    g /= g.sum()
    n, h, w, c = img.shape
    x = img.astype(np.float64)
    expected = np.zeros_like(x)
    for y in range(h):
        for xx in range(w):
            acc = np.zeros((n, c))
            for a in range(17):
                for b in range(17):
                    acc += g[a] * g[b] * x[:, _reflect101(y + a - 8, h), _reflect101(xx + b - 8, w), :]
            expected[:, y, xx, :] = acc
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-3)
    # a constant image stays constant
    np.testing.assert_allclose(cf.blur_base(np.full((1, 9, 9, 3), 7.0)), 7.0, rtol=0, atol=1e-5)


def test_zero_base_and_kernel_names():
    img = np.full((1, 2, 2, 3), 9, dtype=np.uint8)
    z = cf.base_images(img, "zero")
    assert z.dtype == np.float32 and z.shape == img.shape and not z.any()
    np.testing.assert_allclose(cf.base_images(img, "gaussian"), 9.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"kernel must be one of 'gaussian', 'zero'; got 'median'"):
        cf.base_images(img, "median")


def test_hybrid_hand_2x2():
    img = np.array([[[[1.0], [2.0]], [[3.0], [4.0]]]])
    base = np.array([[[[10.0], [20.0]], [[30.0], [40.0]]]])
    m = np.array([[[True, False], [False, True]]])
    np.testing.assert_array_equal(cf.hybrid(img, base, m)[0, :, :, 0], [[1.0, 20.0], [30.0, 4.0]])
    soft = np.array([[[0.5, 0.0], [1.0, 0.25]]])
    np.testing.assert_allclose(cf.hybrid(img, base, soft)[0, :, :, 0], [[5.5, 20.0], [3.0, 31.0]])
    # the full mask gives the image bit for bit
    np.testing.assert_array_equal(cf.hybrid(img, base, np.ones((1, 2, 2), bool)), img.astype(np.float32))


# ----------------------------------------------------------------------------------- SCG
def test_scg_hand_values_and_exclusions():
    p_full = np.array([0.9, 0.5, 0.4, 0.8, 0.7])
    p_hyb = np.array([0.7, 0.6, 0.5, 0.1, 0.2])
    p_base = np.array([0.1, 0.5, 0.6, 0.2, 0.2])
    s = cf.scg(p_full, p_hyb, p_base)
    assert s[0] == pytest.approx(0.6 / 0.8)  # (0.7 - 0.1) / (0.9 - 0.1)
    assert np.isnan(s[1])  # denominator 0
    assert np.isnan(s[2])  # denominator < 0
    assert np.isnan(s[3])  # negative gain
    assert s[4] == 0.0  # zero gain is kept
    assert cf.summarize(s) == {"mean_x100": pytest.approx(37.5), "n_used": 2, "n_excluded": 3}


def _sqrt_mean_classify(batch: np.ndarray) -> np.ndarray:
    """p(class 1) = sqrt(mean pixel value) for images in [0, 1]."""
    p1 = np.sqrt(batch.reshape(batch.shape[0], -1).mean(axis=1))
    return np.stack([1.0 - p1, p1], axis=1)


def test_scg_for_masks_dilates_once_before_blending():
    images = np.ones((1, 4, 4, 1))
    base = cf.zero_base(images)
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, 0, 0] = True
    labels = np.array([1])
    p_full, p_base = np.array([1.0]), np.array([0.0])
    # dilated once: a 2x2 corner block, 4 of 16 pixels -> p = sqrt(1/4) = 0.5
    s = cf.scg_for_masks(images, mask, labels, _sqrt_mean_classify, base, p_full, p_base, dilate_first=True)
    assert s[0] == pytest.approx(0.5)
    # not dilated (the default, seed 003 Alg. 1 starts from M): 1 of 16 -> p = 0.25
    s = cf.scg_for_masks(images, mask, labels, _sqrt_mean_classify, base, p_full, p_base)
    assert s[0] == pytest.approx(0.25)


def test_scg_of_the_full_mask_is_one():
    rng = np.random.default_rng(3)
    images = rng.random((3, 6, 6, 3)).astype(np.float32)
    base = cf.blur_base(images) * 0.5
    labels = np.array([1, 1, 1])
    p_full = _sqrt_mean_classify(images)
    p_base = _sqrt_mean_classify(base)
    s = cf.scg_for_masks(images, np.ones((3, 6, 6), bool), labels, _sqrt_mean_classify, base, p_full, p_base)
    np.testing.assert_allclose(s, 1.0, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------- CCG
def test_ccg_hand_5x5_growth_and_batching():
    images = np.ones((3, 5, 5, 1), dtype=np.float32)
    base = cf.zero_base(images)
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[0, 2, 2] = True  # dilated first: 3x3 = 9 px, p = sqrt(9/25) = 0.6 > 0.5 -> right at once
    masks[1, 0, 0] = True  # dilated first: 2x2 = 4 px, p = 0.4 -> wrong; one growth: 3x3 corner, 9 px
    masks[2] = True  # full mask
    labels = np.array([1, 1, 1])
    calls: list[int] = []

    def classify(batch):
        calls.append(batch.shape[0])
        assert batch.dtype == np.float32
        return _sqrt_mean_classify(batch)

    res = cf.ccg(images, masks, labels, classify, base, np.ones(3), np.zeros(3), dilate_first=True)
    # CCG = (0.6 - 0) * 25 / ((1 - 0) * 9) = 5/3 for the first two, 1 for the full mask
    # (the classifier averages in float32, hence the tolerance)
    np.testing.assert_allclose(res.ccg, [5 / 3, 5 / 3, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(res.growths, [0, 1, 0])
    np.testing.assert_array_equal(res.area, [9, 9, 25])
    assert res.excluded_reason == [None, None, None]
    assert res.batch_sizes == [3, 1] == calls  # all pending images in one batch per step
    assert res.forward_passes == 2
    np.testing.assert_allclose(res.p_accurate, [0.6, 0.6, 1.0], rtol=1e-6)

    # without the first dilation (the default) the centre pixel needs one growth (1 px -> p 0.2, then 9 px)
    res = cf.ccg(images[:1], masks[:1], labels[:1], classify, base[:1], np.ones(1), np.zeros(1))
    assert res.growths.tolist() == [1] and res.area.tolist() == [9]
    assert res.ccg[0] == pytest.approx(5 / 3)


def test_ccg_of_the_full_mask_is_one():
    rng = np.random.default_rng(4)
    images = rng.random((4, 7, 5, 3)).astype(np.float32)
    base = cf.blur_base(images) * 0.3
    labels = np.ones(4, dtype=int)
    p_full = _sqrt_mean_classify(images)
    p_base = _sqrt_mean_classify(base)
    assert (p_full[:, 1] > 0.5).all()
    res = cf.ccg(images, np.ones((4, 7, 5), bool), labels, _sqrt_mean_classify, base, p_full, p_base)
    np.testing.assert_allclose(res.ccg, 1.0, rtol=0, atol=1e-12)
    assert res.area.tolist() == [35] * 4 and res.forward_passes == 1


def _far_pixel_classify(target=(58, 3)):
    """Class 1 with p = 0.9 once the hybrid shows the image (1) at ``target``, else p(1) = 0.1."""

    def classify(batch):
        seen = batch[:, target[0], target[1], 0] > 0.5
        p1 = np.where(seen, 0.9, 0.1)
        return np.stack([1.0 - p1, p1], axis=1)

    return classify


def test_ccg_far_pixel_needs_more_than_50_growths_and_batches_shrink():
    n_img = 4
    images = np.ones((n_img, 64, 64, 1), dtype=np.float32)
    base = cf.zero_base(images)
    masks = np.zeros((n_img, 64, 64), dtype=bool)
    masks[0, 58, 3] = True  # covers the target at once
    masks[1, 48, 3] = True  # Chebyshev distance 10: radius 1 + g >= 10 -> g = 9
    masks[2, 7, 3] = True  # distance 51 -> g = 50: exactly the last growth allowed
    masks[3, 0, 0] = True  # distance 58 -> g = 57 > 50: left out
    labels = np.ones(n_img, dtype=int)
    p_full, p_base = np.full(n_img, 0.9), np.full(n_img, 0.1)
    res = cf.ccg(images, masks, labels, _far_pixel_classify(), base, p_full, p_base, dilate_first=True)
    assert res.excluded_reason == [None, None, None, "over_max_growth"]
    np.testing.assert_array_equal(res.growths, [0, 9, 50, 50])
    # areas: 3x3; rows 38..58 x cols 0..13 = 21*14; rows 0..58 x cols 0..54 = 59*55
    np.testing.assert_array_equal(res.area[:3], [9, 294, 3245])
    np.testing.assert_allclose(res.ccg[:3], [4096 / 9, 4096 / 294, 4096 / 3245], rtol=1e-12)
    assert np.isnan(res.ccg[3])
    assert res.batch_sizes == [4] + [3] * 9 + [2] * 41
    assert res.forward_passes == 51
    assert cf.summarize(res.ccg)["n_excluded"] == 1

    # with a larger budget the far mask is accepted after 57 growths: rows 0..58 x cols 0..58
    res = cf.ccg(images[3:], masks[3:], labels[3:], _far_pixel_classify(), base[3:], p_full[3:], p_base[3:], max_growth=60,
                 dilate_first=True)
    assert res.excluded_reason == [None]
    assert res.growths.tolist() == [57] and res.area.tolist() == [59 * 59]
    assert res.ccg[0] == pytest.approx(4096 / 3481)


def test_ccg_exclusions_not_confident_negative_gain_and_hopeless():
    images = np.ones((4, 5, 5, 1), dtype=np.float32)
    base = cf.zero_base(images)
    masks = np.zeros((4, 5, 5), dtype=bool)
    masks[:, 2, 2] = True
    labels = np.array([1, 1, 1, 0])

    def classify(batch):
        # full image: p(1) = 0.9; base (all zeros): 0.8; anything in between: 0.6
        m = batch.reshape(batch.shape[0], -1).mean(axis=1)
        p1 = np.where(m == 1.0, 0.9, np.where(m == 0.0, 0.8, 0.6))
        return np.stack([1.0 - p1, p1], axis=1)

    p_full = classify(images)  # (N, 2): gathered by label
    p_base = classify(base)
    # image 0: gain 0.6 - 0.8 < 0 -> negative_gain
    # image 1: p(I) == p(I_K) given explicitly -> not_confident, never classified
    # image 2: empty mask -> empty_mask, never classified
    # image 3: label 0: p(I) = 0.1 < p(I_K) = 0.2 -> not_confident
    masks[2] = False
    pf = p_full[np.arange(4), labels].copy()
    pb = p_base[np.arange(4), labels].copy()
    pf[1] = pb[1]
    res = cf.ccg(images, masks, labels, classify, base, pf, pb, dilate_first=True)
    assert res.excluded_reason == ["negative_gain", "not_confident", "empty_mask", "not_confident"]
    assert np.isnan(res.ccg).all()
    assert res.batch_sizes == [1]
    assert res.growths.tolist() == [0, -1, -1, -1]
    assert res.p_accurate[0] == pytest.approx(0.6)
    # (N, C) probabilities are accepted and gathered by label; they also show that image 0's base
    # image is classified as y (p(1) = 0.8), which leaves it out before any hybrid is classified
    res2 = cf.ccg(images[:1], masks[:1], labels[:1], classify, base[:1], p_full[:1], p_base[:1])
    assert res2.excluded_reason == ["base_is_y"] and res2.forward_passes == 0

    # a classifier that never says y: the full mask is reached and the image is left out early
    def never(batch):
        return np.tile([0.7, 0.3], (batch.shape[0], 1))

    res = cf.ccg(images[:1], masks[:1] | True, labels[:1], never, base[:1], np.array([0.9]), np.array([0.1]),
                 dilate_first=True)
    assert res.excluded_reason == ["over_max_growth"] and res.forward_passes == 1


def test_blur_kernel_scales_with_the_input_size():
    assert cf.blur_params(224) == (17, pytest.approx(2.9))
    size, sigma = cf.blur_params(96)  # r = round(8·96/224) = round(3.43) = 3
    assert size == 7 and sigma == pytest.approx(2.9 * 96 / 224)
    assert cf.blur_params(64)[0] == 5 and cf.blur_params(512)[0] == 37 and cf.blur_params(8)[0] == 3
    assert all(cf.blur_params(s)[0] % 2 == 1 for s in range(1, 600))
    with pytest.raises(ValueError, match="side must be an integer >= 1"):
        cf.blur_params(0)
    # base_images uses the scaled kernel: at 224 exactly the 17×17 σ = 2.9 blur, at 96 the 7×7 one
    rng = np.random.default_rng(5)
    img = rng.random((1, 224, 224, 1)).astype(np.float32)
    np.testing.assert_array_equal(cf.base_images(img, "gaussian"), cf.blur_base(img, 17))
    small = img[:, :96, :96]
    np.testing.assert_array_equal(cf.base_images(small, "gaussian"), cf.blur_base(small, 7, 2.9 * 96 / 224))
    # a 7-tap kernel: an impulse spreads over exactly 7 rows and columns
    imp = np.zeros((1, 96, 96, 1), np.float32)
    imp[0, 48, 48] = 1.0
    out = cf.base_images(imp, "gaussian")[0, :, :, 0]
    assert np.count_nonzero(out.any(axis=1)) == 7 and out.sum() == pytest.approx(1.0, rel=1e-5)


def test_ccg_leaves_out_and_counts_images_whose_base_is_classified_as_y():
    images = np.ones((3, 5, 5, 1), dtype=np.float32)
    base = cf.zero_base(images)
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[:, 2, 2] = True
    labels = np.array([1, 0, 1])
    calls: list[int] = []

    def classify(batch):
        # base (zeros) -> class 0 with p 0.6; the image and any hybrid -> class 1 with p 0.9
        calls.append(batch.shape[0])
        zero = batch.reshape(batch.shape[0], -1).max(axis=1) == 0
        p1 = np.where(zero, 0.4, 0.9)
        return np.stack([1.0 - p1, p1], axis=1)

    p_full, p_base = classify(images), classify(base)
    calls.clear()
    assert cf.base_classified_as_y(p_base, labels).tolist() == [False, True, False]
    res = cf.ccg(images, masks, labels, classify, base, p_full, p_base)
    # image 1: y = 0; p(I) = 0.1 < p(I_K) = 0.6: not_confident wins (checked first)
    assert res.excluded_reason == [None, "not_confident", None]
    # with y = 0 confident (p(I) > p(I_K)) the base's own class is y: left out, never classified
    pf = np.array([0.9, 0.9, 0.9])
    pb = np.array([0.4, 0.6, 0.4])
    res = cf.ccg(images, masks, labels, classify, base, pf, pb, base_is_y=np.array([False, True, False]))
    assert res.excluded_reason == [None, "base_is_y", None]
    assert np.isnan(res.ccg[1]) and res.growths[1] == -1
    # the two others: M is the single centre pixel (no first dilation): 0.5·25/(0.5·1) = 25
    np.testing.assert_allclose(res.ccg[[0, 2]], 25.0)
    assert res.batch_sizes == [2] and cf.summarize(res.ccg)["n_excluded"] == 1
    with pytest.raises(ValueError, match=r"base_is_y must be a bool array of shape \(3,\)"):
        cf.ccg(images, masks, labels, classify, base, pf, pb, base_is_y=np.array([1, 0, 0]))


def test_ccg_validates_parameters():
    images = np.ones((1, 3, 3, 1))
    base = cf.zero_base(images)
    m = np.ones((1, 3, 3), bool)
    with pytest.raises(ValueError, match="max_growth"):
        cf.ccg(images, m, np.array([1]), _sqrt_mean_classify, base, np.ones(1), np.zeros(1), max_growth=-1)
    with pytest.raises(ValueError, match=r"masks must have shape \(1, 3, 3\)"):
        cf.ccg(images, np.ones((1, 2, 2), bool), np.array([1]), _sqrt_mean_classify, base, np.ones(1), np.zeros(1))
    with pytest.raises(ValueError, match="label 5 is out of range"):
        cf.ccg(images, m, np.array([5]), _sqrt_mean_classify, base, np.ones(1), np.zeros(1))


def test_summarize_counts():
    assert cf.summarize(np.array([0.5, np.nan, 1.0])) == {"mean_x100": pytest.approx(75.0), "n_used": 2, "n_excluded": 1}
    out = cf.summarize(np.array([np.nan]))
    assert math.isnan(out["mean_x100"]) and out["n_used"] == 0 and out["n_excluded"] == 1
