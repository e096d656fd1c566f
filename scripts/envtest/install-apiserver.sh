#!/usr/bin/env bash
# Installs a real kube-apiserver and etcd for the controller and chart tests (envtest-style: no
# kubelet, no controller-manager; objects are stored, validated and watched, pods never run).
#   etcd            Debian's etcd-server package
#   kube-apiserver  v1.20.2, built from Debian bookworm's `kubernetes` source package (the full
#                   upstream tree with vendor/) with Debian's Go 1.19. About 6 minutes, once.
# Only the machine's own Debian archive is used: the deb-src list is derived from /etc/apt, in a
# private apt state directory; the system's apt configuration is left untouched.
# Usage: DEST=/var/cache/orderflow/envtest scripts/envtest/install-apiserver.sh
#        -> $DEST/bin/kube-apiserver (skipped when present and the right version)
set -euo pipefail

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
DEST=${DEST:-${ORDERFLOW_CACHE:-$default_cache}/envtest}
VERSION=v1.20.2
SRC_PKG=kubernetes
SRC_VER=1.20.5+really1.20.2-1.1+deb12u1
ORIG_TGZ=kubernetes_1.20.5+really1.20.2.orig.tar.gz
GO=/usr/lib/go-1.19/bin

say() { echo "envtest: $*" >&2; }
die() { say "$*"; exit 1; }

have_etcd() { command -v etcd >/dev/null || [ -x /usr/bin/etcd ]; }
if [ -x "$DEST/bin/kube-apiserver" ] && have_etcd \
  && "$DEST/bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $VERSION"; then
  say "kube-apiserver $VERSION and etcd present ($DEST/bin)"
  exit 0
fi

command -v apt-get >/dev/null || die "needs a Debian machine (apt-get) to build kube-apiserver; or set APISERVER to a kube-apiserver binary"
SUDO=""
if [ "$(id -u)" != 0 ]; then command -v sudo >/dev/null || die "needs root (or sudo) to apt-get install"; SUDO=sudo; fi

export DEBIAN_FRONTEND=noninteractive
say "installing build packages (etcd-server golang-1.19-go ...)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev openssl curl dpkg-dev >/dev/null

WORK=$DEST/build
rm -rf "$WORK"
mkdir -p "$DEST/bin" "$WORK"/{apt/lists/partial,apt/cache/archives/partial,apt/sources,src,gopath/src/k8s.io}
trap 'rm -rf "$WORK"' EXIT

# deb-src entries made from the machine's own deb entries (deb822 *.sources and one-line *.list)
n=0
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  sed 's/^Types:.*\bdeb\b.*$/Types: deb-src/' "$f" >"$WORK/apt/sources/src-$n.sources"; n=$((n + 1))
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  grep -E '^\s*deb\s' "$f" | sed -E 's/^\s*deb\s/deb-src /' >"$WORK/apt/sources/src-$n.list" || true; n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no apt sources found under /etc/apt"
APTOPT=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$WORK/apt/sources"
  -o Dir::State::Lists="$WORK/apt/lists" -o Dir::Cache="$WORK/apt/cache")
apt-get "${APTOPT[@]}" update -qq
say "downloading the $SRC_PKG $SRC_VER source package"
(cd "$WORK/src" && apt-get "${APTOPT[@]}" source --download-only -qq "$SRC_PKG=$SRC_VER" >/dev/null)
say "unpacking"
tar -xzf "$WORK/src/$ORIG_TGZ" -C "$WORK/src"
K=$WORK/src/kubernetes-${VERSION#v}
[ -d "$K/cmd/kube-apiserver" ] || die "unexpected source layout in $ORIG_TGZ"

# The vendored reflect2 v1.0.1 breaks with Go >= 1.18; Debian's v1.0.2 has the same API.
rm -f "$K"/vendor/github.com/modern-go/reflect2/*.go "$K"/vendor/github.com/modern-go/reflect2/*.s
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
  "$K/vendor/github.com/modern-go/reflect2/"
ln -sfn "$K" "$WORK/gopath/src/k8s.io/kubernetes"
export PATH=$GO:$PATH CGO_ENABLED=0 GOPATH=$WORK/gopath GOCACHE=$WORK/gocache GO111MODULE=off GOFLAGS=
cd "$WORK/gopath/src/k8s.io/kubernetes"

# pkg/generated/openapi is generated at build time upstream; the release tarball lacks it.
say "generating pkg/generated/openapi (1-2 min)"
go build -o "$WORK/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
DIRS=$( (find pkg cmd plugin third_party -name '*.go' ! -name '*_test.go'
  find -L vendor -name '*.go' ! -name '*_test.go' ! -path 'vendor/k8s.io/code-generator/*' ! -path 'vendor/k8s.io/sample-apiserver/*') \
  | { xargs grep -l '+k8s:openapi-gen=' || true; } | xargs -n1 dirname | LC_ALL=C sort -u \
  | sed 's#^#k8s.io/kubernetes/#' | paste -sd, -)
"$WORK/openapi-gen" -i "$DIRS" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$WORK/openapi-violations.report" 2>/dev/null

# what /version reports (the tarball build has no git metadata)
for f in staging/src/k8s.io/component-base/version/base.go staging/src/k8s.io/client-go/pkg/version/base.go; do
  sed -i -E 's/^(\s*)gitMajor string.*/\1gitMajor string = "1"/; s/^(\s*)gitMinor string.*/\1gitMinor string = "20"/;
    s/^(\s*)gitVersion(\s+)(string )?= .*/\1gitVersion\2\3= "'"$VERSION"'"/; s/^(\s*)gitTreeState (string )?= "".*/\1gitTreeState \2= "clean"/' "$f"
done
say "building kube-apiserver (about 4 min on 2 cores)"
go build -ldflags "-s -w" -o "$DEST/bin/kube-apiserver.tmp" ./cmd/kube-apiserver
mv "$DEST/bin/kube-apiserver.tmp" "$DEST/bin/kube-apiserver"
"$DEST/bin/kube-apiserver" --version
