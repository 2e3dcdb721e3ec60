#!/usr/bin/env bash
# A real Apache Pulsar broker for tests and development, without Docker.
#
#   scripts/pulsar.sh fetch    download the server distribution with Maven (cached in ~/.m2) and unpack it
#   scripts/pulsar.sh start    start a standalone broker in the background; returns once it is ready
#   scripts/pulsar.sh stop     stop it cleanly
#   scripts/pulsar.sh kill     kill it with SIGKILL, as a crash would (fault runs)
#   scripts/pulsar.sh status   say whether it runs and is ready
#   scripts/pulsar.sh reset    stop it and delete its data
#   scripts/pulsar.sh home     fetch if needed, print where the distribution is (its lib/ holds the Java client)
#
# Environment: PULSAR_VERSION (pinned below; docker-compose.yml uses the same),
# SHEAF_PULSAR_HOME (where it is unpacked; default ~/.cache/sheaf),
# PULSAR_READY_TIMEOUT (seconds to wait for readiness; default 240).
set -euo pipefail

PULSAR_VERSION="${PULSAR_VERSION:-4.0.8}"
BASE="${SHEAF_PULSAR_HOME:-$HOME/.cache/sheaf}"
HOME_DIR="$BASE/apache-pulsar-$PULSAR_VERSION"
PID_FILE="$BASE/pulsar-$PULSAR_VERSION.pid"
LOG_FILE="$BASE/pulsar-$PULSAR_VERSION.log"
ADMIN_URL="${PULSAR_ADMIN_URL:-http://127.0.0.1:8080}"
READY_TIMEOUT="${PULSAR_READY_TIMEOUT:-240}"
ARTIFACT="org.apache.pulsar:pulsar-server-distribution:$PULSAR_VERSION:tar.gz:bin"
TARBALL="$HOME/.m2/repository/org/apache/pulsar/pulsar-server-distribution/$PULSAR_VERSION/pulsar-server-distribution-$PULSAR_VERSION-bin.tar.gz"

log() { echo "pulsar.sh: $*" >&2; }

# shellcheck source=lib/standalone.sh
source "$(dirname "$0")/lib/standalone.sh"

ready() { curl -fsS -o /dev/null --max-time 2 "$ADMIN_URL/admin/v2/brokers/ready" 2>/dev/null; }

fetch() {
  if [ -x "$HOME_DIR/bin/pulsar" ]; then return 0; fi
  if [ ! -f "$TARBALL" ]; then
    log "downloading $ARTIFACT with Maven (about 250 MB, cached in ~/.m2)"
    mvn -B -q dependency:get -Dartifact="$ARTIFACT" -Dtransitive=false
  fi
  log "unpacking into $BASE"
  mkdir -p "$BASE"
  tar -xzf "$TARBALL" -C "$BASE"
  [ -x "$HOME_DIR/bin/pulsar" ] || { log "unpacking did not produce $HOME_DIR/bin/pulsar"; exit 1; }
}

# Broker settings Sheaf's tests rely on (docker-compose.yml sets the same):
# delayed messages (retries) are never delivered early, at 100 ms precision;
# batch-index acknowledgement on, so the interop tests can prove ack_set.
BROKER_SETTINGS=(
  "isDelayedDeliveryDeliverAtTimeStrict=true"
  "delayedDeliveryTickTimeMillis=100"
  "acknowledgmentAtBatchIndexLevelEnabled=true"
)

configure() {
  set_settings "$HOME_DIR/conf/standalone.conf" "${BROKER_SETTINGS[@]}"
}

start() {
  if ready; then log "a broker already answers at $ADMIN_URL"; return 0; fi
  fetch
  configure
  if pid="$(running_pid)"; then
    log "broker $pid is starting; waiting for it"
  else
    log "starting Pulsar $PULSAR_VERSION standalone (log: $LOG_FILE)"
    # A small heap for 2-core, shared machines; bin/pulsar reads PULSAR_MEM and PULSAR_GC.
    PULSAR_MEM="${PULSAR_MEM:--Xms1g -Xmx1g -XX:MaxDirectMemorySize=1g}" \
    PULSAR_GC="${PULSAR_GC:--XX:+UseG1GC -XX:ParallelGCThreads=2 -XX:ConcGCThreads=2}" \
      nohup "$HOME_DIR/bin/pulsar" standalone -nfw -nss >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
  fi
  wait_ready
  log "ready at pulsar://127.0.0.1:6650 (admin $ADMIN_URL)"
}

stop() { stop_broker; }

# kill -9, as a crash would (fault runs): whatever the broker had not persisted is lost.
crash() {
  local pid
  if ! pid="$(running_pid)"; then log "not running"; rm -f "$PID_FILE"; return 0; fi
  log "killing broker $pid (SIGKILL)"
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  rm -f "$PID_FILE"
}

status() {
  if ready; then echo "ready at $ADMIN_URL"; return 0; fi
  if pid="$(running_pid)"; then echo "starting (pid $pid)"; return 1; fi
  echo "not running"; return 1
}

reset() {
  stop
  rm -rf "$HOME_DIR/data"
  log "data removed"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  kill) crash ;;
  status) status ;;
  reset) reset ;;
  home) fetch >&2; echo "$HOME_DIR" ;;
  *) echo "usage: $0 fetch|start|stop|kill|status|reset|home" >&2; exit 2 ;;
esac
