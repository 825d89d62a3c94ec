//! What the integration tests share: the connection to the cluster `pg_test.sh` starts, and the
//! oracle every test ends with, a live GROUP BY compared with org_stats in one statement.

use postgres::{Client, GenericClient, NoTls};

pub mod citus;

/// The test cluster (ORG_STATS_DSN, set by pg_test.sh), in database `dbname` if given.
pub fn dsn(dbname: Option<&str>) -> String {
    let base = std::env::var("ORG_STATS_DSN")
        .expect("ORG_STATS_DSN must name the test cluster (./pg_test.sh sets it)");
    match dbname {
        Some(db) => format!("{base} dbname={db}"),
        None => base,
    }
}

/// Whether the tests run against the portable edition (ORG_STATS_EDITION=portable, which
/// pg_test.sh installs in the database beforehand) instead of the native one.
pub fn portable() -> bool {
    std::env::var("ORG_STATS_EDITION").is_ok_and(|e| e == "portable")
}

/// Connects to the test cluster's database (ORG_STATS_DSN's, else `postgres`), where the native
/// edition is installed (once per test process) if it is not yet.
pub fn connect() -> Client {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut client = Client::connect(&dsn(None), NoTls).expect("connect to the test cluster");
    if !portable() {
        INSTALLED.call_once(|| {
            client
                .batch_execute("CREATE EXTENSION IF NOT EXISTS org_stats")
                .unwrap()
        });
    }
    client
}

/// Marks a NULL status in the full join below; no real status in the tests is this.
const NULL_STATUS: &str = "\u{1}null";

/// Every (org, status) where count_by_status() disagrees with a live GROUP BY of `table`, and every
/// org whose count() disagrees with its row count, as readable lines; empty when all agree. The
/// orgs checked are `orgs` plus every org with rows. One statement, so one snapshot.
pub fn mismatches(
    client: &mut impl GenericClient,
    table: &str,
    org_column: &str,
    orgs: &[String],
) -> Vec<String> {
    let sql = format!(
        "WITH actual AS (
             SELECT {org_column}::text AS org_id, status::text AS status, count(*) AS n
               FROM {table} WHERE {org_column} IS NOT NULL GROUP BY 1, 2),
         orgs AS (SELECT unnest($1::text[]) AS org_id UNION SELECT org_id FROM actual),
         counted AS (
             SELECT o.org_id, c.status, c.count FROM orgs o, org_stats.count_by_status('{table}', o.org_id) c),
         by_status AS (
             SELECT coalesce(a.org_id, c.org_id) AS org_id, coalesce(a.status, c.status) AS status,
                    c.count AS counted, a.n AS actual
               FROM actual a FULL JOIN counted c
                 ON a.org_id = c.org_id AND coalesce(a.status, $2) = coalesce(c.status, $2)
              WHERE a.n IS DISTINCT FROM c.count),
         totals AS (
             SELECT o.org_id, 'TOTAL' AS status, org_stats.count('{table}', o.org_id) AS counted,
                    (SELECT coalesce(sum(n), 0) FROM actual a WHERE a.org_id = o.org_id)::bigint AS actual
               FROM orgs o)
         SELECT format('%s %s %s: counted %s, actual %s', '{table}', org_id, coalesce(status, 'NULL'), counted, actual)
           FROM (SELECT * FROM by_status UNION ALL SELECT * FROM totals WHERE counted <> actual) m"
    );
    client
        .query(&sql, &[&orgs, &NULL_STATUS])
        .expect("oracle query runs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The SQL an oracle compares summed columns with: their sum() on the table side, their value
/// in `t.sums` on org_stats' side, and whether any differs between sides `a` and `c`.
struct SumsSql {
    actual_sums: String,
    counted_sums: String,
    differ: String,
}

fn sums_sql(sums: &[&str]) -> SumsSql {
    let each = |f: &dyn Fn(&str) -> String| sums.iter().map(|c| f(c)).collect::<String>();
    SumsSql {
        actual_sums: each(&|c| format!(", sum({c})::numeric AS {c}")),
        counted_sums: each(&|c| format!(", (t.sums ->> '{c}')::numeric AS {c}")),
        differ: each(&|c| format!(" OR a.{c} IS DISTINCT FROM c.{c}")),
    }
}

/// Every (org, status) where `org_stats.totals(tracking, org)` disagrees with a live GROUP BY of
/// the rows of `table` satisfying `filter`: the count and the sum() of each of `sums`, as
/// readable lines; empty when all agree. The orgs checked are `orgs` plus every org with rows.
/// One statement, so one snapshot.
pub fn totals_mismatches(
    client: &mut impl GenericClient,
    tracking: &str,
    table: &str,
    columns: (&str, &str),
    filter: &str,
    sums: &[&str],
    orgs: &[String],
) -> Vec<String> {
    let (org_column, status_column) = columns;
    let SumsSql {
        actual_sums,
        counted_sums,
        differ,
    } = sums_sql(sums);
    let shown: String = sums
        .iter()
        .map(|c| format!(" || ' {c} ' || coalesce(c.{c}::text, 'NULL') || '/' || coalesce(a.{c}::text, 'NULL')"))
        .collect();
    let sql = format!(
        "WITH actual AS (
             SELECT {org_column}::text AS org_id, {status_column}::text AS status, count(*) AS n{actual_sums}
               FROM {table} WHERE {org_column} IS NOT NULL AND ({filter}) GROUP BY 1, 2),
         orgs AS (SELECT unnest($1::text[]) AS org_id
                  UNION SELECT {org_column}::text FROM {table} WHERE {org_column} IS NOT NULL),
         counted AS (SELECT o.org_id, t.status, t.count{counted_sums}
                       FROM orgs o, org_stats.totals('{tracking}', o.org_id) t)
         SELECT format('%s %s %s: counted %s, actual %s', '{tracking}', coalesce(a.org_id, c.org_id),
                       coalesce(a.status, c.status, 'NULL'), c.count, a.n){shown}
           FROM actual a FULL JOIN counted c
             ON a.org_id = c.org_id AND a.status IS NOT DISTINCT FROM c.status
          WHERE a.n IS DISTINCT FROM c.count{differ}"
    );
    client
        .query(&sql, &[&orgs])
        .expect("oracle query runs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A grouped tracking as the oracle reads it: its name, table, org column, key (as SQL over the
/// table's columns, `ARRAY[a::text, b::text]`), time column, filter and summed columns.
pub struct Grouped<'a> {
    pub tracking: &'a str,
    pub table: &'a str,
    pub org_column: &'a str,
    pub key: &'a str,
    pub time_column: &'a str,
    pub filter: &'a str,
    pub sums: &'a [&'a str],
}

/// Every (org, bucket, key) where `org_stats.groups(tracking, org, since, until)` (or, given
/// `bucket`, the start of a row's bucket as SQL, `series()`) disagrees with a live GROUP BY of
/// the rows satisfying the filter whose time is in [since, until) (`bounds`, SQL expressions;
/// `None`: unbounded): the count
/// and the sum() of each summed column, as readable lines; empty when all agree. The orgs checked
/// are `orgs` plus every org with rows. One statement, so one snapshot.
pub fn groups_mismatches(
    client: &mut impl GenericClient,
    g: &Grouped,
    orgs: &[String],
    bounds: (Option<&str>, Option<&str>),
    bucket: Option<&str>,
) -> Vec<String> {
    let Grouped {
        tracking,
        table,
        org_column,
        key,
        time_column,
        filter,
        sums,
    } = g;
    let SumsSql {
        actual_sums,
        counted_sums,
        differ,
    } = sums_sql(sums);
    let literal = |bound: Option<&str>| {
        bound.map_or("NULL::timestamptz".to_string(), |b| {
            format!("({b})::timestamptz")
        })
    };
    let (since, until) = (literal(bounds.0), literal(bounds.1));
    let (bucket_sql, read) = match bucket {
        Some(sql) => (
            sql.to_string(),
            format!("SELECT t.bucket, t.key, t.count{counted_sums} FROM org_stats.series('{tracking}', o.org_id, {since}, {until}) t"),
        ),
        None => (
            "NULL::timestamptz".to_string(),
            format!("SELECT NULL::timestamptz AS bucket, t.key, t.count{counted_sums} \
                       FROM org_stats.groups('{tracking}', o.org_id, {since}, {until}) t"),
        ),
    };
    let sql = format!(
        "WITH actual AS (
             SELECT {org_column}::text AS org_id, ({bucket_sql})::timestamptz AS bucket, {key} AS key,
                    count(*) AS n{actual_sums}
               FROM {table}
              WHERE {org_column} IS NOT NULL AND ({filter})
                AND ({since} IS NULL OR {time_column} >= {since}) AND ({until} IS NULL OR {time_column} < {until})
              GROUP BY 1, 2, 3),
         orgs AS (SELECT unnest($1::text[]) AS org_id
                  UNION SELECT {org_column}::text FROM {table} WHERE {org_column} IS NOT NULL),
         counted AS (SELECT o.org_id, g.* FROM orgs o, LATERAL ({read}) g)
         SELECT format('%s %s %s %s: counted %s, actual %s', '{tracking}', coalesce(a.org_id, c.org_id),
                       coalesce(a.bucket, c.bucket), coalesce(a.key, c.key), c.count, a.n)
           FROM actual a FULL JOIN counted c
             ON a.org_id = c.org_id AND a.bucket IS NOT DISTINCT FROM c.bucket AND a.key IS NOT DISTINCT FROM c.key
          WHERE a.n IS DISTINCT FROM c.count{differ}"
    );
    client
        .query(&sql, &[&orgs])
        .unwrap_or_else(|e| panic!("oracle query runs: {e}\n{sql}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A program of the PostgreSQL installation the tests run against (ORG_STATS_PGBIN).
pub fn pg_program(name: &str) -> std::process::Command {
    let bin = std::env::var("ORG_STATS_PGBIN").expect("ORG_STATS_PGBIN is set by pg_test.sh");
    std::process::Command::new(format!("{bin}/{name}"))
}

/// Runs a PostgreSQL program against the test cluster and fails the test if it fails.
pub fn run_pg(name: &str, args: &[&str]) -> String {
    let output = pg_program(name)
        .args(args)
        .output()
        .expect("run a PostgreSQL program");
    assert!(
        output.status.success(),
        "{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Connects to database `dbname` of the test cluster.
pub fn connect_to(dbname: &str) -> Client {
    Client::connect(&dsn(Some(dbname)), NoTls).expect("connect to the test database")
}

/// (Re)creates an empty database and connects to it.
pub fn empty_database(name: &str) -> Client {
    let mut admin = connect();
    // Separate statements: DROP/CREATE DATABASE refuse the transaction of a multi-statement string.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    connect_to(name)
}

/// (Re)creates an empty database with org_stats installed.
pub fn fresh_database(name: &str) -> Client {
    let mut db = empty_database(name);
    db.batch_execute("CREATE EXTENSION org_stats").unwrap();
    db
}

/// Drops a database the test made.
pub fn drop_database(name: &str) {
    connect()
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
}

/// Runs `program` (psql, pg_dump, pg_restore) against database `db` of the test cluster.
pub fn run_on(program: &str, db: &str, args: &[&str]) -> String {
    let host = std::env::var("PGHOST").expect("PGHOST is set by pg_test.sh");
    let port = std::env::var("PGPORT").expect("PGPORT is set by pg_test.sh");
    let mut all = vec![
        "-h",
        host.as_str(),
        "-p",
        port.as_str(),
        "-U",
        "postgres",
        "-d",
        db,
    ];
    all.extend_from_slice(args);
    run_pg(program, &all)
}

/// Groups whose stored count differs from the table, in every tracked table of `db`.
pub fn drift(db: &mut impl GenericClient) -> i64 {
    db.query_one("SELECT count(*) FROM org_stats.check_drift()", &[])
        .unwrap()
        .get(0)
}
