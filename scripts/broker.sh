#!/usr/bin/env bash
# The local Kafka-protocol broker for `make demo` and `make test`, on 127.0.0.1 only.
#
#   scripts/broker.sh install              install the broker from PyPI into a cached venv
#   scripts/broker.sh start [STATE_DIR]    start it (data in STATE_DIR/data), print BOOTSTRAP=...
#   scripts/broker.sh stop  [STATE_DIR]    stop the broker started with that STATE_DIR
#
# No Apache Kafka distribution comes from the package registries these machines reach, so the
# local broker is noida-db (Kafka protocol, keeps data on disk across restarts). Its known
# quirks are listed in README.md; orderflow never depends on them (Strimzi's Apache Kafka is the
# target). Environment: ORDERFLOW_CACHE (venv location, default /var/cache/orderflow or
# ~/.cache/orderflow), KAFKA_PORT (default 9092), ORDERFLOW_BROKER_PIN.
set -euo pipefail

PIN=${ORDERFLOW_BROKER_PIN:-noida-db==0.2.3}
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
VENV=$CACHE/broker-venv
PORT=${KAFKA_PORT:-9092}

die() { echo "broker.sh: $*" >&2; exit 1; }

install() {
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/pip" show -q "${PIN%%==*}" >/dev/null 2>&1 \
     && [ "$(cat "$VENV/.pin" 2>/dev/null)" = "$PIN" ]; then
    return 0
  fi
  echo "broker.sh: installing $PIN into $VENV (one time)" >&2
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$PIN" || die "pip install $PIN failed"
  echo "$PIN" > "$VENV/.pin"
}

binary() {
  local sp
  sp=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$sp/noida_db/noida-db"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local state=${1:-$PWD/target/broker}
  install
  mkdir -p "$state/data"
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    echo "BOOTSTRAP=127.0.0.1:$PORT"; return 0
  fi
  port_open "$PORT" && die "port $PORT on 127.0.0.1 is already taken; set KAFKA_PORT, or KAFKA_BOOTSTRAP to use that broker"
  # The binary itself, not the Python wrapper script: stopping the wrapper would orphan the broker.
  "$(binary)" start --only kafka --host 127.0.0.1 --kafka-port "$PORT" --data-dir "$state/data" \
      > "$state/broker.log" 2>&1 &
  echo $! > "$state/pid"
  for _ in $(seq 300); do
    port_open "$PORT" && { echo "BOOTSTRAP=127.0.0.1:$PORT"; return 0; }
    kill -0 "$(cat "$state/pid")" 2>/dev/null || die "broker exited at start; see $state/broker.log"
    sleep 0.1
  done
  die "broker did not open port $PORT within 30s; see $state/broker.log"
}

stop() {
  local state=${1:-$PWD/target/broker} pid
  [ -f "$state/pid" ] || return 0
  pid=$(cat "$state/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/pid"
}

case "${1:-}" in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start [STATE_DIR] | stop [STATE_DIR]" >&2; exit 2 ;;
esac
