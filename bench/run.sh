#!/usr/bin/env bash
# The org_stats benchmark, run by `./pg_test.sh bench` (and, tiny, by `./pg_test.sh` as a smoke
# test) against the cluster pg_test.sh started (PGHOST, PGPORT, PGUSER set).
#
# Three variants on the same data, alternated (a b c a b c ...) and repeated, medians reported:
#   none:        no counting at all
#   handwritten: the PL/pgSQL counter trigger users write today (bench/handwritten_trigger.sql)
#   org_stats:   this extension
#   portable:    the portable edition (portable/org_stats.sql), in a database of its own, on the
#                workloads its targets name
# After every org_stats measurement the counts are checked against the table (0 drift), and a
# failed org_stats transaction (deadlock, error) fails the run.
#
#   bench/run.sh [--smoke] [RESULTS_FILE]
set -euo pipefail
cd "$(dirname "$0")"

SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
RESULTS=${1:-RESULTS.md}
if [ $SMOKE = 1 ]; then
    ROUNDS=1 DURATION=1 BIG=3000 BULK_BIG=2000 BULK_SMALL=1000 MILLION=20000 MILLION_ORGS=50 POOL_CLIENTS=8
else
    ROUNDS=${ORG_STATS_BENCH_ROUNDS:-3} DURATION=${ORG_STATS_BENCH_SECONDS:-6}
    BIG=300000 BULK_BIG=100000 BULK_SMALL=20000 MILLION=1000000 MILLION_ORGS=1000 POOL_CLIENTS=60
fi
# ORG_STATS_BENCH_VARIANTS="org_stats" measures only some variants (an A/B run of two builds).
read -r -a VARIANTS <<<"${ORG_STATS_BENCH_VARIANTS:-none handwritten org_stats portable}"
MAIN_DB=org_stats_bench
PORTABLE_DB=org_stats_bench_portable
DB=$MAIN_DB   # the database sql() and pgbench use (run_workload's variant's, while it runs)
PORTABLE_WORKLOADS=" bulk_update_100k insert_1_client insert_8_clients_100_orgs status_update_8_clients_one_org read_counts_big_org "
ORG0_FIRST=$((BIG + 1))   # org_0's 1,000 loads follow org_big's; org_k's follow at +1000 * k
WORK=$(mktemp -d /tmp/org_stats_bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

sql() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
now() { date +%s.%N; }
elapsed_ms() { echo "$1 $(now)" | awk '{printf "%.1f", ($2 - $1) * 1000}'; }
record() { echo "$1 $2 $3" >>"$WORK/samples"; }   # workload variant value

# Whether a variant counts (its measurements must stay exact and its transactions never fail).
counting() { [ "$1" = org_stats ] || [ "$1" = portable ]; }

# The seed data, in the current database.
seed() {
    # org_big: BIG loads (read and bulk workloads); org_0 .. org_99: 1,000 loads each.
    # Each load has one of 2 carriers (10 (status, carrier) keys), and org_big's are spread over
    # the year 2026.
    sql -c "CREATE TABLE seed AS
            SELECT i AS id, CASE WHEN i <= $BIG THEN 'org_big' ELSE 'org_' || ((i - $BIG - 1) / 1000) END AS workos_org_id,
                   (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[1 + i % 5] AS status,
                   (ARRAY['UPS', 'FedEx'])[1 + i / 5 % 2] AS carrier,
                   '2026-01-01 00:00+00'::timestamptz + i * (interval '365 days' / $BIG) AS created_at
              FROM generate_series(1, $BIG + 100000) i"
}

setup_database() {
    dropdb --if-exists "$PORTABLE_DB" >/dev/null
    createdb "$PORTABLE_DB"
    DB=$PORTABLE_DB
    sql -f ../portable/org_stats.sql -f handwritten_trigger.sql
    seed
    dropdb --if-exists "$MAIN_DB" >/dev/null
    createdb "$MAIN_DB"
    DB=$MAIN_DB
    sql -c "CREATE EXTENSION org_stats" -f handwritten_trigger.sql \
        -c "CREATE TABLE bench_floor AS SELECT c AS client, 0::bigint AS n FROM generate_series(0, 7) c" \
        -c "ALTER TABLE bench_floor ADD PRIMARY KEY (client)"
    seed
    # The read of groups() between two instants, timed inside the server (no round trip).
    sql -c "CREATE FUNCTION groups_us(days int, reads int, live boolean) RETURNS float8 LANGUAGE plpgsql AS \$\$
            DECLARE started timestamptz := clock_timestamp(); since timestamptz;
            BEGIN
                FOR i IN 1 .. reads LOOP
                    since := '2026-01-01 00:17:23+00'::timestamptz + (i * 7919 % (366 - days)) * interval '1 day';
                    IF live THEN
                        PERFORM ARRAY[status, carrier], count(*) FROM loads
                          WHERE workos_org_id = 'org_big' AND created_at >= since
                            AND created_at < since + days * interval '1 day' + interval '5 hours 3 minutes' GROUP BY 1;
                    ELSE
                        PERFORM * FROM org_stats.groups('lanes', 'org_big', since,
                                                        since + days * interval '1 day' + interval '5 hours 3 minutes');
                    END IF;
                END LOOP;
                RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / reads;
            END \$\$"
}

# Fresh `loads` with the seed data, then the variant's counting (not timed).
reset() {
    sql -c "SELECT org_stats.untrack(coalesce(tracking, table_name::text)) FROM org_stats.tracked_tables
             WHERE table_name::text = 'loads'" >/dev/null
    sql -c "DROP TABLE IF EXISTS loads; TRUNCATE hand_counts;
            CREATE TABLE loads (id bigserial PRIMARY KEY, workos_org_id text NOT NULL, status text NOT NULL, note text,
                                carrier text, created_at timestamptz);
            INSERT INTO loads (id, workos_org_id, status, carrier, created_at) SELECT * FROM seed;
            SELECT setval('loads_id_seq', $BIG + 100000);
            CREATE INDEX ON loads (workos_org_id);" >/dev/null
    sql -c "VACUUM ANALYZE loads"
    case $1 in
        handwritten) sql -c "SELECT hand_track('loads')" >/dev/null ;;
        org_stats | portable) sql -c "SELECT org_stats.track('loads')" >/dev/null ;;
    esac
    sql -c "CHECKPOINT"
}

# The tracking of loads by (status, carrier) and the hour of created_at.
track_lanes() {
    sql -c "SELECT org_stats.track('loads', name => 'lanes', group_by => ARRAY['status', 'carrier'],
                                   time_column => 'created_at', bucket => '1 hour')" >/dev/null
}

# org_stats must be exact after every workload.
check_exact() {
    local drift
    drift=$(sql -At -c "SELECT count(*) FROM org_stats.check_drift('loads'::regclass)")
    if [ "$drift" != 0 ]; then
        echo "org_stats drifted: $drift groups after $1" >&2
        sql -c "SELECT * FROM org_stats.check_drift('loads'::regclass) LIMIT 20" >&2
        exit 1
    fi
}

timed() { # workload variant sql
    local t0
    t0=$(now)
    sql -c "$3" >/dev/null
    record "$1" "$2" "$(elapsed_ms "$t0")"
}

pgbench_tps() { # workload variant clients script [pgbench options]
    local out failed
    out=$(pgbench -n -M prepared -c "$3" -j "$(( $3 < 2 ? 1 : 2 ))" -T "$DURATION" -D org0_first=$ORG0_FIRST \
              -f "pgbench/$4" "${@:5}" "$DB" 2>&1) || { echo "$out" >&2; ! counting "$2" || exit 1; }
    failed=$(echo "$out" | awk '/number of failed transactions/ {print $5}')
    failed=${failed:-0}
    record "$1" "$2" "$(echo "$out" | awk '/^tps = / {print $3; exit}')"
    record "$1.failed" "$2" "$failed"
    if counting "$2" && { [ "$failed" != 0 ] || echo "$out" | grep -q aborted; }; then
        echo "$2 transactions failed in $1:" >&2
        echo "$out" >&2
        exit 1
    fi
}

script_of() { # workload: its pgbench script
    case $1 in
        status_update_8_clients_one_org) echo status_update_one_org.sql ;;
        insert_8_clients_one_org) echo insert_one_org.sql ;;
    esac
}

# Runs a command while another session has run `listen` and stays connected, idle, receiving
# the notifications (not in a transaction: one held open, such as a pg_sleep, would keep vacuum
# from pruning the rows the writers update and slow them for that reason alone).
listening() { # listen-sql command...
    local listener
    { echo "$1;"; sleep $((DURATION + 2)); } | sql >/dev/null &
    listener=$!
    shift
    "$@"
    wait "$listener"
}

run_workload() { # workload variant
    local w=$1 v=$2 DB=$MAIN_DB   # every function it calls sees this variant's database
    if [ "$v" = portable ]; then
        [[ $PORTABLE_WORKLOADS == *" $w "* ]] || return 0
        DB=$PORTABLE_DB
    fi
    if [ "$w" = pooled_60_clients ]; then
        [ "$v" = handwritten ] || run_pooled "$v"   # against no counting only
        return
    fi
    reset "$v"
    case $w in
        bulk_update_100k)
            [ "$v" = handwritten ] && return   # quadratic: ~220 s, measured once in the issue
            timed "$w" "$v" "UPDATE loads SET status = 'VOID' WHERE id <= $BULK_BIG" ;;
        bulk_update_20k) timed "$w" "$v" "UPDATE loads SET status = 'VOID' WHERE id <= $BULK_SMALL" ;;
        bulk_insert_20k)
            timed "$w" "$v" "INSERT INTO loads (workos_org_id, status) SELECT 'org_new', 'Open' FROM generate_series(1, $BULK_SMALL)" ;;
        insert_1_client) pgbench_tps "$w" "$v" 1 insert_100_orgs.sql ;;
        insert_1_client_filtered | insert_1_client_summed)
            # The same inserts, counted by a tracking with a filter or with a sum: compared with
            # insert_1_client's plain tracking.
            [ "$v" = org_stats ] || return 0
            sql -c "SELECT org_stats.untrack('loads')" >/dev/null
            if [ "$w" = insert_1_client_filtered ]; then
                sql -c "SELECT org_stats.track('loads', filter => 'note IS NULL')" >/dev/null
            else
                sql -c "SELECT org_stats.track('loads', sum_columns => ARRAY['id'])" >/dev/null
            fi
            pgbench_tps "$w" "$v" 1 insert_100_orgs.sql ;;
        insert_8_clients_100_orgs) pgbench_tps "$w" "$v" 8 insert_100_orgs.sql ;;
        insert_8_clients_summed)
            [ "$v" = org_stats ] || return 0
            sql -c "SELECT org_stats.untrack('loads')" -c "SELECT org_stats.track('loads', sum_columns => ARRAY['id'])" >/dev/null
            pgbench_tps "$w" "$v" 8 insert_100_orgs.sql ;;
        insert_1_client_lanes_plain | insert_1_client_lanes | status_update_8_clients_lanes_plain | status_update_8_clients_lanes)
            # Loads with a carrier and a time, counted by (org, status), then by (org, status,
            # carrier) and the hour of created_at.
            [ "$v" = org_stats ] || return 0
            if [[ $w != *_plain ]]; then
                sql -c "SELECT org_stats.untrack('loads')" >/dev/null
                track_lanes
            fi
            case $w in
                insert_*) pgbench_tps "$w" "$v" 1 insert_lanes.sql ;;
                *) pgbench_tps "$w" "$v" 8 status_update_one_org.sql ;;
            esac ;;
        read_groups_1_day | read_groups_30_days | read_groups_365_days | read_group_by_30_days)
            # org_big's 300,000 loads over a year, 10 (status, carrier) keys, between two
            # instants: groups() against the live GROUP BY through an index on (org, time),
            # after recalculate() settled the counts.
            [ "$v" = org_stats ] || return 0
            local days
            days=$(echo "$w" | tr -dc 0-9)
            sql -c "CREATE INDEX ON loads (workos_org_id, created_at)" >/dev/null
            track_lanes
            # What the nightly recalculate() does: settles the hours into day and month totals;
            # then what autovacuum does, removing the index entries of the hours' old rows.
            timed settle_lanes "$v" "SELECT count(*) FROM org_stats.recalculate('lanes')"
            sql -c "VACUUM org_stats.counters"
            if [ "$w" = read_group_by_30_days ]; then
                pgbench_tps "$w" "$v" 8 read_group_by_range.sql -D "days=$days"
                record "${w}_us" "$v" "$(sql -At -c "SELECT groups_us($days, 200, true)")"
            else
                pgbench_tps "$w" "$v" 8 read_groups.sql -D "days=$days"
                record "${w}_us" "$v" "$(sql -At -c "SELECT groups_us($days, 200, false)")"
            fi ;;
        insert_plus_counter_update_1_client)
            [ "$v" = none ] || return 0   # a reference point, not a variant
            pgbench_tps "$w" "$v" 1 insert_plus_counter_update.sql ;;
        insert_plus_counter_update_8_clients)
            [ "$v" = none ] || return 0
            pgbench_tps "$w" "$v" 8 insert_plus_counter_update.sql ;;
        status_update_8_clients_one_org) pgbench_tps "$w" "$v" 8 status_update_one_org.sql ;;
        insert_8_clients_one_org) pgbench_tps "$w" "$v" 8 insert_one_org.sql ;;
        status_update_8_clients_one_org_notifying | insert_8_clients_one_org_notifying)
            # The same writes while the tracking notifies and a session listens: compared with
            # the rows above (org_stats without notifications).
            [ "$v" = org_stats ] || return 0
            sql -c "SELECT org_stats.set_notify('loads')" >/dev/null
            listening "SELECT org_stats.listen('loads')" pgbench_tps "$w" "$v" 8 "$(script_of "${w%_notifying}")" ;;
        status_update_8_clients_one_org_notify_trigger | insert_8_clients_one_org_notify_trigger)
            # The reference: what one would write by hand, NOTIFY in the writer's transaction.
            [ "$v" = org_stats ] || return 0
            sql -c "CREATE FUNCTION notify_org() RETURNS trigger LANGUAGE plpgsql AS
                        \$\$BEGIN PERFORM pg_notify('loads_changed', NEW.workos_org_id); RETURN NULL; END\$\$;
                    CREATE TRIGGER loads_notify AFTER INSERT OR UPDATE ON loads
                        FOR EACH ROW EXECUTE FUNCTION notify_org()" >/dev/null
            listening "LISTEN loads_changed" pgbench_tps "$w" "$v" 8 "$(script_of "${w%_notify_trigger}")"
            sql -c "DROP TRIGGER loads_notify ON loads; DROP FUNCTION notify_org()" >/dev/null ;;
        mixed_oltp_8_clients_10_orgs) pgbench_tps "$w" "$v" 8 mixed_oltp.sql ;;
        read_counts_big_org)
            case $v in
                none) pgbench_tps "$w" "$v" 8 read_group_by.sql ;;
                handwritten) pgbench_tps "$w" "$v" 8 read_handwritten.sql ;;
                org_stats | portable) pgbench_tps "$w" "$v" 8 read_org_stats.sql ;;
            esac ;;
        read_function_call_floor)
            [ "$v" = none ] || return 0
            pgbench_tps "$w" "$v" 8 read_function_floor.sql ;;
    esac
    if counting "$v"; then check_exact "$w"; fi
}

# backfill() and recalculate() of a 1M-row table against one GROUP BY pass over it.
run_maintenance() {
    sql -c "SELECT org_stats.untrack(table_name) FROM org_stats.tracked_tables WHERE table_name::text = 'million'" >/dev/null
    sql -c "DROP TABLE IF EXISTS million;
            CREATE TABLE million AS SELECT i AS id, 'org_' || (i % $MILLION_ORGS) AS workos_org_id,
                   (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[1 + i % 5] AS status
              FROM generate_series(1, $MILLION) i;
            CREATE INDEX ON million (workos_org_id);" >/dev/null
    sql -c "VACUUM ANALYZE million"
    sql -c "SELECT org_stats.track('million', backfill => false)" >/dev/null
    sql -c "CHECKPOINT"
    timed group_by_1m_rows org_stats "SELECT workos_org_id, status, count(*) FROM million GROUP BY 1, 2"
    timed backfill_1m_rows org_stats "CALL org_stats.backfill('million')"
    timed recalculate_1m_rows org_stats "SELECT count(*) FROM org_stats.recalculate('million')"
    local drift
    drift=$(sql -At -c "SELECT count(*) FROM org_stats.check_drift('million')")
    [ "$drift" = 0 ] || { echo "org_stats drifted after backfill/recalculate: $drift" >&2; exit 1; }
}

# The pooled workload: POOL_CLIENTS connections writing single rows (inserts and status changes,
# half each) over 2,000 orgs x 5 statuses, the way an application writes through a connection
# pool; then how many counter rows the groups have, how big the counters are and what reading the
# org with the most rows costs, before and after recalculate() folds them. In a database of its
# own, so the counters hold its rows only.
POOL_DB=org_stats_pool_bench
pool_sql() { psql -X -q -v ON_ERROR_STOP=1 -d "$POOL_DB" "$@"; }
pool_tps() { # workload variant insert-script status-script
    local out failed
    pool_sql -c "CHECKPOINT"
    out=$(pgbench -n -M prepared -c "$POOL_CLIENTS" -j 2 -T "$DURATION" \
              -f "pgbench/$3@1" -f "pgbench/$4@1" "$POOL_DB" 2>&1) || { echo "$out" >&2; exit 1; }
    failed=$(echo "$out" | awk '/^number of failed transactions/ {print $5; exit}')
    record "$1" "$2" "$(echo "$out" | awk '/^tps = / {print $3; exit}')"
    [ "${failed:-0}" = 0 ] || { echo "$1: $failed transactions failed" >&2; echo "$out" >&2; exit 1; }
}
run_pooled() { # variant
    local v=$1 fattest mean max
    dropdb --if-exists "$POOL_DB" >/dev/null
    createdb "$POOL_DB"
    pool_sql -c "CREATE EXTENSION org_stats" \
        -c "CREATE TABLE pooled (id bigserial PRIMARY KEY, workos_org_id text NOT NULL, status text NOT NULL)" \
        -c "INSERT INTO pooled (workos_org_id, status)
            SELECT 'org_' || (1 + i % 2000), (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled', 'Invoiced'])[1 + i % 5]
              FROM generate_series(1, 200000) i" \
        -c "VACUUM ANALYZE pooled" \
        -c "CREATE FUNCTION read_us(org text, reads int) RETURNS float8 LANGUAGE plpgsql AS \$\$
            DECLARE started timestamptz := clock_timestamp();
            BEGIN
                FOR i IN 1 .. reads LOOP PERFORM count(*) FROM org_stats.count_by_status('pooled', org); END LOOP;
                RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / reads;
            END \$\$"
    [ "$v" = none ] || pool_sql -c "SELECT org_stats.track('pooled')" >/dev/null
    pool_tps pooled_write "$v" pooled_insert.sql pooled_status.sql
    if [ "$v" = none ]; then
        pool_sql -c "CREATE TABLE pool_floor AS SELECT c AS client, k, 0::bigint AS n
                       FROM generate_series(0, $POOL_CLIENTS - 1) c, generate_series(0, 1) k" \
                 -c "ALTER TABLE pool_floor ADD PRIMARY KEY (client, k)"
        pool_tps pooled_floor none pooled_floor_insert.sql pooled_floor_status.sql
        # org_stats' triggers alone: a tracking no row passes, so they fire and count nothing.
        pool_sql -c "SELECT org_stats.track('pooled', filter => 'id < 0')" >/dev/null
        pool_tps pooled_triggers_only none pooled_insert.sql pooled_status.sql
        return
    fi
    [ "$(pool_sql -At -c "SELECT count(*) FROM org_stats.check_drift('pooled')")" = 0 ] ||
        { echo "org_stats drifted in the pooled workload" >&2; exit 1; }
    read -r mean max < <(pool_sql -At -F ' ' -c "SELECT avg(k), max(k) FROM (SELECT count(*) AS k FROM org_stats.counters
                                                    GROUP BY org_id, table_id, status) g")
    record pooled_rows_mean org_stats "$mean"
    record pooled_rows_max org_stats "$max"
    record pooled_counters_kb org_stats "$(pool_sql -At -c "SELECT pg_total_relation_size('org_stats.counters') / 1024")"
    fattest=$(pool_sql -At -c "SELECT org_id FROM org_stats.counters GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")
    record pooled_read_fattest_us org_stats "$(pool_sql -At -c "SELECT read_us('$fattest', 20000)")"
    pool_sql -c "SELECT count(*) FROM org_stats.recalculate('pooled')" -c "VACUUM FULL org_stats.counters" >/dev/null
    record pooled_read_folded_us org_stats "$(pool_sql -At -c "SELECT read_us('$fattest', 20000)")"
    record pooled_counters_folded_kb org_stats "$(pool_sql -At -c "SELECT pg_total_relation_size('org_stats.counters') / 1024")"
}

# ORG_STATS_BENCH_WORKLOADS="w1 w2" measures only those workloads (and no maintenance).
ALL_WORKLOADS=(bulk_update_100k bulk_update_20k bulk_insert_20k insert_1_client insert_1_client_filtered
           insert_1_client_summed insert_plus_counter_update_1_client
           insert_8_clients_100_orgs insert_8_clients_summed insert_plus_counter_update_8_clients
           insert_1_client_lanes_plain insert_1_client_lanes status_update_8_clients_lanes_plain
           status_update_8_clients_lanes read_groups_1_day read_groups_30_days read_groups_365_days
           read_group_by_30_days status_update_8_clients_one_org
           insert_8_clients_one_org status_update_8_clients_one_org_notifying
           status_update_8_clients_one_org_notify_trigger insert_8_clients_one_org_notifying
           insert_8_clients_one_org_notify_trigger mixed_oltp_8_clients_10_orgs read_counts_big_org read_function_call_floor
           pooled_60_clients)
read -r -a WORKLOADS <<<"${ORG_STATS_BENCH_WORKLOADS:-${ALL_WORKLOADS[*]}}"

setup_database
: >"$WORK/samples"
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS"
    for w in "${WORKLOADS[@]}"; do
        for v in "${VARIANTS[@]}"; do
            run_workload "$w" "$v"
        done
    done
    [ -n "${ORG_STATS_BENCH_WORKLOADS:-}" ] || run_maintenance
done

# ORG_STATS_BENCH_SAMPLES=FILE keeps the raw samples (workload variant value, one per line).
[ -z "${ORG_STATS_BENCH_SAMPLES:-}" ] || cp "$WORK/samples" "$ORG_STATS_BENCH_SAMPLES"
# Ratios need every variant: a subset leaves the report to its caller.
[ -z "${ORG_STATS_BENCH_VARIANTS:-}" ] || exit 0
python3 report.py "$WORK/samples" "$ROUNDS" "$DURATION" "$SMOKE" "$BIG" "$MILLION" >"$RESULTS"
# The main results quote the latest run on each other major (ratios compare within one run only).
if [ $SMOKE = 0 ] && [ "$(basename "$RESULTS")" = RESULTS.md ]; then
    for other in "$(dirname "$RESULTS")"/RESULTS-pg*.md; do
        [ -e "$other" ] || continue
        printf '\n## The same benchmark on PostgreSQL %s\n\n' "$(basename "$other" .md | sed 's/RESULTS-pg//')" >>"$RESULTS"
        sed -n '/^Run by/,/^Targets met/p' "$other" >>"$RESULTS"
    done
fi
cat "$RESULTS"
