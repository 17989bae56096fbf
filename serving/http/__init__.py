"""The HTTP side of the server: TF Serving's REST API, KServe's v1 explain verb, the typed API over
JSON, an OpenAPI document and the viewer page, on one port next to gRPC, in the same process.

No second inference path: every route decodes its JSON into the gRPC request message and calls the
same servicer method as the gRPC port does (:mod:`serving.prediction_service`,
:mod:`serving.model_service`, :mod:`serving.explanation_service`), with a servicer context for
HTTP (:class:`serving.http.context.HttpContext`). Registry, micro-batching queues, limits,
metrics, request log lines, the bearer token (the gate of :mod:`serving.interceptors`) and the
error map (:func:`serving.errors.status_for`, then :func:`serving.errors.http_status`) are shared.

Modules: :mod:`~serving.http.app` (routes, the one request wrapper, the uvicorn thread),
:mod:`~serving.http.tfserving` (TF Serving's REST JSON codec), :mod:`~serving.http.kserve`,
:mod:`~serving.http.typed` (``/v1/explain`` … and OpenAPI), :mod:`~serving.http.schema` (method
parameter schemas), :mod:`~serving.http.scenes` (built-in synthetic scenes); ``static/`` (the
viewer, no build step, no CDN).
"""

from serving.http.app import HttpServer, create_app

__all__ = ["HttpServer", "create_app"]
