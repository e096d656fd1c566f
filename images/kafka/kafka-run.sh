#!/bin/sh
# Start one Apache Kafka node in KRaft mode (PID 1 of the orderflow Kafka image).
# Settings come from the environment as in the apache/kafka image: KAFKA_<NAME> becomes the
# property <name> (lower case, "_" -> ".", "__" -> "_", "___" -> "-"), e.g.
# KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://kafka:9092 is advertised.listeners. Without any, it is a
# single node: broker on :9092, controller on :9093, every internal topic with replication factor 1.
# CLUSTER_ID formats an empty data directory (default: a fixed id, one node needs no other).
# KAFKA_HEAP_OPTS (-Xms256m -Xmx512m) and KAFKA_OPTS are JVM options, not properties.
set -eu
home=/opt/kafka
data=${KAFKA_DATA_DIR:-/var/lib/kafka}
props=$data/server.properties
mkdir -p "$data/data"

{
  echo "# written by kafka-run.sh at $(date -u +%FT%TZ)"
  # defaults, overridden by the environment below (a later line wins)
  cat <<DEFAULTS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
advertised.listeners=PLAINTEXT://localhost:9092
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data/data
num.partitions=3
auto.create.topics.enable=false
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
DEFAULTS
  env | while IFS='=' read -r name value; do
    case "$name" in
      KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_DATA_DIR|KAFKA_JVM_PERFORMANCE_OPTS) ;;
      KAFKA_*)
        key=$(printf '%s' "${name#KAFKA_}" | sed -e 's/___/-/g' -e 's/__/@/g' -e 's/_/./g' -e 's/@/_/g' | tr '[:upper:]' '[:lower:]')
        printf '%s=%s\n' "$key" "$value" ;;
    esac
  done
} >"$props.new"
mv "$props.new" "$props"

cp="$home/libs/*"
log="-Dlog4j2.configurationFile=$home/log4j2.properties"
if [ ! -f "$data/data/meta.properties" ]; then
  # shellcheck disable=SC2086  # KAFKA_OPTS is a list of options
  java -Xmx256m $log -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
    -t "${CLUSTER_ID:-b3JkZXJmbG93LWthZmthMQ}" -c "$props"
fi
# shellcheck disable=SC2086  # option lists
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true ${KAFKA_OPTS:-} $log \
  -cp "$cp" kafka.Kafka "$props"
