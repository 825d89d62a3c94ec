#!/usr/bin/env bash
# org_stats test, demo, benchmark and packaging driver. On a fresh Debian 12 machine (root or a
# sudo user):
#   ./pg_test.sh               every test on this machine's PostgreSQL (15), Citus' included
#                              where Citus is installed (the contributor's loop)
#   ./pg_test.sh all           every test on every supported major (15, 17, 18), then a Debian
#                              package per major, each installed and checked in a clean chroot
#                              (what CI runs)
#   ./pg_test.sh --pg 17       every test on one major; ORG_STATS_PG="15 18" for several
#   ./pg_test.sh demo          builds, starts a throwaway cluster, loads sample data, prints counts
#   ./pg_test.sh bench         release build, cluster with fsync on, the benchmark: bench/RESULTS.md
#   ORG_STATS_AB="REV_A REV_B" ./pg_test.sh ab
#                              the write and read workloads of the benchmark on two revisions'
#                              release builds, alternated, a fresh cluster each (a change that
#                              should not change speed, such as a restructuring)
#   ./pg_test.sh package       dist/postgresql-<major>-org-stats_<version>_<arch>.deb per major,
#                              each installed and checked in a clean chroot without Rust
# PostgreSQL 15 comes from this machine's Debian 12 packages. 17 and 18 come from Debian's
# trixie and forky suites, in chroots made with debootstrap from the archive this machine's apt
# uses (kept under ORG_STATS_CHROOTS, default /var/cache/org_stats/chroots, and reused), with this
# machine's Rust toolchain and cargo-pgrx bind-mounted into them. The script installs what is
# missing (Debian packages, cargo-pgrx 0.18.0), builds and installs the extension, and starts and
# stops its own clusters under /tmp.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
SUPPORTED_MAJORS="15 17 18"
PGRX_VERSION=0.18.0
PORT=${ORG_STATS_TEST_PORT:-54329}
CHROOTS=${ORG_STATS_CHROOTS:-/var/cache/org_stats/chroots}
VERSION=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

log() { printf '\n== %s\n' "$*"; }
die() { echo "pg_test.sh: $*" >&2; exit 2; }

# --- Majors and where each is built ----------------------------------------------------------

# The Debian suite whose archive ships each supported major.
suite_of() {
    case $1 in
        15) echo bookworm ;;
        17) echo trixie ;;
        18) echo forky ;;
        *) die "PostgreSQL $1 is not supported (supported: $SUPPORTED_MAJORS)" ;;
    esac
}

# Whether this system (the host, or a chroot this script entered) is the suite of major $1.
native() {
    [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" = "$(suite_of "$1")" ]
}

use_major() {
    PG_MAJOR=$1
    PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
    PG_CONFIG=$PGBIN/pg_config
    PGXS_TEST=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test
    export PATH="$PGBIN:$PATH"
    # One target directory per major: the bindings pgrx generates differ between them.
    export CARGO_TARGET_DIR=$ROOT/target/pg$PG_MAJOR
}

# --- Chroots for the majors this machine's own suite does not ship ---------------------------

# The archive this machine's apt uses, read from its configuration (deb822 or one-line style).
archive_uri() {
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$uri" ] || die "no Debian archive found in this machine's apt configuration"
    echo "$uri"
}

# What each kind of chroot holds beyond a minimal Debian: "clean" is a stock Debian with that
# PostgreSQL (the packages are tested there); "build" adds what building and testing need.
chroot_packages() { # kind major
    case $1 in
        clean) echo "postgresql-$2" ;;
        build) echo "postgresql-$2 postgresql-server-dev-$2 postgresql-$2-cron build-essential libclang-dev \
                     clang pkg-config ca-certificates sudo python3" ;;
    esac
}

# Elapsed seconds per phase, printed at the end, so slow phases show.
PHASES=()
PHASE_NAME=""
PHASE_START=0
phase() { # name (empty: end the current phase)
    local now
    now=$(date +%s)
    [ -z "$PHASE_NAME" ] || PHASES+=("$(printf '%5d s' $((now - PHASE_START)))  $PHASE_NAME")
    PHASE_NAME=$1
    PHASE_START=$now
    [ -z "$1" ] || log "$1"
}
print_phases() { # title
    phase ""
    [ ${#PHASES[@]} -gt 0 ] || return 0
    echo
    echo "$1, elapsed per phase:"
    printf '  %s\n' "${PHASES[@]}"
    PHASES=()
}

MOUNTED=()
mount_chroot() { # dir [with-toolchain]
    local dir=$1 path
    unmount_below "$dir"
    $SUDO mount -t proc proc "$dir/proc"
    $SUDO mount --rbind /dev "$dir/dev"
    $SUDO mount --make-rslave "$dir/dev"
    MOUNTED+=("$dir/proc" "$dir/dev")
    if [ "${2:-}" = with-toolchain ]; then
        for path in "$RUSTUP_HOME" "$CARGO_HOME" "$ROOT"; do
            $SUDO mkdir -p "$dir$path"
            $SUDO mount --bind "$path" "$dir$path"
            MOUNTED+=("$dir$path")
        done
    fi
}

# Unmounts whatever is still mounted below a chroot: a run that was killed leaves its bind mounts
# behind, mounting over them fails once their source is gone, and rm would follow them into /dev
# or the toolchain.
unmount_below() { # dir
    local dir mounts
    dir=$(realpath -m "$1")
    mounts=$(awk -v d="$dir/" 'index($2 "/", d) == 1 {print $2}' /proc/self/mounts | sort -r)
    for m in $mounts; do $SUDO umount -lR "$m" 2>/dev/null || true; done
    if awk -v d="$dir/" 'index($2 "/", d) == 1 {found = 1} END {exit !found}' /proc/self/mounts; then
        die "could not unmount everything below $dir"
    fi
}

remove_chroot() { # dir
    unmount_below "$1"
    $SUDO rm -rf "$1"
}

unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        $SUDO umount -R "${MOUNTED[$i]}" 2>/dev/null || $SUDO umount -lR "${MOUNTED[$i]}" 2>/dev/null || true
    done
    MOUNTED=()
}

in_chroot() { # dir command...
    local dir=$1
    shift
    $SUDO chroot "$dir" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        RUSTUP_HOME="$RUSTUP_HOME" CARGO_HOME="$CARGO_HOME" \
        PATH="$CARGO_HOME/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$@"
}

# Makes (or reuses) $CHROOTS/<suite>-<kind> for major $2. A chroot is reused only if a stamp
# naming exactly what it was made with is there, so an interrupted or outdated one is remade.
ensure_chroot() { # kind major
    local kind=$1 major=$2 suite dir stamp script=""
    suite=$(suite_of "$major")
    dir=$CHROOTS/$suite-$kind
    stamp="$suite $kind $(chroot_packages "$kind" "$major")"
    if [ "$($SUDO cat "$dir/.org_stats_chroot" 2>/dev/null)" = "$stamp" ]; then
        CHROOT=$dir
        return
    fi
    phase "making the $kind chroot of $suite for PostgreSQL $major (a few minutes, once)"
    remove_chroot "$dir"
    remove_chroot "$dir.new"
    $SUDO mkdir -p "$CHROOTS"
    if [ "$kind" = build ]; then
        ensure_chroot clean "$major"
        $SUDO cp -a "$CHROOT" "$dir.new"
        $SUDO rm -f "$dir.new/.org_stats_chroot"
    else
        command -v debootstrap >/dev/null || install_debian_packages debootstrap
        # Debian's debootstrap has no script for suites newer than itself; sid's fits them.
        [ -e "/usr/share/debootstrap/scripts/$suite" ] || script=/usr/share/debootstrap/scripts/sid
        $SUDO debootstrap --variant=minbase "$suite" "$dir.new" "$(archive_uri)" $script >/dev/null
        # A suite past its release's Valid-Until (forky on a snapshot archive) must still install;
        # installing PostgreSQL must neither start a server nor make a default cluster.
        echo 'Acquire::Check-Valid-Until "false";' | $SUDO tee "$dir.new/etc/apt/apt.conf.d/99org-stats" >/dev/null
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$dir.new/usr/sbin/policy-rc.d" >/dev/null
        $SUDO chmod 755 "$dir.new/usr/sbin/policy-rc.d"
        $SUDO mkdir -p "$dir.new/etc/postgresql-common"
        echo 'create_main_cluster = false' | $SUDO tee "$dir.new/etc/postgresql-common/createcluster.conf" >/dev/null
    fi
    mount_chroot "$dir.new"
    # shellcheck disable=SC2046 # the package list splits into words
    in_chroot "$dir.new" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $(chroot_packages "$kind" "$major") >/dev/null"
    unmount_all
    echo "$stamp" | $SUDO tee "$dir.new/.org_stats_chroot" >/dev/null
    $SUDO mv "$dir.new" "$dir"
    CHROOT=$dir
}

# Runs this script for one major inside the build chroot of its suite.
run_in_chroot() { # major commands...
    local major=$1 status=0
    shift
    ensure_chroot build "$major"
    phase "PostgreSQL $major, in its chroot: $*"
    mount_chroot "$CHROOT" with-toolchain
    in_chroot "$CHROOT" ORG_STATS_IN_CHROOT=1 "$ROOT/pg_test.sh" --pg "$major" "$@" || status=$?
    unmount_all
    phase ""
    return $status
}

# --- Prerequisites ----------------------------------------------------------------------------

install_debian_packages() {
    log "installing Debian packages: $*"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

install_prerequisites() {
    local packages=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-cron
                    sudo build-essential libclang-dev clang pkg-config ca-certificates python3)
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # Debian starts a default cluster on 5432; the tests use their own, so leave it alone.
    [ ${#missing[@]} -eq 0 ] || install_debian_packages "${missing[@]}"
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
        # libssl-dev only while cargo-pgrx builds; chroots run the host's binary.
        dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q "install ok installed" ||
            install_debian_packages libssl-dev
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg$PG_MAJOR" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
    fi
}

install_extension() {
    log "building and installing org_stats ($1, PostgreSQL $PG_MAJOR)"
    if [ "$1" = release ]; then
        cargo pgrx install --release --pg-config "$PG_CONFIG" ${SUDO:+--sudo}
    else
        cargo pgrx install --pg-config "$PG_CONFIG" ${SUDO:+--sudo}
    fi
}

# --- Clusters ---------------------------------------------------------------------------------

# Throwaway clusters on private ports and socket directories, stopped on exit: the main one
# (org_stats, pg_cron) and, for the logical-replication test, a publisher.
CLUSTERS=()
cleanup() {
    stop_clusters
    unmount_all
}
trap cleanup EXIT

new_cluster() { # directory port extra-settings
    local dir=$1 port=$2
    mkdir -p "$dir"
    chmod 755 "$dir"
    $SUDO chown postgres "$dir"
    CLUSTERS+=("$dir")
    $SUDO runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = ${ORG_STATS_FSYNC:-off}
shared_buffers = ${ORG_STATS_SHARED_BUFFERS:-128MB}
max_connections = 100
deadlock_timeout = 100ms
max_prepared_transactions = ${ORG_STATS_PREPARED_TRANSACTIONS:-10}
$3
CONF
    # Without RUST_BACKTRACE, error reports carry no backtrace and test output is deterministic.
    $SUDO env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE runuser -u postgres -- \
        "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

start_cluster() {
    local dir
    dir=$(mktemp -d /tmp/org_stats_cluster.XXXXXX)
    new_cluster "$dir" "$PORT" "shared_preload_libraries = 'pg_cron, org_stats'
cron.database_name = 'postgres'
cron.host = '$dir'"
    export PGHOST=$dir PGPORT=$PORT PGUSER=postgres
    export ORG_STATS_PGBIN=$PGBIN ORG_STATS_PGDATA=$dir/data ORG_STATS_PGLOG=$dir/server.log
}

start_publisher() {
    local dir
    dir=$(mktemp -d /tmp/org_stats_publisher.XXXXXX)
    new_cluster "$dir" "$((PORT + 1))" "wal_level = logical"
    export ORG_STATS_PUBLISHER_DSN="host=$dir port=$((PORT + 1)) user=postgres dbname=postgres"
}

stop_clusters() {
    for dir in "${CLUSTERS[@]}"; do
        $SUDO runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
        $SUDO rm -rf "$dir"
    done
    CLUSTERS=()
}

# --- The test suite on one major --------------------------------------------------------------

# The install script of the current version is generated by pgrx; the committed copy in sql/ is
# what upgrades start from, so the two must not differ (but for pgrx's comments naming source
# lines). Committed older versions and upgrade scripts are installed next to it.
check_committed_sql() {
    local extdir
    extdir=$("$PG_CONFIG" --sharedir)/extension
    if ! diff -u <(grep -v '^-- ' "sql/org_stats--$VERSION.sql") <(grep -v '^-- ' "$extdir/org_stats--$VERSION.sql"); then
        echo "sql/org_stats--$VERSION.sql differs from the generated install script (above)." >&2
        echo "A changed SQL surface needs a new version and an upgrade script sql/org_stats--A--B.sql." >&2
        fail
    fi
    for script in sql/org_stats--*.sql; do
        [ "$script" = "sql/org_stats--$VERSION.sql" ] || $SUDO cp "$script" "$extdir/"
    done
    PASSED=$((PASSED + 1))
}

PASSED=0
fail() {
    echo "org_stats on PostgreSQL $PG_MAJOR: $PASSED passed, 1 failed"
    exit 1
}

# pg_regress / pg_isolation_regress over a schedule, with the runner's connection options;
# results go to a scratch directory.
regress() { # runner inputdir schedule options...
    local runner=$1 dir=$2 schedule=$3 out
    shift 3
    out=$(mktemp -d /tmp/org_stats_results.XXXXXX)
    chmod 777 "$out"
    if ! "$runner" --inputdir="$dir" --outputdir="$out" --schedule="$schedule" "$@"; then
        cat "$out/regression.diffs" 2>/dev/null || true
        fail
    fi
    PASSED=$((PASSED + $(grep -c '^test: ' "$schedule")))
    rm -rf "$out"
}

# The portable edition's runs of the behaviours (tests/portable_schedule), the interleavings
# (tests/isolation/portable_schedule) and the randomized model: its own cluster, which loads no
# library, and databases owned by an ordinary role that installs and uses it (made beforehand:
# pg_regress would set lc_messages in them, which only a superuser may).
portable_regress() {
    local dir port=$((PORT + 2)) database setting sql=()
    dir=$(mktemp -d /tmp/org_stats_portable.XXXXXX)
    new_cluster "$dir" "$port" ""
    # CREATEROLE, as managed providers' admin roles have: tests/sql/portable_privileges.sql makes roles.
    sql+=(-c "CREATE ROLE org_stats_app LOGIN CREATEROLE")
    for database in org_stats_portable org_stats_portable_isolation org_stats_portable_model; do
        sql+=(-c "CREATE DATABASE $database OWNER org_stats_app")
        for setting in "lc_messages TO 'C'" "lc_monetary TO 'C'" "lc_numeric TO 'C'" "lc_time TO 'C'" \
                       "bytea_output TO 'hex'" "timezone_abbreviations TO 'Default'"; do
            sql+=(-c "ALTER DATABASE $database SET $setting")
        done
    done
    psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres "${sql[@]}" || fail
    # An upgrade in place (tests/sql/portable_upgrade.sql): the regress database first gets the
    # last published script and a tracking written to under it; setup_portable installs this one.
    psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U org_stats_app -d org_stats_portable \
        -f "$PREVIOUS_PORTABLE" -f tests/sql/portable_upgrade_setup.sql >/dev/null || fail
    regress "$PGXS_TEST/regress/pg_regress" tests tests/portable_schedule --use-existing \
        --host="$dir" --port="$port" --user=org_stats_app --dbname=org_stats_portable
    for database in org_stats_portable_isolation org_stats_portable_model; do
        psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U org_stats_app -d "$database" \
            -f portable/org_stats.sql || fail
    done
    regress "$PGXS_TEST/isolation/pg_isolation_regress" tests/isolation tests/isolation/portable_schedule \
        --use-existing --host="$dir" --port="$port" --user=org_stats_app --dbname=org_stats_portable_isolation
    if ! ORG_STATS_EDITION=portable \
        ORG_STATS_DSN="host=$dir port=$port user=org_stats_app dbname=org_stats_portable_model" \
        cargo test --release --manifest-path tests/integration/Cargo.toml --target-dir "$CARGO_TARGET_DIR/integration" \
            --test randomized_invariant -- --nocapture 2>&1 | tee /tmp/org_stats_portable_model.log; then
        fail
    fi
    PASSED=$((PASSED + 1))
}

run_tests() {
    phase "layers: no module imports from a layer above its own, no loop (src/lib.rs, tests/layers.py)"
    python3 tests/layers.py || fail
    PASSED=$((PASSED + 1))
    phase "cargo fmt and cargo clippy -D warnings (PostgreSQL $PG_MAJOR)"
    cargo fmt --check || fail
    cargo clippy --all-targets --no-default-features --features "pg$PG_MAJOR pg_test" -- -D warnings || fail
    PASSED=$((PASSED + 1))
    phase "pgrx unit tests (PostgreSQL $PG_MAJOR)"
    cargo pgrx test "pg$PG_MAJOR" --runas postgres --pgdata "/tmp/org_stats_pgrx_data" 2>&1 | tee /tmp/org_stats_pgrx_test.log
    PASSED=$((PASSED + $(grep -o '[0-9]* passed' /tmp/org_stats_pgrx_test.log | tail -1 | cut -d' ' -f1)))
    phase "building and installing org_stats (debug, PostgreSQL $PG_MAJOR)"
    install_extension debug
    phase "committed install script matches the generated one"
    check_committed_sql
    start_cluster
    start_publisher
    phase "pg_regress: SQL surface"
    regress "$PGXS_TEST/regress/pg_regress" tests tests/schedule \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=org_stats_test
    phase "pg_isolation_regress: concurrent sessions"
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS org_stats_isolation" \
        -c "CREATE DATABASE org_stats_isolation" || fail
    psql -X -q -v ON_ERROR_STOP=1 -d org_stats_isolation -c "CREATE EXTENSION org_stats" || fail
    regress "$PGXS_TEST/isolation/pg_isolation_regress" tests/isolation tests/isolation/schedule --use-existing \
        --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=org_stats_isolation
    phase "the examples of README.md and docs/ print what they show (tests/docs.py)"
    python3 tests/docs.py || fail
    PASSED=$((PASSED + 1))
    phase "integration tests: randomized model, maintenance under load, pg_cron, crash, dump/restore, upgrade, memory, replication, notifications, Citus (when installed)"
    if ! ORG_STATS_DSN="host=$PGHOST port=$PGPORT user=postgres dbname=postgres" \
        cargo test --release --manifest-path tests/integration/Cargo.toml --target-dir "$CARGO_TARGET_DIR/integration" \
            --tests -- --nocapture --test-threads=1 2>&1 | tee /tmp/org_stats_integration.log; then
        fail
    fi
    PASSED=$((PASSED + $(grep -o '^test result: ok. [0-9]* passed' /tmp/org_stats_integration.log | awk '{s += $4} END {print s}')))
    # The Citus test passes without Citus installed, saying so; the summary says it too.
    SKIPPED=$(grep -c 'citus: SKIPPED' /tmp/org_stats_integration.log || true)
    phase "the portable edition, installed and used by an ordinary role in a cluster without org_stats' library: regress, isolation, randomized model"
    portable_regress
    phase "benchmark smoke run (tiny sizes; checks it runs and org_stats stays exact)"
    bench/run.sh --smoke /tmp/org_stats_bench_smoke.md || fail
    PASSED=$((PASSED + 1))
    stop_clusters
    echo "org_stats on PostgreSQL $PG_MAJOR: $PASSED passed, 0 failed$([ "$SKIPPED" = 0 ] || echo " (the Citus tests skipped: Citus is not installed)")"
}

# --- A/B benchmark of two revisions -----------------------------------------------------------

# The workloads an A/B run measures: writes (bulk and single-row, 1 and 8 clients, pooled) and
# the read of one org.
AB_WORKLOADS="bulk_update_100k bulk_update_20k bulk_insert_20k insert_1_client insert_8_clients_100_orgs
              status_update_8_clients_one_org insert_8_clients_one_org read_counts_big_org pooled_60_clients"

compare_builds() {
    local revs rev work round so lib
    read -r -a revs <<<"${ORG_STATS_AB:?ORG_STATS_AB names the two revisions to compare}"
    [ ${#revs[@]} = 2 ] || die "ORG_STATS_AB names two revisions"
    work=$(mktemp -d /tmp/org_stats_ab.XXXXXX)
    lib=$("$PG_CONFIG" --pkglibdir)
    for rev in "${revs[@]}"; do
        phase "release build of $rev"
        git worktree add -f --detach "$work/$rev" "$rev" >/dev/null
        (cd "$work/$rev" && CARGO_TARGET_DIR=$ROOT/target/ab cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null)
        cp "$ROOT/target/ab/release/org_stats-pg$PG_MAJOR$lib/org_stats.so" "$work/$rev.so"
        git worktree remove --force "$work/$rev"
    done
    for round in $(seq 1 "${ORG_STATS_AB_ROUNDS:-3}"); do
        for rev in "${revs[@]}"; do
            phase "A/B round $round: $rev"
            $SUDO cp "$work/$rev.so" "$lib/org_stats.so"
            ORG_STATS_FSYNC=on ORG_STATS_SHARED_BUFFERS=1GB start_cluster
            ORG_STATS_BENCH_VARIANTS=org_stats ORG_STATS_BENCH_ROUNDS=1 ORG_STATS_BENCH_WORKLOADS="$AB_WORKLOADS" \
                ORG_STATS_BENCH_SAMPLES="$work/$rev.$round" bench/run.sh "$work/report" >/dev/null
            stop_clusters
        done
    done
    phase ""
    python3 bench/ab.py "${revs[@]}" "$work"/*.[0-9]*
    # This checkout's own build again.
    install_extension release
    rm -rf "$work"
}

# --- Packages ---------------------------------------------------------------------------------

# dist/postgresql-<major>-org-stats_<version>_<arch>.deb from what `cargo pgrx package` lays out,
# with every committed install and upgrade script, depending on that major's server package.
build_package() {
    local arch out stage deb
    arch=$(dpkg --print-architecture)
    phase "building the Debian package for PostgreSQL $PG_MAJOR"
    cargo pgrx package --pg-config "$PG_CONFIG" >/dev/null
    out=$CARGO_TARGET_DIR/release/org_stats-pg$PG_MAJOR
    stage=$(mktemp -d /tmp/org_stats_deb.XXXXXX)
    cp -a "$out/usr" "$stage/"
    for script in sql/org_stats--*.sql; do
        [ "$script" = "sql/org_stats--$VERSION.sql" ] ||
            cp "$script" "$stage/usr/share/postgresql/$PG_MAJOR/extension/"
    done
    mkdir -p "$stage/DEBIAN" "$stage/usr/share/doc/postgresql-$PG_MAJOR-org-stats"
    cp -r README.md docs "$stage/usr/share/doc/postgresql-$PG_MAJOR-org-stats/"
    cat >"$stage/DEBIAN/control" <<CONTROL
Package: postgresql-$PG_MAJOR-org-stats
Version: $VERSION
Architecture: $arch
Maintainer: org_stats developers <org-stats@localhost>
Depends: postgresql-$PG_MAJOR, $(shared_library_depends "$stage/usr/lib/postgresql/$PG_MAJOR/lib/org_stats.so")
Section: database
Priority: optional
Description: exact per-organization, per-status row counts for PostgreSQL $PG_MAJOR
 org_stats keeps per-organization, per-status row counts of application tables
 exact inside PostgreSQL, with triggers, so that a dashboard's counts are an
 index probe instead of a GROUP BY over every row an organization owns.
CONTROL
    mkdir -p dist
    deb=dist/postgresql-$PG_MAJOR-org-stats_${VERSION}_$arch.deb
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    rm -rf "$stage"
    echo "built $deb"
}

# The Debian dependencies of a shared library (libc6, libgcc-s1 with their minimum versions).
shared_library_depends() { # library
    local work
    work=$(mktemp -d /tmp/org_stats_shlibs.XXXXXX)
    mkdir "$work/debian"
    printf 'Source: org-stats\n\nPackage: org-stats\nArchitecture: any\n' >"$work/debian/control"
    (cd "$work" && dpkg-shlibdeps -O "$1" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
    rm -rf "$work"
}

# Installs a package into a copy of the clean chroot of its suite (a stock Debian with that
# PostgreSQL, no Rust, no build tools) with apt-get, starts a cluster there and checks that
# org_stats counts a table exactly (tests/package_check.sql).
check_package() { # major
    local major=$1 deb scratch status=0
    deb=$(ls "$ROOT"/dist/postgresql-"$major"-org-stats_"$VERSION"_*.deb)
    ensure_chroot clean "$major"
    phase "installing $(basename "$deb") in a clean $(suite_of "$major") chroot"
    scratch=$(mktemp -d /tmp/org_stats_pkgcheck.XXXXXX)
    $SUDO cp -a "$CHROOT/." "$scratch/"
    $SUDO cp "$deb" "$ROOT/tests/package_check.sql" "$scratch/tmp/"
    mount_chroot "$scratch"
    in_chroot "$scratch" sh -ec "
        ! command -v cargo && ! command -v rustc && ! command -v cc
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/$(basename "$deb") >/dev/null
        mkdir /tmp/cluster && chown postgres /tmp/cluster
        runuser -u postgres -- /usr/lib/postgresql/$major/bin/initdb -D /tmp/cluster/data -A trust >/dev/null
        runuser -u postgres -- /usr/lib/postgresql/$major/bin/pg_ctl -D /tmp/cluster/data -l /tmp/cluster/log \
            -o \"-k /tmp/cluster -c listen_addresses=''\" -w start >/dev/null
        runuser -u postgres -- psql -X -q -h /tmp/cluster -d postgres -v ON_ERROR_STOP=1 -f /tmp/package_check.sql
        runuser -u postgres -- /usr/lib/postgresql/$major/bin/pg_ctl -D /tmp/cluster/data -m fast -w stop >/dev/null
    " || status=$?
    unmount_all
    remove_chroot "$scratch"
    [ $status -eq 0 ] || { echo "org_stats package for PostgreSQL $major: check failed"; exit 1; }
    echo "org_stats package for PostgreSQL $major: installed without Rust and counted exactly"
}

# --- Entry ------------------------------------------------------------------------------------

export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
HOST_MAJOR=""
for major in $SUPPORTED_MAJORS; do native "$major" && HOST_MAJOR=$major; done
[ -n "$HOST_MAJOR" ] || die "run this on Debian 12 (bookworm)"

MAJORS=${ORG_STATS_PG:-}
COMMANDS=()
while [ $# -gt 0 ]; do
    case $1 in
        --pg) MAJORS=${2:?--pg needs a major version}; shift 2 ;;
        test | demo | bench | package | ab) COMMANDS+=("$1"); shift ;;
        all) COMMANDS+=(test package); MAJORS=${MAJORS:-$SUPPORTED_MAJORS}; shift ;;
        *) die "usage: $0 [--pg MAJOR] [all|test|demo|bench|package|ab]" ;;
    esac
done
# With no command: every test on this machine's major.
[ ${#COMMANDS[@]} -gt 0 ] || COMMANDS=(test)
case ${COMMANDS[*]} in
    "test package") ;;
    package) MAJORS=${MAJORS:-$SUPPORTED_MAJORS} ;;
    *) MAJORS=${MAJORS:-$HOST_MAJOR} ;;
esac

# On one major, natively: the host for its own suite's major, or this script inside a chroot.
run_here() { # commands...
    PHASES=()
    for command in "$@"; do
        case $command in
            test) run_tests ;;
            demo)
                install_extension debug
                start_cluster
                psql -X -q -v ON_ERROR_STOP=1 -d postgres -f tests/demo.sql
                ;;
            bench)
                install_extension release
                # PostgreSQL's default (and managed providers'): no prepared transactions, which
                # the portable edition's writers would otherwise check for at every statement.
                ORG_STATS_FSYNC=on ORG_STATS_SHARED_BUFFERS=1GB ORG_STATS_PREPARED_TRANSACTIONS=0 start_cluster
                # 15's run is bench/RESULTS.md, which quotes the other majors' runs.
                if [ "$PG_MAJOR" = 15 ]; then
                    bench/run.sh "$ROOT/bench/RESULTS.md"
                else
                    bench/run.sh "$ROOT/bench/RESULTS-pg$PG_MAJOR.md"
                fi
                ;;
            package) build_package ;;
            ab) compare_builds ;;
        esac
    done
    print_phases "PostgreSQL $PG_MAJOR"
}

started=$(date +%s)
# The last published portable script, which the upgrade test starts from: taken here, where git
# is, for the chroots' runs too.
PORTABLE_PREVIOUS=0db7fbc
PREVIOUS_PORTABLE=$ROOT/target/org_stats_portable_previous.sql
if [ "${ORG_STATS_IN_CHROOT:-}" != 1 ]; then
    mkdir -p "$ROOT/target"
    if ! git -C "$ROOT" show "$PORTABLE_PREVIOUS:portable/org_stats.sql" >"$PREVIOUS_PORTABLE" 2>/dev/null; then
        echo "the portable script of $PORTABLE_PREVIOUS is not in this checkout: the upgrade test starts from this one"
        cp portable/org_stats.sql "$PREVIOUS_PORTABLE"
    fi
fi
use_major "$HOST_MAJOR"
phase "prerequisites (installed when missing)"
install_prerequisites
phase ""
for major in $MAJORS; do
    suite_of "$major" >/dev/null
    if [ "$major" = "$HOST_MAJOR" ]; then
        # A subshell does not inherit the EXIT trap: it stops the clusters it starts itself.
        (trap cleanup EXIT && use_major "$major" && run_here "${COMMANDS[@]}")
    else
        run_in_chroot "$major" "${COMMANDS[@]}"
    fi
    echo "PostgreSQL $major: ${COMMANDS[*]} done after $(($(date +%s) - started)) s"
done
# Inside a chroot this script only builds and tests; the caller checks the packages.
[ "${ORG_STATS_IN_CHROOT:-}" != 1 ] || exit 0
# Packages are checked from outside the build environments, each in a clean chroot.
if [[ " ${COMMANDS[*]} " == *" package "* ]]; then
    for major in $MAJORS; do check_package "$major"; done
fi
print_phases "org_stats: ${COMMANDS[*]} on PostgreSQL $(echo $MAJORS | sed 's/ /, /g'), outside the runs above"
echo "org_stats: ${COMMANDS[*]} green on PostgreSQL $(echo $MAJORS | sed 's/ /, /g') after $(($(date +%s) - started)) s"
