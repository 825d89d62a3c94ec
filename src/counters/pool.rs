//! Which counter row a delta is added to. A group's count (one table, org and status) is the sum
//! of its rows in `org_stats.counters`. A writer adds to the first row of the group that no other
//! transaction holds and creates a row only when every existing one is held, so a group has
//! about as many rows as it has writers at the same moment, however many backends write it over
//! time, and one after `recalculate()` folds it (see `fold`).
//!
//! A writer never waits on another's counter row, so writers never deadlock over them:
//! - It *claims* a row before updating it: a conditional heavyweight lock on the row's position
//!   (never waited for), then, under that lock, a check that the version there is the row's
//!   latest and that no other transaction is updating, deleting or locking it (what `heap_update`
//!   itself checks). Everything that changes counter rows while writers run (writers, the fold)
//!   claims them this way, so a claimed row cannot be taken in between and the `heap_update`
//!   that follows never waits.
//! - A new row gets a slot number no concurrent writer can pick: the writer's backend number
//!   plus a multiple of `SLOT_STRIDE` that no row of the group has (an in-progress insert
//!   included). Live backends have distinct numbers, and the rows of a prepared transaction that
//!   held the same number earlier are already in the index, so the insert never waits on a
//!   conflicting one.
//!
//! Exact on every snapshot: a writer adds onto a row's latest version, which committed before it
//! claimed it (or is its own). A snapshot that sees the writer's commit therefore also sees every
//! earlier version's writer, so each version holds exactly the deltas of the transactions a
//! snapshot seeing it sees. The writer's own snapshot is the exception: it sees its own version,
//! so that version must not carry deltas the snapshot cannot see. A statement's flush therefore
//! takes only rows whose latest version its active snapshot sees (at REPEATABLE READ and
//! SERIALIZABLE the transaction's snapshot, at READ COMMITTED the statement's); the commit-time
//! flush, after which nothing reads, may take any.

use crate::counters::deltas::{Delta, Group};
use crate::counters::storage;
use crate::pg::access::{self, Indexed, Key};
use crate::pg::compat;
use crate::pg::errors;
use crate::values::sums;
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use pgrx::IntoDatum;
use rustc_hash::FxHashMap;
use std::cell::RefCell;

/// New rows of backend `b` get slots `b + k * SLOT_STRIDE`: above every backend number
/// (`MAX_BACKENDS` is 2^18 - 1), so the slots of two live backends never collide.
const SLOT_STRIDE: i32 = 1 << 18;

/// Which row versions a write may add to (see the module comment).
#[derive(Clone, Copy)]
pub enum Visible {
    /// Any latest version: the commit-time flush and maintenance, which read nothing after.
    Any,
    /// Only versions this snapshot sees.
    To(pg_sys::Snapshot),
}

impl Visible {
    fn allows(self, xmin: pg_sys::TransactionId) -> bool {
        match self {
            Visible::Any => true,
            // SAFETY: plain reads of the transaction's state and of a live snapshot.
            Visible::To(snapshot) => unsafe {
                pg_sys::TransactionIdIsCurrentTransactionId(xmin)
                    || !pg_sys::XidInMVCCSnapshot(xmin, snapshot)
            },
        }
    }
}

thread_local! {
    /// The row this backend last wrote for each group, by the position its index entries point
    /// at (the root of its chain of HOT updates). The next write tries that row first: following
    /// the chain from there finds its latest version, however many backends updated it since, as
    /// long as they updated it in place, without the index descent.
    static LAST_WRITTEN: RefCell<FxHashMap<Group, pg_sys::ItemPointerData>> =
        RefCell::new(FxHashMap::default());
}

/// A counter row this transaction may update: its position, held locked until dropped, the
/// root of its HOT chain, and the latest version's slot, count and sums.
struct Claimed {
    rel: pg_sys::Relation,
    tid: pg_sys::ItemPointerData,
    root: pg_sys::ItemPointerData,
    slot: i32,
    counted: Delta,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        // Unwinding from an ERROR: the abort releases the lock, and PostgreSQL may not be called.
        if std::thread::panicking() {
            return;
        }
        // SAFETY: locked in `claim`; the relation stays open.
        unsafe { pg_sys::UnlockTuple(self.rel, &mut self.tid, pg_sys::ExclusiveLock as i32) };
    }
}

/// Claims the row of `group` at `tid` (see the module comment), or `None` if another
/// transaction holds it, it is not the row's latest version, `visible` excludes it, or the
/// position now holds something else.
fn claim(
    counters: &Indexed,
    tid: pg_sys::ItemPointerData,
    root: pg_sys::ItemPointerData,
    group: &Group,
    visible: Visible,
) -> Option<Claimed> {
    let rel = counters.heap;
    let mut locked = tid;
    // SAFETY: the relation is open; the lock is released by `Claimed`'s drop, or at abort.
    if !unsafe { compat::conditional_lock_tuple(rel, &mut locked) } {
        return None;
    }
    let mut claimed = Claimed {
        rel,
        tid,
        root,
        slot: 0,
        counted: Delta::default(),
    };
    let any = &raw mut pg_sys::SnapshotAnyData;
    // SAFETY: the relation is open; any position may be read; what is kept is copied.
    let found = unsafe {
        access::row_at(rel, tid, any, |row| {
            if !(row.updatable() && visible.allows(row.xmin())) {
                return None;
            }
            let text = |d: Option<pg_sys::Datum>| d.and_then(|d| String::from_datum(d, false));
            let int = |d: Option<pg_sys::Datum>| d.and_then(|d| i32::from_datum(d, false));
            // Pruning reuses positions: the row there may belong to another group now.
            let same = text(row.get(1)).as_deref() == Some(group.org_id.as_str())
                && int(row.get(2)) == Some(group.table_id)
                && text(row.get(3)) == group.status;
            let n = row
                .get(storage::N_COLUMN)
                .and_then(|d| i64::from_datum(d, false));
            same.then(|| {
                let counted = Delta {
                    n: n.unwrap(),
                    sums: sums::from_datum(row.get(storage::SUMS_COLUMN)),
                };
                (int(row.get(4)).unwrap(), counted)
            })
        })
    };
    let (slot, counted) = found.flatten()?;
    claimed.slot = slot;
    claimed.counted = counted;
    Some(claimed)
}

/// The slot of the row maintenance adds its repairs to with plain SQL (`remote::add`), which
/// takes no claim: writers leave it alone (their slots are never negative), so they never wait on
/// it or deadlock with a repair.
pub const MAINTENANCE_SLOT: i32 = -1;

/// A version of a group's row: its position, the root of its HOT chain, and its slot.
struct Found {
    tid: pg_sys::ItemPointerData,
    root: pg_sys::ItemPointerData,
    slot: i32,
}

/// What may be claimed: every version a dirty snapshot sees (committed and live, or being
/// inserted or changed by a transaction in progress).
fn dirty() -> pg_sys::SnapshotData {
    pg_sys::SnapshotData {
        snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
        ..Default::default()
    }
}

/// The versions of the group's rows that may be claimed.
fn rows_of(counters: &Indexed, group: &Group) -> Vec<Found> {
    versions_of(counters, group, &mut dirty())
}

/// The versions of the group's rows that `snapshot` sees.
fn versions_of(counters: &Indexed, group: &Group, snapshot: pg_sys::Snapshot) -> Vec<Found> {
    let keys = [
        Key::Text(&group.org_id),
        Key::Int(group.table_id),
        Key::status(group.status.as_deref()),
    ];
    let mut rows = Vec::new();
    counters.scan(&keys, snapshot, |row, root| {
        // SAFETY: a row of org_stats.counters, pinned in the slot; slot is integer NOT NULL.
        rows.push(unsafe {
            Found {
                tid: (*row).tts_tid,
                root,
                slot: access::column::<i32>(row, 4).unwrap(),
            }
        });
        true
    });
    rows
}

/// Adds `delta` to a row of `group` this transaction may take (see the module comment),
/// creating one if every row is held.
pub fn add(counters: &Indexed, group: &Group, delta: &Delta, visible: Visible) {
    let added = |row: &Claimed| {
        let mut total = row.counted.clone();
        total.add(delta);
        update(counters, row, group, &total)
    };
    // Writers leave the maintenance slot alone (see `MAINTENANCE_SLOT`): a remembered position
    // may hold it by now, and only claiming reads its slot.
    if let Some(root) = LAST_WRITTEN.with(|w| w.borrow().get(group).copied()) {
        // SAFETY: the relation is open; a dirty snapshot is one the chain walk accepts.
        // Only the chain's newest version can be claimed.
        let newest = unsafe { access::newest_in_chain(counters.heap, root, &mut dirty()) };
        if let Some(row) = newest.and_then(|tid| claim(counters, tid, root, group, visible)) {
            if row.slot != MAINTENANCE_SLOT && added(&row) {
                return;
            }
        }
    }
    for found in rows_of(counters, group)
        .into_iter()
        .filter(|found| found.slot != MAINTENANCE_SLOT)
    {
        if let Some(row) = claim(counters, found.tid, found.root, group, visible) {
            if added(&row) {
                return;
            }
        }
    }
    insert(counters, group, new_slot(counters, group), delta);
}

/// A slot for a new row of this backend that no version of any row of the group has. Every
/// version, dead ones included: a row updated (not HOT) and committed after the index scan read
/// its leaf page is found only through its old version, which the caller's snapshot keeps from
/// being pruned meanwhile (its updater was still running when that snapshot was taken).
fn new_slot(counters: &Indexed, group: &Group) -> i32 {
    let versions = versions_of(counters, group, &raw mut pg_sys::SnapshotAnyData);
    let mut slot = compat::backend_number();
    while versions.iter().any(|found| found.slot == slot) {
        slot = slot
            .checked_add(SLOT_STRIDE)
            .unwrap_or_else(|| errors::counters_altered("has no free slot left for a new row"));
    }
    slot
}

/// A counter row of `group` with count and sums `counted`, ready to write.
fn form(counters: &Indexed, group: &Group, slot: i32, counted: &Delta) -> pg_sys::HeapTuple {
    let sums = sums::to_datum(&counted.sums);
    let mut values = [
        group.org_id.as_str().into_datum().unwrap(),
        group.table_id.into_datum().unwrap(),
        group
            .status
            .as_deref()
            .into_datum()
            .unwrap_or(pg_sys::Datum::from(0)),
        slot.into_datum().unwrap(),
        counted.n.into_datum().unwrap(),
        sums.unwrap_or(pg_sys::Datum::from(0)),
    ];
    let mut nulls = [
        false,
        false,
        group.status.is_none(),
        false,
        false,
        sums.is_none(),
    ];
    // SAFETY: the values have the counters' column types, in order.
    unsafe {
        pg_sys::heap_form_tuple(
            (*counters.heap).rd_att,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        )
    }
}

fn remember(group: &Group, root: pg_sys::ItemPointerData) {
    access::remember(&LAST_WRITTEN, group.clone(), root);
}

/// Sets a claimed row's count and sums; false if the row changed after all (only a write that
/// bypasses claiming, such as a manual UPDATE of the counters, can do that).
fn update(counters: &Indexed, row: &Claimed, group: &Group, counted: &Delta) -> bool {
    let tuple = form(counters, group, row.slot, counted);
    let mut tid = row.tid;
    // SAFETY: the new version has the key of the old one and the counters' column types; the
    // claim keeps every other claimant off, so heap_update finds nothing to wait for.
    unsafe {
        let (result, entries) = compat::heap_update(counters.heap, &mut tid, tuple);
        let done = result == pg_sys::TM_Result::TM_Ok;
        if done {
            storage::insert_index_entries(counters, tuple, entries, true);
            // An update the indexes follow starts a chain of its own.
            let root = if entries == compat::NewEntries::All {
                (*tuple).t_self
            } else {
                row.root
            };
            remember(group, root);
        }
        pg_sys::heap_freetuple(tuple);
        done
    }
}

/// Writes a new row of `group` in `slot`.
fn insert(counters: &Indexed, group: &Group, slot: i32, counted: &Delta) {
    let tuple = form(counters, group, slot, counted);
    // SAFETY: a row of the counters' descriptor; its key is new (see `new_slot`).
    unsafe {
        pg_sys::heap_insert(
            counters.heap,
            tuple,
            pg_sys::GetCurrentCommandId(true),
            0,
            std::ptr::null_mut(),
        );
        storage::insert_index_entries(counters, tuple, compat::NewEntries::All, false);
        remember(group, (*tuple).t_self);
        pg_sys::heap_freetuple(tuple);
    }
}

/// Deletes a claimed row; false if the row changed after all (as for `update`).
fn delete(counters: &Indexed, row: &Claimed) -> bool {
    let mut failure = pg_sys::TM_FailureData::default();
    let mut tid = row.tid;
    // SAFETY: the claim keeps every other claimant off, so heap_delete finds nothing to wait for.
    let result = unsafe {
        pg_sys::heap_delete(
            counters.heap,
            &mut tid,
            pg_sys::GetCurrentCommandId(true),
            std::ptr::null_mut(),
            true,
            &mut failure,
            false,
        )
    };
    result == pg_sys::TM_Result::TM_Ok
}

/// Folds each of `groups` into one row: every row no transaction holds goes into the one nearest
/// the start of the heap (so the counters' tail empties and VACUUM can cut it off), and a group
/// whose free rows sum to zero loses them all. Counts never change: the amounts move within the
/// group in this transaction. Held rows are skipped, never waited for.
pub fn fold(counters: &Indexed, groups: &[Group]) {
    for group in groups {
        let mut rows: Vec<Claimed> = rows_of(counters, group)
            .into_iter()
            .filter_map(|found| claim(counters, found.tid, found.root, group, Visible::Any))
            .collect();
        if rows.len() < 2 && rows.iter().all(|r| !r.counted.is_zero()) {
            continue;
        }
        rows.sort_by_key(|r| pgrx::itemptr::item_pointer_get_both(r.tid));
        let keep = rows.remove(0);
        let mut total = keep.counted.clone();
        for row in &rows {
            if !delete(counters, row) {
                errors::claim_broken();
            }
            total.add(&row.counted);
        }
        let done = if total.is_zero() {
            delete(counters, &keep)
        } else {
            update(counters, &keep, group, &total)
        };
        if !done {
            errors::claim_broken();
        }
    }
}

/// Takes every row of `group` that no transaction holds out of the counters and returns what
/// they held (their count and sums): the caller adds it to other groups in this transaction, so
/// the amount only moves (see `maintenance::settle`). Held rows are skipped, never waited for.
pub fn take(counters: &Indexed, group: &Group) -> Delta {
    let mut taken = Delta::default();
    for found in rows_of(counters, group) {
        if let Some(row) = claim(counters, found.tid, found.root, group, Visible::Any) {
            if !delete(counters, &row) {
                errors::claim_broken();
            }
            taken.add(&row.counted);
        }
    }
    taken
}
