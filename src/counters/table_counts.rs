//! What a tracked table holds, counted live: the GROUP BY that backfill, drift checks and reads
//! of rows not yet counted compare with or answer from.

use crate::catalog::registry::Tracked;
use crate::counters::deltas::Delta;
use crate::pg::names::RegClass;
use crate::pg::sql::{self, Access};
use crate::values::sums;
use pgrx::spi::quote_identifier;

/// The live (org, status, count and sums) groups of `relation` (the tracked table or one of its
/// partitions) that tracking `t` counts, for one org in status order or for all orgs, read on the
/// active snapshot. The caller runs it with the extension's rights.
pub fn group_counts(
    t: &Tracked,
    relation: RegClass,
    org_id: Option<&str>,
) -> Vec<(String, Option<String>, Delta)> {
    let (org, status) = (t.org_sql(), t.status_sql());
    let (rows, order) = match org_id {
        Some(_) => (format!("{org} OPERATOR(pg_catalog.=) $1"), " ORDER BY 2"),
        None => (
            format!("{} IS NOT NULL", quote_identifier(&t.org_column)),
            "",
        ),
    };
    let query = format!(
        "SELECT {org}, {status}, pg_catalog.count(*), {sums} FROM {table} WHERE {rows} GROUP BY 1, 2{order}",
        sums = t.sums_sql(),
        table = relation.qualified(),
        rows = t.counted_sql(&rows),
    );
    let args: Vec<_> = org_id.into_iter().map(|o| o.into()).collect();
    let mut groups = Vec::new();
    sql::once(&query, &args, Access::Read, |row| {
        let counted = Delta {
            n: row.get(3).unwrap(),
            sums: sums::from_numerics(row.get(4)),
        };
        groups.push((row.get(1).unwrap(), row.get(2), counted))
    });
    groups
}
