#!/usr/bin/env bash
# What a setting of inventory-service costs: a fresh local Kafka per run, N orders published
# while inventory is stopped, then inventory started with the run's settings (LOG_FORMAT=json,
# log to a file) and timed until its group's lag is 0. Prints seconds, orders/s, log lines, bytes
# and inventory's peak RSS (VmHWM).
# Usage: scripts/measure-inventory.sh [N] ["VAR=value VAR2=value ..."]...  (release binaries in $BIN)
# Examples: scripts/measure-inventory.sh 200000 RUST_LOG=info "RUST_LOG=info,inventory_service::logs=debug"
#           scripts/measure-inventory.sh 200000 TRANSACTIONS=false TRANSACTIONS=true
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
N=${1:-200000}; shift || true
[ $# -gt 0 ] || set -- RUST_LOG=info
# ports drawn below the kernel's range for outgoing source ports (see scripts/kafka.sh)
free_port() { "$ROOT/scripts/kafka.sh" free-port; }
for settings in "$@"; do
  work=$(mktemp -d /tmp/orderflow-measure.XXXXXX)
  http=$(free_port); ihttp=$(free_port)
  "$ROOT/scripts/kafka.sh" start "$work/kafka" >/dev/null
  eval "$("$ROOT/scripts/kafka.sh" bootstrap "$work/kafka")"
  export KAFKA_BOOTSTRAP=$BOOTSTRAP
  # order-service takes only items an inventory knows (its catalogue, inventory-ledger): one
  # inventory start on the empty topics writes it
  HTTP_ADDR=127.0.0.1:$ihttp "$BIN/inventory-service" >"$work/seed.log" 2>&1 & spid=$!
  until curl -sf "127.0.0.1:$ihttp/readyz" >/dev/null; do sleep 0.2; done
  kill "$spid"; wait "$spid" 2>/dev/null || true
  HTTP_ADDR=127.0.0.1:$http "$BIN/order-service" >"$work/order.log" 2>&1 & opid=$!
  until curl -sf "127.0.0.1:$http/readyz" >/dev/null; do sleep 0.2; done
  curl -sf -XPOST "127.0.0.1:$http/orders/bulk" -H 'content-type: application/json' \
    -d "{\"count\":$N,\"seed\":1}" >/dev/null || { echo "POST /orders/bulk failed; see $work/order.log" >&2; exit 1; }
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086  # the run's settings are VAR=value words
  env LOG_FORMAT=json HTTP_ADDR=127.0.0.1:$ihttp $settings "$BIN/inventory-service" >"$work/inventory.log" 2>&1 & ipid=$!
  "$BIN/orderflowctl" lag --group inventory --topic orders --until-zero --interval-ms 100 --timeout-secs 600 >/dev/null 2>&1
  t1=$(date +%s.%N)
  rss=$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$ipid/status")
  kill "$ipid" "$opid"; wait "$ipid" "$opid" 2>/dev/null || true
  "$ROOT/scripts/kafka.sh" stop "$work/kafka" >/dev/null
  secs=$(echo "$t1 - $t0" | bc -l)
  # deciding alone: from the first to the last "batch decided" line (start-up excluded)
  decide=$(python3 -c '
import json, sys
from datetime import datetime
ts = [json.loads(l)["timestamp"] for l in open(sys.argv[1]) if "\"batch decided\"" in l]
p = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")[:26] + "+00:00")
print((p(ts[-1]) - p(ts[0])).total_seconds())' "$work/inventory.log")
  printf '%-45s %d orders: to lag 0 %6.2f s, deciding %6.2f s = %7.0f orders/s, %7d log lines, %6.1f MB, peak RSS %4.0f MiB\n' "$settings" "$N" "$secs" \
    "$decide" "$(echo "$N / $decide" | bc -l)" "$(wc -l <"$work/inventory.log")" "$(echo "$(stat -c %s "$work/inventory.log") / 1000000" | bc -l)" "$rss"
  rm -rf "$work"
done
