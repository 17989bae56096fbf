# Serving image for cnn-explain: TF Serving Predict/Model API + explain.v1 over gRPC on :8500;
# TF Serving's REST API, KServe v1 :explain, the JSON API and the viewer page over HTTP on :8501.
#
# Build (podman or docker with BuildKit); the CA secret is optional and only used by pip:
#   cat /usr/local/share/ca-certificates/*.crt > /tmp/extra-ca.pem
#   podman build --format docker --secret id=ca,src=/tmp/extra-ca.pem \
#       --build-arg BASE_IMAGE=localhost/debian:bookworm-slim -t cnn-explain-serving .
# Run (models exported by `python -m models train` / models.export are mounted read-only):
#   podman run --rm -p 127.0.0.1:8500:8500 -p 127.0.0.1:8501:8501 -v "$PWD/runs/models:/models:ro" cnn-explain-serving
# `--format docker` keeps the HEALTHCHECK (the OCI image format has no health checks).

ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- python: runtime OS layer
FROM ${BASE_IMAGE} AS python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8
# Debian bookworm: python3 is 3.11; tini is PID 1 and forwards SIGTERM/SIGINT to the server.
# Versions are not pinned on purpose: the base image is a moving Debian stable (security updates).
# apt-get clean: a base without Debian's docker-clean hook (a local debootstrap) keeps the .deb files.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv tini ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# ---------------------------------------------------------------- deps: venv with the third-party packages
FROM python AS deps
# TensorFlow's CPU-only wheel by default (no CUDA kernels: about 1 GB less); for a GPU image:
#   --build-arg TF_PACKAGE=tensorflow
ARG TF_PACKAGE=tensorflow-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120
# binutils (strip) only in this build stage, never in the runtime image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN python3 -m venv /opt/venv
WORKDIR /src
# Only the core dependencies and the [serving] extra of pyproject.toml (not [evaluation] nor
# [test]): this big layer (TensorFlow) stays cached while the project's own code changes.
# `tensorflow` becomes TF_PACKAGE; tensorflow-serving-api (whose only own dependency is
# `tensorflow`, already there under that name) is installed without dependencies.
COPY pyproject.toml ./
RUN python3 -c 'import re, sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; reqs = p["dependencies"] + p["optional-dependencies"]["serving"]; name = lambda r: re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0]; print("\n".join(sys.argv[1] + r[len(name(r)):] if name(r) == "tensorflow" else r for r in reqs if name(r) != "tensorflow-serving-api")); print("\n".join(r for r in reqs if name(r) == "tensorflow-serving-api"), file=open("/tmp/no-deps.txt", "w"))' "${TF_PACKAGE}" > /tmp/requirements.txt \
    && cat /tmp/requirements.txt /tmp/no-deps.txt
# The extra CA bundle (e.g. a TLS-intercepting egress proxy) comes in as a build secret and
# exists only while the RUN step runs: it is never written into a layer. The same step drops
# what serving never loads: TensorFlow's C++ headers (tensorflow/include), libclang (a
# TensorFlow build-time dependency), pip's and the packages' test suites, and the symbol tables
# of TensorFlow's shared libraries (strip --strip-unneeded keeps the dynamic symbols).
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    cat /etc/ssl/certs/ca-certificates.crt > /tmp/ca-bundle.pem \
    && if [ -s /run/secrets/ca ]; then cat /run/secrets/ca >> /tmp/ca-bundle.pem; fi \
    && PIP_CERT=/tmp/ca-bundle.pem /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt \
    && PIP_CERT=/tmp/ca-bundle.pem /opt/venv/bin/pip install --no-cache-dir --no-deps -r /tmp/no-deps.txt \
    && /opt/venv/bin/pip uninstall -y libclang \
    && rm -f /tmp/ca-bundle.pem /tmp/requirements.txt /tmp/no-deps.txt \
    && SITE="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && rm -rf "$SITE/tensorflow/include" \
    && find "$SITE/numpy" "$SITE/scipy" "$SITE/skimage" "$SITE/networkx" -depth -type d -name tests -exec rm -rf {} + \
    && find "$SITE/tensorflow" -name '*.so*' -type f -exec strip --strip-unneeded {} + \
    && /opt/venv/bin/python -c 'import tensorflow as tf, tensorflow_serving.apis, skimage.segmentation, starlette, uvicorn; print("TensorFlow", tf.__version__, tf.reduce_sum(tf.ones([2, 2])).numpy())'

# ---------------------------------------------------------------- wheel: the project itself
FROM deps AS wheel
COPY models/ models/
COPY explain/ explain/
COPY serving/ serving/
COPY evaluation/ evaluation/
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    cat /etc/ssl/certs/ca-certificates.crt > /tmp/ca-bundle.pem \
    && if [ -s /run/secrets/ca ]; then cat /run/secrets/ca >> /tmp/ca-bundle.pem; fi \
    && PIP_CERT=/tmp/ca-bundle.pem /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && rm -f /tmp/ca-bundle.pem

# ---------------------------------------------------------------- runtime
FROM python AS runtime
LABEL org.opencontainers.image.title="cnn-explain-serving" \
      org.opencontainers.image.description="Grad-CAM / similarity-map explanations over gRPC and HTTP (TF Serving API, KServe v1, explain.v1)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 serving \
    && useradd --system --uid 10001 --gid serving --create-home --home-dir /home/serving \
       --shell /usr/sbin/nologin serving \
    && mkdir -p /models \
    && chown serving:serving /models
# The dependency venv (cached unless pyproject.toml changes), then the project's wheel on top:
# a code change rebuilds only these last small layers.
COPY --from=deps /opt/venv /opt/venv
COPY --from=wheel /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && /opt/venv/bin/python -c 'import serving.healthcheck'
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    SERVING_HEALTH_ADDRESS=127.0.0.1:8500
USER 10001:10001
WORKDIR /home/serving
EXPOSE 8500 8501
# gRPC health service (grpc.health.v1), overall server status ("").
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "serving.healthcheck"]
# Exec form: tini is PID 1, the server gets SIGTERM and drains in-flight calls before exiting.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/python", "-m", "serving"]
CMD ["--model-root", "/models", "--port", "8500", "--rest-port", "8501"]
