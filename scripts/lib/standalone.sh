# Shared by scripts/pulsar.sh, scripts/pulsar-secure.sh and scripts/pulsar-cluster.sh:
# a broker (or, for the cluster, each component) run in the background. The caller sets PID_FILE, LOG_FILE and
# READY_TIMEOUT, and defines `log` and `ready` (true once the broker answers).

running_pid() {
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Writes each key=value into the config file, replacing the key's line or appending it.
set_settings() {
  local conf="$1" setting key
  shift
  for setting in "$@"; do
    key="${setting%%=*}"
    if grep -q "^$key=" "$conf"; then
      sed -i "s|^$key=.*|$setting|" "$conf"
    else
      # The shipped file may not end with a newline: never glue a setting onto its last line.
      if [ -n "$(tail -c 1 "$conf")" ]; then echo >>"$conf"; fi
      echo "$setting" >>"$conf"
    fi
  done
}

# Waits until `ready`, at most READY_TIMEOUT seconds; fails with the log's last lines if the broker exits or never gets there.
wait_ready() {
  local waited=0
  until ready; do
    if ! running_pid >/dev/null; then
      log "the broker exited while starting; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      exit 1
    fi
    if [ "$waited" -ge "$READY_TIMEOUT" ]; then
      log "not ready after ${READY_TIMEOUT}s; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2 || true
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
    if [ $((waited % 20)) -eq 0 ]; then log "waiting for readiness (${waited}s)"; fi
  done
}

# Stops the broker with SIGTERM, then SIGKILL after 60 s.
stop_broker() {
  local pid
  if ! pid="$(running_pid)"; then log "not running"; rm -f "$PID_FILE"; return 0; fi
  log "stopping broker $pid"
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; log "stopped"; return 0; }
    sleep 1
  done
  log "still running after 60s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}
