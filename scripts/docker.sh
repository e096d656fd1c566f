#!/usr/bin/env bash
# A Docker engine of the project's own, for the test bed (kind nodes, the images):
#   scripts/docker.sh install   apt-get install Debian's docker.io and debootstrap when missing
#                               (root; the machine's own apt sources; nothing else is touched)
#   scripts/docker.sh start     start dockerd (unless it runs), wait until `docker info` answers,
#                               then print DOCKER_HOST=unix://... on stdout
#   scripts/docker.sh stop      stop it by its pidfile: SIGTERM, SIGKILL after DOCKER_STOP_TIMEOUT s
#   scripts/docker.sh env       print `export DOCKER_HOST=...` (eval "$(scripts/docker.sh env)")
#   scripts/docker.sh status    exit 0 when it answers
# Everything it keeps is under $DOCKER_STATE (default $ORDERFLOW_CACHE/docker: data/ the images and
# containers, exec/ its runtime state, dockerd.pid, dockerd.log, daemon.json) and the socket is
# $DOCKER_SOCK (default /run/orderflow/docker.sock). It never uses /etc/docker/daemon.json and
# never touches a system Docker at /var/run/docker.sock.
# Environment: ORDERFLOW_CACHE (/var/cache/orderflow), DOCKER_STATE, DOCKER_SOCK,
#   DOCKER_START_TIMEOUT (60), DOCKER_STOP_TIMEOUT (30).
set -euo pipefail
cd "$(dirname "$0")/.."

default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
STATE=${DOCKER_STATE:-$CACHE/docker}
SOCK=${DOCKER_SOCK:-/run/orderflow/docker.sock}
PIDFILE=$STATE/dockerd.pid
LOG=$STATE/dockerd.log
START_TIMEOUT=${DOCKER_START_TIMEOUT:-60}
STOP_TIMEOUT=${DOCKER_STOP_TIMEOUT:-30}
export DOCKER_HOST=unix://$SOCK

say() { echo "docker: $*" >&2; }
die() { say "$*"; exit 1; }

dockerd_bin() { command -v dockerd || { [ -x /usr/sbin/dockerd ] && echo /usr/sbin/dockerd; } || true; }

do_install() {
  local missing=()
  [ -n "$(dockerd_bin)" ] || missing+=(docker.io)
  command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  command -v jq >/dev/null || missing+=(jq)   # scripts/docker/runc-bounded edits OCI configs with it
  if [ ${#missing[@]} -eq 0 ]; then say "dockerd and debootstrap present"; return 0; fi
  [ "$(id -u)" = 0 ] || die "installing ${missing[*]} needs root: run 'sudo $0 install' (or apt-get install ${missing[*]})"
  command -v apt-get >/dev/null || die "no apt-get: install a Docker engine (dockerd) and debootstrap yourself"
  local t0=$SECONDS
  say "installing ${missing[*]} from Debian (the machine's apt sources; about 1 min)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No init system here must start the packaged daemon: policy-rc.d 101 tells invoke-rc.d not to.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables ca-certificates >/dev/null \
    || { [ -n "$made_policy" ] && rm -f "$policy"; die "apt-get install ${missing[*]} failed"; }
  [ -n "$made_policy" ] && rm -f "$policy"
  say "installed ${missing[*]} in $((SECONDS - t0))s: $("$(dockerd_bin)" --version)"
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/comm" 2>/dev/null && echo "$pid"
}

# CapBnd of this shell against every capability the kernel has (0..cap_last_cap)
bounding_set_reduced() {
  local last bnd
  last=$(cat /proc/sys/kernel/cap_last_cap 2>/dev/null || echo 40)
  bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
  [ "$bnd" -ne $(((1 << (last + 1)) - 1)) ]
}
missing_caps() {
  local last bnd i out=""
  last=$(cat /proc/sys/kernel/cap_last_cap); bnd=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
  for ((i = 0; i <= last; i++)); do (( (bnd >> i) & 1 )) || out+="${out:+,}cap#$i"; done
  if command -v capsh >/dev/null; then out=$(capsh --decode="$(printf '%x' $(( ((1 << (last + 1)) - 1) & ~bnd )))" | sed 's/.*=//'); fi
  echo "$out"
}

answers() { timeout 10 docker info >/dev/null 2>&1; }

start() {
  command -v docker >/dev/null || die "no docker CLI on PATH (apt-get install docker.io, or run '$0 install')"
  if running_pid >/dev/null && answers; then
    say "dockerd already running (pid $(running_pid))"; echo "DOCKER_HOST=$DOCKER_HOST"; return 0
  fi
  local bin; bin=$(dockerd_bin)
  [ -n "$bin" ] || die "no dockerd: run '$0 install' first (as root)"
  [ "$(id -u)" = 0 ] || die "dockerd runs as root here: run '$0 start' as root"
  mkdir -p "$STATE/data" "$STATE/exec" "$(dirname "$SOCK")"
  # our own (empty) configuration: a machine's /etc/docker/daemon.json does not apply
  [ -f "$STATE/daemon.json" ] || echo '{}' >"$STATE/daemon.json"
  if [ -f "$PIDFILE" ] && ! running_pid >/dev/null; then rm -f "$PIDFILE"; fi
  if ! running_pid >/dev/null; then
    local t0=$SECONDS runtime=()
    if bounding_set_reduced; then
      # Privileged containers (kind's nodes) would ask for capabilities this root does not have.
      command -v jq >/dev/null || die "jq is needed for the runc wrapper: run '$0 install'"
      mkdir -p "$STATE/bin"; command install -m 0755 scripts/docker/runc-bounded "$STATE/bin/runc-bounded"
      runtime=(--add-runtime "runc-bounded=$STATE/bin/runc-bounded" --default-runtime runc-bounded)
      say "this root's capability bounding set lacks $(missing_caps): containers run through $STATE/bin/runc-bounded"
    fi
    say "starting dockerd (data root $STATE/data, socket $SOCK, log $LOG)"
    # setsid: dockerd survives the shell that started it and gets no terminal signals
    setsid "$bin" --config-file "$STATE/daemon.json" --data-root "$STATE/data" --exec-root "$STATE/exec" \
      -H "$DOCKER_HOST" --pidfile "$PIDFILE" "${runtime[@]}" >>"$LOG" 2>&1 </dev/null &
    local deadline=$((SECONDS + START_TIMEOUT)) child=$!
    until answers; do
      if ! kill -0 "$child" 2>/dev/null && ! running_pid >/dev/null; then
        tail -20 "$LOG" >&2; die "dockerd exited during start-up (log: $LOG)"
      fi
      [ $SECONDS -lt $deadline ] || { tail -20 "$LOG" >&2; die "dockerd did not answer within ${START_TIMEOUT}s (log: $LOG)"; }
      sleep 0.5
    done
    say "dockerd ready in $((SECONDS - t0))s: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}} ({{.CgroupDriver}})')"
  else
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do [ $SECONDS -lt $deadline ] || die "dockerd (pid $(running_pid)) does not answer on $SOCK"; sleep 0.5; done
  fi
  echo "DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  local pid
  if ! pid=$(running_pid); then say "dockerd is not running"; rm -f "$PIDFILE"; return 0; fi
  # containerd that dockerd started for itself, to be sure it goes too
  local cpid=""; [ -f "$STATE/exec/containerd/containerd.pid" ] && cpid=$(cat "$STATE/exec/containerd/containerd.pid")
  say "stopping dockerd (pid $pid; SIGTERM, SIGKILL after ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then say "dockerd still running after ${STOP_TIMEOUT}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null && grep -q containerd "/proc/$cpid/comm" 2>/dev/null; then
    kill -TERM "$cpid" 2>/dev/null || true; sleep 2; kill -KILL "$cpid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  say "dockerd stopped"
}

case "${1:-}" in
  install) do_install ;;
  start) start ;;
  stop) stop ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  status) if running_pid >/dev/null && answers; then say "running (pid $(running_pid)), DOCKER_HOST=$DOCKER_HOST"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
esac
