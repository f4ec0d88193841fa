#!/usr/bin/env bash
# Smoke test of the deployment: build both images, start docker-compose.yml, wait for health,
# upload a tiny dataset, train through the API, predict with the new version, tear down.
# Exits 0 on success, 1 on any failure, 77 (skipped) with the reason when this machine cannot
# run containers. Runs with podman + podman-compose; the work-arounds this kind of machine needs
# (a locally built base image, chroot isolation for builds, runc and lower ulimits to run) live
# here, never in the Dockerfile or the compose file.
set -euo pipefail
cd "$(dirname "$0")/.."

SKIP=77
PROJECT=bear-smoke
PORT=${SMOKE_PORT:-18765}
GRPC_PORT=${SMOKE_GRPC_PORT:-18766}
KEY=smoke-test-key-0123
BASE_TOOL=${CONTAINER_BASE_TOOL:-../shared/tools/container-base.sh}
WORK=$(mktemp -d)
log() { printf '[smoke] %s\n' "$*" >&2; }
skip() { log "SKIPPED: $*"; exit "$SKIP"; }

# --- can this machine run containers? -------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v podman-compose >/dev/null; then
  [ "$(id -u)" = 0 ] || skip "podman/podman-compose are missing and installing them needs root"
  [ -x "$BASE_TOOL" ] || [ -f "$BASE_TOOL" ] || skip "podman is missing and $BASE_TOOL is not here"
fi
if [ -f "$BASE_TOOL" ]; then
  bash "$BASE_TOOL" >&2 || skip "$BASE_TOOL could not prepare podman and the base image"
  MOUNTS=$(bash "$BASE_TOOL" --build-mounts)
else
  MOUNTS=""
fi
podman image exists docker.io/library/python:3.11-slim \
  || skip "no python:3.11-slim base image and no registry to pull it from"
case "$MOUNTS" in
  *:/wheels:*) ;;  # the local CPU torch wheel; the PyTorch CPU index is not reachable here
  *) skip "no local wheel folder with the CPU torch build (PyPI's torch is the multi-GB CUDA one)" ;;
esac

# podman on this machine: runc (crun needs cgroup v2) and ulimits within the VM's hard limits
cat > "$WORK/containers.conf" <<CONF
[engine]
runtime = "runc"
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
CONF
export CONTAINERS_CONF="$WORK/containers.conf"
export BEAR_API_KEY=$KEY BEAR_PORT=$PORT BEAR_GRPC_PORT=$GRPC_PORT

compose() { podman-compose -p "$PROJECT" -f docker-compose.yml "$@"; }
cleanup() {
  status=$?
  if [ "$status" != 0 ] && [ "$status" != "$SKIP" ]; then
    log "failed (exit $status); last logs:"
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" >&2 2>&1 || true
    for service in api worker; do
      log "logs of $service:"
      podman logs --tail 30 "${PROJECT}_${service}_1" >&2 2>&1 || true
    done
  fi
  compose down -v >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- build --------------------------------------------------------------------------------------
# shellcheck disable=SC2086  # MOUNTS is a list of flags
for target in serve trainer; do
  log "building the $target image"
  start=$(date +%s)
  podman build --isolation chroot --format docker $MOUNTS --build-arg TORCH_INDEX_URL= \
    --target "$target" -t "bear-$target:latest" . >"$WORK/build-$target.log" 2>&1 \
    || { tail -20 "$WORK/build-$target.log" >&2; exit 1; }
  size=$(podman image inspect "bear-$target:latest" --format '{{.Size}}')
  log "bear-$target:latest: $((size / 1000000)) MB, built in $(( $(date +%s) - start )) s"
done

# --- start and wait for health ------------------------------------------------------------------
log "starting the compose stack"
compose up -d --no-build >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log" >&2; exit 1; }
api="http://127.0.0.1:$PORT"
for _ in $(seq 1 60); do
  curl -fsS "$api/v2/health/ready" >/dev/null 2>&1 && break
  sleep 2
done
curl -fsS "$api/v2/health/ready" >/dev/null || { log "the API never became ready"; exit 1; }
log "API ready at $api"

# --- dataset -> train -> predict ----------------------------------------------------------------
chmod 777 "$WORK"
podman run --rm -v "$WORK:/out" --entrypoint python bear-trainer:latest \
  -m bear_core generate --kind medium --episodes 4 --seed 0 --out /out/data.h5 >&2
dataset=$(curl -fsS -H "X-API-Key: $KEY" -F "file=@$WORK/data.h5" "$api/datasets")
dataset_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$dataset")
log "uploaded dataset $dataset_id"

body=$(cat <<JSON
{"dataset_id": "$dataset_id", "model_name": "smoke", "n_steps": 40, "seed": 0, "promote": true,
 "params": {"batch_size": 32, "encoder_params": {"hidden_units": [32, 32]}}}
JSON
)
job=$(curl -fsS -H "X-API-Key: $KEY" -H "Content-Type: application/json" -d "$body" "$api/train")
job_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$job")
log "training job $job_id queued"
state=""
for _ in $(seq 1 150); do
  state=$(curl -fsS "$api/jobs/$job_id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  case "$state" in succeeded|failed|cancelled) break ;; esac
  sleep 2
done
[ "$state" = succeeded ] || { log "job ended as '$state'"; curl -fsS "$api/jobs/$job_id/logs" >&2 || true; exit 1; }
log "job succeeded"

# the API picks up the version the worker published within its store-sync interval
prediction=""
for _ in $(seq 1 30); do
  prediction=$(curl -fsS -H "Content-Type: application/json" \
    -d '{"observations": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]]}' "$api/models/smoke/predict") && break
  sleep 1
done
[ -n "$prediction" ] || { log "the API never served model 'smoke'"; exit 1; }
python3 - "$prediction" <<'PY'
import json, sys
reply = json.loads(sys.argv[1])
actions = reply["actions"]
assert len(actions) == 2 and len(actions[0]) == 1, reply
assert all(-2.0 <= a[0] <= 2.0 for a in actions), reply
print(f"[smoke] predict: model {reply['model']} version {reply['version']} -> {actions}", file=sys.stderr)
PY
log "OK"
