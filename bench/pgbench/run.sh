#!/usr/bin/env bash
# The database's own ceiling for oms's per-order work (issue 6): pgbench runs the SQL oms sends
# to place an order and to confirm it (place_and_confirm.sql, one pgbench transaction = one order
# = two database transactions), with the outbox relay's deletes alongside (relay.sql, one extra
# client, as oms runs one active relay), on a scratch database migrated with migrations/*.sql and
# seeded with 50,000 SKUs. No oms process, no Kafka: only PostgreSQL.
#
#   bench/pgbench/run.sh [--json FILE] [--tpcb] [--logs DIR]
#
#   --json FILE   also write the figures as JSON to FILE
#   --tpcb        also run stock TPC-B once for reference (pgbench -i -s 10; -c 10 -j 2 -T ...)
#   --logs DIR    keep pgbench's raw output in DIR
#
# Environment (defaults in brackets):
#   CLIENTS          clients of place_and_confirm.sql; a list runs each  [10]
#   SECONDS_TO_RUN   length of each run                                  [20]
#   THREADS          pgbench threads (-j), at most CLIENTS                [2]
#   CASES            what to run, each a catalogue with optional +flags  [uniform hot]
#                      uniform: each line any of the 50,000 SKUs
#                      hot:     each line one of 5 hot SKUs with HOT_PCT % chance, else any other
#                      +forupdate: lock_by_skus FOR UPDATE (oms before it took FOR NO KEY UPDATE)
#                      +notify: a pg_notify in each writing transaction, as oms did before
#                               its relays were woken in-process (see src/outbox/mod.rs)
#                      +norelay:  without the relay client
#                      +batch:    clients only place orders; CONFIRMERS clients of
#                                 confirm_batch.sql confirm them BATCH at a time, as oms's
#                                 batched inventory consumer does (orders/s is then orders
#                                 placed; the confirmed rate is in confirmed/s)
#                    e.g. CASES="uniform hot hot+forupdate uniform+notify uniform+batch"
#   NSKUS [50000]  HOT_SKUS [5]  HOT_PCT [90]  USERS [100000]  STOCK [1000000000] per SKU
#   BATCH [256] (oms's OMS_INVENTORY_BATCH_MAX)  CONFIRMERS [4] (oms's consumer slots beside the API)
#   RELAY_BATCH [500] (oms's OMS_OUTBOX_BATCH)  RELAY_ACK_MS [2] (stand-in for Kafka's ack)
#   PGBENCH_OPTS     more options for place_and_confirm.sql's pgbench, e.g. "-P 2" (progress,
#                    seen with --logs)
#   PGHOST [127.0.0.1]  PGPORT [5432]  PGUSER [postgres] (trust authentication)
#
# Each case gets its own database oms_pgbench_<random>, dropped at the end (also on failure or
# Ctrl-C). After each run it checks that no stock is negative and that the ledger balances
# (per SKU, the sum of stock_movements equals the quantity; every confirmed order has one ledger
# row per line); it exits non-zero if a check fails.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

json_out=""
logs_dir=""
run_tpcb=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --json) json_out=${2:?--json needs a file}; shift 2 ;;
        --json=*) json_out=${1#--json=}; shift ;;
        --tpcb) run_tpcb=1; shift ;;
        --logs) logs_dir=${2:?--logs needs a directory}; shift 2 ;;
        --logs=*) logs_dir=${1#--logs=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
clients_list=${CLIENTS:-10}
seconds=${SECONDS_TO_RUN:-20}
threads=${THREADS:-2}
cases=${CASES:-uniform hot}
nskus=${NSKUS:-50000}
hot_skus=${HOT_SKUS:-5}
hot_pct=${HOT_PCT:-90}
users=${USERS:-100000}
stock=${STOCK:-1000000000}
relay_batch=${RELAY_BATCH:-500}
relay_ack_ms=${RELAY_ACK_MS:-2}
confirm_batch=${BATCH:-256}
confirmers=${CONFIRMERS:-4}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------------
pg_bin() {
    local tool=$1 found
    if found=$(command -v "$tool"); then echo "$found"; return; fi
    found=$(ls -d /usr/lib/postgresql/*/bin/"$tool" 2>/dev/null | sort -V | tail -n 1)
    [[ -n $found ]] || die "$tool not found (Debian: apt-get install postgresql-client)"
    echo "$found"
}
PGBENCH=$(pg_bin pgbench)
PSQL=$(pg_bin psql)
PG_ISREADY=$(pg_bin pg_isready)
(( hot_skus >= 3 )) || die "HOT_SKUS must be at least 3"
(( nskus > hot_skus + 3 )) || die "NSKUS must be larger than HOT_SKUS + 3"

# --- cleanup -----------------------------------------------------------------------------------
work=$(mktemp -d /tmp/oms-pgbench.XXXXXX)
created_dbs=()
bg_pids=()      # the pgbench processes this script started and has not waited for yet
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${bg_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    local db
    for db in "${created_dbs[@]}"; do
        "$PSQL" -X -q -d postgres -c "drop database if exists \"$db\" with (force)" \
            >/dev/null 2>&1 || log "could not drop database $db"
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# pgbench runs in the background and is waited for, so that a signal is handled at once (bash
# runs traps only after a foreground command ends). start_bg sets bg_pid; wait_bg PID returns
# its exit status.
start_bg() { "$@" & bg_pid=$!; bg_pids+=("$bg_pid"); }
wait_bg() {
    local pid=$1 status=0 kept=() p
    wait "$pid" || status=$?
    for p in "${bg_pids[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
    bg_pids=("${kept[@]+"${kept[@]}"}")
    return "$status"
}

# --- PostgreSQL --------------------------------------------------------------------------------
if ! "$PG_ISREADY" -q -h "$PGHOST" -p "$PGPORT"; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $version ]] || die "PostgreSQL is not running on $PGHOST:$PGPORT and no cluster is installed"
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do "$PG_ISREADY" -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
    "$PG_ISREADY" -q -h "$PGHOST" -p "$PGPORT" || die "PostgreSQL did not come up"
fi
psql_db() { local db=$1; shift; "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }
server_version=$(psql_db postgres -Atc "show server_version")
sync_commit=$(psql_db postgres -Atc "show synchronous_commit")
new_db() { # sets db_name (not echoed: created_dbs must be kept in this shell for cleanup)
    db_name="oms_pgbench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n')"
    created_dbs+=("$db_name")
    psql_db postgres -c "create database \"$db_name\"" >/dev/null
}
drop_db() {
    psql_db postgres -c "drop database if exists \"$1\" with (force)" >/dev/null
    local kept=() db
    for db in "${created_dbs[@]}"; do [[ $db == "$1" ]] || kept+=("$db"); done
    created_dbs=("${kept[@]+"${kept[@]}"}")
}

# The schema exactly as oms migrates it, plus two helpers the scripts use, and the catalogue.
prepare_db() {
    local db=$1 migration
    for migration in "$root"/migrations/*.sql; do
        psql_db "$db" -f "$migration" >/dev/null
    done
    psql_db "$db" >/dev/null <<SQL
-- UUIDv7 (48-bit millisecond timestamp, then random), like oms's Uuid::now_v7().
-- PL/pgSQL rather than SQL: PostgreSQL parses and plans an SQL function's body again at every
-- call it cannot inline, which a volatile one is not; PL/pgSQL keeps the expression prepared.
create function bench_uuid_v7() returns uuid language plpgsql volatile parallel safe as \$\$
begin
  return encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
           placing substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
           from 1 for 6), 52, 1), 53, 1), 'hex')::uuid;
end
\$\$;
create function bench_sku(n int) returns text language sql immutable parallel safe as \$\$
  select 'SKU-' || lpad(n::text, 6, '0')
\$\$;
-- The catalogue, with its initial stock in the ledger (as inventory::create_if_missing does).
insert into inventory_items (sku, name, quantity, low_stock_threshold, price_amount, price_currency)
select bench_sku(n), 'Bench item ' || n, $stock, 10, 100 + n % 9900, 'EUR'
  from generate_series(1, $nskus) n;
insert into stock_movements (sku, delta, reason)
select sku, quantity, 'stock_set' from inventory_items;
-- Only the seeded tables: an order table analyzed while empty would have every prepared
-- statement of the run planned as a sequential scan (the planner then knows it has no rows, and
-- the run is over before autovacuum analyzes it again), which oms's fresh databases never are.
vacuum analyze inventory_items, stock_movements;
checkpoint;
SQL
}

# CPU accounting, to see whether the run had the machine to itself: prints the jiffies of
# "all busy", "PostgreSQL" (every process of the postgres user, plus what its exited backends used)
# and "this script's finished children" (pgbench), and the total.
cpu_snapshot() {
    local total busy pg=0 mine postmaster pid
    read -r total busy < <(awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, t - $5 - $6 }' /proc/stat)
    postmaster=$(pgrep -u postgres -x -o postgres || true)
    for pid in $(pgrep -u postgres || true); do
        pg=$(( pg + $(awk -v pm="$([[ $pid == "$postmaster" ]] && echo 1 || echo 0)" \
            '{ sub(/^.*\) /, ""); print $12 + $13 + (pm ? $14 + $15 : 0) }' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
    done
    mine=$(awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat")
    echo "$total $busy $pg $mine"
}
# cpu_shares BEFORE AFTER: "postgres% pgbench% other%" of the whole machine (all cores).
cpu_shares() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        t = y[1] - x[1]; if (t <= 0) t = 1
        pg = y[3] - x[3]; me = y[4] - x[4]; other = (y[2] - x[2]) - pg - me
        if (other < 0) other = 0
        printf "%.0f %.0f %.0f\n", 100 * pg / t, 100 * me / t, 100 * other / t }'
}

# Sum of pgbench -r per-command average latencies: "place confirm" in ms, placing being every
# statement before the confirmation's BEGIN, confirming every one up to its COMMIT.
split_latencies() {
    awk '/^statement latencies/ { on = 1; next }
         on && $1 ~ /^[0-9.]+$/ {
             if ($3 == "BEGIN;") { part[++n] = sum; sum = 0 }
             sum += $1
             if ($3 == "COMMIT;") { part[++n] = sum; sum = 0 }
         }
         END { printf "%.2f %.2f\n", part[1], part[2] }' "$1"
}
field() { # field FILE REGEX: the first number after REGEX
    grep -oP "$2\\s*\\K[0-9.]+" "$1" | head -n 1 || true
}

# --- one case ----------------------------------------------------------------------------------
results=()      # JSON objects
table_rows=()
failed_checks=0

run_case() {
    local case=$1 clients=$2
    local catalogue=${case%%+*} flags=""
    [[ $case == *+* ]] && flags="+${case#*+}"
    local notify=0 nokey=1 relay=1 confirm=1 pct cold_from
    [[ $flags == *+notify* ]] && notify=1
    [[ $flags == *+batch* ]] && confirm=0
    [[ $flags == *+forupdate* ]] && nokey=0
    [[ $flags == *+norelay* ]] && relay=0
    case $catalogue in
        uniform) pct=0; cold_from=1 ;;
        hot) pct=$hot_pct; cold_from=$((hot_skus + 1)) ;;
        *) die "unknown catalogue '$catalogue' in CASES (uniform or hot)" ;;
    esac
    local j=$(( threads < clients ? threads : clients ))

    new_db
    local db=$db_name
    log "$case, $clients clients: database $db (migrations, $nskus SKUs)"
    prepare_db "$db"

    local out="$work/$case-c$clients.txt" relay_out="$work/$case-c$clients-relay.txt"
    local relay_pid="" cpu_before cpu_after
    cpu_before=$(cpu_snapshot)
    if (( relay )); then
        start_bg "$PGBENCH" -n -M prepared -c 1 -j 1 -T $((seconds + 1)) \
            -D batch="$relay_batch" -D ack_ms="$relay_ack_ms" \
            -f "$here/relay.sql" "$db" >"$relay_out" 2>&1
        relay_pid=$bg_pid
        sleep 0.5
    fi
    local batch_pid="" batch_out="$work/$case-c$clients-batches.txt"
    if (( ! confirm )); then
        start_bg "$PGBENCH" -n -M prepared -c "$confirmers" -j 1 -T $((seconds + 1)) \
            -D batch="$confirm_batch" -f "$here/confirm_batch.sql" "$db" >"$batch_out" 2>&1
        batch_pid=$bg_pid
    fi
    log "$case, $clients clients: pgbench for ${seconds}s"
    local status=0
    # shellcheck disable=SC2086 # PGBENCH_OPTS is a list of options
    start_bg "$PGBENCH" -n -M prepared -r --failures-detailed -c "$clients" -j "$j" -T "$seconds" ${PGBENCH_OPTS:-} \
        -D nskus="$nskus" -D hot_skus="$hot_skus" -D hot_pct="$pct" -D cold_from="$cold_from" \
        -D users="$users" -D notify="$notify" -D nokey="$nokey" -D confirm="$confirm" \
        -f "$here/place_and_confirm.sql" "$db" >"$out" 2>&1
    wait_bg "$bg_pid" || status=$?
    local relay_status=0 batch_status=0
    if (( relay )); then wait_bg "$relay_pid" || relay_status=$?; fi
    if [[ -n $batch_pid ]]; then wait_bg "$batch_pid" || batch_status=$?; fi
    sleep 0.3   # let the backends exit, so that their CPU time is counted
    cpu_after=$(cpu_snapshot)
    local cpu_pg cpu_bench cpu_other
    read -r cpu_pg cpu_bench cpu_other < <(cpu_shares "$cpu_before" "$cpu_after")
    if [[ -n $logs_dir ]]; then
        mkdir -p "$logs_dir"
        cp "$out" "$logs_dir/"
        if (( relay )); then cp "$relay_out" "$logs_dir/"; fi
    fi
    if (( status != 0 )); then
        grep -v 'executing' "$out" | tail -n 40 >&2
        die "pgbench failed (exit $status) for $case"
    fi
    if (( batch_status != 0 )); then
        tail -n 20 "$batch_out" >&2
        die "the batched confirmations' pgbench failed (exit $batch_status) for $case"
    fi
    if (( relay_status != 0 )); then
        tail -n 20 "$relay_out" >&2
        die "the relay's pgbench failed (exit $relay_status) for $case"
    fi

    local tps lat processed failed deadlocks place_ms confirm_ms
    tps=$(field "$out" '^tps =')
    lat=$(field "$out" '^latency average =')
    processed=$(field "$out" '^number of transactions actually processed:')
    failed=$(field "$out" '^number of failed transactions:')
    deadlocks=$(field "$out" '^number of deadlock failures:')
    read -r place_ms confirm_ms < <(split_latencies "$out")
    local relay_tps=0
    if (( relay )); then relay_tps=$(field "$relay_out" '^tps ='); fi

    # Checks, and what the database holds after the run.
    local checks
    checks=$(psql_db "$db" -At -F ' ' <<'SQL'
select
  (select count(*) from inventory_items where quantity < 0),
  (select count(*) from inventory_items i
     left join (select sku, sum(delta) as total from stock_movements group by sku) m using (sku)
    where i.quantity <> coalesce(m.total, 0)),
  (select count(*) from orders o where status = 'CONFIRMED' and
     (select count(*) from stock_movements s where s.order_id = o.id) <>
     (select count(*) from order_lines l where l.order_id = o.id)),
  (select count(*) from orders where status = 'CONFIRMED'),
  (select count(*) from orders where status = 'PENDING'),
  (select count(*) from order_lines),
  (select last_value from outbox_id_seq),
  (select count(*) from outbox);
SQL
)
    local negative unbalanced order_ledger confirmed pending lines events backlog
    read -r negative unbalanced order_ledger confirmed pending lines events backlog <<<"$checks"
    local ok=true
    if (( negative != 0 || unbalanced != 0 || order_ledger != 0 )); then
        ok=false
        failed_checks=$((failed_checks + 1))
        log "CHECK FAILED for $case: $negative negative stock, $unbalanced SKUs off the ledger," \
            "$order_ledger confirmed orders without one ledger row per line"
    fi
    local relayed_per_s
    relayed_per_s=$(awk -v e="$events" -v b="$backlog" -v s="$seconds" 'BEGIN { printf "%.0f", (e - b) / s }')
    local db_orders_per_s
    db_orders_per_s=$(awk -v c="$confirmed" -v s="$seconds" 'BEGIN { printf "%.1f", c / s }')

    table_rows+=("$(printf '%-22s %7s %10.1f %12s %11.2f %9.2f %11.2f %7s %8s %9s %8s %6s %12s' \
        "$case" "$clients" "$tps" "$db_orders_per_s" "$lat" "$place_ms" "$confirm_ms" "$failed" "$pending" \
        "$relayed_per_s" "$backlog" "$ok" "$cpu_pg/$cpu_bench/$cpu_other")")
    results+=("$(printf '{"case":"%s","catalogue":"%s","clients":%s,"seconds":%s,"orders_per_s":%s,"latency_avg_ms":%s,"place_ms":%s,"confirm_ms":%s,"orders_completed":%s,"failed":%s,"deadlock_failures":%s,"confirmed_in_db":%s,"confirmed_per_s_in_db":%s,"pending_left":%s,"order_lines":%s,"outbox_events_written":%s,"outbox_events_relayed_per_s":%s,"outbox_backlog_at_end":%s,"relay_rounds_per_s":%s,"notify":%s,"lock":"%s","relay":%s,"hot_skus":%s,"hot_pct":%s,"nskus":%s,"checks_ok":%s,"cpu_pct_postgres":%s,"cpu_pct_pgbench":%s,"cpu_pct_other":%s}' \
        "$case" "$catalogue" "$clients" "$seconds" "$tps" "$lat" "$place_ms" "$confirm_ms" \
        "$processed" "${failed:-0}" "${deadlocks:-0}" "$confirmed" "$db_orders_per_s" "$pending" "$lines" \
        "$events" "$relayed_per_s" "$backlog" "${relay_tps:-0}" "$notify" \
        "$([[ $nokey == 1 ]] && echo 'for no key update' || echo 'for update')" "$relay" \
        "$hot_skus" "$pct" "$nskus" "$ok" "$cpu_pg" "$cpu_bench" "$cpu_other")")
    log "$case, $clients clients: $tps orders/s, latency $lat ms, $failed failed; checks ok: $ok;" \
        "CPU postgres/pgbench/other $cpu_pg/$cpu_bench/$cpu_other %"
    if (( cpu_other > 10 )); then
        log "warning: other processes used $cpu_other % of the machine during this run; its figures are low"
    fi
    drop_db "$db"
}

# --- TPC-B -------------------------------------------------------------------------------------
tpcb_json="null"
tpcb_line=""
run_tpcb() {
    new_db
    local db=$db_name
    local tc=${TPCB_CLIENTS:-10}
    local j=$(( threads < tc ? threads : tc ))
    log "TPC-B: pgbench -i -s 10 on $db"
    start_bg "$PGBENCH" -i -s 10 -q "$db" >"$work/tpcb-init.txt" 2>&1
    wait_bg "$bg_pid" || { cat "$work/tpcb-init.txt" >&2; die "pgbench -i failed"; }
    psql_db "$db" -c checkpoint >/dev/null
    log "TPC-B: pgbench -c $tc -j $j -T $seconds"
    local out="$work/tpcb.txt"
    start_bg "$PGBENCH" -c "$tc" -j "$j" -T "$seconds" "$db" >"$out" 2>&1
    wait_bg "$bg_pid" || { tail -n 20 "$out" >&2; die "TPC-B run failed"; }
    if [[ -n $logs_dir ]]; then mkdir -p "$logs_dir"; cp "$out" "$logs_dir/"; fi
    local tps lat
    tps=$(field "$out" '^tps =')
    lat=$(field "$out" '^latency average =')
    tpcb_line=$(printf '%-22s %7s %10.1f %12s %11.2f' "TPC-B (tps, -s 10)" "$tc" "$tps" "-" "$lat")
    tpcb_json=$(printf '{"clients":%s,"seconds":%s,"scale":10,"tps":%s,"latency_avg_ms":%s}' "$tc" "$seconds" "$tps" "$lat")
    drop_db "$db"
}

# --- main --------------------------------------------------------------------------------------
started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "pgbench: $PGBENCH ($("$PGBENCH" --version | head -n 1)); PostgreSQL $server_version on $PGHOST:$PGPORT"
log "cases: $cases; clients: $clients_list; ${seconds}s each; $(nproc) cores, load average $load_at_start"
for case in $cases; do
    for clients in $clients_list; do
        run_case "$case" "$clients"
    done
done
if (( run_tpcb )); then run_tpcb; fi
elapsed=$(( $(date +%s) - started ))

echo
echo "oms per-order SQL on PostgreSQL $server_version (synchronous_commit=$sync_commit), ${seconds}s per run, $(nproc) cores"
printf '%-22s %7s %10s %12s %11s %9s %11s %7s %8s %9s %8s %6s %12s\n' \
    case clients orders/s confirmed/s "latency ms" "place ms" "confirm ms" failed "pending" "events/s" backlog checks "cpu pg/pb/ot"
for row in "${table_rows[@]}"; do echo "$row"; done
if [[ -n $tpcb_line ]]; then echo "$tpcb_line"; fi
cat <<EOF

orders/s: placed+confirmed pairs per second (pgbench tps of place_and_confirm.sql, failures excluded);
in +batch cases, orders placed per second. confirmed/s: orders CONFIRMED in the database per second
of the run (+batch: confirmed by confirm_batch.sql, BATCH at a time, by CONFIRMERS clients).
latency: per pair; place/confirm ms: sums of pgbench -r per-statement averages up to each COMMIT.
failed: pairs that hit an error (deadlocks); pending: orders left PENDING by a failed confirm.
events/s: outbox rows the relay client deleted per second; backlog: rows left in the outbox.
cpu pg/pb/ot: % of the whole machine (all cores) used during the run by PostgreSQL (all its
databases), by pgbench, and by everything else (above 10 %: the run shared the machine).
took ${elapsed}s in all
EOF

if [[ -n $json_out ]]; then
    {
        printf '{"postgres":"%s","synchronous_commit":"%s","pgbench":"%s","cores":%s,"load_average_at_start":"%s",' \
            "$server_version" "$sync_commit" "$PGBENCH" "$(nproc)" "$load_at_start"
        printf '"seconds":%s,"elapsed_s":%s,"runs":[' "$seconds" "$elapsed"
        (IFS=,; printf '%s' "${results[*]}")
        printf '],"tpcb":%s}\n' "$tpcb_json"
    } >"$json_out"
    log "wrote $json_out"
fi

(( failed_checks == 0 )) || die "$failed_checks run(s) failed the stock checks"
