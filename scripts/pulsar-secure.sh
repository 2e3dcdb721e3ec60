#!/usr/bin/env bash
# A second Pulsar standalone broker with token authentication, authorization
# and TLS, for the security tests (issue 15). It runs beside the plain one of
# scripts/pulsar.sh, from the same distribution, on its own ports and data.
#
#   scripts/pulsar-secure.sh start    make keys and certificates if missing, start it, return once it is ready
#   scripts/pulsar-secure.sh stop     stop it cleanly
#   scripts/pulsar-secure.sh status   say whether it runs and is ready
#   scripts/pulsar-secure.sh reset    stop it and delete its data, keys and certificates
#   scripts/pulsar-secure.sh dir      print the directory the tests read (SHEAF_SECURE_PULSAR)
#
# What the directory holds: endpoints.json (service URLs, admin URL),
# ca.pem (the CA that signed the broker's certificate, for DNS name
# localhost only: 127.0.0.1 is a host-name mismatch), other-ca.pem (a CA
# that signed nothing here), secret.key (the HS256 key tokens are signed
# with), admin.token (the super-user's token).
#
# Ports: 6660 plaintext, 6661 TLS, 8090 admin HTTP, 3191 bookie. Environment:
# SHEAF_PULSAR_HOME as for scripts/pulsar.sh; PULSAR_READY_TIMEOUT (default 240).
set -euo pipefail

SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
BASE="${SHEAF_PULSAR_HOME:-$HOME/.cache/sheaf}"
DIR="$BASE/secure"
PID_FILE="$DIR/broker.pid"
LOG_FILE="$DIR/broker.log"
PLAIN_PORT=6660
TLS_PORT=6661
WEB_PORT=8090
BOOKIE_PORT=3191
ADMIN_URL="http://127.0.0.1:$WEB_PORT"
READY_TIMEOUT="${PULSAR_READY_TIMEOUT:-240}"

log() { echo "pulsar-secure.sh: $*" >&2; }

# shellcheck source=lib/standalone.sh
source "$SCRIPTS/lib/standalone.sh"

ready() {
  [ -f "$DIR/admin.token" ] || return 1
  curl -fsS -o /dev/null --max-time 2 -H "Authorization: Bearer $(cat "$DIR/admin.token")" "$ADMIN_URL/admin/v2/brokers/ready" 2>/dev/null
}

# A CA, and a broker certificate it signed for localhost (DNS name only); a second CA that signed nothing.
certificates() {
  [ -f "$DIR/broker.key.pem" ] && return 0
  log "making a CA and a broker certificate for localhost"
  local days=3650
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=sheaf test CA" \
    -keyout "$DIR/ca.key.pem" -out "$DIR/ca.pem" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days "$days" -subj "/CN=sheaf other CA" \
    -keyout "$DIR/other-ca.key.pem" -out "$DIR/other-ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$DIR/broker.rsa.pem" -out "$DIR/broker.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$DIR/broker.ext"
  openssl x509 -req -in "$DIR/broker.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key.pem" -CAcreateserial -days "$days" \
    -extfile "$DIR/broker.ext" -out "$DIR/broker.cert.pem" 2>/dev/null
  # The broker reads its key as PKCS#8.
  openssl pkcs8 -topk8 -nocrypt -in "$DIR/broker.rsa.pem" -out "$DIR/broker.key.pem"
}

# The HS256 key tokens are signed with, and the super-user's token (the broker's own client uses it too).
tokens() {
  [ -f "$DIR/admin.token" ] && return 0
  log "making the token key and the admin token"
  "$HOME_DIR/bin/pulsar" tokens create-secret-key --output "$DIR/secret.key" >/dev/null
  "$HOME_DIR/bin/pulsar" tokens create --secret-key "file://$DIR/secret.key" --subject admin >"$DIR/admin.token"
}

configure() {
  local conf="$DIR/standalone.conf"
  cp "$HOME_DIR/conf/standalone.conf" "$conf"
  local settings=(
    "brokerServicePort=$PLAIN_PORT"
    "brokerServicePortTls=$TLS_PORT"
    "webServicePort=$WEB_PORT"
    "advertisedAddress=localhost"
    "tlsCertificateFilePath=$DIR/broker.cert.pem"
    "tlsKeyFilePath=$DIR/broker.key.pem"
    "tlsTrustCertsFilePath=$DIR/ca.pem"
    "authenticationEnabled=true"
    "authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
    "tokenSecretKey=file://$DIR/secret.key"
    "authorizationEnabled=true"
    "superUserRoles=admin"
    "brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken"
    "brokerClientAuthenticationParameters=file://$DIR/admin.token"
    # Expired tokens are challenged within 2 s (default 60), so a refresh test need not wait a minute.
    "authenticationRefreshCheckSeconds=2"
    "isDelayedDeliveryDeliverAtTimeStrict=true"
    "delayedDeliveryTickTimeMillis=100"
  )
  set_settings "$conf" "${settings[@]}"
  cat >"$DIR/endpoints.json" <<EOF
{
  "tlsUrl": "pulsar+ssl://localhost:$TLS_PORT",
  "tlsUrlByAddress": "pulsar+ssl://127.0.0.1:$TLS_PORT",
  "plainUrl": "pulsar://localhost:$PLAIN_PORT",
  "adminUrl": "$ADMIN_URL"
}
EOF
}

start() {
  HOME_DIR="$("$SCRIPTS/pulsar.sh" home)"
  mkdir -p "$DIR"
  if ready; then log "a secured broker already answers at $ADMIN_URL"; return 0; fi
  certificates
  tokens
  configure
  if pid="$(running_pid)"; then
    log "broker $pid is starting; waiting for it"
  else
    log "starting the secured standalone (log: $LOG_FILE)"
    PULSAR_MEM="${PULSAR_MEM:--Xms512m -Xmx768m -XX:MaxDirectMemorySize=512m}" \
    PULSAR_GC="${PULSAR_GC:--XX:+UseG1GC -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1}" \
      nohup "$HOME_DIR/bin/pulsar" standalone -nfw -nss -c "$DIR/standalone.conf" \
      --metadata-dir "$DIR/data/metadata" --bookkeeper-dir "$DIR/data/bookkeeper" --bookkeeper-port "$BOOKIE_PORT" \
      >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
  fi
  wait_ready
  log "ready at pulsar+ssl://localhost:$TLS_PORT and pulsar://localhost:$PLAIN_PORT (admin $ADMIN_URL); files in $DIR"
}

stop() { stop_broker; }

status() {
  if ready; then echo "ready at $ADMIN_URL"; return 0; fi
  if pid="$(running_pid)"; then echo "starting (pid $pid)"; return 1; fi
  echo "not running"; return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) stop; rm -rf "$DIR"; log "removed $DIR" ;;
  dir) echo "$DIR" ;;
  *) echo "usage: $0 start|stop|status|reset|dir" >&2; exit 2 ;;
esac
