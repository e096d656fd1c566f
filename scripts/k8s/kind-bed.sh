#!/usr/bin/env bash
# The test bed: a real kind cluster (Kubernetes built here from source, a real kubelet with Debian's
# containerd and runc) on the project's own dockerd, with nothing pulled from any registry.
#   scripts/k8s/kind-bed.sh up       everything below that is missing, then the cluster:
#                                    docker (install, start), Go builds, base images, node image,
#                                    kind create cluster --image <node image> --config $KIND_CONFIG
#   scripts/k8s/kind-bed.sh smoke    build orderflow.local/k8s-smoke, kind load it, apply
#                                    scripts/k8s/bed/smoke.yaml, wait, show pods and `kubectl logs`
#   scripts/k8s/kind-bed.sh down     delete the cluster (dockerd keeps running: scripts/docker.sh stop)
#   scripts/k8s/kind-bed.sh env      print KUBECONFIG, DOCKER_HOST, PATH additions (eval "$(...)")
#   scripts/k8s/kind-bed.sh disk     what the caches, builds and images take on disk
# Every step prints its time; a step already done is skipped (stamps), so a warm `up` is the
# cluster creation alone. Timings go to $BED_STATE/timings.tsv.
# Environment: KIND_CLUSTER (orderflow), KIND_CONFIG (kind-config.yaml), ORDERFLOW_CACHE,
#   BED_STATE ($ORDERFLOW_CACHE/kind-bed: kubeconfig, timings), KIND_WAIT (300s).
set -euo pipefail
cd "$(dirname "$0")/../.."

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
STATE=${BED_STATE:-$CACHE/kind-bed}
CLUSTER=${KIND_CLUSTER:-orderflow}
KIND_CONFIG=${KIND_CONFIG:-kind-config.yaml}
export KUBECONFIG=$STATE/kubeconfig
mkdir -p "$STATE"
TIMES=$STATE/timings.tsv
[ -f "$TIMES" ] || printf 'step\tseconds\tfinished\n' >"$TIMES"

say() { echo "kind-bed: $*" >&2; }
die() { say "$*"; exit 1; }
# step NAME COMMAND...: run it, print and record its time
step() {
  local name=$1 t0=$SECONDS; shift
  say "== $name"
  "$@"
  printf '%s\t%s\t%s\n' "$name" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$TIMES"
  say "== $name: $((SECONDS - t0))s"
}

tools_env() {
  eval "$(scripts/docker.sh env)"
  eval "$(scripts/k8s/build-kubernetes.sh --print-env)"
  export PATH=$KIND_BIN:$K8S_BIN:$PATH
}

node_image() {
  local out; out=$(scripts/k8s/node-image.sh); eval "$out"; echo "$NODE_IMAGE" >"$STATE/node-image"
}

create_cluster() {
  local image; image=$(cat "$STATE/node-image")
  if kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null \
    && [ "$(docker inspect -f '{{.State.Running}}' "$CLUSTER-control-plane" 2>/dev/null)" != true ]; then
    say "kind cluster '$CLUSTER' exists but its node is not running (dockerd was stopped?): recreating it"
    kind delete cluster --name "$CLUSTER"
  fi
  if kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; then
    say "kind cluster '$CLUSTER' exists, reusing it"
  else
    kind create cluster --name "$CLUSTER" --image "$image" --config "$KIND_CONFIG" --wait "${KIND_WAIT:-300s}" \
      || { say "kind create failed; node logs: docker logs $CLUSTER-control-plane; kind export logs --name $CLUSTER"; exit 1; }
  fi
  # after a dockerd restart the node comes back (kind's restart policy) and its API server needs a
  # moment before it serves, and before its authorizer knows the admin's group
  local deadline=$((SECONDS + 180))
  until kubectl auth can-i list nodes >/dev/null 2>&1 && kubectl wait node --all --for=condition=Ready --timeout=5s >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { kubectl get nodes || true; die "the cluster's node is not Ready after 180 s"; }
    sleep 2
  done
  kubectl get nodes -o wide
  # CoreDNS is Ready once it reached the API server through the kubernetes Service (kube-proxy)
  if ! kubectl -n kube-system rollout status deploy/coredns --timeout=180s >/dev/null \
    || ! kubectl -n kube-system rollout status ds/kube-proxy --timeout=60s >/dev/null; then
    kubectl -n kube-system get pods -o wide; die "kube-system is not Ready"
  fi
  kubectl get pods -A -o wide
}

up() {
  step "docker install" scripts/docker.sh install
  step "docker start" scripts/docker.sh start >/dev/null
  tools_env
  # The base images (debootstrap: network and disk) are made while Go compiles (CPU).
  say "== base images: in the background (log $STATE/base-images.log)"
  ( t0=$SECONDS; scripts/base-images.sh >"$STATE/base-images.log" 2>&1; rc=$?
    printf 'base images (beside go builds)\t%s\t%s\n' "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$TIMES"; exit $rc ) &
  local base_pid=$!
  step "go builds" scripts/k8s/build-kubernetes.sh
  say "== waiting for the base images"
  wait "$base_pid" || { tail -20 "$STATE/base-images.log" >&2; die "scripts/base-images.sh failed"; }
  sed 's/^/  /' "$STATE/base-images.log" >&2
  step "node image" node_image
  step "cluster up" create_cluster
  disk
  say "ready: eval \"\$(scripts/k8s/kind-bed.sh env)\"; kubectl get nodes"
}

disk() {
  say "disk use:"
  local d
  for d in "$CACHE"/k8s/*/ "$CACHE/go/mod" "$CACHE/go/build" "$CACHE/debootstrap" "$CACHE/docker/data"; do
    [ -d "$d" ] && du -sh "$d" 2>/dev/null | sed 's/^/  /' >&2
  done
  docker system df 2>/dev/null | sed 's/^/  /' >&2 || true
}

smoke_image() {
  local ctx; ctx=$(mktemp -d "$CACHE/smoke-image.XXXXXX")
  cp "$ETCD_BIN/etcd" "$K8S_BIN/kubectl" "$ctx/"
  printf 'FROM %s\nCOPY etcd kubectl /usr/local/bin/\nUSER 65532:65532\n' "$(scripts/base-images.sh --list | head -1)" >"$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t orderflow.local/k8s-smoke:1 "$ctx" >"$ctx.log" 2>&1 || { cat "$ctx.log" >&2; die "docker build of the smoke image failed"; }
  rm -f "$ctx.log"
  rm -rf "$ctx"
  kind load docker-image --name "$CLUSTER" orderflow.local/k8s-smoke:1
}

smoke_run() {
  kubectl delete namespace orderflow-smoke --ignore-not-found --wait=true >/dev/null
  kubectl apply -f scripts/k8s/bed/smoke.yaml
  kubectl -n orderflow-smoke rollout status deploy/web --timeout=180s
  kubectl -n orderflow-smoke wait job/client --for=condition=Complete --timeout=180s \
    || { kubectl -n orderflow-smoke get pods -o wide; kubectl -n orderflow-smoke logs job/client || true; die "the smoke client did not complete"; }
  kubectl -n orderflow-smoke get deploy,rs,pods,svc,endpointslices -o wide
  echo "--- kubectl logs job/client"
  kubectl -n orderflow-smoke logs job/client
  echo "--- kubectl logs deploy/web (last 3 lines)"
  kubectl -n orderflow-smoke logs deploy/web --tail=3
  kubectl -n orderflow-smoke logs job/client | grep -x 'smoke: all checks passed' >/dev/null
}

smoke() {
  tools_env
  step "smoke image" smoke_image
  step "smoke run" smoke_run
}

down() {
  tools_env
  if kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; then kind delete cluster --name "$CLUSTER"; else say "no kind cluster '$CLUSTER'"; fi
}

case "${1:-}" in
  up) up ;;
  smoke) smoke ;;
  down) down ;;
  disk) tools_env; disk ;;
  env) tools_env; echo "export KUBECONFIG=$KUBECONFIG DOCKER_HOST=$DOCKER_HOST PATH=$KIND_BIN:$K8S_BIN:\$PATH" ;;
  *) echo "usage: $0 up|smoke|down|env|disk" >&2; exit 2 ;;
esac
