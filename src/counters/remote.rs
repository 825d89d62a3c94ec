//! Counters tables other than `org_stats.counters`, read and written with SQL (on Citus, where
//! the tables are distributed, Citus routes each statement to the nodes holding the orgs it
//! names): the reads of a remote placement, the additions maintenance makes there, and removing
//! a tracking's counters from wherever they are kept.

use crate::counters::deltas::Delta;
use crate::counters::placement::{placer, Placement};
use crate::counters::pool::MAINTENANCE_SLOT;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::sums;

/// The non-zero counts of one org of a tracking in remote `counters`, per status (NULL last),
/// with the sums of its first `sum_columns` summed columns: one query (on Citus, routed to the
/// node holding the org).
pub fn org_counts(
    counters: &str,
    table_id: i32,
    org_id: &str,
    sum_columns: usize,
) -> Vec<(Option<String>, Delta)> {
    let query = format!(
        "SELECT c.status, pg_catalog.sum(c.n)::pg_catalog.int8, {sums} FROM {counters} c \
          WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
          GROUP BY c.status HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0 ORDER BY c.status",
        sums = sums::total_sql("c.sums", sum_columns),
    );
    let mut counts = Vec::new();
    // As the extension owner: the caller's right to read the table was checked, not the counters'.
    security::as_extension_owner(|| {
        sql::once(
            &query,
            &[org_id.into(), table_id.into()],
            Access::Read,
            |row| counts.push((row.get(1), counted(row.get(2), row.get(3)))),
        )
    });
    counts
}

/// The non-zero counts of every org of a tracking in remote `counters`, per (org, status), with
/// the sums of its first `sum_columns` summed columns (on Citus, a query on every node).
pub fn all_counts(
    counters: &str,
    table_id: i32,
    sum_columns: usize,
) -> Vec<(String, Option<String>, Delta)> {
    let query = format!(
        "SELECT c.org_id, c.status, pg_catalog.sum(c.n)::pg_catalog.int8, {sums} FROM {counters} c \
          WHERE c.table_id OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2 \
         HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0",
        sums = sums::total_sql("c.sums", sum_columns),
    );
    let mut rows = Vec::new();
    // As `org_counts`.
    security::as_extension_owner(|| {
        sql::once(&query, &[table_id.into()], Access::Read, |row| {
            rows.push((
                row.get(1).unwrap(),
                row.get(2),
                counted(row.get(3), row.get(4)),
            ))
        })
    });
    rows
}

/// A count and its sums as read from remote counters.
fn counted(n: Option<i64>, sums: Option<Vec<pgrx::AnyNumeric>>) -> Delta {
    Delta {
        n: n.unwrap(),
        sums: sums::from_numerics(sums),
    }
}

/// Adds `changes` ((org, status, delta) of one tracking with `sum_columns` summed columns) to
/// remote `counters`: what backfill and repairs add, in one statement, in the slot writers leave
/// to maintenance.
pub fn add(
    counters: &str,
    table_id: i32,
    sum_columns: usize,
    changes: &[(String, Option<String>, Delta)],
) {
    if changes.is_empty() {
        return;
    }
    let orgs: Vec<String> = changes.iter().map(|c| c.0.clone()).collect();
    let statuses: Vec<Option<String>> = changes.iter().map(|c| c.1.clone()).collect();
    let counts: Vec<i64> = changes.iter().map(|c| c.2.n).collect();
    let sums: Vec<Option<String>> = changes.iter().map(|c| sums::to_text(&c.2.sums)).collect();
    sql::exec(
        &format!(
            "INSERT INTO {counters} AS c (org_id, table_id, status, slot, n, sums) \
             SELECT u.org_id, $2, u.status, $3, u.n, u.sums::pg_catalog.numeric[] \
               FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                               pg_catalog.unnest($5::pg_catalog.int8[]), pg_catalog.unnest($6::pg_catalog.text[])) \
                    AS u(org_id, status, n, sums) \
             ON CONFLICT (org_id, table_id, status, slot) DO UPDATE \
             SET n = c.n OPERATOR(pg_catalog.+) excluded.n, sums = {sums}",
            sums = sums::plus_sql("c.sums", "excluded.sums", sum_columns),
        ),
        &[
            orgs.into(),
            table_id.into(),
            MAINTENANCE_SLOT.into(),
            statuses.into(),
            counts.into(),
            sums.into(),
        ],
    );
}

/// Removes every counter of a tracking from a counters table.
pub fn forget(counters: &str, table_id: i32) {
    sql::exec(
        &format!("DELETE FROM {counters} c WHERE c.table_id OPERATOR(pg_catalog.=) $1"),
        &[table_id.into()],
    );
}

/// Removes every counter of a tracking, from `org_stats.counters` and every remote counters
/// table, but for those at `keep`.
pub fn forget_all_but(table_id: i32, keep: &Placement) {
    let remote = placer()
        .counters_tables()
        .into_iter()
        .map(Placement::Remote);
    for placement in std::iter::once(Placement::Local).chain(remote) {
        if !placement.same_as(keep) {
            forget(placement.counters().expect("a counters table"), table_id);
        }
    }
}

/// Removes every counter of a tracking, wherever it is kept. Run as the extension owner.
pub fn forget_everywhere(table_id: i32) {
    forget_all_but(table_id, &Placement::Nowhere(String::new()));
}
