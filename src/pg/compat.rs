//! The PostgreSQL calls whose form differs between the supported majors (15, 17 and 18), each
//! behind one function, so that every other module is free of version conditions. Every arm here
//! is built and tested by `./pg_test.sh`, which runs the whole suite on each major.

use pgrx::pg_sys;

/// This backend's number, unique among live backends and never 0 (1-based on every major).
pub fn backend_number() -> i32 {
    #[cfg(feature = "pg15")]
    // SAFETY: set once at backend start.
    let number = unsafe { pg_sys::MyBackendId };
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    // SAFETY: set once at backend start; 0-based.
    let number = unsafe { pg_sys::MyProcNumber } + 1;
    number
}

/// Starts an index scan of `index` over `heap` with `nkeys` keys on `snapshot` (18 added an
/// instrumentation argument).
///
/// # Safety
/// Both relations are open and locked.
pub unsafe fn index_beginscan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    nkeys: i32,
) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    let scan = pg_sys::index_beginscan(heap, index, snapshot, nkeys, 0);
    #[cfg(feature = "pg18")]
    let scan = pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), nkeys, 0);
    scan
}

/// Which indexes a row version just written needs entries in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NewEntries {
    /// None: a heap-only (HOT) update.
    None,
    /// Only summarizing (BRIN) indexes: a HOT update on 17 and later, where those do not block it.
    #[cfg_attr(feature = "pg15", allow(dead_code))]
    Summarizing,
    /// Every index.
    All,
}

/// `heap_update` of the row at `tid`, waiting for a concurrent updater; returns the result and
/// which indexes the new version needs entries in.
///
/// # Safety
/// `rel` is open and locked for writing; `tuple` is a row of its descriptor.
pub unsafe fn heap_update(
    rel: pg_sys::Relation,
    tid: &mut pg_sys::ItemPointerData,
    tuple: pg_sys::HeapTuple,
) -> (pg_sys::TM_Result::Type, NewEntries) {
    let mut failure = pg_sys::TM_FailureData::default();
    let mut lockmode = pg_sys::LockTupleMode::LockTupleExclusive;
    let cid = pg_sys::GetCurrentCommandId(true);
    let null = std::ptr::null_mut();
    #[cfg(feature = "pg15")]
    let result = pg_sys::heap_update(
        rel,
        tid,
        tuple,
        cid,
        null,
        true,
        &mut failure,
        &mut lockmode,
    );
    // 16 replaced the HOT flag in the tuple header with an out-argument naming the indexes to
    // update.
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let mut indexes = pg_sys::TU_UpdateIndexes::TU_None;
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let result = pg_sys::heap_update(
        rel,
        tid,
        tuple,
        cid,
        null,
        true,
        &mut failure,
        &mut lockmode,
        &mut indexes,
    );
    #[cfg(feature = "pg15")]
    let entries = if pg_sys::HeapTupleHeaderIsHeapOnly((*tuple).t_data) {
        NewEntries::None
    } else {
        NewEntries::All
    };
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let entries = match indexes {
        pg_sys::TU_UpdateIndexes::TU_None => NewEntries::None,
        pg_sys::TU_UpdateIndexes::TU_Summarizing => NewEntries::Summarizing,
        _ => NewEntries::All,
    };
    (result, entries)
}

/// Whether an index summarizes (BRIN): 17 and later keep such indexes current even on HOT
/// updates.
///
/// # Safety
/// `info` is a valid IndexInfo.
pub unsafe fn is_summarizing(info: *const pg_sys::IndexInfo) -> bool {
    #[cfg(feature = "pg15")]
    let summarizing = {
        let _ = info;
        false
    };
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    let summarizing = (*info).ii_Summarizing;
    summarizing
}

/// Lets an index method release what it kept between inserts (17 added the call; BRIN keeps a
/// pinned buffer).
///
/// # Safety
/// `index` is open and `info` is its IndexInfo, used for inserts just before.
pub unsafe fn index_insert_cleanup(index: pg_sys::Relation, info: *mut pg_sys::IndexInfo) {
    #[cfg(feature = "pg15")]
    let _ = (index, info);
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    pg_sys::index_insert_cleanup(index, info);
}

/// Pins the search path to `pg_catalog` alone for as long as it lives. On 15 an override search
/// path does it in a few instructions; 17 removed that API, so there it sets the `search_path`
/// GUC at a new nesting level. Either way the kept plans always see the same path, which also
/// spares them a replan on every call.
pub struct PinnedSearchPath {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    guc_level: i32,
}

impl PinnedSearchPath {
    #[cfg(feature = "pg15")]
    pub fn pin() -> Self {
        // SAFETY: the override is copied by PushOverrideSearchPath; an aborting (sub)transaction
        // pops it by itself.
        unsafe {
            let mut path = pg_sys::OverrideSearchPath {
                schemas: std::ptr::null_mut(),
                addCatalog: true,
                addTemp: false,
                ..Default::default()
            };
            pg_sys::PushOverrideSearchPath(&mut path);
        }
        PinnedSearchPath {}
    }

    #[cfg(any(feature = "pg17", feature = "pg18"))]
    pub fn pin() -> Self {
        // SAFETY: a SAVE-level GUC change undone by AtEOXact_GUC in Drop (or by abort).
        unsafe {
            let guc_level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            PinnedSearchPath { guc_level }
        }
    }
}

impl Drop for PinnedSearchPath {
    fn drop(&mut self) {
        // SAFETY: undoes exactly what pin() did.
        unsafe {
            #[cfg(feature = "pg15")]
            pg_sys::PopOverrideSearchPath();
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            pg_sys::AtEOXact_GUC(true, self.guc_level);
        }
    }
}

/// Takes the heavyweight lock on a heap row position in ExclusiveLock mode if no one holds it,
/// without waiting (18 added a flag to log the failure).
///
/// # Safety
/// `rel` is open.
pub unsafe fn conditional_lock_tuple(
    rel: pg_sys::Relation,
    tid: &mut pg_sys::ItemPointerData,
) -> bool {
    let mode = pg_sys::ExclusiveLock as pg_sys::LOCKMODE;
    #[cfg(not(feature = "pg18"))]
    let locked = pg_sys::ConditionalLockTuple(rel, tid, mode);
    #[cfg(feature = "pg18")]
    let locked = pg_sys::ConditionalLockTuple(rel, tid, mode, false);
    locked
}
