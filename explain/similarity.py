"""Similarity maps for embedding networks (seed 002, Stylianou, Souvenir & Pless 2019).

An embedding network ends ``conv body → global pool → (optional linear projection P) → L2``.
With ``A`` the target-layer activations ``(h, w, K)`` of one image, ``β = pool(A)`` ``(K,)``,
the embedding ``e = β P`` (``e = β`` without projection; ``P`` is the ``(K, D)`` kernel of a
bias-free Dense) and the cosine similarity of two images ``i, j``

    s = e⁽ⁱ⁾ · e⁽ʲ⁾ / (‖e⁽ⁱ⁾‖ ‖e⁽ʲ⁾‖)                                  (seed 002 eq. 1)

is decomposed spatially. Every location ``(x, y)`` gets a *contribution vector* ``c_xy`` ``(D,)``
with ``Σ_xy c_xy = e`` exactly:

* average pooling (seed 002 eqs. 2–3): ``c_xy = A_xy P / (h·w)``;
* max pooling (seed 002 eqs. 4–6): the surrogate ``Â_xyk = β_k / n_k`` where ``A_xyk = β_k``
  (exact floating-point equality, ``n_k`` locations tie for the maximum), else 0; then
  ``c_xy = Â_xy P``.

The projection is applied per location (``P`` is linear and bias-free, so
``Σ_xy (c_xy P) = (Σ_xy c_xy) P``); the decomposition stays exact. The similarity map of image
``i`` with respect to ``j`` is then

    map_i(x, y) = c⁽ⁱ⁾_xy · e⁽ʲ⁾ / (‖e⁽ⁱ⁾‖ ‖e⁽ʲ⁾‖),        Σ_xy map_i(x, y) = s,

and symmetrically for ``j`` w.r.t. ``i`` (both directions are returned). A final L2
normalisation (``UnitNormalization``) does not change ``s`` and is ignored; ``β`` is computed from
``A`` with the view's pooling (the pool layer must consume the target layer's output directly).

Display maps (``*_upsampled``) are the raw maps normalised per example,
``(L − min L) / (max L − min L + 1e-7)``, then resized bilinearly (``tf.image.resize``,
half-pixel centres) to the input size and re-clipped to ``[0, 1]``. The raw maps are the ones
that sum to ``s``; maps can be negative where ``c_xy · e⁽ʲ⁾ < 0`` (possible with a projection).

Also here (seed 002 §4.1, §4.5, §4.6):

* :func:`topk_component_share` — Fig. 3: the share of ``s`` carried by the ``k`` largest
  per-dimension products ``e⁽ⁱ⁾_d e⁽ʲ⁾_d / (‖e⁽ⁱ⁾‖ ‖e⁽ʲ⁾‖)``;
* :func:`class_similarity_map` — the sum of an image's pairwise maps against the other images
  of its class;
* :func:`region_retrieval` — rank a database by the part of the query's similarity map that
  falls inside a query region.

Entry points: the single-pass registry method ``similarity_map`` (:func:`similarity_map`, graph
compatible, exported as a SavedModel signature) and the eager helpers :func:`similarity_maps`,
:func:`embed`, :func:`class_similarity_map`, :func:`region_retrieval`,
:func:`topk_component_share` (numpy out, database passes batched).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from explain.cam import compiled, get_view
from explain.registry import Method, register
from explain.resize import normalize_tf, upsample
from explain.checks import check_batch_size, check_image_tensor
from explain.view import ExplainError, ModelView

__all__ = [
    "similarity_map",
    "similarity_maps",
    "embed",
    "class_similarity_map",
    "region_retrieval",
    "topk_component_share",
    "decompose",
]

_EPS_NORM = 1e-12


def _display(maps: tf.Tensor, size: Any) -> tf.Tensor:
    """Display map of raw maps ``(N, h, w)``: normalised per example, bilinear to ``size``
    (half-pixel centres), clipped to ``[0, 1]`` (:mod:`explain.resize`)."""
    return upsample(normalize_tf(maps), size, clip=True)


# ---------------------------------------------------------------------------- the decomposition
def _require_embedding_view(view: ModelView) -> None:
    if view.pooling not in ("avg", "max"):
        raise ExplainError(
            f"similarity maps need a global 'avg' or 'max' pooling after the target layer; model "
            f"{view.model.name!r} has pooling {view.pooling!r} (accepted: ['avg', 'max'])"
        )


def decompose(view: ModelView, activations: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-location contribution vectors and the embedding they sum to.

    Args:
        view: A view with ``pooling`` ``'avg'`` or ``'max'`` (and optionally a projection).
        activations: ``A`` ``(N, h, w, K)`` float32 at the target layer.

    Returns:
        ``(contrib (N, h, w, D), embedding (N, D))`` with ``Σ_xy contrib = embedding`` (up to
        float rounding); ``D = K`` without a projection. ``embedding`` is ``pool(A) P``, not
        L2-normalised.
    """
    _require_embedding_view(view)
    a = tf.convert_to_tensor(activations, tf.float32)
    if view.pooling == "avg":
        shape = tf.shape(a)
        hw = tf.cast(shape[1] * shape[2], tf.float32)
        beta = tf.reduce_mean(a, axis=[1, 2])
        contrib = a / hw  # seed 002 eq. 3: α_xy / K²
    else:
        beta = tf.reduce_max(a, axis=[1, 2])
        ties = tf.equal(a, beta[:, None, None, :])  # exact equality (seed 002 eq. 5)
        n = tf.reduce_sum(tf.cast(ties, tf.float32), axis=[1, 2])  # n_k ≥ 1 always
        contrib = tf.where(ties, (beta / n)[:, None, None, :], tf.zeros_like(a))
    kernel = view.projection_kernel
    if kernel is not None:
        p = tf.cast(kernel, tf.float32)
        contrib = tf.einsum("nxyk,kd->nxyd", contrib, p)  # P applied per location
        beta = tf.matmul(beta, p)
    return contrib, beta


def _norm(e: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(e), axis=-1), _EPS_NORM * _EPS_NORM))


def _pair_maps(contrib_q, emb_q, contrib_r, emb_r):
    """Maps of ``q`` w.r.t. ``r`` and of ``r`` w.r.t. ``q``, and ``s`` (all pairwise, same N)."""
    nq = _norm(emb_q)
    nr = _norm(emb_r)
    unit_q = emb_q / nq[:, None]
    unit_r = emb_r / nr[:, None]
    q_map = tf.einsum("nxyd,nd->nxy", contrib_q, unit_r) / nq[:, None, None]
    r_map = tf.einsum("nxyd,nd->nxy", contrib_r, unit_q) / nr[:, None, None]
    sim = tf.reduce_sum(unit_q * unit_r, axis=-1)
    return q_map, r_map, sim


def _topk_share_tf(emb_i: tf.Tensor, emb_j: tf.Tensor) -> tf.Tensor:
    """``(N, D)``: share of ``s`` carried by the ``k`` largest products, ``k = 1..D``."""
    prod = (emb_i / _norm(emb_i)[:, None]) * (emb_j / _norm(emb_j)[:, None])
    ordered = tf.sort(prod, axis=-1, direction="DESCENDING")
    cum = tf.cumsum(ordered, axis=-1)
    return tf.math.divide_no_nan(cum, cum[:, -1:])


def _as_float_images(images: tf.Tensor) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 255.0
    return tf.cast(images, tf.float32)


# ---------------------------------------------------------------------------- single pass
def similarity_map(
    view: ModelView,
    images: tf.Tensor | None = None,
    query_images: tf.Tensor | None = None,
    reference_images: tf.Tensor | None = None,
) -> dict[str, tf.Tensor]:
    """Pairwise similarity maps: the i-th query against the i-th reference (graph compatible).

    Args:
        view: An embedding view (``pooling`` ``'avg'`` or ``'max'``, optional projection).
        images: Optional; used as the queries when ``query_images`` is not given.
        query_images, reference_images: ``(N, H, W, 3)`` — uint8 (scaled by 1/255 here; the
            exported signature declares them uint8 ``[None, None, None, 3]``) or float in
            ``[0, 1]``. Both batches have the same ``N``.

    Returns:
        ``query_map`` ``(N, h, w)`` raw map of the query w.r.t. the reference (sums to
        ``similarity``), ``reference_map`` ``(N, h, w)`` (the other direction, also sums to
        ``similarity``), ``similarity`` ``(N,)`` cosine similarity, ``query_map_upsampled`` and
        ``reference_map_upsampled`` ``(N, H, W)`` normalised display maps, ``topk_share``
        ``(N, D)``: the share of ``s`` carried by the ``k = 1..D`` largest component products.
    """
    _require_embedding_view(view)
    if query_images is None:
        query_images = images
    if query_images is None or reference_images is None:
        raise ExplainError("similarity_map needs both query_images and reference_images (N, H, W, 3)")
    q = _as_float_images(query_images)
    r = _as_float_images(reference_images)
    q = tf.ensure_shape(q, [None, *view.input_shape])
    r = tf.ensure_shape(r, [None, *view.input_shape])
    tf.debugging.assert_equal(
        tf.shape(q)[0], tf.shape(r)[0],
        message="query_images and reference_images must have the same batch size",
    )
    n = tf.shape(q)[0]
    acts = view.run(tf.concat([q, r], axis=0)).activations
    contrib, emb = decompose(view, acts)
    q_map, r_map, sim = _pair_maps(contrib[:n], emb[:n], contrib[n:], emb[n:])
    size = tf.shape(q)[1:3]
    return {
        "query_map": q_map,
        "reference_map": r_map,
        "similarity": sim,
        "query_map_upsampled": _display(q_map, size),
        "reference_map_upsampled": _display(r_map, size),
        "topk_share": _topk_share_tf(emb[:n], emb[n:]),
    }


# ---------------------------------------------------------------------------- eager helpers
def _view(model_or_view: Any) -> ModelView:
    view = get_view(model_or_view)
    _require_embedding_view(view)
    return view


def _compiled(view: ModelView) -> dict[str, Any]:
    """The eager helpers' compiled functions, cached on the view (see :func:`explain.cam.compiled`)."""

    def build() -> dict[str, Any]:
        spec = tf.TensorSpec([None, *view.input_shape], tf.float32)

        @tf.function(input_signature=[spec])
        def contributions(x):
            return decompose(view, view.run(x).activations)

        @tf.function(input_signature=[spec, spec])
        def pairs(q, r):
            return similarity_map(view, query_images=q, reference_images=r)

        return {"contributions": contributions, "pairs": pairs}

    return compiled(view, ("similarity",), build)


def _images(images: Any, view: ModelView, name: str) -> tf.Tensor:
    return check_image_tensor(images, view.input_shape, name=name, model=view.model.name, allow_single=True)


def _batch_size(batch_size: int) -> int:
    return check_batch_size(batch_size)


def _contributions(view: ModelView, images: tf.Tensor, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    fn = _compiled(view)["contributions"]
    cs, es = [], []
    for start in range(0, int(images.shape[0]), batch_size):
        c, e = fn(images[start:start + batch_size])
        cs.append(c.numpy())
        es.append(e.numpy())
    return np.concatenate(cs), np.concatenate(es)


def embed(model_or_view: Any, images: Any, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
    """Embeddings ``(N, D)`` computed from the target-layer activations (``pool(A) P``).

    Args:
        model_or_view: An embedding Keras model or its :class:`ModelView`.
        images: ``(N, H, W, 3)`` uint8 or float in ``[0, 1]`` (a single ``(H, W, 3)`` image is
            accepted).
        batch_size: Images per forward pass.
        normalize: L2-normalise (as the model's ``l2norm`` output); ``False`` = ``pool(A) P``.
    """
    view = _view(model_or_view)
    x = _images(images, view, "images")
    fn = _compiled(view)["contributions"]
    out = []
    for start in range(0, int(x.shape[0]), _batch_size(batch_size)):
        _, e = fn(x[start:start + batch_size])
        out.append(e.numpy())
    e = np.concatenate(out).astype(np.float32)
    if normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), _EPS_NORM)
    return e


def similarity_maps(model_or_view: Any, query: Any, reference: Any, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Eager :func:`similarity_map` over numpy/uint8/float images, batched.

    ``query`` and ``reference`` are ``(N, H, W, 3)`` (pairwise) or one of them a single image
    (``(H, W, 3)`` or ``(1, H, W, 3)``), which is then compared with every image of the other.

    Returns:
        The keys of :func:`similarity_map` as numpy arrays.
    """
    view = _view(model_or_view)
    q = _images(query, view, "query")
    r = _images(reference, view, "reference")
    nq, nr = int(q.shape[0]), int(r.shape[0])
    if nq != nr:
        if nq == 1:
            q = tf.repeat(q, nr, axis=0)
        elif nr == 1:
            r = tf.repeat(r, nq, axis=0)
        else:
            raise ExplainError(
                f"query has {nq} images and reference has {nr}; they must match (pairwise) or one must be a single image"
            )
    fn = _compiled(view)["pairs"]
    bs = _batch_size(batch_size)
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, int(q.shape[0]), bs):
        out = fn(q[start:start + bs], r[start:start + bs])
        for k, v in out.items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def class_similarity_map(
    model_or_view: Any, image: Any, class_images: Any, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Class similarity map (seed 002 §4.5): the sum of ``image``'s pairwise maps against
    ``class_images`` (pass the *other* images of its class).

    Because every pairwise map is ``c_xy · ê⁽ʲ⁾ / ‖e‖``, the sum is ``c_xy · Σ_j ê⁽ʲ⁾ / ‖e‖``;
    the class images only need one (batched) embedding pass.

    Returns:
        ``map`` ``(h, w)`` (sums to ``similarities.sum()``), ``map_upsampled`` ``(H, W)``
        normalised for display, ``similarities`` ``(M,)`` cosine similarity to each class image.
    """
    view = _view(model_or_view)
    x = _images(image, view, "image")
    if int(x.shape[0]) != 1:
        raise ExplainError(f"image must be one image (H, W, 3) or (1, H, W, 3); got {int(x.shape[0])} images")
    refs = _images(class_images, view, "class_images")
    if int(refs.shape[0]) < 1:
        raise ExplainError("class_images is empty; pass at least one other image of the class")
    bs = _batch_size(batch_size)
    contrib, emb = _contributions(view, x, bs)
    _, ref_emb = _contributions(view, refs, bs)
    c = contrib[0].astype(np.float64)
    e = emb[0].astype(np.float64)
    ref_unit = ref_emb / np.maximum(np.linalg.norm(ref_emb, axis=-1, keepdims=True), _EPS_NORM)
    norm_e = max(float(np.linalg.norm(e)), _EPS_NORM)
    m = (c @ ref_unit.sum(axis=0).astype(np.float64)) / norm_e
    sims = (ref_unit.astype(np.float64) @ (e / norm_e)).astype(np.float32)
    m = m.astype(np.float32)
    up = _display(tf.constant(m[None]), view.input_shape[:2]).numpy()[0]
    return {"map": m, "map_upsampled": up, "similarities": sims}


def _region_weights(region_mask: Any, view: ModelView) -> np.ndarray:
    """``(h, w)`` weights in ``[0, 1]``: the fraction of each feature cell inside the region."""
    mask = np.asarray(region_mask)
    h, w, _ = view.target_shape
    H, W, _ = view.input_shape
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ExplainError(f"region_mask must be (H, W) = ({H}, {W}) or (h, w) = ({h}, {w}); got shape {mask.shape}")
    mask = mask.astype(np.float32)
    if mask.shape == (h, w):
        return mask
    if mask.shape == (H, W):
        # area resize = the fraction of the cell's pixels inside the region (for H/h integer)
        return tf.image.resize(mask[None, ..., None], (h, w), method="area").numpy()[0, ..., 0]
    raise ExplainError(f"region_mask must be (H, W) = ({H}, {W}) or (h, w) = ({h}, {w}); got shape {mask.shape}")


def region_retrieval(
    model_or_view: Any,
    query: Any,
    region_mask: Any,
    database: Any,
    top_k: int | None = 10,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Object/region-specific retrieval (seed 002 §4.6).

    Each database image ``j`` is scored by the sum of the query's similarity map (w.r.t. ``j``)
    inside the region: ``score_j = Σ_xy w_xy map_q(x, y) = (Σ_xy w_xy c_xy) · ê⁽ʲ⁾ / ‖e_q‖``,
    where ``w`` is ``region_mask`` at feature resolution. A mask at input resolution ``(H, W)``
    becomes, per feature cell, the fraction of its pixels inside the region (area resize); a mask
    at ``(h, w)`` is used as given (bool or weights). With the full region the score is the
    cosine similarity. The database only needs one batched embedding pass.

    Args:
        query: One image ``(H, W, 3)`` or ``(1, H, W, 3)``.
        region_mask: ``(H, W)`` or ``(h, w)``, bool or weights in ``[0, 1]``.
        database: ``(M, H, W, 3)`` images.
        top_k: How many to return; ``None`` = all.

    Returns:
        ``ranking`` ``(k,)`` database indices, best first (ties: lower index first);
        ``scores`` ``(k,)`` their region scores; ``all_scores`` ``(M,)``; ``similarity`` ``(M,)``
        whole-image cosine similarities; ``region_weights`` ``(h, w)``.
    """
    view = _view(model_or_view)
    x = _images(query, view, "query")
    if int(x.shape[0]) != 1:
        raise ExplainError(f"query must be one image; got {int(x.shape[0])} images")
    db = _images(database, view, "database")
    m = int(db.shape[0])
    if m < 1:
        raise ExplainError("database is empty")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ExplainError(f"top_k {top_k!r} must be a positive integer or None")
    weights = _region_weights(region_mask, view).astype(np.float64)
    bs = _batch_size(batch_size)
    contrib, emb = _contributions(view, x, bs)
    _, db_emb = _contributions(view, db, bs)
    db_unit = (db_emb / np.maximum(np.linalg.norm(db_emb, axis=-1, keepdims=True), _EPS_NORM)).astype(np.float64)
    e = emb[0].astype(np.float64)
    norm_e = max(float(np.linalg.norm(e)), _EPS_NORM)
    region_vec = np.einsum("xy,xyd->d", weights, contrib[0].astype(np.float64)) / norm_e
    scores = db_unit @ region_vec
    sims = db_unit @ (e / norm_e)
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[: int(top_k)]
    return {
        "ranking": order.astype(np.int64),
        "scores": scores[order].astype(np.float32),
        "all_scores": scores.astype(np.float32),
        "similarity": sims.astype(np.float32),
        "region_weights": weights.astype(np.float32),
    }


def topk_component_share(beta_i: Any, beta_j: Any, ks: int | Sequence[int] | None = None) -> np.ndarray:
    """Share of the cosine similarity carried by the ``k`` largest component products
    (seed 002 §4.1, Fig. 3).

    With ``p_d = β⁽ⁱ⁾_d β⁽ʲ⁾_d / (‖β⁽ⁱ⁾‖ ‖β⁽ʲ⁾‖)`` (so ``Σ_d p_d = s``), sorted descending, the
    share at ``k`` is ``Σ_{d ≤ k} p_(d) / s``. It is 1 at ``k = D`` and non-decreasing in ``k``
    when all products are non-negative (ReLU features without a projection); with negative
    products it can exceed 1 before coming back to 1. ``s = 0`` gives 0.

    Args:
        beta_i, beta_j: ``(D,)`` or ``(N, D)`` feature vectors (any scale).
        ks: An int, a sequence of ints in ``1..D``, or ``None`` = ``1..D``.

    Returns:
        ``(len(ks),)`` for 1-D inputs, ``(N, len(ks))`` for batches (a scalar ``k`` keeps the axis).
    """
    bi = np.asarray(beta_i, dtype=np.float64)
    bj = np.asarray(beta_j, dtype=np.float64)
    single = bi.ndim == 1 and bj.ndim == 1
    bi = np.atleast_2d(bi)
    bj = np.atleast_2d(bj)
    if bi.ndim != 2 or bi.shape != bj.shape:
        raise ExplainError(f"beta_i and beta_j must have the same shape (D,) or (N, D); got {np.shape(beta_i)} and {np.shape(beta_j)}")
    d = bi.shape[1]
    if ks is None:
        ks_arr = np.arange(1, d + 1)
    else:
        ks_arr = np.atleast_1d(np.asarray(ks))
        if ks_arr.dtype.kind not in "iu" or np.any(ks_arr < 1) or np.any(ks_arr > d):
            raise ExplainError(f"ks {ks!r} must be integers in 1..{d}")
    ni = np.maximum(np.linalg.norm(bi, axis=1, keepdims=True), _EPS_NORM)
    nj = np.maximum(np.linalg.norm(bj, axis=1, keepdims=True), _EPS_NORM)
    prod = -np.sort(-(bi / ni) * (bj / nj), axis=1)
    cum = np.cumsum(prod, axis=1)
    total = cum[:, -1:]
    share = np.divide(cum, total, out=np.zeros_like(cum), where=total != 0)
    out = share[:, ks_arr - 1]
    return out[0] if single else out


register(
    Method(
        name="similarity_map",
        fn=similarity_map,
        kind="single_pass",
        applies_to="embedding",
        signature_inputs={
            "query_images": lambda: tf.TensorSpec([None, None, None, 3], tf.uint8, name="query_images"),
            "reference_images": lambda: tf.TensorSpec([None, None, None, 3], tf.uint8, name="reference_images"),
        },
        label="similarity map",
        cost="cheap",
        description=(
            "Similarity maps (seed 002): the i-th query and the i-th reference image (uint8 (N, H, W, 3), "
            "scaled by 1/255 in the graph) decomposed into per-location contributions that sum to their "
            "cosine similarity, in both directions; avg or max pooling, optional linear projection."
        ),
    )
)
