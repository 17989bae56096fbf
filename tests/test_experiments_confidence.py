"""Hand-computed checks of the confidence-gains experiment's helpers (seed 003 Table 1 layout, finding 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import confidence as cf
from evaluation.experiments import confidence_gains as cg


# ----------------------------------------------------------------------------------- masks
def test_method_masks_top_rho_and_pair_intersections():
    a = np.array([[[4.0, 3.0], [2.0, 1.0]]])  # top 50%: (0,0), (0,1)
    b = np.array([[[4.0, 1.0], [3.0, 2.0]]])  # top 50%: (0,0), (1,0)
    m = cg.method_masks({"occ 10": a, "grad 5": b}, 0.5, pairs=[("occ 10", "grad 5"), ("C-MWP", "grad 5")])
    assert list(m) == ["occ 10", "grad 5", "occ 10 ∩ grad 5"]  # C-MWP missing: no pair
    assert m["occ 10"][0].tolist() == [[True, True], [False, False]]
    assert m["grad 5"][0].tolist() == [[True, False], [True, False]]
    assert m["occ 10 ∩ grad 5"][0].tolist() == [[True, False], [False, False]]


def test_single_methods_and_perturbation_iterations():
    assert cg.perturbation_iterations((224, 224, 3)) == 300
    assert cg.perturbation_iterations((96, 96, 3)) == 100
    assert cg.perturbation_iterations(None) == 300
    specs = cg.single_methods((96, 96, 3), seed=7)
    assert [s.key for s in specs] == ["occ 10", "occ 50", "occ 100", "grad 0", "grad 2", "grad 5", "C-MWP", "Grad-CAM",
                                      "perturbation"]
    assert specs[-1].kwargs == {"iterations": 100, "seed": 7} and specs[-1].param == "100"
    assert specs[0].kwargs == {"patch_size_at_224": 10}
    assert specs[6].kwargs == {"contrastive": True}
    only = cg.single_methods((96, 96, 3), 0, available=["gradcam", "saliency"])
    assert [s.key for s in only] == ["grad 0", "grad 2", "grad 5", "Grad-CAM"]


# ----------------------------------------------------------------------------------- Table 1 layout
def test_table1_layout_columns_and_values():
    summ = {("occ 10", "gaussian", 0.05): {"scg": 10.0, "ccg": 200.0},
            ("occ 10", "zero", 0.25): {"scg": 30.0, "ccg": 90.0},
            ("occ 10 ∩ grad 5", "gaussian", 0.05): {"scg": 5.0, "ccg": 300.0}}
    t = cg.table1("t1", "T", summ, [("occ 10", "occ", "10"), ("occ 10 ∩ grad 5", "occ 10 ∩ grad 5", "")])
    assert t.columns == ["method", "param",
                         "G_k ρ=5% SCG", "G_k ρ=5% CCG", "G_k ρ=25% SCG", "G_k ρ=25% CCG",
                         "Z_k ρ=5% SCG", "Z_k ρ=5% CCG", "Z_k ρ=25% SCG", "Z_k ρ=25% CCG"]
    row = t.rows[0]
    assert row[:4] == ["occ", "10", 10.0, 200.0]
    assert all(math.isnan(v) for v in row[4:8])
    assert row[8:] == [30.0, 90.0]
    assert t.rows[1][:4] == ["occ 10 ∩ grad 5", "", 5.0, 300.0]


# ----------------------------------------------------------------------------------- finding 3
def _summ(values, n=4):
    """Every image with the same CCG: each bootstrap mean equals the value, so the intervals collapse."""
    return {(k, "gaussian", 0.25): {"ccg": v, "ccg_values": np.full(n, v)} for k, v in values.items()}


def test_finding3_cases_and_majority():
    s1 = _summ({"occ 10": 100.0, "grad 5": 150.0, "occ 10 ∩ grad 5": 160.0,   # holds: 160 > 150 > 100
                "C-MWP": 200.0, "C-MWP ∩ grad 5": 190.0})                     # fails: 190 < 200
    s2 = _summ({"occ 10": 100.0, "grad 5": np.nan, "occ 10 ∩ grad 5": 300.0,  # NaN: not evaluated
                "C-MWP": 100.0, "C-MWP ∩ grad 5": 151.0})                     # grad 5 is NaN -> None
    cases = cg.finding3_cases({"m1": s1, "m2": s2}, pairs=[("occ 10", "grad 5"), ("C-MWP", "grad 5")],
                              kernels=("gaussian",), rhos=(0.25,))
    got = [(c["model"], c["pair"], c["verdict"]) for c in cases]
    assert got == [("m1", "occ 10 ∩ grad 5", "holds"), ("m1", "C-MWP ∩ grad 5", "does not hold"),
                   ("m2", "occ 10 ∩ grad 5", None), ("m2", "C-MWP ∩ grad 5", None)]
    assert tuple(cases[0]["vs_a"]) == pytest.approx((60.0, 60.0, 60.0)) and tuple(cases[0]["vs_b"]) == pytest.approx((10.0, 10.0, 10.0))
    f = cg.finding3(cases, {"m1": "8×8"})
    assert f.verdict == "inconclusive"  # 1 holds, 1 does not: no strict majority
    assert "holds in 1, does not hold in 1, inconclusive in 0 of 2 cases" in f.evidence
    assert "2 cases not evaluated" in f.evidence and "grids: m1 8×8" in f.evidence
    assert "occ 10 ∩ grad 5: 1/1 hold (mean CCG×100 160.0 vs best single 150.0, mean difference +10.0)" in f.evidence
    s3 = _summ({"occ 10": 100.0, "grad 5": 150.0, "occ 10 ∩ grad 5": 151.0})
    cases3 = cg.finding3_cases({"m1": s1, "m3": s3}, pairs=[("occ 10", "grad 5"), ("C-MWP", "grad 5")],
                               kernels=("gaussian",), rhos=(0.25,))
    assert cg.finding3(cases3).verdict == "holds"  # 2 of 3
    assert cg.finding3([]).holds is None


def test_finding3_is_inconclusive_when_the_images_disagree():
    # per image the intersection beats a on two images and loses on two: the mean is higher (+5) but the
    # paired interval of four images spans 0; an excluded image (NaN) is left out of its own mean only
    pair = np.array([130.0, 130.0, 90.0, 90.0, np.nan])
    a = np.array([100.0, 100.0, 110.0, 110.0, 500.0])
    b = np.full(5, 10.0)
    summ = {(k, "gaussian", 0.25): {"ccg": float(np.nanmean(v)), "ccg_values": v}
            for k, v in (("occ 10", a), ("grad 5", b), ("occ 10 ∩ grad 5", pair))}
    (case,) = cg.finding3_cases({"m": summ}, pairs=[("occ 10", "grad 5")], kernels=("gaussian",), rhos=(0.25,))
    assert case["vs_a"].estimate == pytest.approx(110.0 - 184.0)  # nanmean(pair) − mean(a) over their own images
    assert case["vs_a"].low < 0 < case["vs_a"].high and case["vs_b"].low > 0
    assert case["verdict"] == "inconclusive"


# ----------------------------------------------------------------------------------- batched evaluation
def _toy_classifier(images):
    """Class 1 probability = mean brightness of the left half (channel 0); class 0 = the rest."""
    x = np.asarray(images, dtype=np.float64)
    w = x.shape[2]
    p1 = x[:, :, : w // 2, 0].mean(axis=(1, 2))
    return np.stack([1.0 - p1, p1], axis=1)


def test_evaluate_masks_equals_separate_calls_and_chunks():
    rng = np.random.default_rng(0)
    n, h, w = 3, 8, 8
    x = np.ones((n, h, w, 3), np.float32)
    x[1, :, :, :] = 0.9
    base = cf.zero_base(x)
    p_full = _toy_classifier(x)
    p_base = _toy_classifier(base)
    y = np.ones(n, dtype=np.int64)
    heat = {"a": rng.random((n, h, w)), "b": rng.random((n, h, w))}
    masks = cg.method_masks(heat, 0.05, pairs=[("a", "b")])
    calls = []

    def classify(imgs):
        calls.append(len(imgs))
        return _toy_classifier(imgs)

    res = cg.evaluate_masks(x, masks, y, classify, base, p_full, p_base)
    assert len(res.calls) == 1 and res.calls[0]["masks"] == 9
    for key, m in masks.items():
        r = cf.ccg(x, m, y, _toy_classifier, base, p_full, p_base)
        np.testing.assert_array_equal(res.ccg[key], r.ccg)
        np.testing.assert_array_equal(res.growths[key], r.growths)
        assert res.reasons[key] == r.excluded_reason
        expected = cf.scg_for_masks(x, m, y, _toy_classifier, base, p_full, p_base)
        expected[~m.reshape(n, -1).any(axis=1)] = np.nan  # empty intersections are left out of SCG too
        np.testing.assert_array_equal(res.scg[key], expected)
    # one SCG batch of 9, then one CCG batch per growth step with all pending rows (empty
    # intersections are never classified)
    empty = sum(r == "empty_mask" for key in masks for r in res.reasons[key])
    assert empty > 0  # the 5% masks of two random maps rarely overlap
    assert calls[0] == 9 - empty and calls[1] == 9 - empty
    assert res.calls[0]["classify calls"] == len(calls) - 1
    assert res.calls[0]["hybrids classified"] == sum(calls[1:])
    small = cg.evaluate_masks(x, masks, y, _toy_classifier, base, p_full, p_base, max_rows=6)
    assert [c["masks"] for c in small.calls] == [6, 3]
    for key in masks:
        np.testing.assert_array_equal(small.ccg[key], res.ccg[key])


def test_ccg_toy_hand_value():
    # 4x4 image, all ones; zero base; p1 = mean of the left 4x2 half. Mask: pixel (0,0) only.
    x = np.ones((1, 4, 4, 3), np.float32)
    base = cf.zero_base(x)
    m = np.zeros((1, 4, 4), bool)
    m[0, 0, 0] = True
    args = (x, {"m": m}, np.array([1]), _toy_classifier, base, _toy_classifier(x), _toy_classifier(base))
    res = cg.evaluate_masks(*args, dilate_first=True)
    # dilate once: 2x2 block in the left half -> p1 = 4/8 = 0.5: argmax ties go to class 0, not y; SCG = 0.5
    assert res.scg["m"][0] == pytest.approx(0.5)
    # grow once more: 3x3 block, left-half part 3x2 = 6 -> p1 = 0.75, classified as 1; area 9 of 16
    assert res.growths["m"][0] == 1
    assert res.ccg["m"][0] == pytest.approx(0.75 * 16 / 9)
    # the default starts from M itself (seed 003 Alg. 1): 1 px -> p1 = 1/8, SCG = 0.125; 2x2 -> 0.5 (tie, not y);
    # 3x3 -> 0.75: the same accurate mask after two growths
    res = cg.evaluate_masks(*args)
    assert res.scg["m"][0] == pytest.approx(0.125)
    assert res.growths["m"][0] == 2 and res.ccg["m"][0] == pytest.approx(0.75 * 16 / 9)


def test_growth_distribution_bins():
    assert cg.growth_bin_labels() == ["0", "1", "2–4", "5–9", "10–19", "20–50"]
    g = np.array([0, 0, 1, 4, 5, 19, 20, 50, 7, -1])
    used = np.array([True] * 9 + [False])
    assert cg.growth_counts(g, used) == [2, 1, 1, 2, 1, 2]
    assert sum(cg.growth_counts(g, used)) == 9


def test_exclusion_and_utilisation_rows():
    row = cg.exclusion_rows("occ 10", "gaussian", 0.05, np.array([0.5, np.nan, 0.2]), np.array([1.5, np.nan, np.nan]),
                            np.array([3, -1, 50]), [None, "not_confident", "over_max_growth"])
    assert row == ["occ 10", "G_k", "5%", 2, 1, 1, 1, 0, 0, 1, 0, 3.0]
    row = cg.exclusion_rows("g", "zero", 0.25, np.array([0.5, 0.4]), np.array([np.nan, 2.0]), np.array([-1, 1]),
                            ["base_is_y", None])
    assert row == ["g", "Z_k", "25%", 2, 0, 1, 0, 1, 0, 0, 0, 1.0]
    r = cf.CCGResult(ccg=np.array([1.0, np.nan, np.nan]), growths=np.array([2, -1, 4]), area=np.array([9, -1, 16]),
                     excluded_reason=[None, "not_confident", "over_max_growth"], forward_passes=5,
                     batch_sizes=[2, 2, 2, 1, 1])
    u = cg.utilisation_row(r, 3, 0.1, 0.2)
    assert u["classify calls"] == 5 and u["hybrids classified"] == 8
    assert u["mean batch"] == pytest.approx(1.6) and u["max batch"] == 2 and u["last batch"] == 1
    assert u["hybrids per mask (mean)"] == pytest.approx(8 / 3) and u["hybrids per mask (max)"] == 5
