//! The trigger write path. Three triggers per tracked table (`track()` installs them):
//! - `org_stats_row`, AFTER INSERT/UPDATE/DELETE FOR EACH ROW: turns each row change into deltas
//!   in backend memory (see `deltas`); no SQL per row.
//! - `org_stats_flush`, AFTER INSERT/UPDATE/DELETE FOR EACH STATEMENT: writes the statement's
//!   deltas, one counter row per (org, status) group, in key order, into this backend's own slot.
//! - `org_stats_truncate`, BEFORE TRUNCATE: removes the table's (or partition's) share.
//!
//! Counting does not depend on the statement trigger alone: what is still pending at commit is
//! written by the pre-commit callback (a logical-replication apply worker fires only row
//! triggers), and a huge statement flushes early to keep memory bounded.
//!
//! Each backend writes only the slot equal to its backend id, so concurrent writers of one org
//! never wait on, or deadlock over, a counter row, and a writer at REPEATABLE READ never meets a
//! counter version it cannot see. Reads sum the slots.

use crate::backfill;
use crate::deltas::{self, Group};
use crate::errors;
use crate::registry::{self, RegClass, Tracked};
use crate::security;
use crate::sql::{self, Access};
use crate::text_form;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::convert::Infallible;
use std::ffi::CStr;

/// A statement touching more distinct groups than this flushes early, bounding backend memory.
const FLUSH_THRESHOLD: usize = 50_000;

thread_local! {
    /// Pending entries at which the row trigger flushes next. Entries of outer subtransactions
    /// cannot be flushed from an inner one, so after an early flush the bar moves past them.
    static FLUSH_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(FLUSH_THRESHOLD) };
}

/// The UPDATE adding `$4` to slot `$3` of one group, but for its status condition.
macro_rules! add_to_slot {
    () => {
        "UPDATE org_stats.counters c SET n = c.n OPERATOR(pg_catalog.+) $4 \
          WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
            AND c.slot OPERATOR(pg_catalog.=) $3"
    };
}

/// Up to this many groups, a flush updates group by group (see `write`).
const FEW_GROUPS: usize = 8;

/// Adds `deltas` to this backend's slot of each group, in key order. A statement of a few groups
/// (the usual single-row write) mostly finds their rows in this slot already: a plain UPDATE by
/// key (one index probe, a HOT update) each is the cheapest, and the new ones go in together with
/// one INSERT ... ON CONFLICT. A bulk statement's groups all go through that one statement.
pub fn write(deltas: Vec<(Group, i64)>) {
    if deltas.is_empty() {
        return;
    }
    let slot = backend_slot();
    security::as_extension_owner(|| {
        if deltas.len() > FEW_GROUPS {
            // A bulk statement: one statement for all its groups beats one per group.
            return upsert(deltas, slot);
        }
        let mut new = Vec::new();
        for (group, delta) in deltas {
            let mut args: Vec<DatumWithOid> = vec![
                group.org_id.as_str().into(),
                group.table_id.into(),
                slot.into(),
                delta.into(),
            ];
            let query = match &group.status {
                Some(status) => {
                    args.push(status.as_str().into());
                    concat!(add_to_slot!(), " AND c.status OPERATOR(pg_catalog.=) $5")
                }
                None => concat!(add_to_slot!(), " AND c.status IS NULL"),
            };
            let updated = sql::kept(query, &args, Access::Write, |_| {});
            if updated == 0 {
                new.push((group, delta));
            }
        }
        if !new.is_empty() {
            upsert(new, slot);
        }
    });
}

/// Adds to this slot's rows of `groups`, creating those that do not exist, in one statement.
fn upsert(groups: Vec<(Group, i64)>, slot: i32) {
    let mut orgs = Vec::with_capacity(groups.len());
    let mut tables = Vec::with_capacity(groups.len());
    let mut statuses = Vec::with_capacity(groups.len());
    let mut counts = Vec::with_capacity(groups.len());
    for (group, delta) in groups {
        orgs.push(group.org_id);
        tables.push(group.table_id);
        statuses.push(group.status);
        counts.push(delta);
    }
    sql::kept(
        "INSERT INTO org_stats.counters AS c (org_id, table_id, status, slot, n) \
         SELECT u.org_id, u.table_id, u.status, $5, u.n \
           FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.int4[]), \
                           pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.int8[])) \
                AS u(org_id, table_id, status, n) \
         ON CONFLICT (org_id, table_id, status, slot) \
         DO UPDATE SET n = c.n OPERATOR(pg_catalog.+) excluded.n",
        &[orgs.into(), tables.into(), statuses.into(), counts.into(), slot.into()],
        Access::Write,
        |_| {},
    );
}

/// This backend's counter slot: its backend id, unique among live backends. Slot 0 belongs to
/// backfill and recalculation.
fn backend_slot() -> i32 {
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    // SAFETY: set once at backend start.
    let slot = unsafe { pg_sys::MyBackendId };
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    // SAFETY: set once at backend start; 0-based.
    let slot = unsafe { pg_sys::MyProcNumber } + 1;
    slot
}

/// The tracked table a trigger counts for, from the trigger's own arguments (partitions fire with
/// their own relation, so the firing relation cannot say which table is tracked).
struct TriggerArgs<'a> {
    table_id: i32,
    org_column: &'a CStr,
    status_column: &'a CStr,
}

fn trigger_args<'a>(trigger: &'a PgTrigger<'a>) -> TriggerArgs<'a> {
    let t = trigger.trigger();
    assert!(
        t.tgnargs >= 3,
        "org_stats trigger {:?} has lost its arguments",
        trigger.name()
    );
    // SAFETY: tgargs holds tgnargs C strings for the life of the trigger call.
    unsafe {
        let arg = |i: usize| CStr::from_ptr(*t.tgargs.add(i));
        TriggerArgs {
            table_id: arg(0).to_str().unwrap().parse().expect("table_id argument"),
            org_column: arg(1),
            status_column: arg(2),
        }
    }
}

/// Where the org and status columns are in one relation's rows, and how they become text.
struct Columns {
    org: (i32, text_form::TextForm),
    status: (i32, text_form::TextForm),
}

fn columns(rel: pg_sys::Relation, args: &TriggerArgs) -> Columns {
    // SAFETY: rel is the open relation the trigger fired on.
    unsafe {
        let desc = (*rel).rd_att;
        let find = |name: &CStr| {
            let attnum = pg_sys::SPI_fnumber(desc, name.as_ptr());
            let type_oid = (attnum > 0).then(|| {
                (*desc).attrs.as_slice((*desc).natts as usize)[(attnum - 1) as usize].atttypid
            });
            match type_oid.and_then(text_form::for_type) {
                Some(form) => (attnum, form),
                None => errors::column_gone(
                    &CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()).to_string_lossy(),
                    &name.to_string_lossy(),
                ),
            }
        };
        Columns {
            org: find(args.org_column),
            status: find(args.status_column),
        }
    }
}

/// The (org, status) text of a row; `None` when the org is NULL (such rows are not counted).
fn row_key(
    tuple: pg_sys::HeapTuple,
    rel: pg_sys::Relation,
    cols: &Columns,
) -> Option<(String, Option<String>)> {
    // SAFETY: tuple is a row of rel; attnums were resolved against rel's descriptor.
    unsafe {
        let desc = (*rel).rd_att;
        let value = |(attnum, form): (i32, text_form::TextForm)| {
            let mut isnull = false;
            let datum = pg_sys::heap_getattr(tuple, attnum, desc, &mut isnull);
            (!isnull).then(|| text_form::to_text(form, datum))
        };
        let org = value(cols.org)?;
        Some((org, value(cols.status)))
    }
}

fn count(table_id: i32, key: Option<(String, Option<String>)>, delta: i64) {
    if let Some((org_id, status)) = key {
        deltas::add(
            Group {
                table_id,
                org_id,
                status,
            },
            delta,
        );
    }
}

#[pg_trigger]
fn org_stats_row_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    let args = trigger_args(trigger);
    let data = trigger.trigger_data();
    let rel = data.tg_relation;
    let cols = columns(rel, &args);
    let event = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let old = data.tg_trigtuple;
    match event {
        pg_sys::TRIGGER_EVENT_INSERT => count(args.table_id, row_key(old, rel, &cols), 1),
        pg_sys::TRIGGER_EVENT_DELETE => count(args.table_id, row_key(old, rel, &cols), -1),
        pg_sys::TRIGGER_EVENT_UPDATE => {
            let before = row_key(old, rel, &cols);
            let after = row_key(data.tg_newtuple, rel, &cols);
            if before != after {
                count(args.table_id, before, -1);
                count(args.table_id, after, 1);
            }
        }
        _ => panic!("org_stats_row_trigger fired for an unexpected event {event}"),
    }
    if deltas::len() >= FLUSH_AT.with(|f| f.get()) {
        write(deltas::take_current());
        FLUSH_AT.with(|f| f.set(deltas::len() + FLUSH_THRESHOLD));
    }
    Ok(None)
}

#[pg_trigger]
fn org_stats_flush_trigger<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    write(deltas::take_current());
    Ok(None)
}

/// TRUNCATE removes its relation's share of the counts, as a decrement into this backend's own
/// slot like any other write. It holds ACCESS EXCLUSIVE on the relation, so it reads the latest
/// snapshot: every committed row, which no one can change any more (the statement's own snapshot
/// predates the wait for that lock, and at REPEATABLE READ the transaction's even more so).
#[pg_trigger]
fn org_stats_truncate_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    let args = trigger_args(trigger);
    let rel = trigger.trigger_data().tg_relation;
    // SAFETY: rel is the open relation the trigger fired on.
    let (relid, partitioned) = unsafe {
        (
            (*rel).rd_id,
            (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE,
        )
    };
    write(deltas::take_current());
    security::as_extension_owner(|| {
        let Some(t) = registry::find_by_id(args.table_id) else {
            return;
        };
        // SAFETY: pushed and popped around read-only queries.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
        let share: Vec<(String, Option<String>, i64)> = if relid == t.relid.0 {
            if partitioned {
                // Its leaf partitions fire their own truncate triggers.
                Vec::new()
            } else {
                // The stored counts: this also clears any drift, as the table is now empty.
                let mut stored = Vec::new();
                sql::kept(
                    "SELECT c.org_id, c.status, pg_catalog.sum(c.n)::pg_catalog.int8 FROM org_stats.counters c \
                      WHERE c.table_id OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2",
                    &[t.table_id.into()],
                    Access::Read,
                    |row| stored.push((row.get(1).unwrap(), row.get(2), row.get(3).unwrap())),
                );
                stored
            }
        } else if !partitioned && is_partition_of(relid, &t) {
            backfill::group_counts(&t, RegClass(relid), None)
        } else {
            // A table detached from the tracked one keeps this trigger but no longer counts.
            Vec::new()
        };
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
        for (org_id, status, n) in share {
            deltas::add(
                Group {
                    table_id: t.table_id,
                    org_id,
                    status,
                },
                -n,
            );
        }
    });
    write(deltas::take_current());
    Ok(None)
}

fn is_partition_of(relid: pg_sys::Oid, t: &Tracked) -> bool {
    let mut inside = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_partition_tree($1) p WHERE p.relid OPERATOR(pg_catalog.=) $2)",
        &[t.relid.into(), RegClass(relid).into()],
        Access::Read,
        |row| inside = row.get(1).unwrap(),
    );
    inside
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::os::raw::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE
            if deltas::len() > 0 =>
        {
            // No statement is running at commit, so the flush needs a snapshot of its own.
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            write(deltas::take_all());
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            deltas::clear();
            FLUSH_AT.with(|f| f.set(FLUSH_THRESHOLD));
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::os::raw::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => deltas::forget_subxact(subxact),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => deltas::promote_subxact(subxact, parent),
        _ => {}
    }
}

/// Registers the transaction callbacks; called once per backend from `_PG_init`.
pub fn init() {
    // SAFETY: registering plain function pointers with no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
