//! What the Citus tests share: a coordinator and two workers on private ports, and the oracle,
//! every read of a tracked table compared with a live GROUP BY on it from the coordinator.
//!
//! Citus is not in Debian: the tests run when citus.so is in the server's library directory and
//! say that they skipped otherwise.

use crate::pg_program;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::path::PathBuf;

pub const PORTS: [u16; 3] = [54390, 54391, 54392];
/// The orgs every table of the tests has rows of.
pub const ORGS: [&str; 7] = ["org0", "org1", "org2", "org3", "org4", "org5", "org6"];

/// The three servers; stopped (and their directory removed) when dropped, also on a failure.
pub struct Cluster {
    pub dir: PathBuf,
}

impl Cluster {
    /// Starts the servers (`shards` shards per new distributed table), or returns `None`, saying
    /// so, where Citus is not installed.
    pub fn start(shards: u32) -> Option<Cluster> {
        if !citus_installed() {
            println!(
                "citus: SKIPPED, Citus is not installed (no citus.so in the server's pkglibdir)"
            );
            return None;
        }
        let dir = std::env::temp_dir().join("org_stats_citus");
        let cluster = Cluster { dir: dir.clone() };
        cluster.stop();
        std::fs::create_dir_all(&dir).unwrap();
        let owned = std::process::Command::new("chown")
            .args(["postgres", dir.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(owned.success(), "chown postgres {}", dir.display());
        for port in PORTS {
            let data = dir.join(port.to_string());
            as_postgres("initdb", &["-D", data.to_str().unwrap(), "-A", "trust"]);
            // Logical decoding for create_distributed_table_concurrently().
            let conf = format!(
                "port = {port}\nunix_socket_directories = '{dir}'\nlisten_addresses = ''\n\
                 shared_preload_libraries = 'citus, org_stats'\nmax_worker_processes = 32\n\
                 citus.shard_count = {shards}\ncitus.local_hostname = '{dir}'\nwal_level = logical\n",
                dir = dir.display()
            );
            let path = data.join("postgresql.conf");
            let mut text = std::fs::read_to_string(&path).unwrap();
            text.push_str(&conf);
            std::fs::write(&path, text).unwrap();
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    dir.join(format!("{port}.log")).to_str().unwrap(),
                    "-w",
                    "start",
                ],
            );
            let mut node = cluster.node(port);
            // Some builds only let the output plugins this lists decode; Citus decodes with its own.
            let listed: i64 = node
                .query_one(
                    "SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'",
                    &[],
                )
                .unwrap()
                .get(0);
            if listed > 0 {
                for statement in [
                    "ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, citus",
                    "SELECT pg_reload_conf()",
                ] {
                    node.batch_execute(statement).unwrap();
                }
            }
            node.batch_execute("CREATE EXTENSION citus").unwrap();
        }
        let host = dir.display().to_string();
        let mut coordinator = cluster.node(PORTS[0]);
        coordinator
            .execute(
                "SELECT citus_set_coordinator_host($1, $2)",
                &[&host, &i32::from(PORTS[0])],
            )
            .unwrap();
        for port in &PORTS[1..] {
            coordinator
                .execute("SELECT citus_add_node($1, $2)", &[&host, &i32::from(*port)])
                .unwrap();
        }
        let version: String = coordinator
            .query_one("SELECT citus_version()", &[])
            .unwrap()
            .get(0);
        println!("citus: {version}");
        Some(cluster)
    }

    pub fn node(&self, port: u16) -> Client {
        Client::connect(
            &format!(
                "host={} port={port} user=postgres dbname=postgres",
                self.dir.display()
            ),
            NoTls,
        )
        .expect("connect to a Citus node")
    }

    fn stop(&self) {
        for port in PORTS {
            let data = self.dir.join(port.to_string());
            if data.exists() {
                let _ = std::process::Command::new("runuser")
                    .args(["-u", "postgres", "--"])
                    .arg(pg_program("pg_ctl").get_program())
                    .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Relations of org_stats' distributed counters left on each node, shards included.
    pub fn counters_left(&self) -> Vec<String> {
        let mut left = Vec::new();
        for port in PORTS {
            let mut node = self.node(port);
            // Citus hides shards from pg_class in client sessions unless told not to.
            node.batch_execute("SET citus.override_table_visibility TO off")
                .unwrap();
            for row in node
                .query(
                    "SELECT relname::text FROM pg_class WHERE relname ~ '^counters_[0-9]+' ORDER BY 1",
                    &[],
                )
                .unwrap()
            {
                left.push(format!("{port}: {}", row.get::<_, String>(0)));
            }
        }
        left
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a PostgreSQL program as the postgres user (initdb refuses root).
fn as_postgres(program: &str, args: &[&str]) {
    let output = std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_program(program).get_program())
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn citus_installed() -> bool {
    let output = pg_program("pg_config").arg("--pkglibdir").output().unwrap();
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        .join("citus.so")
        .exists()
}

/// The rows of `query` as text, sorted (so two queries compare whatever order they return).
pub fn text_rows(db: &mut Client, query: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
    db.query(
        &format!("SELECT q::text FROM ({query}) q ORDER BY 1"),
        params,
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Every read of a tracking of `table` (whose rows have columns `workos_org_id` and `status`)
/// where org_stats disagrees with a live GROUP BY of the table, read from the coordinator: for
/// the table's default tracking, `count_by_status()` and `count()` of each org, of the org list,
/// `totals()` of all orgs and `organization_stats` (which lists a tracking counted live, see
/// `health.live_reason`, not at all); for each named tracking, its counts and the sums of its
/// summed columns of the rows its filter keeps (as values: a sum keeps the largest scale of the
/// values ever added to it), per org and over all orgs, or for a tracking grouped by several
/// columns and a fixed time bucket, its `groups()` and `series()` of each org, all time and
/// between two instants that cut buckets; and any drift `check_drift()` finds.
/// Empty when all agree.
pub fn mismatches(db: &mut Client, table: &str) -> Vec<String> {
    let all_orgs: Vec<String> = ORGS.iter().map(|o| o.to_string()).collect();
    let live: bool = db
        .query_one(
            "SELECT EXISTS (SELECT FROM org_stats.health WHERE table_name = $1::text::regclass
                               AND tracking IS NULL AND live_reason IS NOT NULL)",
            &[&table],
        )
        .unwrap()
        .get(0);
    let per_org_status = if live {
        "SELECT NULL, NULL, NULL WHERE false".to_owned()
    } else {
        format!("SELECT workos_org_id, status::text, count(*) FROM {table} GROUP BY 1, 2")
    };
    let mut checks: Vec<(String, String, String, Vec<&(dyn ToSql + Sync)>)> = vec![
        (
            "organization_stats".into(),
            format!(
                "SELECT org_id, status, count FROM org_stats.organization_stats WHERE table_name = '{table}'::regclass AND tracking IS NULL"
            ),
            per_org_status,
            vec![],
        ),
        (
            "count_by_status of an org list".into(),
            format!("SELECT * FROM org_stats.count_by_status('{table}', $1::text[])"),
            format!(
                "SELECT workos_org_id, status::text, count(*) FROM {table} WHERE workos_org_id = ANY ($1) GROUP BY 1, 2"
            ),
            vec![&all_orgs],
        ),
        (
            "totals() of all orgs".into(),
            format!("SELECT status, count FROM org_stats.totals('{table}')"),
            format!("SELECT status::text, count(*) FROM {table} GROUP BY 1"),
            vec![],
        ),
    ];
    for org in &ORGS {
        checks.push((
            format!("count_by_status of {org}"),
            format!("SELECT status, count FROM org_stats.count_by_status('{table}', $1)"),
            format!(
                "SELECT status::text, count(*) FROM {table} WHERE workos_org_id = $1 GROUP BY 1"
            ),
            vec![org],
        ));
        checks.push((
            format!("count() of {org}"),
            format!("SELECT org_stats.count('{table}', $1)"),
            format!("SELECT count(*) FROM {table} WHERE workos_org_id = $1"),
            vec![org],
        ));
    }
    let named: Vec<(String, String, Vec<String>, Vec<String>, Option<String>, Option<String>)> = db
        .query(
            "SELECT tracking, coalesce(filter, 'true'), coalesce(sum_columns, '{}'), group_by,
                    time_column::text, bucket::text
               FROM org_stats.tracked_tables WHERE table_name = $1::text::regclass AND tracking IS NOT NULL",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    for (tracking, filter, sums, group_by, time_column, bucket) in &named {
        let summed_actual: String = sums
            .iter()
            .map(|c| format!(", trim_scale(sum({c}))::text"))
            .collect();
        let summed_counted: String = sums
            .iter()
            .map(|c| format!(", trim_scale((sums->>'{c}')::numeric)::text"))
            .collect();
        if let (Some(time), Some(bucket)) = (time_column, bucket) {
            // Grouped by several columns and a (fixed) time bucket: groups() and series(), all time
            // and between two instants that cut buckets.
            let key: Vec<String> = group_by.iter().map(|c| format!("{c}::text")).collect();
            let key = format!("ARRAY[{}]", key.join(", "));
            for (since, until) in [("NULL", "NULL"), (CUT_SINCE, CUT_UNTIL)] {
                let within = format!(
                    "({since}::timestamptz IS NULL OR {time} >= {since}::timestamptz) \
                     AND ({until}::timestamptz IS NULL OR {time} < {until}::timestamptz)"
                );
                for org in &ORGS {
                    checks.push((
                        format!("groups() of {tracking} for {org} in [{since}, {until})"),
                        format!("SELECT key, count{summed_counted} FROM org_stats.groups('{tracking}', $1, {since}, {until})"),
                        format!(
                            "SELECT {key}, count(*){summed_actual} FROM {table} \
                              WHERE workos_org_id = $1 AND ({filter}) AND {within} GROUP BY 1"
                        ),
                        vec![org],
                    ));
                    checks.push((
                        format!("series() of {tracking} for {org} in [{since}, {until})"),
                        format!("SELECT bucket, key, count{summed_counted} FROM org_stats.series('{tracking}', $1, {since}, {until})"),
                        format!(
                            "SELECT CASE WHEN isfinite({time}) THEN date_bin('{bucket}'::interval, {time}, '2000-01-01 00:00+00') \
                                    ELSE {time} END, {key}, count(*){summed_actual} FROM {table} \
                              WHERE workos_org_id = $1 AND ({filter}) AND {within} GROUP BY 1, 2"
                        ),
                        vec![org],
                    ));
                }
            }
            continue;
        }
        let actual = |orgs: &str| {
            format!(
                "SELECT status::text, count(*){summed_actual} FROM {table} WHERE ({filter}) AND {orgs} GROUP BY 1"
            )
        };
        let counted = |totals: &str| format!("SELECT status, count{summed_counted} FROM {totals}");
        checks.push((
            format!("totals() of {tracking} over all orgs"),
            counted(&format!("org_stats.totals('{tracking}')")),
            actual("true"),
            vec![],
        ));
        for org in &ORGS {
            checks.push((
                format!("totals() of {tracking} for {org}"),
                counted(&format!("org_stats.totals('{tracking}', $1)")),
                actual("workos_org_id = $1"),
                vec![org],
            ));
        }
    }
    let mut bad = Vec::new();
    for (what, counted, actual, params) in checks {
        let (counted, actual) = (
            text_rows(db, &counted, &params),
            text_rows(db, &actual, &params),
        );
        if counted != actual {
            bad.push(format!("{what}: counted {counted:?}, actual {actual:?}"));
        }
    }
    let drift = text_rows(
        db,
        &format!("SELECT * FROM org_stats.check_drift('{table}'::regclass)"),
        &[],
    );
    if !drift.is_empty() {
        bad.push(format!("check_drift(): {drift:?}"));
    }
    bad
}

/// The bounds of the reads of a time-bucketed tracking that cut its buckets (see `mismatches`).
const CUT_SINCE: &str = "'2026-11-02 09:10+00'";
const CUT_UNTIL: &str = "'2026-11-05 17:45+00'";

/// Fails the test, naming `step`, unless every read of `table`'s trackings is exact.
pub fn assert_exact(db: &mut Client, table: &str, step: &str) {
    let bad = mismatches(db, table);
    assert!(bad.is_empty(), "after {step}: {bad:#?}");
    println!("citus: exact after {step}");
}

/// The SQLSTATE of a statement that failed.
pub fn error_code(result: Result<u64, postgres::Error>) -> String {
    result
        .expect_err("refused")
        .code()
        .map(|c| c.code().to_owned())
        .unwrap_or_default()
}

/// The SQLSTATE of `statement` run inside a transaction block, which is then rolled back.
pub fn error_code_in_block(db: &mut Client, statement: &str) -> String {
    let code = error_code(
        db.batch_execute(&format!("BEGIN; {statement}; COMMIT;"))
            .map(|_| 0),
    );
    db.batch_execute("ROLLBACK").unwrap();
    code
}
