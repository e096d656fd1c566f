#!/usr/bin/env bash
# Stops what up.sh started in RUN_DIR, by PID, and waits (up to 10 s, then SIGKILL) for it to exit.
# Usage: scripts/envtest/down.sh RUN_DIR
set -uo pipefail
RUN=${1:?usage: down.sh RUN_DIR}
for p in apiserver etcd; do
  f=$RUN/$p.pid
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
done
