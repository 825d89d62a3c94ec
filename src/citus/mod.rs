//! Citus: a table distributed by its org column is counted next to its shards, in the writer's own
//! transaction, so every write path is counted however it reaches the shard, and shard moves,
//! rebalances and splits carry the counts along; reads of one org are single-shard SQL that
//! Citus routes to that node; maintenance is distributed SQL; and what Citus' own functions do
//! to a tracked table is followed at their commit. Plugs into `counters::placement`, which
//! nothing below names Citus through:
//! - `placer`: where counts live, the counters tables next to the shards;
//! - `follow`: following Citus' functions before their transaction commits;
//! - `api`: `distribute()`, the counts read from every node, the cleanup of DROP statements.
//!
//! A database without Citus costs one catalog lookup per relation and backend (`place_of_rows`)
//! and one per relcache invalidation (`present`), and never runs a Citus function.

use crate::counters::placement;
use crate::pg::relcache;
use pgrx::pg_sys;

pub mod api;
mod follow;
mod placer;

/// Registers Citus' placement and the callbacks that follow Citus; called once per backend from
/// `_PG_init`.
pub fn init() {
    placement::register(&placer::Citus);
    relcache::listen(follow::note_invalidation);
    // SAFETY: registers a plain function with no argument. Citus, which must be loaded first,
    // registered its own callback before: callbacks run newest first, so this one runs before
    // Citus commits the transaction on the other nodes.
    unsafe { pg_sys::RegisterXactCallback(Some(follow::on_xact), std::ptr::null_mut()) };
}
