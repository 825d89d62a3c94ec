//! Per-backend pending deltas: what the row triggers of the running statement have counted but
//! not yet written. Rows only touch this map; the counter table is written once per statement
//! (or at commit), one row per distinct (table, org, status), in key order.
//!
//! Every delta is tagged with the subtransaction that made it, so a rolled-back savepoint drops
//! exactly its own deltas, and a flush inside a nested statement never writes deltas of an outer
//! one into a subtransaction that may still roll back.
//!
//! The map is keyed so that a row of a group already in it costs no allocation: (subtransaction,
//! tracking) → org → a short list of (status, delta). A delta is a change of the row count and,
//! for a tracking with summed columns, of each sum.

use crate::counters::placement::Place;
use crate::values::sums::{self, Sum};
use pgrx::pg_sys;
use rustc_hash::FxHashMap;
use std::cell::RefCell;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Group {
    pub table_id: i32,
    pub place: Place,
    pub org_id: String,
    pub status: Option<String>,
}

/// The change of one group: rows counted, and each summed column's sum (empty without sums).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub n: i64,
    pub sums: Vec<Sum>,
}

impl Delta {
    pub fn add(&mut self, other: &Delta) {
        self.n += other.n;
        sums::add_all(&mut self.sums, &other.sums);
    }

    /// The change that undoes this one.
    pub fn negated(&self) -> Delta {
        Delta {
            n: -self.n,
            sums: self.sums.iter().map(Sum::negated).collect(),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.n == 0 && self.sums.iter().all(Sum::is_zero)
    }
}

type SubXact = pg_sys::SubTransactionId;
type Statuses = Vec<(Option<String>, Delta)>;
/// A tracking's deltas in one subtransaction, for the counters at one place.
type Key = (SubXact, i32, Place);

#[derive(Default)]
struct Pending {
    map: FxHashMap<Key, FxHashMap<String, Statuses>>,
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

pub fn add(table_id: i32, place: Place, org_id: &str, status: Option<&str>, delta: &Delta) {
    let subxact = current_subxact();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let Pending { map, groups } = &mut *p;
        let orgs = map.entry((subxact, table_id, place)).or_default();
        let statuses = match orgs.get_mut(org_id) {
            Some(statuses) => statuses,
            None => orgs.entry(org_id.to_owned()).or_default(),
        };
        match statuses.iter_mut().find(|(s, _)| s.as_deref() == status) {
            Some((_, d)) => d.add(delta),
            None => {
                statuses.push((status.map(str::to_owned), delta.clone()));
                *groups += 1;
            }
        }
    });
}

pub fn len() -> usize {
    PENDING.with(|p| p.borrow().groups)
}

/// Removes and returns the non-zero deltas selected by `keep`, merged per group, in key order.
fn take(keep: impl Fn(SubXact) -> bool) -> Vec<(Group, Delta)> {
    let mut out = Vec::new();
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let taken: Vec<Key> = p.map.keys().filter(|(s, _, _)| keep(*s)).copied().collect();
        for key in taken {
            let orgs = p.map.remove(&key).unwrap();
            for (org_id, statuses) in orgs {
                for (status, delta) in statuses {
                    out.push((
                        Group {
                            table_id: key.1,
                            place: key.2,
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
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // The same group may come from several subtransactions: merge, and drop what cancelled out.
    let mut merged: Vec<(Group, Delta)> = Vec::with_capacity(out.len());
    for (group, delta) in out {
        match merged.last_mut() {
            Some((last, d)) if *last == group => d.add(&delta),
            _ => merged.push((group, delta)),
        }
    }
    merged.retain(|(_, d)| !d.is_zero());
    merged
}

/// The deltas of the current subtransaction (what a statement flushes).
pub fn take_current() -> Vec<(Group, Delta)> {
    let current = current_subxact();
    take(|s| s == current)
}

/// Every pending delta (what commit flushes; by then all subtransactions have ended).
pub fn take_all() -> Vec<(Group, Delta)> {
    take(|_| true)
}

/// Unflushed deltas of one org of one tracking (or of all its orgs), per status (a status may
/// repeat, once per subtransaction), so reads inside a statement are exact too.
pub fn pending(table_id: i32, org_id: Option<&str>) -> Vec<(String, Option<String>, Delta)> {
    PENDING.with(|p| {
        let p = p.borrow();
        let mut out = Vec::new();
        for (_, orgs) in p.map.iter().filter(|((_, table, _), _)| *table == table_id) {
            for (org, statuses) in orgs {
                if org_id.is_none_or(|o| o == org) {
                    out.extend(
                        statuses
                            .iter()
                            .map(|(s, d)| (org.clone(), s.clone(), d.clone())),
                    );
                }
            }
        }
        out
    })
}

/// A subtransaction rolled back: its deltas never happened.
pub fn forget_subxact(subxact: SubXact) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.map.retain(|(s, _, _), _| *s != subxact);
        p.recount();
    });
}

/// A subtransaction committed: its unflushed deltas now belong to its parent.
pub fn promote_subxact(subxact: SubXact, parent: SubXact) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let moved: Vec<Key> = p
            .map
            .keys()
            .filter(|(s, _, _)| *s == subxact)
            .copied()
            .collect();
        for key in moved {
            let orgs = p.map.remove(&key).unwrap();
            let into = p.map.entry((parent, key.1, key.2)).or_default();
            for (org_id, statuses) in orgs {
                let target = into.entry(org_id).or_default();
                for (status, delta) in statuses {
                    match target.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, d)) => d.add(&delta),
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
