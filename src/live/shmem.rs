//! The shared memory that writers, notifiers and readers share: the changes waiting to be sent
//! (coalesced), the log of sent ones that `changed_since` reads, and one slot per database's
//! notifier.

use crate::pg::errors;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;
use rustc_hash::FxHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

/// A worker asked for and not running after this long, in microseconds, never started.
pub(super) const START_GRACE: i64 = 10_000_000;
/// Longer org ids are noted as "some org of this tracking" (NULL in payloads and rows).
pub(super) const ORG_BYTES: usize = 120;
/// Changes waiting to be sent, coalesced; past this many, listeners are told to resynchronize.
pub(super) const PENDING: usize = 2048;
/// Slots of the table holding them: twice as many, so probe chains stay short when it fills.
pub(super) const PENDING_SLOTS: usize = 2 * PENDING;
/// Sent changes kept for `changed_since`.
pub(super) const LOG: usize = 4096;
/// Databases with a worker at once.
pub(super) const WORKERS: usize = 32;

/// One (database, tracking, org) changed; `table_id` 0 marks, in the log, that changes of the
/// database were lost (its readers must resynchronize).
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Change {
    pub(super) db: u32,
    pub(super) table_id: i32,
    /// The tracked table: a tracking id is reused after DROP and CREATE EXTENSION, a table is not
    /// while it exists, so a change is only shown for the table it was noted for.
    pub(super) relid: u32,
    /// `u16::MAX`: no org known (too long).
    pub(super) org_len: u16,
    pub(super) org: [u8; ORG_BYTES],
}

impl Change {
    pub(super) const EMPTY: Change = Change {
        db: 0,
        table_id: 0,
        relid: 0,
        org_len: u16::MAX,
        org: [0; ORG_BYTES],
    };

    pub(super) fn new(db: u32, table_id: i32, relid: u32, org: &str) -> Change {
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

    pub(super) fn lost(db: u32) -> Change {
        Change {
            db,
            ..Change::EMPTY
        }
    }

    pub(super) fn org(&self) -> Option<String> {
        (self.org_len != u16::MAX)
            .then(|| String::from_utf8_lossy(&self.org[..self.org_len as usize]).into_owned())
    }

    pub(super) fn key(&self) -> (u32, i32, u32, u16, &[u8]) {
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

    pub(super) fn slot(&self) -> usize {
        let mut hasher = FxHasher::default();
        self.key().hash(&mut hasher);
        hasher.finish() as usize % PENDING_SLOTS
    }
}

/// A database's notifier: free (`db` 0), asked for (`pid` 0, `since` when), running (`pid`), or
/// dead (`pid` 0, `since` 0: it failed; the next commit in the database starts another, here).
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Worker {
    pub(super) db: u32,
    pub(super) pid: i32,
    pub(super) since: i64,
    /// Changes of the database were lost: the worker tells its listeners to resynchronize.
    pub(super) resync: bool,
}

impl Worker {
    pub(super) const FREE: Worker = Worker {
        db: 0,
        pid: 0,
        since: 0,
        resync: false,
    };
}

/// What the writers, workers and readers share.
#[repr(C)]
pub(super) struct Live {
    /// When this shared memory was first used since the server (re)made it, in microseconds: the
    /// first part of every token, so a token from before a restart, crash restarts included, is
    /// told apart. 0 until then.
    pub(super) epoch: i64,
    /// Open addressing by `Change::slot`; `used` marks the slots in use.
    pub(super) pending: [Change; PENDING_SLOTS],
    pub(super) used: [bool; PENDING_SLOTS],
    pub(super) pending_count: usize,
    /// The sent changes, `log[seq % LOG]` holding number `seq`; `next_seq` is the next number.
    pub(super) log: [Change; LOG],
    pub(super) next_seq: u64,
    pub(super) workers: [Worker; WORKERS],
    /// Databases (0: none) whose changes were lost while they had no worker slot: the worker
    /// that next takes a slot for one tells its listeners to resynchronize.
    pub(super) owed: [u32; WORKERS],
    /// Counts the times such a loss found `owed` full: every worker then tells its listeners to
    /// resynchronize.
    pub(super) lost_everywhere: u64,
}

// SAFETY: plain data, no pointers.
unsafe impl PGRXSharedMemory for Live {}

impl Live {
    pub(super) const EMPTY: Live = Live {
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

    pub(super) fn epoch(&mut self) -> i64 {
        if self.epoch == 0 {
            self.epoch = now_micros().max(1);
        }
        self.epoch
    }

    /// Notes a change to send; a repeat of one waiting is the same change. At most `PENDING` - 1
    /// are kept, in twice as many slots (so probing ends, and soon); past that the change is lost
    /// instead.
    pub(super) fn note(&mut self, change: Change) {
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

    pub(super) fn log(&mut self, change: Change) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.log[(seq % LOG as u64) as usize] = change;
        seq
    }

    /// Changes of `db` were lost: its `changed_since` readers and its listeners resynchronize.
    pub(super) fn lose(&mut self, db: u32) {
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
    pub(super) fn take_owed(&mut self, db: u32) -> bool {
        let found = self.owed.iter().position(|&o| o == db);
        if let Some(i) = found {
            self.owed[i] = 0;
        }
        found.is_some()
    }

    pub(super) fn pending_of(&self, db: u32) -> impl Iterator<Item = &Change> {
        (0..PENDING_SLOTS)
            .filter(move |&s| self.used[s] && self.pending[s].db == db)
            .map(|s| &self.pending[s])
    }

    /// Takes the changes waiting for `db`, numbers and logs them; (seq, change) in order.
    pub(super) fn drain(&mut self, db: u32) -> Vec<(u64, Change)> {
        let taken: Vec<Change> = self.pending_of(db).copied().collect();
        if !taken.is_empty() {
            self.forget_pending(db);
        }
        taken.into_iter().map(|c| (self.log(c), c)).collect()
    }

    /// Frees the slots of `db`'s changes and re-places the others, so probe chains stay whole.
    pub(super) fn forget_pending(&mut self, db: u32) {
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

    pub(super) fn slot_of(&self, db: u32) -> Option<usize> {
        self.workers.iter().position(|w| w.db == db)
    }

    /// `db`'s worker slot, taken if it has none: a free one, else a dead one of another database
    /// (whose waiting changes are then lost). None when every slot is in use.
    pub(super) fn claim(&mut self, db: u32, now: i64) -> Option<usize> {
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

pub(super) static LIVE: PgLwLock<Live> = unsafe { PgLwLock::new(c"org_stats_live") };

/// Whether this server preloaded the library, so the shared memory and workers exist.
pub(super) static PRELOADED: AtomicBool = AtomicBool::new(false);

pub(super) fn now_micros() -> i64 {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

pub(super) fn require_preloaded() {
    if !PRELOADED.load(Ordering::Relaxed) {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "org_stats notifications need org_stats in shared_preload_libraries",
            "Add org_stats to shared_preload_libraries in postgresql.conf (next to pg_cron, if you use it) \
             and restart PostgreSQL; counts, reads and maintenance work without it.",
        );
    }
}

pub(super) fn my_db() -> u32 {
    // SAFETY: set at connection time.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// A token: the shared memory's epoch and a change's number.
pub(super) fn token(epoch: i64, seq: u64) -> String {
    format!("{epoch}-{seq}")
}
