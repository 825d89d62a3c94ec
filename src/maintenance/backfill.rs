//! Counting rows that already exist: in one pass when a table is tracked, or online, a batch of
//! orgs per transaction, for `track(..., backfill => false)` followed by `CALL org_stats.backfill()`.

use crate::catalog::registry::Tracked;
use crate::counters::placement::{moved, placer};
use crate::maintenance::drift;
use crate::maintenance::relocate::relocate;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// The tracking a backfill step works on (`tracking` as `backfill_targets` gave it), if the
/// caller owns its table.
fn target(tracking: &str) -> Tracked {
    drift::targets_named(Some(tracking), "backfill").remove(0)
}

/// Starts (or resumes) the backfill of a tracking: the orgs still to count, in order, and the
/// progress row of `org_stats.backfill_state`. Orgs counted by an earlier, interrupted run are
/// skipped. A tracking counted where its table's rows no longer are (Citus moved them) starts
/// over where they are, all its orgs to count. Called by the `org_stats.backfill` procedure.
#[pg_extern(volatile, strict, parallel_unsafe, name = "backfill_start")]
fn backfill_start_tracking(tracking: &str) -> Vec<String> {
    let t = target(tracking);
    security::as_extension_owner(|| {
        if moved(&t) {
            relocate(&t, true);
        }
        let Some(counters) = placer()
            .placement(t.relid, &t.org_column)
            .counters()
            .map(str::to_owned)
        else {
            return Vec::new();
        };
        let mut orgs = Vec::new();
        sql::once(
            &format!(
                "SELECT {org} FROM {table} WHERE {column} IS NOT NULL \
                 UNION SELECT c.org_id FROM {counters} c WHERE c.table_id OPERATOR(pg_catalog.=) $1 \
                 EXCEPT SELECT s.org_id FROM org_stats.org_state s \
                         WHERE s.table_id OPERATOR(pg_catalog.=) $1 AND s.backfilled_at IS NOT NULL \
                 ORDER BY 1",
                org = t.org_sql(),
                column = quote_identifier(&t.org_column),
                table = t.relid.qualified(),
                counters = counters,
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
#[pg_extern(volatile, strict, parallel_unsafe, name = "backfill_batch")]
fn backfill_batch_tracking(tracking: &str, orgs: Vec<String>) -> i64 {
    drift::require_read_committed("org_stats.backfill()");
    let t = target(tracking);
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

/// Marks a tracking backfilled: from now on every org is answered from the counters.
#[pg_extern(volatile, strict, parallel_unsafe, name = "backfill_finish")]
fn backfill_finish_tracking(tracking: &str) {
    let t = target(tracking);
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

/// The trackings `backfill(tbl)` covers, as references the steps above take: every tracking of
/// `tbl`, or every tracking of a table the caller owns that is not yet backfilled or that Citus
/// moved.
#[pg_extern(stable, parallel_safe, name = "backfill_targets")]
fn trackings_to_backfill(tbl: Option<RegClass>) -> Vec<String> {
    drift::targets(tbl, "backfill")
        .into_iter()
        .filter(|t| tbl.is_some() || !t.counted || moved(t))
        .map(|t| t.reference())
        .collect()
}
