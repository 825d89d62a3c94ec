//! Reads: per-status counts of one org, from a handful of index-probed counter rows plus the
//! backend's own unflushed deltas, on the caller's snapshot. A table tracked with
//! `backfill => false` answers from a live GROUP BY until it is backfilled: slower, never wrong.

use crate::backfill;
use crate::deltas;
use crate::errors;
use crate::registry::{self, RegClass};
use crate::security;
use crate::sql::{self, Access};
use pgrx::prelude::*;

/// The non-zero (status, count) pairs of `org_id` in `table`, ordered by status, NULL last.
fn status_counts(table: RegClass, org_id: &str) -> Vec<(Option<String>, i64)> {
    let name = table.display();
    if !security::can_read(table.0) {
        errors::cannot_read(&name);
    }
    security::require_rls_allows_counts(table.0, &name);
    security::as_extension_owner(|| {
        let tracked = registry::require_named(table, &name, Some(org_id));
        let mut counts = Vec::new();
        if !tracked.counted {
            let groups = backfill::group_counts(&tracked, table, Some(org_id));
            return groups
                .into_iter()
                .map(|(_, status, n)| (status, n))
                .collect();
        }
        let (statuses, pending) = deltas::pending_for(tracked.table_id, org_id);
        sql::kept(
            "SELECT g.status, pg_catalog.sum(g.n)::pg_catalog.int8 FROM ( \
                 SELECT c.status, c.n FROM org_stats.counters c \
                  WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
                 UNION ALL \
                 SELECT * FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int8[])) \
             ) AS g(status, n) \
             GROUP BY g.status HAVING pg_catalog.sum(g.n) OPERATOR(pg_catalog.<>) 0 ORDER BY g.status",
            &[org_id.into(), tracked.table_id.into(), statuses.into(), pending.into()],
            Access::Read,
            |row| counts.push((row.get(1), row.get(2).unwrap())),
        );
        counts
    })
}

/// Rows of `org_id` in `tbl` per status (statuses with no rows are omitted).
#[pg_extern(stable, strict, parallel_restricted)]
fn count_by_status(
    tbl: RegClass,
    org_id: &str,
) -> TableIterator<'static, (name!(status, Option<String>), name!(count, i64))> {
    TableIterator::new(status_counts(tbl, org_id))
}

/// All rows of `org_id` in `tbl`.
#[pg_extern(stable, strict, parallel_restricted, name = "count")]
fn count_all(tbl: RegClass, org_id: &str) -> i64 {
    status_counts(tbl, org_id).iter().map(|(_, n)| n).sum()
}

/// Rows of `org_id` in `tbl` whose status is `status`; a NULL `status` counts the rows whose
/// status is NULL.
#[pg_extern(stable, parallel_restricted, name = "count")]
fn count_status(tbl: Option<RegClass>, org_id: Option<&str>, status: Option<&str>) -> Option<i64> {
    let counts = status_counts(tbl?, org_id?);
    Some(
        counts
            .iter()
            .filter(|(s, _)| s.as_deref() == status)
            .map(|(_, n)| n)
            .sum(),
    )
}

/// `{"Open": 12, "Delivered": 3}`; the NULL status, which has no JSON key, is left out.
#[pg_extern(stable, strict, parallel_restricted)]
fn counts(tbl: RegClass, org_id: &str) -> pgrx::JsonB {
    let map: serde_json::Map<String, serde_json::Value> = status_counts(tbl, org_id)
        .into_iter()
        .filter_map(|(status, n)| Some((status?, n.into())))
        .collect();
    pgrx::JsonB(serde_json::Value::Object(map))
}
