//! Direct index and heap access, the way PostgreSQL's own catalog code reads and writes its tables:
//! on org_stats' two hot paths (adding a statement's deltas to this backend's counter rows, and
//! reading one org's counts) each is one index probe and, for a write, one `heap_update`, where
//! SQL was a full executor run (plan-cache check, executor start-up and shutdown, a user switch
//! and a pinned search path), which cost more than the row write itself. No SQL runs, so there is
//! no search path to pin and no privilege to switch to.

use crate::pg::compat;
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use pgrx::IntoDatum;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};

/// A search key for one index column.
pub enum Key<'a> {
    Text(&'a str),
    Int(i32),
    Oid(pg_sys::Oid),
    /// The column IS NULL.
    Null,
    /// Text from the first (inclusive) to the second (exclusive), either unbounded if `None`.
    Between(Option<&'a str>, Option<&'a str>),
}

impl Key<'_> {
    pub fn status(status: Option<&str>) -> Key<'_> {
        status.map_or(Key::Null, Key::Text)
    }
}

/// A table with the unique index the hot paths probe, open (and locked) for the rest of the
/// transaction, as the executor would have it.
pub struct Indexed {
    pub heap: pg_sys::Relation,
    index_oid: pg_sys::Oid,
    mode: pg_sys::LOCKMODE,
    /// Opened on first use: a write or read that finds its row where it left it needs no index.
    index: Cell<pg_sys::Relation>,
}

impl Indexed {
    /// Relation `table`, and on first use its index `index`, locked in `mode`.
    pub fn open(table: pg_sys::Oid, index: pg_sys::Oid, mode: u32) -> Indexed {
        let mode = mode as pg_sys::LOCKMODE;
        Indexed {
            // SAFETY: opened and locked like any statement would; closed in Drop keeping the
            // lock.
            heap: unsafe { pg_sys::table_open(table, mode) },
            index_oid: index,
            mode,
            index: Cell::new(std::ptr::null_mut()),
        }
    }

    /// The OID of its index.
    pub fn index_oid(&self) -> pg_sys::Oid {
        self.index_oid
    }

    pub fn index(&self) -> pg_sys::Relation {
        if self.index.get().is_null() {
            // SAFETY: as the heap in `open`.
            self.index
                .set(unsafe { pg_sys::index_open(self.index_oid, self.mode) });
        }
        self.index.get()
    }

    /// Calls `each` with every row whose leading index columns equal `keys` (or, for a
    /// `Key::Between`, lie between its bounds) and that `snapshot` sees, in index order, until it returns false; with the row, the position its index entry
    /// points at (the root of its chain of HOT updates, see `newest_in_chain`).
    pub fn scan(
        &self,
        keys: &[Key],
        snapshot: pg_sys::Snapshot,
        mut each: impl FnMut(*mut pg_sys::TupleTableSlot, pg_sys::ItemPointerData) -> bool,
    ) {
        // SAFETY: both relations are open; text keys are palloc'd in the current memory context,
        // which outlives the scan; slot and scan are released below (or by the abort of an
        // ERROR, which releases their buffer pins too).
        unsafe {
            let mut scan_keys: Vec<pg_sys::ScanKeyData> = Vec::with_capacity(keys.len());
            for (i, key) in keys.iter().enumerate() {
                let mut entry = pg_sys::ScanKeyData::default();
                let attno = (i + 1) as pg_sys::AttrNumber;
                // Text compares under the index column's collation, or the btree search would
                // walk the index in a different order than it was built in.
                let collation = *(*self.index()).rd_indcollation.add(i);
                let (procedure, datum) = match key {
                    Key::Between(from, to) => {
                        let bounds = [
                            (
                                from,
                                pg_sys::BTGreaterEqualStrategyNumber,
                                pg_sys::F_TEXT_GE,
                            ),
                            (to, pg_sys::BTLessStrategyNumber, pg_sys::F_TEXT_LT),
                        ];
                        for (bound, strategy, procedure) in bounds {
                            if let Some(bound) = bound {
                                let mut entry = pg_sys::ScanKeyData::default();
                                pg_sys::ScanKeyEntryInitialize(
                                    &mut entry,
                                    0,
                                    attno,
                                    strategy as pg_sys::StrategyNumber,
                                    pg_sys::Oid::INVALID,
                                    collation,
                                    pg_sys::Oid::from(procedure),
                                    bound.into_datum().unwrap(),
                                );
                                scan_keys.push(entry);
                            }
                        }
                        continue;
                    }
                    Key::Text(s) => (pg_sys::F_TEXTEQ, s.into_datum().unwrap()),
                    Key::Int(v) => (pg_sys::F_INT4EQ, v.into_datum().unwrap()),
                    Key::Oid(o) => (pg_sys::F_OIDEQ, o.into_datum().unwrap()),
                    Key::Null => {
                        pg_sys::ScanKeyEntryInitialize(
                            &mut entry,
                            (pg_sys::SK_ISNULL | pg_sys::SK_SEARCHNULL) as i32,
                            attno,
                            0, // InvalidStrategy: an IS NULL key has no operator
                            pg_sys::Oid::INVALID,
                            pg_sys::Oid::INVALID,
                            pg_sys::Oid::INVALID,
                            pg_sys::Datum::from(0),
                        );
                        scan_keys.push(entry);
                        continue;
                    }
                };
                pg_sys::ScanKeyEntryInitialize(
                    &mut entry,
                    0,
                    attno,
                    pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                    pg_sys::Oid::INVALID,
                    collation,
                    pg_sys::Oid::from(procedure),
                    datum,
                );
                scan_keys.push(entry);
            }
            let nkeys = scan_keys.len() as i32;
            let scan = compat::index_beginscan(self.heap, self.index(), snapshot, nkeys);
            pg_sys::index_rescan(scan, scan_keys.as_mut_ptr(), nkeys, std::ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(self.heap, std::ptr::null_mut());
            // index_getnext_slot's loop, keeping each index entry's heap position (the root),
            // which fetching overwrites with the position of the version found.
            'entries: loop {
                let entry =
                    pg_sys::index_getnext_tid(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if entry.is_null() {
                    break;
                }
                let root = *entry;
                // A snapshot other than an MVCC one may see several versions of one chain.
                while pg_sys::index_fetch_heap(scan, slot) {
                    if !each(slot, root) {
                        break 'entries;
                    }
                    if !(*scan).xs_heap_continue {
                        break;
                    }
                }
            }
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
        }
    }
}

impl Drop for Indexed {
    fn drop(&mut self) {
        // SAFETY: opened in `open`; the locks stay until the transaction ends.
        unsafe {
            if !self.index.get().is_null() {
                pg_sys::index_close(self.index.get(), pg_sys::NoLock as pg_sys::LOCKMODE);
            }
            pg_sys::table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// The datum of column `attnum` of the row in `slot`; `None` for NULL.
///
/// # Safety
/// `slot` holds a row with a column `attnum`.
pub unsafe fn value(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<pg_sys::Datum> {
    // A column an older schema does not have (see `schema`) is NULL.
    if attnum > (*(*slot).tts_tupleDescriptor).natts {
        return None;
    }
    let mut isnull = false;
    let datum = pg_sys::slot_getattr(slot, attnum, &mut isnull);
    (!isnull).then_some(datum)
}

/// Column `attnum` of the row in `slot`.
///
/// # Safety
/// `slot` holds a row of a relation whose column `attnum` has type `T`.
pub unsafe fn column<T: FromDatum>(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<T> {
    value(slot, attnum).and_then(|datum| T::from_datum(datum, false))
}

/// Remembers where a row was found or written, in one of the bounded position caches.
pub fn remember<K: Eq + std::hash::Hash>(
    cache: &'static std::thread::LocalKey<RefCell<FxHashMap<K, pg_sys::ItemPointerData>>>,
    key: K,
    tid: pg_sys::ItemPointerData,
) {
    cache.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REMEMBERED_ROWS {
            c.clear();
        }
        c.insert(key, tid);
    });
}

/// Remembered row positions beyond this many are forgotten (a write path touching more orgs
/// than this probes the index as before).
const REMEMBERED_ROWS: usize = 10_000;

/// One row version read at a position: its columns, the transaction that wrote it, and whether
/// it could be updated now. Valid only inside the `row_at` call that hands it out.
pub struct Version {
    tuple: pg_sys::HeapTupleData,
    buffer: pg_sys::Buffer,
    desc: pg_sys::TupleDesc,
}

impl Version {
    /// Column `attnum`; `None` for NULL. A by-reference value points into the shared buffer:
    /// copy what is kept.
    pub fn get(&mut self, attnum: i32) -> Option<pg_sys::Datum> {
        // A column an older schema does not have (see `schema`) is NULL.
        // SAFETY: the descriptor is the open relation's.
        if attnum > unsafe { (*self.desc).natts } {
            return None;
        }
        let mut isnull = false;
        // SAFETY: the tuple is pinned in its buffer for the life of `self`.
        let datum =
            unsafe { pg_sys::heap_getattr(&mut self.tuple, attnum, self.desc, &mut isnull) };
        (!isnull).then_some(datum)
    }

    /// The transaction that wrote this version (FrozenTransactionId once frozen).
    pub fn xmin(&self) -> pg_sys::TransactionId {
        // SAFETY: as above.
        unsafe { pg_sys::submodules::htup::HeapTupleHeaderGetXmin(self.tuple.t_data) }
    }

    /// Whether this transaction could update this version now without waiting: it is the row's
    /// latest version, committed (or this transaction's own, from an earlier command), and no
    /// other transaction holds it (updating, deleting or locking it), as `heap_update` decides.
    pub fn updatable(&mut self) -> bool {
        // SAFETY: the buffer is pinned; the check wants it share-locked (it may set hint bits).
        unsafe {
            pg_sys::LockBuffer(self.buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            let result = pg_sys::HeapTupleSatisfiesUpdate(
                &mut self.tuple,
                pg_sys::GetCurrentCommandId(false),
                self.buffer,
            );
            pg_sys::LockBuffer(self.buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
            result == pg_sys::TM_Result::TM_Ok
        }
    }
}

/// Calls `f` with the row version at `tid`, if `snapshot` sees one there. A remembered position
/// may lie past the heap's end by now (VACUUM truncates empty trailing pages, though never while
/// this backend holds a lock on the table), so that is checked first.
///
/// # Safety
/// `rel` is open.
pub unsafe fn row_at<R>(
    rel: pg_sys::Relation,
    tid: pg_sys::ItemPointerData,
    snapshot: pg_sys::Snapshot,
    f: impl FnOnce(&mut Version) -> R,
) -> Option<R> {
    if !block_exists(rel, pgrx::itemptr::item_pointer_get_block_number(&tid)) {
        return None;
    }
    let mut version = Version {
        tuple: pg_sys::HeapTupleData {
            t_self: tid,
            ..Default::default()
        },
        buffer: 0,
        desc: (*rel).rd_att,
    };
    if !pg_sys::heap_fetch(
        rel,
        snapshot,
        &mut version.tuple,
        &mut version.buffer,
        false,
    ) {
        return None;
    }
    let result = f(&mut version);
    pg_sys::ReleaseBuffer(version.buffer);
    Some(result)
}

/// The position of the newest version that `snapshot` sees in the chain of heap-only (HOT)
/// updates that starts at `root`: where an index entry pointing at `root` leads, without the
/// index descent. `None` if `root` no longer starts a chain (the row moved on a non-HOT update
/// and VACUUM reclaimed the position); once reclaimed, the position may start another row's
/// chain, so callers check whose version they got. The page is pruned first, as an index probe
/// does: rows found this way never pass through the index, and without it their page would keep
/// its dead versions until VACUUM, leaving updates no room to stay HOT.
///
/// # Safety
/// `rel` is open; `snapshot` is one `heap_hot_search_buffer` accepts.
pub unsafe fn newest_in_chain(
    rel: pg_sys::Relation,
    root: pg_sys::ItemPointerData,
    snapshot: pg_sys::Snapshot,
) -> Option<pg_sys::ItemPointerData> {
    let block = pgrx::itemptr::item_pointer_get_block_number(&root);
    if !block_exists(rel, block) {
        return None;
    }
    let buffer = pg_sys::ReadBuffer(rel, block);
    pg_sys::heap_page_prune_opt(rel, buffer);
    pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
    let mut newest = None;
    let mut tid = root;
    let mut tuple = pg_sys::HeapTupleData::default();
    // Each call after the first goes on past the version the previous one found.
    while pg_sys::heap_hot_search_buffer(
        &mut tid,
        rel,
        buffer,
        snapshot,
        &mut tuple,
        std::ptr::null_mut(),
        newest.is_none(),
    ) {
        newest = Some(tid);
    }
    pg_sys::LockBuffer(buffer, pg_sys::BUFFER_LOCK_UNLOCK as i32);
    pg_sys::ReleaseBuffer(buffer);
    newest
}

/// Whether `block` lies within `rel`'s heap. The size this backend last learned is trusted as a
/// lower bound, which saves a system call per read and write: the heap only shrinks by a
/// truncation, which holds an AccessExclusiveLock and first makes every backend forget its size
/// (an smgr invalidation, processed when this backend next locks the relation, as it has before
/// any call here).
///
/// # Safety
/// `rel` is open and locked.
pub unsafe fn block_exists(rel: pg_sys::Relation, block: pg_sys::BlockNumber) -> bool {
    let main = pg_sys::ForkNumber::MAIN_FORKNUM;
    let known = (*pg_sys::RelationGetSmgr(rel)).smgr_cached_nblocks[main as usize];
    if known != pg_sys::InvalidBlockNumber && block < known {
        return true;
    }
    block < pg_sys::RelationGetNumberOfBlocksInFork(rel, main)
}
