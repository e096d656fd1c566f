# The Kubernetes 1.33 test bed (docs/k8s-test-bed.md): kind with a node image built here from
# source, on the project's own dockerd. Not part of `make test` yet.
#
#   make bed-up      docker (install, start), Go builds, base images, node image, kind cluster
#   make bed-smoke   a Deployment, Service, DNS, probes, RBAC and kubectl logs on a local image
#   make bed-down    delete the cluster (scripts/docker.sh stop stops dockerd)
#   make bed-build   only the Go builds (scripts/k8s/build-kubernetes.sh)

.PHONY: bed-up bed-smoke bed-down bed-build

bed-up:
	scripts/k8s/kind-bed.sh up

bed-smoke:
	scripts/k8s/kind-bed.sh smoke

bed-down:
	scripts/k8s/kind-bed.sh down

bed-build:
	scripts/k8s/build-kubernetes.sh
