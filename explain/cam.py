"""Class activation maps from gradients: Grad-CAM, Grad-CAM++, Layer-CAM, HiResCAM, XGrad-CAM, Eigen-CAM.

One base class, :class:`BaseCAM`, runs the shared steps; a variant overrides only
:meth:`BaseCAM.weights`, the step that turns the gradients into per-channel (or per-element)
weights (the pytorch-grad-cam layout):

1. one forward pass through the :class:`~explain.view.ModelView` gives the target-layer
   activations ``A`` ``(N, h, w, K)`` and the logits ``y`` ``(N, C)``;
2. ``g = ∂y_c/∂A`` for the requested class ``c`` of each example (the **logit**, never the softmax
   output — SPEC §2);
3. ``w = weights(g, A, y_c)`` — broadcastable to ``A``;
4. ``L = ReLU(Σ_k w_k ⊙ A_k)`` at ``h×w`` (``relu=False`` keeps the signed map);
5. ``heatmap = (L − min L)/(max L − min L + 1e-7)`` per example, and ``heatmap_upsampled`` its
   bilinear resize to the input size with **half-pixel centres** (``tf.image.resize``; see
   :mod:`explain.resize`). tf-keras-vis resizes corner-aligned with ``scipy.ndimage.zoom``, so
   comparisons with it are made at ``h×w``.

Weights (``S = y_c``, ``g = ∂S/∂A``, ``Σ_ij`` over the ``h×w`` positions):

* **Grad-CAM** (Selvaraju et al.; seeds 000, 001): ``w_k = α_k = mean_ij g_ijk``.
* **Layer-CAM** (Jiang et al. 2021): element-wise ``w_ijk = ReLU(g_ijk)``; as in the paper and in
  tf-keras-vis 0.8.7 ``Layercam``.
* **HiResCAM** (Draelos & Carin 2020): element-wise ``w_ijk = g_ijk`` (no averaging), so
  ``L = ReLU(Σ_k g_k ⊙ A_k)``. For a GAP→Dense head ``g_ijk = W_kc/(h·w)`` and the signed map is
  CAM's ``Σ_k W_kc A_k`` divided by ``h·w``.
* **XGrad-CAM** (Fu et al. 2020): ``w_k = Σ_ij (A_ijk / (Σ_ab A_abk + 1e-7))·g_ijk`` (the ``1e-7``
  guards an all-zero channel, as pytorch-grad-cam does).
* **Eigen-CAM** (Muhammad & Yeasin 2020): no gradient and no class. ``A`` is read as ``h·w``
  samples of ``K`` features, centred per channel (``Ā = A − mean_ij A``); the map is the
  projection on the first right singular vector ``v₁`` of ``Ā`` (the first principal component),
  ``L = ReLU(Ā v₁)``. An SVD fixes ``v₁`` only up to sign; the project takes the sign for which
  ``Σ_ij (Ā v₁)_ij · Σ_k A_ijk ≥ 0`` (the map agrees with the total activation), so the result
  is deterministic. ``weights`` is ``v₁`` ``(N, 1, 1, K)``.
* **Grad-CAM++** (Chattopadhay et al. 2018), exactly as tf-keras-vis 0.8.7 ``GradcamPlusPlus``
  computes it (so the two agree to float round-off), with ``E = exp(S)``::

      d1 = E·g,  d2 = E·g²,  d3 = E·g³
      a_ijk = d2 / (2·d2 + d3·Σ_ab A_abk + [d2 == 0])
      a_ijk ← a_ijk / (Σ_ab a_abk + [Σ_ab a_abk == 0])
      w_k = Σ_ij ReLU(d1_ijk) · a_ijk

  Differences from the paper's eqs. 19–20: (i) the spatial renormalisation of ``a`` (the second
  line) is not in the paper (it comes from the authors' released code); (ii) where ``d2 = 0`` the
  paper's ``0/0`` is defined as 0 by adding 1 to the denominator; (iii) ``exp(S)`` cancels in
  ``a`` but scales ``w`` and the raw map by ``exp(y_c)`` — the normalised heat map is unaffected
  (as in tf-keras-vis, a logit above ~88 overflows float32 ``exp``).

Entry points
------------
* Registry (``single_pass``): ``gradcam``, ``gradcam_plus_plus``, ``layercam``, ``hirescam``,
  ``xgradcam``, ``eigencam``, each
  ``fn(view, images, class_index) -> dict`` of tensors (graph-compatible; exported as SavedModel
  signatures). Outputs: ``heatmap`` (N,h,w), ``heatmap_upsampled`` (N,H,W), ``raw`` (N,h,w, after
  ReLU), ``weights`` (N,1,1,K) channel weights, or (N,h,w,K) for Layer-CAM and HiResCAM, ``logits``,
  ``probabilities``, ``class_index``.
* Eager: :func:`gradcam`, :func:`gradcam_plus_plus`, :func:`layercam`, :func:`hirescam`,
  :func:`xgradcam`, :func:`eigencam`
  ``(model_or_view, images, class_index=-1, target_layer=None, relu=True) -> dict`` of numpy
  arrays. They validate the arguments (raising :class:`~explain.view.ExplainError` naming the value
  and the accepted ones) and call a ``tf.function`` compiled once per (view, method, relu) with a
  fixed input signature, so repeated calls never retrace.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from explain import checks, registry
from explain.resize import EPSILON, heatmap_outputs
from explain.view import ExplainError, ModelView, as_view, check_images, find_layer

__all__ = [
    "BaseCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "LayerCAM",
    "HiResCAM",
    "XGradCAM",
    "EigenCAM",
    "METHODS",
    "gradcam",
    "gradcam_plus_plus",
    "layercam",
    "hirescam",
    "xgradcam",
    "eigencam",
    "get_view",
    "check_class_index",
    "compiled",
]


# ---------------------------------------------------------------------------------------------
# The base class and its variants


class BaseCAM:
    """Gradient-weighted class activation map; subclasses override :meth:`weights` only."""

    #: Registry / signature name.
    name: str = ""
    description: str = ""

    def weights(self, grads: tf.Tensor, activations: tf.Tensor, score: tf.Tensor) -> tf.Tensor:
        """Weights broadcastable to ``A`` ``(N, h, w, K)``.

        Args:
            grads: ``g = ∂y_c/∂A`` ``(N, h, w, K)``.
            activations: ``A`` ``(N, h, w, K)``.
            score: ``y_c`` ``(N,)``, the logit of the explained class.
        """
        raise NotImplementedError

    def single_pass(
        self, view: ModelView, images: tf.Tensor, class_index: tf.Tensor | int | None = -1, relu: bool = True
    ) -> dict[str, tf.Tensor]:
        """The graph-compatible method: ``images`` float32 ``(N, H, W, 3)`` in ``[0, 1]``.

        ``class_index``: int32 ``(N,)`` (or a scalar), ``-1`` = the predicted class.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        with tf.GradientTape() as tape:
            result = view.run(images)
            if result.logits is None:
                raise ExplainError(f"{self.name} needs a classifier; model {view.model.name!r} has no classifier layer")
            logits = result.logits
            idx = view.resolve_class_index(class_index, logits)
            score = tf.gather(logits, idx, axis=1, batch_dims=1)
        activations = result.activations
        grads = tape.gradient(score, activations)
        w = self.weights(grads, activations, score)
        return _finish(view, tf.reduce_sum(w * activations, axis=-1), w, logits, idx, relu)

    def __call__(
        self,
        model_or_view: Any,
        images: Any,
        class_index: Any = -1,
        target_layer: str | None = None,
        relu: bool = True,
    ) -> dict[str, np.ndarray]:
        """Eager entry point (validates, then runs the compiled graph; numpy out)."""
        view = get_view(model_or_view, target_layer)
        if not view.is_classifier:
            raise ExplainError(
                f"{self.name} explains a class score; model {view.model.name!r} has no classifier layer "
                f"(accepted: classifiers; use 'similarity_map' for embedding networks)"
            )
        x = check_images(images, view)
        idx = check_class_index(class_index, int(x.shape[0]), view.num_classes, view.model.name)
        fn = compiled(view, (self.name, bool(relu)), lambda: self._graph(view, bool(relu)))
        return {k: v.numpy() for k, v in fn(x, idx).items()}

    def _graph(self, view: ModelView, relu: bool) -> Callable[..., dict[str, tf.Tensor]]:
        spec = [
            tf.TensorSpec([None, *view.input_shape], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ]
        return tf.function(lambda x, c: self.single_pass(view, x, c, relu=relu), input_signature=spec)


class GradCAM(BaseCAM):
    """Grad-CAM: ``α_k = mean_ij ∂y_c/∂A_ijk`` (seeds 000, 001; SPEC §2)."""

    name = "gradcam"
    description = "Grad-CAM: ReLU(Σ_k mean_ij(∂y_c/∂A_ijk)·A_k) at the target layer (logit, not softmax)"

    def weights(self, grads, activations, score):
        return tf.reduce_mean(grads, axis=(1, 2), keepdims=True)


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ with tf-keras-vis 0.8.7's exact weighting (see the module docstring)."""

    name = "gradcam_plus_plus"
    description = "Grad-CAM++ (tf-keras-vis 0.8.7 weighting: exp(y_c)-scaled, renormalised alphas)"

    def weights(self, grads, activations, score):
        e = tf.reshape(tf.exp(score), [-1, 1, 1, 1])
        d1 = e * grads
        d2 = d1 * grads
        d3 = d2 * grads
        global_sum = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        denom = d2 * 2.0 + d3 * global_sum
        denom = denom + tf.cast(tf.equal(d2, 0.0), d2.dtype)
        alphas = d2 / denom
        norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
        norm = norm + tf.cast(tf.equal(norm, 0.0), norm.dtype)
        alphas = alphas / norm
        return tf.reduce_sum(tf.nn.relu(d1) * alphas, axis=(1, 2), keepdims=True)


class LayerCAM(BaseCAM):
    """Layer-CAM: element-wise weights ``ReLU(∂y_c/∂A_ijk)`` (Jiang et al. 2021)."""

    name = "layercam"
    description = "Layer-CAM: ReLU(Σ_k ReLU(∂y_c/∂A_ijk)·A_ijk) at the target layer"

    def weights(self, grads, activations, score):
        return tf.nn.relu(grads)


class HiResCAM(BaseCAM):
    """HiResCAM: element-wise weights ``∂y_c/∂A_ijk`` (Draelos & Carin 2020)."""

    name = "hirescam"
    description = "HiResCAM: ReLU(Σ_k ∂y_c/∂A_k ⊙ A_k) at the target layer (element-wise, no averaging)"

    def weights(self, grads, activations, score):
        return grads


class XGradCAM(BaseCAM):
    """XGrad-CAM: ``w_k = Σ_ij A_ijk/(Σ_ab A_abk + 1e-7) · ∂y_c/∂A_ijk`` (Fu et al. 2020)."""

    name = "xgradcam"
    description = "XGrad-CAM: ReLU(Σ_k w_k A_k), w_k = Σ_ij (A_ijk/Σ_ab A_abk)·∂y_c/∂A_ijk"

    def weights(self, grads, activations, score):
        total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        return tf.reduce_sum(grads * activations / (total + EPSILON), axis=(1, 2), keepdims=True)


class EigenCAM(BaseCAM):
    """Eigen-CAM: projection of the centred activations on their first principal component."""

    name = "eigencam"
    description = "Eigen-CAM: ReLU of the first principal component of the centred target activations (class-agnostic)"

    def single_pass(
        self, view: ModelView, images: tf.Tensor, class_index: tf.Tensor | int | None = -1, relu: bool = True
    ) -> dict[str, tf.Tensor]:
        images = tf.convert_to_tensor(images, tf.float32)
        result = view.run(images)
        if result.logits is None:
            raise ExplainError(f"{self.name} needs a classifier; model {view.model.name!r} has no classifier layer")
        logits = result.logits
        idx = view.resolve_class_index(class_index, logits)
        a = result.activations
        shape = tf.shape(a)
        flat = tf.reshape(a, [shape[0], shape[1] * shape[2], shape[3]])
        centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
        _, _, v = tf.linalg.svd(centred, full_matrices=False)  # centred = U S Vᵀ, v (N, K, min)
        v1 = v[:, :, 0]
        proj = tf.einsum("npk,nk->np", centred, v1)
        agree = tf.reduce_sum(proj * tf.reduce_sum(flat, axis=-1), axis=1, keepdims=True)
        sign = tf.where(agree < 0, -1.0, 1.0)
        cam = tf.reshape(proj * sign, shape[:3])
        w = tf.reshape(v1 * sign, [shape[0], 1, 1, shape[3]])
        return _finish(view, cam, w, logits, idx, relu)


def _finish(view: ModelView, cam: tf.Tensor, w: tf.Tensor, logits: tf.Tensor, idx: tf.Tensor,
            relu: bool) -> dict[str, tf.Tensor]:
    """The common outputs of the CAM family from the map ``cam`` ``(N, h, w)`` before the ReLU."""
    if relu:
        cam = tf.nn.relu(cam)
    out = heatmap_outputs(cam, view.input_shape[:2])
    out.update(weights=w, logits=logits, probabilities=tf.nn.softmax(logits, axis=-1), class_index=idx)
    return out


# ---------------------------------------------------------------------------------------------
# Views, validation and the per-view cache of compiled functions

_VIEWS_ATTR = "_explain_views"
_COMPILED_ATTR = "_explain_compiled"
_FALLBACK_VIEWS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def get_view(model_or_view: Any, target_layer: str | None = None) -> ModelView:
    """The :class:`ModelView` for a model or view, cached per (model, target layer).

    A view is returned unchanged when ``target_layer`` is ``None`` or names its own target layer;
    otherwise a view of the same model with that target layer is built (and cached), so
    compiled functions are reused across calls that pass the bare Keras model.

    Raises:
        ExplainError: not a Keras model or view; unknown layer (lists the accepted paths); the
            layer is not 4-D; the model has no 4-D layer.
    """
    if isinstance(model_or_view, ModelView):
        view = model_or_view
        if target_layer is None or find_layer(view.model, target_layer) == view.target_layer:
            return view
        model = view.model
        kwargs = dict(classifier_layer=view.classifier_layer, pooling=view.pooling,
                      projection_layer=view.projection_layer)
    else:
        model = model_or_view
        kwargs = {}
        if not hasattr(model, "inputs") or not hasattr(model, "layers"):
            raise ExplainError(
                f"expected a Keras model or an explain.view.ModelView; got {type(model_or_view).__name__}"
            )
    cache = _view_cache(model)
    key = (None if target_layer is None else find_layer(model, target_layer), tuple(sorted(kwargs.items())))
    if key not in cache:
        cache[key] = as_view(model, target_layer=target_layer, **kwargs)
    return cache[key]


def _view_cache(model: Any) -> dict:
    # Stored on the model itself (bypassing Keras attribute tracking) so that the model → view →
    # model cycle is ordinary garbage; a module-level WeakKeyDictionary would keep it alive forever.
    cache = model.__dict__.get(_VIEWS_ATTR)
    if cache is None:
        cache = {}
        try:
            object.__setattr__(model, _VIEWS_ATTR, cache)
        except (AttributeError, TypeError):  # pragma: no cover - exotic model classes
            cache = _FALLBACK_VIEWS.setdefault(model, cache)
    return cache


def compiled(view: ModelView, key: Any, build: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """A compiled function cached on ``view`` under ``key`` (built once with ``build()``)."""
    cache = view.__dict__.setdefault(_COMPILED_ATTR, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def check_class_index(class_index: Any, n: int, num_classes: int | None, model_name: str = "model") -> tf.Tensor:
    """Validate ``class_index`` for ``n`` images and return it as int32 ``(n,)``.

    Accepts ``None`` or ``-1`` (the predicted class), an integer, or an integer sequence of length
    ``n`` (or 1). Raises :class:`ExplainError` naming the bad value and the accepted ones
    (:func:`explain.checks.check_class_index`).
    """
    if n < 1:
        raise ExplainError(f"images must hold at least one image; got a batch of {n}")
    return tf.constant(checks.check_class_index(class_index, n, num_classes, model_name).astype(np.int32))


# ---------------------------------------------------------------------------------------------
# Instances, eager entry points and registration

GRADCAM = GradCAM()
GRADCAM_PLUS_PLUS = GradCAMPlusPlus()
LAYERCAM = LayerCAM()
HIRESCAM = HiResCAM()
XGRADCAM = XGradCAM()
EIGENCAM = EigenCAM()
METHODS: dict[str, BaseCAM] = {m.name: m for m in (GRADCAM, GRADCAM_PLUS_PLUS, LAYERCAM, HIRESCAM, XGRADCAM, EIGENCAM)}


def gradcam(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
            relu: bool = True) -> dict[str, np.ndarray]:
    """Grad-CAM of ``images`` (float in [0, 1] or uint8, ``(N, H, W, 3)``); see the module docstring.

    ``relu=False`` returns the signed map ``Σ_k α_k A_k`` as ``raw`` (for a GAP→Dense head it sums
    over ``h×w`` to ``y_c − b_c``).
    """
    return GRADCAM(model_or_view, images, class_index, target_layer, relu)


def gradcam_plus_plus(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
                      relu: bool = True) -> dict[str, np.ndarray]:
    """Grad-CAM++ (tf-keras-vis 0.8.7 weighting); see the module docstring."""
    return GRADCAM_PLUS_PLUS(model_or_view, images, class_index, target_layer, relu)


def layercam(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
             relu: bool = True) -> dict[str, np.ndarray]:
    """Layer-CAM; see the module docstring."""
    return LAYERCAM(model_or_view, images, class_index, target_layer, relu)


def hirescam(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
             relu: bool = True) -> dict[str, np.ndarray]:
    """HiResCAM; see the module docstring."""
    return HIRESCAM(model_or_view, images, class_index, target_layer, relu)


def xgradcam(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
             relu: bool = True) -> dict[str, np.ndarray]:
    """XGrad-CAM; see the module docstring."""
    return XGRADCAM(model_or_view, images, class_index, target_layer, relu)


def eigencam(model_or_view: Any, images: Any, class_index: Any = -1, target_layer: str | None = None,
             relu: bool = True) -> dict[str, np.ndarray]:
    """Eigen-CAM (class-agnostic; ``class_index`` only selects the echoed class); see the module docstring."""
    return EIGENCAM(model_or_view, images, class_index, target_layer, relu)


def _class_index_spec() -> tf.TensorSpec:
    return tf.TensorSpec([None], tf.int32)


for _m in METHODS.values():
    registry.register(
        registry.Method(
            name=_m.name,
            fn=_m.single_pass,
            kind="single_pass",
            applies_to="classifier",
            signature_inputs={"class_index": _class_index_spec},
            description=_m.description,
            label={"gradcam": "Grad-CAM", "gradcam_plus_plus": "Grad-CAM++", "layercam": "LayerCAM",
                   "hirescam": "HiResCAM", "xgradcam": "XGrad-CAM", "eigencam": "Eigen-CAM"}.get(_m.name, _m.name),
            cost="cheap",
        )
    )
