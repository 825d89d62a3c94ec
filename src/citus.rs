//! Citus: a table distributed by its org column keeps its counters in a table distributed the same
//! way and co-located with it, `org_stats.counters_<colocation id>` (the layout of
//! `org_stats.counters`). Each shard's triggers write the counters shard next to it, on the node
//! that holds both, in the writer's own transaction, so every write path is counted however it
//! reaches the shard, and shard moves, rebalances and splits carry the counts along. Reads of one
//! org are single-shard SQL that Citus routes to that node; maintenance is distributed SQL.
//!
//! A database without Citus costs one catalog lookup per relation and backend (`place_of_shard`)
//! and one per registry change (`present`), and never runs a Citus function.

use crate::deltas::Delta;
use crate::drift;
use crate::errors::{self, raise};
use crate::pool::MAINTENANCE_SLOT;
use crate::registry::{self, RegClass, Tracked};
use crate::relcache;
use crate::security;
use crate::sql::{self, Access};
use crate::storage::{self, Place};
use crate::sums;
use crate::tracking;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::{Cell, RefCell};

fn installed() -> bool {
    // SAFETY: a catalog lookup by name.
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::Oid::INVALID }
}

thread_local! {
    /// Whether Citus is installed, as last looked up; forgotten at every relcache invalidation
    /// (see `note_invalidation`), which Citus sends for a table it distributes.
    static PRESENT: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether Citus is installed in this database.
fn present() -> bool {
    PRESENT.with(|p| {
        p.get().unwrap_or_else(|| {
            let present = installed();
            p.set(Some(present));
            present
        })
    })
}

/// Where a tracking's counts are kept: where its table's rows are, as far as org_stats can count
/// them there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `org_stats.counters` of this node: a table on one node, or a Citus local table (its one
    /// shard is on the coordinator, whose triggers count it there).
    Local,
    /// The distributed counters table co-located with the table (its name).
    Distributed(String),
    /// Nowhere: Citus keeps the rows where no counters can be next to them (why). Reads count
    /// the rows live.
    Nowhere(String),
}

impl Placement {
    /// As `org_stats.tracked.counted_in` stores it: NULL for `org_stats.counters`, a distributed
    /// counters table's name, or '' for nowhere.
    pub fn stored(&self) -> Option<&str> {
        match self {
            Placement::Local => None,
            Placement::Distributed(counters) => Some(counters),
            Placement::Nowhere(_) => Some(""),
        }
    }

    fn from_stored(counted_in: Option<&str>) -> Placement {
        match counted_in {
            None => Placement::Local,
            Some("") => Placement::Nowhere(String::new()),
            Some(counters) => Placement::Distributed(counters.to_owned()),
        }
    }

    /// The counters table it names, schema-qualified; `None` for nowhere.
    pub fn counters(&self) -> Option<&str> {
        match self {
            Placement::Local => Some("org_stats.counters"),
            Placement::Distributed(counters) => Some(counters),
            Placement::Nowhere(_) => None,
        }
    }

    fn same_as(&self, other: &Placement) -> bool {
        self.stored() == other.stored()
    }
}

/// How Citus keeps a table's rows, as far as counting them goes.
struct Distribution {
    colocation: i32,
    /// `pg_dist_partition.partmethod` and `repmodel`.
    method: String,
    replication: String,
    column: Option<String>,
    /// Whether the tracking's org column is of type text, and the table partitioned.
    org_is_text: bool,
    partitioned: bool,
}

/// How Citus distributes `table` (counted by `org_column`); `None` for a table Citus does not
/// know. The distribution column is read from the catalogs (the attribute number in
/// `partkey`), not with `column_to_column_name()`, which locks the table: on a worker, a shard
/// trigger doing that waits for the connection of the same distributed transaction that is
/// making the table's shell there, a distributed deadlock.
fn distribution(table: RegClass, org_column: &str) -> Option<Distribution> {
    let mut found = None;
    sql::kept(
        "SELECT p.colocationid, p.partmethod::pg_catalog.text, p.repmodel::pg_catalog.text, \
                (SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid \
                    AND a.attnum OPERATOR(pg_catalog.=) pg_catalog.substring(p.partkey, ':varattno ([0-9]+)')::pg_catalog.int2), \
                COALESCE((SELECT a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype \
                            FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid \
                             AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped), false), \
                c.relkind OPERATOR(pg_catalog.=) 'p' \
           FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid \
          WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1",
        &[table.into(), org_column.into()],
        Access::Read,
        |row| {
            found = Some(Distribution {
                colocation: row.get(1).unwrap(),
                method: row.get(2).unwrap(),
                replication: row.get(3).unwrap(),
                column: row.get(4),
                org_is_text: row.get(5).unwrap(),
                partitioned: row.get(6).unwrap(),
            })
        },
    );
    found
}

/// Where the counts of a tracking of `table` by `org_column` must be kept, given where Citus
/// keeps the table's rows now (always `Local` without Citus).
pub fn placement(table: RegClass, org_column: &str) -> Placement {
    if !present() {
        return Placement::Local;
    }
    let Some(d) = distribution(table, org_column) else {
        return Placement::Local;
    };
    let nowhere = |why: String| Placement::Nowhere(why);
    match (d.method.as_str(), d.replication.as_str()) {
        ("h", _) if d.column.as_deref() != Some(org_column) => nowhere(format!(
            "Citus distributes it by column {}, not by its org column {org_column}",
            d.column.unwrap_or_default()
        )),
        ("h", _) if !d.org_is_text => nowhere(format!(
            "its org column {org_column} is not of type text, which co-locating its counters with it needs"
        )),
        ("h", _) if d.partitioned => nowhere("it is a partitioned distributed table".into()),
        ("h", _) => Placement::Distributed(counters_name(d.colocation)),
        // A Citus local table: not co-located with anything, its one shard on the coordinator.
        ("n", _) if d.colocation == 0 => Placement::Local,
        ("n", "t") => nowhere("it is a Citus reference table, copied to every node".into()),
        ("n", _) => nowhere("it is a single-shard distributed table".into()),
        _ => nowhere("Citus distributes it by append or range".into()),
    }
}

/// Where the counts of tracking `t` were last established: where `track()`, a recount or a
/// backfill put them, as its registration records (a database not yet updated to 0.5.0 records
/// nothing: its counts are taken to be where its table is).
fn recorded(t: &Tracked) -> Placement {
    if storage::schema() < storage::Schema::V0_5 {
        return placement(t.relid, &t.org_column);
    }
    Placement::from_stored(t.counted_in.as_deref())
}

/// Where reads of a tracking of `table` by `org_column`, whose counts were established where
/// `counted_in` says, find them: `Ok` when that is where the table's rows are now, `Err(why)`
/// when they count the rows live instead (Citus moved the table since, or keeps it where
/// nothing can be counted).
pub fn readable_at(
    table: RegClass,
    org_column: &str,
    counted_in: Option<&str>,
) -> Result<Placement, String> {
    let current = placement(table, org_column);
    let recorded = if storage::schema() < storage::Schema::V0_5 {
        current.clone()
    } else {
        Placement::from_stored(counted_in)
    };
    match current {
        Placement::Nowhere(why) => Err(format!("org_stats cannot count it next to its rows: {why}")),
        _ if !current.same_as(&recorded) => Err(
            "Citus moved its table since its counts were kept; org_stats counts it again where it is now at \
             the end of this transaction, or with org_stats.recalculate()"
                .into(),
        ),
        _ => Ok(current),
    }
}

/// Whether tracking `t` is to be counted again where its table's rows are now: Citus moved them
/// since its counts were kept (see `adopt`).
pub fn moved(t: &Tracked) -> bool {
    !placement(t.relid, &t.org_column).same_as(&recorded(t))
}

/// Where reads of tracking `t` find its counts (see `readable_at`).
pub fn readable(t: &Tracked) -> Result<Placement, String> {
    readable_at(t.relid, &t.org_column, t.counted_in.as_deref())
}

/// Whether Citus runs the writes of `table` on its workers: a Citus table other than a Citus
/// local table.
fn on_workers(table: RegClass) -> bool {
    present() && distribution(table, "").is_some_and(|d| !(d.method == "n" && d.colocation == 0))
}

/// Refuses a read of a distributed table on a worker, where org_stats has no registry: Citus sent
/// it there inside a query on the table. Returns if this is no such read.
pub fn refuse_read_on_worker(table: RegClass) {
    if on_workers(table) && on_worker() {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("org_stats reads of distributed table {} run on the coordinator", table.display()),
            "Citus sent this call to a worker inside a query on the table. Call it in a statement of its own, \
             or in a CTE that Citus runs on the coordinator.",
        );
    }
}

/// Whether this node is a Citus worker (the coordinator is group 0).
fn on_worker() -> bool {
    let mut worker = false;
    sql::kept(
        "SELECT g.groupid OPERATOR(pg_catalog.<>) 0 FROM pg_catalog.pg_dist_local_group g",
        &[],
        Access::Read,
        |row| worker = row.get(1).unwrap(),
    );
    worker
}

/// The distributed counters tables, with their colocation groups; none on a worker, whose copies
/// are Citus' to drop, and none without Citus.
fn counters_tables() -> Vec<(i32, String)> {
    let mut tables = Vec::new();
    if !present() || on_worker() {
        return tables;
    }
    sql::kept(
        "SELECT p.colocationid, p.logicalrelid::pg_catalog.regclass::pg_catalog.text \
           FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid \
          WHERE c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace \
            AND c.relname OPERATOR(pg_catalog.~) '^counters_[0-9]+$'",
        &[],
        // A fresh snapshot, which sees a counters table made or dropped just before.
        Access::Write,
        |row| tables.push((row.get(1).unwrap(), row.get(2).unwrap())),
    );
    tables
}

/// Refuses notifications of a tracking whose counts are not kept on this node: its writes are
/// counted on the workers, which have no registry to tell them to notify.
pub fn refuse_notify(t: &Tracked) {
    if placement(t.relid, &t.org_column) != Placement::Local {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot notify changes of distributed table {}", t.relid.display()),
            "Its writes are counted on the Citus workers, which do not send org_stats' notifications; \
             poll org_stats.count_by_status() instead.",
        );
    }
}

fn counters_name(colocation: i32) -> String {
    format!("org_stats.counters_{colocation}")
}

/// Refuses to change the triggers of a distributed table (`what`: "org_stats.track() of", ...)
/// inside a transaction block. Citus may send the block's later writes to a shard over another
/// connection than the one that changed its triggers, which does not see the change yet: those
/// writes would go uncounted.
pub fn require_own_transaction(table: RegClass, what: &str) {
    // SAFETY: reads the transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } && on_workers(table) {
        raise(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!(
                "{what} distributed table {} cannot run inside a transaction block",
                table.display()
            ),
            "Run it as a statement of its own, outside BEGIN ... COMMIT and multi-statement strings: \
             Citus may send the block's later writes over a connection that does not see org_stats' new triggers.",
        );
    }
}

/// Before `track()` of `table` installs its triggers: refuses a table whose rows no counters can
/// be next to, makes the co-located counters table a distributed table needs if its group has
/// none, and returns where the tracking's counts are kept. Run as the extension owner.
pub fn prepare_tracking(table: RegClass, org_column: &str) -> Placement {
    let placement = placement(table, org_column);
    match &placement {
        Placement::Local => {}
        Placement::Nowhere(why) => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot track {}: {why}", table.display()),
            "org_stats keeps a distributed table's counts next to its rows, by org: it tracks tables that Citus \
             hash-distributes by their org column (of type text, not partitioned), and Citus local tables. \
             Distribute the table by its org column with create_distributed_table().",
        ),
        Placement::Distributed(_) => {
            require_own_transaction(table, "org_stats.track() of");
            create_counters(table, org_column);
        }
    }
    placement
}

/// Makes the counters table of `table`'s colocation group if it has none, distributed by org and
/// co-located with it. Run as the extension owner.
fn create_counters(table: RegClass, org_column: &str) {
    let Some(Distribution { colocation, .. }) = distribution(table, org_column) else {
        return;
    };
    let counters = counters_name(colocation);
    // An untrack() dropping the group's unused counters table waits for this, or this for it.
    lock_group(colocation);
    let mut exists = false;
    sql::once(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[counters.as_str().into()],
        // A fresh snapshot, which sees a table made or dropped while this waited for the lock.
        Access::Write,
        |row| exists = row.get(1).unwrap(),
    );
    if exists {
        return;
    }
    // The org column's collation, which co-location must match.
    let mut collation = String::new();
    sql::kept(
        "SELECT pg_catalog.format('%s', a.attcollation::pg_catalog.regcollation) FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2",
        &[table.into(), org_column.into()],
        Access::Read,
        |row| collation = row.get(1).unwrap(),
    );
    sql::exec(
        &format!(
            "CREATE TABLE {counters} (org_id pg_catalog.text COLLATE {collation} NOT NULL, \
               table_id pg_catalog.int4 NOT NULL, status pg_catalog.text, slot pg_catalog.int4 NOT NULL, \
               n pg_catalog.int8 NOT NULL, sums pg_catalog.numeric[], \
               CONSTRAINT {key} UNIQUE NULLS NOT DISTINCT (org_id, table_id, status, slot)) USING heap",
            key = format_args!("counters_{colocation}_key"),
        ),
        &[],
    );
    // As org_stats.counters': a tracking's rows across orgs, for its drift and totals.
    sql::exec(
        &format!("CREATE INDEX counters_{colocation}_by_table ON {counters} (table_id, status)"),
        &[],
    );
    sql::exec(
        "SELECT pg_catalog.create_distributed_table($1::pg_catalog.regclass, 'org_id', colocate_with => $2)",
        &[counters.as_str().into(), table.qualified().as_str().into()],
    );
}

/// Distributes tracked table `tbl` by its org column, as Citus' `create_distributed_table()`
/// would, which refuses a table with triggers unless `citus.enable_unsafe_triggers` is on: in
/// one transaction that writers wait for, distributes it with its triggers and counts each of its
/// trackings again next to its shards (see `adopt`).
#[pg_extern(volatile, parallel_unsafe)]
fn distribute(
    tbl: Option<RegClass>,
    shard_count: default!(Option<i32>, "NULL"),
    colocate_with: default!(Option<&str>, "'default'"),
) {
    let Some(table) = tbl else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "org_stats.distribute(): tbl must not be NULL",
            "Name the tracked table to distribute.",
        );
    };
    let name = table.display();
    if !installed() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "org_stats.distribute() needs Citus, which is not installed in this database",
            "Preload citus and run CREATE EXTENSION citus first; without Citus, nothing is distributed.",
        );
    }
    security::require_owner(table, "distribute");
    // SAFETY: reads the transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        raise(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("org_stats.distribute() of {name} cannot run inside a transaction block"),
            "Run it as a statement of its own, as org_stats.track() of a distributed table: Citus may send \
             the block's later writes over a connection that does not see org_stats' new triggers.",
        );
    }
    if distribution(table, "").is_some() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{name} is a Citus table already"),
            "org_stats.distribute() distributes a tracked local table. To distribute a Citus table another way, \
             use Citus' own functions: org_stats follows them.",
        );
    }
    let trackings = security::as_extension_owner(|| registry::all_of(table));
    let Some(org_column) = trackings.first().map(|t| t.org_column.clone()) else {
        errors::not_tracked(&name);
    };
    if trackings.iter().any(|t| t.org_column != org_column) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the trackings of {name} count by different org columns"),
            "A distributed table's counts live with its rows, by the column it is distributed by; \
             untrack the trackings by another org column first.",
        );
    }
    let mut notifying = false;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) $1 AND t.notify)",
            &[table.into()],
            Access::Read,
            |row| notifying = row.get(1).unwrap(),
        )
    });
    if notifying {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot distribute {name}: a tracking of it notifies changes"),
            "Distributed trackings do not notify; turn it off first with org_stats.set_notify('...', false).",
        );
    }
    // Writers wait from here until commit, so the counts made below see every row.
    security::as_extension_owner(|| {
        sql::exec(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                table.qualified()
            ),
            &[],
        )
    });
    // As the caller, whom Citus checks owns the table; Citus copies the triggers to the shards.
    with_triggers_allowed(|| {
        sql::exec(
            "SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3, shard_count => $4)",
            &[
                table.into(),
                org_column.as_str().into(),
                colocate_with.unwrap_or("default").into(),
                shard_count.into(),
            ],
        )
    });
    // Reads from here on must see the table distributed.
    sql::seeing_own_changes(|| {
        security::as_extension_owner(|| {
            for t in registry::all_of(table) {
                adopt(&t, Recount::Now);
            }
        })
    });
}

/// Runs `f` (which creates or drops org_stats' triggers) with Citus propagating triggers of
/// distributed tables to their shards, which it does only when told to.
pub fn with_triggers_allowed<R>(f: impl FnOnce() -> R) -> R {
    if !present() {
        return f();
    }
    // SAFETY: a SAVE-level setting undone by AtEOXact_GUC below (or by the abort of an ERROR).
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"citus.enable_unsafe_triggers".as_ptr(),
            c"on".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let result = f();
    // SAFETY: undoes exactly the setting above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Where the rows are counted that the row trigger `trigger` of tracking `table_id` (by
/// `org_column`) sees. Citus names a shard's triggers after the table's, with the shard id
/// appended, so a trigger under its own name fires on the tracked table (or one of its
/// partitions) on this node: `org_stats.counters`. On a shard: the counters shard co-located
/// with it, when the shard's table is distributed by that column; `org_stats.counters` for a
/// Citus local table's shard (on the coordinator, with the registry). `None` where the rows
/// cannot be counted: the shard of a table Citus keeps where no counters are next to it
/// (distributed by another column, a reference table, a group whose counters no `track()` or
/// recount made yet), or of one whose metadata this transaction does not see (Citus is making
/// it, over another connection of its transaction). Such a write is not counted, and never
/// fails: reads of such a tracking count its rows live, and the recount that sets its counters
/// up (see `adopt`) counts it.
pub fn place_of_rows(
    trigger: &std::ffi::CStr,
    table_id: i32,
    org_column: &std::ffi::CStr,
) -> Option<Place> {
    let name = trigger.to_string_lossy();
    let own = format!("org_stats_row_{table_id}");
    let Some(shard) = name
        .strip_prefix(own.as_str())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|id| id.parse::<i64>().ok())
    else {
        return Some(Place::Local);
    };
    let mut found: Option<(bool, Option<pg_sys::Oid>)> = None;
    sql::kept(
        "SELECT p.partmethod OPERATOR(pg_catalog.=) 'n' AND p.colocationid OPERATOR(pg_catalog.=) 0, \
                CASE WHEN p.partmethod OPERATOR(pg_catalog.=) 'h' \
                      AND EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) p.logicalrelid \
                                     AND a.attname OPERATOR(pg_catalog.=) $2 \
                                     AND a.attnum OPERATOR(pg_catalog.=) pg_catalog.substring(p.partkey, ':varattno ([0-9]+)')::pg_catalog.int2) \
                     THEN pg_catalog.to_regclass('org_stats.' OPERATOR(pg_catalog.||) \
                            pg_catalog.quote_ident(c.relname OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) cs.shardid)) END \
           FROM pg_catalog.pg_dist_shard s \
           JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) s.logicalrelid \
           LEFT JOIN pg_catalog.pg_class c \
                  ON c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace \
                 AND c.relname OPERATOR(pg_catalog.=) ('counters_' OPERATOR(pg_catalog.||) p.colocationid)::pg_catalog.name \
           LEFT JOIN pg_catalog.pg_dist_shard cs ON cs.logicalrelid OPERATOR(pg_catalog.=) c.oid \
                 AND cs.shardminvalue OPERATOR(pg_catalog.=) s.shardminvalue \
          WHERE s.shardid OPERATOR(pg_catalog.=) $1",
        &[shard.into(), org_column.to_string_lossy().as_ref().into()],
        Access::Read,
        |row| found = Some((row.get(1).unwrap(), row.get(2))),
    );
    match found {
        Some((true, _)) => Some(Place::Local),
        Some((false, Some(heap))) => Some(Place::Shard {
            heap: heap.to_u32(),
        }),
        _ => None,
    }
}

/// A counters shard `counters_<group>_<shard>` and its key index `counters_<group>_key_<shard>`,
/// looked up by name each time, so a REINDEX CONCURRENTLY (a new OID) is followed.
pub fn shard_with_key(heap: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid) {
    // SAFETY: lsyscache lookups, NULL for a relation that is gone.
    unsafe {
        let name = pg_sys::get_rel_name(heap);
        let key = (!name.is_null())
            .then(|| {
                let name = std::ffi::CStr::from_ptr(name).to_string_lossy();
                let (table, shard) = name.rsplit_once('_')?;
                let key = std::ffi::CString::new(format!("{table}_key_{shard}")).ok()?;
                let index =
                    pg_sys::get_relname_relid(key.as_ptr(), pg_sys::get_rel_namespace(heap));
                (index != pg_sys::Oid::INVALID).then_some(index)
            })
            .flatten();
        match key {
            Some(key) => (heap, key),
            None => raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                "org_stats' counters shard next to this shard is gone",
                "Reconnect: this session remembers a shard that was dropped or moved meanwhile.",
            ),
        }
    }
}

/// The non-zero counts of one org in a distributed tracking, per status (NULL last), with the sums
/// of its first `sum_columns` summed columns: one query that Citus routes to the node holding the
/// org's shard.
pub fn org_counts(
    counters: &str,
    table_id: i32,
    org_id: &str,
    sum_columns: usize,
) -> Vec<(Option<String>, Delta)> {
    let query = format!(
        "SELECT c.status, pg_catalog.sum(c.n)::pg_catalog.int8, {sums} FROM {counters} c \
          WHERE c.org_id OPERATOR(pg_catalog.=) $1 AND c.table_id OPERATOR(pg_catalog.=) $2 \
          GROUP BY c.status HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0 ORDER BY c.status",
        sums = sums::total_sql("c.sums", sum_columns),
    );
    let mut counts = Vec::new();
    // As the extension owner: the caller's right to read the table was checked, not the counters'.
    security::as_extension_owner(|| {
        sql::once(
            &query,
            &[org_id.into(), table_id.into()],
            Access::Read,
            |row| counts.push((row.get(1), counted(row.get(2), row.get(3)))),
        )
    });
    counts
}

/// The non-zero counts of every org of a distributed tracking, per (org, status), with the sums
/// of its first `sum_columns` summed columns: a query on every node, as any read of all orgs is.
pub fn all_counts(
    counters: &str,
    table_id: i32,
    sum_columns: usize,
) -> Vec<(String, Option<String>, Delta)> {
    let query = format!(
        "SELECT c.org_id, c.status, pg_catalog.sum(c.n)::pg_catalog.int8, {sums} FROM {counters} c \
          WHERE c.table_id OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2 \
         HAVING pg_catalog.sum(c.n) OPERATOR(pg_catalog.<>) 0",
        sums = sums::total_sql("c.sums", sum_columns),
    );
    let mut rows = Vec::new();
    // As `org_counts`.
    security::as_extension_owner(|| {
        sql::once(&query, &[table_id.into()], Access::Read, |row| {
            rows.push((
                row.get(1).unwrap(),
                row.get(2),
                counted(row.get(3), row.get(4)),
            ))
        })
    });
    rows
}

/// A count and its sums as read from distributed counters.
fn counted(n: Option<i64>, sums: Option<Vec<pgrx::AnyNumeric>>) -> Delta {
    Delta {
        n: n.unwrap(),
        sums: sums::from_numerics(sums),
    }
}

/// The counts of the distributed trackings whose tables the caller may read (as the count
/// functions check), per (tracking, org, status): what `org_stats.organization_stats` shows of
/// them besides the trackings counted in `org_stats.counters`. Only trackings whose counts are
/// kept where their table is now (see `readable`). Empty without Citus.
#[pg_extern(stable, parallel_restricted)]
fn distributed_counts() -> TableIterator<
    'static,
    (
        name!(table_id, i32),
        name!(org_id, String),
        name!(status, Option<String>),
        name!(count, i64),
    ),
> {
    let mut rows = Vec::new();
    if present() {
        for t in security::as_extension_owner(registry::all_read) {
            if !(security::can_read(t.relid.0) && security::rls_allows_counts(t.relid)) {
                continue;
            }
            if let Ok(Placement::Distributed(counters)) = readable(&t) {
                let counts = all_counts(&counters, t.table_id, 0);
                rows.extend(
                    counts
                        .into_iter()
                        .map(|(org, status, counted)| (t.table_id, org, status, counted.n)),
                );
            }
        }
    }
    TableIterator::new(rows)
}

/// Why reads of tracking `table_id` count its table's rows live instead of reading its counters
/// (see `readable`); NULL when they read its counters, or when there is no such tracking. What
/// `org_stats.health` shows as `live_reason`.
#[pg_extern(stable, strict, parallel_restricted)]
fn live_reason(table_id: i32) -> Option<String> {
    let t = security::as_extension_owner(|| registry::find_by_id_read(table_id))?;
    readable(&t).err()
}

/// Adds `changes` ((org, status, delta) of one tracking with `sum_columns` summed columns) to a
/// distributed counters table: what backfill and repairs add, in one statement, in the slot
/// writers leave to maintenance.
pub fn add(
    counters: &str,
    table_id: i32,
    sum_columns: usize,
    changes: &[(String, Option<String>, Delta)],
) {
    if changes.is_empty() {
        return;
    }
    let orgs: Vec<String> = changes.iter().map(|c| c.0.clone()).collect();
    let statuses: Vec<Option<String>> = changes.iter().map(|c| c.1.clone()).collect();
    let counts: Vec<i64> = changes.iter().map(|c| c.2.n).collect();
    let sums: Vec<Option<String>> = changes.iter().map(|c| sums::to_text(&c.2.sums)).collect();
    sql::exec(
        &format!(
            "INSERT INTO {counters} AS c (org_id, table_id, status, slot, n, sums) \
             SELECT u.org_id, $2, u.status, $3, u.n, u.sums::pg_catalog.numeric[] \
               FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[]), \
                               pg_catalog.unnest($5::pg_catalog.int8[]), pg_catalog.unnest($6::pg_catalog.text[])) \
                    AS u(org_id, status, n, sums) \
             ON CONFLICT (org_id, table_id, status, slot) DO UPDATE \
             SET n = c.n OPERATOR(pg_catalog.+) excluded.n, sums = {sums}",
            sums = sums::plus_sql("c.sums", "excluded.sums", sum_columns),
        ),
        &[
            orgs.into(),
            table_id.into(),
            MAINTENANCE_SLOT.into(),
            statuses.into(),
            counts.into(),
            sums.into(),
        ],
    );
}

/// What a TRUNCATE of a distributed tracked table does to its counts: removes them, unless it
/// does not reach the shards. Citus' own truncate trigger skips them while DDL propagation is
/// off, as `truncate_local_data_after_distributing_table()` turns it off to empty only the
/// coordinator's leftover copy of the rows, which were counted on the shards.
pub fn truncated(counters: &str, table_id: i32) {
    // SAFETY: reads a setting by name; NULL when Citus has not defined it.
    let propagating = unsafe {
        let value = pg_sys::GetConfigOption(c"citus.enable_ddl_propagation".as_ptr(), true, false);
        value.is_null() || std::ffi::CStr::from_ptr(value) == c"on"
    };
    if propagating {
        forget(counters, table_id);
    }
}

/// Removes every counter of a tracking from a counters table.
fn forget(counters: &str, table_id: i32) {
    sql::exec(
        &format!("DELETE FROM {counters} c WHERE c.table_id OPERATOR(pg_catalog.=) $1"),
        &[table_id.into()],
    );
}

/// Removes every counter of a tracking, from `org_stats.counters` and every distributed counters
/// table, but for those at `keep`.
fn forget_all_but(table_id: i32, keep: &Placement) {
    let local = Placement::Local;
    let distributed = counters_tables()
        .into_iter()
        .map(|(_, counters)| Placement::Distributed(counters));
    for placement in std::iter::once(local).chain(distributed) {
        if !placement.same_as(keep) {
            forget(placement.counters().expect("a counters table"), table_id);
        }
    }
}

/// Removes every counter of a tracking, wherever it is kept. Run as the extension owner.
pub fn forget_everywhere(table_id: i32) {
    forget_all_but(table_id, &Placement::Nowhere(String::new()));
}

/// First key of the advisory lock on a colocation group's counters table ('citu' in ASCII), which
/// `track()` and the drop of an unused one take so that neither misses the other.
const GROUP_LOCK: i32 = 0x6369_7475;

fn lock_group(colocation: i32) {
    sql::kept(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
        &[GROUP_LOCK.into(), colocation.into()],
        Access::Write,
        |_| {},
    );
}

/// Drops the counters table of every colocation group left without a tracked table (after
/// `untrack()` or `DROP TABLE`), and so its shards on every node. On the coordinator only: a
/// worker has no registry to tell (see `counters_tables`).
#[pg_extern(volatile, parallel_unsafe)]
pub fn drop_unused_counters() {
    if !installed() {
        return;
    }
    security::as_extension_owner(|| {
        for (colocation, counters) in counters_tables() {
            lock_group(colocation);
            // A fresh snapshot, which sees registrations deleted just before.
            let mut used = true;
            if storage::schema() >= storage::Schema::V0_5 {
                // Where a tracking records its counts: not a table Citus moved to another group.
                sql::kept(
                    "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE t.counted_in OPERATOR(pg_catalog.=) $1)",
                    &[counters.as_str().into()],
                    Access::Write,
                    |row| used = row.get(1).unwrap(),
                );
            } else {
                sql::kept(
                    "SELECT EXISTS (SELECT FROM org_stats.tracked t \
                                      JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) t.relid \
                                     WHERE p.colocationid OPERATOR(pg_catalog.=) $1)",
                    &[colocation.into()],
                    Access::Write,
                    |row| used = row.get(1).unwrap(),
                );
            }
            if !used {
                sql::exec(&format!("DROP TABLE {counters}"), &[]);
            }
        }
    });
}

/// The event trigger before `DROP EXTENSION` (sql/ddl.sql): dropping org_stats drops the counters
/// tables of distributed trackings first, so that Citus removes their shards from every node
/// (they are not members of the extension, whose members Citus leaves on the workers). Written
/// to the C calling convention to read the statement, which a PL/pgSQL event trigger cannot.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn on_drop_extension(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the context is checked to be an EventTriggerData of a DropStmt (a direct call has
    // none); a DROP EXTENSION names its extensions by String nodes.
    let dropping_org_stats = unsafe {
        let data = (*fcinfo).context as *mut pg_sys::EventTriggerData;
        let is = |node: *mut pg_sys::Node, tag| !node.is_null() && (*node).type_ == tag;
        if !is(data.cast(), pg_sys::NodeTag::T_EventTriggerData)
            || !is((*data).parsetree, pg_sys::NodeTag::T_DropStmt)
        {
            raise(
                PgSqlErrorCode::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
                "org_stats.on_drop_extension() runs only as the event trigger before DROP EXTENSION",
                "It is called by PostgreSQL, not by hand.",
            );
        }
        let stmt = (*data).parsetree as *mut pg_sys::DropStmt;
        let names = (*stmt).objects;
        (*stmt).removeType == pg_sys::ObjectType::OBJECT_EXTENSION
            && (0..pg_sys::list_length(names)).any(|i| {
                let name = (*(*names).elements.add(i as usize)).ptr_value as *mut pg_sys::String;
                std::ffi::CStr::from_ptr((*name).sval) == c"org_stats"
            })
    };
    if dropping_org_stats && installed() {
        crate::security::as_extension_owner(drop_counters_tables);
    }
    pg_sys::Datum::from(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_on_drop_extension() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// Drops every distributed counters table (on the coordinator, see `counters_tables`).
fn drop_counters_tables() {
    for (_, table) in counters_tables() {
        sql::exec(&format!("DROP TABLE {table}"), &[]);
    }
}

// --- Following what Citus does to a tracked table ----------------------------------------------

/// How `adopt` counts a tracking's rows where its table is now.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Recount {
    /// In this transaction, which the table's writers wait for.
    Now,
    /// Org by org, by `CALL org_stats.backfill()`: until then the tracking is not backfilled, and
    /// reads of an org not counted yet count its rows live.
    Online,
}

/// Sets the counts of tracking `t` up where its table's rows are now (see `placement`), after
/// Citus moved them: removes the counts kept anywhere else, records where the counts are kept,
/// makes the counters next to the rows (a distributed counters table; Citus copied the triggers
/// to the shards), and counts the rows there. A tracking whose rows no counters can be next to is recorded as
/// counted nowhere, and its reads count the rows live. Returns what a recount `Now` found. Run
/// as the extension owner.
pub fn adopt(t: &Tracked, recount: Recount) -> Option<drift::Scan> {
    let placement = placement(t.relid, &t.org_column);
    if !matches!(placement, Placement::Nowhere(_)) && !writers_kept_out(t) {
        // Writers wait from here until commit: the recount sees every row of theirs, and those
        // after it find the counters (see `place_of_rows`).
        sql::exec(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                t.relid.qualified()
            ),
            &[],
        );
    }
    forget_all_but(t.table_id, &placement);
    // Recorded first: a counters table no tracking records is dropped as unused.
    record(t.table_id, &placement, recount == Recount::Online);
    if let Placement::Distributed(_) = placement {
        create_counters(t.relid, &t.org_column);
    }
    let table = t.relid.display();
    match (&placement, recount) {
        (Placement::Nowhere(why), _) => {
            pgrx::notice!(
                "org_stats: Citus moved {table} where org_stats cannot count it ({why}); reads of {} count its rows live",
                t.reference()
            );
            None
        }
        (_, Recount::Online) => {
            pgrx::notice!(
                "org_stats: Citus moved {table}; reads of {} count its rows live until CALL org_stats.backfill() counts them again",
                t.reference()
            );
            None
        }
        (_, Recount::Now) => {
            let scan = drift::scan(t, drift::Orgs::All, true);
            sql::kept(
                "UPDATE org_stats.tracked t SET backfilled_at = COALESCE(t.backfilled_at, pg_catalog.now()) \
                  WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                &[t.table_id.into()],
                Access::Write,
                |_| {},
            );
            pgrx::notice!(
                "org_stats: Citus moved {table}; counted its {} rows again in {}",
                scan.rows,
                placement.counters().expect("countable")
            );
            Some(scan)
        }
    }
}

/// Whether this transaction keeps the writers of `t`'s table out until it commits already: the
/// Citus operation that moved its rows holds a lock on it that conflicts with theirs, or
/// (`create_distributed_table_concurrently()`, which holds SHARE UPDATE EXCLUSIVE and moved a
/// table counted on this node) blocks their writes at the shards. Taking a lock there would wait
/// for writers that Citus' block keeps waiting on this transaction: a distributed deadlock.
fn writers_kept_out(t: &Tracked) -> bool {
    let held = |mode: u32| {
        // SAFETY: a lookup in this backend's lock table.
        unsafe { pg_sys::CheckRelationOidLockedByMe(t.relid.0, mode as pg_sys::LOCKMODE, true) }
    };
    held(pg_sys::ShareLock)
        || (held(pg_sys::ShareUpdateExclusiveLock) && recorded(t) == Placement::Local)
}

/// Records where a tracking's counts are kept now; notifications stop for counts not kept on
/// this node (see `refuse_notify`), and an `online` recount leaves the tracking not backfilled.
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
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(storage::tracked_relid()) };
}

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
fn note_invalidation(relid: pg_sys::Oid) {
    // Citus may have been installed or dropped since it was looked up; without it nothing moves.
    if PRESENT.with(|p| p.replace(None)) == Some(false) {
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
unsafe extern "C-unwind" fn on_xact(
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
    if !(installed_here && present() && storage::schema() >= storage::Schema::V0_5) {
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
/// rows are now (see `adopt`). Run as the extension owner.
fn follow() {
    // Each step reads what the one before changed.
    sql::seeing_own_changes(reanchor);
    for t in registry::all() {
        if moved(&t) {
            sql::seeing_own_changes(|| adopt(&t, Recount::Now));
        }
    }
    sql::seeing_own_changes(drop_unused_counters);
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
                forget_everywhere(table_id);
                tracking::forget_registration(table_id);
            }
            // A table that lost its row trigger by hand keeps its tracking (recalculate() repairs
            // what went uncounted); several carriers are none org_stats made.
            _ => {}
        }
    }
}

/// Registers the relcache and transaction callbacks; called once per backend from `_PG_init`.
pub fn init() {
    relcache::listen(note_invalidation);
    // SAFETY: registers a plain function with no argument. Citus, which must be loaded first,
    // registered its own callback before: callbacks run newest first, so this one runs before
    // Citus commits the transaction on the other nodes.
    unsafe { pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut()) };
}
