#!/usr/bin/env bash
# Runs PgBouncer in the foreground in transaction mode, as the old system deployed it (and as
# Supabase's and Neon's pooled endpoints behave), in front of this machine's PostgreSQL:
#   scripts/pgbouncer.sh PORT DIR
# listens on 127.0.0.1:PORT and keeps its configuration and log in DIR. Every database name is
# passed through (`*`), so each test's own database is reachable by name. Used by scripts/test
# for the pooled run and by tests/api/pooler.rs; install it with ensure_pgbouncer (scripts/infra.sh).
set -euo pipefail
port=$1
dir=$2
pg_host=${PG_HOST:-127.0.0.1}
pg_port=${PG_PORT:-5432}
mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$pg_host port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
; sqlx sends it at start-up; PgBouncer 1.18 would otherwise refuse the connection.
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$dir/userlist.txt"
# PgBouncer refuses to run as root; it reads its files as the postgres user.
if [ "$(id -u)" -eq 0 ]; then
  chown -R postgres "$dir"
  exec pgbouncer -u postgres "$dir/pgbouncer.ini"
fi
exec pgbouncer "$dir/pgbouncer.ini"
