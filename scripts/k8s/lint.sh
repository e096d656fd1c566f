#!/usr/bin/env bash
# `make lint`: every check of the Kubernetes delivery that runs without a cluster.
#   1. yamllint: kind-config.yaml, deploy/ (and samples, secure), the chart's values/Chart, and the
#      rendered chart (defaults, and with Kafka TLS + SASL on)
#   1b. shellcheck on scripts/k8s; the Dockerfile, statically (scripts/k8s/dockerfile_check.py; no Docker daemon needed)
#   2. helm lint --strict (defaults, with the controller disabled, with controller.manageCrd and the
#      uninstall hook off (then nothing cluster-scoped and no Job), with Kafka TLS + SASL on), and
#      values the schema must refuse
#   3. helm template (with CRDs) validated against Kubernetes 1.32 schemas (kubernetes-validate
#      --strict), with the defaults, with Kafka TLS + SASL on and with the PrometheusRule on (its
#      kind has no schema there: a warning, the other objects are checked)
#   3b. the Kafka security settings of the rendered Deployments (scripts/k8s/assert_kafka_security.py):
#      none by default; env, Secret references, read-only CA mount and port 9093 when enabled
#   4. Strimzi manifests (deploy/*.yaml, deploy/secure/*.yaml) against Strimzi's CRD schemas from
#      $STRIMZI_CRDS, unknown fields refused; sample ReplayRequests against the chart's CRD
#   4b. deploy/secure/ consistent with deploy/kafka.yaml, the services' topics, groups and clients,
#      and the chart's defaults (scripts/k8s/secure_check.py)
#   5. on the local kube-apiserver (scripts/envtest, when present): server-side dry-run of deploy/
#      and deploy/secure/, a real helm install with assertions, helm upgrades turning Kafka TLS +
#      SASL on and off, RBAC checks (scripts/k8s/envtest-check.sh)
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
SECURE=(--set kafka.tls.enabled=true --set kafka.sasl.enabled=true)  # Kafka TLS + SCRAM (deploy/secure/)
BROKER=(--set kafka.broker.enabled=true)  # Apache Kafka inside the release (the test bed, no Strimzi)
RULE=(--set prometheusRule.enabled=true --set prometheusRule.labels.release=prometheus)  # the optional PrometheusRule
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
lint_rendered() {
  "$HELM" template orderflow "$CHART" --namespace orderflow | "${YAMLLINT[@]}" - \
    && "$HELM" template orderflow "$CHART" --namespace orderflow "${SECURE[@]}" | "${YAMLLINT[@]}" - \
    && "$HELM" template orderflow "$CHART" --namespace orderflow "${BROKER[@]}" | "${YAMLLINT[@]}" - \
    && "$HELM" template orderflow "$CHART" --namespace orderflow "${RULE[@]}" | "${YAMLLINT[@]}" -
}
helm_lint() {
  "$HELM" lint --strict "$CHART" --namespace orderflow \
    && "$HELM" lint --strict "$CHART" --namespace orderflow --set controller.enabled=false --set order.service.type=ClusterIP \
    && "$HELM" lint --strict "$CHART" --namespace orderflow --set controller.manageCrd=false --set controller.drainOnUninstall.enabled=false \
    && no_cluster_rbac_without_manage_crd \
    && "$HELM" lint --strict "$CHART" --namespace orderflow "${SECURE[@]}" \
    && "$HELM" lint --strict "$CHART" --namespace orderflow "${BROKER[@]}" \
    && "$HELM" lint --strict "$CHART" --namespace orderflow "${RULE[@]}" \
    && prometheus_rule \
    && refused prometheusRule.for=soon && refused prometheusRule.lagThreshold=-1 \
    && refused_with "${SECURE[@]}" "${BROKER[@]}" \
    && refused analytics.replicas=2 && refused inventory.replicas=-1 && refused image.pullPolicy=Sometimes \
    && refused inventory.initialStock=burger \
    && refused kafka.sasl.password=hunter2 && refused kafka.sasl.mechanism=GSSAPI && refused kafka.tls.enabled=yes \
    && refused kafka.sasl.passwordSecret=Not_A_Secret && refused kafka.tls.caKey=certs/ca.crt \
    && refused controller.manageCrd=yes && refused controller.drainOnUninstall.timeoutSeconds=0
}
no_cluster_rbac_without_manage_crd() {  # controller.manageCrd=false: nothing cluster-scoped; no hook when off
  local r; r=$("$HELM" template orderflow "$CHART" --set controller.manageCrd=false --set controller.drainOnUninstall.enabled=false) || return 1
  if grep -qE '^kind: (ClusterRole|ClusterRoleBinding|Job)$' <<<"$r"; then echo "cluster RBAC or the hook Job rendered while off"; return 1; fi
  r=$("$HELM" template orderflow "$CHART") || return 1
  if ! grep -q '^kind: ClusterRole$' <<<"$r" || ! grep -q 'helm.sh/hook: pre-delete' <<<"$r"; then
    echo "the default render lacks the CRD ClusterRole or the pre-delete hook"; return 1
  fi
}
prometheus_rule() {  # off by default; on: the lag alert is muted while a replay runs on the group
  local r; r=$("$HELM" template orderflow "$CHART") || return 1
  if grep -q '^kind: PrometheusRule$' <<<"$r"; then echo "a PrometheusRule rendered while prometheusRule.enabled is false"; return 1; fi
  r=$("$HELM" template orderflow "$CHART" "${RULE[@]}" --show-only templates/prometheusrule.yaml) || return 1
  if ! grep -q 'unless on (group) (max by (group) (orderflow_replay_in_progress) == 1)' <<<"$r" \
    || ! grep -q 'release: prometheus' <<<"$r"; then
    echo "the PrometheusRule lacks the replay mute or its extra labels"; return 1
  fi
}
refused_with() {  # the chart must refuse these helm arguments (schema or template)
  if "$HELM" template orderflow "$CHART" "$@" >/dev/null 2>&1; then echo "the chart accepted $*"; return 1; fi
}
refused() {  # the values schema must refuse --set $1
  if "$HELM" template orderflow "$CHART" --set "$1" >/dev/null 2>&1; then echo "values.schema.json accepted $1"; return 1; fi
}
validate_k8s() {
  "$HELM" template orderflow "$CHART" --namespace orderflow --include-crds > "$out/chart.yaml" || return 1
  "$HELM" template orderflow "$CHART" --namespace orderflow --include-crds "${SECURE[@]}" > "$out/chart-secure.yaml" || return 1
  "$HELM" template orderflow "$CHART" --namespace orderflow "${BROKER[@]}" > "$out/chart-broker.yaml" || return 1
  # the PrometheusRule's kind has no Kubernetes schema: kubernetes-validate warns and checks the rest
  "$HELM" template orderflow "$CHART" --namespace orderflow "${RULE[@]}" > "$out/chart-rule.yaml" || return 1
  "$VENV/bin/kubernetes-validate" --quiet --strict -k "$K8S_SCHEMA_VERSION" "$out/chart.yaml" "$out/chart-secure.yaml" "$out/chart-broker.yaml" "$out/chart-rule.yaml"
}
kafka_security() {  # render with each combination of kafka.tls / kafka.sasl and assert on the Deployments
  local ok=0 b=orderflow-kafka-bootstrap.orderflow.svc
  security_case "defaults: " --protocol NONE --bootstrap "$b:9092" || ok=1
  security_case "TLS+SASL: " --protocol SASL_SSL --bootstrap "$b:9093" -- "${SECURE[@]}" || ok=1
  security_case "TLS only: " --protocol SSL --bootstrap "$b:9093" -- --set kafka.tls.enabled=true || ok=1
  security_case "SASL only: " --protocol SASL_PLAINTEXT --bootstrap "$b:9092" -- --set kafka.sasl.enabled=true || ok=1
  security_case "TLS+SASL, own Secrets and cluster: " --protocol SASL_SSL --bootstrap kafka1-kafka-bootstrap.orderflow.svc:9093 \
    --mechanism SCRAM-SHA-256 --username svc --password-secret kafka-login --password-key pw \
    --ca-secret kafka-ca --ca-key ca.pem -- "${SECURE[@]}" --set kafka.clusterName=kafka1 \
    --set kafka.sasl.mechanism=SCRAM-SHA-256 --set kafka.sasl.username=svc --set kafka.sasl.passwordSecret=kafka-login \
    --set kafka.sasl.passwordKey=pw --set kafka.tls.caSecret=kafka-ca --set kafka.tls.caKey=ca.pem || ok=1
  security_case "TLS+SASL, own bootstrap: " --protocol SASL_SSL --bootstrap broker-1.example.internal:9094 \
    -- "${SECURE[@]}" --set kafka.bootstrap=broker-1.example.internal:9094 || ok=1
  security_case "TLS+SASL, no controller: " --protocol SASL_SSL --bootstrap "$b:9093" --deployments 3 \
    -- "${SECURE[@]}" --set controller.enabled=false || ok=1
  return $ok
}
security_case() {  # security_case LABEL ASSERT_ARGS... -- HELM_ARGS...
  local label=$1; shift
  local a=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do a+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  "$HELM" template orderflow "$CHART" --namespace orderflow "$@" | "$PY" scripts/k8s/assert_kafka_security.py --label "$label" "${a[@]}"
}
strimzi_check() { "$PY" scripts/k8s/crd_check.py --crds "$STRIMZI_CRDS" --require-crd deploy/*.yaml deploy/secure/*.yaml; }
shellcheck_scripts() { "$VENV/bin/shellcheck" -x scripts/k8s/*.sh images/kafka/kafka-run.sh scripts/compose-demo.sh; }
dockerfile_check() { "$PY" scripts/k8s/dockerfile_check.py; }
secure_check() { "$PY" scripts/k8s/secure_check.py; }
samples_check() { "$PY" scripts/k8s/crd_check.py --crds "$CHART/crds" deploy/samples/*.yaml; }

t_start=$SECONDS
step "yamllint (files)" lint_yaml
step "yamllint (rendered chart)" lint_rendered
step "shellcheck scripts/k8s, images/kafka, scripts/compose-demo.sh" shellcheck_scripts
step "Dockerfile (parse, stages, non-root user, binaries, build context)" dockerfile_check
step "helm lint --strict" helm_lint
step "kubernetes-validate --strict (chart, Kubernetes $K8S_SCHEMA_VERSION; defaults, Kafka TLS+SASL, in-release broker)" validate_k8s
step "chart: Kafka TLS/SASL settings of every Deployment (none by default; SASL_SSL, SSL, SASL_PLAINTEXT)" kafka_security
step "deploy/secure/ consistent with deploy/kafka.yaml, the services and the chart's defaults" secure_check

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
