"""Hand-computed checks of explain.masks (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explain import masks as mk


# ----------------------------------------------------------------------------------- normalize
def test_normalize_per_image_min_max_with_eps():
    maps = np.array(
        [
            [[0.0, 1.0], [2.0, 4.0]],
            [[1.0, 1.0], [1.0, 3.0]],
            [[7.0, 7.0], [7.0, 7.0]],
        ]
    )
    out = mk.normalize(maps)
    # image 0: min 0, max 4 -> L / (4 + 1e-7)
    np.testing.assert_allclose(out[0], np.array([[0, 1], [2, 4]]) / (4 + 1e-7), rtol=0, atol=1e-15)
    # image 1: min 1, max 3 -> (L - 1) / (2 + 1e-7), independent of image 0
    np.testing.assert_allclose(out[1], np.array([[0, 0], [0, 2]]) / (2 + 1e-7), rtol=0, atol=1e-15)
    # a constant map becomes all zeros (the eps avoids 0/0)
    assert np.all(out[2] == 0)
    assert out[0, 1, 1] < 1.0  # (max - min) / (max - min + eps)


def test_normalize_keeps_float32_and_rejects_nan():
    out = mk.normalize(np.array([[[0.0, 2.0]]], dtype=np.float32))
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="finite"):
        mk.normalize(np.array([[[0.0, np.nan]]]))
    with pytest.raises(ValueError, match="eps"):
        mk.normalize(np.zeros((1, 2, 2)), eps=-1.0)


# ----------------------------------------------------------------------------------- threshold
def test_threshold_keeps_exactly_pixels_at_or_above_theta():
    maps = np.array([[[0.49999, 0.5, 0.59999], [0.6, 0.7, 1.0], [0.0, 0.5000001, 0.3]]])
    np.testing.assert_array_equal(
        mk.threshold(maps, 0.5),
        [[[False, True, True], [True, True, True], [False, True, False]]],
    )
    np.testing.assert_array_equal(
        mk.threshold(maps, 0.6),
        [[[False, False, False], [True, True, True], [False, False, False]]],
    )
    assert mk.threshold(maps, 0.5).dtype == np.bool_


def test_threshold_rejects_bad_theta():
    with pytest.raises(ValueError, match="theta"):
        mk.threshold(np.zeros((1, 2, 2)), float("nan"))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        mk.threshold(np.zeros((2, 2)), 0.5)


# ----------------------------------------------------------------------------------- top_rho
def test_top_rho_hand_case_with_ties():
    maps = np.array(
        [
            [
                [3.0, 1.0, 3.0, 0.0],
                [1.0, 3.0, 2.0, 2.0],
                [0.0, 0.0, 5.0, 1.0],
                [2.0, 0.0, 0.0, 0.0],
            ]
        ]
    )
    # rho = 0.25 of 16 pixels = 4: the 5, then the three 3s (flat 0, 2, 5).
    np.testing.assert_array_equal(
        mk.top_rho(maps, 0.25)[0],
        [
            [True, False, True, False],
            [False, True, False, False],
            [False, False, True, False],
            [False, False, False, False],
        ],
    )
    # rho = 0.3 -> ceil(4.8) = 5: row-major ties: the first of the three 2s in flat order (flat 6) joins.
    expected = np.zeros(16, dtype=bool)
    expected[[10, 0, 2, 5, 6]] = True
    np.testing.assert_array_equal(mk.top_rho(maps, 0.3, tie_break="row_major")[0].ravel(), expected)
    # random ties (default): the one 2 whose rank in the seeded permutation is lowest joins
    ranks = mk.tie_break_ranks(16, seed=0)
    twos = np.array([6, 7, 12])
    expected[6] = False
    expected[twos[np.argmin(ranks[twos])]] = True
    np.testing.assert_array_equal(mk.top_rho(maps, 0.3)[0].ravel(), expected)
    # rho = 0.05 -> ceil(0.8) = 1: the single maximum.
    expected = np.zeros(16, dtype=bool)
    expected[10] = True
    np.testing.assert_array_equal(mk.top_rho(maps, 0.05)[0].ravel(), expected)


def test_top_rho_exact_count_all_ties_and_float_noise():
    flat = np.zeros((2, 4, 4))
    out = mk.top_rho(flat, 0.25, tie_break="row_major")
    # all values equal: the first four pixels in row-major order, in every image
    assert out.sum(axis=(1, 2)).tolist() == [4, 4]
    np.testing.assert_array_equal(out[0, 0], [True] * 4)
    assert not out[:, 1:].any()
    # 0.7 * 10 = 7.000000000000001 in floating point; still 7 pixels
    assert mk.top_rho(np.zeros((1, 1, 10)), 0.7).sum() == 7
    assert mk.top_rho(np.zeros((1, 224, 224)), 0.05).sum() == math.ceil(0.05 * 224 * 224) == 2509
    assert mk.top_rho(np.arange(9.0).reshape(1, 3, 3), 1.0).all()
    rng = np.random.default_rng(0)
    m = rng.integers(0, 3, size=(5, 7, 9)).astype(float)  # many ties
    for rho in (0.05, 0.25, 0.5, 0.99):
        got = mk.top_rho(m, rho)
        assert (got.sum(axis=(1, 2)) == math.ceil(rho * 63)).all()
        # every kept pixel is >= every dropped pixel
        for i in range(5):
            assert m[i][got[i]].min() >= m[i][~got[i]].max(initial=-np.inf)


def test_top_rho_plateau_is_not_concentrated_in_the_top_rows():
    # a 32x32 map with one 16x16 plateau in the middle: the top 5% (52 px) all lie on the plateau
    maps = np.zeros((2, 32, 32))
    maps[:, 8:24, 8:24] = 1.0
    old = mk.top_rho(maps, 0.05, tie_break="row_major")
    assert np.flatnonzero(old[0].any(axis=1)).tolist() == [8, 9, 10, 11]  # row-major fills the top rows
    new = mk.top_rho(maps, 0.05)
    assert new.sum(axis=(1, 2)).tolist() == [52, 52] and (new <= (maps > 0)).all()
    rows = np.nonzero(new[0])[0]
    # uniform over the plateau: about half the pixels in its lower half (rows 16..23), mean row near 15.5
    assert 16 <= int((rows >= 16).sum()) <= 36
    assert abs(rows.mean() - 15.5) < 2.0
    np.testing.assert_array_equal(new[0], new[1])  # the same map gives the same mask in any batch position
    np.testing.assert_array_equal(new, mk.top_rho(maps, 0.05, seed=0))  # deterministic for a seed
    assert not np.array_equal(new[0], mk.top_rho(maps[:1], 0.05, seed=1)[0])
    with pytest.raises(ValueError, match="tie_break must be one of 'random', 'row_major'; got 'left'"):
        mk.top_rho(maps, 0.05, tie_break="left")


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.5, float("nan")])
def test_top_rho_rejects_rho_outside_unit_interval(rho):
    with pytest.raises(ValueError, match=r"rho must be in \(0, 1\]"):
        mk.top_rho(np.zeros((1, 2, 2)), rho)


# ----------------------------------------------------------------------------------- dilation
def test_dilate_isolated_pixel_grows_to_3x3_then_5x5():
    m = np.zeros((1, 7, 7), dtype=bool)
    m[0, 3, 3] = True
    once = mk.dilate(m)
    twice = mk.dilate(m, iterations=2)
    expected_once = np.zeros((7, 7), dtype=bool)
    expected_once[2:5, 2:5] = True
    expected_twice = np.zeros((7, 7), dtype=bool)
    expected_twice[1:6, 1:6] = True
    np.testing.assert_array_equal(once[0], expected_once)
    np.testing.assert_array_equal(twice[0], expected_twice)
    np.testing.assert_array_equal(mk.dilate(once), twice)
    np.testing.assert_array_equal(mk.dilate(m, 0), m)
    assert m.sum() == 1  # input untouched


def test_dilate_zero_padding_at_border_and_batch_independence():
    m = np.zeros((2, 4, 4), dtype=bool)
    m[0, 0, 0] = True
    m[1, 3, 1] = True
    out = mk.dilate(m)
    np.testing.assert_array_equal(
        out[0].astype(int),
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(
        out[1].astype(int),
        [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]],
    )
    # 0/1 integers are accepted
    np.testing.assert_array_equal(mk.dilate(m.astype(np.uint8)), out)
    with pytest.raises(ValueError, match="binary"):
        mk.dilate(np.full((1, 2, 2), 2))
    with pytest.raises(ValueError, match="iterations"):
        mk.dilate(m, -1)


def test_dilate_heatmap_is_a_3x3_max_filter():
    h = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]])
    np.testing.assert_array_equal(
        mk.dilate_heatmap(h, 1)[0],
        [[1.0, 1.0, 0.0], [1.0, 5.0, 5.0], [0.0, 5.0, 5.0]],
    )
    np.testing.assert_array_equal(mk.dilate_heatmap(h, 2)[0], np.full((3, 3), 5.0))
    np.testing.assert_array_equal(mk.dilate_heatmap(h, 0), h)
    # negative values: the border is ignored, not padded with zeros
    neg = -np.arange(1.0, 10.0).reshape(1, 3, 3)
    np.testing.assert_array_equal(mk.dilate_heatmap(neg, 1)[0], [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])


# ----------------------------------------------------------------------------------- intersect
def test_intersect_two_and_three_masks():
    a = np.array([[[1, 1, 0], [1, 0, 0], [0, 0, 1]]], dtype=bool)
    b = np.array([[[1, 0, 0], [1, 1, 0], [0, 0, 1]]], dtype=bool)
    c = np.array([[[0, 0, 0], [1, 1, 1], [1, 1, 1]]], dtype=bool)
    np.testing.assert_array_equal(mk.intersect(a, b)[0].astype(int), [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(mk.intersect(a, b, c)[0].astype(int), [[0, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(mk.intersect(a), a)
    with pytest.raises(ValueError, match="at least one"):
        mk.intersect()
    with pytest.raises(ValueError, match=r"masks\[1\] has shape"):
        mk.intersect(a, np.zeros((1, 2, 2), dtype=bool))


# ----------------------------------------------------------------------------------- visual explanation
def test_visual_explanation_blacks_out_below_theta():
    images = np.arange(1, 13, dtype=np.uint8).reshape(1, 2, 2, 3)
    maps = np.array([[[0.2, 0.5], [0.6, 0.49]]])
    out = mk.visual_explanation(images, maps, 0.5)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 0, 1], [4, 5, 6])
    np.testing.assert_array_equal(out[0, 1, 0], [7, 8, 9])
    np.testing.assert_array_equal(out[0, 1, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="expected"):
        mk.visual_explanation(images, np.zeros((1, 3, 3)), 0.5)
