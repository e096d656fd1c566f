#!/usr/bin/env bash
# The lab scenario against compose.yaml: 10,000 orders through POST /orders/bulk, analytics counts
# them, a replay (analytics stopped, `orderflowctl reset --to earliest` run in its image, analytics
# started again), and the same metrics again.
#   scripts/compose-demo.sh           against the running project (docker compose up -d --build)
#   scripts/compose-demo.sh --local   the project's own test: `up --no-build` with the images of
#                                     its test bed (scripts/k8s/images.sh build: the services and
#                                     the Kafka image stand in for apache/kafka:4.3.1) on other host
#                                     ports, the scenario, then `down -v`
# Uses `docker compose` when the plugin is there, else docker-compose (with --local, as root on
# Debian, installed from the machine's apt sources when missing). Needs curl and python3.
# Environment: ORDER_PORT (8080), ANALYTICS_PORT (8082), COMPOSE_TIMEOUT (180 s per wait).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "compose-demo: $*" >&2; }
die() { say "$*"; exit 1; }

if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
if [ "${COMPOSE[0]}" = docker-compose ] && ! command -v docker-compose >/dev/null && [ "${1:-}" = --local ] \
  && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing Debian's docker-compose (apt-get, the machine's own sources; one time)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
    || die "apt-get install docker-compose failed"
fi
command -v "${COMPOSE[0]}" >/dev/null || die "neither 'docker compose' nor docker-compose is installed"
TIMEOUT=${COMPOSE_TIMEOUT:-180}

if [ "${1:-}" = --local ]; then
  [ -n "${DOCKER_HOST:-}" ] || eval "$(scripts/docker.sh env)"
  export KAFKA_IMAGE=${KAFKA_IMAGE:-orderflow/kafka:4.3.1} IMAGE_PREFIX=${IMAGE_PREFIX:-orderflow} IMAGE_TAG=${IMAGE_TAG:-dev}
  export ORDER_PORT=${ORDER_PORT:-18080} INVENTORY_PORT=${INVENTORY_PORT:-18081} ANALYTICS_PORT=${ANALYTICS_PORT:-18082}
  export COMPOSE_PROJECT_NAME=orderflow-compose-check
  COMPOSE+=(-f compose.yaml)
  trap '"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true' EXIT
  say "${COMPOSE[*]} up -d --no-build (Kafka image $KAFKA_IMAGE, services $IMAGE_PREFIX/*:$IMAGE_TAG)"
  "${COMPOSE[@]}" up -d --no-build
fi
ORDER=http://127.0.0.1:${ORDER_PORT:-8080}
ANALYTICS=http://127.0.0.1:${ANALYTICS_PORT:-8082}

until_ok() { # until_ok WHAT COMMAND...: poll every 0.5 s until it succeeds, at most $TIMEOUT s
  local what=$1 deadline=$((SECONDS + TIMEOUT)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { "${COMPOSE[@]}" ps >&2 || true; die "timed out after ${TIMEOUT}s waiting for $what"; }
    sleep 0.5
  done
}
ready() { curl -sf --max-time 2 "$1/readyz"; }
both_ready() { ready "$ORDER" && ready "$ANALYTICS"; }
metrics() { curl -sf --max-time 5 "$ANALYTICS/api/metrics"; }
# counted N: analytics counted N orders and as many decisions
counted() { metrics | python3 -c '
import json, sys
m = json.load(sys.stdin); n = int(sys.argv[1])
sys.exit(0 if m["orders_total"] == n and m["reserved_total"] + m["failed_total"] == n else 1)' "$1"; }
FIELDS='["orders_total","reserved_total","failed_total","failure_rate","orders_per_minute"]'
data() { metrics | python3 -c "import json,sys; m=json.load(sys.stdin); print(json.dumps({k: m.get(k) for k in $FIELDS}, sort_keys=True))"; }
same_as() { [ "$(data)" = "$1" ]; }

t0=$SECONDS
until_ok "order-service and analytics-service to be ready (they reach Kafka)" both_ready
say "ready after $((SECONDS - t0))s"
say "[1/3] POST $ORDER/orders/bulk count=10000"
curl -sf -XPOST "$ORDER/orders/bulk" -H 'content-type: application/json' -d '{"count":10000}' >&2; echo >&2
until_ok "analytics to count 10000 orders and decisions" counted 10000
before=$(data)
say "analytics: $(echo "$before" | cut -c1-120)..."
say "[2/3] replay: stop analytics, orderflowctl reset --group analytics --to earliest, start analytics"
"${COMPOSE[@]}" stop analytics
"${COMPOSE[@]}" run --rm --no-deps --entrypoint /usr/local/bin/orderflowctl analytics \
  reset --group analytics --topic orders --topic inventory-events --to earliest
"${COMPOSE[@]}" start analytics
say "[3/3] the same metrics again"
until_ok "analytics to report the same metrics after the replay" same_as "$before"
say "identical: true (after $((SECONDS - t0))s in all)"
