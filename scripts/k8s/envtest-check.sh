#!/usr/bin/env bash
# Checks against a real kube-apiserver (the project's scripts/envtest: etcd + kube-apiserver on
# 127.0.0.1, no kubelet: objects are stored and validated, pods never run):
#   1. Strimzi CRDs from $STRIMZI_CRDS registered unmodified (CEL rules included), then
#      `kubectl apply --dry-run=server` of deploy/*.yaml and of deploy/secure/*.yaml; deliberately
#      broken copies must be refused
#   2. a real `helm install` of helm/orderflow, assertions on the created objects
#      (scripts/k8s/assert_install.py), `helm upgrade --set inventory.replicas=3`, a `helm upgrade`
#      that turns Kafka TLS + SASL on and one that turns it off again, each with assertions on the
#      stored Deployments (scripts/k8s/assert_kafka_security.py), `helm uninstall`
#   3. RBAC: `kubectl auth can-i --as system:serviceaccount:<ns>:replay-controller`, allowed what the
#      controller needs (and get/create/patch on its own CRD only), denied the rest; the same for
#      analytics (get/list/watch replayrequests only) and replay-drain (list/delete replayrequests
#      only) (needs an apiserver with RBAC authorization)
# Environment: ENVTEST_SCRIPTS (default scripts/envtest), STRIMZI_CRDS, ORDERFLOW_CACHE.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/k8s/tools.sh
source scripts/k8s/tools.sh
k8s_tools

ENVTEST_SCRIPTS=${ENVTEST_SCRIPTS:-scripts/envtest}
STRIMZI_CRDS=${STRIMZI_CRDS:-$PWD/../shared/strimzi-crds}
NS=orderflow-lint
SA=system:serviceaccount:$NS:replay-controller
PY=$VENV/bin/python
fails=0
fail() { echo "   FAILED: $*"; fails=$((fails + 1)); }

"$ENVTEST_SCRIPTS/install-apiserver.sh" >/dev/null
# ports of their own, so this can run beside other users of the test apiserver
export API_PORT=${API_PORT:-16743} ETCD_PORT=${ETCD_PORT:-23990}
export ENVTEST_AUTHORIZATION_MODE=RBAC
RUN=$(mktemp -d /tmp/orderflow-k8s-lint.XXXXXX)
trap '"$ENVTEST_SCRIPTS/down.sh" "$RUN" >/dev/null 2>&1 || true; rm -rf "$RUN"' EXIT
"$ENVTEST_SCRIPTS/up.sh" "$RUN" >/dev/null || { tail -20 "$RUN"/apiserver.log; exit 1; }
export KUBECONFIG=$RUN/kubeconfig
k() { "$KUBECTL" "$@"; }
echo "   kube-apiserver $(k version -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])') up"
k create namespace "$NS" >/dev/null
k create namespace other >/dev/null

# 1. Strimzi manifests, validated by the apiserver against Strimzi's schemas
if ls "$STRIMZI_CRDS"/*.yaml >/dev/null 2>&1; then
  for crd in "$STRIMZI_CRDS"/*-Crd-*.yaml; do
    k apply --server-side -f "$crd" >/dev/null
  done
  k wait --for condition=established --timeout=30s crd -l app=strimzi >/dev/null
  if k -n "$NS" apply --dry-run=server -f deploy/ >"$RUN/dry.txt" 2>&1; then
    echo "   server-side dry-run of deploy/: $(wc -l <"$RUN/dry.txt") objects accepted"
  else cat "$RUN/dry.txt"; fail "server-side dry-run of deploy/"; fi
  # the opt-in secured setup: its own dry-run (its Kafka has the same name as deploy/kafka.yaml's)
  if k -n "$NS" apply --dry-run=server -f deploy/secure/ >"$RUN/dry.txt" 2>&1; then
    echo "   server-side dry-run of deploy/secure/: $(wc -l <"$RUN/dry.txt") objects accepted"
  else cat "$RUN/dry.txt"; fail "server-side dry-run of deploy/secure/"; fi
  # negative controls: the dry-run really validates (a wrong type, a value outside an enum)
  for broken in "topics.yaml|s/partitions: 3/partitions: three/|partitions" "kafka.yaml|s/type: ephemeral/type: tmpfs/|tmpfs" \
                "secure/kafka.yaml|s/type: simple/type: acl/|authorization.type" \
                "secure/kafka-user.yaml|s/type: scram-sha-512/type: scram-sha-256/|authentication.type"; do
    IFS="|" read -r file expr field <<<"$broken"
    sed "$expr" "deploy/$file" >"$RUN/broken.yaml"
    # --validate=false skips kubectl's client-side check: the apiserver itself must refuse
    if k -n "$NS" apply --dry-run=server --validate=false -f "$RUN/broken.yaml" >"$RUN/broken.txt" 2>&1; then
      fail "a broken deploy/$file ($expr) was accepted by the dry-run"
    elif ! grep -q "$field" "$RUN/broken.txt"; then
      cat "$RUN/broken.txt"; fail "broken deploy/$file refused, but not for $field"
    else echo "   broken deploy/$file ($expr) refused by the apiserver: $(grep -m1 -o 'spec\.[^ ]*: [A-Z][a-z]* value.*' "$RUN/broken.txt" | cut -c1-100)"; fi
  done
  # an unknown field (a typo) with the server's strict field validation (v1.27+; the v1.20
  # server used to prune it silently, which is why crd_check.py exists)
  sed 's/^  partitions: 3/  partitons: 3/' deploy/topics.yaml >"$RUN/typo.yaml"
  if k -n "$NS" apply --dry-run=server --validate=strict -f "$RUN/typo.yaml" >"$RUN/typo.txt" 2>&1; then
    fail "deploy/topics.yaml with spec.partitons (a typo) was accepted by the strict dry-run"
  elif ! grep -q 'unknown field "spec.partitons"' "$RUN/typo.txt"; then
    cat "$RUN/typo.txt"; fail "the typo spec.partitons was refused, but not as an unknown field"
  else echo "   a typo (spec.partitons) refused by the apiserver's strict field validation"; fi
else
  echo "   SKIPPED: Strimzi dry-run: STRIMZI_CRDS=$STRIMZI_CRDS does not exist"
fi

# 2. helm install into the apiserver, then assertions on what it created
"$HELM" install orderflow helm/orderflow --namespace "$NS" >/dev/null || fail "helm install"
k -n "$NS" get deploy,svc,sa,role,rolebinding -o json | "$PY" scripts/k8s/assert_install.py "$NS" 2 \
  || fail "assertions after helm install"
k -n "$NS" get deploy -o json | "$PY" scripts/k8s/assert_kafka_security.py --label "helm install: " \
  --protocol NONE --bootstrap "orderflow-kafka-bootstrap.$NS.svc:9092" >/dev/null || fail "Kafka security settings after helm install"
"$HELM" get notes orderflow --namespace "$NS" >"$RUN/notes.txt" 2>&1; [ -n "${SHOW_NOTES:-}" ] && cat "$RUN/notes.txt"
for want in "localhost:8080/orders" "localhost:8082/api/metrics" "port-forward svc/order" "deploy/samples/replay.yaml" "logs deploy/replay-controller"; do
  grep -qF "$want" "$RUN/notes.txt" || fail "NOTES.txt does not tell users: $want"
done
if ls helm/orderflow/crds/*.yaml >/dev/null 2>&1; then
  if k get crd replayrequests.orderflow.io >/dev/null 2>&1; then echo "   CRD replayrequests.orderflow.io installed"
  else fail "CRD replayrequests.orderflow.io not installed by the chart"; fi
  if ls deploy/samples/*.yaml >/dev/null 2>&1; then
    k wait --for condition=established --timeout=30s crd replayrequests.orderflow.io >/dev/null
    k -n "$NS" apply --dry-run=server -f deploy/samples/ >/dev/null || fail "deploy/samples/ refused by the chart's CRD"
  fi
fi
if ! k get crd replayrequests.orderflow.io >/dev/null 2>&1; then
  # the chart has no CRD yet: a stand-in, so that kubectl can resolve replayrequests in the RBAC checks
  echo "   (no ReplayRequest CRD in the chart: a minimal stand-in CRD is registered for the RBAC checks)"
  k apply -f - >/dev/null <<'CRD'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: replayrequests.orderflow.io}
spec:
  group: orderflow.io
  scope: Namespaced
  names: {kind: ReplayRequest, plural: replayrequests, singular: replayrequest, shortNames: [rr]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
CRD
  k wait --for condition=established --timeout=30s crd replayrequests.orderflow.io >/dev/null
fi
"$HELM" upgrade orderflow helm/orderflow --namespace "$NS" --set inventory.replicas=3 >/dev/null || fail "helm upgrade"
got=$(k -n "$NS" get deploy inventory -o jsonpath='{.spec.replicas}')
if [ "$got" = 3 ]; then echo "   helm upgrade --set inventory.replicas=3 -> spec.replicas 3"
else fail "inventory replicas after upgrade: $got"; fi
if "$HELM" upgrade orderflow helm/orderflow --namespace "$NS" --set analytics.replicas=2 >/dev/null 2>&1; then
  fail "values schema accepted analytics.replicas (analytics must stay at one replica)"
fi
# Kafka TLS + SCRAM on (the Secrets need not exist: no kubelet starts the pods here), then off again
"$HELM" upgrade orderflow helm/orderflow --namespace "$NS" --reuse-values \
  --set kafka.tls.enabled=true --set kafka.sasl.enabled=true >/dev/null || fail "helm upgrade with Kafka TLS + SASL"
if k -n "$NS" get deploy -o json | "$PY" scripts/k8s/assert_kafka_security.py --label "helm upgrade, TLS+SASL on: " \
     --protocol SASL_SSL --bootstrap "orderflow-kafka-bootstrap.$NS.svc:9093"; then
  echo "   helm upgrade --set kafka.tls.enabled=true --set kafka.sasl.enabled=true -> SASL_SSL on 9093, password from Secret, CA mounted read-only"
else fail "Kafka security settings after helm upgrade with TLS + SASL"; fi
"$HELM" get notes orderflow --namespace "$NS" >"$RUN/notes.txt" 2>&1
for want in "Kafka security: SASL_SSL, SCRAM-SHA-512 as user orderflow" "get secret orderflow orderflow-cluster-ca-cert" \
            "get kafkauser orderflow"; do
  grep -qF "$want" "$RUN/notes.txt" || fail "NOTES.txt with Kafka TLS + SASL does not tell users: $want"
done
"$HELM" upgrade orderflow helm/orderflow --namespace "$NS" --reuse-values \
  --set kafka.tls.enabled=false --set kafka.sasl.enabled=false >/dev/null || fail "helm upgrade back to plaintext"
if k -n "$NS" get deploy -o json | "$PY" scripts/k8s/assert_kafka_security.py --label "helm upgrade, TLS+SASL off again: " \
     --protocol NONE --bootstrap "orderflow-kafka-bootstrap.$NS.svc:9092" >/dev/null; then
  echo "   helm upgrade --set kafka.tls.enabled=false --set kafka.sasl.enabled=false -> no Kafka security settings left, 9092"
else fail "Kafka security settings left after turning them off"; fi

# 3. RBAC of the controller's service account
if [ "$(k auth can-i list secrets --as "system:serviceaccount:$NS:nobody" -n "$NS" 2>/dev/null)" = yes ]; then
  echo "   SKIPPED: RBAC checks: this apiserver does not authorize with RBAC (everything is allowed)"
  echo "            ($ENVTEST_SCRIPTS/up.sh must honour ENVTEST_AUTHORIZATION_MODE=RBAC)"
  rbac_skipped=1
else
  rbac_skipped=0
  can() {  # can EXPECT VERB RESOURCE [flags]: yes or no
    local expect=$1; shift
    local got; got=$(k auth can-i "$@" --as "$SA" -n "${CAN_NS:-$NS}" 2>/dev/null || true)
    [ "$got" = "$expect" ] || fail "can-i $* (namespace ${CAN_NS:-$NS}): expected $expect, got ${got:-error}"
  }
  n=0
  for v in get list watch patch update; do can yes "$v" replayrequests.orderflow.io; n=$((n+1)); done
  for v in get patch update; do can yes "$v" replayrequests.orderflow.io --subresource=status; n=$((n+1)); done
  can yes update replayrequests.orderflow.io --subresource=finalizers
  # create, patch and delete: a shadow replay's copy of a consumer's Deployment
  for v in get list watch create patch delete; do can yes "$v" deployments.apps; n=$((n+1)); done
  for v in get patch update; do can yes "$v" deployments.apps --subresource=scale; n=$((n+1)); done
  for v in create patch; do can yes "$v" events; can yes "$v" events.events.k8s.io; n=$((n+2)); done
  allowed=$((n + 1))
  m=0
  for args in "get secrets" "list secrets" "create pods --subresource=exec" "get pods" \
              "update deployments.apps" "delete replayrequests.orderflow.io" \
              "create replayrequests.orderflow.io" "create roles.rbac.authorization.k8s.io" "get configmaps" \
              "delete events"; do
    # shellcheck disable=SC2086
    can no $args; m=$((m+1))
  done
  CAN_NS=other can no list deployments.apps; CAN_NS=other can no patch deployments.apps --subresource=scale
  CAN_NS=other can no list replayrequests.orderflow.io
  can no list namespaces --all-namespaces; can no create customresourcedefinitions.apiextensions.k8s.io
  # controller.manageCrd (on by default): its own CRD only, by name (server-side apply at startup)
  CRD=customresourcedefinitions.apiextensions.k8s.io
  for v in get create patch; do can yes "$v" "$CRD/replayrequests.orderflow.io"; done
  for args in "update $CRD/replayrequests.orderflow.io" "delete $CRD/replayrequests.orderflow.io" \
              "patch $CRD/kafkas.kafka.strimzi.io" "get $CRD/kafkas.kafka.strimzi.io" "list $CRD"; do
    # shellcheck disable=SC2086
    can no $args
  done
  echo "   RBAC: $((allowed + 3)) allowed and $((m + 10)) denied checks evaluated for $SA"
  # the pre-delete hook's `replay-controller drain` (controller.drainOnUninstall): list and delete
  DSA=system:serviceaccount:$NS:replay-drain
  dcan() {  # dcan EXPECT VERB RESOURCE [flags]
    local expect=$1; shift
    local got; got=$(k auth can-i "$@" --as "$DSA" -n "${CAN_NS:-$NS}" 2>/dev/null || true)
    [ "$got" = "$expect" ] || fail "can-i $* as replay-drain (namespace ${CAN_NS:-$NS}): expected $expect, got ${got:-error}"
  }
  for v in list delete; do dcan yes "$v" replayrequests.orderflow.io; done
  for args in "get replayrequests.orderflow.io" "watch replayrequests.orderflow.io" "patch replayrequests.orderflow.io" \
              "create replayrequests.orderflow.io" "update replayrequests.orderflow.io --subresource=finalizers" \
              "patch deployments.apps --subresource=scale" "get secrets" "get pods" "create events"; do
    # shellcheck disable=SC2086
    dcan no $args
  done
  CAN_NS=other dcan no list replayrequests.orderflow.io; CAN_NS=other dcan no delete replayrequests.orderflow.io
  echo "   RBAC: 2 allowed and 11 denied checks evaluated for $DSA"
  # analytics (the dashboard's ReplayRequests panel): read-only on replayrequests, nothing else
  ASA=system:serviceaccount:$NS:analytics
  acan() {  # acan EXPECT VERB RESOURCE [flags]
    local expect=$1; shift
    local got; got=$(k auth can-i "$@" --as "$ASA" -n "${CAN_NS:-$NS}" 2>/dev/null || true)
    [ "$got" = "$expect" ] || fail "can-i $* as analytics (namespace ${CAN_NS:-$NS}): expected $expect, got ${got:-error}"
  }
  for v in get list watch; do acan yes "$v" replayrequests.orderflow.io; done
  for args in "patch replayrequests.orderflow.io" "update replayrequests.orderflow.io" "delete replayrequests.orderflow.io" \
              "create replayrequests.orderflow.io" "patch replayrequests.orderflow.io --subresource=status" \
              "get deployments.apps" "patch deployments.apps --subresource=scale" "get secrets" "list secrets" \
              "get pods" "create events"; do
    # shellcheck disable=SC2086
    acan no $args
  done
  CAN_NS=other acan no list replayrequests.orderflow.io
  echo "   RBAC: 3 allowed and 12 denied checks evaluated for $ASA"
fi

# the pre-delete hook (a Job running `replay-controller drain`) is rendered and valid, but no
# kubelet runs its pod here: uninstall without hooks (replay-controller/tests/lifecycle.rs runs
# `replay-controller drain` against a running controller)
"$HELM" get hooks orderflow --namespace "$NS" | grep 'helm.sh/hook: pre-delete' >/dev/null || fail "no pre-delete hook in the release"
"$HELM" uninstall orderflow --namespace "$NS" --no-hooks >/dev/null || fail "helm uninstall"
left=$(k -n "$NS" get deploy,svc,sa,role,rolebinding -l app.kubernetes.io/instance=orderflow -o name 2>/dev/null | wc -l)
left=$((left + $(k get clusterrole,clusterrolebinding -l app.kubernetes.io/instance=orderflow -o name 2>/dev/null | wc -l)))
if [ "$left" = 0 ]; then echo "   helm uninstall removed every object (the CRD's ClusterRole too)"
else fail "$left objects left after helm uninstall"; fi

[ "$fails" = 0 ] || { echo "   $fails failures"; exit 1; }
[ "$rbac_skipped" = 0 ] || exit 3
