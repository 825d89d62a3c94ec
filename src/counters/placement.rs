//! Where a tracking's counts live: the seam between counting and where the counted rows are. On
//! one node every count is in `org_stats.counters`; an integration that keeps a table's rows
//! elsewhere (Citus) implements `Placer` and registers it from `_PG_init`, and every
//! layer above asks `placer()` instead of naming it.

use crate::catalog::registry::Tracked;
use crate::catalog::schema::{self, Schema};
use crate::pg::names::RegClass;
use pgrx::pg_sys;
use std::ffi::CStr;
use std::sync::OnceLock;

/// Where a tracking's counts are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `org_stats.counters` of this node, written directly by the triggers (see `pool`).
    Local,
    /// Another counters table of `org_stats.counters`' layout, by name, read and written with
    /// SQL (see `remote`); its rows are written directly where they are, next to the rows they
    /// count (`Place::Shard`).
    Remote(String),
    /// Nowhere: the table's rows are where no counters can be next to them (why). Reads count
    /// the rows live.
    Nowhere(String),
}

impl Placement {
    /// As `org_stats.tracked.counted_in` stores it: NULL for `org_stats.counters`, a remote
    /// counters table's name, or '' for nowhere.
    pub fn stored(&self) -> Option<&str> {
        match self {
            Placement::Local => None,
            Placement::Remote(counters) => Some(counters),
            Placement::Nowhere(_) => Some(""),
        }
    }

    pub fn from_stored(counted_in: Option<&str>) -> Placement {
        match counted_in {
            None => Placement::Local,
            Some("") => Placement::Nowhere(String::new()),
            Some(counters) => Placement::Remote(counters.to_owned()),
        }
    }

    /// The counters table it names, schema-qualified; `None` for nowhere.
    pub fn counters(&self) -> Option<&str> {
        match self {
            Placement::Local => Some("org_stats.counters"),
            Placement::Remote(counters) => Some(counters),
            Placement::Nowhere(_) => None,
        }
    }

    pub fn same_as(&self, other: &Placement) -> bool {
        self.stored() == other.stored()
    }
}

/// Where a group's counter rows are written directly: `org_stats.counters`, or the counters
/// shard of a remote counters table next to the rows they count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Place {
    #[default]
    Local,
    /// The OID of the counters shard (as a number, which orders).
    Shard { heap: u32 },
}

/// What decides where counts live, and what keeping them there needs.
pub trait Placer: Sync {
    /// Where the counts of a tracking of `table` by `org_column` must be kept, given where the
    /// table's rows are now.
    fn placement(&self, table: RegClass, org_column: &str) -> Placement;
    /// Where the row trigger named `trigger` of tracking `table_id` (by `org_column`) counts the
    /// rows it sees; `None` where they cannot be counted (then they are not: such a tracking's
    /// reads count live rows).
    fn place_of_rows(&self, trigger: &CStr, table_id: i32, org_column: &CStr) -> Option<Place>;
    /// The heap and key index of the counters at `Place::Shard { heap }`.
    fn shard_with_key(&self, heap: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid);
    /// Makes the counters table a tracking of `table` by `org_column` is kept in, if it is remote
    /// and missing. Run as the extension owner.
    fn make_counters(&self, table: RegClass, org_column: &str);
    /// The remote counters tables on this node.
    fn counters_tables(&self) -> Vec<String>;
    /// Drops the remote counters tables no tracking keeps its counts in.
    fn drop_unused(&self);
    /// Runs `f`, which makes or drops org_stats' triggers, so that they reach wherever the
    /// table's rows are.
    fn with_triggers(&self, f: &mut dyn FnMut());
    /// Refuses to change the triggers of `table` where a transaction block could write rows that
    /// do not see the change (`what`: "org_stats.track() of", ...).
    fn require_own_transaction(&self, table: RegClass, what: &str);
    /// Refuses a read of `table` made where its counts cannot be read (a node without the
    /// registry); returns if this is no such read.
    fn refuse_read_here(&self, table: RegClass);
    /// Whether a TRUNCATE of a table whose counts are remote empties the rows they count.
    fn truncate_reaches_rows(&self) -> bool;
}

/// One node: every count in `org_stats.counters`.
struct OneNode;

impl Placer for OneNode {
    fn placement(&self, _: RegClass, _: &str) -> Placement {
        Placement::Local
    }
    fn place_of_rows(&self, _: &CStr, _: i32, _: &CStr) -> Option<Place> {
        Some(Place::Local)
    }
    fn shard_with_key(&self, _: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid) {
        unreachable!("one node has no counters shards")
    }
    fn make_counters(&self, _: RegClass, _: &str) {}
    fn counters_tables(&self) -> Vec<String> {
        Vec::new()
    }
    fn drop_unused(&self) {}
    fn with_triggers(&self, f: &mut dyn FnMut()) {
        f()
    }
    fn require_own_transaction(&self, _: RegClass, _: &str) {}
    fn refuse_read_here(&self, _: RegClass) {}
    fn truncate_reaches_rows(&self) -> bool {
        true
    }
}

static PLACER: OnceLock<&'static dyn Placer> = OnceLock::new();

/// Makes `placer` decide where counts live; called once per backend from an integration's
/// `init()`.
pub fn register(placer: &'static dyn Placer) {
    let _ = PLACER.set(placer);
}

/// What decides where counts live: the registered integration's, else one node's.
pub fn placer() -> &'static dyn Placer {
    PLACER.get().copied().unwrap_or(&OneNode)
}

/// Where the counts of tracking `t` were last established: where `track()`, a recount or a
/// backfill put them, as its registration records (a database not yet updated to 0.5.0 records
/// nothing: its counts are taken to be where its table is).
fn recorded(t: &Tracked) -> Placement {
    if schema::schema() < Schema::V0_5 {
        return placer().placement(t.relid, &t.org_column);
    }
    Placement::from_stored(t.counted_in.as_deref())
}

/// Whether tracking `t` is to be counted again where its table's rows are now: they moved since
/// its counts were kept (see `maintenance::relocate`).
pub fn moved(t: &Tracked) -> bool {
    !placer()
        .placement(t.relid, &t.org_column)
        .same_as(&recorded(t))
}

/// Where reads of a tracking of `table` by `org_column`, whose counts were kept where
/// `counted_in` says, find them: `Ok` when that is where the table's rows are now, `Err(why)`
/// when they count the rows live instead (the rows moved since, or are where nothing can be
/// counted).
pub fn readable_at(
    table: RegClass,
    org_column: &str,
    counted_in: Option<&str>,
) -> Result<Placement, String> {
    let current = placer().placement(table, org_column);
    let recorded = if schema::schema() < Schema::V0_5 {
        current.clone()
    } else {
        Placement::from_stored(counted_in)
    };
    match current {
        Placement::Nowhere(why) => Err(format!(
            "org_stats cannot count it next to its rows: {why}"
        )),
        _ if !current.same_as(&recorded) => Err(
            "its table's rows moved since its counts were kept; org_stats counts them again where they are \
             at the end of this transaction, or with org_stats.recalculate()"
                .into(),
        ),
        _ => Ok(current),
    }
}

/// Where reads of tracking `t` find its counts (see `readable_at`).
pub fn readable(t: &Tracked) -> Result<Placement, String> {
    readable_at(t.relid, &t.org_column, t.counted_in.as_deref())
}
