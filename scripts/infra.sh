# Sourced by scripts/dev, scripts/test and scripts/bench: makes sure PostgreSQL and a
# Kafka-compatible broker (tansu) are running on this machine, starting or installing them when
# needed.
#
# OMS_BROKER=shared (the default, for scripts/dev) uses the broker on KAFKA_PORT, starting one when
# none listens. OMS_BROKER=private (scripts/test, scripts/bench) starts a fresh broker of the
# script's own on a free port and stops it when the script exits: tansu keeps everything in
# memory, and one left running for hours coordinates consumer groups so slowly that they stall,
# so tests and benchmarks never reuse a broker they did not start.
#
# Exports KAFKA_BROKERS.
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
KAFKA_PORT=${KAFKA_PORT:-9092}
STATE_DIR=${OMS_STATE_DIR:-${TMPDIR:-/tmp}/oms-infra}
mkdir -p "$STATE_DIR"

log() { printf '\033[1m[oms]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then return; fi
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "PostgreSQL is not installed; installing it with apt-get"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Local development trusts loopback connections, as this machine's image does.
  if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    log "allowing trusted loopback connections in $hba"
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return
    sleep 0.5
  done
  log "PostgreSQL did not come up on $PG_HOST:$PG_PORT"; exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stunnel (Debian's package) terminates TLS in front of the local broker in tests/api/kafka_tls.rs.
ensure_stunnel() {
  if command -v stunnel >/dev/null 2>&1; then return; fi
  log "installing stunnel with apt-get (the Kafka TLS test puts it in front of the broker)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 openssl >/dev/null
}

# PgBouncer (Debian's package) for the pooled test run and tests/api/pooler.rs.
ensure_pgbouncer() {
  if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then return; fi
  log "installing PgBouncer with apt-get (the pooled test run puts it in front of PostgreSQL)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null
}

# tansu's SQLite storage (libsql) keeps SCRAM credentials across a restart, which the SASL test
# needs; the in-memory store (dynostore) serves everything else.
TANSU_FEATURES=dynostore,libsql

tansu_has_features() {
  python3 - "$TANSU_FEATURES" <<'PY' 2>/dev/null
import json, os, sys
wanted = set(sys.argv[1].split(","))
installs = json.load(open(os.path.expanduser("~/.cargo/.crates2.json")))["installs"]
sys.exit(0 if any(key.startswith("tansu ") and wanted <= set(value["features"])
                  for key, value in installs.items()) else 1)
PY
}

install_tansu_if_missing() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v tansu >/dev/null 2>&1 || ! tansu_has_features; then
    log "installing tansu, the Kafka-compatible broker used locally (once; 21 minutes on a busy 2-core machine)"
    cargo install tansu --locked --features "$TANSU_FEATURES"
  fi
}

# Starts tansu on $1 in the background, logging to $2; waits until it listens.
start_tansu() {
  local port=$1 logfile=$2
  log "starting tansu on 127.0.0.1:$port (in memory; log: $logfile)"
  nohup tansu \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$logfile" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 100); do
    port_open "$port" && return
    sleep 0.2
  done
  log "tansu did not start; see $logfile"; tail -n 20 "$logfile" >&2; exit 1
}

ensure_tansu() {
  install_tansu_if_missing
  if port_open "$KAFKA_PORT"; then return; fi
  start_tansu "$KAFKA_PORT" "$STATE_DIR/tansu.log"
  echo "$TANSU_PID" >"$STATE_DIR/tansu.pid"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_private_tansu() {
  install_tansu_if_missing
  KAFKA_PORT=$(free_port)
  start_tansu "$KAFKA_PORT" "$STATE_DIR/tansu-$KAFKA_PORT.log"
  # shellcheck disable=SC2064 # this broker's pid, fixed now
  trap "kill $TANSU_PID 2>/dev/null || true" EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

ensure_postgres
if [ "${OMS_BROKER:-shared}" = private ]; then start_private_tansu; else ensure_tansu; fi
export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
# tansu sends a consumer that resumes inside a multi-record batch only the batches after it,
# losing the rest of that batch: one message per batch keeps every message deliverable.
export KAFKA_BATCH_MAX_MESSAGES=${KAFKA_BATCH_MAX_MESSAGES:-1}
# tansu holds every fetch for the whole fetch.wait.max.ms, data or not (Apache Kafka answers as
# soon as data arrives): a short wait keeps each hop's delay short here.
export KAFKA_FETCH_WAIT_MAX_MS=${KAFKA_FETCH_WAIT_MAX_MS:-10}
