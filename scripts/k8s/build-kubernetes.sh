#!/usr/bin/env bash
# Builds Kubernetes and what a node needs from source, with Go, from the Go module proxy that
# `go env GOPROXY` names (nothing else is downloaded). Every piece is cached under
#   $K8S_CACHE/<piece>-<version>/bin      (default K8S_CACHE=$ORDERFLOW_CACHE/k8s)
# with a stamp file (.stamp: the piece, its version and the build recipe's revision) and is skipped
# when the stamp matches. Build time and disk use of each piece go to $K8S_CACHE/build-times.tsv.
#
#   kubernetes  k8s.io/kubernetes (the v0.x staging modules replace its ./staging paths):
#               kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl
#   etcd        go.etcd.io/etcd/server/v3 (the version kubeadm of that release asks for)
#   coredns     github.com/coredns/coredns (the version kubeadm of that release asks for), with
#               the plugins of $COREDNS_PLUGINS only
#   pause       build/pause/linux/pause.c of the kubernetes module, compiled static with cc
#   crictl      sigs.k8s.io/cri-tools
#   cni         github.com/containernetworking/plugins: bridge host-local loopback portmap ptp
#   kind        sigs.k8s.io/kind
#
# Usage: scripts/k8s/build-kubernetes.sh [piece ...]     (default: all, in the order above)
#        scripts/k8s/build-kubernetes.sh --print-env     where the binaries are (shell assignments)
# Environment: K8S_VERSION (v1.33.13), ETCD_VERSION, COREDNS_VERSION, PAUSE_VERSION (default: what
#   kubeadm's constants of K8S_VERSION say), CRICTL_VERSION (v1.34.0), CNI_PLUGINS_VERSION (v1.7.1),
#   KIND_VERSION (v0.33.0), GO (go binary), BUILD_NICE (10: builds run under nice -n 10),
#   GO_BUILD_P (go build -p; default: the number of cores).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.33.13}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.7.1}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
RECIPE=4   # bump when the way a piece is built changes: the stamps then no longer match

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
K8S_CACHE=${K8S_CACHE:-$CACHE/k8s}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
NICE=(nice -n "${BUILD_NICE:-10}")
export GOMODCACHE=${GOMODCACHE:-$CACHE/go/mod} GOCACHE=${GOCACHE:-$CACHE/go/build}
export GOTOOLCHAIN=local GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
TIMES=$K8S_CACHE/build-times.tsv

say() { echo "k8s-build: $*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$GO" ] || die "no Go toolchain (set GO=/path/to/go); Go 1.24 or newer builds Kubernetes 1.33"
mkdir -p "$K8S_CACHE" "$GOMODCACHE" "$GOCACHE"
[ -f "$TIMES" ] || printf 'piece\tversion\tseconds\tbin_MiB\tgo_cache_MiB_after\tfinished\n' >"$TIMES"

k8s_dir() { echo "$K8S_CACHE/kubernetes-$K8S_VERSION"; }

# The kubernetes module's own source tree in the module cache (downloaded on first use).
k8s_src() {
  local d
  d=$(cd "$K8S_CACHE" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  [ -n "$d" ] && [ -d "$d" ] || die "the Go module proxy did not give k8s.io/kubernetes@$K8S_VERSION"
  echo "$d"
}

# A constant of kubeadm of this release (DefaultEtcdVersion, CoreDNSVersion, PauseVersion).
kubeadm_const() {
  sed -n "s/^\s*$1 = \"\(.*\)\"$/\1/p" "$(k8s_src)/cmd/kubeadm/app/constants/constants.go" | head -1
}

stamp_of() { printf '%s %s recipe=%s go=%s\n' "$1" "$2" "$RECIPE" "$("$GO" env GOVERSION)"; }
is_built() { [ -f "$1/.stamp" ] && [ "$(cat "$1/.stamp")" = "$(stamp_of "$2" "$3")" ]; }

# record PIECE VERSION DIR START_SECONDS
record() {
  local secs=$((SECONDS - $4)) bin gc
  bin=$(du -sm "$3/bin" | cut -f1); gc=$(du -sm "$GOCACHE" | cut -f1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$secs" "$bin" "$gc" "$(date -u +%FT%TZ)" >>"$TIMES"
  stamp_of "$1" "$2" >"$3/.stamp"
  say "$1 $2 built in ${secs}s ($bin MiB in $3/bin)"
}

# A throwaway main module that requires MODULE@VERSION; extra lines (replace, godebug) from stdin.
# Prints its directory.
wrapper_module() {
  local name=$1 module=$2 version=$3 w=$K8S_CACHE/.work/$1
  rm -rf "$w"; mkdir -p "$w"
  { echo "module orderflow.local/build/$name"; echo; echo "go 1.24.0"; echo
    echo "require $module $version"; cat; } >"$w/go.mod"
  echo "$w"
}

# go_build DIR LOGNAME OUTDIR LDFLAGS PKG... : go build with a progress line every 30 s
go_build() {
  local dir=$1 name=$2 log=$K8S_CACHE/.work/$2.log out=$3 ldflags=$4; shift 4
  local t0=$SECONDS
  ( cd "$dir" && exec "${NICE[@]}" "$GO" build -v -p "${GO_BUILD_P:-$(nproc)}" -trimpath -ldflags "$ldflags" -o "$out/" "$@" ) >"$log" 2>&1 &
  local pid=$! n next=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if [ $SECONDS -ge $next ]; then
      next=$((SECONDS + 30))
      n=$(grep -c -E '^[a-zA-Z0-9._~/-]+$' "$log" || true)
      say "  ... $name: $((SECONDS - t0))s, $n packages compiled"
    fi
  done
  if ! wait "$pid"; then tail -30 "$log" >&2; die "$name: go build failed (log: $log)"; fi
}

build_kubernetes() {
  local dir; dir=$(k8s_dir)
  is_built "$dir" kubernetes "$K8S_VERSION" && { say "kubernetes $K8S_VERSION present ($dir/bin)"; return 0; }
  local t0=$SECONDS src v=${K8S_VERSION#v}
  say "kubernetes $K8S_VERSION: resolving the module and its v0.${v#1.} staging modules"
  src=$(k8s_src)
  # Each ./staging/src/k8s.io/X replace of kubernetes' go.mod becomes k8s.io/X v0.<minor>.<patch>,
  # published separately (a module zip never holds nested modules).
  local w
  w=$( { sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#replace \1 => \1 v0.'"${v#1.}"'#p' "$src/go.mod"
         grep -E '^godebug ' "$src/go.mod" || true; } | wrapper_module kubernetes k8s.io/kubernetes "$K8S_VERSION")
  grep -q '^replace k8s.io/api ' "$w/go.mod" || die "no staging replaces found in $src/go.mod"
  # what /version and --version report (hack/lib/version.sh sets the same variables)
  local minor ld="-s -w" p built
  # the release's own date (the module proxy's .info), so that a rebuild gives the same binaries
  built=$(cd "$K8S_CACHE" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"Info": "\(.*\)",$/\1/p' \
    | xargs cat | sed -n 's/.*"Time":"\([^"]*\)".*/\1/p')
  [ -n "$built" ] || built=1970-01-01T00:00:00Z
  minor=${v#1.}; minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=$built"
  done
  mkdir -p "$dir/bin.new"
  say "kubernetes $K8S_VERSION: compiling 7 commands (cold: about 25 min on 2 cores; progress every 30 s)"
  go_build "$w" kubernetes "$dir/bin.new" "$ld" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubectl
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  "$dir/bin/kubelet" --version | grep -x "Kubernetes $K8S_VERSION" >/dev/null || die "kubelet reports $("$dir/bin/kubelet" --version)"
  record kubernetes "$K8S_VERSION" "$dir" "$t0"
}

build_etcd() {
  local ver; ver=${ETCD_VERSION:-v$(kubeadm_const DefaultEtcdVersion | sed 's/-[0-9]*$//')}
  local dir=$K8S_CACHE/etcd-$ver
  is_built "$dir" etcd "$ver" && { say "etcd $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS w
  w=$(wrapper_module etcd go.etcd.io/etcd/server/v3 "$ver" </dev/null)
  mkdir -p "$dir/bin.new"
  say "etcd $ver: compiling (cold: about 3 min)"
  go_build "$w" etcd "$dir/bin.new" "-s -w" go.etcd.io/etcd/server/v3
  mv "$dir/bin.new/v3" "$dir/bin.new/etcd" 2>/dev/null || mv "$dir/bin.new/server" "$dir/bin.new/etcd"
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  "$dir/bin/etcd" --version | grep "etcd Version: ${ver#v}" >/dev/null || die "etcd reports $("$dir/bin/etcd" --version)"
  record etcd "$ver" "$dir" "$t0"
}

# CoreDNS with the plugins of kubeadm's Corefile (errors health ready kubernetes prometheus forward
# cache loop reload loadbalance) and a few that cluster DNS customizations use, instead of all ~60
# (no cloud DNS SDKs to compile). "prometheus" is the metrics plugin.
COREDNS_PLUGINS=${COREDNS_PLUGINS:-errors health ready kubernetes metrics forward cache loop reload loadbalance log hosts rewrite template bind debug whoami}
build_coredns() {
  local ver; ver=${COREDNS_VERSION:-$(kubeadm_const CoreDNSVersion)}
  local dir=$K8S_CACHE/coredns-$ver spec="$ver plugins=${COREDNS_PLUGINS// /,}"
  is_built "$dir" coredns "$spec" && { say "coredns $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS w p
  w=$(wrapper_module coredns github.com/coredns/coredns "$ver" </dev/null)
  # the main package of CoreDNS' own coredns.go, with our plugin list instead of core/plugin
  { echo "package main"; echo; echo "import ("; echo '	"github.com/coredns/coredns/coremain"'
    for p in $COREDNS_PLUGINS; do echo "	_ \"github.com/coredns/coredns/plugin/$p\""; done
    echo ")"; echo; echo "func main() { coremain.Run() }"; } >"$w/main.go"
  mkdir -p "$dir/bin.new"
  say "coredns $ver: compiling with plugins: $COREDNS_PLUGINS (cold: about 1 min)"
  go_build "$w" coredns "$dir/bin.new" "-s -w" .
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  "$dir/bin/coredns" -version | grep "CoreDNS-${ver#v}" >/dev/null || die "coredns reports $("$dir/bin/coredns" -version)"
  "$dir/bin/coredns" -plugins >"$dir/plugins.txt"
  grep -qw kubernetes "$dir/plugins.txt" || die "coredns was built without its kubernetes plugin"
  record coredns "$ver" "$dir" "$t0"
  stamp_of coredns "$spec" >"$dir/.stamp"
}

build_pause() {
  local ver; ver=${PAUSE_VERSION:-$(kubeadm_const PauseVersion)}
  local dir=$K8S_CACHE/pause-$ver
  is_built "$dir" pause "$ver" && { say "pause $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS src cc=${CC:-cc}
  command -v "$cc" >/dev/null || die "a C compiler is needed for pause (apt-get install gcc libc6-dev)"
  src=$(k8s_src)/build/pause/linux/pause.c
  rm -rf "${dir:?}/bin"; mkdir -p "$dir/bin"
  say "pause $ver: compiling $src (static)"
  "$cc" -Os -Wall -Werror -static -DVERSION="v$ver-orderflow" -o "$dir/bin/pause" "$src"
  strip "$dir/bin/pause" 2>/dev/null || true
  "$dir/bin/pause" -v | grep "$ver" >/dev/null || die "pause reports $("$dir/bin/pause" -v)"
  record pause "$ver" "$dir" "$t0"
}

build_crictl() {
  local ver=$CRICTL_VERSION dir=$K8S_CACHE/crictl-$CRICTL_VERSION
  is_built "$dir" crictl "$ver" && { say "crictl $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS w
  w=$(wrapper_module crictl sigs.k8s.io/cri-tools "$ver" </dev/null)
  mkdir -p "$dir/bin.new"
  say "crictl $ver: compiling (cold: about 1 min)"
  go_build "$w" crictl "$dir/bin.new" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$ver" sigs.k8s.io/cri-tools/cmd/crictl
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  record crictl "$ver" "$dir" "$t0"
}

build_cni() {
  local ver=$CNI_PLUGINS_VERSION dir=$K8S_CACHE/cni-$CNI_PLUGINS_VERSION
  is_built "$dir" cni "$ver" && { say "cni plugins $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS w m=github.com/containernetworking/plugins
  w=$(wrapper_module cni "$m" "$ver" </dev/null)
  mkdir -p "$dir/bin.new"
  say "cni plugins $ver: compiling bridge host-local loopback portmap ptp (cold: about 1 min)"
  go_build "$w" cni "$dir/bin.new" "-s -w -X $m/pkg/utils/buildversion.BuildVersion=$ver" \
    $m/plugins/main/bridge $m/plugins/ipam/host-local $m/plugins/main/loopback $m/plugins/meta/portmap $m/plugins/main/ptp
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  record cni "$ver" "$dir" "$t0"
}

build_kind() {
  local ver=$KIND_VERSION dir=$K8S_CACHE/kind-$KIND_VERSION
  is_built "$dir" kind "$ver" && { say "kind $ver present ($dir/bin)"; return 0; }
  local t0=$SECONDS w
  w=$(wrapper_module kind sigs.k8s.io/kind "$ver" </dev/null)
  mkdir -p "$dir/bin.new"
  say "kind $ver: compiling (cold: about 1 min)"
  go_build "$w" kind "$dir/bin.new" "-s -w" sigs.k8s.io/kind
  rm -rf "${dir:?}/bin"; mv "$dir/bin.new" "$dir/bin"
  "$dir/bin/kind" version | grep "kind $ver" >/dev/null || die "kind reports $("$dir/bin/kind" version)"
  record kind "$ver" "$dir" "$t0"
}

print_env() {
  echo "K8S_BIN=$(k8s_dir)/bin"
  echo "ETCD_BIN=$K8S_CACHE/etcd-${ETCD_VERSION:-v$(kubeadm_const DefaultEtcdVersion | sed 's/-[0-9]*$//')}/bin"
  echo "COREDNS_BIN=$K8S_CACHE/coredns-${COREDNS_VERSION:-$(kubeadm_const CoreDNSVersion)}/bin"
  echo "PAUSE_BIN=$K8S_CACHE/pause-${PAUSE_VERSION:-$(kubeadm_const PauseVersion)}/bin"
  echo "CRICTL_BIN=$K8S_CACHE/crictl-$CRICTL_VERSION/bin"
  echo "CNI_BIN=$K8S_CACHE/cni-$CNI_PLUGINS_VERSION/bin"
  echo "KIND_BIN=$K8S_CACHE/kind-$KIND_VERSION/bin"
}

ALL=(kubernetes etcd coredns pause crictl cni kind)
if [ "${1:-}" = --print-env ]; then print_env; exit 0; fi
pieces=("$@"); [ ${#pieces[@]} -gt 0 ] || pieces=("${ALL[@]}")
t_all=$SECONDS
for p in "${pieces[@]}"; do
  case "$p" in
    kubernetes|etcd|coredns|pause|crictl|cni|kind) "build_$p" ;;
    *) die "unknown piece '$p' (one of: ${ALL[*]})" ;;
  esac
done
say "done in $((SECONDS - t_all))s; binaries under $K8S_CACHE (times: $TIMES)"
