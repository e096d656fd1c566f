# Kubernetes delivery: kind cluster, Strimzi Kafka, images, the Helm chart, and `make lint`.
# Scripts live in scripts/k8s/; tools (helm, yamllint, kubernetes-validate) are installed once
# into $(ORDERFLOW_CACHE) (default /var/cache/orderflow, else ~/.cache/orderflow).
#
#   make kind-up      kind cluster + Strimzi operator (pinned) + deploy/ (Kafka, topics), waits for Ready
#   make images       docker build the four service images (and kind load them when the cluster exists)
#   make kind-load    kind load the built images
#   make install      helm upgrade --install orderflow helm/orderflow into $(K8S_NAMESPACE)
#   make kind-down    delete the kind cluster
#   make lint         yamllint, helm lint, schema checks, local kube-apiserver checks (no cluster
#                     needed); `make test` (in the Makefile) runs it first
#   make k8s-tools    install helm and the validators now

K8S_NAMESPACE ?= orderflow
export K8S_NAMESPACE

.PHONY: kind-up kind-down images kind-load install lint k8s-tools tools

kind-up:
	scripts/k8s/kind.sh up

kind-down:
	scripts/k8s/kind.sh down

images:
	scripts/k8s/kind.sh images

kind-load:
	scripts/k8s/kind.sh load

install:
	scripts/k8s/kind.sh install

lint:
	scripts/k8s/lint.sh

k8s-tools tools:
	scripts/k8s/tools.sh
