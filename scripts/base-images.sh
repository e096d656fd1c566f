#!/usr/bin/env bash
# Local base images, since no image registry is reachable: each is a Debian root filesystem made by
# debootstrap from the machine's own apt source (the first deb URI in /etc/apt that serves the
# suite), then `docker import`ed. An image is skipped when it exists with the same stamp (label
# orderflow.stamp: suite, packages and this recipe's revision).
#
#   orderflow.local/debian:bookworm-slim        minbase: what debian:bookworm-slim is for our images
#   orderflow.local/debian-iptables:bookworm    + iptables, conntrack (the kube-proxy image)
#   orderflow.local/debian-node:bookworm        + systemd, Debian's containerd and runc, iptables,
#                                               nftables, iproute2, ... (the kind node's root fs)
#   orderflow.local/debian-jre:bookworm         + Debian's OpenJDK 17 JRE (headless): the Kafka image
#                                               of the test bed (scripts/k8s/images.sh kafka)
#   orderflow.local/debian-build:bookworm       + build-essential, pkg-config, zlib1g-dev: under
#                                               scripts/k8s/rust-image.sh (the Dockerfile's build stage)
#
# Usage: scripts/base-images.sh [slim|iptables|node|jre|build ...]   (default: slim, iptables, node)
#        scripts/base-images.sh --list                    names of the three default images
#        scripts/base-images.sh --name KIND               name of one image (slim, iptables, node, jre, build)
# Needs root, debootstrap and a running Docker (scripts/docker.sh install && scripts/docker.sh start;
# DOCKER_HOST is taken from scripts/docker.sh env when unset).
# Environment: DEBIAN_SUITE (bookworm), IMAGE_NS (orderflow.local), ORDERFLOW_CACHE, DEBIAN_MIRROR
#   (default: derived from /etc/apt; downloaded .debs are kept in $ORDERFLOW_CACHE/debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${DEBIAN_SUITE:-bookworm}
NS=${IMAGE_NS:-orderflow.local}
RECIPE=2
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
[ -n "${DOCKER_HOST:-}" ] || eval "$(scripts/docker.sh env)"

say() { echo "base-images: $*" >&2; }
die() { say "$*"; exit 1; }

PKG_IPTABLES=iptables,conntrack,ca-certificates
PKG_JRE=openjdk-17-jre-headless,ca-certificates
PKG_BUILD=build-essential,pkg-config,zlib1g-dev,ca-certificates
PKG_NODE=systemd,systemd-sysv,dbus,containerd,runc,iptables,nftables,conntrack,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,socat,ebtables,iputils-ping
image_of() {
  case "$1" in
    slim) echo "$NS/debian:$SUITE-slim" ;;
    iptables) echo "$NS/debian-iptables:$SUITE" ;;
    node) echo "$NS/debian-node:$SUITE" ;;
    jre) echo "$NS/debian-jre:$SUITE" ;;
    build) echo "$NS/debian-build:$SUITE" ;;
    *) die "unknown image '$1' (slim, iptables, node, jre, build)" ;;
  esac
}
packages_of() { case "$1" in slim) echo "" ;; iptables) echo "$PKG_IPTABLES" ;; node) echo "$PKG_NODE" ;; jre) echo "$PKG_JRE" ;; build) echo "$PKG_BUILD" ;; esac; }
stamp_of() { echo "$SUITE minbase+$(packages_of "$1") recipe=$RECIPE"; }

# The first URI of a deb entry under /etc/apt whose suites include $SUITE (deb822 and one-line lists).
mirror() {
  [ -n "${DEBIAN_MIRROR:-}" ] && { echo "$DEBIAN_MIRROR"; return; }
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v s="$SUITE" '
      /^[[:space:]]*$/ { if (deb && suite && u != "") { print u; exit } deb=0; suite=0; u="" ; next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb=1 }
      tolower($1) == "uris:" { u=$2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) suite=1 }
      END { if (deb && suite && u != "") print u }' "$f" | head -1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v s="$SUITE" '$1 == "deb" { i=2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++;
      if ($(i+1) == s) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  die "no deb source for '$SUITE' under /etc/apt (set DEBIAN_MIRROR)"
}

current_stamp() { docker image inspect --format '{{index .Config.Labels "orderflow.stamp"}}' "$1" 2>/dev/null || true; }

build() {
  local kind=$1 image want
  image=$(image_of "$kind"); want=$(stamp_of "$kind")
  if [ "$(current_stamp "$image")" = "$want" ]; then say "$image present"; return 0; fi
  [ "$(id -u)" = 0 ] || die "debootstrap needs root"
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || die "no debootstrap: run scripts/docker.sh install"
  docker info >/dev/null 2>&1 || die "Docker does not answer at $DOCKER_HOST: run scripts/docker.sh start"
  local t0=$SECONDS root pkgs
  root=$(mktemp -d "$CACHE/debootstrap-root.XXXXXX")
  # shellcheck disable=SC2064
  trap "umount -R '$root/proc' '$root/sys' 2>/dev/null || true; rm -rf '$root'" EXIT
  pkgs=$(packages_of "$kind")
  mkdir -p "$CACHE/debootstrap/archives"
  say "$image: debootstrap --variant=minbase $SUITE ${pkgs:+(+ ${pkgs//,/ })} (about 1-3 min; log $CACHE/debootstrap/$kind.log)"
  if ! PATH=/usr/sbin:/sbin:$PATH debootstrap --variant=minbase --components=main --cache-dir="$CACHE/debootstrap/archives" \
      ${pkgs:+--include="$pkgs"} "$SUITE" "$root" "$(mirror)" >"$CACHE/debootstrap/$kind.log" 2>&1; then
    tail -20 "$CACHE/debootstrap/$kind.log" >&2; die "debootstrap failed (log $CACHE/debootstrap/$kind.log)"
  fi
  # What a slim image leaves out, and nothing of this machine: no apt lists, no sources naming a
  # mirror, no resolv.conf or hostname (the runtime provides those).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
    "$root"/var/log/apt/* "$root"/var/cache/debconf/*-old "$root"/tmp/* 2>/dev/null || true
  echo "# no apt sources: this image was made offline by orderflow's scripts/base-images.sh" >"$root/etc/apt/sources.list"
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"; : >"$root/etc/machine-id"
  say "$image: docker import ($(du -sm "$root" | cut -f1) MiB)"
  tar -C "$root" --numeric-owner -c . | docker import \
    --change "LABEL orderflow.stamp=\"$want\"" --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$image" >/dev/null
  rm -rf "$root"; trap - EXIT
  say "$image built in $((SECONDS - t0))s ($(docker image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MiB", $1/1048576}'))"
}

if [ "${1:-}" = --list ]; then for k in slim iptables node; do image_of "$k"; done; exit 0; fi
if [ "${1:-}" = --name ]; then image_of "${2:?usage: $0 --name slim|iptables|node|jre|build}"; exit 0; fi
kinds=("$@"); [ ${#kinds[@]} -gt 0 ] || kinds=(slim iptables node)
for k in "${kinds[@]}"; do build "$k"; done
