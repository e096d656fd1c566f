#!/usr/bin/env bash
# Apache Kafka 4.3.1 (the default of Strimzi 1.2.0) on this machine, from Maven Central's jars:
# the broker under `make demo`, `make test`, `make bench` and `make e2e`. KRaft mode, every node
# both broker and controller, on 127.0.0.1 only.
#
#   scripts/kafka.sh install            resolve Kafka's jars with mvn (scripts/kafka/pom.xml) into
#                                       $ORDERFLOW_CACHE/kafka-4.3.1 (once; skipped when present)
#   scripts/kafka.sh start [DIR]        format DIR (first time) and start the node(s); waits until
#                                       every node has started, then prints BOOTSTRAP=host:port,...
#   scripts/kafka.sh stop [DIR] [N]     stop every node of DIR (or node N): SIGTERM, SIGKILL after
#                                       KAFKA_STOP_TIMEOUT seconds; the data stays in DIR
#   scripts/kafka.sh kill DIR N         SIGKILL node N (fault tests); `start DIR` brings it back
#   scripts/kafka.sh bootstrap [DIR]    print BOOTSTRAP=... of DIR's cluster
#   scripts/kafka.sh free-port          print a free port drawn as the nodes' are (for a test's
#                                       own listeners, e.g. a service's HTTP_ADDR)
#   scripts/kafka.sh tool NAME ARGS...  one of Kafka's command-line tools, named as in Kafka's
#                                       bin/ (kafka-topics, kafka-consumer-groups, kafka-configs,
#                                       kafka-delete-records, kafka-producer-perf-test, ...)
#   scripts/kafka.sh java               print JAVA=... (installing a JRE when missing, see below)
#
# DIR defaults to ./target/kafka. Node N keeps its settings, data, PID and logs in DIR/node-N/
# (server.properties, data/, pid, server.log, stdout.log); a started DIR keeps its ports.
#
# Environment:
#   ORDERFLOW_CACHE    where the jars go (default /var/cache/orderflow, else ~/.cache/orderflow)
#   KAFKA_PORT         client port of node 1 for a new DIR (default: a free port)
#   KAFKA_NODES        nodes of a new DIR (default 1). With 3 or more, internal topics and new
#                      topics get replication factor 3 and min.insync.replicas 2
#   KAFKA_HEAP_OPTS    JVM heap of a node (default -Xms256m -Xmx512m)
#   KAFKA_STOP_TIMEOUT seconds between SIGTERM and SIGKILL (default 30)
#   JAVA               the java binary (default: $JAVA_HOME/bin/java, else java on PATH)
#
# Needs Java 17 or newer, and Maven for `install`. When one is missing on Debian or Ubuntu and
# this runs as root, it is installed with apt-get from the machine's own sources (as
# scripts/browser-tools.sh installs chromium); elsewhere the message says what to install.
set -euo pipefail

KAFKA_VERSION=4.3.1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM=$HERE/kafka/pom.xml
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then
  default_cache=$HOME/.cache/orderflow
fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
KHOME=$CACHE/kafka-$KAFKA_VERSION
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

say() { echo "kafka.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ---------------------------------------------------------------- prerequisites

apt_install() { # apt_install WHAT PACKAGE...: as root on Debian/Ubuntu, else a clear failure
  local what=$1; shift
  command -v apt-get >/dev/null \
    || die "$what is missing: install it (this is not a Debian/Ubuntu machine, so nothing was installed)"
  [ "$(id -u)" = 0 ] \
    || die "$what is missing: install it (Debian/Ubuntu: sudo apt-get install $*) and retry"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
  say "installing $* with apt-get (one time)"
  # a stale package list first fails the install; refresh it then and try once more
  apt-get install "${apt[@]}" "$@" >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null && apt-get install "${apt[@]}" "$@" >/dev/null; } \
    || die "apt-get install $* failed"
}

java_major() { # the major version of the java binary $1, or nothing
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9]*\)[."].*/\1/p' | head -n 1
}

find_java() {
  local c
  for c in "${JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java 2>/dev/null || true)"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    local major
    major=$(java_major "$c")
    if [ -n "$major" ] && [ "$major" -ge 17 ]; then echo "$c"; return 0; fi
    say "$c is Java ${major:-of unknown version}; Kafka $KAFKA_VERSION needs Java 17 or newer"
  done
  return 1
}

need_java() {
  local j
  if j=$(find_java); then echo "$j"; return 0; fi
  apt_install "Java 17 or newer (a JRE)" openjdk-17-jre-headless
  j=$(find_java) || die "a JRE was installed but no java 17+ is on PATH; set JAVA=/path/to/java"
  echo "$j"
}

need_mvn() {
  command -v mvn >/dev/null && return 0
  apt_install "Maven (mvn, to resolve Kafka's jars)" maven
  command -v mvn >/dev/null || die "maven was installed but mvn is not on PATH"
}

# ---------------------------------------------------------------- install

stamp() { echo "apache-kafka $KAFKA_VERSION pom $(sha256sum "$POM" | cut -d' ' -f1)"; }

installed() { [ -f "$KHOME/.installed" ] && [ "$(cat "$KHOME/.installed")" = "$(stamp)" ]; }

install() {
  installed && return 0
  # Tests start nodes in parallel: one installs, the others wait for it and find it done.
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.kafka-$KAFKA_VERSION.lock"
  flock 8
  if installed; then exec 8>&-; return 0; fi
  local java
  java=$(need_java)
  need_mvn
  say "resolving Apache Kafka $KAFKA_VERSION with mvn into $KHOME (one time)"
  rm -rf "$KHOME"
  mkdir -p "$KHOME" "$CACHE/m2"
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$java")")") \
    mvn -B -q -Dstyle.color=never -f "$POM" -Dmaven.repo.local="$CACHE/m2" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KHOME/libs" >&2 \
    || die "mvn could not resolve Apache Kafka $KAFKA_VERSION (see above)"
  [ -f "$KHOME/libs/kafka_2.13-$KAFKA_VERSION.jar" ] || die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"
  stamp > "$KHOME/.installed"
  say "installed $(ls "$KHOME/libs" | wc -l) jars ($(du -sh "$KHOME/libs" | cut -f1))"
  exec 8>&-
}

# ---------------------------------------------------------------- class-data sharing
#
# Every test starts its own Kafka, and the tests call Kafka's tools: dozens of JVM starts
# per `make test`. They share one class-data archive per kind (the node, the tools),
# recorded once per Java: a JVM maps the classes Kafka loads at start from it instead of
# parsing and verifying them from the jars again (JDK's AppCDS, -XX:SharedArchiveFile).
# A stale or unusable archive is ignored by the JVM (with a warning on stderr).

cds_dir() { # the archives' folder for this java binary and version
  echo "$KHOME/cds/$( { readlink -f "$1"; "$1" -version 2>&1; } | sha256sum | cut -c1-16)"
}

cds_opts() { # cds_opts JAVA server|tools: the options that use the archive, when it exists
  local f
  f="$(cds_dir "$1")/$2.jsa"
  [ -f "$f" ] && echo "-XX:SharedArchiveFile=$f -Xlog:disable -Xlog:all=warning:stderr"
  return 0
}

# Record the archives: start a node in a scratch dir and run a tool against it, each with
# -XX:ArchiveClassesAtExit, then stop them. Serialised by a lock (tests start in parallel).
record_cds() {
  local java=$1 d
  d=$(cds_dir "$java")
  [ -f "$d/server.jsa" ] && [ -f "$d/tools.jsa" ] && return 0
  [ -f "$d/server.jsa.none" ] && return 0
  mkdir -p "$d"
  exec 9>"$KHOME/.cds.lock"
  flock 9
  if [ ! -f "$d/server.jsa" ] || [ ! -f "$d/tools.jsa" ]; then
    say "recording the class-data archives of a Kafka node and of the tools (one time)"
    local scratch
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/orderflow-kafka-cds.XXXXXX")
    rm -f "$d"/*.tmp
    if KAFKA_NODES=1 KAFKA_PORT="" KAFKA_CDS_RECORD="$d/server.jsa.tmp" start "$scratch" >/dev/null; then
      KAFKA_CDS_RECORD="$d/tools.jsa.tmp" tool kafka-consumer-groups \
        --bootstrap-server "$(bootstrap_of "$scratch")" --list >/dev/null 2>&1 || true
    fi
    stop "$scratch"
    rm -rf "$scratch"
    for k in server tools; do
      if [ -s "$d/$k.jsa.tmp" ]; then mv "$d/$k.jsa.tmp" "$d/$k.jsa"; else say "no $k archive was recorded; JVMs start without it"; : > "$d/$k.jsa.none"; fi
    done
  fi
  exec 9>&-
}

# ---------------------------------------------------------------- nodes

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port nobody listens on now, drawn at random below the kernel's range for the
# source ports of outgoing connections (ip_local_port_range), so that no client's connection
# takes it in the seconds before the JVM binds it. (The kernel's own pick, bind to port 0,
# comes from that range.) A port another starter draws in between is still possible: start
# then tries a new cluster on other ports.
free_port() {
  local low p tries=0
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || low=32768
  [[ "$low" =~ ^[0-9]+$ ]] && [ "$low" -gt 11000 ] || low=61000
  while [ $((tries += 1)) -le 200 ]; do
    p=$((10000 + (RANDOM * 32768 + RANDOM) % (low - 10000)))
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found below $low"
}

# port_free PORT: nothing is bound to 127.0.0.1:PORT (python3 binds it and lets go; without
# python3, nothing answers there)
port_free() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1])))' "$1" 2>/dev/null
  elif port_open "$1"; then
    return 1
  fi
}

node_dir() { echo "$1/node-$2"; }
nodes_of() { sed -n 's/^nodes=//p' "$1/cluster.env"; }
client_port() { sed -n "s/^node$2.port=//p" "$1/cluster.env"; }

bootstrap_of() {
  local dir=$1 n i out=""
  n=$(nodes_of "$dir")
  for i in $(seq 1 "$n"); do out+="${out:+,}127.0.0.1:$(client_port "$dir" "$i")"; done
  echo "$out"
}

# A new cluster in DIR: ports, one server.properties per node (the settings of
# deploy/kafka.yaml: no topic auto-creation, internal topics replicated as far as the nodes
# allow), each node's log dir formatted with the same cluster id.
create_cluster() {
  local dir=$1 java=$2 n=${KAFKA_NODES:-1} i voters="" rf isr id
  [[ "$n" =~ ^[1-9]$ ]] || die "KAFKA_NODES must be 1 to 9, not '$n'"
  rf=$(( n >= 3 ? 3 : n )); isr=$(( n >= 3 ? 2 : 1 ))
  mkdir -p "$dir"
  {
    echo "nodes=$n"
    for i in $(seq 1 "$n"); do
      if [ "$i" = 1 ] && [ -n "${KAFKA_PORT:-}" ]; then echo "node1.port=$KAFKA_PORT"; else echo "node$i.port=$(free_port)"; fi
      echo "node$i.controller=$(free_port)"
    done
  } > "$dir/cluster.env.new"
  mv "$dir/cluster.env.new" "$dir/cluster.env"
  for i in $(seq 1 "$n"); do
    voters+="${voters:+,}$i@127.0.0.1:$(sed -n "s/^node$i.controller=//p" "$dir/cluster.env")"
  done
  for i in $(seq 1 "$n"); do
    local nd port cport
    nd=$(node_dir "$dir" "$i"); port=$(client_port "$dir" "$i")
    cport=$(sed -n "s/^node$i.controller=//p" "$dir/cluster.env")
    mkdir -p "$nd/data"
    cat > "$nd/server.properties" <<EOF
# written by scripts/kafka.sh: node $i of $n, broker and controller (KRaft)
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$nd/data
num.partitions=3
auto.create.topics.enable=false
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# a test bed starts its consumers at once: no delay before the first rebalance
group.initial.rebalance.delay.ms=0
EOF
  done
  id=$(KAFKA_CDS_RECORD="" run_class "$java" kafka.tools.StorageTool random-uuid) || die "kafka-storage random-uuid failed"
  local pids=()
  for i in $(seq 1 "$n"); do
    KAFKA_CDS_RECORD="" run_class "$java" kafka.tools.StorageTool format --ignore-formatted -t "$id" \
        -c "$(node_dir "$dir" "$i")/server.properties" > "$(node_dir "$dir" "$i")/format.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || die "formatting node $((i + 1)) failed: $(cat "$(node_dir "$dir" "$((i + 1))")/format.log")"
  done
}

# run_class JAVA CLASS ARGS...: a short-lived class from Kafka's jars (a tool), in the
# foreground. KAFKA_TOOL_JVM_OPTS replaces the JVM options, which favour a quick start (the
# perf tools set their own: they run long enough for the optimising compiler to pay).
run_class() {
  local java=$1 cds; shift
  if [ -n "${KAFKA_CDS_RECORD:-}" ]; then cds="-XX:ArchiveClassesAtExit=$KAFKA_CDS_RECORD"; else cds=$(cds_opts "$java" tools); fi
  # shellcheck disable=SC2086  # lists of options
  "$java" ${KAFKA_TOOL_JVM_OPTS:--Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1} $cds \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2-tools.properties" \
    -cp "$KHOME/libs/*" "$@"
}

node_alive() { local p; p=$(cat "$1/pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

start_node() {
  local nd=$1 java=$2 cds
  node_alive "$nd" && return 0
  # the previous life's log is kept beside the new one (a fault test's restart, a crash)
  if [ -s "$nd/server.log" ]; then mv -f "$nd/server.log" "$nd/server.log.1"; fi
  : > "$nd/server.log"
  # the JVM's temporary files (lz4-java's and other native libraries, unpacked at start and
  # deleted only at a clean exit) under the node's directory, not in /tmp: a node killed by a
  # fault test or a stopped run leaves them with the rest of its state
  mkdir -p "$nd/tmp"
  if [ -n "${KAFKA_CDS_RECORD:-}" ]; then cds="-XX:ArchiveClassesAtExit=$KAFKA_CDS_RECORD"; else cds=$(cds_opts "$java" server); fi
  # shellcheck disable=SC2086  # lists of options
  "$java" ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 $cds \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Djava.io.tmpdir="$nd/tmp" \
      -Dkafka.logs.dir="$nd" -Dlog4j2.configurationFile="$HERE/kafka/log4j2-server.properties" \
      -cp "$KHOME/libs/*" kafka.Kafka "$nd/server.properties" \
      < /dev/null > "$nd/stdout.log" 2>&1 &
  echo $! > "$nd/pid"
  # not this shell's job: a node stopped by this run (a start tried again) is not reported
  disown $!
}

start() {
  local dir=${1:-$PWD/target/kafka} java attempt rc
  dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
  install
  java=$(need_java)
  [ -n "${KAFKA_CDS_RECORD:-}" ] || record_cds "$java"
  for attempt in 1 2 3; do
    if [ -f "$dir/cluster.env" ]; then
      start_nodes_of "$dir" "$java" && break
      die "$(cat "$dir/start.err")"
    fi
    create_cluster "$dir" "$java"
    rc=0; start_nodes_of "$dir" "$java" || rc=$?
    [ "$rc" = 0 ] && break
    # a new cluster whose port was taken between its draw and the bind: new ports
    [ "$rc" = 2 ] && [ "$attempt" -lt 3 ] || die "$(cat "$dir/start.err")"
    say "$(head -n 1 "$dir/start.err"); a new cluster on other ports"
    stop_nodes KILL "$dir"/node-*
    rm -rf "$dir"/node-* "$dir/cluster.env" "$dir/start.err"
  done
  rm -f "$dir/start.err"
  echo "BOOTSTRAP=$(bootstrap_of "$dir")"
}

# start_nodes_of DIR JAVA: start DIR's nodes and wait until each has started. On failure
# the reason is in DIR/start.err; exit status 2 when a node's port was taken.
start_nodes_of() {
  local dir=$1 java=$2 n i
  n=$(nodes_of "$dir")
  for i in $(seq 1 "$n"); do
    local nd port
    nd=$(node_dir "$dir" "$i"); port=$(client_port "$dir" "$i")
    if ! node_alive "$nd" && port_open "$port"; then
      echo "port $port on 127.0.0.1 is already taken; stop what listens there, or use another DIR" > "$dir/start.err"
      return 2
    fi
    start_node "$nd" "$java"
  done
  # Started = the node logged it (it has joined the quorum and registered as a broker) and
  # its client port answers.
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  for i in $(seq 1 "$n"); do
    local nd port
    nd=$(node_dir "$dir" "$i"); port=$(client_port "$dir" "$i")
    until grep -q "Kafka Server started" "$nd/server.log" 2>/dev/null && port_open "$port"; do
      if ! node_alive "$nd"; then
        echo "node $i exited at start; see $nd/server.log and $nd/stdout.log: $(tail -n 5 "$nd/stdout.log" 2>/dev/null)" > "$dir/start.err"
        grep -q "Address already in use" "$nd/server.log" "$nd/stdout.log" 2>/dev/null && return 2
        return 1
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "node $i did not start within ${KAFKA_START_TIMEOUT:-120}s; see $nd/server.log" > "$dir/start.err"
        return 1
      fi
      sleep 0.1
    done
  done
}

stop_nodes() { # stop_nodes SIGNAL NODE_DIR...: signal them all, wait, SIGKILL the late ones
  local sig=$1 nd pid; shift
  for nd in "$@"; do
    pid=$(cat "$nd/pid" 2>/dev/null) || continue
    kill "-$sig" "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for nd in "$@"; do
    pid=$(cat "$nd/pid" 2>/dev/null) || continue
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "node $(basename "$nd") did not stop within ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$nd/pid"
  done
}

nodes_selected() { # DIR [N]: the node dirs of DIR, or node N
  local dir=$1 only=${2:-} i
  [ -f "$dir/cluster.env" ] || return 0
  for i in $(seq 1 "$(nodes_of "$dir")"); do
    if [ -z "$only" ] || [ "$only" = "$i" ]; then node_dir "$dir" "$i"; fi
  done
}

stop() {
  local dir=${1:-$PWD/target/kafka} nds
  mapfile -t nds < <(nodes_selected "$dir" "${2:-}")
  [ "${#nds[@]}" -gt 0 ] && stop_nodes TERM "${nds[@]}"
  return 0
}

kill_node() {
  local dir=${1:?usage: kafka.sh kill DIR NODE} node=${2:?usage: kafka.sh kill DIR NODE} nds
  mapfile -t nds < <(nodes_selected "$dir" "$node")
  [ "${#nds[@]}" -gt 0 ] || die "no node $node in $dir"
  STOP_TIMEOUT=10 stop_nodes KILL "${nds[@]}"
}

tool() {
  local name=${1:?usage: kafka.sh tool NAME ARGS... (e.g. kafka-consumer-groups --bootstrap-server HOST:PORT --list)} class
  shift
  case "$name" in
    kafka-topics) class=org.apache.kafka.tools.TopicCommand ;;
    kafka-consumer-groups) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    kafka-configs) class=kafka.admin.ConfigCommand ;;
    kafka-delete-records) class=org.apache.kafka.tools.DeleteRecordsCommand ;;
    kafka-get-offsets) class=org.apache.kafka.tools.GetOffsetShell ;;
    kafka-console-consumer) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    kafka-console-producer) class=org.apache.kafka.tools.ConsoleProducer ;;
    kafka-producer-perf-test) class=org.apache.kafka.tools.ProducerPerformance ;;
    kafka-consumer-perf-test) class=org.apache.kafka.tools.ConsumerPerformance ;;
    kafka-transactions) class=org.apache.kafka.tools.TransactionsCommand ;;
    kafka-metadata-quorum) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
    kafka-leader-election) class=org.apache.kafka.tools.LeaderElectionCommand ;;
    kafka-reassign-partitions) class=org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
    kafka-acls) class=org.apache.kafka.tools.AclCommand ;;
    kafka-features) class=org.apache.kafka.tools.FeatureCommand ;;
    kafka-groups) class=org.apache.kafka.tools.GroupsCommand ;;
    kafka-broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    kafka-log-dirs) class=org.apache.kafka.tools.LogDirsCommand ;;
    kafka-dump-log) class=org.apache.kafka.tools.DumpLogSegments ;;
    kafka-e2e-latency) class=org.apache.kafka.tools.EndToEndLatency ;;
    kafka-storage) class=kafka.tools.StorageTool ;;
    *) die "unknown tool '$name' (kafka-topics, kafka-consumer-groups, kafka-configs, kafka-delete-records, kafka-get-offsets, kafka-console-consumer, kafka-console-producer, kafka-producer-perf-test, kafka-consumer-perf-test, kafka-transactions, kafka-metadata-quorum, kafka-leader-election, kafka-reassign-partitions, kafka-acls, kafka-features, kafka-groups, kafka-broker-api-versions, kafka-log-dirs, kafka-dump-log, kafka-e2e-latency, kafka-storage)" ;;
  esac
  case "$name" in
    *-perf-test|kafka-e2e-latency) : "${KAFKA_TOOL_JVM_OPTS:=-Xmx1g -server -XX:+UseG1GC}"; export KAFKA_TOOL_JVM_OPTS ;;
  esac
  install
  local java
  java=$(need_java)
  run_class "$java" "$class" "$@"
}

case "${1:-}" in
  install) install; record_cds "$(need_java)" ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" "${3:-}" ;;
  kill) kill_node "${2:-}" "${3:-}" ;;
  bootstrap) dir=${2:-$PWD/target/kafka}; [ -f "$dir/cluster.env" ] || die "no cluster in $dir"; echo "BOOTSTRAP=$(bootstrap_of "$dir")" ;;
  free-port) free_port ;;
  tool) shift; tool "$@" ;;
  java) echo "JAVA=$(need_java)" ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
