"""Enrichment, seeded bootstrap intervals and the restated findings 2 and 4: hand-computed cases."""

from __future__ import annotations

import math

import re

import numpy as np
import pytest

from evaluation import findings as fd
from evaluation.intervals import Interval, bootstrap_ci, compare_intervals, enrichment, paired_bootstrap_ci
from evaluation.report import Finding


def test_enrichment_hand_computed():
    # a perfect map on an object covering 9% of the image: 1 / 0.09; a uniform map: 1
    assert enrichment(1.0, 0.09) == pytest.approx(1 / 0.09)
    assert enrichment(0.09, 0.09) == pytest.approx(1.0)
    got = enrichment(np.array([0.5, 0.2, 0.3]), np.array([0.25, 0.4, 0.0]))
    assert got[:2] == pytest.approx([2.0, 0.5]) and math.isnan(got[2])  # zero area: undefined
    with pytest.raises(ValueError, match=r"mass_share must lie in \[0, 1\]; got 1.5"):
        enrichment(1.5, 0.5)
    with pytest.raises(ValueError, match="area_share"):
        enrichment(0.5, -0.1)


def test_bootstrap_of_two_values_covers_both_ends():
    # resampled means of (0, 1) are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5 and 97.5
    # percentiles of 2000 draws are 0 and 1, the estimate is the plain mean 0.5
    iv = bootstrap_ci(np.array([0.0, 1.0]), n_boot=2000, seed=3)
    assert iv == Interval(0.5, 0.0, 1.0)
    # with alpha = 0.6 the 30th and 70th percentiles both fall on the middle value 0.5
    assert bootstrap_ci(np.array([0.0, 1.0]), n_boot=2000, seed=3, alpha=0.6)[1:] == (0.5, 0.5)


def test_bootstrap_is_seeded_and_constant_data_has_no_width():
    v = np.random.default_rng(0).normal(size=30)
    assert bootstrap_ci(v, seed=7) == bootstrap_ci(v, seed=7)
    assert bootstrap_ci(v, seed=7) != bootstrap_ci(v, seed=8)
    lo, hi = bootstrap_ci(v, seed=7)[1:]
    assert lo < v.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * v.std() / np.sqrt(30), rel=0.25)
    assert bootstrap_ci(np.full(5, 2.5)) == Interval(2.5, 2.5, 2.5)
    assert all(math.isnan(x) for x in bootstrap_ci(np.zeros(0)))
    with pytest.raises(ValueError, match="alpha must lie in"):
        bootstrap_ci(v, alpha=1.0)
    with pytest.raises(ValueError, match="n_boot must be a positive integer; got 0"):
        bootstrap_ci(v, n_boot=0)


def test_bootstrap_keeps_the_columns_of_a_row_together():
    # ratio of sums: rows (2, 4) and (1, 2) both have ratio 1/2, so every resample gives exactly 0.5
    rows = np.array([[2.0, 4.0], [1.0, 2.0]])
    assert bootstrap_ci(rows, lambda r: r[:, 0].sum() / r[:, 1].sum(), n_boot=200) == Interval(0.5, 0.5, 0.5)


def test_paired_bootstrap_removes_the_shared_variation():
    a = np.random.default_rng(1).normal(size=20) * 10
    iv = paired_bootstrap_ci(a + 3.0, a, n_boot=500, seed=0)
    assert iv == pytest.approx((3.0, 3.0, 3.0))  # each resample differs by exactly 3
    with pytest.raises(ValueError, match=r"same number of rows; got shapes \(20,\) and \(3,\)"):
        paired_bootstrap_ci(a, a[:3])


def test_compare_intervals_three_states():
    assert compare_intervals(Interval(2, 1.5, 2.5), Interval(1, 0.5, 1.4)) == "holds"
    assert compare_intervals(Interval(1, 0.5, 1.4), Interval(2, 1.5, 2.5)) == "does not hold"
    assert compare_intervals(Interval(2, 1.0, 2.5), Interval(1, 0.5, 1.4)) == "inconclusive"
    assert compare_intervals(Interval(2, float("nan"), 2.5), Interval(1, 0.5, 1.4)) == "inconclusive"


def test_finding_verdicts_and_unknown_state():
    assert Finding.from_verdict("t", "inconclusive", "e").verdict == "inconclusive"
    assert Finding.from_verdict("t", "holds", "e").holds is True
    assert Finding.from_verdict("t", None, "e").verdict == "not evaluated"
    assert Finding("t", False, "e").verdict == "does not hold"  # saved sections without the new field
    with pytest.raises(ValueError, match="unknown verdict 'maybe'"):
        Finding.from_verdict("t", "maybe", "e")


def test_r_pc_enrichment_hand_computed():
    # object in 2 images: 3 of 4 and 1 of 4 pixels inside -> R_pc 0.5; the explanations cover 0.2 and
    # 0.3 of their images -> mean 0.25; enrichment 0.5 / 0.25 = 2
    iv = fd.r_pc_enrichment_ci(np.array([3, 1]), np.array([4, 4]), np.array([0.2, 0.3]), n_boot=500, seed=0)
    assert iv.estimate == pytest.approx(2.0)
    # resamples: both rows of image 0 -> 0.75/0.2 = 3.75; both of image 1 -> 0.25/0.3 = 0.833
    assert iv.low == pytest.approx(0.25 / 0.3) and iv.high == pytest.approx(3.75)


def test_top_cues_and_finding2_cases_hand_computed():
    delta = np.array([[0.5, 0.1, 0.0], [0.3, 0.2, 0.9], [0.0, 0.0, 0.4]])
    present = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 1]], bool)
    labels = np.array([0, 0, 1])
    cues = fd.top_cues(delta, present, labels, ["earth", "fence", "tower"], {0: ["earth", "fence"], 1: ["tower"]})
    assert cues == {0: ("earth", pytest.approx(0.4)), 1: ("tower", pytest.approx(0.4))}
    # objects: 1 sky, 2 road, 3 earth; 4 images of class 0, 10 pixels each, explanation covers 0.3
    names = {1: "sky", 2: "road", 3: "earth"}
    total = np.zeros((4, 4)); total[:, 1] = 4; total[:, 2] = 4; total[:, 3] = 2
    inside = np.zeros((4, 4)); inside[:, 3] = [2, 2, 2, 1]; inside[:, 1] = [1, 0, 1, 0]; inside[:, 2] = [0, 0, 0, 0]
    share = np.full(4, 0.3)
    cases = fd.finding2_enrichment_cases("m", "4×4", inside, total, share, np.zeros(4, int), ["ca"], names,
                                         {0: 3}, [1, 2], n_boot=500, seed=0)
    (c,) = cases
    # earth: R_pc 7/8 / 0.3 = 2.917; sky: 2/16 / 0.3 = 0.417; road 0
    assert c["cue"] == "earth" and c["cue_ci"].estimate == pytest.approx(0.875 / 0.3)
    assert c["background"]["sky"].estimate == pytest.approx(0.125 / 0.3) and c["background"]["road"].high == 0.0
    assert c["verdict"] == "holds"  # earth's lowest resample (0.75 / 0.3) > sky's highest (0.25 / 0.3)
    f = fd.finding2_enrichment(cases, 0.5, "test cues")
    assert f.verdict == "holds" and "m (grid 4×4)/ca: earth 2.92 [" in f.evidence and "test cues" in f.evidence
    # road absent from one image: not a background object of the class; no background -> not evaluated
    total[0, 1] = total[0, 2] = 0
    c2 = fd.finding2_enrichment_cases("m", "4×4", inside, total, share, np.zeros(4, int), ["ca"], names,
                                      {0: 3}, [1, 2], n_boot=50)[0]
    assert c2["background"] == {} and c2["verdict"] is None
    assert fd.finding2_enrichment([c2], 0.5, "x").verdict == "not evaluated"


def test_overall_verdict_majorities():
    assert fd.overall_verdict(["holds", "holds", "inconclusive", None]) == "holds"
    assert fd.overall_verdict(["holds", "does not hold"]) == "inconclusive"
    assert fd.overall_verdict(["does not hold", "does not hold", "holds"]) == "does not hold"
    assert fd.overall_verdict([None]) is None


def test_landmark_enrichment_findings_hand_computed():
    per_pair = {"e_max": np.array([3.0, 3.0, 3.0]), "e_avg": np.array([0.9, 1.1, 1.0, 5.0])}
    per_query = {"e_max": np.array([3.0, 3.0, np.nan]), "e_avg": np.array([3.0, 1.0, 1.0])}
    f4a, f4b = fd.landmark_enrichment_findings(per_pair, per_query, {"e_max": "max", "e_avg": "avg"},
                                               {"e_max": "4×4", "e_avg": "4×4"}, n_boot=500, seed=0)
    # the unit is the query: e_max's two queries are both 3 (no width); e_avg's three (3, 1, 1) resample
    # to all-ones with probability (2/3)^3 = 0.30, so the 2.5th percentile is 1.00 and the interval touches 1
    # (the 97.5th lies between the means 2.33 and 3, of probabilities 0.22 and 0.04)
    assert "e_max (max pooling, grid 4×4): enrichment 3.00 [3.00, 3.00] over 2 query images (3 pairs)" in f4a.evidence
    m = re.search(r"e_avg \(avg pooling, grid 4×4\): enrichment 1\.67 \[1\.00, ([0-9.]+)\] over 3 query images \(4 pairs\), "
                  r"inconclusive", f4a.evidence)
    assert f4a.verdict == "inconclusive" and m and 2.33 <= float(m.group(1)) <= 3.0
    # paired over the 2 queries with both: differences (0, 2); resampled means 0, 1, 2 w.p. 1/4, 1/2, 1/4
    assert f4b.verdict == "inconclusive" and "paired over 2 query images" in f4b.evidence and "1.00 [0.00, 2.00]" in f4b.evidence
    f = fd.landmark_enrichment_findings({"e_max": np.array([3.0, 3.0])}, {"e_max": np.array([3.0, 3.0])},
                                        {"e_max": "max"}, {}, n_boot=50)
    assert f[0].verdict == "holds" and f[1].verdict == "not evaluated"
    none = fd.landmark_enrichment_findings({"e_max": np.array([3.0])}, {"e_max": np.array([np.nan])}, {"e_max": "max"}, {})
    assert none[0].verdict == "not evaluated"


def _residual_pairs(arch: list[float], init1: list[float], init2: list[float]) -> dict:
    return {("a", "b", "architectures"): np.array(arch), ("a", "a_retrained", "initialisations"): np.array(init1),
            ("b", "b_retrained", "initialisations"): np.array(init2)}


def test_finding1_residual_interval_hand_computed():
    grids = {"a": "4×4", "b": "8×8", "a_retrained": "4×4", "b_retrained": "8×8"}
    # 3 images: architecture AR (0.5, 0.625, 0.75); the retrained pairs average 0.25 on every image,
    # so the per-image differences are (0.25, 0.375, 0.5): mean 0.375, and with 3 images each
    # extreme resample (all one image) has probability 1/27 > 2.5%, so the interval is [0.25, 0.5]
    f = fd.residual_finding_ci(_residual_pairs([0.5, 0.625, 0.75], [0.125, 0.25, 0.375], [0.375, 0.25, 0.125]),
                               grids, n_boot=2000, seed=0)
    assert f.verdict == "holds"
    assert "grids: a 4×4, b 8×8, a_retrained 4×4, b_retrained 8×8" in f.evidence
    assert "over 3 images" in f.evidence and "0.625 [0.500, 0.750] vs the 2 retrained pairs 0.250 [0.250, 0.250]" in f.evidence
    assert "difference paired over images 0.375 [0.250, 0.500]: holds" in f.evidence
    # closest pairs: a-b [0.5, 0.75] vs a-a_retrained [0.125, 0.375] (the first of the two tied at 0.25)
    assert "closest pairs a-b 0.625 [0.500, 0.750] vs a-a_retrained 0.250 [0.125, 0.375]: holds" in f.evidence
    # differences (-0.125, 0.125, 0.375): interval [-0.125, 0.375] contains 0
    f = fd.residual_finding_ci(_residual_pairs([0.25, 0.5, 0.75], [0.375] * 3, [0.375] * 3), grids, seed=0)
    assert f.verdict == "inconclusive" and "0.125 [-0.125, 0.375]: inconclusive" in f.evidence
    # retrained copies further apart than the architectures: the interval lies below 0
    f = fd.residual_finding_ci(_residual_pairs([0.125, 0.25, 0.375], [0.5, 0.625, 0.75], [0.75, 0.625, 0.5]), {},
                               seed=0)
    assert f.verdict == "does not hold" and "-0.375 [-0.500, -0.250]" in f.evidence and "grids: a ?, b ?" in f.evidence
    assert fd.residual_finding_ci({("a", "b", "architectures"): np.ones(3)}, grids).verdict == "not evaluated"
    with pytest.raises(ValueError, match=r"same images; got shapes \[\(2,\), \(3,\)\]"):
        fd.residual_finding_ci(_residual_pairs([0.5, 0.5, 0.5], [0.1, 0.1], [0.1, 0.1, 0.1]), grids)


def test_vectorised_mean_draws_equal_the_loop():
    """(nan)mean statistics are reduced over all draws at once; a wrapped statistic takes the loop:
    the same draws must give the same intervals, NaN rows and all-NaN draws included."""
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 12, 40):
        a, b = rng.normal(size=n), rng.normal(size=n)
        a[rng.random(n) < 0.3] = np.nan
        for stat in (np.nanmean, np.mean):
            looped = lambda x, stat=stat: stat(x)  # noqa: E731 - not the function itself: the loop
            np.testing.assert_array_equal(bootstrap_ci(a, stat, seed=n), bootstrap_ci(a, looped, seed=n))
            np.testing.assert_array_equal(paired_bootstrap_ci(a, b, stat, seed=n),
                                          paired_bootstrap_ci(a, b, looped, seed=n))
