//! org_stats' own tables as the hot paths find them (their OIDs, looked up once per backend), and
//! which version of org_stats' schema this database has.

use crate::pg::access::Indexed;
use crate::pg::errors;
use crate::pg::relcache;
use pgrx::pg_sys;
use std::cell::Cell;
use std::ffi::CStr;

/// org_stats' own relations that the hot paths open.
#[derive(Clone, Copy)]
pub enum Own {
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

/// `org_stats.<table>` and, on first use, its index `org_stats.<index>`, locked in `mode`.
pub fn open(table: Own, index: Own, mode: u32) -> Indexed {
    Indexed::open(relid(table), relid(index), mode)
}
