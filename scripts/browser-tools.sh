#!/usr/bin/env bash
# Installs the headless browser the dashboard's end-to-end test drives: Debian's `chromium`
# package, from the machine's own apt sources (nothing else is configured or downloaded).
# Skipped when a chromium binary is already there. Needs root (or sudo) for apt-get.
# Usage: scripts/browser-tools.sh        install when missing, then print CHROMIUM=<path>
# Environment: CHROMIUM (a browser binary to use instead; then nothing is installed).
set -euo pipefail

say() { echo "browser-tools: $*" >&2; }
die() { say "$*"; exit 1; }

find_chromium() {
  if [ -n "${CHROMIUM:-}" ] && [ -x "${CHROMIUM}" ]; then echo "$CHROMIUM"; return 0; fi
  for c in chromium chromium-browser; do
    if command -v "$c" >/dev/null; then command -v "$c"; return 0; fi
  done
  return 1
}

if path=$(find_chromium); then
  echo "CHROMIUM=$path"
  exit 0
fi

command -v apt-get >/dev/null || die "chromium is missing and this is not a Debian machine: install Chromium and set CHROMIUM=/path/to/chromium"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "chromium is missing: install it (Debian: sudo apt-get install chromium) and retry"
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
APT=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
say "installing Debian's chromium package (apt-get, one time)"
# a stale package list first fails the install; refresh it then and try once more
$SUDO apt-get install "${APT[@]}" chromium >/dev/null 2>&1 \
  || { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null \
       && $SUDO apt-get install "${APT[@]}" chromium >/dev/null; } \
  || die "apt-get install chromium failed"
path=$(find_chromium) || die "chromium installed but not on PATH"
say "installed $("$path" --version 2>/dev/null || echo "$path")"
echo "CHROMIUM=$path"
