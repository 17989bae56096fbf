"""2-D layouts of explanation descriptors: PCA, then openTSNE (seed 000 §3.4, SPEC §3).

Seed 000 reduces the descriptors ``D_cam`` / ``D_short`` with PCA either to 50 components or to the
fewest components whose explained variance reaches 90% (its Table 1), then embeds them with t-SNE.
Both steps are reproducible for a seed: PCA uses the full (LAPACK) SVD with sklearn's deterministic
sign convention, and openTSNE is given ``random_state=seed`` (it seeds the jitter of its PCA
initialisation and its neighbour search) and ``n_jobs=1`` by default.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pca", "tsne_layout", "pca_tsne_layout"]

# Cumulative explained variance is compared with this slack so that a spectrum that reaches exactly
# 90% is not missed by float round-off (0.8999999999999999 >= 0.9).
_EV_TOL = 1e-9


def _as_data(X: np.ndarray, name: str = "X") -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_samples, n_features); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; found NaN or infinity")
    return arr


def pca(X: np.ndarray, n_components: int | float = 50, seed: int = 0) -> tuple[np.ndarray, int, np.ndarray]:
    """Project descriptors onto their principal components (seed 000 §3.4, Table 1).

    * ``n_components`` an int: that many components, clamped to ``min(n_samples, n_features)``
      ("PCA(50)").
    * ``n_components`` a float in (0, 1): the fewest ``k`` with ``Σ_{j<=k} λ_j / Σ_j λ_j >= n_components``
      ("PCA(90%)" with 0.9). Note: sklearn's own float mode selects "greater than" the fraction; this
      function uses "reaches" (>=), as the seed and SPEC say.

    Parameters
    ----------
    X : array (n_samples, n_features)
    n_components : int >= 1 or float in (0, 1), default 50
    seed : int, default 0
        Passed to sklearn (the full SVD solver is deterministic anyway).

    Returns
    -------
    projected : float64 array (n_samples, k)
    k : int
        Number of components kept.
    cumulative : float64 array (k,)
        Cumulative explained variance ratio of components 1..k.
    """
    from sklearn.decomposition import PCA

    x = _as_data(X)
    n, f = x.shape
    if n < 2:
        raise ValueError(f"PCA needs at least 2 samples; got {n}")
    max_k = min(n, f)
    if isinstance(n_components, bool):
        raise ValueError(f"n_components must be an int >= 1 or a float in (0, 1); got {n_components!r}")
    if isinstance(n_components, (int, np.integer)):
        if n_components < 1:
            raise ValueError(f"n_components must be an int >= 1 or a float in (0, 1); got {n_components!r}")
        want: int | None = min(int(n_components), max_k)
        frac = None
    elif isinstance(n_components, (float, np.floating)) and 0 < n_components < 1:
        want = None
        frac = float(n_components)
    else:
        raise ValueError(f"n_components must be an int >= 1 or a float in (0, 1); got {n_components!r}")

    model = PCA(n_components=max_k, svd_solver="full", random_state=seed)
    projected = model.fit_transform(x)
    ratio = model.explained_variance_ratio_
    cumulative = np.cumsum(ratio)
    if frac is not None:
        reached = np.flatnonzero(cumulative >= frac - _EV_TOL)
        k = int(reached[0]) + 1 if reached.size else max_k
    else:
        assert want is not None
        k = want
    return np.ascontiguousarray(projected[:, :k], dtype=np.float64), k, cumulative[:k].astype(np.float64)


def tsne_layout(
    X: np.ndarray,
    seed: int = 0,
    perplexity: float = 30.0,
    n_jobs: int = 1,
    verbose: bool = False,
) -> np.ndarray:
    """openTSNE 2-D embedding, reproducible for a seed (seed 000 §3.4).

    ``openTSNE.TSNE(n_components=2, perplexity=p, random_state=seed, n_jobs=n_jobs).fit(X)`` with
    openTSNE's defaults otherwise (PCA initialisation with a seeded jitter, exact neighbours below
    1000 points). The perplexity is clamped to ``(n − 1)/3`` so that small inputs work (openTSNE needs
    ``3·perplexity < n``); with ``n_jobs=1`` the result is bit-for-bit repeatable.

    Parameters
    ----------
    X : array (n_samples, n_features), n_samples >= 4
        Usually the PCA projection of the descriptors.
    seed : int
    perplexity : float > 0, default 30
    n_jobs : int, default 1
    verbose : bool, default False
        openTSNE's progress output.

    Returns
    -------
    float64 array (n_samples, 2)
    """
    import openTSNE

    x = _as_data(X)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 samples; got {n}")
    if isinstance(perplexity, bool) or not np.isscalar(perplexity) or not np.isfinite(perplexity) or perplexity <= 0:
        raise ValueError(f"perplexity must be a positive number (default 30); got {perplexity!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1 for reproducible results, -1 for all cores); got {n_jobs!r}")
    p = min(float(perplexity), (n - 1) / 3.0)
    tsne = openTSNE.TSNE(
        n_components=2,
        perplexity=p,
        random_state=int(seed),
        n_jobs=int(n_jobs),
        verbose=bool(verbose),
    )
    emb = tsne.fit(x)
    return np.array(emb, dtype=np.float64)


def pca_tsne_layout(
    X: np.ndarray, n_components: int | float = 50, seed: int = 0, perplexity: float = 30.0, n_jobs: int = 1
) -> tuple[np.ndarray, int]:
    """PCA (:func:`pca`) then t-SNE (:func:`tsne_layout`), the pipeline of seed 000 §3.4.

    Returns
    -------
    layout : float64 array (n_samples, 2)
    k : int, the number of PCA components used
    """
    projected, k, _ = pca(X, n_components, seed=seed)
    return tsne_layout(projected, seed=seed, perplexity=perplexity, n_jobs=n_jobs), k
