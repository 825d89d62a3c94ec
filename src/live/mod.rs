//! Live change notifications: a dashboard that `LISTEN`s learns, within about a tenth of a second
//! of a commit, which orgs' counts of a tracking changed, without writers serializing on it.
//!
//! `NOTIFY` in the writer's own transaction would take PostgreSQL's notification queue lock at
//! commit, so every notifying commit would wait for every other. Instead a committed writer
//! records (tracking, org) in shared memory, a set that coalesces repeats, under a lock held for
//! one insertion; a background worker per database drains it every `INTERVAL`, numbers each
//! change (its token), keeps the latest `LOG` of them for `changed_since`, and sends one
//! `NOTIFY` per (tracking, org) from a transaction of its own. Rolled-back work never reaches the
//! set (it is published after the commit, and a rolled-back subtransaction's changes are
//! dropped). Work committed by two-phase commit is not notified: `COMMIT PREPARED` runs in a
//! session that has none of its changes. Changes that cannot be kept (the set is full, a
//! transaction changed too many orgs, a worker died holding them) are owed as a
//! "resynchronize" to the database's listeners and `changed_since` readers, never dropped silently.
//!
//! Each notifying tracking has its own channel, named with a random secret only its registry row
//! (readable by the extension's owner alone) holds; `org_stats.listen()` subscribes a session to it
//! after checking that the caller may read the tracking's counts, as the count functions check.
//! Needs `shared_preload_libraries = 'org_stats'` (for the shared memory and the workers).

//!
//! - `shmem`: what writers, notifiers and readers share;
//! - `publish`: what a writer's commit hands to its database's notifier;
//! - `worker`: the notifier, a background worker per database;
//! - `api`: `set_notify()`, `listen()`, `changed_since()`.

use crate::counters::write;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::sync::atomic::Ordering;

pub mod api;
mod publish;
mod shmem;
mod worker;

use shmem::{Live, LIVE, PRELOADED};

/// Sets up the shared memory when preloaded, and listens to what writers change; called once
/// from `_PG_init`.
pub fn init() {
    // SAFETY: reads a postmaster flag; pg_shmem_init registers the shared-memory hooks.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            pgrx::pg_shmem_init!(LIVE = Live::EMPTY);
            PRELOADED.store(true, Ordering::Relaxed);
        }
        pg_sys::RegisterXactCallback(Some(publish::on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(publish::on_subxact), std::ptr::null_mut());
    }
    write::on_changed(publish::changed);
}
