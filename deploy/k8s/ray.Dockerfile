# Image of the evaluation's RayJob (deploy/k8s/rayjob.yaml): the serving image (the project and its
# dependencies in /opt/venv) plus Ray, so that KubeRay can run `ray start` and the job's entrypoint
# `python -m evaluation ...` in the same environment. ray[default] 2.60.0 resolves with the
# project's pinned tensorflow/protobuf/grpcio.
#   podman build --format docker -f deploy/k8s/ray.Dockerfile \
#       --build-arg SERVING_IMAGE=cnn-explain-serving:0.1.0 -t cnn-explain-ray:0.1.0 .
ARG SERVING_IMAGE=cnn-explain-serving:0.1.0
FROM ${SERVING_IMAGE}
USER 0:0
RUN --mount=type=secret,id=ca,target=/run/secrets/ca \
    cat /etc/ssl/certs/ca-certificates.crt > /tmp/ca-bundle.pem \
    && if [ -s /run/secrets/ca ]; then cat /run/secrets/ca >> /tmp/ca-bundle.pem; fi \
    && PIP_CERT=/tmp/ca-bundle.pem /opt/venv/bin/pip install --no-cache-dir 'ray[default]==2.60.0' \
    && rm -f /tmp/ca-bundle.pem
USER 10001:10001
# KubeRay replaces the command (`ray start ...`); no tini / server entrypoint here.
ENTRYPOINT []
CMD ["/bin/bash"]
