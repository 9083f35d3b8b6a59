# Sourced by scripts/dev and scripts/test: makes sure PostgreSQL and a Kafka-compatible broker
# (tansu) are running on this machine, starting or installing them when needed.
#
# Exports DATABASE_URL (unless set) and KAFKA_BROKERS.
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

ensure_tansu() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if port_open "$KAFKA_PORT"; then return; fi
  if ! command -v tansu >/dev/null 2>&1; then
    log "installing tansu, the Kafka-compatible broker used locally (about 10 minutes, once)"
    cargo install tansu --locked --features dynostore
  fi
  log "starting tansu on 127.0.0.1:$KAFKA_PORT (in memory; log: $STATE_DIR/tansu.log)"
  nohup tansu \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >"$STATE_DIR/tansu.log" 2>&1 &
  echo $! >"$STATE_DIR/tansu.pid"
  for _ in $(seq 1 100); do
    port_open "$KAFKA_PORT" && return
    sleep 0.2
  done
  log "tansu did not start; see $STATE_DIR/tansu.log"; tail -n 20 "$STATE_DIR/tansu.log" >&2; exit 1
}

ensure_postgres
ensure_tansu
export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
# tansu sends a consumer that resumes inside a multi-record batch only the batches after it,
# losing the rest of that batch: one message per batch keeps every message deliverable.
export KAFKA_BATCH_MAX_MESSAGES=${KAFKA_BATCH_MAX_MESSAGES:-1}
