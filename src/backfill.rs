//! Counting rows that already exist: one GROUP BY pass over a table (or one org of it), in the
//! same `::text` form the triggers use.

use crate::sql::{self, Access};
use pgrx::pg_sys;
use pgrx::spi::quote_identifier;

use crate::registry::RegClass;

/// `SELECT org::text, status::text, count(*) ... GROUP BY 1, 2` over `table`, optionally for one
/// org. The caller runs it with the extension's rights.
fn group_by_sql(table: RegClass, org_column: &str, status_column: &str, one_org: bool) -> String {
    let org = quote_identifier(org_column);
    let status = quote_identifier(status_column);
    // One org is read by the count functions, which answer in status order.
    let (filter, order) = if one_org {
        (
            format!("{org}::pg_catalog.text OPERATOR(pg_catalog.=) $1"),
            " ORDER BY 2",
        )
    } else {
        (format!("{org} IS NOT NULL"), "")
    };
    format!(
        "SELECT {org}::pg_catalog.text, {status}::pg_catalog.text, pg_catalog.count(*) \
           FROM {} WHERE {filter} GROUP BY 1, 2{order}",
        table.qualified()
    )
}

/// The live (org, status, count) groups of `relid`, read on the caller's snapshot.
pub fn group_counts(
    relid: pg_sys::Oid,
    org_column: &str,
    status_column: &str,
    org_id: Option<&str>,
) -> Vec<(String, Option<String>, i64)> {
    let sql = group_by_sql(RegClass(relid), org_column, status_column, org_id.is_some());
    let args: Vec<_> = org_id.into_iter().map(|o| o.into()).collect();
    let mut groups = Vec::new();
    sql::once(&sql, &args, Access::Read, |row| {
        groups.push((row.get(1).unwrap(), row.get(2), row.get(3).unwrap()))
    });
    groups
}

/// Counts every existing row of `table` into slot 0 of its counters, in one pass.
pub fn count_existing(
    table: RegClass,
    table_id: i32,
    org_column: &str,
    status_column: &str,
) -> u64 {
    let select = group_by_sql(table, org_column, status_column, false);
    sql::exec(
        &format!(
            "INSERT INTO org_stats.counters AS c (org_id, table_id, status, slot, n) \
             SELECT g.org_id, $1, g.status, 0, g.n FROM ({select}) AS g(org_id, status, n) \
             ON CONFLICT (org_id, table_id, status, slot) \
             DO UPDATE SET n = c.n OPERATOR(pg_catalog.+) excluded.n"
        ),
        &[table_id.into()],
    )
}
