//! The notifier: a background worker per database that drains its changes every `INTERVAL`,
//! numbers and logs them, and sends one `NOTIFY` per (tracking, org) from a transaction of its own.

use super::publish::start_worker;
use super::shmem::{now_micros, token, Change, Worker, LIVE};
use crate::pg::security;
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;
use rustc_hash::FxHashMap;
use std::cell::Cell;
use std::time::Duration;

/// How often a worker drains the changes: the longest a notification waits after its commit.
const INTERVAL: Duration = Duration::from_millis(50);
/// A worker with nothing to send for this long exits (so DROP DATABASE, which waits for the
/// database's sessions a few seconds, never waits for it); the next notifying commit starts one.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A notifying tracking as the worker announces it.
struct Channel {
    relid: u32,
    channel: String,
    table: String,
    tracking: Option<String>,
}

thread_local! {
    /// The worker has taken changes it has not sent yet.
    static SENDING: Cell<bool> = const { Cell::new(false) };
    /// The worker has connected to its database (until then, the database may be gone).
    static CONNECTED: Cell<bool> = const { Cell::new(false) };
}

/// When a worker exits other than idle: changes it had taken and not sent are owed to the
/// listeners as a resynchronization, and another worker is started for the changes committed
/// since its last drain (they would otherwise wait for the database's next commit); or, if it
/// never connected, its database's changes are given up.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_worker_exit(_code: i32, arg: pg_sys::Datum) {
    // SAFETY: as AbortTransaction would first; nothing else runs in this exiting process.
    unsafe { pg_sys::LWLockReleaseAll() };
    let db = arg.value() as u32;
    let restart = {
        let mut live = LIVE.exclusive();
        let Some(i) = live.slot_of(db) else {
            return;
        };
        // SAFETY: set at process start.
        if live.workers[i].pid != unsafe { pg_sys::MyProcPid } {
            return;
        }
        if SENDING.get() {
            live.lose(db);
        }
        if !CONNECTED.get() {
            // Dropped, or refusing connections: nothing waiting for it can be sent.
            live.forget_pending(db);
            live.workers[i] = Worker::FREE;
            live.lose(db);
            false
        } else {
            let restart = live.pending_of(db).next().is_some();
            live.workers[i].pid = 0;
            live.workers[i].since = if restart { now_micros() } else { 0 };
            restart
        }
    };
    if restart {
        start_worker(db);
    }
}

/// The notifier of one database (its OID is the argument): drains that database's changes every
/// `INTERVAL` and sends them, until idle for `IDLE_EXIT`.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn org_stats_notifier(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    {
        let mut live = LIVE.exclusive();
        let Some(i) = live.claim(db, now_micros()) else {
            return;
        };
        if live.workers[i].pid != 0 {
            return; // another notifier of this database runs
        }
        // SAFETY: set at process start.
        live.workers[i].pid = unsafe { pg_sys::MyProcPid };
    }
    // SAFETY: registers a plain function, with the database as its argument.
    unsafe { pg_sys::before_shmem_exit(Some(on_worker_exit), arg) };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    CONNECTED.set(true);
    // A database's own settings must not time the notifier out; a lock wait is bounded, since a
    // termination request is only acted on between sends (the exit starts another worker).
    BackgroundWorker::transaction(|| {
        Spi::run(
            "SELECT pg_catalog.set_config('statement_timeout', '0', false), \
                    pg_catalog.set_config('lock_timeout', '10s', false)",
        )
        .expect("settings");
    });
    let mut seen_lost = LIVE.share().lost_everywhere;
    let mut idle = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(INTERVAL)) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way to reload the configuration in a worker.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let (batch, resync, epoch) = {
            let mut live = LIVE.exclusive();
            let i = live.slot_of(db).expect("a running worker keeps its slot");
            let batch = live.drain(db);
            let resync = live.workers[i].resync || live.lost_everywhere != seen_lost;
            if batch.is_empty() && !resync && idle >= IDLE_EXIT {
                // Nothing waits (checked under the lock writers take): give the slot up.
                live.workers[i] = Worker::FREE;
                return;
            }
            live.workers[i].resync = false;
            seen_lost = live.lost_everywhere;
            let last = live.next_seq - 1;
            (batch, resync.then_some(last), live.epoch())
        };
        if batch.is_empty() && resync.is_none() {
            idle += INTERVAL;
            continue;
        }
        idle = Duration::ZERO;
        SENDING.set(true);
        BackgroundWorker::transaction(|| send(&batch, resync, epoch));
        SENDING.set(false);
    }
}

/// Sends a batch: a resynchronization (with the latest token) to every channel if changes were
/// lost, then one notification per change.
fn send(batch: &[(u64, Change)], resync: Option<u64>, epoch: i64) {
    // DROP EXTENSION may have run since these changes were noted.
    let installed =
        Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('org_stats.tracked') IS NOT NULL");
    if installed != Ok(Some(true)) {
        return;
    }
    security::as_extension_owner(|| {
        let mut channels: FxHashMap<i32, Channel> = FxHashMap::default();
        Spi::connect(|client| {
            let rows = client
                .select(
                    "SELECT t.table_id, t.channel, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' \
                            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), t.name, t.relid \
                       FROM org_stats.tracked t \
                       JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid \
                       JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
                      WHERE t.notify",
                    None,
                    &[],
                )
                .expect("the registry is readable");
            for row in rows {
                let id: i32 = row.get(1).unwrap().unwrap();
                let relid: pg_sys::Oid = row.get(5).unwrap().unwrap();
                channels.insert(
                    id,
                    Channel {
                        relid: relid.to_u32(),
                        channel: row.get(2).unwrap().unwrap(),
                        table: row.get(3).unwrap().unwrap(),
                        tracking: row.get(4).unwrap(),
                    },
                );
            }
        });
        let notify = |channel: &str, payload: serde_json::Value| {
            Spi::run_with_args(
                "SELECT pg_catalog.pg_notify($1, $2)",
                &[channel.into(), payload.to_string().as_str().into()],
            )
            .expect("pg_notify");
        };
        if let Some(last) = resync {
            for c in channels.values() {
                notify(
                    &c.channel,
                    serde_json::json!({"resync": true, "token": token(epoch, last)}),
                );
            }
        }
        for (seq, change) in batch {
            if let Some(c) = channels
                .get(&change.table_id)
                .filter(|c| c.relid == change.relid)
            {
                let payload = serde_json::json!({
                    "table": c.table,
                    "tracking": c.tracking,
                    "org_id": change.org(),
                    "token": token(epoch, *seq),
                });
                notify(&c.channel, payload);
            }
        }
    });
}
