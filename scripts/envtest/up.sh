#!/usr/bin/env bash
# Starts etcd and kube-apiserver on 127.0.0.1 (envtest-style: no kubelet, no controller-manager,
# so Deployments keep the spec they are given and pods never run).
# Usage: scripts/envtest/up.sh RUN_DIR
#   writes RUN_DIR/kubeconfig (token auth, namespace default), RUN_DIR/{etcd,apiserver}.pid and logs.
# Environment:
#   APISERVER   kube-apiserver binary (default: the test bed's v1.33 build, see install-apiserver.sh)
#   ETCD        etcd binary (default: the etcd built beside it)
#   API_PORT    default 16443;  ETCD_PORT default 23790 (and ETCD_PORT+1 for peers)
#   ENVTEST_AUTHORIZATION_MODE  AlwaysAllow (default) or RBAC (the admin token is in system:masters)
set -euo pipefail
RUN=${1:?usage: up.sh RUN_DIR}
eval "$("$(dirname "$0")/../k8s/build-kubernetes.sh" --print-env)"
APISERVER=${APISERVER:-$K8S_BIN/kube-apiserver}
ETCD=${ETCD:-$ETCD_BIN/etcd}
API_PORT=${API_PORT:-16443}
ETCD_PORT=${ETCD_PORT:-23790}
AUTHZ=${ENVTEST_AUTHORIZATION_MODE:-AlwaysAllow}
TOKEN=envtest-admin-token

[ -x "$APISERVER" ] || { echo "envtest: no kube-apiserver at $APISERVER (run scripts/envtest/install-apiserver.sh)" >&2; exit 1; }
[ -x "$ETCD" ] || { echo "envtest: no etcd at $ETCD (run scripts/envtest/install-apiserver.sh)" >&2; exit 1; }
RUN=$(mkdir -p "$RUN" && cd "$RUN" && pwd)
mkdir -p "$RUN/certs" "$RUN/etcd"
chmod 700 "$RUN/etcd"

if [ ! -f "$RUN/certs/apiserver.crt" ]; then
  (
    cd "$RUN/certs"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=envtest-ca" -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
    printf "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n" >ext.cnf
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile ext.cnf \
      -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    echo "$TOKEN,admin,admin-uid,\"system:masters\"" >tokens.csv
  )
fi

nofsync=()
"$ETCD" --help 2>&1 | grep -- --unsafe-no-fsync >/dev/null && nofsync=(--unsafe-no-fsync)
"$ETCD" --name envtest --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "envtest=http://127.0.0.1:$((ETCD_PORT + 1))" "${nofsync[@]}" >"$RUN/etcd.log" 2>&1 &
echo $! >"$RUN/etcd.pid"

"$APISERVER" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$RUN/certs/apiserver.crt" --tls-private-key-file "$RUN/certs/apiserver.key" \
  --token-auth-file "$RUN/certs/tokens.csv" --authorization-mode "$AUTHZ" \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$RUN/certs/sa.key" \
  --service-account-signing-key-file "$RUN/certs/sa.key" --api-audiences https://kubernetes.default.svc \
  --service-cluster-ip-range 10.0.0.0/24 --disable-admission-plugins ServiceAccount \
  --enable-priority-and-fairness=false --cert-dir "$RUN/certs" >"$RUN/apiserver.log" 2>&1 &
echo $! >"$RUN/apiserver.pid"

cat >"$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $RUN/certs/ca.crt
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: envtest
  context: {cluster: envtest, user: admin, namespace: default}
current-context: envtest
KC

# poll /readyz with a 60 s deadline; give up early if either process died
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  if curl -sf --cacert "$RUN/certs/ca.crt" -H "Authorization: Bearer $TOKEN" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1; then
    echo "envtest: kube-apiserver ready on https://127.0.0.1:$API_PORT (authorization $AUTHZ), kubeconfig $RUN/kubeconfig"
    exit 0
  fi
  for p in etcd apiserver; do
    if ! kill -0 "$(cat "$RUN/$p.pid")" 2>/dev/null; then
      echo "envtest: $p exited during start-up:" >&2; tail -20 "$RUN/$p.log" >&2
      "$(dirname "$0")/down.sh" "$RUN" >/dev/null 2>&1 || true
      exit 1
    fi
  done
  sleep 0.5
done
echo "envtest: kube-apiserver not ready after 60 s:" >&2
tail -30 "$RUN/apiserver.log" >&2
"$(dirname "$0")/down.sh" "$RUN" >/dev/null 2>&1 || true
exit 1
