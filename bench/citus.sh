#!/usr/bin/env bash
# Write throughput and read latency of org_stats on a Citus cluster, against its coordinator
# (PGHOST, PGPORT, PGUSER, optionally PGDATABASE set; Citus set up with its workers there, and
# org_stats installed on every node). Citus is not in Debian, so
# ./pg_test.sh does not run this; README "Scaling out with Citus" quotes its output.
#
# Two tables distributed by workos_org_id and co-located, 200 orgs of 500 rows each: one tracked,
# one not. Alternated rounds of pgbench (8 clients), medians reported:
#   single-row INSERT and status UPDATE through the coordinator, on each table;
#   one org's counts: count_by_status() against the GROUP BY it replaces.
# Ends by comparing every org's counts with a GROUP BY.
#
#   bench/citus.sh [ROUNDS] [SECONDS]
set -euo pipefail
ROUNDS=${1:-3} SECONDS_EACH=${2:-10} CLIENTS=8
DB=${PGDATABASE:-postgres}
WORK=$(mktemp -d /tmp/org_stats_citus_bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
sql() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

sql -c "DROP TABLE IF EXISTS counted, plain" -c "CREATE EXTENSION IF NOT EXISTS org_stats"
for t in counted plain; do
    sql -c "CREATE TABLE $t (id bigserial, workos_org_id text NOT NULL, status text, PRIMARY KEY (workos_org_id, id))" \
        -c "SELECT create_distributed_table('$t', 'workos_org_id', colocate_with => CASE WHEN '$t' = 'counted' THEN 'default' ELSE 'counted' END)" >/dev/null \
        -c "INSERT INTO $t (workos_org_id, status) SELECT 'org' || (i % 200), (ARRAY['Open','Delivered','Cancelled'])[1 + i % 3] FROM generate_series(1, 100000) i"
done
sql -c "SELECT org_stats.track('counted')" -c "VACUUM ANALYZE" >/dev/null

for t in counted plain; do
    echo "\\set org random(0, 199)
INSERT INTO $t (workos_org_id, status) VALUES ('org' || :org::text, 'Open');" >"$WORK/insert_$t.sql"
    # Row i of the initial load has id i and belongs to org i % 200.
    echo "\\set i random(1, 100000)
\\set org :i % 200
UPDATE $t SET status = CASE WHEN status = 'Open' THEN 'Delivered' ELSE 'Open' END
 WHERE workos_org_id = ('org' || :org::text) AND id = :i;" >"$WORK/update_$t.sql"
done
echo "\\set org random(0, 199)
SELECT * FROM org_stats.count_by_status('counted', 'org' || :org::text);" >"$WORK/read_org_stats.sql"
echo "\\set org random(0, 199)
SELECT status, count(*) FROM counted WHERE workos_org_id = ('org' || :org::text) GROUP BY status;" >"$WORK/read_group_by.sql"

run() { # script clients -> "tps latency_ms"
    pgbench -n -d "$DB" -c "$2" -j "$2" -T "$SECONDS_EACH" -f "$WORK/$1.sql" 2>/dev/null |
        awk '/^latency average/ {l = $4} /^tps/ {t = $3} END {printf "%.0f %.2f\n", t, l}'
}
for round in $(seq "$ROUNDS"); do
    for w in insert_plain insert_counted update_plain update_counted; do
        echo "$w $(run "$w" "$CLIENTS")" >>"$WORK/samples"
    done
    for w in read_group_by read_org_stats; do
        echo "$w $(run "$w" 1)" >>"$WORK/samples"
    done
done

median() { grep "^$1 " "$WORK/samples" | awk -v c="$2" '{print $c}' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo "| workload ($ROUNDS rounds of ${SECONDS_EACH} s, medians) | not counted | counted by org_stats | ratio |"
echo "|---|---|---|---|"
for w in insert update; do
    p=$(median "${w}_plain" 2) c=$(median "${w}_counted" 2)
    echo "| single-row ${w^^}, $CLIENTS clients through the coordinator (TPS) | $p | $c | $(awk -v p="$p" -v c="$c" 'BEGIN {printf "%.2fx", c / p}') |"
done
g=$(median read_group_by 3) o=$(median read_org_stats 3)
echo "| one org's counts, 1 client (ms per read): GROUP BY of 500 rows vs count_by_status() | $g | $o | $(awk -v g="$g" -v o="$o" 'BEGIN {printf "%.2fx", o / g}') |"

bad=0
for o in $(seq 0 199); do
    counted=$(sql -At -c "SELECT status, count FROM org_stats.count_by_status('counted', 'org$o')")
    actual=$(sql -At -c "SELECT status, count(*) FROM counted WHERE workos_org_id = 'org$o' GROUP BY 1 ORDER BY 1")
    [ "$counted" = "$actual" ] || bad=$((bad + 1))
done
echo
echo "Orgs whose counts differ from a GROUP BY after the run: $bad"
[ "$bad" = 0 ]
