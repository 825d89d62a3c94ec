//! Following what Citus' own functions do to a tracked table: before the transaction that moved
//! it commits, the tracking follows its table to a new one (Citus replaces some), and is counted
//! again wherever its rows are now (see `maintenance::relocate`).

use crate::catalog::registry;
use crate::catalog::schema::{self, Schema};
use crate::citus::placer::{forget_present, present};
use crate::counters::placement::{moved, placer};
use crate::counters::remote;
use crate::maintenance::drift;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::tracking::track;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;

/// Relations invalidated in this transaction while Citus may be installed: Citus invalidates a
/// table it distributes, undistributes, moves to another colocation group or replaces by a new
/// one, so a tracked table among them may need following at commit (see `follow`).
#[derive(Default)]
struct Moved {
    relids: Vec<pg_sys::Oid>,
    /// Too many to keep, or all of them: every tracked table may have moved.
    all: bool,
}

/// Relations kept in `Moved` before it stands for all.
const MOVED_KEPT: usize = 64;

thread_local! {
    static MOVED: RefCell<Moved> = RefCell::new(Moved::default());
}

/// Notes a relcache invalidation (see `relcache`).
pub fn note_invalidation(relid: pg_sys::Oid) {
    // Citus may have been installed or dropped since it was looked up; without it nothing moves.
    if forget_present() == Some(false) {
        return;
    }
    MOVED.with(|m| {
        let mut m = m.borrow_mut();
        if relid == pg_sys::Oid::INVALID || m.relids.len() >= MOVED_KEPT {
            m.all = true;
            m.relids.clear();
        } else if !m.all && !m.relids.contains(&relid) {
            m.relids.push(relid);
        }
    });
}

#[pg_guard]
pub unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::os::raw::c_void,
) {
    let moved = MOVED.with(|m| std::mem::take(&mut *m.borrow_mut()));
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT && (moved.all || !moved.relids.is_empty())
    {
        follow_moved(&moved);
    }
}

/// Before a commit that may have moved a tracked table: follows Citus (see `follow`), in the
/// transaction that moved it, so that no other transaction ever reads counts kept where its rows
/// no longer are. Not in a transaction that cannot write (its reads still count such a tracking
/// live, see `readable`).
fn follow_moved(moved: &Moved) {
    // SAFETY: reads of the backend's state; a catalog lookup by name in a database (a launcher
    // process has none, and commits transactions too).
    let installed_here = unsafe {
        pg_sys::MyDatabaseId != pg_sys::Oid::INVALID
            && !pg_sys::XactReadOnly
            && !pg_sys::RecoveryInProgress()
            && pg_sys::get_extension_oid(c"org_stats".as_ptr(), true) != pg_sys::Oid::INVALID
    };
    if !(installed_here && present() && schema::schema() >= Schema::V0_5) {
        return;
    }
    // SAFETY: pushed here and popped below; an ERROR in between aborts the transaction, which
    // pops it.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
    security::as_extension_owner(|| {
        let mut tracked = false;
        sql::kept(
            "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE $1 OR t.relid OPERATOR(pg_catalog.=) ANY ($2))",
            &[moved.all.into(), moved.relids.clone().into()],
            Access::Write,
            |row| tracked = row.get(1).unwrap(),
        );
        if tracked {
            follow();
        }
    });
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
}

/// Brings every tracking in line with where Citus keeps its table's rows now: follows a table
/// that Citus replaced by a new one (see `reanchor`), and counts a tracking again wherever its
/// rows are now (see `maintenance::relocate`). Run as the extension owner.
fn follow() {
    // Each step reads what the one before changed.
    sql::seeing_own_changes(reanchor);
    for t in registry::all() {
        if moved(&t) {
            sql::seeing_own_changes(|| drift::count_again(&t));
        }
    }
    sql::seeing_own_changes(|| placer().drop_unused());
}

/// Points each tracking whose table Citus replaced at the new one: `undistribute_table()` and
/// `alter_distributed_table()` copy the rows into a new table, give it the old one's name and
/// triggers and drop the old one; `citus_add_local_table_to_metadata()` (which
/// `create_distributed_table_concurrently()` starts with) keeps the old table as the shard of a
/// new one. The table of a tracking is the one carrying its row trigger under its own name; the
/// new one is recorded as counted nowhere, for `follow` to count it. A tracking whose table was
/// dropped (its registration stays until commit while Citus is installed, see sql/ddl.sql) and
/// that no other table carries is forgotten. Run as the extension owner.
fn reanchor() {
    let mut lost: Vec<(i32, bool, Vec<pg_sys::Oid>)> = Vec::new();
    sql::kept(
        "SELECT t.table_id, EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relid), \
                COALESCE((SELECT pg_catalog.array_agg(g.tgrelid) FROM pg_catalog.pg_trigger g \
                           WHERE g.tgname OPERATOR(pg_catalog.=) ('org_stats_row_' OPERATOR(pg_catalog.||) t.table_id)::pg_catalog.name \
                             AND g.tgparentid OPERATOR(pg_catalog.=) 0), '{}') \
           FROM org_stats.tracked t \
          WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid OPERATOR(pg_catalog.=) t.relid \
                               AND g.tgname OPERATOR(pg_catalog.=) ('org_stats_row_' OPERATOR(pg_catalog.||) t.table_id)::pg_catalog.name)",
        &[],
        Access::Write,
        |row| lost.push((row.get(1).unwrap(), row.get(2).unwrap(), row.get(3).unwrap())),
    );
    for (table_id, exists, carriers) in lost {
        match carriers[..] {
            [carrier] => {
                sql::kept(
                    "UPDATE org_stats.tracked t SET relid = $2, counted_in = '' WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                    &[table_id.into(), carrier.into()],
                    Access::Write,
                    |_| {},
                );
            }
            [] if !exists => {
                remote::forget_everywhere(table_id);
                track::forget_registration(table_id);
            }
            // A table that lost its row trigger by hand keeps its tracking (recalculate() repairs
            // what went uncounted); several carriers are none org_stats made.
            _ => {}
        }
    }
}
