#!/usr/bin/env bash
# Installs a real kube-apiserver and etcd for the controller and chart tests (envtest-style: no
# kubelet, no controller-manager; objects are stored, validated and watched, pods never run).
# They are the test bed's own builds from source (scripts/k8s/build-kubernetes.sh, pieces
# `kubernetes` and `etcd`: Kubernetes v1.33 and the etcd its kubeadm asks for, from the Go module
# proxy; cached and version-checked there, about 13 minutes once on 2 cores), so envtest, `make
# lint` and the kind bed all run the same API server: CEL validation rules, strict field
# validation and server-side apply as users' clusters have them.
# Usage: scripts/envtest/install-apiserver.sh   (up.sh finds the binaries the same way: --print-env)
# Environment: K8S_VERSION (build-kubernetes.sh's default, v1.33.13), and what build-kubernetes.sh reads.
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "envtest: $*" >&2; }
die() { say "$*"; exit 1; }

# where the build puts the binaries (K8S_BIN, ETCD_BIN), then the build itself (skipped when cached)
eval "$(scripts/k8s/build-kubernetes.sh --print-env)"
want=${K8S_BIN%/bin}; want="Kubernetes ${want##*/kubernetes-}"
if [ "$("$K8S_BIN/kube-apiserver" --version 2>/dev/null)" != "$want" ] || [ ! -x "$ETCD_BIN/etcd" ]; then
  say "building $want (kube-apiserver) and etcd with scripts/k8s/build-kubernetes.sh (cached)"
  scripts/k8s/build-kubernetes.sh kubernetes etcd >&2
fi
[ "$("$K8S_BIN/kube-apiserver" --version 2>/dev/null)" = "$want" ] || die "no $want kube-apiserver in $K8S_BIN after the build"
[ -x "$ETCD_BIN/etcd" ] || die "no etcd in $ETCD_BIN after the build"
say "$want kube-apiserver ($K8S_BIN) and etcd $("$ETCD_BIN/etcd" --version | sed -n 's/^etcd Version: //p') ($ETCD_BIN)"
