#!/usr/bin/env bash
# Which allocations make a service's peak memory: a heaptrack profile of one orderflow service
# under the N sweep's load (`orderflow-bench --sweep-only --sweep N`: P1 produce, P2 decide,
# P3 replay, restarts). heaptrack hooks malloc, so the service is built with the system
# allocator (feature orderflow-runtime/system-alloc); every other process runs as shipped.
# Prints heaptrack's summary and its biggest peak consumers, keeps the profiles under OUT.
#
# Usage: scripts/heap-profile.sh [SERVICE] [N]    (default: inventory-service 1000000)
# Environment: the services' settings pass through (e.g. KAFKA_FETCH_QUEUE_KB=1024
#   IDEMPOTENCY_WINDOW_MS=1000); OUT (default $ORDERFLOW_CACHE/heap-profile); CARGO_TARGET_DIR.
# Needs heaptrack (installed with apt-get when missing, as root on Debian/Ubuntu).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICE=${1:-inventory-service}
N=${2:-1000000}
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
OUT=${OUT:-$CACHE/heap-profile}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$TARGET/release

die() { echo "heap-profile: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

case $SERVICE in
  order-service | inventory-service | analytics-service) ;;
  *) die "SERVICE must be order-service, inventory-service or analytics-service, not '$SERVICE'" ;;
esac
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a positive number of events, not '$N'"

if ! command -v heaptrack >/dev/null || ! command -v heaptrack_print >/dev/null; then
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] \
    || die "heaptrack is missing: install it (Debian/Ubuntu: sudo apt-get install heaptrack) and retry"
  say "installing heaptrack (apt-get, one time)"
  apt=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
  DEBIAN_FRONTEND=noninteractive apt-get install "${apt[@]}" heaptrack >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 \
      && DEBIAN_FRONTEND=noninteractive apt-get install "${apt[@]}" heaptrack >/dev/null; } \
    || die "apt-get install heaptrack failed"
fi

rm -rf "$OUT" && mkdir -p "$OUT/bin" "$OUT/heap"
say "building $SERVICE with the system allocator (the others as shipped)"
cargo build --release --locked --workspace --bins
for b in order-service inventory-service analytics-service orderflowctl orderflow-bench; do
  cp "$REL/$b" "$OUT/bin/$b"
done
cargo build --release --locked -p "$SERVICE" --features orderflow-runtime/system-alloc
cp "$REL/$SERVICE" "$OUT/bin/$SERVICE.system-alloc"
# the shipped binary back in the target directory (cargo keeps both builds: a relink)
cargo build --release --locked -p "$SERVICE"

# heaptrack runs the service as its child: the wrapper passes a stop by PID (SIGTERM) on, so
# the service ends cleanly and heaptrack writes the whole profile
cat > "$OUT/bin/$SERVICE" <<EOF
#!/usr/bin/env bash
heaptrack -o "$OUT/heap/$SERVICE.\$\$" "$OUT/bin/$SERVICE.system-alloc" "\$@" &
hp=\$!
pass() { pkill "-\$1" -P "\$hp" -f "$SERVICE.system-alloc" || true; }
trap 'pass TERM' TERM; trap 'pass INT' INT
wait "\$hp"; wait "\$hp"
EOF
chmod +x "$OUT/bin/$SERVICE"

say "the N sweep at $N events, $SERVICE under heaptrack (several times slower than shipped)"
ORDERFLOW_BIN_DIR=$OUT/bin "$OUT/bin/orderflow-bench" --sweep-only --sweep "$N" --out "$OUT/bench" \
  >"$OUT/bench.log" 2>&1 || die "the sweep failed; see $OUT/bench.log"

# one profile per start of the service (the sweep starts it several times): the biggest peak
# first
best="" best_peak=0
for f in "$OUT"/heap/*.zst; do
  [ -e "$f" ] || die "no profile was written under $OUT/heap"
  heaptrack_print -f "$f" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    --print-leaks 0 >"$f.summary.txt" 2>/dev/null || continue
  peak=$(sed -n 's/^peak heap memory consumption: //p' "$f.summary.txt" | numfmt --from=iec 2>/dev/null || echo 0)
  echo "$(basename "$f"): $(grep -E '^(total runtime|peak heap memory consumption)' "$f.summary.txt" | tr '\n' ' ')"
  if [ "${peak%.*}" -gt "$best_peak" ]; then best=$f best_peak=${peak%.*}; fi
done
[ -n "$best" ] || die "heaptrack_print read none of the profiles under $OUT/heap"
heaptrack_print -f "$best" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
  --print-leaks 0 -n 10 >"$best.peaks.txt" 2>/dev/null
say "the biggest peak: $(basename "$best") ($best.peaks.txt); its top consumers:"
# each consumer (an allocating function, then the places that called it) with its first frame
awk '/^PEAK MEMORY CONSUMERS/ {on = 1} /^[A-Z ]+$/ && !/^PEAK/ {on = 0}
  on && /consumed over/ {n = 3} on && n > 0 && !/^ *in \// {print; n--}' "$best.peaks.txt" | head -n 45
say "the profiles: $OUT/heap (heaptrack_gui or heaptrack_print -f FILE)"
