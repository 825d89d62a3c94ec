//! Counting rows that already exist: in one pass when a table is tracked, or online, a batch of
//! orgs per transaction, for `track(..., backfill => false)` followed by `CALL org_stats.backfill()`.

use crate::drift;
use crate::registry::{RegClass, Tracked};
use crate::security;
use crate::sql::{self, Access};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The live (org, status, count) groups of `relation` (the tracked table or one of its
/// partitions), for one org in status order or for all orgs, read on the active snapshot. The
/// caller runs it with the extension's rights.
pub fn group_counts(
    t: &Tracked,
    relation: RegClass,
    org_id: Option<&str>,
) -> Vec<(String, Option<String>, i64)> {
    let (org, status) = (t.org_sql(), t.status_sql());
    let (filter, order) = match org_id {
        Some(_) => (format!("{org} OPERATOR(pg_catalog.=) $1"), " ORDER BY 2"),
        None => (
            format!("{} IS NOT NULL", quote_identifier(&t.org_column)),
            "",
        ),
    };
    let query = format!(
        "SELECT {org}, {status}, pg_catalog.count(*) FROM {} WHERE {filter} GROUP BY 1, 2{order}",
        relation.qualified()
    );
    let args: Vec<_> = org_id.into_iter().map(|o| o.into()).collect();
    let mut groups = Vec::new();
    sql::once(&query, &args, Access::Read, |row| {
        groups.push((row.get(1).unwrap(), row.get(2), row.get(3).unwrap()))
    });
    groups
}

/// Starts (or resumes) the backfill of `tbl`: the orgs still to count, in order, and the progress
/// row of `org_stats.backfill_state`. Orgs counted by an earlier, interrupted run are skipped.
/// Called by the `org_stats.backfill` procedure.
#[pg_extern(volatile, parallel_unsafe)]
fn backfill_start(tbl: RegClass) -> Vec<String> {
    let t = drift::targets(Some(tbl), "backfill").remove(0);
    security::as_extension_owner(|| {
        let mut orgs = Vec::new();
        sql::once(
            &format!(
                "SELECT {org} FROM {table} WHERE {column} IS NOT NULL \
                 UNION SELECT c.org_id FROM org_stats.counters c WHERE c.table_id OPERATOR(pg_catalog.=) $1 \
                 EXCEPT SELECT s.org_id FROM org_stats.org_state s \
                         WHERE s.table_id OPERATOR(pg_catalog.=) $1 AND s.backfilled_at IS NOT NULL \
                 ORDER BY 1",
                org = t.org_sql(),
                column = quote_identifier(&t.org_column),
                table = t.relid.qualified()
            ),
            &[t.table_id.into()],
            Access::Read,
            |row| orgs.push(row.get::<String>(1).unwrap()),
        );
        sql::kept(
            "INSERT INTO org_stats.backfill_state AS b (table_id, orgs_total, orgs_done, started_at, updated_at) \
             SELECT $1, $2 OPERATOR(pg_catalog.+) d.n, d.n, pg_catalog.now(), pg_catalog.now() \
               FROM (SELECT pg_catalog.count(*) AS n FROM org_stats.org_state s \
                      WHERE s.table_id OPERATOR(pg_catalog.=) $1 AND s.backfilled_at IS NOT NULL) d \
             ON CONFLICT (table_id) DO UPDATE \
             SET orgs_total = excluded.orgs_total, orgs_done = excluded.orgs_done, \
                 updated_at = excluded.updated_at, finished_at = NULL",
            &[t.table_id.into(), (orgs.len() as i64).into()],
            Access::Write,
            |_| {},
        );
        orgs
    })
}

/// Counts one batch of orgs of `tbl` exactly (see `drift`), marks them backfilled and records
/// progress; returns the rows counted. Called by the `org_stats.backfill` procedure, which
/// commits after each batch.
#[pg_extern(volatile, parallel_unsafe)]
fn backfill_batch(tbl: RegClass, orgs: Vec<String>) -> i64 {
    drift::require_read_committed("org_stats.backfill()");
    let t = drift::targets(Some(tbl), "backfill").remove(0);
    security::as_extension_owner(|| {
        if !drift::lock_table(&t) {
            return 0;
        }
        let scan = drift::scan(&t, drift::Orgs::Batch(&orgs), true);
        sql::kept(
            "UPDATE org_stats.backfill_state b \
                SET orgs_done = b.orgs_done OPERATOR(pg_catalog.+) $2, rows_done = b.rows_done OPERATOR(pg_catalog.+) $3, \
                    updated_at = pg_catalog.clock_timestamp() \
              WHERE b.table_id OPERATOR(pg_catalog.=) $1",
            &[t.table_id.into(), (orgs.len() as i64).into(), scan.rows.into()],
            Access::Write,
            |_| {},
        );
        scan.rows
    })
}

/// Marks `tbl` backfilled: from now on every org is answered from the counters.
#[pg_extern(volatile, parallel_unsafe)]
fn backfill_finish(tbl: RegClass) {
    let t = drift::targets(Some(tbl), "backfill").remove(0);
    security::as_extension_owner(|| {
        for statement in [
            "UPDATE org_stats.tracked t SET backfilled_at = pg_catalog.now() WHERE t.table_id OPERATOR(pg_catalog.=) $1",
            "UPDATE org_stats.backfill_state b SET finished_at = pg_catalog.now(), updated_at = pg_catalog.now() \
              WHERE b.table_id OPERATOR(pg_catalog.=) $1",
        ] {
            sql::exec(statement, &[t.table_id.into()]);
        }
    });
}

/// The tracked tables `backfill(tbl)` covers: `tbl`, or every tracked table the caller owns
/// that is not yet backfilled.
#[pg_extern(stable, parallel_safe)]
fn backfill_targets(tbl: Option<RegClass>) -> Vec<pg_sys::Oid> {
    drift::targets(tbl, "backfill")
        .into_iter()
        .filter(|t| tbl.is_some() || !t.counted)
        .map(|t| t.relid.0)
        .collect()
}
