//! Settling a timed tracking's counts (see `dimensions::Level`): each bucket's fresh counts move
//! to its settled key and are added to the totals of the day and month it falls in, in one
//! transaction, so that reads over long ranges add up a total per month and day. Writers keep
//! adding to fresh keys meanwhile: a counter row a writer holds is skipped, never waited for.

use crate::catalog::registry::Tracked;
use crate::counters::deltas::{Delta, Group};
use crate::counters::placement::Place;
use crate::counters::pool;
use crate::counters::storage;
use crate::counters::write;
use crate::pg::sql::{self, Access};
use crate::values::dimensions::{self, Level};
use pgrx::pg_sys;
use rustc_hash::FxHashMap;

/// Settles tracking `t`'s fresh counts, if it has totals to settle them into and its counters
/// are `org_stats.counters` (Citus' counters shards keep fresh keys: their reads add those up).
/// Run by `recalculate()` with the extension's rights, after its repair.
pub fn settle(t: &Tracked) {
    let Some((_, bucketing)) = &t.time else {
        return;
    };
    let totals = bucketing.totals();
    if totals.is_empty() || t.counted_in.is_some() {
        return;
    }
    let mut fresh: Vec<(String, String)> = Vec::new();
    sql::kept(
        "SELECT c.org_id, c.status FROM org_stats.counters c \
          WHERE c.table_id OPERATOR(pg_catalog.=) $1 AND c.status OPERATOR(pg_catalog.~) '^@[0-9]' \
          GROUP BY 1, 2",
        &[t.table_id.into()],
        // A fresh snapshot, which sees the rows this transaction's repair just wrote.
        Access::Write,
        |row| fresh.push((row.get(1).unwrap(), row.get(2).unwrap())),
    );
    let counters = storage::counters(pg_sys::RowExclusiveLock);
    let mut moved: FxHashMap<Group, Delta> = FxHashMap::default();
    for (org_id, status) in fresh {
        let key = dimensions::decode(&status);
        // NULL and infinite times stay fresh: they fall in no day or month.
        let Some(Some(start)) = key
            .bucket
            .filter(|b| b.is_some_and(|s| s != i64::MIN && s != i64::MAX))
        else {
            continue;
        };
        let group = |status| Group {
            table_id: t.table_id,
            place: Place::Local,
            org_id: org_id.clone(),
            status: Some(status),
        };
        let taken = pool::take(&counters, &group(status.clone()));
        if taken.is_zero() {
            continue;
        }
        let levels = std::iter::once((Level::Settled, start)).chain(
            totals
                .iter()
                .map(|(level, coarse)| (*level, coarse.bucket(start))),
        );
        for (level, at) in levels {
            moved
                .entry(group(dimensions::encode_at(level, at, &key.values)))
                .or_default()
                .add(&taken);
        }
    }
    drop(counters);
    let mut moved: Vec<(Group, Delta)> = moved.into_iter().collect();
    moved.sort_by(|a, b| a.0.cmp(&b.0));
    write::write(moved);
}

/// The day and month totals of tracking `t` (of one org, or all) that differ from the sum of
/// the settled keys they total, as (org, key, stored, actual); empty for a tracking without
/// totals. Run with the extension's rights.
pub fn totals_drift(t: &Tracked, org_id: Option<&str>) -> Vec<(String, String, Delta, Delta)> {
    let Some((_, bucketing)) = &t.time else {
        return Vec::new();
    };
    let totals = bucketing.totals();
    if totals.is_empty() || t.counted_in.is_some() {
        return Vec::new();
    }
    let query = format!(
        "SELECT c.org_id, c.status, pg_catalog.sum(c.n)::pg_catalog.int8, {sums} FROM org_stats.counters c \
          WHERE c.table_id OPERATOR(pg_catalog.=) $1 AND c.status OPERATOR(pg_catalog.~) '^@[hdm]' \
            AND ($2::pg_catalog.text IS NULL OR c.org_id OPERATOR(pg_catalog.=) $2) \
          GROUP BY 1, 2",
        sums = crate::values::sums::total_sql("c.sums", t.sum_columns.len()),
    );
    // (org, key) -> (stored, actual)
    let mut groups: FxHashMap<(String, String), (Delta, Delta)> = FxHashMap::default();
    sql::once(
        &query,
        &[t.table_id.into(), org_id.into()],
        Access::Read,
        |row| {
            let org: String = row.get(1).unwrap();
            let status: String = row.get(2).unwrap();
            let counted = Delta {
                n: row.get(3).unwrap(),
                sums: crate::values::sums::from_numerics(row.get(4)),
            };
            let key = dimensions::decode(&status);
            match (key.level, key.bucket) {
                (Level::Settled, Some(Some(start))) => {
                    for (level, coarse) in &totals {
                        let total =
                            dimensions::encode_at(*level, coarse.bucket(start), &key.values);
                        groups
                            .entry((org.clone(), total))
                            .or_default()
                            .1
                            .add(&counted);
                    }
                }
                _ => groups.entry((org, status)).or_default().0.add(&counted),
            }
        },
    );
    let mut drift: Vec<_> = groups
        .into_iter()
        .filter(|(_, (stored, actual))| {
            let mut difference = actual.clone();
            difference.add(&stored.negated());
            !difference.is_zero()
        })
        .map(|((org, key), (stored, actual))| (org, key, stored, actual))
        .collect();
    drift.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    drift
}
