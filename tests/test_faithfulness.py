"""Hand-computed checks of evaluation.faithfulness (deletion/insertion, RISE) and evaluation.sanity
(Spearman, SSIM, re-initialisation; Adebayo et al. 2018)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import faithfulness as fa
from evaluation import sanity as sa

# a 3x3 one-channel image; p(class 1) = mean of the pixels (sum 4.0 -> p = 4/9)
V = np.array([[0.9, 0.1, 0.2], [0.0, 1.0, 0.3], [0.5, 0.4, 0.6]])


def _mean_classify(batch):
    p1 = np.asarray(batch, np.float64).reshape(batch.shape[0], -1).mean(axis=1)
    return np.stack([1.0 - p1, p1], axis=1)


# ----------------------------------------------------------------------------------- deletion / insertion
def test_step_counts_and_auc_trapezoid():
    assert fa.step_counts(9, 3).tolist() == [0, 3, 6, 9]
    assert fa.step_counts(10, 4).tolist() == [0, 3, 5, 8, 10]  # 2.5 -> 3, 7.5 -> 8 (half up)
    assert fa.auc(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert fa.auc(np.array([[0.0, 1.0, 1.0]])).tolist() == [0.75]
    assert fa.auc(np.array([0.0, 1.0]), np.array([0.0, 0.5])) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        fa.step_counts(9, 0)


def test_deletion_insertion_3x3_hand_values():
    x = np.stack([V[..., None], V[..., None]]).astype(np.float32)  # two copies
    good = np.stack([V, -V])  # image 0: most salient = brightest pixels; image 1: the reverse order
    zeros = np.zeros_like(x)
    calls = []

    def classify(batch):
        calls.append(len(batch))
        return _mean_classify(batch)

    r = fa.deletion_insertion(x, good, np.array([1, 1]), classify, zeros, zeros, steps=3, batch_size=8)
    # image 0, 3 pixels per step, brightest first: 1.0 + 0.9 + 0.6 = 2.5, then 0.5 + 0.4 + 0.3 = 1.2, then 0.3
    np.testing.assert_allclose(r.deletion[0], np.array([4.0, 1.5, 0.3, 0.0]) / 9, atol=1e-7)
    np.testing.assert_allclose(r.insertion[0], np.array([0.0, 2.5, 3.7, 4.0]) / 9, atol=1e-7)
    # AUC = (1/3)·Σ trapezoids: deletion (2.75 + 0.9 + 0.15)/9/3 = 3.8/27, insertion 8.2/27
    assert r.deletion_auc[0] == pytest.approx(3.8 / 27, abs=1e-7)
    assert r.insertion_auc[0] == pytest.approx(8.2 / 27, abs=1e-7)
    # the reversed map is worse at both: its deletion AUC is the good map's insertion AUC and vice versa
    assert r.deletion_auc[1] == pytest.approx(8.2 / 27, abs=1e-7)
    assert r.insertion_auc[1] == pytest.approx(3.8 / 27, abs=1e-7)
    np.testing.assert_allclose(r.fractions, [0, 1 / 3, 2 / 3, 1])
    # 4 curves of 4 images, 2 curves (8 images) per call
    assert calls == [8, 8] and r.forward_passes == 2


def test_deletion_insertion_bases_and_ties():
    x = np.ones((1, 4, 4, 3), np.float32)
    blurred = np.full_like(x, 0.5)
    flat = np.zeros((1, 4, 4))  # all tied: the seeded random order decides, every step changes 4 pixels
    r = fa.deletion_insertion(x, flat, np.array([1]), _mean_classify, np.zeros_like(x), blurred, steps=4)
    np.testing.assert_allclose(r.deletion[0], [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-7)
    np.testing.assert_allclose(r.insertion[0], [0.5, 0.625, 0.75, 0.875, 1.0], atol=1e-7)
    order = fa.pixel_order(flat, seed=0)[0]
    assert sorted(order.tolist()) == list(range(16)) and order.tolist() != list(range(16))
    imgs = fa.perturbed_images(x[0], np.zeros_like(x[0]), order, np.array([0, 1]), "deletion")
    assert imgs[1].reshape(16, 3)[order[0]].tolist() == [0.0, 0.0, 0.0] and imgs[1].sum() == 45.0
    with pytest.raises(ValueError, match="mode must be one of 'deletion', 'insertion'; got 'both'"):
        fa.perturbed_images(x[0], x[0], order, np.array([0]), "both")
    with pytest.raises(ValueError, match=r"maps must have shape \(1, 4, 4\)"):
        fa.deletion_insertion(x, np.zeros((1, 3, 3)), np.array([1]), _mean_classify, x, x)


# ----------------------------------------------------------------------------------- Spearman / SSIM
def test_auc_summary_intervals_and_verdicts_against_random():
    # constant per-image AUCs: every bootstrap mean is the constant, so the interval collapses onto it
    s = fa.auc_summary(np.full(5, 0.3), np.full(5, 0.8), np.full(5, 0.5), np.full(5, 0.8), seed=1)
    assert tuple(s.deletion) == pytest.approx((0.3, 0.3, 0.3)) and tuple(s.insertion) == pytest.approx((0.8, 0.8, 0.8))
    assert tuple(s.deletion_vs_random) == pytest.approx((-0.2, -0.2, -0.2))
    assert s.beats_random_deletion == "holds"  # lower than random on every image
    assert tuple(s.insertion_vs_random) == pytest.approx((0.0, 0.0, 0.0))
    assert s.beats_random_insertion == "inconclusive"  # the interval touches 0
    worse = fa.auc_summary(np.full(4, 0.6), np.full(4, 0.7), np.full(4, 0.5), np.full(4, 0.8))
    assert worse.beats_random_deletion == "does not hold" and worse.beats_random_insertion == "does not hold"
    # two images with AUC 0 and 1: the bootstrap means are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles of 2000 draws are 0 and 1 and the estimate is 1/2
    two = fa.auc_summary(np.array([0.0, 1.0]), np.array([0.0, 1.0]), n_boot=2000, seed=0)
    assert tuple(two.deletion) == (0.5, 0.0, 1.0)
    assert np.isnan(two.deletion_vs_random.estimate) and two.beats_random_deletion == "inconclusive"
    # the pairing matters: a method 0.1 below random on each image, with images that differ a lot
    rnd = np.array([0.2, 0.9, 0.5, 0.7, 0.3])
    paired = fa.auc_summary(rnd - 0.1, rnd, rnd, rnd, seed=3)
    assert paired.deletion.low < rnd.mean() - 0.1 < paired.deletion.high and paired.deletion.high > rnd.mean() - 0.05
    assert tuple(paired.deletion_vs_random) == pytest.approx((-0.1, -0.1, -0.1)) and paired.beats_random_deletion == "holds"
    assert fa.auc_summary(rnd, rnd, seed=3).deletion == fa.auc_summary(rnd, rnd, seed=3).deletion  # seeded
    with pytest.raises(ValueError, match=r"deletion AUCs must have shape \(N,\); got shape \(2, 2\)"):
        fa.auc_summary(np.zeros((2, 2)), np.zeros(2))


def test_add_auc_rows_pairs_each_method_with_the_random_ordering():
    from evaluation.experiments.faithfulness import _auc_tables, add_auc_rows

    aucs, per_image, _ = _auc_tables()
    per_key = {"gradcam": {"deletion": np.array([0.1, 0.2, 0.3]), "insertion": np.array([0.9, 0.8, 0.9])},
               "random": {"deletion": np.array([0.5, 0.6, 0.5]), "insertion": np.array([0.7, 0.7, 0.6])}}
    add_auc_rows(aucs, per_image, "m", ["a", "b", "c"], per_key, seed=0)
    rows = {r["method"]: r for r in aucs.records()}
    g = rows["gradcam"]
    assert g["deletion AUC"] == pytest.approx(0.2) and g["deletion − random"] == pytest.approx(0.2 - 1.6 / 3)
    assert g["deletion beats random"] == "holds" and g["insertion beats random"] == "holds"
    assert g["deletion 95% low"] <= 0.2 <= g["deletion 95% high"]
    assert rows["random"]["deletion beats random"] == "–" and np.isnan(rows["random"]["deletion − random"])
    assert [(r[1], r[2], r[3]) for r in per_image.rows][:2] == [("gradcam", "a", 0.1), ("gradcam", "b", 0.2)]
    assert len(per_image.rows) == 6


def test_spearman_hand_values_and_ties():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    assert sa.spearman(a, np.array([[[1.0, 3.0], [2.0, 4.0]]]))[0] == pytest.approx(0.8)  # 1 − 6·2/(4·15)
    assert sa.spearman(a, a)[0] == pytest.approx(1.0)
    assert sa.spearman(a, -a)[0] == pytest.approx(-1.0)
    # ties get the average rank: [1.5, 1.5, 3, 4] vs [1, 2, 3, 4] -> 4.5 / sqrt(4.5·5)
    tied = np.array([[[1.0, 1.0], [2.0, 3.0]]])
    assert sa.spearman(tied, a)[0] == pytest.approx(4.5 / np.sqrt(22.5))
    assert np.isnan(sa.spearman(np.zeros((1, 2, 2)), a)[0])
    assert sa.rank_average(np.array([[3.0, 1.0, 3.0, 2.0]])).tolist() == [[3.5, 1.0, 3.5, 2.0]]


def test_ssim_identical_constant_and_single_window():
    rng = np.random.default_rng(0)
    m = rng.random((2, 12, 10))
    np.testing.assert_allclose(sa.ssim(m, m), 1.0, rtol=0, atol=1e-12)
    # constant maps c and d: (2cd + C1)/(c² + d² + C1), C1 = (0.01·1)²
    c1 = 1e-4
    assert sa.ssim(np.full((1, 8, 8), 0.5), np.zeros((1, 8, 8)))[0] == pytest.approx(c1 / (0.25 + c1))
    # a 7x7 map has one full window: the global formula with sample (ddof = 1) statistics
    a, b = rng.random((1, 7, 7)), rng.random((1, 7, 7))
    ux, uy = a.mean(), b.mean()
    vx, vy = a.var(ddof=1), b.var(ddof=1)
    vxy = ((a - ux) * (b - uy)).sum() / 48
    c2 = 9e-4
    want = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    assert sa.ssim(a, b)[0] == pytest.approx(want, rel=1e-10)
    assert sa.ssim(m, rng.random((2, 12, 10))).max() < 0.5
    with pytest.raises(ValueError, match="smaller than the 7×7 window"):
        sa.ssim(np.zeros((1, 5, 5)), np.zeros((1, 5, 5)))


def test_reinitialisation_values_and_top_down_groups():
    rng = np.random.default_rng(0)
    k = sa.reinitialized("block1_conv1/kernel:0", (3, 3, 8, 16), rng)
    limit = np.sqrt(6 / (9 * 8 + 9 * 16))
    assert k.dtype == np.float32 and np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit
    assert sa.reinitialized("bn/gamma:0", (4,), rng).tolist() == [1.0] * 4
    assert sa.reinitialized("fc/bias:0", (3,), rng).tolist() == [0.0] * 3
    names = ["c1/kernel:0", "c1/bias:0", "bn/gamma:0", "bn/beta:0", "bn/moving_mean:0", "bn/moving_variance:0",
             "dense/kernel:0"]
    assert sa.layer_groups(names) == [("dense", [6]), ("bn", [2, 3]), ("c1", [0, 1])]
