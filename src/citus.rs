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
use crate::registry::{self, RegClass};
use crate::security;
use crate::sql::{self, Access};
use crate::storage::{self, Place};
use crate::sums;
use crate::tracking;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::Cell;

fn installed() -> bool {
    // SAFETY: a catalog lookup by name.
    unsafe { pg_sys::get_extension_oid(c"citus".as_ptr(), true) != pg_sys::Oid::INVALID }
}

thread_local! {
    /// Whether Citus is installed, and the registry generation it was looked up at.
    static PRESENT: Cell<Option<(u64, bool)>> = const { Cell::new(None) };
}

/// Whether Citus is installed in this database. Looked up again when the registry changes:
/// a distributed table is only ever tracked by a change of the registry.
fn present() -> bool {
    let generation = storage::registry_generation();
    match PRESENT.with(Cell::get) {
        Some((at, present)) if at == generation => present,
        _ => {
            let present = installed();
            PRESENT.with(|p| p.set(Some((generation, present))));
            present
        }
    }
}

/// How Citus distributes `table`: its colocation group, method, and distribution column (NULL
/// for reference and local tables). `None` for a table Citus does not know.
fn distribution(table: RegClass) -> Option<(i32, String, Option<String>)> {
    let mut found = None;
    sql::kept(
        "SELECT p.colocationid, p.partmethod::pg_catalog.text, \
                pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) \
           FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
        Access::Read,
        |row| found = Some((row.get(1).unwrap(), row.get(2).unwrap(), row.get(3))),
    );
    found
}

/// The counters table of a tracked table distributed by hash, schema-qualified; `None` for every
/// other table (and always without Citus).
pub fn counters_table(table: RegClass) -> Option<String> {
    if !present() {
        return None;
    }
    match distribution(table)? {
        (colocation, method, _) if method == "h" => Some(counters_name(colocation)),
        _ => None,
    }
}

/// Refuses a read of a distributed table on a worker, where org_stats has no registry: Citus sent
/// it there inside a query on the table. Returns if this is no such read.
pub fn refuse_read_on_worker(table: RegClass) {
    if counters_table(table).is_some() && on_worker() {
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
/// are Citus' to drop.
fn counters_tables() -> Vec<(i32, String)> {
    let mut tables = Vec::new();
    if on_worker() {
        return tables;
    }
    sql::kept(
        "SELECT p.colocationid, p.logicalrelid::pg_catalog.regclass::pg_catalog.text \
           FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid \
          WHERE c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace \
            AND c.relname OPERATOR(pg_catalog.~) '^counters_[0-9]+$'",
        &[],
        Access::Read,
        |row| tables.push((row.get(1).unwrap(), row.get(2).unwrap())),
    );
    tables
}

/// Refuses notifications of a distributed tracking: its writes are counted on the workers, which
/// have no registry to tell them to notify.
pub fn refuse_notify(table: RegClass) {
    if counters_table(table).is_some() {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot notify changes of distributed table {}", table.display()),
            "Its writes are counted on the Citus workers, which do not send org_stats' notifications; \
             poll org_stats.count_by_status() instead.",
        );
    }
}

/// The counters table of a tracking of `table`: its distributed one on Citus, else
/// `org_stats.counters`.
pub fn counters_of(table: RegClass) -> String {
    counters_table(table).unwrap_or_else(|| "org_stats.counters".to_owned())
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
    if unsafe { pg_sys::IsTransactionBlock() } && counters_table(table).is_some() {
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

/// Before `track()` of `table` installs its triggers: refuses what cannot be counted next to its
/// rows, makes the co-located counters table if its group has none, and lets the triggers reach
/// the shards. Nothing for a table Citus does not distribute. Run as the extension owner.
pub fn prepare_tracking(table: RegClass, org_column: &str) {
    if !present() {
        return;
    }
    let Some((colocation, method, column)) = distribution(table) else {
        return;
    };
    require_own_transaction(table, "org_stats.track() of");
    let name = table.display();
    if method != "h" || column.as_deref() != Some(org_column) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot track {name}: it is not distributed by its org column {org_column}"),
            format!(
                "org_stats keeps a distributed table's counts next to its rows, by org. Distribute it by the org column: \
                 SELECT undistribute_table('{name}'); SELECT create_distributed_table('{name}', '{org_column}');"
            ),
        );
    }
    // The org column: whether it is text, and its collation (which co-location must match).
    let mut text = false;
    let mut collation = String::new();
    let mut partitioned = false;
    sql::kept(
        "SELECT a.atttypid OPERATOR(pg_catalog.=) 'pg_catalog.text'::pg_catalog.regtype, \
                pg_catalog.format('%s', a.attcollation::pg_catalog.regcollation), c.relkind OPERATOR(pg_catalog.=) 'p' \
           FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2",
        &[table.into(), org_column.into()],
        Access::Read,
        |row| {
            text = row.get(1).unwrap();
            collation = row.get(2).unwrap();
            partitioned = row.get(3).unwrap();
        },
    );
    if partitioned {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot track {name}: it is a partitioned distributed table"),
            "On Citus, org_stats tracks distributed tables that are not partitioned.",
        );
    }
    if !text {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot track {name}: its org column {org_column} is not of type text"),
            "Its counters are co-located with it, which needs their org columns to have the same type; \
             on Citus org_stats supports text org columns.",
        );
    }
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
    if !exists {
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
            &format!(
                "CREATE INDEX counters_{colocation}_by_table ON {counters} (table_id, status)"
            ),
            &[],
        );
        sql::exec(
            "SELECT pg_catalog.create_distributed_table($1::pg_catalog.regclass, 'org_id', colocate_with => $2)",
            &[counters.as_str().into(), table.qualified().as_str().into()],
        );
    }
}

/// Distributes tracked table `tbl` by its org column, as Citus' `create_distributed_table()`
/// would, which refuses a table with triggers: in one transaction that writers wait for, drops
/// its trackings' triggers and counts, distributes it, then sets each tracking up on its shards
/// as `track()` does and counts its rows again.
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
    if distribution(table).is_some() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{name} is a Citus table already"),
            "org_stats.distribute() distributes a tracked local table. To distribute a Citus table another way, \
             untrack it, change it with Citus, and track it again.",
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
    security::as_extension_owner(|| {
        // Writers wait from here until commit: no row is written while the table has no triggers.
        sql::exec(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                table.qualified()
            ),
            &[],
        );
        for t in &trackings {
            drift::lock_table(t);
            tracking::remove_triggers(&tracking::relations_with_triggers(t.table_id), t.table_id);
            sql::exec(
                "DELETE FROM org_stats.counters c WHERE c.table_id OPERATOR(pg_catalog.=) $1",
                &[t.table_id.into()],
            );
        }
    });
    // As the caller, whom Citus checks owns the table.
    sql::exec(
        "SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3, shard_count => $4)",
        &[
            table.into(),
            org_column.as_str().into(),
            colocate_with.unwrap_or("default").into(),
            shard_count.into(),
        ],
    );
    // Reads from here on must see the table distributed.
    sql::seeing_own_changes(|| {
        security::as_extension_owner(|| {
            for t in &trackings {
                prepare_tracking(table, &org_column);
                tracking::install_triggers(Some(table), &[table], t);
                // Counting the rows again is repairing the drift of a tracking with no counts.
                drift::scan(t, drift::Orgs::All, true);
                sql::exec(
                    "UPDATE org_stats.tracked t SET backfilled_at = COALESCE(t.backfilled_at, pg_catalog.now()) \
                      WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                    &[t.table_id.into()],
                );
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

/// Where the rows of `rel` are counted: on a Citus shard of a tracked table, the counters shard
/// co-located with it; anywhere else `org_stats.counters`.
pub fn place_of_shard(rel: pg_sys::Relation) -> Place {
    if !installed() {
        return Place::Local;
    }
    // SAFETY: the relation is open.
    // Not looked up in pg_class: Citus hides shards there from client sessions.
    let (namespace, relname) = unsafe {
        (
            (*(*rel).rd_rel).relnamespace,
            std::ffi::CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
                .to_string_lossy()
                .into_owned(),
        )
    };
    let Some(shard) = relname
        .rsplit_once('_')
        .and_then(|(_, id)| id.parse::<i64>().ok())
    else {
        return Place::Local;
    };
    let mut found: Option<(bool, Option<pg_sys::Oid>)> = None;
    // By shard id and schema, not by name: Citus shortens long shard names with a hash.
    sql::kept(
        "SELECT cs.shardid IS NOT NULL, \
                pg_catalog.to_regclass('org_stats.' OPERATOR(pg_catalog.||) \
                    pg_catalog.quote_ident(c.relname OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) cs.shardid)) \
           FROM pg_catalog.pg_dist_shard s \
           JOIN pg_catalog.pg_class t ON t.oid OPERATOR(pg_catalog.=) s.logicalrelid \
           JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) s.logicalrelid \
           LEFT JOIN pg_catalog.pg_class c \
                  ON c.relnamespace OPERATOR(pg_catalog.=) 'org_stats'::pg_catalog.regnamespace \
                 AND c.relname OPERATOR(pg_catalog.=) ('counters_' OPERATOR(pg_catalog.||) p.colocationid)::pg_catalog.name \
           LEFT JOIN pg_catalog.pg_dist_shard cs ON cs.logicalrelid OPERATOR(pg_catalog.=) c.oid \
                 AND cs.shardminvalue OPERATOR(pg_catalog.=) s.shardminvalue \
          WHERE s.shardid OPERATOR(pg_catalog.=) $1 AND t.relnamespace OPERATOR(pg_catalog.=) $2",
        &[shard.into(), namespace.into()],
        Access::Read,
        |row| found = Some((row.get(1).unwrap(), row.get(2))),
    );
    match found {
        None => Place::Local,
        Some((true, Some(heap))) => Place::Shard {
            heap: heap.to_u32(),
        },
        Some(_) => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("org_stats has no counters next to shard {relname}"),
            "Its table was distributed while tracked (with citus.enable_unsafe_triggers), or moved to another \
             colocation group, after org_stats made its counters. Untrack the table and track it again; \
             org_stats.distribute() distributes a tracked table.",
        ),
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
/// them besides the trackings counted in `org_stats.counters`. Empty without Citus.
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
        let mut trackings: Vec<(i32, RegClass)> = Vec::new();
        security::as_extension_owner(|| {
            sql::kept(
                "SELECT t.table_id, t.relid FROM org_stats.tracked t",
                &[],
                Access::Read,
                |row| trackings.push((row.get(1).unwrap(), RegClass(row.get(2).unwrap()))),
            )
        });
        for (table_id, table) in trackings {
            if !(security::can_read(table.0) && security::rls_allows_counts(table)) {
                continue;
            }
            if let Some(counters) = counters_table(table) {
                let counts = all_counts(&counters, table_id, 0);
                rows.extend(
                    counts
                        .into_iter()
                        .map(|(org, status, counted)| (table_id, org, status, counted.n)),
                );
            }
        }
    }
    TableIterator::new(rows)
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

/// Removes every counter of a tracking from a distributed counters table.
pub fn forget(counters: &str, table_id: i32) {
    sql::exec(
        &format!("DELETE FROM {counters} c WHERE c.table_id OPERATOR(pg_catalog.=) $1"),
        &[table_id.into()],
    );
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
            let mut used = true;
            sql::kept(
                "SELECT EXISTS (SELECT FROM org_stats.tracked t \
                                  JOIN pg_catalog.pg_dist_partition p ON p.logicalrelid OPERATOR(pg_catalog.=) t.relid \
                                 WHERE p.colocationid OPERATOR(pg_catalog.=) $1)",
                &[colocation.into()],
                // A fresh snapshot, which sees registrations deleted just before.
                Access::Write,
                |row| used = row.get(1).unwrap(),
            );
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
