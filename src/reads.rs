//! Reads: per-status counts of one org, from a handful of counter rows found by one index probe
//! (see `storage`) plus the backend's own unflushed deltas, on the caller's snapshot. A table tracked with
//! `backfill => false` answers from a live GROUP BY until it is backfilled: slower, never wrong.

use crate::backfill;
use crate::deltas;
use crate::errors;
use crate::registry::{self, RegClass};
use crate::security;
use crate::sql::{self, Access};
use crate::storage;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// The non-zero (status, count) pairs of `org_id` in `table`, ordered by status, NULL last.
fn status_counts(table: RegClass, org_id: &str) -> Vec<(Option<String>, i64)> {
    if !security::can_read(table.0) {
        errors::cannot_read(&table.display());
    }
    security::require_rls_allows_counts(table);
    // SAFETY: SQL functions run with their statement's snapshot active.
    let snapshot = unsafe { pg_sys::GetActiveSnapshot() };
    let Some((table_id, all_backfilled)) = storage::registration(table.0, snapshot) else {
        errors::not_tracked(&table.display());
    };
    if !all_backfilled {
        let live = security::as_extension_owner(|| {
            // Not backfilled yet: a live count, exact and slower.
            (!org_backfilled(table_id, org_id)).then(|| {
                let tracked = registry::find(table, None).expect("registered, as read just above");
                backfill::group_counts(&tracked, table, Some(org_id))
                    .into_iter()
                    .map(|(_, status, n)| (status, n))
                    .collect()
            })
        });
        if let Some(counts) = live {
            return counts;
        }
    }
    let counters = storage::counters(pg_sys::AccessShareLock);
    let mut counts = storage::org_counts(&counters, table_id, org_id, snapshot);
    let collation = storage::status_collation(&counters);
    for (status, delta) in deltas::pending_for_org(table_id, org_id) {
        add_in_order(&mut counts, status, delta, collation);
    }
    counts.retain(|(_, n)| *n != 0);
    counts
}

/// Whether `org_id`'s rows of a table still being backfilled are counted already.
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

/// Adds a backend's unflushed delta to counts ordered by status under `collation`, NULL last.
fn add_in_order(
    counts: &mut Vec<(Option<String>, i64)>,
    status: Option<String>,
    delta: i64,
    collation: pg_sys::Oid,
) {
    if let Some((_, n)) = counts.iter_mut().find(|(s, _)| *s == status) {
        *n += delta;
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

/// `count_by_status(tbl regclass, org_id text) RETURNS TABLE (status text, count bigint)`
/// (declared in sql/reads.sql): rows of `org_id` in `tbl` per status, statuses with no rows
/// omitted. Written to the C calling convention instead of `#[pg_extern]` because pgrx returns a
/// table one row per call (value-per-call mode), each call building a tuple PostgreSQL then copies
/// into a tuplestore; handing it the filled tuplestore in one call (materialize mode) is about a
/// sixth of a read.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn count_by_status_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: called by PostgreSQL as a STRICT function of (regclass, text); rsinfo is checked
    // before use; the tuplestore and its descriptor live in the query's memory, as the caller
    // reads them after this returns.
    unsafe {
        let table = pgrx::fcinfo::pg_getarg::<RegClass>(fcinfo, 0).expect("STRICT");
        let org_id = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1).expect("STRICT");
        let rsinfo = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
        let materialize = pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32;
        if rsinfo.is_null()
            || (*rsinfo).type_ != pg_sys::NodeTag::T_ReturnSetInfo
            || (*rsinfo).allowedModes & materialize == 0
            || (*rsinfo).expectedDesc.is_null()
        {
            errors::set_not_accepted("count_by_status");
        }
        let counts = status_counts(table, org_id);
        let caller = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
        let desc = pg_sys::CreateTupleDescCopy((*rsinfo).expectedDesc);
        let random = (*rsinfo).allowedModes
            & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32
            != 0;
        let rows = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
        pg_sys::MemoryContextSwitchTo(caller);
        for (status, count) in counts {
            let mut nulls = [status.is_none(), false];
            let mut values = [
                status.into_datum().unwrap_or(pg_sys::Datum::from(0)),
                count.into(),
            ];
            pg_sys::tuplestore_putvalues(rows, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
        }
        (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
        (*rsinfo).setResult = rows;
        (*rsinfo).setDesc = desc;
        (*fcinfo).isnull = true;
        pg_sys::Datum::from(0)
    }
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_count_by_status_wrapper() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
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
