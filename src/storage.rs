//! Direct index and heap access to org_stats' own tables on the two hot paths: adding a
//! statement's deltas to this backend's counter rows, and reading one org's counts. Through SPI
//! each was a full executor run (plan-cache check, executor start-up and shutdown, a user switch
//! and a pinned search path), which cost more than the row write itself; here each is one index
//! probe and, for a write, one `heap_update`, the way PostgreSQL's own catalog code writes its
//! tables. No SQL runs, so there is no search path to pin and no privilege to switch to.
//! Everything off the hot paths (new counter rows, bulk statements, maintenance) stays SQL.

use crate::compat;
use crate::deltas::Delta;
use crate::errors;
use crate::relcache;
use crate::sql::{self, Access};
use crate::sums;
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use pgrx::IntoDatum;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;

/// The number of columns of `org_stats.counters`: the key (org_id, table_id, status, slot), then
/// `n`, the count, and `sums`, the summed columns' sums (see `sums`).
const COUNTER_COLUMNS: usize = 6;
pub const N_COLUMN: i32 = 5;
pub const SUMS_COLUMN: i32 = 6;

/// A search key for one index column.
pub enum Key<'a> {
    Text(&'a str),
    Int(i32),
    Oid(pg_sys::Oid),
    /// The column IS NULL.
    Null,
}

impl Key<'_> {
    pub fn status(status: Option<&str>) -> Key<'_> {
        status.map_or(Key::Null, Key::Text)
    }
}

/// org_stats' own relations that the hot paths open.
#[derive(Clone, Copy)]
enum Own {
    Counters,
    CountersKey,
    CountersByTable,
    Tracked,
    TrackedRelidKey,
    TrackedNameKey,
}

impl Own {
    fn name(self) -> &'static CStr {
        match self {
            Own::Counters => c"counters",
            Own::CountersKey => c"counters_key",
            Own::CountersByTable => c"counters_by_table",
            Own::Tracked => c"tracked",
            Own::TrackedRelidKey => c"tracked_relid_key",
            Own::TrackedNameKey => c"tracked_name_key",
        }
    }
}

thread_local! {
    /// The OIDs of `Own`'s relations, looked up by name once per backend instead of on every
    /// read and write; forgotten when one of them is invalidated (dropped, for one).
    static RELIDS: Cell<[pg_sys::Oid; 6]> = const { Cell::new([pg_sys::Oid::INVALID; 6]) };
}

/// The OID of `org_stats.<rel>`.
fn relid(rel: Own) -> pg_sys::Oid {
    let known = RELIDS.with(|r| r.get()[rel as usize]);
    if known != pg_sys::Oid::INVALID {
        return known;
    }
    // SAFETY: lookups by name; a missing schema raises an ERROR.
    let oid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"org_stats".as_ptr(), false);
        pg_sys::get_relname_relid(rel.name().as_ptr(), schema)
    };
    if oid == pg_sys::Oid::INVALID {
        errors::storage_missing(rel.name());
    }
    RELIDS.with(|r| {
        let mut all = r.get();
        all[rel as usize] = oid;
        r.set(all);
    });
    oid
}

fn forget_relids(relid: pg_sys::Oid) {
    RELIDS.with(|r| {
        if relid == pg_sys::Oid::INVALID || r.get().contains(&relid) {
            r.set([pg_sys::Oid::INVALID; 6]);
            SCHEMA.with(|s| s.set(None));
            GENERATION.with(|g| g.set(g.get() + 1));
        }
    });
}

thread_local! {
    /// Counts the invalidations of org_stats' own relations seen by this backend.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// A number that changes whenever `org_stats.tracked` may have changed (it is counted from its
/// relcache invalidations, which every change of the registry sends): what a backend derives from
/// the registry stays valid while this stays the same.
pub fn registry_generation() -> u64 {
    // Looked up first, so that its invalidation is recognised from now on.
    relid(Own::Tracked);
    GENERATION.with(Cell::get)
}

/// The versions of org_stats' schema this library serves, oldest first: a database between
/// installing this library and `ALTER EXTENSION org_stats UPDATE` is served without what its
/// schema lacks (its writes are counted and its reads answered as its version did).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Schema {
    V0_1,
    /// Tracking names, filters, sums, the counters' index by tracking.
    V0_2,
    /// Change notifications.
    V0_3,
    /// Where each tracking's counts are kept (`counted_in`, see `citus`).
    V0_5,
}

thread_local! {
    /// This database's schema version; see `schema`.
    static SCHEMA: Cell<Option<Schema>> = const { Cell::new(None) };
}

/// This database's schema version, known from a column each version added.
pub fn schema() -> Schema {
    if let Some(known) = SCHEMA.with(Cell::get) {
        return known;
    }
    // SAFETY: syscache lookups of existing relations' columns.
    let has = |rel: Own, column: &std::ffi::CStr| unsafe {
        pg_sys::get_attnum(relid(rel), column.as_ptr()) > 0
    };
    let schema = if has(Own::Tracked, c"counted_in") {
        Schema::V0_5
    } else if has(Own::Tracked, c"notify") {
        Schema::V0_3
    } else if has(Own::Counters, c"sums") {
        Schema::V0_2
    } else {
        Schema::V0_1
    };
    SCHEMA.with(|s| s.set(Some(schema)));
    schema
}

/// The OID of `org_stats.tracked`, whose invalidation tells every backend the registry changed.
pub fn tracked_relid() -> pg_sys::Oid {
    relid(Own::Tracked)
}

/// Listens to relcache invalidations; called once per backend from `_PG_init`.
pub fn init() {
    relcache::listen(forget_relids);
}

/// One of org_stats' tables with the unique index the hot paths probe, open (and locked) for the
/// rest of the transaction, as the executor would have it.
pub struct Indexed {
    pub heap: pg_sys::Relation,
    index_oid: pg_sys::Oid,
    mode: pg_sys::LOCKMODE,
    /// Opened on first use: a write or read that finds its row where it left it needs no index.
    index: Cell<pg_sys::Relation>,
}

impl Indexed {
    /// `org_stats.<table>`, and on first use `org_stats.<index>`, locked in `mode`.
    fn open(table: Own, index: Own, mode: u32) -> Indexed {
        Indexed::open_oids(relid(table), relid(index), mode)
    }

    fn open_oids(table: pg_sys::Oid, index: pg_sys::Oid, mode: u32) -> Indexed {
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

    fn index(&self) -> pg_sys::Relation {
        if self.index.get().is_null() {
            // SAFETY: as the heap in `open`.
            self.index
                .set(unsafe { pg_sys::index_open(self.index_oid, self.mode) });
        }
        self.index.get()
    }

    /// Calls `each` with every row whose leading index columns equal `keys` and that `snapshot`
    /// sees, in index order, until it returns false; with the row, the position its index entry
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

/// `org_stats.counters` through its key (org_id, table_id, status, slot), locked in `mode`.
pub fn counters(mode: u32) -> Indexed {
    counters_at(Place::Local, mode)
}

/// Where a group's counters live: `org_stats.counters`, or on Citus the shard of a distributed
/// counters table next to the shard whose rows they count (see `citus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Place {
    #[default]
    Local,
    /// The OID of the counters shard (as a number, which orders).
    Shard { heap: u32 },
}

/// The counters at `place` through their key, locked in `mode`.
pub fn counters_at(place: Place, mode: u32) -> Indexed {
    let counters = match place {
        Place::Local => Indexed::open(Own::Counters, Own::CountersKey, mode),
        Place::Shard { heap } => {
            let (heap, key) = crate::citus::shard_with_key(heap.into());
            Indexed::open_oids(heap, key, mode)
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
            let unchanged = key_unchanged && oid == counters.index_oid;
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

/// How a read names the tracking it reads.
#[derive(Clone, Copy)]
pub enum Lookup<'a> {
    /// The default tracking of the table with this OID.
    Table(pg_sys::Oid),
    /// The tracking with this name.
    Name(&'a str),
}

/// A tracking as reads need it.
pub struct Registration {
    pub table_id: i32,
    pub relid: pg_sys::Oid,
    pub org_column: String,
    /// Where its counts are kept, as `org_stats.tracked.counted_in` says (see `citus`).
    pub counted_in: Option<String>,
    /// Whether every org of it is counted (`backfilled_at` is set).
    pub all_backfilled: bool,
    /// The columns it sums (read only when asked for).
    pub sum_columns: Vec<String>,
}

thread_local! {
    /// Where each tracking's registration row was last found, by table OID (default trackings)
    /// and by name: a read first checks whether its snapshot sees that row version, before
    /// probing the index.
    static REGISTRATIONS: RefCell<FxHashMap<pg_sys::Oid, pg_sys::ItemPointerData>> =
        RefCell::new(FxHashMap::default());
    static NAMED_REGISTRATIONS: RefCell<FxHashMap<String, pg_sys::ItemPointerData>> =
        RefCell::new(FxHashMap::default());
}

/// The tracking `lookup` names, as `snapshot` sees `org_stats.tracked`, with its summed columns
/// if `sums`; `None` if there is none.
pub fn registration(
    lookup: Lookup,
    snapshot: pg_sys::Snapshot,
    sums: bool,
) -> Option<Registration> {
    if matches!(lookup, Lookup::Name(_)) && schema() < Schema::V0_2 {
        return None;
    }
    let index = match lookup {
        Lookup::Table(_) => Own::TrackedRelidKey,
        Lookup::Name(_) => Own::TrackedNameKey,
    };
    let tracked = Indexed::open(Own::Tracked, index, pg_sys::AccessShareLock);
    // Columns of org_stats.tracked: table_id integer NOT NULL (1), relid (2), org_column name
    // NOT NULL (3), backfilled_at (6), name (9), sum_columns (11), counted_in (15).
    let read = |get: &mut dyn FnMut(i32) -> Option<pg_sys::Datum>| {
        // SAFETY: the datums are the columns' values, of these types.
        let relid = unsafe { get(2).and_then(|d| pg_sys::Oid::from_datum(d, false)) }?;
        let name = unsafe { get(9).and_then(|d| String::from_datum(d, false)) };
        let wanted = match lookup {
            Lookup::Table(oid) => relid == oid && name.is_none(),
            Lookup::Name(wanted) => name.as_deref() == Some(wanted),
        };
        wanted.then(|| Registration {
            table_id: unsafe { get(1).and_then(|d| i32::from_datum(d, false)) }.unwrap(),
            relid,
            // SAFETY: a name is a NUL-terminated string in a fixed-size datum.
            org_column: unsafe {
                CStr::from_ptr(get(3).unwrap().cast_mut_ptr::<std::os::raw::c_char>())
            }
            .to_string_lossy()
            .into_owned(),
            counted_in: unsafe { get(15).and_then(|d| String::from_datum(d, false)) },
            all_backfilled: get(6).is_some(),
            sum_columns: sums
                .then(|| unsafe { get(11).and_then(|d| Vec::<String>::from_datum(d, false)) })
                .flatten()
                .unwrap_or_default(),
        })
    };
    let remembered = match lookup {
        Lookup::Table(oid) => REGISTRATIONS.with(|r| r.borrow().get(&oid).copied()),
        Lookup::Name(name) => NAMED_REGISTRATIONS.with(|r| r.borrow().get(name).copied()),
    };
    if let Some(tid) = remembered {
        // SAFETY: the relation is open; a visible row version there is the one this snapshot
        // sees (the lookup key is unique), whatever has been written since. Registrations are
        // rarely updated: their page is left for other accesses to prune.
        let found = unsafe {
            row_at(tracked.heap, tid, snapshot, |row| {
                read(&mut |attnum| row.get(attnum))
            })
        };
        if let Some(Some(found)) = found {
            return Some(found);
        }
    }
    let mut found = None;
    let key = match lookup {
        Lookup::Table(oid) => Key::Oid(oid),
        Lookup::Name(name) => Key::Text(name),
    };
    tracked.scan(&[key], snapshot, |row, _| {
        // SAFETY: a row of org_stats.tracked, pinned in the slot.
        let mut get = |attnum| unsafe { value(row, attnum) };
        found = read(&mut get).map(|registration| (unsafe { (*row).tts_tid }, registration));
        false
    });
    let (tid, registration) = found?;
    match lookup {
        Lookup::Table(oid) => remember(&REGISTRATIONS, oid, tid),
        Lookup::Name(name) => remember(&NAMED_REGISTRATIONS, name.to_owned(), tid),
    }
    Some(registration)
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
/// order (the status column's collation, NULL last), as `snapshot` sees them.
pub fn org_counts(
    counters: &Indexed,
    table_id: i32,
    org_id: &str,
    sum_columns: usize,
    snapshot: pg_sys::Snapshot,
) -> Vec<(Option<String>, Delta)> {
    let mut counts: Vec<(Option<String>, Delta)> = Vec::new();
    counters.scan(
        &[Key::Text(org_id), Key::Int(table_id)],
        snapshot,
        |slot, _| {
            // SAFETY: a row of org_stats.counters.
            let (_, status, delta) = unsafe { counted(slot, sum_columns) };
            match counts.last_mut() {
                Some((last, sum)) if *last == status => sum.add(&delta),
                _ => counts.push((status, delta)),
            }
            true
        },
    );
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
    if schema() < Schema::V0_2 {
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
    let by_table = Indexed::open(Own::Counters, Own::CountersByTable, pg_sys::AccessShareLock);
    by_table.scan(&[Key::Int(table_id)], snapshot, |slot, _| {
        // SAFETY: a row of org_stats.counters.
        rows.push(unsafe { counted(slot, sum_columns) });
        true
    });
    rows
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
