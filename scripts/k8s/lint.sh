#!/usr/bin/env bash
# `make lint`: every check of the Kubernetes delivery that runs without a cluster.
#   1. yamllint: kind-config.yaml, deploy/ (and samples), the chart's values/Chart, and the rendered chart
#   1b. shellcheck on scripts/k8s; the Dockerfile, statically (scripts/k8s/dockerfile_check.py; no Docker daemon needed)
#   2. helm lint --strict (defaults, and with the controller disabled)
#   3. helm template (with CRDs) validated against Kubernetes 1.32 schemas (kubernetes-validate --strict)
#   4. Strimzi manifests (deploy/*.yaml, deploy/secure/*.yaml) against Strimzi's CRD schemas from
#      $STRIMZI_CRDS, unknown fields refused; sample ReplayRequests against the chart's CRD
#   5. on the local kube-apiserver (scripts/envtest, when present): server-side dry-run of deploy/,
#      a real helm install with assertions, RBAC checks (scripts/k8s/envtest-check.sh)
# Tools come from scripts/k8s/tools.sh (installed once into the cache). A check whose input is
# missing says SKIPPED and why; any failure makes the script exit 1 after running the rest.
set -uo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/k8s/tools.sh
source scripts/k8s/tools.sh
k8s_tools
set +e  # tools.sh sets -e; here a failed check is recorded and the others still run

STRIMZI_CRDS=${STRIMZI_CRDS:-$PWD/../shared/strimzi-crds}
K8S_SCHEMA_VERSION=${K8S_SCHEMA_VERSION:-1.32.0}
CHART=helm/orderflow
PY=$VENV/bin/python
YAMLLINT=("$VENV/bin/yamllint" -s -c scripts/k8s/yamllint.yaml)
failed=() skipped=() passed=()
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT

step() {  # step NAME CMD...: run, record the outcome, keep going
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name"
  if "$@"; then passed+=("$name"); echo "   ok ($((SECONDS - t0))s)"
  else failed+=("$name"); echo "   FAILED: $name"; fi
}

yaml_files() {
  ls kind-config.yaml deploy/*.yaml deploy/secure/*.yaml "$CHART"/values.yaml "$CHART"/Chart.yaml 2>/dev/null
  # not the chart's crds/: generated from Rust (make crds), checked by kubernetes-validate instead
  ls deploy/samples/*.yaml 2>/dev/null || true
}
lint_yaml() { yaml_files | xargs "${YAMLLINT[@]}"; }
lint_rendered() { "$HELM" template orderflow "$CHART" --namespace orderflow | "${YAMLLINT[@]}" -; }
helm_lint() {
  "$HELM" lint --strict "$CHART" --namespace orderflow \
    && "$HELM" lint --strict "$CHART" --namespace orderflow --set controller.enabled=false --set order.service.type=ClusterIP \
    && refused analytics.replicas=2 && refused inventory.replicas=-1 && refused image.pullPolicy=Sometimes \
    && refused inventory.initialStock=burger
}
refused() {  # the values schema must refuse --set $1
  if "$HELM" template orderflow "$CHART" --set "$1" >/dev/null 2>&1; then echo "values.schema.json accepted $1"; return 1; fi
}
validate_k8s() {
  "$HELM" template orderflow "$CHART" --namespace orderflow --include-crds > "$out/chart.yaml" || return 1
  "$VENV/bin/kubernetes-validate" --quiet --strict -k "$K8S_SCHEMA_VERSION" "$out/chart.yaml"
}
strimzi_check() { "$PY" scripts/k8s/crd_check.py --crds "$STRIMZI_CRDS" --require-crd deploy/*.yaml deploy/secure/*.yaml; }
shellcheck_scripts() { "$VENV/bin/shellcheck" -x scripts/k8s/*.sh; }
dockerfile_check() { "$PY" scripts/k8s/dockerfile_check.py; }
samples_check() { "$PY" scripts/k8s/crd_check.py --crds "$CHART/crds" deploy/samples/*.yaml; }

t_start=$SECONDS
step "yamllint (files)" lint_yaml
step "yamllint (rendered chart)" lint_rendered
step "shellcheck scripts/k8s" shellcheck_scripts
step "Dockerfile (parse, stages, non-root user, binaries, build context)" dockerfile_check
step "helm lint --strict" helm_lint
step "kubernetes-validate --strict (chart, Kubernetes $K8S_SCHEMA_VERSION)" validate_k8s

if [ -d "$STRIMZI_CRDS" ] && ls "$STRIMZI_CRDS"/*.yaml >/dev/null 2>&1; then
  step "Strimzi manifests vs CRDs in $STRIMZI_CRDS (unknown fields refused)" strimzi_check
else
  echo "== SKIPPED: Strimzi CRD check: STRIMZI_CRDS=$STRIMZI_CRDS does not exist or holds no CRDs."
  echo "   Point STRIMZI_CRDS at a directory with Strimzi's CRD files (Kafka, KafkaNodePool, KafkaTopic) to run it."
  skipped+=("Strimzi CRD check (no STRIMZI_CRDS)")
fi
if ls "$CHART"/crds/*.yaml >/dev/null 2>&1 && ls deploy/samples/*.yaml >/dev/null 2>&1; then
  step "ReplayRequest samples vs the chart's CRD (unknown fields refused)" samples_check
else
  echo "== SKIPPED: ReplayRequest samples check: $CHART/crds/ or deploy/samples/ is empty"
  skipped+=("ReplayRequest samples check (no CRD or samples yet)")
fi

ENVTEST_SCRIPTS=${ENVTEST_SCRIPTS:-scripts/envtest}
if [ -x "$ENVTEST_SCRIPTS/up.sh" ]; then
  name="local kube-apiserver: dry-run, helm install, RBAC"
  echo "== $name"; t0=$SECONDS
  STRIMZI_CRDS="$STRIMZI_CRDS" ENVTEST_SCRIPTS="$ENVTEST_SCRIPTS" scripts/k8s/envtest-check.sh; rc=$?
  case $rc in
    0) passed+=("$name"); echo "   ok ($((SECONDS - t0))s)" ;;
    3) passed+=("$name (without RBAC)"); skipped+=("RBAC can-i checks (apiserver without RBAC authorization)") ;;
    *) failed+=("$name"); echo "   FAILED: $name" ;;
  esac
else
  echo "== SKIPPED: local kube-apiserver checks: $ENVTEST_SCRIPTS/up.sh is not in this tree"
  skipped+=("kube-apiserver checks (no scripts/envtest)")
fi

echo
echo "lint summary: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped in $((SECONDS - t_start))s"
for s in "${skipped[@]}"; do echo "  skipped: $s"; done
for f in "${failed[@]}"; do echo "  FAILED:  $f"; done
[ ${#failed[@]} -eq 0 ]
