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
    if !security::can_read(table.0) {
        errors::cannot_read(&table.display());
    }
    security::require_rls_allows_counts(table);
    let (tables, statuses, pending) = deltas::pending_for_org(org_id);
    let counts = security::as_extension_owner(|| {
        let mut registration = None;
        sql::kept(
            "SELECT t.table_id, t.backfilled_at IS NOT NULL OR EXISTS ( \
                        SELECT FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) t.table_id \
                           AND s.org_id OPERATOR(pg_catalog.=) $2 AND s.backfilled_at IS NOT NULL) \
               FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) $1",
            &[table.into(), org_id.into()],
            Access::Read,
            |row| registration = Some((row.get::<i32>(1).unwrap(), row.get::<bool>(2).unwrap())),
        );
        let (table_id, counted) = registration?;
        if !counted {
            // Not backfilled yet: a live count, exact and slower.
            let tracked = registry::find(table, None).expect("registered, as read just above");
            return Some(
                backfill::group_counts(&tracked, table, Some(org_id))
                    .into_iter()
                    .map(|(_, status, n)| (status, n))
                    .collect(),
            );
        }
        let mut counts = Vec::new();
        let mut collect = |row: &sql::Row| counts.push((row.get(1), row.get(2).unwrap()));
        if tables.is_empty() {
            // The usual case: nothing of this org is pending in this backend.
            sql::kept(
                "SELECT c.status, pg_catalog.sum(c.n)::pg_catalog.int8 FROM org_stats.counters c \
                  WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
                  GROUP BY c.status HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0 ORDER BY c.status",
                &[org_id.into(), table_id.into()],
                Access::Read,
                &mut collect,
            );
        } else {
            sql::kept(
                "SELECT x.status, pg_catalog.sum(x.n)::pg_catalog.int8 FROM ( \
                     SELECT c.status, c.n FROM org_stats.counters c \
                      WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
                     UNION ALL \
                     SELECT p.status, p.n \
                       FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int4[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                                       pg_catalog.unnest($5::pg_catalog.int8[])) AS p(table_id, status, n) \
                      WHERE p.table_id OPERATOR(pg_catalog.=) $2) AS x \
                  GROUP BY x.status HAVING pg_catalog.sum(x.n) OPERATOR(pg_catalog.<>) 0 ORDER BY x.status",
                &[org_id.into(), table_id.into(), tables.into(), statuses.into(), pending.into()],
                Access::Read,
                &mut collect,
            );
        }
        Some(counts)
    });
    // Named outside the privileged section, where the caller's search_path spells it as they do.
    counts.unwrap_or_else(|| errors::not_tracked(&table.display()))
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
