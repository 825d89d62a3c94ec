//! What the integration tests share: the connection to the cluster `pg_test.sh` starts, and the
//! oracle every test ends with, a live GROUP BY compared with org_stats in one statement.

use postgres::{Client, GenericClient, NoTls};

/// The test cluster (ORG_STATS_DSN, set by pg_test.sh), in database `dbname` if given.
pub fn dsn(dbname: Option<&str>) -> String {
    let base = std::env::var("ORG_STATS_DSN")
        .expect("ORG_STATS_DSN must name the test cluster (./pg_test.sh sets it)");
    match dbname {
        Some(db) => format!("{base} dbname={db}"),
        None => base,
    }
}

pub fn connect() -> Client {
    Client::connect(&dsn(None), NoTls).expect("connect to the test cluster")
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
