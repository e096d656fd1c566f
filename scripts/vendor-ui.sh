#!/usr/bin/env bash
# Vendors the dashboard's charting library (uPlot, MIT) into
# services/analytics-service/assets/vendor/uplot/, where analytics-service embeds it at compile
# time (include_bytes!): the page then works offline and in the container image, with no CDN.
# The files are committed; run this only to re-vendor (e.g. after changing UPLOT_VERSION and
# UPLOT_SHA512). It is idempotent: nothing is fetched when the files of the pinned version are
# there already.
#   npm pack uplot@$UPLOT_VERSION  (npm's configured registry)
#   checks the tarball's sha512 against UPLOT_SHA512 (npm's dist.integrity), refuses otherwise
#   copies dist/uPlot.iife.min.js, dist/uPlot.min.css and LICENSE, and writes VERSION
# Usage: scripts/vendor-ui.sh [--force]
set -euo pipefail

UPLOT_VERSION=1.6.32
UPLOT_SHA512=KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/services/analytics-service/assets/vendor/uplot
FILES=(uPlot.iife.min.js uPlot.min.css LICENSE)
say() { echo "vendor-ui: $*" >&2; }
die() { say "$*"; exit 1; }

complete() {
  [ "$(cat "$DEST/VERSION" 2>/dev/null)" = "uplot $UPLOT_VERSION sha512-$UPLOT_SHA512" ] || return 1
  for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || return 1; done
}
if [ "${1:-}" != --force ] && complete; then
  say "uplot $UPLOT_VERSION already vendored in ${DEST#"$ROOT"/}"
  exit 0
fi

command -v npm >/dev/null || die "npm is needed to re-vendor uplot (the committed files need no npm)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null) || die "npm pack uplot@$UPLOT_VERSION failed"
TGZ=$WORK/uplot-$UPLOT_VERSION.tgz
[ -f "$TGZ" ] || die "npm pack did not produce $(basename "$TGZ")"
got=$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)
[ "$got" = "$UPLOT_SHA512" ] || die "uplot-$UPLOT_VERSION.tgz sha512 is $got, expected $UPLOT_SHA512: refusing it"
tar -xzf "$TGZ" -C "$WORK"
mkdir -p "$DEST"
cp "$WORK/package/dist/uPlot.iife.min.js" "$WORK/package/dist/uPlot.min.css" "$WORK/package/LICENSE" "$DEST/"
echo "uplot $UPLOT_VERSION sha512-$UPLOT_SHA512" > "$DEST/VERSION"
say "vendored uplot $UPLOT_VERSION (sha512 verified) into ${DEST#"$ROOT"/}"
