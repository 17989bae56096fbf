"""PCA component selection on a known spectrum, and reproducible openTSNE layouts."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import layouts as lo


def _known_spectrum_data() -> tuple[np.ndarray, np.ndarray]:
    """8 samples, 5 features, covariance eigenvalues exactly proportional to 50, 30, 12, 5, 3.

    Columns 1..5 of the 8×8 Sylvester–Hadamard matrix are zero-mean and mutually orthogonal; scaling
    them by sqrt(variance) and rotating the feature space leaves the spectrum as given.
    """
    h2 = np.array([[1, 1], [1, -1]])
    h8 = np.kron(np.kron(h2, h2), h2).astype(float)
    variances = np.array([50.0, 30.0, 12.0, 5.0, 3.0])
    x = h8[:, 1:6] * np.sqrt(variances)
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))
    return x @ q.T + 3.0, variances


def test_pca_fraction_picks_fewest_components_reaching_it():
    x, var = _known_spectrum_data()
    # cumulative explained variance: 0.50, 0.80, 0.92, 0.97, 1.00
    proj, k, cum = lo.pca(x, 0.9)
    assert k == 3
    np.testing.assert_allclose(cum, [0.5, 0.8, 0.92], rtol=0, atol=1e-12)
    assert proj.shape == (8, 3)
    # the projected coordinates carry the variances 50, 30, 12 (population variance, as constructed)
    np.testing.assert_allclose(proj.var(axis=0, ddof=0), var[:3], rtol=1e-10)
    assert lo.pca(x, 0.8)[1] == 2  # reaches exactly 80%: ">=" (sklearn's float mode would say 3)
    assert lo.pca(x, 0.95)[1] == 4
    assert lo.pca(x, 0.5)[1] == 1
    assert lo.pca(x, 0.49)[1] == 1


def test_pca_integer_clamps_and_preserves_distances():
    x, _ = _known_spectrum_data()
    proj, k, cum = lo.pca(x, 50)
    assert k == 5 and proj.shape == (8, 5)
    assert cum[-1] == pytest.approx(1.0)
    d_in = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d_out = np.linalg.norm(proj[:, None] - proj[None], axis=-1)
    np.testing.assert_allclose(d_out, d_in, rtol=0, atol=1e-10)
    a, _, _ = lo.pca(x, 2, seed=0)
    b, _, _ = lo.pca(x, 2, seed=7)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, 0.0, True, "50"])
def test_pca_rejects_bad_n_components(bad):
    x, _ = _known_spectrum_data()
    with pytest.raises(ValueError, match="n_components must be an int >= 1 or a float in"):
        lo.pca(x, bad)


def _blobs(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 10))
    x[y == 1, 0] += 12.0
    return x, y


def test_tsne_same_seed_identical_other_seed_different_and_separates_blobs():
    x, y = _blobs()
    a = lo.tsne_layout(x, seed=1)
    b = lo.tsne_layout(x, seed=1)
    c = lo.tsne_layout(x, seed=2)
    assert a.shape == (200, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    # two well-separated blobs stay apart: centroid distance exceeds the within-blob spread
    for emb in (a, c):
        c0, c1 = emb[y == 0].mean(axis=0), emb[y == 1].mean(axis=0)
        spread = max(emb[y == 0].std(axis=0).max(), emb[y == 1].std(axis=0).max())
        assert np.linalg.norm(c0 - c1) > 3 * spread


def test_tsne_small_input_clamps_perplexity_and_validates():
    x, _ = _blobs()
    emb = lo.tsne_layout(x[:10], seed=0)
    assert emb.shape == (10, 2) and np.all(np.isfinite(emb))
    with pytest.raises(ValueError, match="at least 4 samples"):
        lo.tsne_layout(x[:3])
    with pytest.raises(ValueError, match="perplexity"):
        lo.tsne_layout(x, perplexity=0)


def test_pca_tsne_pipeline():
    x, _ = _blobs(60)
    layout, k = lo.pca_tsne_layout(x, 0.9, seed=3)
    assert layout.shape == (60, 2)
    assert 1 <= k <= 10
    np.testing.assert_array_equal(layout, lo.pca_tsne_layout(x, 0.9, seed=3)[0])
