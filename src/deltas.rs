//! Per-backend pending deltas: what the row triggers of the running statement have counted but
//! not yet written. Rows only touch this map; the counter table is written once per statement
//! (or at commit), one row per distinct (table, org, status), in key order.
//!
//! Every delta is tagged with the subtransaction that made it, so a rolled-back savepoint drops
//! exactly its own deltas, and a flush inside a nested statement never writes deltas of an outer
//! one into a subtransaction that may still roll back.

use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub table_id: i32,
    pub org_id: String,
    pub status: Option<String>,
}

type SubXact = pg_sys::SubTransactionId;

thread_local! {
    static PENDING: RefCell<HashMap<(SubXact, Group), i64>> = RefCell::new(HashMap::new());
}

fn current_subxact() -> SubXact {
    // SAFETY: always valid inside a transaction, where triggers and reads run.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

pub fn add(group: Group, delta: i64) {
    let key = (current_subxact(), group);
    PENDING.with(|p| *p.borrow_mut().entry(key).or_insert(0) += delta);
}

pub fn len() -> usize {
    PENDING.with(|p| p.borrow().len())
}

/// Removes and returns the non-zero deltas selected by `keep`, merged per group, in key order.
fn take(keep: impl Fn(SubXact) -> bool) -> Vec<(Group, i64)> {
    let mut merged: HashMap<Group, i64> = HashMap::new();
    PENDING.with(|p| {
        p.borrow_mut().retain(|(subxact, group), delta| {
            if keep(*subxact) {
                *merged.entry(group.clone()).or_insert(0) += *delta;
                false
            } else {
                true
            }
        })
    });
    let mut out: Vec<(Group, i64)> = merged.into_iter().filter(|(_, d)| *d != 0).collect();
    out.sort_unstable();
    out
}

/// The deltas of the current subtransaction (what a statement flushes).
pub fn take_current() -> Vec<(Group, i64)> {
    let current = current_subxact();
    take(|s| s == current)
}

/// Every pending delta (what commit flushes; by then all subtransactions have ended).
pub fn take_all() -> Vec<(Group, i64)> {
    take(|_| true)
}

/// Unflushed deltas of one org, as (table_ids, statuses, deltas), so reads inside a statement
/// are exact too.
pub fn pending_for_org(org_id: &str) -> (Vec<i32>, Vec<Option<String>>, Vec<i64>) {
    let (mut tables, mut statuses, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    PENDING.with(|p| {
        for ((_, g), d) in p.borrow().iter().filter(|((_, g), _)| g.org_id == org_id) {
            tables.push(g.table_id);
            statuses.push(g.status.clone());
            counts.push(*d);
        }
    });
    (tables, statuses, counts)
}

/// A subtransaction rolled back: its deltas never happened.
pub fn forget_subxact(subxact: SubXact) {
    PENDING.with(|p| p.borrow_mut().retain(|(s, _), _| *s != subxact));
}

/// A subtransaction committed: its unflushed deltas now belong to its parent.
pub fn promote_subxact(subxact: SubXact, parent: SubXact) {
    PENDING.with(|p| {
        let mut map = p.borrow_mut();
        let moved: Vec<_> = map.keys().filter(|(s, _)| *s == subxact).cloned().collect();
        for key in moved {
            let delta = map.remove(&key).unwrap();
            *map.entry((parent, key.1)).or_insert(0) += delta;
        }
    });
}

/// The transaction ended; nothing pending survives it.
pub fn clear() {
    PENDING.with(|p| p.borrow_mut().clear());
}
