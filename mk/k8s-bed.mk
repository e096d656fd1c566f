# The Kubernetes 1.33 test bed (docs/k8s-test-bed.md): kind with a node image built here from
# source, on the project's own dockerd. `make e2e` (in the Makefile, part of `make test`) runs the
# users' flow on it.
#
#   make bed-up      docker (install, start), Go builds, base images, node image, kind cluster
#   make bed-smoke   a Deployment, Service, DNS, probes, RBAC and kubectl logs on a local image
#   make bed-down    delete the cluster (scripts/docker.sh stop stops dockerd)
#   make bed-build   only the Go builds (scripts/k8s/build-kubernetes.sh)
#   make e2e-kind    the same as make e2e (its earlier name); make images-bed: the images alone

.PHONY: bed-up bed-smoke bed-down bed-build

bed-up:
	scripts/k8s/kind-bed.sh up

bed-smoke:
	scripts/k8s/kind-bed.sh smoke

bed-down:
	scripts/k8s/kind-bed.sh down

bed-build:
	scripts/k8s/build-kubernetes.sh

.PHONY: e2e-kind images-bed
e2e-kind: e2e

# The project's images on the bed's local bases (Dockerfile.prebuilt on `make build`'s binaries).
images-bed: build kafka-install
	scripts/k8s/images.sh build
	scripts/k8s/images.sh check
