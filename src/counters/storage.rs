//! The counters of org_stats.counters, or of another counters table of its layout on this node
//! (a Citus counters shard), opened for the hot paths (see `pg::access`): the table and its key
//! (org_id, table_id, status, slot), the index entries of a row written directly, and one org's
//! or every org's counts of a tracking.

use crate::catalog::schema::{self, Own, Schema};
use crate::counters::deltas::Delta;
use crate::counters::placement::{self, Place};
use crate::pg::access::{column, value, Indexed, Key};
use crate::pg::compat;
use crate::pg::errors;
use crate::pg::sql::{self, Access};
use crate::values::sums;
use pgrx::pg_sys;

/// The number of columns of `org_stats.counters`: the key (org_id, table_id, status, slot), then
/// `n`, the count, and `sums`, the summed columns' sums (see `sums`).
const COUNTER_COLUMNS: usize = 6;
pub const N_COLUMN: i32 = 5;
pub const SUMS_COLUMN: i32 = 6;

/// `org_stats.counters` through its key (org_id, table_id, status, slot), locked in `mode`.
pub fn counters(mode: u32) -> Indexed {
    counters_at(Place::Local, mode)
}

/// The counters at `place` through their key, locked in `mode`.
pub fn counters_at(place: Place, mode: u32) -> Indexed {
    let counters = match place {
        Place::Local => schema::open(Own::Counters, Own::CountersKey, mode),
        Place::Shard { heap } => {
            let (heap, key) = placement::placer().shard_with_key(heap.into());
            Indexed::open(heap, key, mode)
        }
    };
    // SAFETY: the relation is open.
    let natts = unsafe { (*(*counters.heap).rd_att).natts } as usize;
    // 0.1.0's counters have no sums (see `schema`).
    assert!(
        natts == COUNTER_COLUMNS || natts + 1 == COUNTER_COLUMNS,
        "org_stats.counters has the columns of this version or of 0.1.0"
    );
    counters
}

/// Refuses to write counters that direct writes would not keep right: another table access method
/// than heap (the default one at CREATE EXTENSION), or triggers or rules, which a direct write
/// would not fire. Indexes added by hand are kept current (see `insert_index_entries`).
pub fn require_direct_writes(counters: &Indexed) {
    // SAFETY: the relation is open.
    let (heap, plain) = unsafe {
        let rel = counters.heap;
        (
            (*(*rel).rd_rel).relam == pg_sys::HEAP_TABLE_AM_OID,
            (*rel).trigdesc.is_null() && (*rel).rd_rules.is_null(),
        )
    };
    if !(heap && plain) {
        errors::counters_altered("is no longer a plain heap table without triggers or rules");
    }
}

/// Adds index entries for a counter row just written to the heap (`which`: all for an insert or
/// an update that could not stay HOT, only summarizing ones for a HOT update on 17 and later),
/// to the key index and to any index added by hand, as the executor would. `key_unchanged`
/// tells the key index that the key of an updated row is the same, so it may drop the old
/// versions' entries early.
///
/// # Safety
/// `tuple` is a row of the counters, just written by this transaction.
pub unsafe fn insert_index_entries(
    counters: &Indexed,
    tuple: pg_sys::HeapTuple,
    which: compat::NewEntries,
    key_unchanged: bool,
) {
    if which == compat::NewEntries::None {
        return;
    }
    let rel = counters.heap;
    let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, &pg_sys::TTSOpsHeapTuple);
    pg_sys::ExecStoreHeapTuple(tuple, slot, false);
    let list = pg_sys::RelationGetIndexList(rel);
    for i in 0..pg_sys::list_length(list) {
        let oid = (*(*list).elements.add(i as usize)).oid_value;
        let index = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let info = pg_sys::BuildIndexInfo(index);
        if !(*info).ii_Expressions.is_null()
            || !(*info).ii_Predicate.is_null()
            || !(*info).ii_ExclusionOps.is_null()
        {
            errors::counters_altered(
                "has an expression, partial or exclusion index, which org_stats cannot maintain",
            );
        }
        // An index being built concurrently takes entries once it is ready for them.
        let wanted = (*info).ii_ReadyForInserts
            && (which == compat::NewEntries::All || compat::is_summarizing(info));
        if wanted {
            let mut values = [pg_sys::Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
            let mut nulls = [false; pg_sys::INDEX_MAX_KEYS as usize];
            pg_sys::FormIndexDatum(
                info,
                slot,
                std::ptr::null_mut(),
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            );
            let check = if (*info).ii_Unique {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
            } else {
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
            };
            let unchanged = key_unchanged && oid == counters.index_oid();
            pg_sys::index_insert(
                index,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                rel,
                check,
                unchanged,
                info,
            );
            compat::index_insert_cleanup(index, info);
        }
        pg_sys::index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
    pg_sys::list_free(list);
    pg_sys::ExecDropSingleTupleTableSlot(slot);
}

/// The collation statuses are ordered by (the counters' status column's).
pub fn status_collation(counters: &Indexed) -> pg_sys::Oid {
    // SAFETY: the index is open and has four columns.
    unsafe { *(*counters.index()).rd_indcollation.add(2) }
}

/// One counter row as reads sum it: its org, status, count and (when `sum_columns` is not
/// zero) sums.
///
/// # Safety
/// `slot` holds a row of org_stats.counters.
unsafe fn counted(
    slot: *mut pg_sys::TupleTableSlot,
    sum_columns: usize,
) -> (String, Option<String>, Delta) {
    let mut sums = Vec::new();
    if sum_columns > 0 {
        sums::add_all(&mut sums, &sums::from_datum(value(slot, SUMS_COLUMN)));
        sums.resize(sum_columns, Default::default());
    }
    (
        column::<String>(slot, 1).unwrap(),
        column::<String>(slot, 3),
        Delta {
            n: column::<i64>(slot, N_COLUMN).unwrap(),
            sums,
        },
    )
}

/// A tracking's counts (and sums) of one org summed over its rows, per status in the index's
/// order (the status column's collation, NULL last), as `snapshot` sees them; only the statuses
/// between the bounds of `statuses` if given (see `Key::Between`).
pub fn org_counts(
    counters: &Indexed,
    table_id: i32,
    org_id: &str,
    statuses: Option<(Option<&str>, Option<&str>)>,
    sum_columns: usize,
    snapshot: pg_sys::Snapshot,
) -> Vec<(Option<String>, Delta)> {
    let mut counts: Vec<(Option<String>, Delta)> = Vec::new();
    let mut keys = vec![Key::Text(org_id), Key::Int(table_id)];
    if let Some((from, to)) = statuses {
        keys.push(Key::Between(from, to));
    }
    counters.scan(&keys, snapshot, |slot, _| {
        // SAFETY: a row of org_stats.counters.
        let (_, status, delta) = unsafe { counted(slot, sum_columns) };
        match counts.last_mut() {
            Some((last, sum)) if *last == status => sum.add(&delta),
            _ => counts.push((status, delta)),
        }
        true
    });
    counts
}

/// A tracking's counts (and sums) of every org, per (org, status), as `snapshot` sees them, in
/// no particular order.
pub fn all_counts(
    table_id: i32,
    sum_columns: usize,
    snapshot: pg_sys::Snapshot,
) -> Vec<(String, Option<String>, Delta)> {
    let mut rows = Vec::new();
    if schema::schema() < Schema::V0_2 {
        // 0.1.0's counters have no index by tracking, and no sums.
        sql::kept(
            "SELECT c.org_id, c.status, c.n FROM org_stats.counters c WHERE c.table_id OPERATOR(pg_catalog.=) $1",
            &[table_id.into()],
            Access::Read,
            |row| {
                let counted = Delta {
                    n: row.get(3).unwrap(),
                    sums: Vec::new(),
                };
                rows.push((row.get(1).unwrap(), row.get(2), counted))
            },
        );
        return rows;
    }
    let by_table = schema::open(Own::Counters, Own::CountersByTable, pg_sys::AccessShareLock);
    by_table.scan(&[Key::Int(table_id)], snapshot, |slot, _| {
        // SAFETY: a row of org_stats.counters.
        rows.push(unsafe { counted(slot, sum_columns) });
        true
    });
    rows
}
