#!/usr/bin/env bash
# Builds the container image with podman and checks it the way KServe runs it: as uid
# 1000, read-only root filesystem with only /tmp writable (an emptyDir), the digits
# example mounted read-only at /mnt/models as KServe's storage initializer leaves it,
# KServe's arguments. Checks readiness, v1 REST and v2 gRPC predictions, and that
# SIGTERM ends the container with exit code 0 within the grace period. Does this for
# two storage layouts: a bare .mar, and KServe's TorchServe layout
# (config/config.properties + model-store/*.mar).
#
# Not part of scripts/test.sh: the first build takes many minutes (torch wheels).
# Needs root (or sudo) on Debian/Ubuntu to install podman, mmdebstrap and runc if missing.
# No registry needed: the base image is built from Debian's packages with mmdebstrap
# (python3 + python3-venv of bookworm) unless BASE_IMAGE names another one.
#
# The build's pip uses this machine's pip configuration (`pip config list`: PIP_*
# variables and pip.conf files), passed as PIP_* build args; directories and files it
# names (find-links, file:// indexes, CA bundle, constraints) are mounted read-only into
# the build. If a CPU torch wheel lies in a find-links directory, it is used instead of
# download.pytorch.org (TORCH_PACKAGES/TORCH_INDEX/TORCH_FIND_LINKS override).
#
# Environment (all optional):
#   IMAGE            tag to build and test (kserve-torchserve:latest)
#   BASE_IMAGE       base for both stages (localhost/bookworm-python:3.11, built here)
#   TORCH_VARIANT, TORCH_INDEX, TORCH_PACKAGES, TORCH_FIND_LINKS   build args (Dockerfile)
#   IMAGE_TEST_DIR   scratch: base rootfs tar, digits example (/tmp/kserve-torchserve-image-test)
#   GRACE_S          grace period the container gets on SIGTERM (30)
#   READY_TIMEOUT_S  seconds to wait for /v2/health/ready (300)
#   SKIP_BUILD=1     test the image already tagged IMAGE
#   PODMAN_STORAGE_DRIVER (vfs), PODMAN_RUNTIME (runc): what podman needs on these machines
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

IMAGE=${IMAGE:-kserve-torchserve:latest}
BASE_IMAGE=${BASE_IMAGE:-localhost/bookworm-python:3.11}
WORK=${IMAGE_TEST_DIR:-/tmp/kserve-torchserve-image-test}
GRACE_S=${GRACE_S:-30}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-300}
PODMAN=(podman --storage-driver "${PODMAN_STORAGE_DRIVER:-vfs}" --runtime "${PODMAN_RUNTIME:-runc}")
# Host network (no CNI/netavark setup needed); TorchServe's Java wants many files.
NET_OPTS=(--network host --ulimit nofile=20000:20000 --ulimit nproc=4096:4096)
NAME_PREFIX=kserve-torchserve-image-test

log() { echo "[test-image] $*"; }
STATUS=FAIL
STEP="start"
SUMMARY=()
CONTAINERS=()

cleanup() {
  local rc=$?
  for c in ${CONTAINERS[@]+"${CONTAINERS[@]}"}; do
    "${PODMAN[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  echo
  for line in ${SUMMARY[@]+"${SUMMARY[@]}"}; do echo "[test-image]   $line"; done
  if [ "$STATUS" = PASS ] && [ "$rc" -eq 0 ]; then
    echo "[test-image] PASS: $IMAGE"
  else
    echo "[test-image] FAIL: $IMAGE (at: $STEP)"
    [ "$rc" -ne 0 ] || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "[test-image] error: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# ------------------------------------------------------------------ tools
STEP="tools"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
if [ "$BASE_IMAGE" = localhost/bookworm-python:3.11 ]; then
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
fi
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (apt)"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}" uidmap
fi
mkdir -p "$WORK"

# ------------------------------------------------------------------ base image
STEP="base image"
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  if [ "$BASE_IMAGE" = localhost/bookworm-python:3.11 ]; then
    log "building $BASE_IMAGE from Debian bookworm (mmdebstrap, minbase + python3, python3-venv)"
    rm -f "$WORK/base.tar.tmp"
    $SUDO mmdebstrap --variant=minbase --format=tar --include=python3,python3-venv,ca-certificates bookworm \
      "$WORK/base.tar.tmp" \
      "deb http://deb.debian.org/debian bookworm main" \
      "deb http://deb.debian.org/debian bookworm-updates main" \
      "deb http://deb.debian.org/debian-security bookworm-security main"
    mv "$WORK/base.tar.tmp" "$WORK/base.tar"
    "${PODMAN[@]}" import --quiet \
      --change 'ENV LANG=C.UTF-8' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' \
      "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/base.tar"
  else
    log "$BASE_IMAGE is not here: podman build will pull it"
  fi
fi

# ------------------------------------------------------------------ digits example
STEP="digits example"
./scripts/setup.sh
PY=$ROOT/.venv/bin/python
DIGITS=$WORK/digits
if [ ! -f "$DIGITS/model-store/digits.mar" ] || [ ! -f "$DIGITS/request.json" ] \
   || [ examples/digits/handler.py -nt "$DIGITS/model-store/digits.mar" ] \
   || [ scripts/build_digits_example.py -nt "$DIGITS/model-store/digits.mar" ]; then
  "$PY" scripts/build_digits_example.py --out "$DIGITS"
fi
# What KServe's storage initializer leaves in /mnt/models, for the two layouts.
MAR_ONLY=$WORK/mnt-models-mar
KSERVE_LAYOUT=$WORK/mnt-models-kserve
rm -rf "$MAR_ONLY" "$KSERVE_LAYOUT"
mkdir -p "$MAR_ONLY" "$KSERVE_LAYOUT/config" "$KSERVE_LAYOUT/model-store"
cp "$DIGITS/model-store/digits.mar" "$MAR_ONLY/"
cp "$DIGITS/model-store/digits.mar" "$KSERVE_LAYOUT/model-store/"
# The config.properties of KServe's TorchServe examples (addresses and ports are the
# runtime's own; model_snapshot names the model and its workers).
cat > "$KSERVE_LAYOUT/config/config.properties" <<'EOF'
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_port=7070
grpc_management_port=7071
enable_metrics_api=true
metrics_format=prometheus
number_of_netty_threads=4
job_queue_size=10
enable_envvars_config=true
install_py_dep_per_model=true
model_store=/mnt/models/model-store
model_snapshot={"name":"startup.cfg","modelCount":1,"models":{"digits":{"1.0":{"defaultVersion":true,"marName":"digits.mar","minWorkers":1,"maxWorkers":1,"batchSize":1,"maxBatchDelay":10,"responseTimeout":120}}}}
EOF
# Readable by uid 1000 (the container's user), like the storage initializer's files.
chmod -R a+rX "$MAR_ONLY" "$KSERVE_LAYOUT"

# ------------------------------------------------------------------ build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  STEP="pip configuration"
  # This machine's effective pip settings -> PIP_* build args the Dockerfile declares,
  # and the local paths they name -> read-only mounts at the same paths.
  declared=$(grep -oE '^ARG PIP_[A-Z_]+' Dockerfile | cut -d' ' -f2 | tr '\n' ' ')
  pipcfg=$("$PY" -m pip config list 2>/dev/null || true)
  mapfile -t PIP_LINES < <(DECLARED="$declared" PIPCFG="$pipcfg" python3 - <<'EOF'
import ast, os, urllib.parse
declared = set(os.environ["DECLARED"].split())
files, env = {}, {}
for line in os.environ["PIPCFG"].splitlines():
    key, _, value = line.partition("=")
    if not _ or "." not in key:
        continue
    section, _, name = key.rpartition(".")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    if section not in (":env:", "global", "install"):
        continue
    var = "PIP_" + name.upper().replace("-", "_")
    (env if section == ":env:" else files)[var] = str(value)
settings = {**files, **env}  # PIP_* variables beat pip.conf, as in pip
mounts = []
for var, value in sorted(settings.items()):
    if var not in declared:
        print(f"SKIP {var}")
        continue
    print(f"ARG {var}={value}")
    for token in value.split():
        path = urllib.parse.urlparse(token).path if token.startswith("file://") else token
        if not path.startswith("/"):
            continue
        if path.rstrip("/").endswith("/simple"):  # a PEP 503 index links to ../files etc.
            path = os.path.dirname(path.rstrip("/"))
        if os.path.exists(path) and path != "/":
            mounts.append(os.path.realpath(path) + ":" + path)
for m in dict.fromkeys(mounts):
    print(f"MOUNT {m}")
EOF
  )
  BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  MOUNTS=()
  FIND_LINK_DIRS=()
  CFG_INDEX_URL=""
  for line in "${PIP_LINES[@]}"; do
    case "$line" in
      "ARG "*) BUILD_ARGS+=(--build-arg "${line#ARG }"); log "build arg ${line#ARG }"
               case "${line#ARG }" in
                 PIP_FIND_LINKS=*) read -r -a FIND_LINK_DIRS <<< "${line#ARG PIP_FIND_LINKS=}" ;;
                 PIP_INDEX_URL=*) CFG_INDEX_URL=${line#ARG PIP_INDEX_URL=} ;;
               esac ;;
      "MOUNT "*) src=${line#MOUNT }; src=${src%%:*}; dst=${line#*:}
                 MOUNTS+=(--volume "$src:$dst:ro"); log "mount $src -> $dst (ro)" ;;
      "SKIP "*) log "pip setting ${line#SKIP } not forwarded (no ARG for it in the Dockerfile)" ;;
    esac
  done

  STEP="torch wheels"
  # A CPU torch wheel on local disk (no download.pytorch.org here): use it, with the
  # torchvision of the same release line (torch 2.N <-> torchvision 0.(N+15)).
  pytag=$("${PODMAN[@]}" run --rm "${NET_OPTS[@]}" "$BASE_IMAGE" python3 -c \
    'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  if [ -z "${TORCH_PACKAGES:-}" ]; then
    search=(${TORCH_FIND_LINKS:+"$TORCH_FIND_LINKS"} ${FIND_LINK_DIRS[@]+"${FIND_LINK_DIRS[@]}"})
    wheel=""
    for d in ${search[@]+"${search[@]}"}; do
      [ -d "$d" ] || continue
      wheel=$(find "$d" -maxdepth 1 -name "torch-*+cpu-$pytag-$pytag-*$(uname -m).whl" | sort -V | tail -1)
      [ -z "$wheel" ] || break
    done
    if [ -n "$wheel" ]; then
      tver=$(basename "$wheel" | cut -d- -f2)            # 2.13.0+cpu
      minor=$(echo "$tver" | cut -d. -f2)
      TORCH_PACKAGES="torch==$tver torchvision==0.$((minor + 15)).*"
      TORCH_FIND_LINKS=${TORCH_FIND_LINKS:-$(dirname "$wheel")}
      TORCH_INDEX=${TORCH_INDEX:-${CFG_INDEX_URL:-https://pypi.org/simple}}  # for torchvision and deps
      log "CPU torch from $wheel; torchvision from the configured indexes"
    fi
  fi
  if [ -n "${TORCH_FIND_LINKS:-}" ] && [ -d "$TORCH_FIND_LINKS" ]; then
    case " ${MOUNTS[*]-} " in
      *" $TORCH_FIND_LINKS:"*) ;;
      *) MOUNTS+=(--volume "$TORCH_FIND_LINKS:$TORCH_FIND_LINKS:ro") ;;
    esac
  fi
  for v in TORCH_VARIANT TORCH_INDEX TORCH_PACKAGES TORCH_FIND_LINKS; do
    if [ -n "${!v:-}" ]; then BUILD_ARGS+=(--build-arg "$v=${!v}"); log "build arg $v=${!v}"; fi
  done

  STEP="build"
  log "building $IMAGE (the first build takes many minutes)"
  old_id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  t0=$(now)
  "${PODMAN[@]}" build "${NET_OPTS[@]}" --layers "${BUILD_ARGS[@]}" ${MOUNTS[@]+"${MOUNTS[@]}"} \
    -f Dockerfile -t "$IMAGE" .
  SUMMARY+=("build: $(since "$t0") s")
  # The image this build replaced (and its layers no other image uses; the build cache
  # stays): vfs keeps every layer as a full copy, gigabytes each.
  new_id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")
  if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    "${PODMAN[@]}" rmi "$old_id" >/dev/null 2>&1 || true
  fi
fi
"${PODMAN[@]}" image exists "$IMAGE" || fail "no image $IMAGE"
"${PODMAN[@]}" image ls "$IMAGE"
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
SUMMARY+=("image size: $(python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e9:.2f} GB ({int(sys.argv[1]) / 2**30:.2f} GiB)')" "$size")")

# ------------------------------------------------------------------ run and check
STEP="image contents"
# torch, and torchvision built for the same torch: TorchServe's vision handlers import it.
probe=$(cat <<'EOF'
from importlib.metadata import version
import torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), torchvision {version('torchvision')}", end=": ")
try:
    import torchvision
    print("imports")
except Exception as e:
    print(f"does not import ({type(e).__name__}: {e})")
EOF
)
tv_report=$("${PODMAN[@]}" run --rm "${NET_OPTS[@]}" --read-only --entrypoint /opt/kserve-torchserve/bin/python \
  "$IMAGE" -c "$probe" 2>&1 | tail -1) || fail "could not run python in $IMAGE: $tv_report"
log "$tv_report"
cpu_torch_pypi_vision='^torch [^ ]+\+cpu .*torchvision [^ +:]+: does not import'
if [[ "$tv_report" == *": imports" ]]; then
  SUMMARY+=("$tv_report")
elif [[ "$tv_report" =~ $cpu_torch_pypi_vision ]]; then
  # A +cpu torch beside a torchvision without +cpu: the local CPU torch wheel stood in
  # for download.pytorch.org, and only PyPI's (CUDA-built) torchvision was reachable.
  SUMMARY+=("WARNING: $tv_report"
            "  (PyPI's CUDA-built torchvision beside a CPU torch: TorchServe's vision handlers cannot run"
            "  in this image; the default build takes both from download.pytorch.org/whl/cpu)")
else
  fail "$tv_report"
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

check_layout() {
  local label=$1 models=$2
  local name="$NAME_PREFIX-$label-$$" http grpc t0 code elapsed
  local extra_args=()  # KServe's arguments exactly, unless another grace period is asked for
  [ "$GRACE_S" = 30 ] || extra_args=(--grace_period="$GRACE_S")
  http=$(free_port); grpc=$(free_port)
  while [ "$grpc" = "$http" ]; do grpc=$(free_port); done
  STEP="$label: start"
  log "[$label] run: uid 1000, read-only root, /tmp a tmpfs, $models -> /mnt/models (ro), ports $http/$grpc"
  "${PODMAN[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  t0=$(now)
  CONTAINERS+=("$name")
  "${PODMAN[@]}" run -d --name "$name" "${NET_OPTS[@]}" \
    --user 1000:1000 --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,mode=1777,size=2g \
    --volume "$models:/mnt/models:ro" \
    "$IMAGE" --model_name=digits --storage_uri=/mnt/models --http_port="$http" --grpc_port="$grpc" \
    ${extra_args[@]+"${extra_args[@]}"} >/dev/null

  STEP="$label: ready"
  local deadline=$(( $(date +%s) + READY_TIMEOUT_S ))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/v2/health/ready")" = 200 ]; do
    if [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$name")" != true ]; then
      "${PODMAN[@]}" logs "$name" 2>&1 | tail -60
      fail "[$label] container exited before it was ready"
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
      "${PODMAN[@]}" logs "$name" 2>&1 | tail -60
      fail "[$label] not ready within ${READY_TIMEOUT_S}s"
    fi
    sleep 0.5
  done
  local ready_s started ready_server_s
  ready_s=$(since "$t0")
  # From the container's start: podman run itself first copies the image (vfs).
  started=$("${PODMAN[@]}" inspect -f '{{.State.StartedAt.UnixNano}}' "$name")
  ready_server_s=$(python3 -c "import sys, time; print(f'{time.time() - int(sys.argv[1]) / 1e9:.1f}')" "$started")
  log "[$label] ready ${ready_server_s}s after the container started (${ready_s}s after podman run)"

  STEP="$label: v1 predict"
  local answer
  answer=$(curl -s -f -X POST "http://127.0.0.1:$http/v1/models/digits:predict" \
    -H 'Content-Type: application/json' -d @"$DIGITS/request.json") \
    || fail "[$label] v1 predict failed: $answer"
  ANSWER="$answer" python3 - "$DIGITS/request.json" "$DIGITS/heldout.json" <<'EOF' || fail "[$label] bad v1 answer"
import json, os, sys
req = json.load(open(sys.argv[1])); labels = json.load(open(sys.argv[2]))["labels"]
preds = json.loads(os.environ["ANSWER"])["predictions"]
assert len(preds) == len(req["instances"]), f"{len(preds)} predictions for {len(req['instances'])} instances"
for i, p in enumerate(preds):
    assert isinstance(p, list) and len(p) == 10, f"instance {i}: not 10 probabilities: {p!r}"
    assert abs(sum(p) - 1) < 1e-3, f"instance {i}: probabilities sum to {sum(p)}"
top = [max(range(10), key=p.__getitem__) for p in preds]
assert top == labels[:len(top)], f"classes {top}, labels {labels[:len(top)]}"
print(f"[test-image]   v1: {len(preds)} x 10 probabilities, classes {top} = labels")
EOF

  STEP="$label: v2 gRPC"
  "$PY" - "$grpc" "$DIGITS/request.json" "$DIGITS/heldout.json" <<'EOF' || fail "[$label] v2 gRPC predict failed"
import json, sys
import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb, grpc_predict_v2_pb2_grpc as pbg

port, req, heldout = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
pixels = [float(v) for v in req["instances"][0]]
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = pbg.GRPCInferenceServiceStub(channel)
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready, "ServerReady false"
    assert stub.ModelReady(pb.ModelReadyRequest(name="digits"), timeout=10).ready, "ModelReady false"
    resp = stub.ModelInfer(pb.ModelInferRequest(
        model_name="digits",
        inputs=[pb.ModelInferRequest.InferInputTensor(
            name="pixels", datatype="FP32", shape=[1, 64],
            contents=pb.InferTensorContents(fp32_contents=pixels))]), timeout=30)
out = resp.outputs[0]
dtypes = {"FP32": np.float32, "FP64": np.float64}
if resp.raw_output_contents:
    values = np.frombuffer(resp.raw_output_contents[0], dtype=dtypes[out.datatype])
else:
    values = np.array(out.contents.fp32_contents or out.contents.fp64_contents)
assert list(out.shape) == [1, 10] and values.size == 10, f"output {out.name} shape {list(out.shape)}, {values.size} values"
top = int(values.argmax())
assert top == heldout["labels"][0], f"class {top}, label {heldout['labels'][0]}"
print(f"[test-image]   v2 gRPC: {out.name} {out.datatype} {list(out.shape)}, class {top} = label")
EOF

  STEP="$label: read-only"
  # The precompiled gRPC stubs were found: nothing was compiled into /tmp at start.
  if "${PODMAN[@]}" exec "$name" sh -c 'ls -d /tmp/kserve_torchserve_protos' >/dev/null 2>&1; then
    fail "[$label] the gRPC stubs were recompiled at start (the image's cache was not used)"
  fi
  if "${PODMAN[@]}" logs "$name" 2>&1 | grep -E 'Read-only file system|PermissionError|Traceback' ; then
    fail "[$label] errors in the container's log (above)"
  fi

  STEP="$label: SIGTERM"
  t0=$(now)
  "${PODMAN[@]}" kill --signal TERM "$name" >/dev/null
  code=$(timeout $((GRACE_S + 30)) "${PODMAN[@]}" wait "$name") || fail "[$label] still running $((GRACE_S + 30))s after SIGTERM"
  elapsed=$(since "$t0")
  log "[$label] exit code $code ${elapsed}s after SIGTERM"
  if [ "$code" != 0 ]; then
    "${PODMAN[@]}" logs "$name" 2>&1 | tail -40
    fail "[$label] exit code $code after SIGTERM (want 0)"
  fi
  python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$elapsed" "$GRACE_S" \
    || fail "[$label] took ${elapsed}s to exit, grace period ${GRACE_S}s"
  "${PODMAN[@]}" rm -f -t 0 "$name" >/dev/null
  SUMMARY+=("$label: ready ${ready_server_s}s after the container started (${ready_s}s after podman run); v1 REST + v2 gRPC ok; SIGTERM -> exit 0 in ${elapsed}s (grace ${GRACE_S}s)")
}

check_layout mar "$MAR_ONLY"
check_layout kserve-layout "$KSERVE_LAYOUT"
STEP="done"
STATUS=PASS
