//! Tracking DDL: `track()` validates a table (and a tracking's filter, summed columns and name),
//! registers the tracking, installs its triggers and (unless told not to) counts the existing
//! rows, all in the caller's transaction; `untrack()` undoes all of it. A table has at most one
//! default (unnamed) tracking, read by the table's name, and any number of named ones.

use crate::citus;
use crate::drift;
use crate::errors::raise;
use crate::filter;
use crate::registry::{self, Name, RegClass, Tracked};
use crate::security;
use crate::sql::{self, Access};
use crate::storage;
use crate::text_form;
use pgrx::prelude::*;
use pgrx::spi::quote_literal;
use pgrx::{pg_sys, PgSqlErrorCode};

/// The triggers of one tracking; the table_id in their names lets a table be tracked more than
/// once and a partition on its own as well as through its parent, and tells a dropped trigger's
/// tracking (see `ddl`).
fn trigger_names(table_id: i32) -> [String; 3] {
    ["row", "flush", "truncate"].map(|kind| format!("org_stats_{kind}_{table_id}"))
}

/// The arguments every org_stats trigger carries: which tracking, by which columns, and, for a
/// tracking with a filter or summed columns, the filter (empty for none) and those columns.
fn trigger_args(t: &Tracked) -> String {
    let mut args = vec![
        format!("'{}'", t.table_id),
        quote_literal(&t.org_column),
        quote_literal(&t.status_column),
    ];
    if t.filter.is_some() || !t.sum_columns.is_empty() {
        args.push(quote_literal(t.filter.as_deref().unwrap_or("")));
        args.extend(t.sum_columns.iter().map(quote_literal));
    }
    args.join(", ")
}

/// Installs the triggers of a tracked table: the row trigger on `table` (PostgreSQL clones it
/// onto every partition, now and later) and the statement triggers on `relations` (the table and
/// its partitions; statement triggers are not cloned). On a logical-replication subscriber they
/// fire ALWAYS, since the apply worker runs as a replica and would skip them.
pub fn install_triggers(table: Option<RegClass>, relations: &[RegClass], t: &Tracked) {
    citus::with_triggers_allowed(|| install_triggers_now(table, relations, t))
}

fn install_triggers_now(table: Option<RegClass>, relations: &[RegClass], t: &Tracked) {
    let [row, flush, truncate] = trigger_names(t.table_id);
    let args = trigger_args(t);
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
    citus::with_triggers_allowed(|| remove_triggers_now(relations, table_id))
}

fn remove_triggers_now(relations: &[RegClass], table_id: i32) {
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
fn validate(table: RegClass, org_column: &str, status_column: &str, default_tracking: bool) {
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
    if default_tracking {
        refuse_if_tracked(table, &name);
    }
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
    if security::as_extension_owner(|| registry::find_latest(table)).is_some() {
        raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {name} is already tracked by org_stats"),
            "To change its columns, call org_stats.untrack() first, then org_stats.track() again; to track it \
             another way as well, give the new tracking a name => '...'.",
        );
    }
}

/// Refuses summed columns org_stats cannot sum exactly, or names twice.
fn validate_sums(table: RegClass, columns: &[String]) {
    let name = table.display();
    for (i, column) in columns.iter().enumerate() {
        if columns[..i].contains(column) {
            raise(
                PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
                format!("column \"{column}\" is named twice in sum_columns"),
                "Name each summed column once.",
            );
        }
        let mut type_oid = None;
        sql::kept(
            "SELECT a.atttypid FROM pg_catalog.pg_attribute a \
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2 \
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            &[table.into(), column.as_str().into()],
            Access::Read,
            |row| type_oid = row.get::<pg_sys::Oid>(1),
        );
        let Some(type_oid) = type_oid else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!("column \"{column}\" of relation {name} does not exist"),
                "Name the summed columns with sum_columns => ARRAY['...']; column names are case-sensitive.",
            );
        };
        if text_form::for_sum(type_oid).is_none() {
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{column}\" of relation {name} has a type org_stats cannot sum"),
                "Summed columns must be smallint, integer, bigint or numeric (or domains over them): \
                 their sums are kept exactly, without float.",
            );
        }
    }
}

/// Refuses a tracking name that is empty, longer than an identifier, has a dot, or names a
/// relation (a read of that name would be ambiguous).
fn validate_name(tracking: &str) {
    if tracking.is_empty()
        || tracking.len() >= pg_sys::NAMEDATALEN as usize
        || tracking.contains('.')
    {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid tracking name \"{tracking}\""),
            "A tracking name has 1 to 63 bytes, as an identifier, and no dot (a name with a dot is a \
             schema-qualified table's); leave name NULL for the table's default tracking, read by the table's name.",
        );
    }
    let mut relation = false;
    sql::kept(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[tracking.into()],
        Access::Read,
        |row| relation = row.get(1).unwrap(),
    );
    if relation {
        raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("tracking name \"{tracking}\" is the name of a relation"),
            "Reads take a tracking's name or a table's name, so the two must differ: pick another name, \
             for example the table's name with what it counts, such as loads_by_lane.",
        );
    }
}

/// Raises 42710 if a tracking named `tracking` exists, as seen by a fresh snapshot.
fn refuse_if_named(tracking: &str) {
    let mut exists = false;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE t.name OPERATOR(pg_catalog.=) $1)",
            &[tracking.into()],
            Access::Write,
            |row| exists = row.get(1).unwrap(),
        )
    });
    if exists {
        raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("tracking \"{tracking}\" already exists"),
            "Tracking names are unique; untrack it first, or pick another name.",
        );
    }
}

fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("org_stats.track(): {argument} must not be NULL"),
            "Leave the argument out to take its default.",
        )
    })
}

/// Starts counting `tbl`: its rows per (org, status) or, with `filter`, only the rows satisfying
/// it, and with `sum_columns` also the sums of those columns; a `name` makes it one more
/// tracking of the table, read by that name. See the README for the semantics.
#[pg_extern(volatile, parallel_unsafe, name = "track")]
fn start_tracking(
    tbl: Option<RegClass>,
    org_column: default!(Option<Name>, "'workos_org_id'"),
    status_column: default!(Option<Name>, "'status'"),
    backfill: default!(Option<bool>, true),
    filter: default!(Option<&str>, "NULL"),
    sum_columns: default!(Option<Vec<Option<String>>>, "NULL"),
    name: default!(Option<&str>, "NULL"),
) {
    let sum_columns: Vec<String> = sum_columns
        .unwrap_or_default()
        .into_iter()
        .map(|c| required(c, "an element of sum_columns"))
        .collect();
    track_table(
        required(tbl, "tbl"),
        &required(org_column, "org_column").0,
        &required(status_column, "status_column").0,
        required(backfill, "backfill"),
        filter,
        &sum_columns,
        name,
    );
}

/// 0.1.0's `track()`, which 0.1.0's SQL calls by this function's symbol until `ALTER EXTENSION
/// org_stats UPDATE` (see `storage::schema`); the current install script does not
/// declare it.
#[pg_extern(volatile, strict, parallel_unsafe, sql = false)]
fn track(tbl: RegClass, org_column: Name, status_column: Name, backfill: bool) {
    track_table(
        tbl,
        &org_column.0,
        &status_column.0,
        backfill,
        None,
        &[],
        None,
    );
}

fn track_table(
    tbl: RegClass,
    org_column: &str,
    status_column: &str,
    backfill: bool,
    filter: Option<&str>,
    sum_columns: &[String],
    name: Option<&str>,
) {
    let table_name = tbl.display();
    validate(tbl, org_column, status_column, name.is_none());
    validate_sums(tbl, sum_columns);
    if let Some(tracking) = name {
        validate_name(tracking);
        refuse_if_named(tracking);
    }
    // As the caller: checking the filter parses it.
    let filter = filter.map(|f| filter::check(tbl.0, f));
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
        // A concurrent track() of the same table or name may have committed while this one waited.
        match name {
            None => refuse_if_tracked(tbl, &table_name),
            Some(tracking) => refuse_if_named(tracking),
        }
        let placement = citus::prepare_tracking(tbl, org_column);
        let mut table_id = 0;
        let (filter_text, filter_columns) = match &filter {
            Some(f) => (Some(f.text.as_str()), f.columns.clone()),
            None => (None, Vec::new()),
        };
        let mut args = vec![tbl.into(), org_column.into(), status_column.into()];
        // 0.1.0's registry has none of the rest (see `storage::schema`), and 0.1.0's
        // track() passes none of them.
        let query = if storage::schema() >= storage::Schema::V0_5 {
            args.extend([
                name.into(),
                filter_text.into(),
                sum_columns.to_vec().into(),
                filter_columns.into(),
                placement.stored().into(),
            ]);
            "INSERT INTO org_stats.tracked (relid, org_column, status_column, name, filter, sum_columns, filter_columns, \
                                            counted_in) \
             VALUES ($1, $2, $3, $4, $5, NULLIF($6::pg_catalog.text[], '{}'), NULLIF($7::pg_catalog.text[], '{}'), $8) \
             RETURNING table_id"
        } else if storage::schema() >= storage::Schema::V0_2 {
            args.extend([
                name.into(),
                filter_text.into(),
                sum_columns.to_vec().into(),
                filter_columns.into(),
            ]);
            "INSERT INTO org_stats.tracked (relid, org_column, status_column, name, filter, sum_columns, filter_columns) \
             VALUES ($1, $2, $3, $4, $5, NULLIF($6::pg_catalog.text[], '{}'), NULLIF($7::pg_catalog.text[], '{}')) \
             RETURNING table_id"
        } else {
            "INSERT INTO org_stats.tracked (relid, org_column, status_column) VALUES ($1, $2, $3) RETURNING table_id"
        };
        sql::kept(query, &args, Access::Write, |row| {
            table_id = row.get(1).unwrap()
        });
        let tracked = registry::find_by_id(table_id).expect("registered just above");
        install_triggers(Some(tbl), &partition_tree(tbl), &tracked);
        if backfill {
            // Counting the existing rows is repairing the drift of a tracking with no counts yet.
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

/// Stops a tracking: drops its triggers, its counters and its registration.
fn untrack_tracking(tracked: Tracked) {
    security::require_owner(tracked.relid, "untrack");
    citus::require_own_transaction(tracked.relid, "org_stats.untrack() of");
    security::as_extension_owner(|| {
        // The parent first, as writers lock it: dropping a partition's trigger first could deadlock.
        sql::exec(
            &format!(
                "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
                tracked.relid.qualified()
            ),
            &[],
        );
        remove_triggers(&relations_with_triggers(tracked.table_id), tracked.table_id);
        citus::forget_everywhere(tracked.table_id);
        forget_registration(tracked.table_id);
        citus::drop_unused_counters();
    });
}

/// Removes a tracking's registration and bookkeeping (its counters are removed apart, wherever
/// they are kept). Run as the extension owner.
pub fn forget_registration(table_id: i32) {
    for delete in [
        "DELETE FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) $1",
        "DELETE FROM org_stats.backfill_state b WHERE b.table_id OPERATOR(pg_catalog.=) $1",
        "DELETE FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) $1",
    ] {
        sql::exec(delete, &[table_id.into()]);
    }
}

/// Stops the default tracking of `tbl`.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn untrack(tbl: RegClass) {
    let name = tbl.display();
    untrack_tracking(security::as_extension_owner(|| {
        registry::require_named(tbl, &name, None)
    }));
}

/// Stops the tracking `tracking` names (a tracking's name, or a table's: its default tracking).
#[pg_extern(volatile, strict, parallel_unsafe, name = "untrack")]
fn untrack_by_name(tracking: &str) {
    untrack_tracking(registry::resolve(tracking, None));
}
