#!/usr/bin/env bash
# Installs what `make bench` compares orderflow against, once, into a cache outside the work tree
# (each part is skipped when already present):
#   kcat                       Debian package (apt-get, with the machine's own apt sources; needs root)
#   $CACHE/bench-venv          the Python peer's packages, pinned in bench/peers/requirements.txt
#   $CACHE/bench-tools/bin/oha the HTTP load generator, from crates.io (cargo install --locked)
#   $CACHE/bench-tools/streams/<hash>.jar
#                              the Kafka Streams peers (bench/peers/streams), built with Maven
#                              (its local repository: $CACHE/m2, as scripts/kafka.sh); <hash>
#                              is that of the pom and the sources, so an edit rebuilds it.
#                              Needs a JDK 17+ (javac) and mvn: installed with apt-get when
#                              missing and root on Debian/Ubuntu, else a failure saying so
#   $CACHE/kafka-4.3.1/libs    Apache Kafka's jars, whose kafka-tools jar holds the perf tools
#                              (ProducerPerformance, ConsumerPerformance): scripts/kafka.sh install
# Usage: scripts/bench-tools.sh       install what is missing, then print the paths
# Environment: ORDERFLOW_CACHE (default /var/cache/orderflow, else ~/.cache/orderflow),
#              OHA_VERSION (default 1.16.0).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
default_cache=/var/cache/orderflow
if ! mkdir -p "$default_cache" 2>/dev/null || [ ! -w "$default_cache" ]; then default_cache=$HOME/.cache/orderflow; fi
CACHE=${ORDERFLOW_CACHE:-$default_cache}
OHA_VERSION=${OHA_VERSION:-1.16.0}
VENV=$CACHE/bench-venv
OHA=$CACHE/bench-tools/bin/oha
REQ=$ROOT/bench/peers/requirements.txt
STREAMS_SRC=$ROOT/bench/peers/streams
KAFKA_VERSION=4.3.1
KAFKA_LIBS=$CACHE/kafka-$KAFKA_VERSION/libs

die() { echo "bench-tools: $*" >&2; exit 1; }

install_kcat() {
  command -v kcat >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "kcat is missing: install it (Debian: sudo apt-get install kcat) and retry"
  echo "bench-tools: installing kcat (apt-get, one time)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; } \
    || die "apt-get install kcat failed"
}

install_venv() {
  local want; want=$(sha256sum "$REQ" | cut -d' ' -f1)
  [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.req" 2>/dev/null)" = "$want" ] && return 0
  echo "bench-tools: installing the Python peer's packages into $VENV (one time)" >&2
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ" || die "pip install -r $REQ failed"
  echo "$want" > "$VENV/.req"
}

install_oha() {
  [ -x "$OHA" ] && "$OHA" --version 2>/dev/null | grep "$OHA_VERSION" >/dev/null && return 0
  echo "bench-tools: building oha $OHA_VERSION into $CACHE/bench-tools (one time, a few minutes)" >&2
  # its own target dir, so the workspace's build cache is left alone
  CARGO_TARGET_DIR=$CACHE/bench-tools/target cargo install -q --locked --root "$CACHE/bench-tools" \
    oha --version "$OHA_VERSION" || die "cargo install oha $OHA_VERSION failed"
  rm -rf "$CACHE/bench-tools/target"
}

apt_install() { # apt_install WHAT PACKAGE...: as root on Debian/Ubuntu, else a clear failure
  local what=$1; shift
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] \
    || die "$what is missing: install it (Debian/Ubuntu: sudo apt-get install $*) and retry"
  echo "bench-tools: installing $* (apt-get, one time)" >&2
  export DEBIAN_FRONTEND=noninteractive
  local apt=(-o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
  apt-get install "${apt[@]}" "$@" >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1 && apt-get install "${apt[@]}" "$@" >/dev/null; } \
    || die "apt-get install $* failed"
}

javac_major() { javac -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p' | head -n 1; }

# The JDK that builds the Streams peers also runs them: JAVA_HOME of the javac on PATH.
need_jdk() {
  local major
  major=$(command -v javac >/dev/null && javac_major || true)
  if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    apt_install "a JDK 17 or newer (javac, for the Kafka Streams peers)" openjdk-17-jdk-headless
    major=$(javac_major)
    [ -n "$major" ] && [ "$major" -ge 17 ] || die "javac is Java ${major:-unknown}; the Kafka Streams peers need 17 or newer"
  fi
  command -v mvn >/dev/null || apt_install "Maven (mvn, for the Kafka Streams peers)" maven
  command -v mvn >/dev/null || die "maven was installed but mvn is not on PATH"
  JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
  export JAVA_HOME
}

streams_hash() { # of the pom and every source file, names included
  (cd "$STREAMS_SRC" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16
}

install_streams() {
  STREAMS_JAR=$CACHE/bench-tools/streams/$(streams_hash).jar
  need_jdk
  [ -s "$STREAMS_JAR" ] && return 0
  mkdir -p "$CACHE/bench-tools/streams" "$CACHE/m2"
  exec 7>"$CACHE/bench-tools/streams/.lock"
  flock 7
  if [ ! -s "$STREAMS_JAR" ]; then
    echo "bench-tools: building the Kafka Streams peers with mvn into $STREAMS_JAR (one time)" >&2
    local build=$CACHE/bench-tools/streams/build t=$SECONDS
    rm -rf "$build"
    mvn -B -q -Dstyle.color=never -f "$STREAMS_SRC/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
        -Dpeers.build.dir="$build" -DskipTests package >&2 \
      || die "mvn package of bench/peers/streams failed (see above)"
    [ -s "$build/orderflow-streams-peers.jar" ] || die "mvn finished but orderflow-streams-peers.jar is missing"
    mv "$build/orderflow-streams-peers.jar" "$STREAMS_JAR.tmp"
    mv "$STREAMS_JAR.tmp" "$STREAMS_JAR"
    rm -rf "$build"
    echo "bench-tools: built the Kafka Streams peers in $((SECONDS - t)) s" >&2
  fi
  exec 7>&-
}

install_kafka_tools() { # Kafka's perf tools: the jars the local broker runs from
  [ -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ] && return 0
  ORDERFLOW_CACHE=$CACHE bash "$ROOT/scripts/kafka.sh" install >&2 \
    || die "scripts/kafka.sh install failed, so Kafka's perf tools (kafka-tools-$KAFKA_VERSION.jar) are missing"
  [ -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ] \
    || die "scripts/kafka.sh install finished but $KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar is missing"
}

install_kcat
install_venv
install_oha
install_streams
install_kafka_tools
echo "KCAT=$(command -v kcat)"
echo "PYTHON=$VENV/bin/python"
echo "OHA=$OHA"
echo "JAVA=$JAVA_HOME/bin/java"
echo "STREAMS_JAR=$STREAMS_JAR"
echo "KAFKA_LIBS=$KAFKA_LIBS"
