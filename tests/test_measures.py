"""Hand-computed checks of evaluation.measures (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import measures as ms


# ----------------------------------------------------------------------------------- average residual
def test_average_residual_hand_3x3():
    a = np.array([[[0.0, 0.5, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    b = np.array([[[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]])
    # |a - b| = [[0, .5, 1], [0, .5, 1], [0, 0, 1]], sum 4, over 9 pixels
    np.testing.assert_allclose(ms.average_residual(a, b), [4 / 9], rtol=0, atol=1e-15)
    np.testing.assert_allclose(ms.average_residual(b, a), [4 / 9], rtol=0, atol=1e-15)


def test_average_residual_bounds_and_batch():
    ones = np.ones((1, 3, 3))
    half = np.zeros((1, 3, 3))
    half[0, 0] = 1.0
    a = np.concatenate([ones, ones, half])
    b = np.concatenate([ones, 1.0 - ones, 1.0 - half])
    np.testing.assert_allclose(ms.average_residual(a, b), [0.0, 1.0, 1.0])


def test_average_residual_validates():
    with pytest.raises(ValueError, match="resize both"):
        ms.average_residual(np.zeros((1, 3, 3)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"normalised to \[0, 1\]"):
        ms.average_residual(np.full((1, 2, 2), 2.0), np.zeros((1, 2, 2)))


# ----------------------------------------------------------------------------------- resize
def test_resize_2x2_to_4x4_half_pixel_bilinear():
    x = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    # sample positions (i + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25 (clamped to 0 and 1)
    expected = np.array(
        [
            [0.0, 0.25, 0.75, 1.0],
            [0.5, 0.75, 1.25, 1.5],
            [1.5, 1.75, 2.25, 2.5],
            [2.0, 2.25, 2.75, 3.0],
        ]
    )
    np.testing.assert_allclose(ms.resize_maps(x, (4, 4))[0], expected, rtol=0, atol=1e-12)


def test_resize_downsampling_has_no_antialias_and_identity():
    row = np.arange(6.0).reshape(1, 1, 6)
    # 6 -> 2: positions (i + 0.5) * 3 - 0.5 = 1.0, 4.0: exact pixels, no averaging
    np.testing.assert_allclose(ms.resize_maps(row, (1, 2))[0], [[1.0, 4.0]])
    # 4 -> 2: positions 0.5, 2.5: the mean of pixel pairs
    np.testing.assert_allclose(ms.resize_maps(np.arange(4.0).reshape(1, 1, 4), (1, 2))[0], [[0.5, 2.5]])
    x = np.random.default_rng(0).random((2, 5, 3))
    np.testing.assert_allclose(ms.resize_maps(x, (5, 3)), x, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="size"):
        ms.resize_maps(x, (0, 3))


# ----------------------------------------------------------------------------------- descriptors
def test_descriptor_cam_flattens_row_major():
    cam = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    np.testing.assert_array_equal(ms.descriptor_cam(cam), [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_descriptor_short_hand_2x2_two_channels():
    L = np.array([[[1.0, 2.0], [0.0, 3.0]]])
    A = np.zeros((1, 2, 2, 2))
    A[0, :, :, 0] = [[1.0, 0.0], [2.0, 1.0]]
    A[0, :, :, 1] = [[3.0, 1.0], [1.0, 0.0]]
    # Σ_k L∘A_k = L ∘ [[4, 1], [3, 1]] = [[4, 2], [0, 3]]
    np.testing.assert_array_equal(ms.descriptor_short(L, A), [[4.0, 2.0, 0.0, 3.0]])
    with pytest.raises(ValueError, match="activations"):
        ms.descriptor_short(L, np.zeros((1, 3, 2, 2)))


# ----------------------------------------------------------------------------------- R_pc
def test_object_pixels_in_masks_hand_3x3():
    labels = np.array([[[0, 0, 1], [1, 2, 2], [2, 2, 2]]])
    mask = np.array([[[1, 0, 1], [0, 1, 0], [0, 0, 1]]], dtype=bool)
    inside, total = ms.object_pixels_in_masks(mask, labels, num_objects=4)
    np.testing.assert_array_equal(total, [[2, 2, 5, 0]])
    np.testing.assert_array_equal(inside, [[1, 1, 2, 0]])
    with pytest.raises(ValueError, match="label 4 is out of range"):
        ms.object_pixels_in_masks(mask, labels + 2, num_objects=4)


def test_object_ratios_pool_pixels_over_images_of_a_class():
    inside = np.array([[1, 1, 2, 0], [2, 0, 1, 0], [0, 3, 0, 0]])
    total = np.array([[2, 2, 5, 0], [8, 0, 1, 0], [1, 3, 0, 0]])
    classes = np.array([0, 0, 1])
    r = ms.object_ratios(inside, total, classes, num_classes=2)
    # class 0: (1+2)/(2+8) = 0.3 (not the mean of ratios 0.375), 1/2, (2+1)/(5+1) = 0.5, never seen
    # class 1: 0/1, 3/3, never seen, never seen
    np.testing.assert_allclose(r[0, :3], [0.3, 0.5, 0.5])
    np.testing.assert_allclose(r[1, :2], [0.0, 1.0])
    assert np.isnan(r[0, 3]) and np.isnan(r[1, 2]) and np.isnan(r[1, 3])
    with pytest.raises(ValueError, match="must not exceed"):
        ms.object_ratios(total, inside, classes, 2)
    with pytest.raises(ValueError, match="label 2 is out of range"):
        ms.object_ratios(inside, total, np.array([0, 2, 1]), 2)


def test_mean_pixels_and_selection_threshold_scaling():
    inside = np.array([[1, 1, 2, 0], [2, 0, 1, 0], [0, 3, 0, 0]])
    mp = ms.mean_pixels_per_object(inside, np.array([0, 0, 1]), num_classes=3)
    np.testing.assert_allclose(mp[0], [1.5, 0.5, 1.5, 0.0])
    np.testing.assert_allclose(mp[1], [0.0, 3.0, 0.0, 0.0])
    assert np.isnan(mp[2]).all()  # a class without images

    means = np.array([[100.0, 100.5, 25.0, 25.01, 6.25, 6.26, np.nan]])
    # at 224x224 the limit is 100 (strictly more)
    np.testing.assert_array_equal(
        ms.selected_objects(means, 224 * 224)[0], [False, True, False, False, False, False, False]
    )
    # at 112x112 the area is a quarter: limit 25
    np.testing.assert_array_equal(
        ms.selected_objects(means, 112 * 112)[0], [True, True, False, True, False, False, False]
    )
    # at 56x56: limit 6.25
    np.testing.assert_array_equal(
        ms.selected_objects(means, 56 * 56)[0], [True, True, True, True, False, True, False]
    )
    with pytest.raises(ValueError, match="image_area"):
        ms.selected_objects(means, 0)


# ----------------------------------------------------------------------------------- annotation agreement
COUNTS = np.array(
    [
        [50, 30, 20, 0],  # top 0, runner-up 1, (50+30)/100 = 0.8
        [0, 10, 0, 90],  # top 3, runner-up 1, ratio 1.0
        [5, 5, 5, 5],  # all tied: top 0, runner-up 1, ratio 0.5
        [0, 0, 7, 0],  # a single object: never a second label
        [0, 0, 0, 0],  # empty explanation
    ]
)
ANNOTATED = [(0,), (1, 3), (1,), (2, 5), (4,)]


def test_top_labels_second_label_only_when_ratio_strictly_exceeds_t():
    assert ms.top_labels(COUNTS, 0.5) == [(0, 1), (3, 1), (0,), (2,), ()]
    assert ms.top_labels(COUNTS, 0.45) == [(0, 1), (3, 1), (0, 1), (2,), ()]
    assert ms.top_labels(COUNTS, 0.75) == [(0, 1), (3, 1), (0,), (2,), ()]
    assert ms.top_labels(COUNTS, 0.8) == [(0,), (3, 1), (0,), (2,), ()]
    assert ms.top_labels(COUNTS, 1.0) == [(0,), (3,), (0,), (2,), ()]


def test_top_labels_from_label_maps_counts_inside_the_explanation():
    labels = np.array([[[0, 0, 1], [1, 2, 2], [2, 2, 2]]])
    mask = np.array([[[1, 0, 1], [0, 1, 1], [0, 1, 1]]], dtype=bool)
    # inside: object 0: 1, object 1: 1, object 2: 4 -> top 2, runner-up 0 (tie with 1, lower index)
    # ratio (4 + 1) / 6 = 0.833
    assert ms.top_labels(labels, 0.8, masks=mask) == [(2, 0)]
    assert ms.top_labels(labels, 0.85, masks=mask) == [(2,)]
    # without masks the whole map counts: 2, 2, 5 -> (5+2)/9 = 0.78
    assert ms.top_labels(labels, 0.7) == [(2, 0)]
    assert ms.top_labels(labels, 0.8) == [(2,)]


def test_annotation_agreement_strict_and_lenient_hand():
    selected = [(0, 1), (3, 1), (0,), (2,), ()]
    # strict (subset): no, yes, no, yes, no -> 2/5; lenient (any): yes, yes, no, yes, no -> 3/5
    assert ms.annotation_agreement(selected, ANNOTATED) == pytest.approx((0.4, 0.6))
    # exact set equality: only image 1 -> 1/5
    assert ms.annotation_agreement(selected, ANNOTATED, strict_mode="exact") == pytest.approx((0.2, 0.6))
    with pytest.raises(ValueError, match="must match"):
        ms.annotation_agreement(selected[:2], ANNOTATED)
    with pytest.raises(ValueError, match="strict_mode"):
        ms.annotation_agreement(selected, ANNOTATED, strict_mode="any")


def test_agreement_curve_hand():
    curve = ms.agreement_curve(COUNTS, ANNOTATED, thresholds=[0.5, 0.8, 1.0])
    np.testing.assert_allclose(curve["threshold"], [0.5, 0.8, 1.0])
    # t = 0.5: as above (0.4, 0.6)
    # t = 0.8: [(0,), (3, 1), (0,), (2,), ()] -> strict 3/5, lenient 3/5
    # t = 1.0: [(0,), (3,), (0,), (2,), ()] -> strict 3/5, lenient 3/5
    np.testing.assert_allclose(curve["strict"], [0.4, 0.6, 0.6])
    np.testing.assert_allclose(curve["lenient"], [0.6, 0.6, 0.6])
    default = ms.agreement_curve(COUNTS, ANNOTATED)
    assert default["threshold"].shape == (11,)
    np.testing.assert_allclose(default["threshold"][[0, 6, 10]], [0.5, 0.8, 1.0])
    # strict accuracy never falls and lenient never rises as t grows (seed 000 Figs. 11, 12)
    assert np.all(np.diff(default["strict"]) >= 0) and np.all(np.diff(default["lenient"]) <= 0)


# ----------------------------------------------------------------------------------- localisation
def test_pointing_game_mass_and_area_share():
    maps = np.array(
        [
            [[1.0, 2.0], [3.0, 4.0]],
            [[9.0, 0.0], [0.0, 9.0]],  # tie: first maximum in row-major order (0, 0)
            [[0.0, 0.0], [0.0, 0.0]],
        ]
    )
    targets = np.array(
        [
            [[1, 0], [0, 1]],
            [[0, 0], [0, 1]],
            [[1, 1], [0, 0]],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(ms.pointing_game(maps, targets), [True, False, True])
    share = ms.mass_share(maps, targets)
    np.testing.assert_allclose(share[:2], [5 / 10, 9 / 18])
    assert np.isnan(share[2])
    np.testing.assert_allclose(ms.area_share(targets), [0.5, 0.25, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        ms.mass_share(-maps - 1, targets)


def test_pointing_game_tolerance_plateau_centre_and_chance():
    # a flat 7x11 plateau points to its centre (5, 9), not to its first pixel (2, 4)
    plateau = np.zeros((1, 20, 20))
    plateau[0, 2:9, 4:15] = 1.0
    np.testing.assert_array_equal(ms.peak_points(plateau), [[2, 4]])
    np.testing.assert_array_equal(ms.peak_points(plateau, "plateau_centre"), [[5, 9]])
    single = plateau * 0.1
    single[0, 3, 13] = 1.0  # a single maximum wins whatever the rule
    np.testing.assert_array_equal(ms.peak_points(single, "plateau_centre"), [[3, 13]])
    # the target pixel (5, 12) is 3 px from the plateau centre: a hit at tolerance 3, not 2.9
    target = np.zeros((1, 20, 20), bool)
    target[0, 5, 12] = True
    assert ms.pointing_game(plateau, target, 3.0, peak="plateau_centre").tolist() == [True]
    assert ms.pointing_game(plateau, target, 2.9, peak="plateau_centre").tolist() == [False]
    # the first pixel (2, 4) is sqrt(3² + 8²) = 8.544 px from the target
    assert ms.pointing_game(plateau, target, 8.5).tolist() == [False]
    assert ms.pointing_game(plateau, target, 8.6).tolist() == [True]
    assert ms.pointing_game(plateau, np.zeros_like(target), 50.0).tolist() == [False]  # no target: no hit
    # chance: the share of pixels within the tolerance; one pixel with radius 1 covers a 5-pixel cross
    one = np.zeros((1, 10, 10), bool)
    one[0, 5, 5] = True
    assert ms.pointing_chance(one, 1.0) == pytest.approx(5 / 100)
    assert ms.pointing_chance(one) == pytest.approx(1 / 100)
    assert ms.pointing_chance(np.zeros((1, 10, 10), bool), 3.0) == 0.0
    with pytest.raises(ValueError, match="peak 'max' is not one of"):
        ms.peak_points(plateau, "max")
    with pytest.raises(ValueError, match="tolerance -1 must be"):
        ms.pointing_game(plateau, target, -1)
