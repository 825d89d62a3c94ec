//! The one relcache invalidation callback org_stats registers (PostgreSQL allows each backend
//! only a few, and a walsender decoding for Citus loads several other libraries' too): each
//! module that caches what it derived from relations listens here.

use pgrx::pg_sys;
use std::cell::RefCell;

thread_local! {
    static LISTENERS: RefCell<Vec<fn(pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

/// Calls `listener` with every relation whose relcache entry is invalidated (InvalidOid: all of
/// them). It runs while invalidations are processed, so it may only note or forget what it
/// learns, never read a catalog. Called from the modules' `init()`, before `init()` here.
pub fn listen(listener: fn(pg_sys::Oid)) {
    LISTENERS.with(|l| l.borrow_mut().push(listener));
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn invalidated(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    LISTENERS.with(|l| l.borrow().iter().for_each(|listener| listener(relid)));
}

/// Registers the callback; called once per backend from `_PG_init`.
pub fn init() {
    // SAFETY: registers a plain function with no argument.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(invalidated), pg_sys::Datum::from(0)) };
}
