#!/usr/bin/env bash
# The kind path for users' laptops (needs Docker, kind, kubectl; helm comes from scripts/k8s/tools.sh).
#   scripts/k8s/kind.sh up      create the cluster, install the Strimzi operator (pinned Helm chart),
#                               apply deploy/, wait for Kafka and its topics to be Ready
#   scripts/k8s/kind.sh down    delete the cluster (and everything in it)
#   scripts/k8s/kind.sh images  docker build the four service images and kind load them
#   scripts/k8s/kind.sh load    kind load the already built images
#   scripts/k8s/kind.sh install helm upgrade --install the orderflow chart
# Environment (defaults): KIND_CLUSTER=orderflow K8S_NAMESPACE=orderflow STRIMZI_VERSION=1.2.0
#   STRIMZI_CHART_REPO (Strimzi's Helm repository) KAFKA_READY_TIMEOUT=600s IMAGE_PREFIX=orderflow
#   IMAGE_TAG=dev KIND_NODE_IMAGE (kindest/node image; default: the one of your kind release)
#   RUST_IMAGE, RUNTIME_IMAGE (base images of the Dockerfile; default: its public ones)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/k8s/tools.sh
source scripts/k8s/tools.sh

CLUSTER=${KIND_CLUSTER:-orderflow}
NS=${K8S_NAMESPACE:-orderflow}
# The operator release matching the Kafka/KafkaNodePool/KafkaTopic v1 schemas deploy/ is checked against.
STRIMZI_VERSION=${STRIMZI_VERSION:-1.2.0}
STRIMZI_CHART_REPO=${STRIMZI_CHART_REPO:-https://strimzi.io/charts/}
KAFKA_READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-600s}
PREFIX=${IMAGE_PREFIX:-orderflow}
TAG=${IMAGE_TAG:-dev}
SERVICES=(order-service inventory-service analytics-service replay-controller)
CTX=kind-$CLUSTER

need() {
  command -v "$1" >/dev/null 2>&1 || k8s_die "$1 is not installed: $2"
}
need_docker() {
  need docker "install Docker (Docker Desktop, or Docker Engine on Linux)"
  docker info >/dev/null 2>&1 || k8s_die "docker is installed but its daemon does not answer (is Docker running? can this user reach it?)"
}
need_kind() { need kind "install kind v0.27 or newer (kind.sigs.k8s.io, 'Quick Start')"; }
need_kubectl() { need kubectl "install kubectl 1.30 or newer"; }
need_cluster() {
  kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null || k8s_die "no kind cluster '$CLUSTER': run 'make kind-up' first"
}

up() {
  need_docker; need_kind; need_kubectl; install_helm
  if kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; then
    echo "k8s: kind cluster '$CLUSTER' exists, reusing it"
  else
    kind create cluster --name "$CLUSTER" --config kind-config.yaml --wait 120s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
  fi
  kubectl config use-context "$CTX" >/dev/null
  kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  echo "k8s: installing the Strimzi operator $STRIMZI_VERSION (Helm chart strimzi-kafka-operator) into namespace $NS"
  "$HELM" upgrade --install strimzi strimzi-kafka-operator --repo "$STRIMZI_CHART_REPO" --version "$STRIMZI_VERSION" \
    --namespace "$NS" --wait --timeout 5m \
    || k8s_die "the Strimzi operator did not become ready; see: kubectl -n $NS get pods; kubectl -n $NS logs deploy/strimzi-cluster-operator"
  echo "k8s: applying deploy/ (Kafka 'orderflow' with a KRaft node pool, topics)"
  kubectl -n "$NS" apply -f deploy/
  echo "k8s: waiting up to $KAFKA_READY_TIMEOUT for Kafka 'orderflow' to be Ready (first start pulls the Kafka image: minutes)"
  if ! kubectl -n "$NS" wait kafka/orderflow --for=condition=Ready --timeout="$KAFKA_READY_TIMEOUT"; then
    kubectl -n "$NS" get kafka,kafkanodepool,pods || true
    kubectl -n "$NS" get kafka orderflow -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' || true
    k8s_die "Kafka 'orderflow' is not Ready after $KAFKA_READY_TIMEOUT. Look at the pods above and at
  kubectl -n $NS logs deploy/strimzi-cluster-operator --tail=50
Docker needs about 4 GB of memory for kind + Kafka. Retry with a longer wait: KAFKA_READY_TIMEOUT=15m make kind-up"
  fi
  kubectl -n "$NS" wait kafkatopic --all --for=condition=Ready --timeout=120s \
    || k8s_die "the KafkaTopics are not Ready; see kubectl -n $NS get kafkatopic and the entity operator's logs"
  kubectl -n "$NS" get kafka,kafkatopic
  echo "k8s: Kafka is Ready at orderflow-kafka-bootstrap.$NS.svc:9092. Next: make images && make install"
}

down() {
  need_kind
  if kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; then kind delete cluster --name "$CLUSTER"
  else echo "k8s: no kind cluster '$CLUSTER'"; fi
}

images() {
  need_docker
  for s in "${SERVICES[@]}"; do
    echo "k8s: docker build $PREFIX/$s:$TAG"
    # RUST_IMAGE / RUNTIME_IMAGE (optional): other base images than the Dockerfile's public defaults
    docker build --build-arg SERVICE="$s" ${RUST_IMAGE:+--build-arg RUST_IMAGE="$RUST_IMAGE"} \
      ${RUNTIME_IMAGE:+--build-arg RUNTIME_IMAGE="$RUNTIME_IMAGE"} -t "$PREFIX/$s:$TAG" .
  done
}

load() {
  need_docker; need_kind; need_cluster
  for s in "${SERVICES[@]}"; do kind load docker-image --name "$CLUSTER" "$PREFIX/$s:$TAG"; done
}

install() {
  need_kubectl; install_helm
  "$HELM" upgrade --install orderflow helm/orderflow --namespace "$NS" --create-namespace \
    --set image.prefix="$PREFIX" --set image.tag="$TAG" --wait --timeout 5m
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  images)
    images
    if command -v kind >/dev/null && kind get clusters 2>/dev/null | grep -x "$CLUSTER" >/dev/null; then load
    else echo "k8s: images built; no kind cluster '$CLUSTER' to load them into (make kind-up, then make kind-load)"; fi ;;
  load) load ;;
  install) install ;;
  *) echo "usage: $0 up|down|images|load|install" >&2; exit 2 ;;
esac
