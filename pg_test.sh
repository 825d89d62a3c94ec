#!/usr/bin/env bash
# org_stats test, demo and benchmark driver. On a fresh Debian 12 machine (root or a sudo user):
#   ./pg_test.sh          every test: pgrx unit tests, pg_regress, isolation specs, randomized model test
#   ./pg_test.sh demo     builds, starts a throwaway cluster, loads sample data, prints counts and timings
#   ./pg_test.sh bench    release build, cluster with fsync on, the benchmark; writes bench/RESULTS.md
# It installs what is missing (Debian packages, cargo-pgrx 0.18.0), builds and installs the extension,
# and starts and stops its own PostgreSQL 15 cluster under /tmp.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGXS_TEST=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test
export PATH="$PGBIN:$PATH"
PGRX_VERSION=0.18.0
PORT=${ORG_STATS_TEST_PORT:-54329}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '\n== %s\n' "$*"; }

install_prerequisites() {
    local packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
                    sudo build-essential libclang-dev clang pkg-config libssl-dev libreadline-dev zlib1g-dev
                    bison flex ca-certificates python3)
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Debian starts a default cluster on 5432; the tests use their own, so leave it alone.
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg$PG_MAJOR" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
    fi
}

install_extension() {
    log "building and installing org_stats ($1)"
    if [ "$1" = release ]; then
        cargo pgrx install --release --pg-config "$PG_CONFIG" ${SUDO:+--sudo}
    else
        cargo pgrx install --pg-config "$PG_CONFIG" ${SUDO:+--sudo}
    fi
}

# A throwaway cluster on a private port and socket directory, stopped on exit.
CLUSTER=""
start_cluster() {
    CLUSTER=$(mktemp -d /tmp/org_stats_cluster.XXXXXX)
    chmod 755 "$CLUSTER"
    $SUDO chown postgres "$CLUSTER"
    trap stop_cluster EXIT
    $SUDO runuser -u postgres -- "$PGBIN/initdb" -D "$CLUSTER/data" -A trust -U postgres >/dev/null
    cat >>"$CLUSTER/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$CLUSTER'
fsync = ${ORG_STATS_FSYNC:-off}
shared_buffers = ${ORG_STATS_SHARED_BUFFERS:-128MB}
max_connections = 100
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.host = '$CLUSTER'
deadlock_timeout = 100ms
CONF
    # Without RUST_BACKTRACE, error reports carry no backtrace and test output is deterministic.
    $SUDO env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE runuser -u postgres -- \
        "$PGBIN/pg_ctl" -D "$CLUSTER/data" -l "$CLUSTER/server.log" -w start >/dev/null
    export PGHOST=$CLUSTER PGPORT=$PORT PGUSER=postgres
}

stop_cluster() {
    if [ -n "$CLUSTER" ] && [ -d "$CLUSTER/data" ]; then
        $SUDO runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CLUSTER/data" -m fast -w stop >/dev/null 2>&1 || true
        $SUDO rm -rf "$CLUSTER"
    fi
}

PASSED=0
# pg_regress / pg_isolation_regress over a schedule; results go to a scratch directory.
regress() { # runner inputdir
    local runner=$1 dir=$2 out
    out=$(mktemp -d /tmp/org_stats_results.XXXXXX)
    chmod 777 "$out"
    if ! "$runner" --host="$PGHOST" --port="$PGPORT" --user=postgres --inputdir="$dir" --outputdir="$out" \
            --dbname=org_stats_test --schedule="$dir/schedule"; then
        cat "$out/regression.diffs" 2>/dev/null || true
        echo "org_stats: $PASSED passed, 1 failed"
        return 1
    fi
    PASSED=$((PASSED + $(grep -c '^test: ' "$dir/schedule")))
    rm -rf "$out"
}

run_tests() {
    log "pgrx unit tests"
    cargo pgrx test pg$PG_MAJOR --runas postgres --pgdata "/tmp/org_stats_pgrx_data" 2>&1 | tee /tmp/org_stats_pgrx_test.log
    PASSED=$((PASSED + $(grep -o '[0-9]* passed' /tmp/org_stats_pgrx_test.log | tail -1 | cut -d' ' -f1)))
    install_extension debug
    start_cluster
    log "pg_regress: SQL surface"
    regress "$PGXS_TEST/regress/pg_regress" tests
    log "pg_isolation_regress: concurrent sessions"
    regress "$PGXS_TEST/isolation/pg_isolation_regress" tests/isolation
    log "integration tests: randomized model, maintenance under write load, pg_cron"
    ORG_STATS_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
        cargo test --release --manifest-path tests/integration/Cargo.toml --tests -- --nocapture --test-threads=1 \
        2>&1 | tee /tmp/org_stats_integration.log
    PASSED=$((PASSED + $(grep -o '^test result: ok. [0-9]* passed' /tmp/org_stats_integration.log | awk '{s += $4} END {print s}')))
    log "benchmark smoke run (tiny sizes; checks it runs and org_stats stays exact)"
    bench/run.sh --smoke /tmp/org_stats_bench_smoke.md
    PASSED=$((PASSED + 1))
    log "all suites green"
    echo "org_stats: $PASSED passed, 0 failed"
}

run_bench() {
    install_extension release
    ORG_STATS_FSYNC=on ORG_STATS_SHARED_BUFFERS=1GB start_cluster
    bench/run.sh "$ROOT/bench/RESULTS.md"
}

run_demo() {
    install_extension debug
    start_cluster
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -f tests/demo.sql
}

install_prerequisites
case "${1:-test}" in
    test) run_tests ;;
    demo) run_demo ;;
    bench) run_bench ;;
    *) echo "usage: $0 [test|demo|bench]" >&2; exit 2 ;;
esac
