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
//! session that has none of its changes.
//!
//! Each notifying tracking has its own channel, named with a random secret only its registry row
//! (readable by the extension's owner alone) holds; `org_stats.listen()` subscribes a session to it
//! after checking that the caller may read the tracking's counts, as the count functions check.
//! Needs `shared_preload_libraries = 'org_stats'` (for the shared memory and the workers).

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
/// Longer org ids are noted as "some org of this tracking" (NULL in payloads and rows).
const ORG_BYTES: usize = 120;
/// Changes waiting to be sent, coalesced; past this many, a database is told to resynchronize.
const PENDING: usize = 2048;
/// Sent changes kept for `changed_since`.
const LOG: usize = 4096;
/// Databases with a worker at once.
const WORKERS: usize = 32;

/// One (database, tracking, org) changed. `table_id` 0 marks a database-wide "resynchronize".
#[derive(Clone, Copy)]
#[repr(C)]
struct Change {
    db: u32,
    table_id: i32,
    /// `u16::MAX`: no org known (too long).
    org_len: u16,
    org: [u8; ORG_BYTES],
}

impl Change {
    const EMPTY: Change = Change {
        db: 0,
        table_id: 0,
        org_len: 0,
        org: [0; ORG_BYTES],
    };

    fn new(db: pg_sys::Oid, table_id: i32, org: Option<&str>) -> Change {
        let mut change = Change {
            db: db.to_u32(),
            table_id,
            org_len: u16::MAX,
            ..Change::EMPTY
        };
        if let Some(org) = org.filter(|o| o.len() <= ORG_BYTES) {
            change.org[..org.len()].copy_from_slice(org.as_bytes());
            change.org_len = org.len() as u16;
        }
        change
    }

    fn org(&self) -> Option<String> {
        (self.org_len != u16::MAX)
            .then(|| String::from_utf8_lossy(&self.org[..self.org_len as usize]).into_owned())
    }

    fn key(&self) -> (u32, i32, u16, &[u8]) {
        let len = if self.org_len == u16::MAX {
            0
        } else {
            self.org_len as usize
        };
        (self.db, self.table_id, self.org_len, &self.org[..len])
    }

    fn slot(&self) -> usize {
        let mut hasher = FxHasher::default();
        self.key().hash(&mut hasher);
        hasher.finish() as usize % PENDING
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Worker {
    db: u32,
    /// When it was started or last drained, in microseconds: a worker silent for much longer
    /// than `INTERVAL` has died, and the next notifying commit starts another.
    beat: i64,
}

/// What the writers, workers and readers share.
#[repr(C)]
struct Live {
    /// Open addressing by `Change::slot`; `used` marks the slots in use.
    pending: [Change; PENDING],
    used: [bool; PENDING],
    pending_count: usize,
    /// The sent changes, `log[seq % LOG]` holding number `seq`; `next_seq` is the next number.
    log: [Change; LOG],
    next_seq: u64,
    workers: [Worker; WORKERS],
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Live {}

impl Live {
    const EMPTY: Live = Live {
        pending: [Change::EMPTY; PENDING],
        used: [false; PENDING],
        pending_count: 0,
        log: [Change::EMPTY; LOG],
        next_seq: 1,
        workers: [Worker { db: 0, beat: 0 }; WORKERS],
    };

    /// Notes a change to send; a repeat of one waiting is the same change. When full, the
    /// database is marked to resynchronize instead (in a slot every database's drain checks).
    fn note(&mut self, change: Change) {
        let mut slot = change.slot();
        for _ in 0..PENDING {
            if !self.used[slot] {
                // The last `WORKERS` slots are kept for the databases' resynchronize marks.
                if self.pending_count + WORKERS >= PENDING && change.table_id != 0 {
                    self.note(Change::new(pg_sys::Oid::from(change.db), 0, None));
                    return;
                }
                self.pending[slot] = change;
                self.used[slot] = true;
                self.pending_count += 1;
                return;
            }
            if self.pending[slot].key() == change.key() {
                return;
            }
            slot = (slot + 1) % PENDING;
        }
    }

    /// Takes the changes waiting for `db`, numbers and logs them; (seq, change) in order.
    fn drain(&mut self, db: u32) -> Vec<(u64, Change)> {
        let mut taken = Vec::new();
        for slot in 0..PENDING {
            if self.used[slot] && self.pending[slot].db == db {
                taken.push(self.pending[slot]);
            }
        }
        if taken.is_empty() {
            return Vec::new();
        }
        // Free the slots and re-place what stays, so probe chains stay whole.
        let kept: Vec<Change> = (0..PENDING)
            .filter(|&s| self.used[s] && self.pending[s].db != db)
            .map(|s| self.pending[s])
            .collect();
        self.used = [false; PENDING];
        self.pending_count = 0;
        for change in kept {
            self.note(change);
        }
        taken
            .into_iter()
            .map(|change| {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.log[(seq % LOG as u64) as usize] = change;
                (seq, change)
            })
            .collect()
    }

    fn worker(&mut self, db: u32) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.db == db)
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
        pg_sys::CacheRegisterRelcacheCallback(Some(forget_notifying), pg_sys::Datum::from(0));
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

/// A token: the server's start time and a change's number, so a token from before a restart is
/// recognised as such.
fn token(seq: u64) -> String {
    // SAFETY: set once at postmaster start.
    format!("{}-{seq}", unsafe { pg_sys::PgStartTime })
}

// --- Writers ---------------------------------------------------------------------------------

thread_local! {
    /// The trackings of this database that notify, read once and kept until the registry
    /// changes (`set_notify` invalidates it).
    static NOTIFYING: RefCell<Option<FxHashSet<i32>>> = const { RefCell::new(None) };
    /// org_stats.tracked's OID, to know which invalidation concerns `NOTIFYING`.
    static TRACKED_RELID: Cell<pg_sys::Oid> = const { Cell::new(pg_sys::Oid::INVALID) };
    /// This transaction's changes of notifying trackings, by subtransaction: (subxact,
    /// tracking, org).
    static CHANGED: RefCell<Vec<(pg_sys::SubTransactionId, i32, String)>> = const { RefCell::new(Vec::new()) };
    /// This transaction changed more than `PENDING` groups: `CHANGED` was let go (its memory stays
    /// bounded) and listeners are told to resynchronize instead.
    static OVERFLOWED: Cell<bool> = const { Cell::new(false) };
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_notifying(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if relid == pg_sys::Oid::INVALID || relid == TRACKED_RELID.with(Cell::get) {
        NOTIFYING.with(|n| *n.borrow_mut() = None);
    }
}

fn notifying(table_id: i32) -> bool {
    if !PRELOADED.load(Ordering::Relaxed) {
        return false;
    }
    let known = NOTIFYING.with(|n| n.borrow().as_ref().map(|set| set.contains(&table_id)));
    if let Some(known) = known {
        return known;
    }
    let mut set = FxHashSet::default();
    if storage::schema_current() {
        security::as_extension_owner(|| {
            sql::kept(
                "SELECT t.table_id FROM org_stats.tracked t WHERE t.notify",
                &[],
                Access::Read,
                |row| {
                    set.insert(row.get::<i32>(1).unwrap());
                },
            );
        });
    }
    TRACKED_RELID.with(|r| r.set(storage::tracked_relid()));
    let found = set.contains(&table_id);
    NOTIFYING.with(|n| *n.borrow_mut() = Some(set));
    found
}

/// Notes that this transaction changed the counts of `org_id` in tracking `table_id`, to be
/// notified if the tracking notifies and the transaction commits.
pub fn changed(table_id: i32, org_id: &str) {
    if !notifying(table_id) || OVERFLOWED.get() {
        return;
    }
    // SAFETY: inside a transaction.
    let subxact = unsafe { pg_sys::GetCurrentSubTransactionId() };
    CHANGED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= PENDING {
            *c = Vec::new();
            OVERFLOWED.set(true);
        } else {
            c.push((subxact, table_id, org_id.to_owned()));
        }
    });
}

fn forget_changes() {
    CHANGED.with(|c| *c.borrow_mut() = Vec::new());
    OVERFLOWED.set(false);
}

/// After a commit: the changes go to shared memory, and a worker is started for this database
/// if none runs. Nothing here may raise an ERROR (the transaction has committed).
fn publish() {
    let mut changes = CHANGED.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let overflowed = OVERFLOWED.replace(false);
    if (changes.is_empty() && !overflowed) || !PRELOADED.load(Ordering::Relaxed) {
        return;
    }
    changes.sort_unstable_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
    changes.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    // SAFETY: set at connection time.
    let db = unsafe { pg_sys::MyDatabaseId };
    let now = now_micros();
    let start = {
        let mut live = LIVE.exclusive();
        for (_, table_id, org) in &changes {
            live.note(Change::new(db, *table_id, Some(org)));
        }
        if overflowed {
            live.note(Change::new(db, 0, None));
        }
        let mine = live.workers.iter().position(|w| w.db == db.to_u32());
        let alive =
            mine.is_some_and(|i| now - live.workers[i].beat < 20 * INTERVAL.as_micros() as i64);
        // Claim a slot before starting, so concurrent commits start one worker, not many.
        let slot = (!alive)
            .then(|| mine.or_else(|| live.workers.iter().position(|w| w.db == 0)))
            .flatten();
        if let Some(i) = slot {
            live.workers[i] = Worker {
                db: db.to_u32(),
                beat: now,
            };
        }
        slot.is_some()
    };
    if start {
        start_worker(db);
    }
}

fn start_worker(db: pg_sys::Oid) {
    let started = BackgroundWorkerBuilder::new("org_stats notifier")
        .set_type("org_stats notifier")
        .set_library("org_stats")
        .set_function("org_stats_notifier")
        .set_argument(Some(pg_sys::Datum::from(db.to_u32())))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(None)
        .load_dynamic();
    if started.is_err() {
        pgrx::warning!(
            "org_stats could not start its notifier (max_worker_processes reached); notifications wait until one starts"
        );
        let mut live = LIVE.exclusive();
        if let Some(w) = live.worker(db.to_u32()) {
            w.db = 0;
        }
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_COMMIT => publish(),
        pg_sys::XactEvent::XACT_EVENT_ABORT | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            forget_changes()
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
        match event {
            pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => c.retain(|(s, _, _)| *s != subxact),
            pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
                for entry in c.iter_mut().filter(|(s, _, _)| *s == subxact) {
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
    channel: String,
    table: String,
    tracking: Option<String>,
}

/// The notifier of one database (its OID is the argument): drains that database's changes every
/// `INTERVAL` and sends them, until idle for `IDLE_EXIT`.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn org_stats_notifier(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    let mut idle = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(INTERVAL)) {
        let batch = {
            let mut live = LIVE.exclusive();
            let batch = live.drain(db);
            let now = now_micros();
            if batch.is_empty() && idle >= IDLE_EXIT {
                // Nothing waits (checked under the lock writers take): give the slot up.
                if let Some(w) = live.worker(db) {
                    w.db = 0;
                }
                return;
            }
            if let Some(w) = live.worker(db) {
                w.beat = now;
            }
            batch
        };
        if batch.is_empty() {
            idle += INTERVAL;
            continue;
        }
        idle = Duration::ZERO;
        BackgroundWorker::transaction(|| send(&batch));
    }
}

fn send(batch: &[(u64, Change)]) {
    let mut channels: FxHashMap<i32, Channel> = FxHashMap::default();
    // DROP EXTENSION may have run since these changes were noted.
    if Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('org_stats.tracked') IS NULL")
        == Ok(Some(true))
    {
        return;
    }
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT t.table_id, t.channel, pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), t.name \
                   FROM org_stats.tracked t JOIN pg_catalog.pg_class c ON c.oid = t.relid \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE t.notify",
                None,
                &[],
            )
            .expect("the registry is readable");
        for row in rows {
            let id: i32 = row.get(1).unwrap().unwrap();
            channels.insert(
                id,
                Channel {
                    channel: row.get(2).unwrap().unwrap(),
                    table: row.get(3).unwrap().unwrap(),
                    tracking: row.get(4).unwrap(),
                },
            );
        }
    });
    for (seq, change) in batch {
        let payload = |c: &Channel, org: Option<String>| {
            serde_json::json!({
                "table": c.table,
                "tracking": c.tracking,
                "org_id": org,
                "token": token(*seq),
            })
            .to_string()
        };
        let notices: Vec<(&Channel, String)> = if change.table_id == 0 {
            // Changes were lost to a full set: every listener resynchronizes.
            channels
                .values()
                .map(|c| {
                    let resync = serde_json::json!({"resync": true, "token": token(*seq)});
                    (c, resync.to_string())
                })
                .collect()
        } else {
            channels
                .get(&change.table_id)
                .map(|c| (c, payload(c, change.org())))
                .into_iter()
                .collect()
        };
        for (c, payload) in notices {
            Spi::run_with_args(
                "SELECT pg_catalog.pg_notify($1, $2)",
                &[c.channel.as_str().into(), payload.as_str().into()],
            )
            .expect("pg_notify");
        }
    }
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

/// The (tracking, org) changes sent after `token`, one row each with the token of its latest
/// change, for the trackings whose counts the caller may read. A token that is unknown, too old
/// (its change is no longer kept) or from before a restart gives one row with only a token:
/// re-read everything, then continue from that token (which is how a first call, with NULL, gets
/// its token).
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
    ),
> {
    require_preloaded();
    // SAFETY: set at connection time.
    let db = unsafe { pg_sys::MyDatabaseId }.to_u32();
    let since = token
        .and_then(|t| t.split_once('-'))
        .filter(|(epoch, _)| *epoch == unsafe { pg_sys::PgStartTime }.to_string())
        .and_then(|(_, seq)| seq.parse::<u64>().ok());
    let (changes, last) = {
        let live = LIVE.share();
        let last = live.next_seq - 1;
        let oldest = live.next_seq.saturating_sub(LOG as u64).max(1);
        let changes: Option<Vec<(u64, Change)>> =
            since.filter(|&s| s + 1 >= oldest && s <= last).map(|s| {
                (s + 1..=last)
                    .map(|seq| (seq, live.log[(seq % LOG as u64) as usize]))
                    .filter(|(_, c)| c.db == db)
                    .collect()
            });
        (changes, last)
    };
    let resync = || vec![(None, None, None, self::token(last))];
    let Some(changes) = changes else {
        return TableIterator::new(resync());
    };
    if changes.iter().any(|(_, c)| c.table_id == 0) {
        return TableIterator::new(resync());
    }
    let mut latest: FxHashMap<(i32, Option<String>), u64> = FxHashMap::default();
    for (seq, change) in changes {
        latest.insert((change.table_id, change.org()), seq);
    }
    let mut rows = Vec::new();
    let mut allowed: FxHashMap<i32, Option<(RegClass, Option<String>)>> = FxHashMap::default();
    let mut entries: Vec<_> = latest.into_iter().collect();
    entries.sort_by_key(|(_, seq)| *seq);
    for ((table_id, org), seq) in entries {
        let visible = allowed.entry(table_id).or_insert_with(|| {
            let t = security::as_extension_owner(|| registry::find_by_id(table_id))?;
            (security::can_read(t.relid.0) && security::rls_allows_counts(t.relid))
                .then_some((t.relid, t.name))
        });
        if let Some((relid, name)) = visible {
            rows.push((Some(*relid), name.clone(), org, self::token(seq)));
        }
    }
    TableIterator::new(rows)
}
