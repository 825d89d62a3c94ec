//! Tracking DDL: `track()` validates a table, registers it, installs its triggers and (unless told
//! not to) counts its existing rows, all in the caller's transaction; `untrack()` undoes all of it.

use crate::drift;
use crate::errors::raise;
use crate::registry::{self, Name, RegClass};
use crate::security;
use crate::sql::{self, Access};
use crate::text_form;
use pgrx::prelude::*;
use pgrx::spi::quote_literal;
use pgrx::{pg_sys, PgSqlErrorCode};

/// The triggers of one tracked table; the table_id in their names lets a partition be tracked on
/// its own as well as through its parent, and tells a dropped trigger's table (see `ddl`).
fn trigger_names(table_id: i32) -> [String; 3] {
    ["row", "flush", "truncate"].map(|kind| format!("org_stats_{kind}_{table_id}"))
}

/// The arguments every org_stats trigger carries: which tracked table, by which columns.
fn trigger_args(table_id: i32, org_column: &str, status_column: &str) -> String {
    format!(
        "'{table_id}', {}, {}",
        quote_literal(org_column),
        quote_literal(status_column)
    )
}

/// Installs the triggers of a tracked table: the row trigger on `table` (PostgreSQL clones it
/// onto every partition, now and later) and the statement triggers on `relations` (the table and
/// its partitions; statement triggers are not cloned). On a logical-replication subscriber they
/// fire ALWAYS, since the apply worker runs as a replica and would skip them.
pub fn install_triggers(
    table: Option<RegClass>,
    relations: &[RegClass],
    table_id: i32,
    org_column: &str,
    status_column: &str,
) {
    let [row, flush, truncate] = trigger_names(table_id);
    let args = trigger_args(table_id, org_column, status_column);
    let mut created = Vec::new();
    if let Some(table) = table {
        sql::exec(
            &format!(
                "CREATE TRIGGER {row} AFTER INSERT OR UPDATE OR DELETE ON {} \
                 FOR EACH ROW EXECUTE FUNCTION org_stats.org_stats_row_trigger({args})",
                table.qualified()
            ),
            &[],
        );
        created.push((table, row));
    }
    for rel in relations {
        let name = rel.qualified();
        sql::exec(
            &format!(
                "CREATE TRIGGER {flush} AFTER INSERT OR UPDATE OR DELETE ON {name} \
                 FOR EACH STATEMENT EXECUTE FUNCTION org_stats.org_stats_flush_trigger({args})"
            ),
            &[],
        );
        sql::exec(
            &format!(
                "CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {name} \
                 FOR EACH STATEMENT EXECUTE FUNCTION org_stats.org_stats_truncate_trigger({args})"
            ),
            &[],
        );
        created.push((*rel, flush.clone()));
        created.push((*rel, truncate.clone()));
    }
    for (rel, trigger) in created {
        if is_subscription_target(rel) {
            sql::exec(
                &format!(
                    "ALTER TABLE {} ENABLE ALWAYS TRIGGER {trigger}",
                    rel.qualified()
                ),
                &[],
            );
        }
    }
}

fn is_subscription_target(rel: RegClass) -> bool {
    let mut target = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription_rel s \
                         WHERE s.srrelid OPERATOR(pg_catalog.=) $1 \
                            OR s.srrelid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a))",
        &[rel.into()],
        Access::Read,
        |row| target = row.get(1).unwrap(),
    );
    target
}

/// The table and every partition below it.
pub fn partition_tree(table: RegClass) -> Vec<RegClass> {
    let mut tree = Vec::new();
    sql::kept(
        "SELECT $1 UNION SELECT t.relid FROM pg_catalog.pg_partition_tree($1) t",
        &[table.into()],
        Access::Write,
        |r| tree.push(r.get(1).unwrap()),
    );
    tree
}

/// The relations carrying this tracked table's statement triggers (its tree, as of the last
/// DDL org_stats saw).
pub fn relations_with_triggers(table_id: i32) -> Vec<RegClass> {
    let [_, flush, _] = trigger_names(table_id);
    let mut rels = Vec::new();
    sql::kept(
        "SELECT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t \
          WHERE t.tgname OPERATOR(pg_catalog.=) $1 AND t.tgparentid OPERATOR(pg_catalog.=) 0",
        &[flush.as_str().into()],
        Access::Write,
        |r| rels.push(r.get(1).unwrap()),
    );
    rels
}

/// Drops this tracked table's triggers from `relations` (the row trigger lives on the table itself
/// and goes with it; its clones go with it too).
pub fn remove_triggers(relations: &[RegClass], table_id: i32) {
    let names: Vec<String> = trigger_names(table_id).into();
    for rel in relations {
        let mut drops = Vec::new();
        sql::kept(
            "SELECT pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::pg_catalog.regclass) \
               FROM pg_catalog.pg_trigger t \
              WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 AND t.tgparentid OPERATOR(pg_catalog.=) 0 \
                AND t.tgname OPERATOR(pg_catalog.=) ANY ($2)",
            &[(*rel).into(), names.clone().into()],
            Access::Write,
            |row| drops.push(row.get::<String>(1).unwrap()),
        );
        for drop in drops {
            sql::exec(&drop, &[]);
        }
    }
}

/// Refuses what org_stats cannot count exactly, before anything is changed.
fn validate(table: RegClass, org_column: &str, status_column: &str) {
    let name = table.display();
    let mut class = None;
    sql::kept(
        "SELECT c.relkind::pg_catalog.text, c.relpersistence::pg_catalog.text \
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
        Access::Read,
        |row| class = Some((row.get::<String>(1).unwrap(), row.get::<String>(2).unwrap())),
    );
    let (relkind, persistence) = class.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("relation {name} does not exist"),
            "Check the table name.",
        )
    });
    if relkind != "r" && relkind != "p" {
        raise(
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{name} is not a table"),
            "org_stats tracks plain and partitioned tables; track the table a view or materialized view reads from.",
        );
    }
    if persistence != "p" {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{name} is {}", if persistence == "t" { "a temporary table" } else { "an unlogged table" }),
            "org_stats tracks permanent tables only: temporary tables vanish with their session and unlogged ones \
             are emptied by a crash, while the counters are shared and crash-safe.",
        );
    }
    security::require_owner(table, "track");
    refuse_if_tracked(table, &name);
    let mut inherited = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_inherits i \
                          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid \
                         WHERE i.inhparent OPERATOR(pg_catalog.=) $1 AND NOT c.relispartition)",
        &[table.into()],
        Access::Read,
        |row| inherited = row.get(1).unwrap(),
    );
    if inherited {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{name} has inheritance children"),
            "Rows of a child table are read through its parent but fire only the child's triggers; org_stats tracks plain tables and declarative partitioning.",
        );
    }
    for (role, column) in [("org_column", org_column), ("status_column", status_column)] {
        let mut found = None;
        sql::kept(
            "SELECT a.atttypid, COALESCE((SELECT l.collisdeterministic FROM pg_catalog.pg_collation l \
                                           WHERE l.oid OPERATOR(pg_catalog.=) a.attcollation), true) \
               FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2 \
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[table.into(), column.into()],
            Access::Read,
            |row| found = Some((row.get::<pg_sys::Oid>(1).unwrap(), row.get::<bool>(2).unwrap())),
        );
        let Some((type_oid, deterministic)) = found else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of relation {name} does not exist"),
                format!("Name the column with {role} => '...'; column names are case-sensitive."),
            );
        };
        if text_form::for_type(type_oid).is_none() {
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{column}\" of relation {name} has a type org_stats cannot count by"),
                "Supported types: text, varchar, char(n), name, uuid, smallint, integer, bigint, enums, \
                 and domains over them.",
            );
        }
        if !deterministic {
            raise(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!("column \"{column}\" of relation {name} has a nondeterministic collation"),
                "Such a collation makes different strings equal, so a GROUP BY would merge values the triggers \
                 count apart; use a deterministic collation for the column.",
            );
        }
    }
}

/// Raises 42710 if `table` is tracked, as seen by a fresh snapshot (so after track()'s lock it also
/// sees a concurrent track() that committed while this one waited).
fn refuse_if_tracked(table: RegClass, name: &str) {
    let mut tracked = false;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) $1)",
            &[table.into()],
            Access::Write,
            |row| tracked = row.get(1).unwrap(),
        )
    });
    if tracked {
        raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {name} is already tracked by org_stats"),
            "To change its columns, call org_stats.untrack() first, then org_stats.track() again.",
        );
    }
}

/// Starts counting `tbl`. See the README for the semantics.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn track(
    tbl: RegClass,
    org_column: default!(Name, "'workos_org_id'"),
    status_column: default!(Name, "'status'"),
    backfill: default!(bool, true),
) {
    let (org_column, status_column) = (org_column.0, status_column.0);
    let name = tbl.display();
    validate(tbl, &org_column, &status_column);
    // SAFETY: reads the transaction's isolation level.
    if backfill && unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            "org_stats.track() with backfill must run at READ COMMITTED",
            "At REPEATABLE READ the snapshot predates the lock that stops writers, so rows committed in \
             between would be missed. Run it at READ COMMITTED, or use backfill => false and CALL org_stats.backfill().",
        );
    }
    security::as_extension_owner(|| {
        // Writers wait from here until commit; the count below then sees every committed row.
        sql::exec(
            &format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", tbl.qualified()),
            &[],
        );
        // A concurrent track() of the same table may have committed while this one waited.
        refuse_if_tracked(tbl, &name);
        let mut table_id = 0;
        sql::kept(
            "INSERT INTO org_stats.tracked (relid, org_column, status_column) VALUES ($1, $2, $3) RETURNING table_id",
            &[tbl.into(), org_column.as_str().into(), status_column.as_str().into()],
            Access::Write,
            |row| table_id = row.get(1).unwrap(),
        );
        install_triggers(
            Some(tbl),
            &partition_tree(tbl),
            table_id,
            &org_column,
            &status_column,
        );
        if backfill {
            // Counting the existing rows is repairing the drift of a table with no counts yet.
            let tracked = registry::find_by_id(table_id).expect("registered just above");
            drift::scan(&tracked, drift::Orgs::All, true);
            sql::kept(
                "UPDATE org_stats.tracked t SET backfilled_at = pg_catalog.now() \
                  WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                &[table_id.into()],
                Access::Write,
                |_| {},
            );
        }
    });
}

/// Stops counting `tbl`: drops its triggers, its counters and its registration.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn untrack(tbl: RegClass) {
    let name = tbl.display();
    let tracked = security::as_extension_owner(|| registry::require_named(tbl, &name, None));
    security::require_owner(tbl, "untrack");
    security::as_extension_owner(|| {
        // The parent first, as writers lock it: dropping a partition's trigger first could deadlock.
        sql::exec(
            &format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tbl.qualified()),
            &[],
        );
        remove_triggers(&relations_with_triggers(tracked.table_id), tracked.table_id);
        for delete in [
            "DELETE FROM org_stats.counters c WHERE c.table_id OPERATOR(pg_catalog.=) $1",
            "DELETE FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) $1",
            "DELETE FROM org_stats.backfill_state b WHERE b.table_id OPERATOR(pg_catalog.=) $1",
            "DELETE FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) $1",
        ] {
            sql::exec(delete, &[tracked.table_id.into()]);
        }
    });
}
