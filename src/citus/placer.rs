//! Where counts live on Citus (see `counters::placement`): a table distributed by hash of its
//! org column keeps its counters in a table distributed the same way and co-located with it,
//! `org_stats.counters_<colocation id>` (the layout of `org_stats.counters`), whose shards the
//! shard triggers write on the node holding both.

use crate::catalog::schema::{self, Schema};
use crate::counters::placement::{Place, Placement, Placer};
use crate::pg::errors::raise;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use std::cell::Cell;
use std::ffi::CStr;

pub fn installed() -> bool {
    // SAFETY: a catalog lookup by name.
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::Oid::INVALID }
}

thread_local! {
    /// Whether Citus is installed, as last looked up; forgotten at every relcache invalidation
    /// (see `note_invalidation`), which Citus sends for a table it distributes.
    static PRESENT: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Forgets whether Citus is installed, to look it up again (it may have been installed or
/// dropped since); returns what was known.
pub fn forget_present() -> Option<bool> {
    PRESENT.with(|p| p.replace(None))
}

/// Whether Citus is installed in this database.
pub fn present() -> bool {
    PRESENT.with(|p| {
        p.get().unwrap_or_else(|| {
            let present = installed();
            p.set(Some(present));
            present
        })
    })
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
fn placement(table: RegClass, org_column: &str) -> Placement {
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
        ("h", _) => Placement::Remote(counters_name(d.colocation)),
        // A Citus local table: not co-located with anything, its one shard on the coordinator.
        ("n", _) if d.colocation == 0 => Placement::Local,
        ("n", "t") => nowhere("it is a Citus reference table, copied to every node".into()),
        ("n", _) => nowhere("it is a single-shard distributed table".into()),
        _ => nowhere("Citus distributes it by append or range".into()),
    }
}

/// Whether Citus runs the writes of `table` on its workers: a Citus table other than a Citus
/// local table.
fn on_workers(table: RegClass) -> bool {
    present() && distribution(table, "").is_some_and(|d| !(d.method == "n" && d.colocation == 0))
}

/// Refuses a read of a distributed table on a worker, where org_stats has no registry: Citus sent
/// it there inside a query on the table. Returns if this is no such read.
fn refuse_read_on_worker(table: RegClass) {
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
pub fn counters_tables() -> Vec<(i32, String)> {
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

fn counters_name(colocation: i32) -> String {
    format!("org_stats.counters_{colocation}")
}

/// Refuses to change the triggers of a distributed table (`what`: "org_stats.track() of", ...)
/// inside a transaction block. Citus may send the block's later writes to a shard over another
/// connection than the one that changed its triggers, which does not see the change yet: those
/// writes would go uncounted.
fn require_own_transaction(table: RegClass, what: &str) {
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
/// up (see `maintenance::relocate`) counts it.
fn place_of_rows(
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
fn shard_with_key(heap: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid) {
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

/// Whether a TRUNCATE of a distributed tracked table reaches its shards: Citus' own truncate
/// trigger skips them while DDL propagation is off, as
/// `truncate_local_data_after_distributing_table()` turns it off to empty only the coordinator's
/// leftover copy of the rows, which were counted on the shards.
fn truncate_reaches_shards() -> bool {
    // SAFETY: reads a setting by name; NULL when Citus has not defined it.
    unsafe {
        let value = pg_sys::GetConfigOption(c"citus.enable_ddl_propagation".as_ptr(), true, false);
        value.is_null() || CStr::from_ptr(value) == c"on"
    }
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
fn drop_unused() {
    if !installed() {
        return;
    }
    security::as_extension_owner(|| {
        for (colocation, counters) in counters_tables() {
            lock_group(colocation);
            // A fresh snapshot, which sees registrations deleted just before.
            let mut used = true;
            if schema::schema() >= Schema::V0_5 {
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

/// Citus, when it is installed; one node's placement otherwise.
pub struct Citus;

impl Placer for Citus {
    fn placement(&self, table: RegClass, org_column: &str) -> Placement {
        placement(table, org_column)
    }
    fn place_of_rows(&self, trigger: &CStr, table_id: i32, org_column: &CStr) -> Option<Place> {
        place_of_rows(trigger, table_id, org_column)
    }
    fn shard_with_key(&self, heap: pg_sys::Oid) -> (pg_sys::Oid, pg_sys::Oid) {
        shard_with_key(heap)
    }
    fn make_counters(&self, table: RegClass, org_column: &str) {
        create_counters(table, org_column)
    }
    fn counters_tables(&self) -> Vec<String> {
        counters_tables()
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    }
    fn drop_unused(&self) {
        drop_unused()
    }
    fn with_triggers(&self, f: &mut dyn FnMut()) {
        with_triggers_allowed(f)
    }
    fn require_own_transaction(&self, table: RegClass, what: &str) {
        require_own_transaction(table, what)
    }
    fn refuse_read_here(&self, table: RegClass) {
        refuse_read_on_worker(table)
    }
    fn truncate_reaches_rows(&self) -> bool {
        truncate_reaches_shards()
    }
}
