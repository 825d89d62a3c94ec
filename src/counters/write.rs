//! Writing deltas to the counters: one counter row per (tracking, org, status) group, chosen so
//! that writers never wait on each other (see `pool`), and telling whoever listens which
//! (tracking, org) pairs a transaction changed.

use crate::catalog::registry::Tracked;
use crate::counters::deltas::{self, Delta, Group};
use crate::counters::placement::Place;
use crate::counters::pool;
use crate::counters::storage;
use crate::counters::table_counts;
use crate::pg::access::Indexed;
use crate::pg::names::RegClass;
use crate::pg::sql;
use pgrx::pg_sys;
use std::sync::OnceLock;

static CHANGED: OnceLock<fn(i32, &str)> = OnceLock::new();

/// Calls `hook` with the (tracking, org) of every group a write changes, in the writer's
/// transaction; called once per backend from an integration's `init()` (notifications).
pub fn on_changed(hook: fn(i32, &str)) {
    let _ = CHANGED.set(hook);
}

/// Adds a statement's `deltas` to the counters, one row per group (see `pool`), only onto row
/// versions that the snapshot its later reads use sees: at REPEATABLE READ and SERIALIZABLE the
/// transaction's, at READ COMMITTED the statement's.
pub fn write(deltas: Vec<(Group, Delta)>) {
    // SAFETY: reads the snapshot stack; inside a statement there is an active snapshot.
    let snapshot = unsafe {
        if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 {
            pg_sys::GetTransactionSnapshot()
        } else {
            pg_sys::GetActiveSnapshot()
        }
    };
    write_to(deltas, pool::Visible::To(snapshot));
}

pub fn write_to(deltas: Vec<(Group, Delta)>, visible: pool::Visible) {
    if deltas.is_empty() {
        return;
    }
    // SAFETY: what SPI does around every statement that writes: a new command before, so rows an
    // earlier flush of this command wrote can be updated, and after, so snapshots taken later in
    // this command (TRUNCATE's) see the writes.
    unsafe { pg_sys::CommandCounterIncrement() };
    // Groups come ordered by place: each place's counters are opened once.
    let mut open: Option<(Place, Indexed)> = None;
    for (group, delta) in &deltas {
        let counters = match &open {
            Some((place, counters)) if *place == group.place => counters,
            _ => {
                let counters = storage::counters_at(group.place, pg_sys::RowExclusiveLock);
                storage::require_direct_writes(&counters);
                &open.insert((group.place, counters)).1
            }
        };
        pool::add(counters, group, delta, visible);
        if let Some(changed) = CHANGED.get() {
            changed(group.table_id, &group.org_id);
        }
    }
    unsafe { pg_sys::CommandCounterIncrement() };
}

/// Adds `sign` times the rows of `relations` (partitions of `t` that leave it, join it, or are
/// emptied) to the pending deltas, read on the latest snapshot: the caller holds them locked.
pub fn add_rows_of(t: &Tracked, relations: &[RegClass], sign: i64) {
    let groups: Vec<_> = sql::on_latest_snapshot(|| {
        relations
            .iter()
            .flat_map(|rel| table_counts::group_counts(t, *rel, None))
            .collect()
    });
    for (org_id, status, counted) in groups {
        let delta = if sign < 0 { counted.negated() } else { counted };
        deltas::add(t.table_id, Place::Local, &org_id, status.as_deref(), &delta);
    }
}
