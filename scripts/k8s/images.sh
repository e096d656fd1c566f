#!/usr/bin/env bash
# The project's images on the test bed (docs/k8s-test-bed.md), built with the local base images
# of scripts/base-images.sh (no registry is reachable) and the classic `docker build`:
#   scripts/k8s/images.sh build [services|kafka ...]  build the images (default: all)
#   scripts/k8s/images.sh check                       run each image and check it (below)
#   scripts/k8s/images.sh load                        kind load them into the bed's cluster
#   scripts/k8s/images.sh names                       print the image names
#
# Service images <IMAGE_PREFIX>/<binary>:<IMAGE_TAG> (order-service, inventory-service,
# analytics-service, replay-controller), as the chart names them:
#   IMAGES_FROM=prebuilt (default)  Dockerfile.prebuilt: the release binaries already built on this
#                                   machine ($CARGO_TARGET_DIR/release, else target/release; make
#                                   build), so the workspace is compiled once
#   IMAGES_FROM=source              ./Dockerfile itself, whole: the workspace compiled inside Docker
#                                   on RUST_IMAGE (default: orderflow.local/rust:bookworm, made by
#                                   scripts/k8s/rust-image.sh), without network (--network none)
#   Both pass RUNTIME_IMAGE=orderflow.local/debian:bookworm-slim as a build argument.
# Kafka image <IMAGE_PREFIX>/kafka:4.3.1: images/kafka/Dockerfile on the jars of
#   `scripts/kafka.sh install`, with JRE_IMAGE=orderflow.local/debian-jre:bookworm.
#
# `check` runs the images on a Docker network of their own (orderflow-check) the way the chart runs
# them: read-only root filesystem, all capabilities dropped, no privilege escalation, the image's
# user. For each: the user is 65532 and not root, PID 1 is the program itself (not a shell), the
# root filesystem refuses writes, GET /healthz answers 200 and /readyz too (on the Kafka container
# of the same network), and a SIGTERM stops it cleanly (exit 0; Kafka's JVM: 143 once its shutdown
# hook logged its last step, "App info kafka.server ... unregistered") within CHECK_STOP_TIMEOUT (30 s). replay-controller needs a Kubernetes API: with the
# bed's cluster running it gets its kubeconfig (kind's internal address) and the kind network,
# and the chart's CRD is applied to the cluster first; without a cluster it is skipped (reported). Every container it starts is removed.
# Environment: IMAGE_PREFIX (orderflow), IMAGE_TAG (dev), KIND_CLUSTER (orderflow), ORDERFLOW_CACHE.
set -euo pipefail
cd "$(dirname "$0")/../.."

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
PREFIX=${IMAGE_PREFIX:-orderflow}
TAG=${IMAGE_TAG:-dev}
KAFKA_VERSION=4.3.1
CLUSTER=${KIND_CLUSTER:-orderflow}
SERVICES=(order-service inventory-service analytics-service replay-controller)
NET=orderflow-check
[ -n "${DOCKER_HOST:-}" ] || eval "$(scripts/docker.sh env)"
# kind and kubectl of the bed (scripts/k8s/build-kubernetes.sh), when built
if env_out=$(scripts/k8s/build-kubernetes.sh --print-env 2>/dev/null); then eval "$env_out"; PATH=$KIND_BIN:$K8S_BIN:$PATH; fi
export DOCKER_BUILDKIT=0   # the classic builder (Docker 20.10 here); BuildKit would pull its frontend

say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }

port_of() { case "$1" in order-service) echo 8080 ;; inventory-service) echo 8081 ;; analytics-service) echo 8082 ;; replay-controller) echo 8083 ;; esac; }

base() { # base KIND: the local base image, made when missing
  local name; name=$(scripts/base-images.sh --name "$1")
  docker image inspect "$name" >/dev/null 2>&1 || scripts/base-images.sh "$1" >&2
  echo "$name"
}

bin_dir() { echo "${CARGO_TARGET_DIR:-$PWD/target}/release"; }

build_services() {
  local runtime from=${IMAGES_FROM:-prebuilt} t0=$SECONDS s
  runtime=$(base slim)
  case "$from" in
    prebuilt)
      local bins ctx; bins=$(bin_dir)
      for s in "${SERVICES[@]}" orderflowctl; do
        [ -x "$bins/$s" ] || die "no $bins/$s: build the release binaries first (make build)"
      done
      ctx=$(mktemp -d "$CACHE/images-ctx.XXXXXX")
      # shellcheck disable=SC2064
      trap "rm -rf '$ctx'" RETURN
      mkdir -p "$ctx/bin"
      for s in "${SERVICES[@]}" orderflowctl; do ln "$bins/$s" "$ctx/bin/$s" 2>/dev/null || cp "$bins/$s" "$ctx/bin/$s"; done
      for s in "${SERVICES[@]}"; do
        say "docker build -f Dockerfile.prebuilt $PREFIX/$s:$TAG (binaries of $bins)"
        docker build -f Dockerfile.prebuilt --build-arg RUNTIME_IMAGE="$runtime" --build-arg SERVICE="$s" \
          -t "$PREFIX/$s:$TAG" "$ctx" >"$CACHE/images-$s.log" 2>&1 \
          || { tail -30 "$CACHE/images-$s.log" >&2; die "docker build of $s failed (log $CACHE/images-$s.log)"; }
      done ;;
    source)
      local rust=${RUST_IMAGE:-orderflow.local/rust:bookworm}
      docker image inspect "$rust" >/dev/null 2>&1 || scripts/k8s/rust-image.sh >&2
      for s in "${SERVICES[@]}"; do
        say "docker build (./Dockerfile, RUST_IMAGE=$rust) $PREFIX/$s:$TAG"
        docker build --network none --build-arg RUST_IMAGE="$rust" --build-arg RUNTIME_IMAGE="$runtime" \
          --build-arg SERVICE="$s" -t "$PREFIX/$s:$TAG" . >"$CACHE/images-$s.log" 2>&1 \
          || { tail -30 "$CACHE/images-$s.log" >&2; die "docker build of $s failed (log $CACHE/images-$s.log)"; }
      done ;;
    *) die "IMAGES_FROM must be prebuilt or source, not '$from'" ;;
  esac
  say "service images built in $((SECONDS - t0))s (from $from)"
}

build_kafka() {
  local jre libs ctx t0=$SECONDS
  scripts/kafka.sh install
  libs=$CACHE/kafka-$KAFKA_VERSION/libs
  [ -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ] || die "no Kafka jars in $libs (scripts/kafka.sh install)"
  jre=$(base jre)
  ctx=$(mktemp -d "$CACHE/images-ctx.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" RETURN
  cp -a images/kafka/. "$ctx/"
  cp -al "$libs" "$ctx/libs" 2>/dev/null || cp -a "$libs" "$ctx/libs"
  say "docker build images/kafka $PREFIX/kafka:$KAFKA_VERSION (JRE_IMAGE=$jre, $(find "$libs" -name '*.jar' | wc -l) jars)"
  docker build --build-arg JRE_IMAGE="$jre" -t "$PREFIX/kafka:$KAFKA_VERSION" "$ctx" >"$CACHE/images-kafka.log" 2>&1 \
    || { tail -30 "$CACHE/images-kafka.log" >&2; die "docker build of the Kafka image failed (log $CACHE/images-kafka.log)"; }
  say "kafka image built in $((SECONDS - t0))s"
}

names() { for s in "${SERVICES[@]}"; do echo "$PREFIX/$s:$TAG"; done; echo "$PREFIX/kafka:$KAFKA_VERSION"; }

# ---------------------------------------------------------------- check

STARTED=()
cleanup_check() {
  local c
  for c in "${STARTED[@]}"; do docker rm -f -v "$c" >/dev/null 2>&1 || true; done
  docker network rm "$NET" >/dev/null 2>&1 || true
}

FAILS=0
ok() { echo "  ok    $*"; }
bad() { echo "  FAIL  $*"; FAILS=$((FAILS + 1)); }

ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$1"; }

# wait_http URL SECONDS: until it answers 200
wait_http() {
  local deadline=$((SECONDS + $2))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null)" = 200 ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.5
  done
}

run_hardened() { # run_hardened NAME IMAGE [docker create options...]: started detached like the chart
  # runs it; ALSO_NET: a second network joined before it starts
  local name=$1 image=$2; shift 2
  docker rm -f -v "$name" >/dev/null 2>&1 || true
  STARTED+=("$name")
  docker create --name "$name" --network "$NET" --read-only --cap-drop ALL \
    --security-opt no-new-privileges "$@" "$image" >/dev/null
  [ -z "${ALSO_NET:-}" ] || docker network connect "$ALSO_NET" "$name"
  docker start "$name" >/dev/null
}

common_checks() { # common_checks NAME COMM: user, PID 1, read-only root
  local c=$1 comm=$2 uid pid1
  uid=$(docker exec "$c" id -u 2>/dev/null || echo "?")
  if [ "$uid" = 65532 ]; then ok "$c runs as uid 65532 (image user $(docker inspect -f '{{.Config.User}}' "$c"))"; else bad "$c runs as uid $uid"; fi
  pid1=$(docker exec "$c" cat /proc/1/comm 2>/dev/null || echo "?")
  if [ "$pid1" = "${comm:0:15}" ]; then ok "$c: PID 1 is $pid1"; else bad "$c: PID 1 is '$pid1', not $comm"; fi
  if docker exec "$c" sh -c 'echo x > /usr/local/orderflow-write-test' 2>/dev/null; then bad "$c: the root filesystem took a write"
  else ok "$c: the root filesystem is read-only"; fi
}

stop_check() { # stop_check NAME OK_CODES...: SIGTERM, clean exit within the deadline
  local c=$1 t0=$SECONDS code deadline; shift
  deadline=$((SECONDS + ${CHECK_STOP_TIMEOUT:-30}))
  docker kill -s TERM "$c" >/dev/null
  while [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ]; do
    [ $SECONDS -lt $deadline ] || { bad "$c did not stop within ${CHECK_STOP_TIMEOUT:-30}s of SIGTERM"; return; }
    sleep 0.2
  done
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  if [[ " $* " == *" $code "* ]]; then ok "$c: SIGTERM -> exit $code after $((SECONDS - t0))s"
  else bad "$c: SIGTERM -> exit $code (wanted $*)"; docker logs --tail 5 "$c" 2>&1 | sed 's/^/        /'; fi
}

check() {
  local s c kafka=orderflow-check-kafka kcfg=""
  trap cleanup_check EXIT
  while read -r s; do docker image inspect "$s" >/dev/null 2>&1 || die "no image $s: run $0 build"; done < <(names)
  docker network rm "$NET" >/dev/null 2>&1 || true
  docker network create "$NET" >/dev/null
  echo "== $PREFIX/kafka:$KAFKA_VERSION"
  # its data: the image's VOLUME (an anonymous volume, removed with the container)
  run_hardened "$kafka" "$PREFIX/kafka:$KAFKA_VERSION" --tmpfs /tmp -e KAFKA_ADVERTISED_LISTENERS="PLAINTEXT://$kafka:9092"
  local deadline=$((SECONDS + 90))
  until grep -q 'Kafka Server started' <<<"$(docker logs "$kafka" 2>&1)"; do
    [ "$(docker inspect -f '{{.State.Running}}' "$kafka")" = true ] || { docker logs --tail 20 "$kafka" >&2; die "the Kafka container exited"; }
    [ $SECONDS -lt $deadline ] || { docker logs --tail 20 "$kafka" >&2; die "Kafka did not start within 90 s"; }
    sleep 0.5
  done
  ok "$kafka: Kafka Server started"
  common_checks "$kafka" java

  if kind_ok; then
    kcfg=$(mktemp "$CACHE/check-kubeconfig.XXXXXX"); chmod 644 "$kcfg"
    kind get kubeconfig --internal --name "$CLUSTER" >"$kcfg"
    # the controller stops when its CRD is missing: the chart's, current (forced: a controller
    # of an earlier run, with controller.manageCrd, owns its fields as `replay-controller`)
    kubectl --kubeconfig "$CACHE/kind-bed/kubeconfig" apply --server-side --force-conflicts -f helm/orderflow/crds/ >/dev/null
  fi
  for s in "${SERVICES[@]}"; do
    c=orderflow-check-$s
    echo "== $PREFIX/$s:$TAG"
    local extra=(-e KAFKA_BOOTSTRAP="$kafka:9092")
    if [ "$s" = replay-controller ] && [ -n "$kcfg" ]; then extra+=(-v "$kcfg:/kubeconfig:ro" -e KUBECONFIG=/kubeconfig); fi
    if [ "$s" = replay-controller ] && [ -z "$kcfg" ]; then
      echo "  skip  $c: it needs a Kubernetes API (no kind cluster '$CLUSTER' running)"; continue
    fi
    local also=""
    if [ "$s" = replay-controller ]; then also=kind; fi
    ALSO_NET=$also run_hardened "$c" "$PREFIX/$s:$TAG" "${extra[@]}"
    local url
    url="http://$(ip_of "$c"):$(port_of "$s")"
    if wait_http "$url/healthz" 30; then ok "$c: GET /healthz 200"; else bad "$c: GET /healthz did not answer 200 within 30 s"; docker logs --tail 5 "$c" 2>&1 | sed 's/^/        /'; fi
    if wait_http "$url/readyz" 60; then ok "$c: GET /readyz 200"; else bad "$c: GET /readyz did not answer 200 within 60 s"; fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ]; then common_checks "$c" "$s"; else bad "$c exited: $(docker logs --tail 3 "$c" 2>&1)"; continue; fi
    local verdict rc=0
    verdict=$(docker logs "$c" 2>&1 | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try:
        json.loads(line); n += 1
    except ValueError:
        print("not JSON: " + line.strip()[:160]); sys.exit(1)
print(f"{n} lines, every one a JSON object")') || rc=$?
    if [ "$rc" = 0 ] && [[ "$verdict" != "0 lines"* ]]; then ok "$c logs: $verdict"; else bad "$c logs: $verdict"; fi
    stop_check "$c" 0
  done
  echo "== $PREFIX/kafka:$KAFKA_VERSION, stop"
  stop_check "$kafka" 0 143
  if [ "$(docker inspect -f '{{.State.ExitCode}}' "$kafka")" = 143 ] && ! grep -q 'App info kafka.server for .* unregistered' <<<"$(docker logs "$kafka" 2>&1)"; then
    bad "$kafka: no 'App info kafka.server ... unregistered' (the end of its shutdown) in its log after SIGTERM"; docker logs --tail 8 "$kafka" 2>&1 | sed 's/^/        /'
  fi
  [ -z "$kcfg" ] || rm -f "$kcfg"
  echo "images check: $FAILS failed"
  [ "$FAILS" = 0 ]
}

kind_ok() {
  command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null \
    && [ "$(docker inspect -f '{{.State.Running}}' "$CLUSTER-control-plane" 2>/dev/null)" = true ]
}

load() {
  kind_ok || die "no running kind cluster '$CLUSTER' (scripts/k8s/kind-bed.sh up)"
  local t0=$SECONDS i
  while read -r i; do kind load docker-image --name "$CLUSTER" "$i" >&2; done < <(names)
  say "loaded into kind in $((SECONDS - t0))s"
}

case "${1:-}" in
  build)
    shift
    [ $# -gt 0 ] || set -- services kafka
    for w in "$@"; do case "$w" in services) build_services ;; kafka) build_kafka ;; *) die "build what? services or kafka, not '$w'" ;; esac; done
    # each build re-tags :$TAG and leaves the previous image untagged (about 900 MB per
    # build of the four services): remove ours, only the untagged ones with our label
    say "$(docker image prune -f --filter "label=org.opencontainers.image.source=orderflow" | tail -1)" ;;
  check) check ;;
  load) load ;;
  names) names ;;
  *) echo "usage: $0 build [services|kafka]|check|load|names" >&2; exit 2 ;;
esac
