//! Reads: per-status counts (and sums) of one org, of many, or of all of a tracking's orgs, from
//! counter rows found by index probes (see `storage`) plus the backend's own unflushed deltas, on
//! the caller's snapshot. A tracking made with `backfill => false` answers from a live GROUP BY
//! until it is backfilled: slower, never wrong.
//!
//! Every read names what it reads in one of two ways: a `regclass` (0.1.0's functions: the
//! table's default tracking) or `text`, a tracking reference: the name of a tracking, or else
//! a table's name as `regclass` reads it (its default tracking). A call with a string literal,
//! `count_by_status('loads', ...)`, resolves to the `text` functions and so reads the same.

use crate::catalog::registration::{self, Lookup};
use crate::catalog::registry;
use crate::counters::deltas::{self, Delta};
use crate::counters::placement::{self, placer, readable, Placement};
use crate::counters::remote;
use crate::counters::storage;
use crate::counters::table_counts;
use crate::pg::errors;
use crate::pg::names::{resolve_with, RegClass};
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::sums::{self, Sum};
use pgrx::pg_sys;
use pgrx::prelude::*;
use rustc_hash::FxHashSet;

/// How the caller named the tracking to read.
#[derive(Clone, Copy)]
enum Reference<'a> {
    Table(RegClass),
    Text(&'a str),
}

/// A tracking resolved for reading, the caller's right to read its table checked.
struct Target {
    table_id: i32,
    all_backfilled: bool,
    sum_columns: Vec<String>,
    /// Where its counts are read, or why its reads count live (see `placement::readable_at`).
    kept: Result<Placement, String>,
}

/// Resolves `reference` on `snapshot`; with `sums`, also learns the summed columns.
fn target(reference: Reference, snapshot: pg_sys::Snapshot, sums: bool) -> Target {
    let registration = match reference {
        Reference::Table(table) => {
            require_readable(table);
            registration::registration(Lookup::Table(table.0), snapshot, sums).unwrap_or_else(
                || {
                    placer().refuse_read_here(table);
                    errors::not_tracked(&table.display())
                },
            )
        }
        Reference::Text(name) => {
            let registration = resolve_with(
                name,
                |name| registration::registration(Lookup::Name(name), snapshot, sums),
                |table| {
                    let found = registration::registration(Lookup::Table(table.0), snapshot, sums);
                    if found.is_none() {
                        placer().refuse_read_here(table);
                    }
                    found
                },
            );
            require_readable(RegClass(registration.relid));
            registration
        }
    };
    let relid = RegClass(registration.relid);
    Target {
        kept: placement::readable_at(
            relid,
            &registration.org_column,
            registration.counted_in.as_deref(),
        ),
        table_id: registration.table_id,
        all_backfilled: registration.all_backfilled,
        sum_columns: registration.sum_columns,
    }
}

fn require_readable(table: RegClass) {
    if !security::can_read(table.0) {
        errors::cannot_read(&table.display());
    }
    security::require_rls_allows_counts(table);
}

fn active_snapshot() -> pg_sys::Snapshot {
    // SAFETY: SQL functions run with their statement's snapshot active.
    unsafe { pg_sys::GetActiveSnapshot() }
}

/// The non-zero (status, count and, with `sums`, sums) of `org_id` in a tracking, ordered by
/// status, NULL last.
fn org_totals(
    t: &Target,
    org_id: &str,
    sums: bool,
    snapshot: pg_sys::Snapshot,
) -> Vec<(Option<String>, Delta)> {
    let sum_columns = if sums { t.sum_columns.len() } else { 0 };
    // Counted where the table's rows no longer are, or not backfilled yet: a live count, exact
    // and slower.
    let live = t.kept.is_err()
        || (!t.all_backfilled
            && security::as_extension_owner(|| !org_backfilled(t.table_id, org_id)));
    if live {
        return security::as_extension_owner(|| {
            let tracked = registry::find_by_id(t.table_id).expect("registered, as read just above");
            table_counts::group_counts(&tracked, tracked.relid, Some(org_id))
                .into_iter()
                .map(|(_, status, counted)| (status, trimmed(counted, sum_columns)))
                .collect()
        });
    }
    if let Ok(Placement::Remote(counters)) = &t.kept {
        return remote::org_counts(counters, t.table_id, org_id, sum_columns);
    }
    let counters = storage::counters(pg_sys::AccessShareLock);
    let mut counts = storage::org_counts(&counters, t.table_id, org_id, sum_columns, snapshot);
    let collation = storage::status_collation(&counters);
    for (_, status, delta) in deltas::pending(t.table_id, Some(org_id)) {
        add_in_order(&mut counts, status, trimmed(delta, sum_columns), collation);
    }
    counts.retain(|(_, d)| !d.is_zero());
    counts
}

/// A delta with sums of `sum_columns` columns only (none for a count).
fn trimmed(mut delta: Delta, sum_columns: usize) -> Delta {
    delta.sums.resize(sum_columns, Sum::default());
    delta
}

/// Whether `org_id`'s rows of a tracking still being backfilled are counted already.
fn org_backfilled(table_id: i32, org_id: &str) -> bool {
    let mut backfilled = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) $1 \
                           AND s.org_id OPERATOR(pg_catalog.=) $2 AND s.backfilled_at IS NOT NULL)",
        &[table_id.into(), org_id.into()],
        Access::Read,
        |row| backfilled = row.get(1).unwrap(),
    );
    backfilled
}

/// Adds `delta` to the counts of `status`, kept ordered by status under `collation`, NULL last.
fn add_in_order(
    counts: &mut Vec<(Option<String>, Delta)>,
    status: Option<String>,
    delta: Delta,
    collation: pg_sys::Oid,
) {
    if let Some((_, counted)) = counts.iter_mut().find(|(s, _)| *s == status) {
        counted.add(&delta);
        return;
    }
    let before = |s: &Option<String>| match (s, &status) {
        (_, None) => true,
        (None, Some(_)) => false,
        // SAFETY: both are valid strings; varstr_cmp compares them under an existing collation.
        (Some(a), Some(b)) => unsafe {
            pg_sys::varstr_cmp(
                a.as_ptr().cast(),
                a.len() as i32,
                b.as_ptr().cast(),
                b.len() as i32,
                collation,
            ) < 0
        },
    };
    let at = counts.partition_point(|(s, _)| before(s));
    counts.insert(at, (status, delta));
}

/// Fills the set a materialize-mode table function returns with `rows` of (status, count).
///
/// # Safety
/// `fcinfo` is the call of a function returning TABLE (status text, count bigint).
unsafe fn return_counts(
    fcinfo: pg_sys::FunctionCallInfo,
    function: &str,
    rows: impl FnOnce() -> Vec<(Option<String>, Delta)>,
) -> pg_sys::Datum {
    let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
    let materialize = pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32;
    if rsinfo.is_null()
        || (*rsinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo
        || (*rsinfo).allowedModes & materialize == 0
        || (*rsinfo).expectedDesc.is_null()
    {
        errors::set_not_accepted(function);
    }
    let counts = rows();
    // The tuplestore and its descriptor live in the query's memory, as the caller reads them
    // after this returns.
    let caller = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
    let desc = pg_sys::CreateTupleDescCopy((*rsinfo).expectedDesc);
    let random =
        (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32 != 0;
    let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
    pg_sys::MemoryContextSwitchTo(caller);
    for (status, counted) in counts {
        let mut nulls = [status.is_none(), false];
        let mut values = [
            status.into_datum().unwrap_or(pg_sys::Datum::from(0)),
            counted.n.into(),
        ];
        pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
    }
    (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
    (*rsinfo).setResult = store;
    (*rsinfo).setDesc = desc;
    (*fcinfo).isnull = true;
    pg_sys::Datum::from(0)
}

/// `count_by_status(tbl regclass, org_id text)` and `count_by_status(tracking text, org_id
/// text)`, both `RETURNS TABLE (status text, count bigint)` (declared in sql/reads.sql): rows of
/// `org_id` per status, statuses with no rows omitted. Written to the C calling convention
/// instead of `#[pg_extern]` because pgrx returns a table one row per call (value-per-call mode),
/// each call building a tuple PostgreSQL then copies into a tuplestore; handing it the filled
/// tuplestore in one call (materialize mode) is about a sixth of a read.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn count_by_status_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by PostgreSQL as a STRICT function of (regclass, text).
    unsafe {
        let table = pgrx::fcinfo::pg_getarg::<RegClass>(fcinfo, 0).expect("STRICT");
        let org_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1).expect("STRICT");
        return_counts(fcinfo, "count_by_status", || {
            let snapshot = active_snapshot();
            org_totals(
                &target(Reference::Table(table), snapshot, false),
                org_id,
                false,
                snapshot,
            )
        })
    }
}

/// The `text` variant of `count_by_status_wrapper`.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn count_by_status_of_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by PostgreSQL as a STRICT function of (text, text).
    unsafe {
        let tracking = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 0).expect("STRICT");
        let org_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1).expect("STRICT");
        return_counts(fcinfo, "count_by_status", || {
            let snapshot = active_snapshot();
            org_totals(
                &target(Reference::Text(tracking), snapshot, false),
                org_id,
                false,
                snapshot,
            )
        })
    }
}

const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_count_by_status_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1_API
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_count_by_status_of_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1_API
}

fn counts_of(reference: Reference, org_id: &str) -> Vec<(Option<String>, Delta)> {
    let snapshot = active_snapshot();
    org_totals(&target(reference, snapshot, false), org_id, false, snapshot)
}

fn total(reference: Reference, org_id: &str) -> i64 {
    counts_of(reference, org_id).iter().map(|(_, d)| d.n).sum()
}

fn of_status(reference: Reference, org_id: &str, status: Option<&str>) -> i64 {
    counts_of(reference, org_id)
        .iter()
        .filter(|(s, _)| s.as_deref() == status)
        .map(|(_, d)| d.n)
        .sum()
}

fn json_counts(reference: Reference, org_id: &str) -> pgrx::JsonB {
    let map: serde_json::Map<String, serde_json::Value> = counts_of(reference, org_id)
        .into_iter()
        .filter_map(|(status, d)| Some((status?, d.n.into())))
        .collect();
    pgrx::JsonB(serde_json::Value::Object(map))
}

/// All rows of `org_id` in `tbl`.
#[pg_extern(stable, strict, parallel_restricted, name = "count")]
fn count_all(tbl: RegClass, org_id: &str) -> i64 {
    total(Reference::Table(tbl), org_id)
}

/// All rows of `org_id` that `tracking` counts.
#[pg_extern(stable, strict, parallel_restricted, name = "count")]
fn count_all_of(tracking: &str, org_id: &str) -> i64 {
    total(Reference::Text(tracking), org_id)
}

/// Rows of `org_id` in `tbl` whose status is `status`; a NULL `status` counts the rows whose
/// status is NULL.
#[pg_extern(stable, parallel_restricted, name = "count")]
fn count_status(tbl: Option<RegClass>, org_id: Option<&str>, status: Option<&str>) -> Option<i64> {
    Some(of_status(Reference::Table(tbl?), org_id?, status))
}

/// Rows of `org_id` that `tracking` counts whose status is `status` (NULL: the NULL status).
#[pg_extern(stable, parallel_restricted, name = "count")]
fn count_status_of(
    tracking: Option<&str>,
    org_id: Option<&str>,
    status: Option<&str>,
) -> Option<i64> {
    Some(of_status(Reference::Text(tracking?), org_id?, status))
}

/// `{"Open": 12, "Delivered": 3}`; the NULL status, which has no JSON key, is left out.
#[pg_extern(stable, strict, parallel_restricted)]
fn counts(tbl: RegClass, org_id: &str) -> pgrx::JsonB {
    json_counts(Reference::Table(tbl), org_id)
}

/// `counts()` of a tracking.
#[pg_extern(stable, strict, parallel_restricted, name = "counts")]
fn counts_by_tracking(tracking: &str, org_id: &str) -> pgrx::JsonB {
    json_counts(Reference::Text(tracking), org_id)
}

fn sums_json(t: &Target, sums: &[Sum]) -> pgrx::JsonB {
    sums::json_object(&t.sum_columns, sums)
}

/// The orgs of `org_ids`, each once, in the order given; NULL elements name no org.
fn distinct(org_ids: Vec<Option<String>>) -> Vec<String> {
    let mut seen = FxHashSet::default();
    org_ids
        .into_iter()
        .flatten()
        .filter(|org| seen.insert(org.clone()))
        .collect()
}

/// Counts of many orgs at once: (org_id, status, count), one index probe per org.
#[pg_extern(stable, strict, parallel_restricted, name = "count_by_status")]
fn count_by_status_of_orgs(
    tracking: &str,
    org_ids: Vec<Option<String>>,
) -> TableIterator<
    'static,
    (
        name!(org_id, String),
        name!(status, Option<String>),
        name!(count, i64),
    ),
> {
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, false);
    let mut rows = Vec::new();
    for org in distinct(org_ids) {
        for (status, d) in org_totals(&t, &org, false, snapshot) {
            rows.push((org.clone(), status, d.n));
        }
    }
    TableIterator::new(rows)
}

/// Counts and sums of one org per status: (status, count, sums), sums as `{"column": sum}`.
#[pg_extern(stable, strict, parallel_restricted)]
fn totals(
    tracking: &str,
    org_id: &str,
) -> TableIterator<
    'static,
    (
        name!(status, Option<String>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true);
    let rows: Vec<_> = org_totals(&t, org_id, true, snapshot)
        .into_iter()
        .map(|(status, d)| (status, d.n, sums_json(&t, &d.sums)))
        .collect();
    TableIterator::new(rows)
}

/// `totals()` of many orgs at once: (org_id, status, count, sums).
#[pg_extern(stable, strict, parallel_restricted, name = "totals")]
fn totals_of_orgs(
    tracking: &str,
    org_ids: Vec<Option<String>>,
) -> TableIterator<
    'static,
    (
        name!(org_id, String),
        name!(status, Option<String>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true);
    let mut rows = Vec::new();
    for org in distinct(org_ids) {
        for (status, d) in org_totals(&t, &org, true, snapshot) {
            rows.push((org.clone(), status, d.n, sums_json(&t, &d.sums)));
        }
    }
    TableIterator::new(rows)
}

/// Counts and sums per status over every org of a tracking, from the counters (all of its counter
/// rows, found through their index on the tracking), not from the table.
#[pg_extern(stable, strict, parallel_restricted, name = "totals")]
fn totals_of_all(
    tracking: &str,
) -> TableIterator<
    'static,
    (
        name!(status, Option<String>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true);
    let sum_columns = t.sum_columns.len();
    let counters = storage::counters(pg_sys::AccessShareLock);
    let collation = storage::status_collation(&counters);
    let rows = if let (true, Ok(Placement::Remote(counters))) = (t.all_backfilled, &t.kept) {
        remote::all_counts(counters, t.table_id, sum_columns)
    } else if t.all_backfilled && t.kept.is_ok() {
        let mut rows = storage::all_counts(t.table_id, sum_columns, snapshot);
        rows.extend(deltas::pending(t.table_id, None));
        rows
    } else {
        // Not every org is backfilled yet, or counted where the rows no longer are: a live
        // count, exact and slower.
        security::as_extension_owner(|| {
            let tracked = registry::find_by_id(t.table_id).expect("registered, as read just above");
            table_counts::group_counts(&tracked, tracked.relid, None)
        })
    };
    let mut by_status = Vec::new();
    for (_, status, delta) in rows {
        add_in_order(
            &mut by_status,
            status,
            trimmed(delta, sum_columns),
            collation,
        );
    }
    by_status.retain(|(_, d)| !d.is_zero());
    TableIterator::new(
        by_status
            .into_iter()
            .map(|(status, d)| (status, d.n, sums_json(&t, &d.sums)))
            .collect::<Vec<_>>(),
    )
}

/// Why reads of tracking `table_id` count its table's rows live instead of reading its counters
/// (see `placement::readable`); NULL when they read its counters, or when there is no such tracking. What
/// `org_stats.health` shows as `live_reason`.
#[pg_extern(stable, strict, parallel_restricted)]
fn live_reason(table_id: i32) -> Option<String> {
    let t = security::as_extension_owner(|| registry::find_by_id_read(table_id))?;
    readable(&t).err()
}
