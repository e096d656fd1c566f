#!/usr/bin/env bash
# Installs what `make bench` compares orderflow against, once, into a cache outside the work tree
# (each part is skipped when already present):
#   kcat                       Debian package (apt-get, with the machine's own apt sources; needs root)
#   $CACHE/bench-venv          the Python peer's packages, pinned in bench/peers/requirements.txt
#   $CACHE/bench-tools/bin/oha the HTTP load generator, from crates.io (cargo install --locked)
# Usage: scripts/bench-tools.sh       install what is missing, then print the paths
# Environment: ORDERFLOW_CACHE (default /var/cache/orderflow, else ~/.cache/orderflow),
#              OHA_VERSION (default 1.16.0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
OHA_VERSION=${OHA_VERSION:-1.16.0}
VENV=$CACHE/bench-venv
OHA=$CACHE/bench-tools/bin/oha
REQ=$ROOT/bench/peers/requirements.txt

die() { echo "bench-tools: $*" >&2; exit 1; }

install_kcat() {
  command -v kcat >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "kcat is missing: install it (Debian: sudo apt-get install kcat) and retry"
  echo "bench-tools: installing kcat (apt-get, one time)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; } \
    || die "apt-get install kcat failed"
}

install_venv() {
  local want; want=$(sha256sum "$REQ" | cut -d' ' -f1)
  [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.req" 2>/dev/null)" = "$want" ] && return 0
  echo "bench-tools: installing the Python peer's packages into $VENV (one time)" >&2
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" || die "pip install -r $REQ failed"
  echo "$want" > "$VENV/.req"
}

install_oha() {
  [ -x "$OHA" ] && "$OHA" --version 2>/dev/null | grep "$OHA_VERSION" >/dev/null && return 0
  echo "bench-tools: building oha $OHA_VERSION into $CACHE/bench-tools (one time, a few minutes)" >&2
  # its own target dir, so the workspace's build cache is left alone
  CARGO_TARGET_DIR=$CACHE/bench-tools/target cargo install -q --locked --root "$CACHE/bench-tools" \
    oha --version "$OHA_VERSION" || die "cargo install oha $OHA_VERSION failed"
  rm -rf "$CACHE/bench-tools/target"
}

install_kcat
install_venv
install_oha
echo "KCAT=$(command -v kcat)"
echo "PYTHON=$VENV/bin/python"
echo "OHA=$OHA"
