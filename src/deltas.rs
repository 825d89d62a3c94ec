//! Per-backend pending deltas: what the row triggers of the running statement have counted but
//! not yet written. Rows only touch this map; the counter table is written once per statement
//! (or at commit), one row per distinct (table, org, status), in key order.
//!
//! Every delta is tagged with the subtransaction that made it, so a rolled-back savepoint drops
//! exactly its own deltas, and a flush inside a nested statement never writes deltas of an outer
//! one into a subtransaction that may still roll back.
//!
//! The map is keyed so that a row of a group already in it costs no allocation: (subtransaction,
//! table) → org → a short list of (status, delta).

use pgrx::pg_sys;
use rustc_hash::FxHashMap;
use std::cell::RefCell;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub table_id: i32,
    pub org_id: String,
    pub status: Option<String>,
}

type SubXact = pg_sys::SubTransactionId;
type Statuses = Vec<(Option<String>, i64)>;

#[derive(Default)]
struct Pending {
    map: FxHashMap<(SubXact, i32), FxHashMap<String, Statuses>>,
    /// Distinct groups in `map` (what bounds its memory).
    groups: usize,
}

impl Pending {
    fn recount(&mut self) {
        self.groups = self
            .map
            .values()
            .flat_map(|orgs| orgs.values())
            .map(Vec::len)
            .sum();
    }
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::new(Pending::default());
}

fn current_subxact() -> SubXact {
    // SAFETY: always valid inside a transaction, where triggers and reads run.
    unsafe { pg_sys::GetCurrentSubTransactionId() }
}

pub fn add(table_id: i32, org_id: &str, status: Option<&str>, delta: i64) {
    let subxact = current_subxact();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let Pending { map, groups } = &mut *p;
        let orgs = map.entry((subxact, table_id)).or_default();
        let statuses = match orgs.get_mut(org_id) {
            Some(statuses) => statuses,
            None => orgs.entry(org_id.to_owned()).or_default(),
        };
        match statuses.iter_mut().find(|(s, _)| s.as_deref() == status) {
            Some((_, d)) => *d += delta,
            None => {
                statuses.push((status.map(str::to_owned), delta));
                *groups += 1;
            }
        }
    });
}

pub fn len() -> usize {
    PENDING.with(|p| p.borrow().groups)
}

/// Removes and returns the non-zero deltas selected by `keep`, merged per group, in key order.
fn take(keep: impl Fn(SubXact) -> bool) -> Vec<(Group, i64)> {
    let mut out = Vec::new();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let taken: Vec<(SubXact, i32)> = p.map.keys().filter(|(s, _)| keep(*s)).copied().collect();
        for key in taken {
            let orgs = p.map.remove(&key).unwrap();
            for (org_id, statuses) in orgs {
                for (status, delta) in statuses {
                    out.push((
                        Group {
                            table_id: key.1,
                            org_id: org_id.clone(),
                            status,
                        },
                        delta,
                    ));
                }
            }
        }
        p.recount();
    });
    out.sort_unstable();
    // The same group may come from several subtransactions: merge, and drop what cancelled out.
    let mut merged: Vec<(Group, i64)> = Vec::with_capacity(out.len());
    for (group, delta) in out {
        match merged.last_mut() {
            Some((last, d)) if *last == group => *d += delta,
            _ => merged.push((group, delta)),
        }
    }
    merged.retain(|(_, d)| *d != 0);
    merged
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

/// Unflushed deltas of one org of one table, per status (a status may repeat, once per
/// subtransaction), so reads inside a statement are exact too.
pub fn pending_for_org(table_id: i32, org_id: &str) -> Vec<(Option<String>, i64)> {
    PENDING.with(|p| {
        p.borrow()
            .map
            .iter()
            .filter(|((_, table), _)| *table == table_id)
            .flat_map(|(_, orgs)| orgs.get(org_id).into_iter().flatten().cloned())
            .collect()
    })
}

/// A subtransaction rolled back: its deltas never happened.
pub fn forget_subxact(subxact: SubXact) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.map.retain(|(s, _), _| *s != subxact);
        p.recount();
    });
}

/// A subtransaction committed: its unflushed deltas now belong to its parent.
pub fn promote_subxact(subxact: SubXact, parent: SubXact) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let moved: Vec<(SubXact, i32)> = p
            .map
            .keys()
            .filter(|(s, _)| *s == subxact)
            .copied()
            .collect();
        for key in moved {
            let orgs = p.map.remove(&key).unwrap();
            let into = p.map.entry((parent, key.1)).or_default();
            for (org_id, statuses) in orgs {
                let target = into.entry(org_id).or_default();
                for (status, delta) in statuses {
                    match target.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, d)) => *d += delta,
                        None => target.push((status, delta)),
                    }
                }
            }
        }
        p.recount();
    });
}

/// The transaction ended; nothing pending survives it.
pub fn clear() {
    PENDING.with(|p| *p.borrow_mut() = Pending::default());
}
