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

use crate::citus;
use crate::errors;
use crate::registry::{self, RegClass};
use crate::security;
use crate::sql::{self, Access};
use crate::storage;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;
use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a worker drains the changes: the longest a notification waits after its commit.
const INTERVAL: Duration = Duration::from_millis(50);
/// A worker with nothing to send for this long exits (so DROP DATABASE, which waits for the
/// database's sessions a few seconds, never waits for it); the next notifying commit starts one.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// A worker asked for and not running after this long, in microseconds, never started.
const START_GRACE: i64 = 10_000_000;
/// Longer org ids are noted as "some org of this tracking" (NULL in payloads and rows).
const ORG_BYTES: usize = 120;
/// Changes waiting to be sent, coalesced; past this many, listeners are told to resynchronize.
const PENDING: usize = 2048;
/// Slots of the table holding them: twice as many, so probe chains stay short when it fills.
const PENDING_SLOTS: usize = 2 * PENDING;
/// Sent changes kept for `changed_since`.
const LOG: usize = 4096;
/// Databases with a worker at once.
const WORKERS: usize = 32;

/// One (database, tracking, org) changed; `table_id` 0 marks, in the log, that changes of the
/// database were lost (its readers must resynchronize).
#[derive(Clone, Copy)]
#[repr(C)]
struct Change {
    db: u32,
    table_id: i32,
    /// The tracked table: a tracking id is reused after DROP and CREATE EXTENSION, a table is not
    /// while it exists, so a change is only shown for the table it was noted for.
    relid: u32,
    /// `u16::MAX`: no org known (too long).
    org_len: u16,
    org: [u8; ORG_BYTES],
}

impl Change {
    const EMPTY: Change = Change {
        db: 0,
        table_id: 0,
        relid: 0,
        org_len: u16::MAX,
        org: [0; ORG_BYTES],
    };

    fn new(db: u32, table_id: i32, relid: u32, org: &str) -> Change {
        let mut change = Change {
            db,
            table_id,
            relid,
            ..Change::EMPTY
        };
        if org.len() <= ORG_BYTES {
            change.org[..org.len()].copy_from_slice(org.as_bytes());
            change.org_len = org.len() as u16;
        }
        change
    }

    fn lost(db: u32) -> Change {
        Change {
            db,
            ..Change::EMPTY
        }
    }

    fn org(&self) -> Option<String> {
        (self.org_len != u16::MAX)
            .then(|| String::from_utf8_lossy(&self.org[..self.org_len as usize]).into_owned())
    }

    fn key(&self) -> (u32, i32, u32, u16, &[u8]) {
        let len = if self.org_len == u16::MAX {
            0
        } else {
            self.org_len as usize
        };
        (
            self.db,
            self.table_id,
            self.relid,
            self.org_len,
            &self.org[..len],
        )
    }

    fn slot(&self) -> usize {
        let mut hasher = FxHasher::default();
        self.key().hash(&mut hasher);
        hasher.finish() as usize % PENDING_SLOTS
    }
}

/// A database's notifier: free (`db` 0), asked for (`pid` 0, `since` when), running (`pid`), or
/// dead (`pid` 0, `since` 0: it failed; the next commit in the database starts another, here).
#[derive(Clone, Copy)]
#[repr(C)]
struct Worker {
    db: u32,
    pid: i32,
    since: i64,
    /// Changes of the database were lost: the worker tells its listeners to resynchronize.
    resync: bool,
}

impl Worker {
    const FREE: Worker = Worker {
        db: 0,
        pid: 0,
        since: 0,
        resync: false,
    };
}

/// What the writers, workers and readers share.
#[repr(C)]
struct Live {
    /// When this shared memory was first used since the server (re)made it, in microseconds: the
    /// first part of every token, so a token from before a restart, crash restarts included, is
    /// told apart. 0 until then.
    epoch: i64,
    /// Open addressing by `Change::slot`; `used` marks the slots in use.
    pending: [Change; PENDING_SLOTS],
    used: [bool; PENDING_SLOTS],
    pending_count: usize,
    /// The sent changes, `log[seq % LOG]` holding number `seq`; `next_seq` is the next number.
    log: [Change; LOG],
    next_seq: u64,
    workers: [Worker; WORKERS],
    /// Databases (0: none) whose changes were lost while they had no worker slot: the worker
    /// that next takes a slot for one tells its listeners to resynchronize.
    owed: [u32; WORKERS],
    /// Counts the times such a loss found `owed` full: every worker then tells its listeners to
    /// resynchronize.
    lost_everywhere: u64,
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Live {}

impl Live {
    const EMPTY: Live = Live {
        epoch: 0,
        pending: [Change::EMPTY; PENDING_SLOTS],
        used: [false; PENDING_SLOTS],
        pending_count: 0,
        log: [Change::EMPTY; LOG],
        next_seq: 1,
        workers: [Worker::FREE; WORKERS],
        owed: [0; WORKERS],
        lost_everywhere: 0,
    };

    fn epoch(&mut self) -> i64 {
        if self.epoch == 0 {
            self.epoch = now_micros().max(1);
        }
        self.epoch
    }

    /// Notes a change to send; a repeat of one waiting is the same change. At most `PENDING` - 1
    /// are kept, in twice as many slots (so probing ends, and soon); past that the change is lost
    /// instead.
    fn note(&mut self, change: Change) {
        let mut slot = change.slot();
        while self.used[slot] {
            if self.pending[slot].key() == change.key() {
                return;
            }
            slot = (slot + 1) % PENDING_SLOTS;
        }
        if self.pending_count + 1 >= PENDING {
            self.lose(change.db);
            return;
        }
        self.pending[slot] = change;
        self.used[slot] = true;
        self.pending_count += 1;
    }

    fn log(&mut self, change: Change) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.log[(seq % LOG as u64) as usize] = change;
        seq
    }

    /// Changes of `db` were lost: its `changed_since` readers and its listeners resynchronize.
    fn lose(&mut self, db: u32) {
        self.log(Change::lost(db));
        if let Some(i) = self.slot_of(db) {
            self.workers[i].resync = true;
        } else if !self.owed.contains(&db) {
            match self.owed.iter().position(|&o| o == 0) {
                Some(i) => self.owed[i] = db,
                None => self.lost_everywhere += 1,
            }
        }
    }

    /// Whether `db` was owed a resynchronization while it had no slot; the debt is taken.
    fn take_owed(&mut self, db: u32) -> bool {
        let found = self.owed.iter().position(|&o| o == db);
        if let Some(i) = found {
            self.owed[i] = 0;
        }
        found.is_some()
    }

    fn pending_of(&self, db: u32) -> impl Iterator<Item = &Change> {
        (0..PENDING_SLOTS)
            .filter(move |&s| self.used[s] && self.pending[s].db == db)
            .map(|s| &self.pending[s])
    }

    /// Takes the changes waiting for `db`, numbers and logs them; (seq, change) in order.
    fn drain(&mut self, db: u32) -> Vec<(u64, Change)> {
        let taken: Vec<Change> = self.pending_of(db).copied().collect();
        if !taken.is_empty() {
            self.forget_pending(db);
        }
        taken.into_iter().map(|c| (self.log(c), c)).collect()
    }

    /// Frees the slots of `db`'s changes and re-places the others, so probe chains stay whole.
    fn forget_pending(&mut self, db: u32) {
        let kept: Vec<Change> = (0..PENDING_SLOTS)
            .filter(|&s| self.used[s] && self.pending[s].db != db)
            .map(|s| self.pending[s])
            .collect();
        self.used = [false; PENDING_SLOTS];
        self.pending_count = 0;
        for change in kept {
            self.note(change);
        }
    }

    fn slot_of(&self, db: u32) -> Option<usize> {
        self.workers.iter().position(|w| w.db == db)
    }

    /// `db`'s worker slot, taken if it has none: a free one, else a dead one of another database
    /// (whose waiting changes are then lost). None when every slot is in use.
    fn claim(&mut self, db: u32, now: i64) -> Option<usize> {
        if let Some(i) = self.slot_of(db) {
            return Some(i);
        }
        let i = self.workers.iter().position(|w| w.db == 0).or_else(|| {
            self.workers
                .iter()
                .position(|w| w.pid == 0 && now - w.since >= START_GRACE)
        })?;
        let previous = self.workers[i].db;
        if previous != 0 {
            self.forget_pending(previous);
            self.workers[i] = Worker::FREE;
            self.lose(previous);
        }
        self.workers[i] = Worker {
            db,
            since: now,
            resync: self.take_owed(db),
            ..Worker::FREE
        };
        Some(i)
    }
}

static LIVE: PgLwLock<Live> = unsafe { PgLwLock::new(c"org_stats_live") };

/// Whether this server preloaded the library, so the shared memory and workers exist.
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Sets up the shared memory when preloaded; called once from `_PG_init`.
pub fn init() {
    // SAFETY: reads a postmaster flag; pg_shmem_init registers the shared-memory hooks.
    unsafe {
        if pg_sys::process_shared_preload_libraries_in_progress {
            pgrx::pg_shmem_init!(LIVE = Live::EMPTY);
            PRELOADED.store(true, Ordering::Relaxed);
        }
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}

fn require_preloaded() {
    if !PRELOADED.load(Ordering::Relaxed) {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "org_stats notifications need org_stats in shared_preload_libraries",
            "Add org_stats to shared_preload_libraries in postgresql.conf (next to pg_cron, if you use it) \
             and restart PostgreSQL; counts, reads and maintenance work without it.",
        );
    }
}

fn now_micros() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn my_db() -> u32 {
    // SAFETY: set at connection time.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// A token: the shared memory's epoch and a change's number.
fn token(epoch: i64, seq: u64) -> String {
    format!("{epoch}-{seq}")
}

// --- Writers ---------------------------------------------------------------------------------

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
    let generation = storage::registry_generation();
    let known = NOTIFYING.with(|n| match &*n.borrow() {
        Some((read_at, set)) if *read_at == generation => Some(set.get(&table_id).copied()),
        _ => None,
    });
    if let Some(known) = known {
        return known;
    }
    let mut set = FxHashMap::default();
    // A database not updated to 0.3.0 yet has no notifications.
    if storage::schema() >= storage::Schema::V0_3 {
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
    if storage::registry_generation() == generation {
        NOTIFYING.with(|n| *n.borrow_mut() = Some((generation, set)));
    }
    found
}

/// Notes that this transaction changed the counts of `org_id` in tracking `table_id`, to be
/// notified if the tracking notifies and the transaction commits.
pub fn changed(table_id: i32, org_id: &str) {
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
fn start_worker(db: u32) {
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
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => publish(),
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            CHANGED.with(|c| *c.borrow_mut() = None)
        }
        _ => {}
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_subxact(
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

// --- The worker ------------------------------------------------------------------------------

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

// --- SQL functions ---------------------------------------------------------------------------

/// Turns notifications of a tracking on, with a new secret channel, or off, forgetting the
/// channel (so turning them off and on shuts out whoever learnt the old one).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn set_notify(tracking: &str, enabled: default!(bool, true)) {
    if enabled {
        require_preloaded();
    }
    let t = registry::resolve(tracking, None);
    security::require_owner(t.relid, "set_notify");
    if enabled {
        citus::refuse_notify(&t);
    }
    security::as_extension_owner(|| {
        sql::kept(
            "UPDATE org_stats.tracked t SET notify = $2, \
                    channel = CASE WHEN $2 THEN COALESCE(t.channel, 'org_stats_' OPERATOR(pg_catalog.||) \
                                   pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', '')) END \
              WHERE t.table_id OPERATOR(pg_catalog.=) $1",
            &[t.table_id.into(), enabled.into()],
            Access::Write,
            |_| {},
        );
    });
    // Every backend reads the notifying trackings again after this commits.
    // SAFETY: queues an invalidation of an existing relation.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(storage::tracked_relid()) };
}

/// Subscribes this session to a notifying tracking's changes and returns its channel:
/// notifications arrive on it after this transaction commits.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn listen(tracking: &str) -> String {
    require_preloaded();
    let t = registry::resolve(tracking, None);
    if !security::can_read(t.relid.0) {
        errors::cannot_read(&t.relid.display());
    }
    security::require_rls_allows_counts(t.relid);
    let mut channel: Option<String> = None;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT t.channel FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) $1 AND t.notify",
            &[t.table_id.into()],
            Access::Read,
            |row| channel = row.get(1),
        )
    });
    let channel = channel.unwrap_or_else(|| {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("tracking {tracking} does not notify"),
            "Its owner turns notifications on with SELECT org_stats.set_notify('...');",
        )
    });
    sql::exec(
        &format!("LISTEN {}", pgrx::spi::quote_identifier(&channel)),
        &[],
    );
    channel
}

/// The (tracking, org) changes committed after `token`, one row each with the token of its
/// latest change, for the trackings whose counts the caller may read, then always one row with no
/// table: the token to continue from, and whether to re-read everything first (the token is
/// unknown, too old, from before a restart, or changes were lost meanwhile). A first call passes
/// NULL. Changes not sent yet are included, with the token to continue from (they come again,
/// with their own, once sent).
// The columns' names must be spelled in the signature for pgrx, so no type alias can shorten it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn changed_since(
    token: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(table_name, Option<RegClass>),
        name!(tracking, Option<String>),
        name!(org_id, Option<String>),
        name!(token, String),
        name!(resync, bool),
    ),
> {
    require_preloaded();
    let db = my_db();
    let epoch = LIVE.share().epoch;
    let epoch = if epoch == 0 {
        LIVE.exclusive().epoch()
    } else {
        epoch
    };
    let since = token
        .and_then(|t| t.split_once('-'))
        .filter(|(started, _)| *started == epoch.to_string())
        .and_then(|(_, seq)| seq.parse::<u64>().ok());
    let (changes, last) = {
        let live = LIVE.share();
        let last = live.next_seq - 1;
        let oldest = live.next_seq.saturating_sub(LOG as u64).max(1);
        let changes: Option<Vec<(u64, Change)>> = since
            .filter(|&s| s <= last && s.saturating_add(1) >= oldest)
            .map(|s| {
                (s + 1..=last)
                    .map(|seq| (seq, live.log[(seq % LOG as u64) as usize]))
                    .filter(|(_, c)| c.db == db)
                    .chain(live.pending_of(db).map(|c| (last, *c)))
                    .collect()
            });
        (changes, last)
    };
    let resync = changes
        .as_ref()
        .is_none_or(|changes| changes.iter().any(|(_, c)| c.table_id == 0));
    let mut rows = Vec::new();
    if !resync {
        let mut latest: FxHashMap<(i32, u32, Option<String>), u64> = FxHashMap::default();
        for (seq, change) in changes.into_iter().flatten() {
            latest.insert((change.table_id, change.relid, change.org()), seq);
        }
        let mut allowed: FxHashMap<(i32, u32), Option<(RegClass, Option<String>)>> =
            FxHashMap::default();
        let mut entries: Vec<_> = latest.into_iter().collect();
        entries.sort_by_key(|(_, seq)| *seq);
        for ((table_id, relid, org), seq) in entries {
            let visible = allowed.entry((table_id, relid)).or_insert_with(|| {
                let t = security::as_extension_owner(|| registry::find_by_id(table_id))?;
                (t.relid.0.to_u32() == relid
                    && security::can_read(t.relid.0)
                    && security::rls_allows_counts(t.relid))
                .then_some((t.relid, t.name))
            });
            if let Some((relid, name)) = visible {
                rows.push((
                    Some(*relid),
                    name.clone(),
                    org,
                    self::token(epoch, seq),
                    false,
                ));
            }
        }
    }
    rows.push((None, None, None, self::token(epoch, last), resync));
    TableIterator::new(rows)
}
