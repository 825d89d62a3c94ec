//! What a tracked table holds, counted live: the GROUP BY that backfill, drift checks and reads
//! of rows not yet counted compare with or answer from.

use crate::catalog::registry::Tracked;
use crate::counters::deltas::Delta;
use crate::pg::names::RegClass;
use crate::pg::sql::{self, Access};
use crate::values::sums;
use pgrx::datum::DatumWithOid;
use pgrx::spi::quote_identifier;

/// The live (org, status, count and sums) groups of `relation` (the tracked table or one of its
/// partitions) that tracking `t` counts, for one org in status order or for all orgs, read on the
/// active snapshot. The caller runs it with the extension's rights.
pub fn group_counts(
    t: &Tracked,
    relation: RegClass,
    org_id: Option<&str>,
) -> Vec<(String, Option<String>, Delta)> {
    counted(t, relation, org_id, None)
}

/// `group_counts` of one org's rows that also satisfy `condition`, SQL over the table's columns
/// whose parameters are `args`, numbered from `$2`.
pub fn group_counts_where(
    t: &Tracked,
    org_id: &str,
    condition: &str,
    args: Vec<DatumWithOid>,
) -> Vec<(Option<String>, Delta)> {
    counted(t, t.relid, Some(org_id), Some((condition, args)))
        .into_iter()
        .map(|(_, status, counted)| (status, counted))
        .collect()
}

fn counted(
    t: &Tracked,
    relation: RegClass,
    org_id: Option<&str>,
    condition: Option<(&str, Vec<DatumWithOid>)>,
) -> Vec<(String, Option<String>, Delta)> {
    let (org, status) = (t.org_sql(), t.status_sql());
    let (mut rows, order) = match org_id {
        Some(_) => (format!("{org} OPERATOR(pg_catalog.=) $1"), " ORDER BY 2"),
        None => (
            format!("{} IS NOT NULL", quote_identifier(&t.org_column)),
            "",
        ),
    };
    let mut args: Vec<DatumWithOid> = org_id.into_iter().map(|o| o.into()).collect();
    if let Some((condition, condition_args)) = condition {
        rows = format!("{rows} AND ({condition})");
        args.extend(condition_args);
    }
    let query = format!(
        "SELECT {org}, {status}, pg_catalog.count(*), {sums} FROM {table} WHERE {rows} GROUP BY 1, 2{order}",
        sums = t.sums_sql(),
        table = relation.qualified(),
        rows = t.counted_sql(&rows),
    );
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
