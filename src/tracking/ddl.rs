//! DDL on tracked tables. Event triggers (sql/ddl.sql) call in here so that registration,
//! triggers and counts follow what the DBA does:
//! - a renamed org, status, grouping, time, summed or filter column is followed (the registry and
//!   the trigger arguments are renamed);
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

use crate::catalog::registry::{self, Tracked};
use crate::catalog::schema::{self, Schema};
use crate::counters::deltas;
use crate::counters::placement::placer;
use crate::counters::write;
use crate::maintenance::drift;
use crate::pg::errors::raise;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::tracking::triggers;
use crate::values::dimensions;
use crate::values::filter;
use crate::values::sums;
use crate::values::text_form;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::cell::RefCell;

/// A tracking as it was before a DDL command.
struct Before {
    table_id: i32,
    /// (attribute number, type) of the org, status, summed, filter, other grouping and time
    /// columns, in that order (see `tracked_columns`).
    columns: Vec<(i16, pg_sys::Oid)>,
    /// The filter's parse tree, which names columns by number.
    filter: Option<String>,
    tree: Vec<RegClass>,
}

/// (attribute number, type) of each named column of `relid`.
fn positions(relid: RegClass, names: &[&str]) -> Vec<(i16, pg_sys::Oid)> {
    names
        .iter()
        .map(|name| {
            let name = std::ffi::CString::new(*name).expect("a column name has no NUL");
            // SAFETY: syscache lookups of an existing relation's columns.
            unsafe {
                let attnum = pg_sys::get_attnum(relid.0, name.as_ptr());
                (attnum, pg_sys::get_atttype(relid.0, attnum))
            }
        })
        .collect()
}

/// The tracked columns of `t`, in the order `Before::columns` keeps them: org, status, summed,
/// filter, other grouping, time.
fn tracked_columns(t: &Tracked) -> Vec<&str> {
    [t.org_column.as_str(), t.status_column.as_str()]
        .into_iter()
        .chain(t.sum_columns.iter().map(String::as_str))
        .chain(t.filter_columns.iter().map(String::as_str))
        .chain(t.group_columns.iter().map(String::as_str))
        .chain(t.time.iter().map(|(column, _)| column.as_str()))
        .collect()
}

/// What each of `tracked_columns`' columns is to `t`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Grouping,
    Summed,
    Filtered,
    Time,
}

fn roles(t: &Tracked) -> Vec<Role> {
    [Role::Grouping, Role::Grouping]
        .into_iter()
        .chain(t.sum_columns.iter().map(|_| Role::Summed))
        .chain(t.filter_columns.iter().map(|_| Role::Filtered))
        .chain(t.group_columns.iter().map(|_| Role::Grouping))
        .chain(t.time.iter().map(|_| Role::Time))
        .collect()
}

thread_local! {
    static BEFORE: RefCell<Vec<Before>> = const { RefCell::new(Vec::new()) };
}

/// Notes the trackings' columns, filters and partitions. Called by the `org_stats_ddl_start`
/// event trigger before every ALTER TABLE and CREATE TABLE.
#[pg_extern(volatile, parallel_unsafe)]
fn ddl_start() {
    // org_stats' own scripts (CREATE or ALTER EXTENSION) change only its own tables.
    // SAFETY: reads a backend global.
    if unsafe { pg_sys::creating_extension } {
        return;
    }
    let before = security::as_extension_owner(|| {
        registry::all()
            .into_iter()
            .filter_map(|t| {
                let columns = positions(t.relid, &tracked_columns(&t));
                // A column gone while event triggers did not fire: nothing to follow (writes and
                // reads say so).
                if columns.iter().any(|&(attnum, _)| attnum <= 0) {
                    return None;
                }
                Some(Before {
                    table_id: t.table_id,
                    columns,
                    filter: t.filter.as_deref().map(|f| filter::tree(t.relid.0, f)),
                    tree: triggers::partition_tree(t.relid),
                })
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

fn refuse_type(t: &Tracked, column: &str, supported: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!(
            "column \"{column}\" of table {} is tracked by org_stats and cannot have this type",
            t.relid.display()
        ),
        format!("Supported types: {supported}. Untrack the table first to give the column another type."),
    )
}

/// Follows renames of the tracked columns (org, status, summed, and those the filter reads,
/// whose text is printed again from its parse tree) and recounts after a change of their type,
/// checking the filter again first.
fn follow_columns(t: Tracked, was: &Before) -> Tracked {
    let now: Vec<(String, pg_sys::Oid)> = was
        .columns
        .iter()
        .map(|&(attnum, _)| column_at(t.relid, attnum))
        .collect();
    let roles = roles(&t);
    for ((name, type_oid), role) in now.iter().zip(&roles) {
        match role {
            Role::Grouping if text_form::for_type(*type_oid).is_none() => refuse_type(
                &t,
                name,
                "text, varchar, char(n), name, uuid, smallint, integer, bigint, enums, and domains over them",
            ),
            Role::Summed if sums::summand(*type_oid).is_none() => refuse_type(
                &t,
                name,
                "smallint, integer, bigint, numeric, and domains over them",
            ),
            Role::Time => match dimensions::time_type(*type_oid) {
                None => refuse_type(&t, name, "timestamptz, timestamp, date, and domains over them"),
                Some(false) if t.time.as_ref().is_some_and(|(_, b)| b.zone.is_some()) => {
                    refuse_type(&t, name, "timestamptz, as its buckets are cut in a time zone")
                }
                _ => {}
            },
            _ => {}
        }
    }
    let names: Vec<&str> = now.iter().map(|(name, _)| name.as_str()).collect();
    let renamed = names != tracked_columns(&t);
    let retyped = now.iter().zip(&was.columns).any(|(a, b)| a.1 != b.1);
    let filter = was.filter.as_deref().map(|tree| {
        let text = filter::deparse(t.relid.0, tree);
        if retyped || Some(&text) != t.filter.as_ref() {
            // Still a filter org_stats may evaluate, on the columns as they are now.
            filter::check(t.relid.0, &text);
        }
        text
    });
    if renamed || filter != t.filter {
        // The triggers are made again with the new names.
        placer().require_own_transaction(t.relid, "renaming a tracked column of");
        let named = |role| -> Vec<&str> {
            names
                .iter()
                .zip(&roles)
                .filter(|(_, r)| **r == role)
                .map(|(n, _)| *n)
                .collect()
        };
        let group_columns = &named(Role::Grouping)[2..];
        let time_column = named(Role::Time).first().copied();
        sql::kept(
            "UPDATE org_stats.tracked t SET org_column = $2, status_column = $3 \
              WHERE t.table_id OPERATOR(pg_catalog.=) $1",
            &[t.table_id.into(), names[0].into(), names[1].into()],
            Access::Write,
            |_| {},
        );
        // 0.1.0's registry has none of these (see `catalog::schema`).
        if schema::schema() >= Schema::V0_2 {
            sql::kept(
                "UPDATE org_stats.tracked t SET sum_columns = NULLIF($2::pg_catalog.text[], '{}'), \
                        filter_columns = NULLIF($3::pg_catalog.text[], '{}'), filter = $4 \
                  WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                &[
                    t.table_id.into(),
                    named(Role::Summed).into_iter().map(str::to_owned).collect::<Vec<_>>().into(),
                    named(Role::Filtered).into_iter().map(str::to_owned).collect::<Vec<_>>().into(),
                    filter.as_deref().into(),
                ],
                Access::Write,
                |_| {},
            );
        }
        if t.dimensional() {
            sql::kept(
                "UPDATE org_stats.tracked t SET group_columns = NULLIF($2::pg_catalog.text[], '{}'), time_column = $3 \
                  WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                &[
                    t.table_id.into(),
                    group_columns.iter().map(|c| c.to_string()).collect::<Vec<_>>().into(),
                    time_column.into(),
                ],
                Access::Write,
                |_| {},
            );
        }
        // The trigger arguments name the columns: re-create the triggers with the new names.
        let renamed = registry::find_by_id(t.table_id).expect("tracked, as read just above");
        let relations = triggers::relations_with_triggers(t.table_id);
        triggers::remove_triggers(&relations, t.table_id);
        triggers::install_triggers(Some(t.relid), &relations, &renamed);
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
    let tree = triggers::partition_tree(t.relid);
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
    write::add_rows_of(t, &joined, 1);
    write::add_rows_of(t, &left, -1);
    triggers::install_triggers(None, &joined, t);
    triggers::remove_triggers(&left, t.table_id);
    write::write(deltas::take_current());
}
