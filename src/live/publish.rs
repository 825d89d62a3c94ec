//! What a writer's commit hands to its database's notifier: the (tracking, org) pairs of
//! notifying trackings it changed, noted as it writes (see `counters::write::on_changed`) and
//! put in shared memory once it has committed.

use super::shmem::{my_db, now_micros, Change, LIVE, PENDING, PRELOADED, START_GRACE};
use crate::catalog::schema::{self, Schema};
use crate::pg::security;
use crate::pg::sql::{self, Access};
use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use rustc_hash::{FxHashMap, FxHashSet};
use std::cell::RefCell;
use std::sync::atomic::Ordering;

/// This transaction's changes of notifying trackings.
#[derive(Default)]
struct Changed {
    /// (subtransaction, tracking, its table, org), each (tracking, org) once: a repeat in a
    /// subtransaction adds nothing, as the first is in it or in one enclosing it.
    list: Vec<(pg_sys::SubTransactionId, i32, u32, String)>,
    seen: FxHashSet<(i32, String)>,
    /// More than `PENDING` orgs changed: the list was let go (its memory stays bounded) and
    /// listeners are told to resynchronize instead.
    overflowed: bool,
}

thread_local! {
    /// The trackings of this database that notify, with their tables, and the registry
    /// generation they were read at (see `storage::registry_generation`).
    static NOTIFYING: RefCell<Option<(u64, FxHashMap<i32, u32>)>> = const { RefCell::new(None) };
    static CHANGED: RefCell<Option<Changed>> = const { RefCell::new(None) };
}

/// The table of tracking `table_id` if it notifies.
fn notifying(table_id: i32) -> Option<u32> {
    if !PRELOADED.load(Ordering::Relaxed) {
        return None;
    }
    let generation = schema::registry_generation();
    let known = NOTIFYING.with(|n| match &*n.borrow() {
        Some((read_at, set)) if *read_at == generation => Some(set.get(&table_id).copied()),
        _ => None,
    });
    if let Some(known) = known {
        return known;
    }
    let mut set = FxHashMap::default();
    // A database not updated to 0.3.0 yet has no notifications.
    if schema::schema() >= Schema::V0_3 {
        // The latest snapshot: a change to the registry this backend has just been told of may
        // be newer than the transaction's snapshot.
        sql::on_latest_snapshot(|| {
            security::as_extension_owner(|| {
                sql::kept(
                    "SELECT t.table_id, t.relid FROM org_stats.tracked t WHERE t.notify",
                    &[],
                    Access::Read,
                    |row| {
                        let relid: pg_sys::Oid = row.get(2).unwrap();
                        set.insert(row.get::<i32>(1).unwrap(), relid.to_u32());
                    },
                );
            })
        });
    }
    let found = set.get(&table_id).copied();
    // Kept only if no invalidation arrived while reading (it may have been about this read).
    if schema::registry_generation() == generation {
        NOTIFYING.with(|n| *n.borrow_mut() = Some((generation, set)));
    }
    found
}

/// Notes that this transaction changed the counts of `org_id` in tracking `table_id`, to be
/// notified if the tracking notifies and the transaction commits.
pub(super) fn changed(table_id: i32, org_id: &str) {
    let Some(relid) = notifying(table_id) else {
        return;
    };
    // SAFETY: inside a transaction.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    CHANGED.with(|c| {
        let mut c = c.borrow_mut();
        let c = c.get_or_insert_with(Changed::default);
        let key = (table_id, org_id.to_owned());
        if c.overflowed || c.seen.contains(&key) {
            return;
        }
        if c.list.len() >= PENDING {
            *c = Changed {
                overflowed: true,
                ..Changed::default()
            };
            return;
        }
        c.list.push((subxact, table_id, relid, key.1.clone()));
        c.seen.insert(key);
    });
}

/// After a commit: the changes go to shared memory, and a worker is started for this database
/// if none runs. Nothing here may raise an ERROR (the transaction has committed).
fn publish() {
    let Some(changed) = CHANGED.with(|c| c.borrow_mut().take()) else {
        return;
    };
    if !PRELOADED.load(Ordering::Relaxed) || (changed.list.is_empty() && !changed.overflowed) {
        return;
    }
    let db = my_db();
    let now = now_micros();
    let start = {
        let mut live = LIVE.exclusive();
        // The slot first, so that changes lost below are owed to this database's listeners.
        let running = live
            .slot_of(db)
            .is_some_and(|i| live.workers[i].pid != 0 || now - live.workers[i].since < START_GRACE);
        let start = !running
            && match live.claim(db, now) {
                Some(i) => {
                    live.workers[i].since = now;
                    true
                }
                None => false,
            };
        for (_, table_id, relid, org) in &changed.list {
            live.note(Change::new(db, *table_id, *relid, org));
        }
        if changed.overflowed {
            live.lose(db);
        }
        start
    };
    if start {
        start_worker(db);
    }
}

/// Asks the postmaster for a notifier of `db`; without a free worker process, the slot is marked
/// dead so that the next commit asks again.
pub(super) fn start_worker(db: u32) {
    let mut worker: pg_sys::BackgroundWorker =
        (&BackgroundWorkerBuilder::new("org_stats notifier")
            .set_type("org_stats notifier")
            .set_library("org_stats")
            .set_function("org_stats_notifier")
            .set_argument(Some(pg_sys::Datum::from(db)))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None))
            .into();
    // SAFETY: a filled-in registration; without a handle to return it allocates nothing, so it
    // cannot fail with an ERROR after the commit.
    let started =
        unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, std::ptr::null_mut()) };
    if !started {
        pgrx::warning!(
            "org_stats could not start its notifier (max_worker_processes reached); notifications wait for the next commit"
        );
        let mut live = LIVE.exclusive();
        if let Some(i) = live.slot_of(db) {
            live.workers[i].since = 0;
        }
    }
}

#[pgrx::pg_guard]
pub(super) unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => publish(),
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            CHANGED.with(|c| *c.borrow_mut() = None)
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
pub(super) unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    CHANGED.with(|c| {
        let mut c = c.borrow_mut();
        let Some(c) = c.as_mut() else { return };
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
                c.list.retain(|(s, _, _, _)| *s != subxact);
                c.seen = c.list.iter().map(|(_, t, _, o)| (*t, o.clone())).collect();
            }
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                for entry in c.list.iter_mut().filter(|(s, _, _, _)| *s == subxact) {
                    entry.0 = parent;
                }
            }
            _ => {}
        }
    });
}
