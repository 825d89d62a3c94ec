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
    let query = query(t, relation, org_id.is_some(), None);
    let args: Vec<DatumWithOid> = org_id.into_iter().map(|o| o.into()).collect();
    run(&query, &args, false)
}

/// The statement of `group_counts` of one org's rows of `t` (its `$1`) that also satisfy
/// `condition`, SQL over the table's columns whose parameters are numbered from `$2`: for
/// `group_counts_of`.
pub fn org_query_where(t: &Tracked, condition: &str) -> String {
    query(t, t.relid, true, Some(condition))
}

/// Runs a statement `org_query_where` made, planned once per backend if `kept` (a table on this
/// node; a statement of a distributed table is planned for its values), as `group_counts` of
/// that one org.
pub fn group_counts_of(
    query: &str,
    args: &[DatumWithOid],
    kept: bool,
) -> Vec<(Option<String>, Delta)> {
    run(query, args, kept)
        .into_iter()
        .map(|(_, status, counted)| (status, counted))
        .collect()
}

fn query(t: &Tracked, relation: RegClass, one_org: bool, condition: Option<&str>) -> String {
    let (org, status) = (t.org_sql(), t.status_sql());
    let (mut rows, order) = if one_org {
        (format!("{org} OPERATOR(pg_catalog.=) $1"), " ORDER BY 2")
    } else {
        (
            format!("{} IS NOT NULL", quote_identifier(&t.org_column)),
            "",
        )
    };
    if let Some(condition) = condition {
        rows = format!("{rows} AND ({condition})");
    }
    format!(
        "SELECT {org}, {status}, pg_catalog.count(*), {sums} FROM {table} WHERE {rows} GROUP BY 1, 2{order}",
        sums = t.sums_sql(),
        table = relation.qualified(),
        rows = t.counted_sql(&rows),
    )
}

fn run(query: &str, args: &[DatumWithOid], kept: bool) -> Vec<(String, Option<String>, Delta)> {
    let mut groups = Vec::new();
    let each = |row: &sql::Row| {
        let counted = Delta {
            n: row.get(3).unwrap(),
            sums: sums::from_numerics(row.get(4)),
        };
        groups.push((row.get(1).unwrap(), row.get(2), counted))
    };
    if kept {
        sql::kept_text(query, args, Access::Read, each);
    } else {
        sql::once(query, args, Access::Read, each);
    }
    groups
}
