//! Reads: per-status counts (and sums) of one org, of many, or of all of a tracking's orgs, from
//! counter rows found by index probes (see `storage`) plus the backend's own unflushed deltas, on
//! the caller's snapshot. A tracking made with `backfill => false` answers from a live GROUP BY
//! until it is backfilled: slower, never wrong.
//!
//! Every read names what it reads in one of two ways: a `regclass` (0.1.0's functions: the
//! table's default tracking) or `text`, a tracking reference: the name of a tracking, or else
//! a table's name as `regclass` reads it (its default tracking). A call with a string literal,
//! `count_by_status('loads', ...)`, resolves to the `text` functions and so reads the same.

use crate::catalog::registration::{self, Grouping, Lookup};
use crate::catalog::registry;
use crate::catalog::schema;
use crate::counters::deltas::{self, Delta};
use crate::counters::placement::{self, placer, readable, Placement};
use crate::counters::remote;
use crate::counters::storage;
use crate::counters::table_counts;
use crate::pg::errors;
use crate::pg::names::{resolve_with, RegClass};
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::dimensions::{self, Level, Part};
use crate::values::sums::{self, Sum};
use crate::values::text_form;
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::RefCell;

/// How the caller named the tracking to read.
#[derive(Clone, Copy)]
enum Reference<'a> {
    Table(RegClass),
    Text(&'a str),
}

/// What a read shows of a tracking's groups: one status each (a tracking grouped by several
/// columns is refused), or every grouping value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shows {
    /// Per status, by the named function.
    Statuses(&'static str),
    Groups,
}

/// A tracking resolved for reading, the caller's right to read its table checked.
struct Target {
    /// As the caller named it, for errors.
    label: String,
    table_id: i32,
    all_backfilled: bool,
    sum_columns: Vec<String>,
    /// Where its counts are read, or why its reads count live (see `placement::readable_at`).
    kept: Result<Placement, String>,
    /// What its keys hold, if it groups by more than a status column.
    grouping: Option<Grouping>,
    relid: pg_sys::Oid,
}

/// Resolves `reference` on `snapshot`; with `sums`, also learns the summed columns.
fn target(reference: Reference, snapshot: pg_sys::Snapshot, sums: bool, shows: Shows) -> Target {
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
    let label = || match reference {
        Reference::Table(table) => table.display(),
        Reference::Text(name) => name.to_owned(),
    };
    if let (Shows::Statuses(function), Some(grouping)) = (shows, &registration.grouping) {
        if grouping.columns.len() > 1 {
            errors::grouped_by_several(&label(), function);
        }
    }
    Target {
        label: if shows == Shows::Groups {
            label()
        } else {
            String::new()
        },
        grouping: registration.grouping,
        relid: registration.relid,
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
    org_rows(t, org_id, sums, &[], snapshot).0
}

/// `org_totals` of only the key ranges `scans` of a timed tracking (they do not overlap), if its
/// counters are on this node and their collation orders keys (`dimensions::orders_keys`), and
/// whether it read those only; otherwise of all its keys. This backend's unflushed deltas come
/// along either way.
fn org_rows(
    t: &Target,
    org_id: &str,
    sums: bool,
    scans: &[dimensions::Scan],
    snapshot: pg_sys::Snapshot,
) -> (Vec<(Option<String>, Delta)>, bool) {
    let sum_columns = if sums { t.sum_columns.len() } else { 0 };
    // Counted where the table's rows no longer are, or not backfilled yet: a live count, exact
    // and slower.
    let live = t.kept.is_err()
        || (!t.all_backfilled
            && security::as_extension_owner(|| !org_backfilled(t.table_id, org_id)));
    if live {
        let counts = security::as_extension_owner(|| {
            let tracked = registry::find_by_id(t.table_id).expect("registered, as read just above");
            table_counts::group_counts(&tracked, tracked.relid, Some(org_id))
                .into_iter()
                .map(|(_, status, counted)| (status, trimmed(counted, sum_columns)))
                .collect()
        });
        return (counts, false);
    }
    if let Ok(Placement::Remote(counters)) = &t.kept {
        return (
            remote::org_counts(counters, t.table_id, org_id, sum_columns),
            false,
        );
    }
    let counters = storage::counters(pg_sys::AccessShareLock);
    let collation = storage::status_collation(&counters);
    let ranged = !scans.is_empty() && dimensions::orders_keys(collation);
    let read = |statuses| {
        storage::org_counts(
            &counters,
            t.table_id,
            org_id,
            statuses,
            sum_columns,
            snapshot,
        )
    };
    let mut counts = if ranged {
        scans
            .iter()
            .flat_map(|(_, from, to)| read(Some((Some(from.as_str()), Some(to.as_str())))))
            .collect()
    } else {
        read(None)
    };
    for (_, status, delta) in deltas::pending(t.table_id, Some(org_id)) {
        add_in_order(&mut counts, status, trimmed(delta, sum_columns), collation);
    }
    counts.retain(|(_, d)| !d.is_zero());
    (counts, ranged)
}

/// Whether a tracking's key is counted once among all its keys: a day's or a month's total
/// repeats the settled keys' counts (see `dimensions::Level`).
fn counted_once(t: &Target, key: &Option<String>) -> bool {
    t.grouping.is_none()
        || key.as_deref().is_none_or(|key| {
            !matches!(
                dimensions::decode(key).level,
                dimensions::Level::Day | dimensions::Level::Month
            )
        })
}

/// `org_totals` per status: a tracking grouped by its status column and a time bucket keeps a
/// status' counts in one key per bucket, added up here.
fn status_totals(
    t: &Target,
    org_id: &str,
    sums: bool,
    snapshot: pg_sys::Snapshot,
) -> Vec<(Option<String>, Delta)> {
    let counts = org_totals(t, org_id, sums, snapshot);
    if t.grouping.is_none() {
        return counts;
    }
    by_status(counts)
}

/// Counts kept under group keys, per status (the key's only grouping value), in status order.
fn by_status(keyed: Vec<(Option<String>, Delta)>) -> Vec<(Option<String>, Delta)> {
    let mut counts = Vec::new();
    for (key, delta) in keyed {
        let key = dimensions::decode(&key.expect("a group key"));
        if matches!(key.level, dimensions::Level::Day | dimensions::Level::Month) {
            continue;
        }
        let status = key.values.into_iter().next().flatten();
        add_in_order(&mut counts, status, delta, pg_sys::DEFAULT_COLLATION_OID);
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
    let at = counts.partition_point(|(s, _)| ordered(s, &status, collation).is_lt());
    counts.insert(at, (status, delta));
}

/// How two statuses or grouping values order, as ORDER BY orders them: under `collation`, NULL
/// last.
fn ordered(a: &Option<String>, b: &Option<String>, collation: pg_sys::Oid) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(a), Some(b)) => text_form::compare(a, b, collation),
    }
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
            let shows = Shows::Statuses("count_by_status");
            status_totals(
                &target(Reference::Table(table), snapshot, false, shows),
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
            let shows = Shows::Statuses("count_by_status");
            status_totals(
                &target(Reference::Text(tracking), snapshot, false, shows),
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

fn counts_of(
    reference: Reference,
    org_id: &str,
    function: &'static str,
) -> Vec<(Option<String>, Delta)> {
    let snapshot = active_snapshot();
    let t = target(reference, snapshot, false, Shows::Statuses(function));
    status_totals(&t, org_id, false, snapshot)
}

fn total(reference: Reference, org_id: &str) -> i64 {
    // Every group's rows, whatever its columns.
    let snapshot = active_snapshot();
    let t = target(reference, snapshot, false, Shows::Groups);
    org_totals(&t, org_id, false, snapshot)
        .iter()
        .filter(|(key, _)| counted_once(&t, key))
        .map(|(_, d)| d.n)
        .sum()
}

fn of_status(reference: Reference, org_id: &str, status: Option<&str>) -> i64 {
    counts_of(reference, org_id, "count")
        .iter()
        .filter(|(s, _)| s.as_deref() == status)
        .map(|(_, d)| d.n)
        .sum()
}

fn json_counts(reference: Reference, org_id: &str) -> pgrx::JsonB {
    let map: serde_json::Map<String, serde_json::Value> = counts_of(reference, org_id, "counts")
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
    let shows = Shows::Statuses("count_by_status");
    let t = target(Reference::Text(tracking), snapshot, false, shows);
    let mut rows = Vec::new();
    for org in distinct(org_ids) {
        for (status, d) in status_totals(&t, &org, false, snapshot) {
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
    let t = target(
        Reference::Text(tracking),
        snapshot,
        true,
        Shows::Statuses("totals"),
    );
    let rows: Vec<_> = status_totals(&t, org_id, true, snapshot)
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
    let t = target(
        Reference::Text(tracking),
        snapshot,
        true,
        Shows::Statuses("totals"),
    );
    let mut rows = Vec::new();
    for org in distinct(org_ids) {
        for (status, d) in status_totals(&t, &org, true, snapshot) {
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
    let t = target(
        Reference::Text(tracking),
        snapshot,
        true,
        Shows::Statuses("totals"),
    );
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
    if t.grouping.is_some() {
        by_status = self::by_status(by_status);
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

/// One group of `groups()` or `series()`: its bucket's start (`None` for `groups()`, or for the
/// rows whose time is NULL), its grouping values, and its count and sums.
type Group = (Option<i64>, Vec<Option<String>>, Delta);

/// The groups of `org_id`'s rows whose time is in `[since, until)` (`None`: unbounded; rows
/// whose time is NULL only with neither bound), per bucket too if `per_bucket`, in order of
/// bucket (NULL last) then values. Whole buckets are read from the counters; the rows of buckets
/// a bound cuts are counted from the table.
fn groups_of(
    t: &Target,
    org_id: &str,
    since: Option<i64>,
    until: Option<i64>,
    per_bucket: bool,
    snapshot: pg_sys::Snapshot,
) -> Vec<Group> {
    let timed = t.grouping.as_ref().and_then(|g| g.time.as_ref());
    if timed.is_none() && (since.is_some() || until.is_some()) {
        errors::no_time_column(&t.label, "it has no rows between two instants to count");
    }
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            return Vec::new();
        }
    }
    let mut groups: FxHashMap<(Option<i64>, Vec<Option<String>>), Delta> = FxHashMap::default();
    let mut add = |bucket: Option<i64>, values: Vec<Option<String>>, delta: Delta| {
        let bucket = if per_bucket { bucket } else { None };
        groups
            .entry((bucket, values))
            .and_modify(|sum| sum.add(&delta))
            .or_insert(delta);
    };
    let mut cut = Vec::new();
    // Only the keys the bounds may want: ranges of the counters' index.
    let scans = timed.map_or_else(Vec::new, |timed| {
        timed
            .bucketing
            .scans(since, until, timed.instants, per_bucket)
    });
    let (rows, ranged) = org_rows(t, org_id, true, &scans, snapshot);
    for (key, delta) in rows {
        let Some(grouping) = &t.grouping else {
            add(None, vec![key], delta);
            continue;
        };
        let key = dimensions::decode(&key.expect("a group key"));
        if matches!(key.level, Level::Day | Level::Month) {
            // A total read is of a day or month inside the bounds; read otherwise, it repeats
            // settled keys.
            if ranged {
                add(None, key.values, delta);
            }
            continue;
        }
        let bucket = key.bucket.flatten();
        if let Some(timed) = &grouping.time {
            match timed.bucketing.part(bucket, since, until, timed.instants) {
                Part::Whole => {}
                Part::Outside => continue,
                Part::Cut => {
                    cut.push(bucket.expect("only a bucket of times is cut"));
                    continue;
                }
            }
        }
        add(bucket, key.values, delta);
    }
    if let Some(timed) = timed.filter(|_| !cut.is_empty()) {
        for (key, delta) in cut_counts(t, timed, org_id, since, until, cut) {
            let key = dimensions::decode(&key.expect("a group key"));
            add(key.bucket.flatten(), key.values, delta);
        }
    }
    let mut rows: Vec<Group> = groups
        .into_iter()
        .filter(|(_, delta)| !delta.is_zero())
        .map(|((bucket, values), delta)| (bucket, values, delta))
        .collect();
    rows.sort_by(|a, b| {
        // NULL (the rows whose time is NULL) last, as ORDER BY puts it.
        let buckets = match (a.0, b.0) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => x.cmp(&y),
        };
        buckets.then_with(|| compare_values(&a.1, &b.1))
    });
    rows
}

/// Orders grouping values as ORDER BY would, column by column under the database's collation,
/// NULL last.
fn compare_values(a: &[Option<String>], b: &[Option<String>]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = ordered(x, y, pg_sys::DEFAULT_COLLATION_OID);
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The groups, under their keys, of `org_id`'s rows in `[since, until)` that lie in the buckets
/// starting at `cut`, counted from the table.
fn cut_counts(
    t: &Target,
    timed: &registration::Timed,
    org_id: &str,
    since: Option<i64>,
    until: Option<i64>,
    mut cut: Vec<i64>,
) -> Vec<(Option<String>, Delta)> {
    // Adjacent buckets make one range.
    cut.sort_unstable();
    cut.dedup();
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for start in cut {
        let end = timed.bucketing.next(start);
        match ranges.last_mut() {
            Some((_, last_end)) if *last_end == start => *last_end = end,
            _ => ranges.push((start, end)),
        }
    }
    let column = quote_identifier(&timed.column);
    // SAFETY: a timestamp and a timestamptz are both microseconds from 2000-01-01 in an int8.
    let time = |micros: i64, type_oid| unsafe { DatumWithOid::new(micros, type_oid) };
    let mut args = Vec::new();
    let mut param = |value: DatumWithOid<'static>| {
        args.push(value);
        format!("${}", args.len() + 1)
    };
    // One range of the index on (org, time) per run of cut buckets, each within the bounds: for
    // a timestamptz, the bounds cut the range itself; a timestamp or date compares with them in
    // the session's time zone, as the WHERE of the reference does, so they join each range.
    let within: Vec<String> = ranges
        .into_iter()
        .map(|(start, end)| {
            let mut conditions = Vec::new();
            let mut bound = |op: &str, at: i64, type_oid| {
                let p = param(time(at, type_oid));
                conditions.push(format!("{column} OPERATOR(pg_catalog.{op}) {p}"));
            };
            if timed.instants {
                bound(
                    ">=",
                    since.map_or(start, |s| s.max(start)),
                    pg_sys::TIMESTAMPTZOID,
                );
                bound(
                    "<",
                    until.map_or(end, |u| u.min(end)),
                    pg_sys::TIMESTAMPTZOID,
                );
            } else {
                bound(">=", start, pg_sys::TIMESTAMPOID);
                bound("<", end, pg_sys::TIMESTAMPOID);
                if let Some(since) = since {
                    bound(">=", since, pg_sys::TIMESTAMPTZOID);
                }
                if let Some(until) = until {
                    bound("<", until, pg_sys::TIMESTAMPTZOID);
                }
            }
            conditions.join(" AND ")
        })
        .collect();
    let condition = format!("({})", within.join(") OR ("));
    let mut all_args: Vec<DatumWithOid> = vec![org_id.into()];
    all_args.extend(args);
    // Planned once per backend on this node: the statement depends only on the tracking, the
    // table's name, whether its time column is a timestamptz and the shape of the condition,
    // remembered while the registry stays the same.
    let local = matches!(t.kept, Ok(Placement::Local));
    let relation = RegClass(t.relid).qualified();
    let shape = (
        t.table_id,
        format!("{relation} {} {condition}", timed.instants),
    );
    let generation = schema::registry_generation();
    let known = CUT_QUERIES.with(|q| {
        let q = q.borrow();
        (q.0 == generation)
            .then(|| q.1.get(&shape).cloned())
            .flatten()
    });
    security::as_extension_owner(|| {
        let query = known.unwrap_or_else(|| {
            let tracked = registry::find_by_id(t.table_id).expect("registered, as read just above");
            let query = table_counts::org_query_where(&tracked, &condition);
            CUT_QUERIES.with(|q| {
                let mut q = q.borrow_mut();
                if q.0 != generation {
                    *q = (generation, FxHashMap::default());
                }
                q.1.insert(shape, query.clone());
            });
            query
        });
        table_counts::group_counts_of(&query, &all_args, local)
    })
}

/// Statements by tracking and condition.
type Statements = FxHashMap<(i32, String), String>;

thread_local! {
    /// The statements `cut_counts` ran, and the registry generation they were built at (see
    /// `schema::registry_generation`).
    static CUT_QUERIES: RefCell<(u64, Statements)> = RefCell::new((0, FxHashMap::default()));
}

/// An instant as microseconds from 2000-01-01 UTC.
fn micros(instant: Option<TimestampWithTimeZone>) -> Option<i64> {
    instant.map(i64::from)
}

/// Counts and sums of one org per combination of the tracking's grouping values, of its rows
/// whose time is in `[since, until)`: equal to a GROUP BY of the table's rows with
/// `time >= since AND time < until` (a NULL bound: none; rows whose time is NULL count only with
/// neither bound). `key` holds the grouping values in the order `group_by` gave them.
#[pg_extern(stable, parallel_restricted)]
fn groups(
    tracking: Option<&str>,
    org_id: Option<&str>,
    since: default!(Option<TimestampWithTimeZone>, "NULL"),
    until: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(key, Vec<Option<String>>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let (Some(tracking), Some(org_id)) = (tracking, org_id) else {
        return TableIterator::new(Vec::new());
    };
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true, Shows::Groups);
    let rows: Vec<_> = groups_of(&t, org_id, micros(since), micros(until), false, snapshot)
        .into_iter()
        .map(|(_, values, d)| (values, d.n, sums_json(&t, &d.sums)))
        .collect();
    TableIterator::new(rows)
}

/// `groups()` of many orgs at once: (org_id, key, count, sums).
#[pg_extern(stable, parallel_restricted, name = "groups")]
fn groups_of_orgs(
    tracking: Option<&str>,
    org_ids: Option<Vec<Option<String>>>,
    since: default!(Option<TimestampWithTimeZone>, "NULL"),
    until: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(org_id, String),
        name!(key, Vec<Option<String>>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let (Some(tracking), Some(org_ids)) = (tracking, org_ids) else {
        return TableIterator::new(Vec::new());
    };
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true, Shows::Groups);
    let mut rows = Vec::new();
    for org in distinct(org_ids) {
        for (_, values, d) in groups_of(&t, &org, micros(since), micros(until), false, snapshot) {
            rows.push((org.clone(), values, d.n, sums_json(&t, &d.sums)));
        }
    }
    TableIterator::new(rows)
}

/// `groups()` per bucket as well: one row per bucket with rows, by the bucket's start, in order;
/// a bucket a bound cuts counts only its rows within the bounds.
#[pg_extern(stable, parallel_restricted)]
#[allow(clippy::type_complexity)] // pgrx reads the row type from the signature
fn series(
    tracking: Option<&str>,
    org_id: Option<&str>,
    since: Option<TimestampWithTimeZone>,
    until: Option<TimestampWithTimeZone>,
) -> TableIterator<
    'static,
    (
        name!(bucket, Option<TimestampWithTimeZone>),
        name!(key, Vec<Option<String>>),
        name!(count, i64),
        name!(sums, pgrx::JsonB),
    ),
> {
    let (Some(tracking), Some(org_id)) = (tracking, org_id) else {
        return TableIterator::new(Vec::new());
    };
    let snapshot = active_snapshot();
    let t = target(Reference::Text(tracking), snapshot, true, Shows::Groups);
    let Some(timed) = t.grouping.as_ref().and_then(|g| g.time.as_ref()) else {
        errors::no_time_column(&t.label, "it has no series of buckets");
    };
    let instants = timed.instants;
    let rows: Vec<_> = groups_of(&t, org_id, micros(since), micros(until), true, snapshot)
        .into_iter()
        .map(|(bucket, values, d)| {
            let bucket = bucket.map(|start| bucket_instant(start, instants));
            (bucket, values, d.n, sums_json(&t, &d.sums))
        })
        .collect();
    TableIterator::new(rows)
}

/// The instant a bucket starts: its start itself for a `timestamptz` column; for a `timestamp`
/// or `date` column, its local start as a `timestamptz` in the session's time zone, as a cast
/// would make it.
fn bucket_instant(start: i64, instants: bool) -> TimestampWithTimeZone {
    let instant = if instants {
        start
    } else {
        // SAFETY: timestamp_timestamptz takes a timestamp and returns a timestamptz, by value.
        unsafe {
            pgrx::direct_function_call::<i64>(
                pg_sys::timestamp_timestamptz,
                &[Some(pg_sys::Datum::from(start))],
            )
        }
        .expect("a timestamptz")
    };
    TimestampWithTimeZone::try_from(instant).expect("a bucket within the timestamps' range")
}
