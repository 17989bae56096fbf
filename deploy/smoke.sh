#!/usr/bin/env bash
# Build the serving image with podman, run it on a model root and check it end to end.
#
#   deploy/smoke.sh [MODEL_ROOT]
#
# MODEL_ROOT: a TF Serving model root (<root>/<name>/<version>/saved_model.pb); without it, tiny
# untrained models are exported into a temporary directory (deploy/make_tiny_models.py), or trained
# ones with SMOKE_TRAIN=1 (python -m models train --preset tiny).
#
# Checks: the image builds (CA certificates passed as a build secret, never stored in a layer); the
# container starts as a non-root user with a read-only root file system and no capabilities, the
# port published on 127.0.0.1 only; the image's HEALTHCHECK and grpc.health.v1 report SERVING; a
# stock TF Serving client gets Predict (serving_default) and Grad-CAM (Predict signature 'gradcam')
# from the host; over HTTP (port 8501) TF Serving REST :predict, KServe :explain and the viewer
# page answer; SIGTERM (podman stop) drains and exits with status 0 well before the kill timeout.
#
# Environment: IMAGE (tag, default localhost/cnn-explain-serving:dev), BASE_IMAGE (default
# localhost/debian:bookworm-slim when that image exists, else the Dockerfile's debian:bookworm-slim),
# HOST_PORT (default: a free port), PYTHON (default .venv/bin/python), SKIP_BUILD=1 (reuse IMAGE),
# CA_DIR (default /usr/local/share/ca-certificates), KEEP=1 (leave the container for debugging).
#
# Exit status 0 and a line "SKIP: <reason>" when podman is missing or unusable.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGE="${IMAGE:-localhost/cnn-explain-serving:dev}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CA_DIR="${CA_DIR:-/usr/local/share/ca-certificates}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
MODEL_ROOT="${1:-${MODEL_ROOT:-}}"
NAME="cnn-explain-smoke-$$"

log() { printf '[smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }

if ! command -v podman >/dev/null 2>&1; then
    echo "SKIP: podman is not installed (Debian: apt-get install podman runc; see deploy/README.md)"
    exit 0
fi
if ! podman info >/dev/null 2>&1; then
    echo "SKIP: podman is installed but not usable here ('podman info' fails: $(podman info 2>&1 | tail -1))"
    exit 0
fi
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"

WORK="$(mktemp -d /tmp/cnn-explain-smoke.XXXXXX)"
cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then
        podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------ build
if [ "${SKIP_BUILD:-0}" = 1 ] && podman image exists "$IMAGE"; then
    log "reusing $IMAGE (SKIP_BUILD=1)"
else
    build_args=(--format docker --tag "$IMAGE")
    if [ -z "${BASE_IMAGE:-}" ] && podman image exists localhost/debian:bookworm-slim; then
        BASE_IMAGE=localhost/debian:bookworm-slim
    fi
    if [ -n "${BASE_IMAGE:-}" ]; then
        build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    fi
    # Extra CA certificates (e.g. a TLS-intercepting proxy) for pip inside the build: a secret,
    # mounted only during the RUN steps that need it.
    : > "$WORK/extra-ca.pem"
    if compgen -G "$CA_DIR/*.crt" >/dev/null; then
        cat "$CA_DIR"/*.crt >> "$WORK/extra-ca.pem"
    fi
    build_args+=(--secret "id=ca,src=$WORK/extra-ca.pem")
    log "building $IMAGE (base ${BASE_IMAGE:-debian:bookworm-slim})"
    start=$(date +%s)
    podman build "${build_args[@]}" . > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; fail "podman build"; }
    log "built in $(( $(date +%s) - start )) s; $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.2f GB", $1/1e9}')"
fi
# The extra CA certificates must not be in any layer: look for a line of each inside the image.
if compgen -G "$CA_DIR/*.crt" >/dev/null; then
    for crt in "$CA_DIR"/*.crt; do
        probe="$(sed -n 2p "$crt")"
        [ -n "$probe" ] || continue
        if podman run --rm --entrypoint grep "$IMAGE" -rlsF -- "$probe" /etc /opt /root /home /tmp /usr/local 2>/dev/null | grep -q .; then
            fail "$crt was found inside the image"
        fi
    done
    log "no extra CA certificate inside the image"
fi

# ------------------------------------------------------------------------------------ models
if [ -z "$MODEL_ROOT" ]; then
    MODEL_ROOT="$WORK/models"
    if [ "${SMOKE_TRAIN:-0}" = 1 ]; then
        log "training tiny models into $MODEL_ROOT"
        "$PYTHON" -m models train --preset tiny --out "$MODEL_ROOT" > "$WORK/models.log" 2>&1 \
            || { tail -20 "$WORK/models.log" >&2; fail "python -m models train"; }
    else
        log "exporting tiny untrained models into $MODEL_ROOT"
        "$PYTHON" deploy/make_tiny_models.py "$MODEL_ROOT" > "$WORK/models.log" 2>&1 \
            || { tail -20 "$WORK/models.log" >&2; fail "deploy/make_tiny_models.py"; }
    fi
fi
MODEL_ROOT="$(cd "$MODEL_ROOT" && pwd)"
# The container runs as uid 10001: the models must be world-readable (copy them if not).
if [ -n "$(find "$MODEL_ROOT" \( -type f ! -perm -o+r \) -o \( -type d ! -perm -o+rx \) 2>/dev/null | head -1)" ]; then
    if [[ "$MODEL_ROOT" == "$WORK"/* ]]; then
        chmod -R a+rX "$MODEL_ROOT"
    else
        log "$MODEL_ROOT is not world-readable; using a readable copy"
        cp -r "$MODEL_ROOT" "$WORK/models-copy" && chmod -R a+rX "$WORK/models-copy"
        MODEL_ROOT="$WORK/models-copy"
    fi
fi
chmod a+rx "$WORK"
# A classifier with a gradcam signature: name and input size from its model card.
read -r MODEL SIZE < <("$PYTHON" - "$MODEL_ROOT" <<'EOF'
import json, sys
from pathlib import Path
for card in sorted(Path(sys.argv[1]).glob("*/*/assets.extra/model_card.json")):
    c = json.loads(card.read_text())
    if c.get("kind") == "classifier" and "gradcam" in c.get("signatures", ["gradcam"]):
        print(card.parents[2].name, c["input_size"][0])
        break
EOF
) || true
[ -n "${MODEL:-}" ] || fail "no classifier with a gradcam signature under $MODEL_ROOT"
log "model root $MODEL_ROOT; smoke model $MODEL (${SIZE}x${SIZE})"

# ------------------------------------------------------------------------------------ run
run_args=(--detach --name "$NAME"
          --publish "127.0.0.1:${HOST_PORT:-}:8500"
          --publish "127.0.0.1:${HOST_REST_PORT:-}:8501"
          --volume "$MODEL_ROOT:/models:ro"
          --read-only --cap-drop ALL --security-opt no-new-privileges)
# Without systemd podman cannot schedule the periodic health check (the check itself is run below).
[ -S /run/systemd/private ] || run_args+=(--health-interval disable)
log "starting $NAME"
start=$(date +%s)
podman run "${run_args[@]}" "$IMAGE" > /dev/null
ADDRESS="$(podman port "$NAME" 8500/tcp | head -1)"
case "$ADDRESS" in
    127.0.0.1:*) ;;
    *) fail "port 8500 is published on '$ADDRESS', not on 127.0.0.1 only" ;;
esac
REST_ADDRESS="$(podman port "$NAME" 8501/tcp | head -1)"
case "$REST_ADDRESS" in
    127.0.0.1:*) ;;
    *) fail "port 8501 is published on '$REST_ADDRESS', not on 127.0.0.1 only" ;;
esac
log "published on $ADDRESS (gRPC) and $REST_ADDRESS (HTTP)"

UID_IN="$(podman exec "$NAME" id -u)"
[ "$UID_IN" != 0 ] || fail "the server runs as root"
log "runs as uid $UID_IN"

if ! "$PYTHON" deploy/smoke_client.py --address "$ADDRESS" --model "$MODEL" --size "$SIZE" --wait 180; then
    podman logs "$NAME" 2>&1 | tail -40 >&2
    fail "smoke client"
fi
log "serving $(( $(date +%s) - start )) s after start"
# HTTP: TF Serving REST :predict (serving_default and gradcam), KServe :explain and the viewer page,
# with the standard library only (no project code).
if ! "$PYTHON" - "$REST_ADDRESS" "$MODEL" "$SIZE" <<'PY'
import json, sys, urllib.request
address, model, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
base = f"http://{address}"
image = [[[(x * 7 + y * 3 + c * 50) % 256 for c in range(3)] for x in range(size)] for y in range(size)]
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())
status = json.loads(urllib.request.urlopen(f"{base}/v1/models/{model}", timeout=30).read())
assert status["model_version_status"][0]["state"] == "AVAILABLE" and status["ready"], status
probs = post(f"/v1/models/{model}:predict", {"instances": [image]})["predictions"][0]["probabilities"]
assert abs(sum(probs) - 1) < 1e-4, probs
cam = post(f"/v1/models/{model}:predict", {"signature_name": "gradcam", "instances": [{"images": image, "class_index": -1}]})
heat = cam["predictions"][0]["heatmap_upsampled"]
assert len(heat) == size and 0 <= min(map(min, heat)) and max(map(max, heat)) <= 1.0001, "gradcam heat map"
ks = post(f"/v1/models/{model}:explain", {"instances": [image], "method": "gradcam"})
assert ks["explanations"][0]["heatmap"] == heat, "KServe :explain differs from :predict gradcam"
page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
assert "cnn-explain viewer" in page and "viewer.js" in page
assert "loadModels" in urllib.request.urlopen(base + "/static/viewer.js", timeout=30).read().decode()
print(f"REST predict + gradcam + KServe explain + viewer OK (p = {max(probs):.3f})")
PY
then
    podman logs "$NAME" 2>&1 | tail -40 >&2
    fail "HTTP smoke (REST :predict, KServe :explain, viewer)"
fi
log "HTTP: REST, KServe and the viewer answer"
podman healthcheck run "$NAME" > /dev/null || fail "the image's HEALTHCHECK (python -m serving.healthcheck) is not healthy"
log "HEALTHCHECK: healthy"

# ------------------------------------------------------------------------------------ stop
log "SIGTERM (podman stop -t $STOP_TIMEOUT)"
start=$(date +%s)
podman stop -t "$STOP_TIMEOUT" "$NAME" > /dev/null
took=$(( $(date +%s) - start ))
CODE="$(podman inspect "$NAME" --format '{{.State.ExitCode}}')"
if [ "$CODE" != 0 ]; then
    podman logs "$NAME" 2>&1 | tail -20 >&2
    fail "exit status $CODE after SIGTERM (137 = killed after the timeout)"
fi
[ "$took" -lt "$STOP_TIMEOUT" ] || fail "stop took $took s (the kill timeout)"
# Logs to a file first: `podman logs | grep -q` fails under pipefail when grep exits before podman
# has written everything (SIGPIPE), as it does once the log is long.
podman logs "$NAME" > "$WORK/server.log" 2>&1 || true
grep -q "SIGTERM" "$WORK/server.log" || fail "the server did not log the SIGTERM"
log "stopped cleanly in $took s (exit status 0)"
echo "SMOKE OK: image $IMAGE, model $MODEL"
