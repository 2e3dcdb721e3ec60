#!/usr/bin/env bash
# A real local Pulsar cluster (issue 16), from the same distribution as
# scripts/pulsar.sh: one ZooKeeper, one bookie, two brokers, each its own
# process on its own ports, ensemble and quorums of 1, modest heaps for a
# 2-core machine.
#
#   scripts/pulsar-cluster.sh start           initialize if needed, start what is not running, return once both brokers are ready
#   scripts/pulsar-cluster.sh stop            stop every process (brokers first)
#   scripts/pulsar-cluster.sh status          say what runs; exit 0 only when both brokers are ready
#   scripts/pulsar-cluster.sh reset           stop, then delete the cluster's data
#   scripts/pulsar-cluster.sh kill-broker N   kill broker N (a or b) with SIGKILL, as a crash would
#   scripts/pulsar-cluster.sh start-broker N  start broker N again
#
# Ports: ZooKeeper 2191; bookie 3192; broker a 6680 (admin http 8180), broker b 6681 (8181).
# Environment: SHEAF_PULSAR_HOME as for scripts/pulsar.sh; PULSAR_READY_TIMEOUT (seconds per component, default 240).
set -euo pipefail

SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
BASE="${SHEAF_PULSAR_HOME:-$HOME/.cache/sheaf}"
DIR="$BASE/cluster"
CLUSTER=sheaf-cluster
ZK_PORT=2191
BOOKIE_PORT=3192
READY_TIMEOUT="${PULSAR_READY_TIMEOUT:-240}"
METADATA="zk:127.0.0.1:$ZK_PORT"

log() { echo "pulsar-cluster.sh: $*" >&2; }

# shellcheck source=lib/standalone.sh
source "$SCRIPTS/lib/standalone.sh"

broker_port() { [ "$1" = a ] && echo 6680 || echo 6681; }
web_port() { [ "$1" = a ] && echo 8180 || echo 8181; }

# Sets PID_FILE and LOG_FILE (read by lib/standalone.sh) for one component.
component() {
  PID_FILE="$DIR/$1.pid"
  LOG_FILE="$DIR/$1.log"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# `ready` for wait_ready: set by each start step.
READY_CHECK=true
ready() { eval "$READY_CHECK"; }

launch() {
  local name="$1" mem="$2"
  shift 2
  component "$name"
  if running_pid >/dev/null; then return 0; fi
  log "starting $name (log: $LOG_FILE)"
  # Appended: a broker started again after a crash keeps the log of the one that crashed.
  PULSAR_MEM="$mem" PULSAR_GC="-XX:+UseG1GC -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1" \
    nohup "$@" >>"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
}

configure() {
  mkdir -p "$DIR"
  cp "$HOME_DIR/conf/zookeeper.conf" "$DIR/zookeeper.conf"
  set_settings "$DIR/zookeeper.conf" "clientPort=$ZK_PORT" "dataDir=$DIR/data/zookeeper" "admin.enableServer=false" \
    "metricsProvider.httpPort=8193"
  cp "$HOME_DIR/conf/bookkeeper.conf" "$DIR/bookkeeper.conf"
  set_settings "$DIR/bookkeeper.conf" "bookiePort=$BOOKIE_PORT" "advertisedAddress=127.0.0.1" "allowLoopback=true" \
    "metadataServiceUri=zk://127.0.0.1:$ZK_PORT/ledgers" "zkServers=127.0.0.1:$ZK_PORT" \
    "journalDirectory=$DIR/data/bookkeeper/journal" "ledgerDirectories=$DIR/data/bookkeeper/ledgers" \
    "httpServerEnabled=false" "prometheusStatsHttpPort=8194" "journalSyncData=false" \
    "dbStorage_writeCacheMaxSizeMb=64" "dbStorage_readAheadCacheMaxSizeMb=64"
  local b
  for b in a b; do
    cp "$HOME_DIR/conf/broker.conf" "$DIR/broker-$b.conf"
    set_settings "$DIR/broker-$b.conf" "clusterName=$CLUSTER" "metadataStoreUrl=$METADATA" \
      "configurationMetadataStoreUrl=$METADATA" "brokerServicePort=$(broker_port $b)" "webServicePort=$(web_port $b)" \
      "advertisedAddress=127.0.0.1" "managedLedgerDefaultEnsembleSize=1" "managedLedgerDefaultWriteQuorum=1" \
      "managedLedgerDefaultAckQuorum=1" "isDelayedDeliveryDeliverAtTimeStrict=true" "delayedDeliveryTickTimeMillis=100" \
      "acknowledgmentAtBatchIndexLevelEnabled=true" "functionsWorkerEnabled=false"
  done
}

start_zookeeper() {
  launch zookeeper "-Xms128m -Xmx256m" env PULSAR_ZK_CONF="$DIR/zookeeper.conf" "$HOME_DIR/bin/pulsar" zookeeper
  READY_CHECK="port_open $ZK_PORT"
  wait_ready
}

initialize() {
  [ -f "$DIR/initialized" ] && return 0
  log "initializing cluster metadata ($CLUSTER)"
  "$HOME_DIR/bin/pulsar" initialize-cluster-metadata --cluster "$CLUSTER" --metadata-store "$METADATA" \
    --configuration-metadata-store "$METADATA" --web-service-url "http://127.0.0.1:8180" \
    --broker-service-url "pulsar://127.0.0.1:6680" >"$DIR/initialize.log" 2>&1 || {
    log "initializing failed; last lines of $DIR/initialize.log:"
    tail -n 20 "$DIR/initialize.log" >&2
    exit 1
  }
  touch "$DIR/initialized"
}

start_bookie() {
  launch bookie "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m" \
    env PULSAR_BOOKKEEPER_CONF="$DIR/bookkeeper.conf" "$HOME_DIR/bin/pulsar" bookie
  READY_CHECK="port_open $BOOKIE_PORT"
  wait_ready
}

start_broker() {
  local b="$1"
  launch "broker-$b" "-Xms512m -Xmx768m -XX:MaxDirectMemorySize=512m" \
    env PULSAR_BROKER_CONF="$DIR/broker-$b.conf" "$HOME_DIR/bin/pulsar" broker
  READY_CHECK="curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:$(web_port "$b")/admin/v2/brokers/ready 2>/dev/null"
  wait_ready
  log "broker $b ready at pulsar://127.0.0.1:$(broker_port "$b") (admin http://127.0.0.1:$(web_port "$b"))"
}

start() {
  HOME_DIR="$("$SCRIPTS/pulsar.sh" home)"
  configure
  start_zookeeper
  initialize
  start_bookie
  start_broker a
  start_broker b
  log "cluster $CLUSTER ready: pulsar://127.0.0.1:6680,127.0.0.1:6681"
}

stop() {
  local name
  for name in broker-a broker-b bookie zookeeper; do
    component "$name"
    stop_broker
  done
}

status() {
  local name pid all=0
  for name in zookeeper bookie broker-a broker-b; do
    component "$name"
    if pid="$(running_pid)"; then echo "$name: running (pid $pid)"; else echo "$name: not running"; all=1; fi
  done
  for b in a b; do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$(web_port $b)/admin/v2/brokers/ready" 2>/dev/null || all=1
  done
  return "$all"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) stop; rm -rf "$DIR"; log "removed $DIR" ;;
  kill-broker)
    component "broker-${2:?a or b}"
    if pid="$(running_pid)"; then kill -9 "$pid"; rm -f "$PID_FILE"; log "killed broker ${2} ($pid)"; fi
    ;;
  start-broker) HOME_DIR="$("$SCRIPTS/pulsar.sh" home)"; start_broker "${2:?a or b}" ;;
  *) echo "usage: $0 start|stop|status|reset|kill-broker N|start-broker N" >&2; exit 2 ;;
esac
