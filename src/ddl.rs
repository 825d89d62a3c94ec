//! DDL on tracked tables. Event triggers (sql/ddl.sql) call in here so that registration,
//! triggers and counts follow what the DBA does:
//! - a renamed org/status column is followed (the registry and the trigger arguments are renamed);
//! - a tracked column changed to another supported type is recounted (its text form may change);
//!   to an unsupported one the ALTER is refused;
//! - a partition created or attached gets the statement triggers and its rows are added; a
//!   detached one loses both;
//! - dropping a tracked column is refused, dropping a tracked table forgets it, and dropping a
//!   partition of one recounts the table (sql/ddl.sql).
//!
//! Each ALTER/CREATE TABLE is bracketed: before it, `ddl_start` notes where each tracked table's
//! columns are (attribute number and type) and which partitions it has; after it, `ddl_end`
//! compares. Comparing with the state just before the command, not with anything stored, keeps
//! this right through pg_dump/pg_restore, which renumbers columns and replays partitions before
//! org_stats' own tables are restored.

use crate::deltas;
use crate::drift;
use crate::errors::raise;
use crate::registry::{self, RegClass, Tracked};
use crate::security;
use crate::sql::{self, Access};
use crate::text_form;
use crate::tracking;
use crate::write_path;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;

/// A tracked table as it was before a DDL command.
struct Before {
    table_id: i32,
    /// (attribute number, type) of the org and status columns.
    columns: [(i16, pg_sys::Oid); 2],
    tree: Vec<RegClass>,
}

thread_local! {
    static BEFORE: RefCell<Vec<Before>> = const { RefCell::new(Vec::new()) };
}

/// Notes the tracked tables' columns and partitions. Called by the `org_stats_ddl_start` event
/// trigger before every ALTER TABLE and CREATE TABLE.
#[pg_extern(volatile, parallel_unsafe)]
fn ddl_start() {
    let before = security::as_extension_owner(|| {
        let mut found = Vec::new();
        sql::kept(
            "SELECT t.table_id, o.attnum, o.atttypid, s.attnum, s.atttypid, t.relid FROM org_stats.tracked t \
               JOIN pg_catalog.pg_attribute o ON o.attrelid OPERATOR(pg_catalog.=) t.relid AND o.attname OPERATOR(pg_catalog.=) t.org_column \
               JOIN pg_catalog.pg_attribute s ON s.attrelid OPERATOR(pg_catalog.=) t.relid AND s.attname OPERATOR(pg_catalog.=) t.status_column",
            &[],
            Access::Write,
            |row| {
                found.push((
                    row.get::<i32>(1).unwrap(),
                    [
                        (row.get::<i16>(2).unwrap(), row.get::<pg_sys::Oid>(3).unwrap()),
                        (row.get::<i16>(4).unwrap(), row.get::<pg_sys::Oid>(5).unwrap()),
                    ],
                    row.get::<RegClass>(6).unwrap(),
                ))
            },
        );
        found
            .into_iter()
            .map(|(table_id, columns, relid)| Before {
                table_id,
                columns,
                tree: tracking::partition_tree(relid),
            })
            .collect()
    });
    BEFORE.with(|b| *b.borrow_mut() = before);
}

/// Brings the tracked tables in line with what the command changed. Called by the
/// `org_stats_ddl_end` event trigger.
#[pg_extern(volatile, parallel_unsafe)]
fn ddl_end() {
    let before = BEFORE.with(|b| std::mem::take(&mut *b.borrow_mut()));
    security::as_extension_owner(|| {
        for was in before {
            // Dropped by the command itself (or untracked): nothing to follow.
            let Some(t) = registry::find_by_id(was.table_id) else {
                continue;
            };
            let t = follow_columns(t, &was);
            follow_partitions(&t, &was.tree);
        }
    });
}

/// The column now at `attnum` of `table`: (name, type).
fn column_at(table: RegClass, attnum: i16) -> (String, pg_sys::Oid) {
    let mut found = None;
    sql::kept(
        "SELECT a.attname::pg_catalog.text, a.atttypid FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.=) $2",
        &[table.into(), attnum.into()],
        Access::Write,
        |row| {
            found = Some((
                row.get::<String>(1).unwrap(),
                row.get::<pg_sys::Oid>(2).unwrap(),
            ))
        },
    );
    found.expect("a tracked column cannot be dropped (see on_sql_drop)")
}

/// Follows renames of the tracked columns and recounts after a change of their type.
fn follow_columns(t: Tracked, was: &Before) -> Tracked {
    let now = was.columns.map(|(attnum, _)| column_at(t.relid, attnum));
    for (name, type_oid) in &now {
        if text_form::for_type(*type_oid).is_none() {
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("column \"{name}\" of table {} is tracked by org_stats and cannot have this type", t.relid.display()),
                "Supported types: text, varchar, char(n), name, uuid, smallint, integer, bigint, enums, \
                 and domains over them. Untrack the table first to give the column another type.",
            );
        }
    }
    let renamed = now[0].0 != t.org_column || now[1].0 != t.status_column;
    let retyped = now[0].1 != was.columns[0].1 || now[1].1 != was.columns[1].1;
    if renamed {
        sql::kept(
            "UPDATE org_stats.tracked t SET org_column = $2, status_column = $3 WHERE t.table_id OPERATOR(pg_catalog.=) $1",
            &[t.table_id.into(), now[0].0.as_str().into(), now[1].0.as_str().into()],
            Access::Write,
            |_| {},
        );
        // The trigger arguments name the columns: re-create the triggers with the new names.
        let relations = tracking::relations_with_triggers(t.table_id);
        tracking::remove_triggers(&relations, t.table_id);
        tracking::install_triggers(Some(t.relid), &relations, t.table_id, &now[0].0, &now[1].0);
    }
    let t = registry::find_by_id(t.table_id).expect("tracked, as read just above");
    if retyped {
        drift::lock_table(&t);
        drift::scan(&t, drift::Orgs::All, true);
    }
    t
}

/// Partitions that joined the table get the statement triggers and their rows counted; partitions
/// that left lose both. The ATTACH or DETACH holds them locked, so the latest snapshot has all
/// their rows for good.
fn follow_partitions(t: &Tracked, tree_before: &[RegClass]) {
    let tree = tracking::partition_tree(t.relid);
    let joined: Vec<RegClass> = tree
        .iter()
        .filter(|r| !tree_before.contains(r))
        .copied()
        .collect();
    let left: Vec<RegClass> = tree_before
        .iter()
        .filter(|r| !tree.contains(r))
        .copied()
        .collect();
    if joined.is_empty() && left.is_empty() {
        return;
    }
    write_path::add_rows_of(t, &joined, 1);
    write_path::add_rows_of(t, &left, -1);
    tracking::install_triggers(None, &joined, t.table_id, &t.org_column, &t.status_column);
    tracking::remove_triggers(&left, t.table_id);
    write_path::write(deltas::take_current());
}
