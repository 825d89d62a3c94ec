//! Setting a tracking up again where its table's rows are now, after they moved: what following
//! Citus' operations does at their commit, and what `recalculate()` and `backfill()` do to a
//! tracking that moved (see `counters::placement::moved`), before they count its rows there.

use crate::catalog::registry::Tracked;
use crate::catalog::schema;
use crate::counters::placement::{placer, Placement};
use crate::counters::remote;
use crate::pg::sql::{self, Access};
use pgrx::pg_sys;

/// Sets tracking `t` up where its table's rows are now (see `counters::placement`), after they
/// moved (Citus): removes the counts kept anywhere else, records where they are kept now (with
/// `online`, as not backfilled: reads of an org count its rows live until `CALL
/// org_stats.backfill()` counts it), and makes the counters next to the rows (a remote counters
/// table; Citus copied the triggers to the shards). Writers of the table wait from here until
/// commit, so that counting its rows in this transaction (see `drift::count_again`) sees every
/// row of theirs, and their writes after it find the counters. A tracking whose rows no counters
/// can be next to is recorded as counted nowhere, and its reads count the rows live. Returns
/// where its counts are kept now. Run as the extension owner.
pub fn relocate(t: &Tracked, online: bool) -> Placement {
    let placement = placer().placement(t.relid, &t.org_column);
    if !matches!(placement, Placement::Nowhere(_)) && !writers_kept_out(t) {
        sql::exec(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                t.relid.qualified()
            ),
            &[],
        );
    }
    remote::forget_all_but(t.table_id, &placement);
    // Recorded first: a counters table no tracking records is dropped as unused.
    record(t.table_id, &placement, online);
    if let Placement::Remote(_) = placement {
        placer().make_counters(t.relid, &t.org_column);
    }
    let table = t.relid.display();
    if let Placement::Nowhere(why) = &placement {
        pgrx::notice!(
            "org_stats: {table} moved where org_stats cannot count it ({why}); reads of {} count its rows live",
            t.reference()
        );
    } else if online {
        pgrx::notice!(
            "org_stats: {table} moved; reads of {} count its rows live until CALL org_stats.backfill() counts them again",
            t.reference()
        );
    }
    placement
}

/// Whether this transaction keeps the writers of `t`'s table out until it commits already: the
/// Citus operation that moved its rows holds a lock on it that conflicts with theirs, or
/// (Citus' `create_distributed_table_concurrently()`, which holds SHARE UPDATE EXCLUSIVE and
/// moved a table counted on this node) blocks their writes at the shards. Taking a lock there would wait
/// for writers that Citus' block keeps waiting on this transaction: a distributed deadlock.
fn writers_kept_out(t: &Tracked) -> bool {
    let held = |mode: u32| {
        // SAFETY: a lookup in this backend's lock table.
        unsafe { pg_sys::CheckRelationOidLockedByMe(t.relid.0, mode as pg_sys::LOCKMODE, true) }
    };
    held(pg_sys::ShareLock) || (held(pg_sys::ShareUpdateExclusiveLock) && t.counted_in.is_none())
}

/// Records where a tracking's counts are kept now; notifications stop for counts not kept on
/// this node (see `live`), and an `online` recount leaves the tracking not backfilled.
fn record(table_id: i32, placement: &Placement, online: bool) {
    sql::kept(
        "UPDATE org_stats.tracked t SET counted_in = $2, notify = t.notify AND $2 IS NULL, \
                backfilled_at = CASE WHEN $3 THEN NULL ELSE t.backfilled_at END \
          WHERE t.table_id OPERATOR(pg_catalog.=) $1",
        &[table_id.into(), placement.stored().into(), online.into()],
        Access::Write,
        |_| {},
    );
    if online {
        sql::exec(
            "DELETE FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) $1",
            &[table_id.into()],
        );
    }
    // Every backend reads which trackings notify again after this commits.
    // SAFETY: queues an invalidation of an existing relation.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(schema::tracked_relid()) };
}
