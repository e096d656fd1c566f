#!/usr/bin/env bash
# The users' flow on the test bed's kind cluster (`make e2e`, the last part of `make test`):
#   1. scripts/k8s/kind-bed.sh up           the cluster (Kubernetes v1.33 built here; cached)
#   2. scripts/k8s/images.sh build          the four service images (Dockerfile.prebuilt on the
#                                           release binaries of `make build`) and the Kafka image
#   3. scripts/k8s/images.sh check          each image run as the chart runs it
#   4. scripts/k8s/images.sh load           kind load them into the node
#   5. cargo test --features kind --test kind  services/system-tests/tests/kind: helm install, 10,000
#                                           orders, replay.yaml, lag.yaml,
#                                           shadow.yaml promoted under polling, get rr, logs, dashboard;
#                                           the CRD's CEL rule, and deploy/ against Strimzi's CRDs
#                                           (STRIMZI_CRDS), on the v1.33 API server
# Each step's time is printed and appended to $ORDERFLOW_CACHE/kind-bed/timings.tsv; the flow's
# own report is target/e2e-kind/report.md (log kind.log, screenshot dashboard.png).
# Environment: CARGO (cargo), CARGO_TARGET_DIR, E2E_KIND_KEEP=1 (leave the release running).
set -euo pipefail
cd "$(dirname "$0")/../.."

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
TIMES=$CACHE/kind-bed/timings.tsv
mkdir -p "$(dirname "$TIMES")"

step() {
  local name=$1 t0=$SECONDS; shift
  echo "e2e-kind: == $name" >&2
  "$@"
  printf '%s\t%s\t%s\n' "e2e-kind: $name" "$((SECONDS - t0))" "$(date -u +%FT%TZ)" >>"$TIMES"
  echo "e2e-kind: == $name: $((SECONDS - t0))s" >&2
}

t_all=$SECONDS
step "bed up" scripts/k8s/kind-bed.sh up
step "images build" scripts/k8s/images.sh build
step "images check" scripts/k8s/images.sh check
step "images load" scripts/k8s/images.sh load
step "flow (cargo test --features kind --test kind)" "${CARGO:-cargo}" test --release --locked -p orderflow-system-tests --features kind --test kind \
  -- --test-threads=1 --nocapture
echo "e2e-kind: done in $((SECONDS - t_all))s; report target/e2e-kind/report.md, screenshot target/e2e-kind/dashboard.png" >&2
