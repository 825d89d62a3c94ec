//! Tracking DDL: `track()` validates a table (and a tracking's filter, summed columns and name),
//! registers the tracking, installs its triggers and (unless told not to) counts the existing
//! rows, all in the caller's transaction; `untrack()` undoes all of it. A table has at most one
//! default (unnamed) tracking, read by the table's name, and any number of named ones.

use crate::catalog::registry::{self, Tracked};
use crate::catalog::schema::{self, Schema};
use crate::counters::placement::{placer, Placement};
use crate::counters::remote;
use crate::maintenance::drift;
use crate::pg::errors::raise;
use crate::pg::names::{Name, RegClass};
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::tracking::triggers::{
    install_triggers, partition_tree, relations_with_triggers, remove_triggers,
};
use crate::values::dimensions::{self, Bucketing};
use crate::values::filter;
use crate::values::sums;
use crate::values::text_form;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode};

/// Refuses what org_stats cannot count exactly, before anything is changed: the table, and its
/// org column and grouping columns (`group`: the status column and, for a tracking grouped by
/// several, the others).
fn validate(table: RegClass, org_column: &str, group: &[String], default_tracking: bool) {
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
    let role = if group.len() > 1 {
        "group_by"
    } else {
        "status_column"
    };
    let columns = std::iter::once(("org_column", org_column))
        .chain(group.iter().map(|column| (role, column.as_str())));
    for (role, column) in columns {
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

/// What a tracking groups by: `group_by`, or else `status_column` alone (whose default stands
/// only without `group_by`), checked: 1 to `MAX_GROUP_COLUMNS` columns, each once.
fn grouping(status_column: &str, group_by: Option<Vec<Option<String>>>) -> Vec<String> {
    let Some(group_by) = group_by else {
        return vec![status_column.to_owned()];
    };
    let group: Vec<String> = group_by
        .into_iter()
        .map(|c| required(c, "an element of group_by"))
        .collect();
    let refuse = |why: String, hint: &str| -> ! {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, why, hint)
    };
    if group.is_empty() || group.len() > MAX_GROUP_COLUMNS {
        refuse(
            format!("group_by names {} columns", group.len()),
            "A tracking groups by 1 to 8 columns.",
        );
    }
    if let Some((_, column)) = group
        .iter()
        .enumerate()
        .find(|(i, c)| group[..*i].contains(c))
    {
        raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_COLUMN,
            format!("column \"{column}\" is named twice in group_by"),
            "Name each grouping column once.",
        );
    }
    if status_column != DEFAULT_STATUS_COLUMN && group != [status_column] {
        refuse(
            format!("status_column \"{status_column}\" differs from group_by"),
            "group_by replaces status_column: give one of them.",
        );
    }
    group
}

/// The most columns a tracking groups by.
const MAX_GROUP_COLUMNS: usize = 8;
/// `track()`'s default status column (the declaration below spells it too).
const DEFAULT_STATUS_COLUMN: &str = "status";

/// The time column of a tracking and how it is bucketed, checked: the column exists and is a
/// `timestamptz`, `timestamp` or `date`; the bucket is a positive fixed interval or whole months;
/// a time zone cuts a `timestamptz` column's buckets only.
fn timing(
    table: RegClass,
    time_column: Option<&str>,
    bucket: Option<pgrx::datum::Interval>,
    zone: Option<&str>,
) -> Option<(String, Bucketing)> {
    let refuse = |why: String, hint: &str| -> ! {
        raise(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, why, hint)
    };
    let (column, bucket) = match (time_column, bucket) {
        (None, None) if zone.is_none() => return None,
        (None, _) => refuse(
            "a bucket or bucket_time_zone without a time_column".into(),
            "Name the column whose time is bucketed with time_column => '...'.",
        ),
        (Some(column), None) => refuse(
            format!("time_column \"{column}\" without a bucket"),
            "Give the bucket's width, such as bucket => '1 hour' or '1 month'.",
        ),
        (Some(column), Some(bucket)) => (column, bucket.into_inner()),
    };
    let name = table.display();
    let width = dimensions::width_of(bucket.month, bucket.day, bucket.time).unwrap_or_else(|why| {
        refuse(
            format!("bucket {why}"),
            "A bucket is a positive fixed interval ('15 minutes', '1 hour', '1 day', '7 days') or whole months \
             ('1 month', '3 months', '1 year'), not both.",
        )
    });
    let type_oid = column_type(
        table,
        column,
        "Name the time column with time_column => '...'; column names are case-sensitive.",
    );
    let Some(instants) = dimensions::time_type(type_oid) else {
        raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!("column \"{column}\" of relation {name} cannot be bucketed by time"),
            "A time column is a timestamptz, timestamp or date (or a domain over one).",
        );
    };
    if zone.is_some() && !instants {
        refuse(
            format!("bucket_time_zone for column \"{column}\", which is not a timestamptz"),
            "A time zone cuts the buckets of a timestamptz; a timestamp or date is bucketed as it is.",
        );
    }
    if let Some(zone) = zone {
        // PostgreSQL's own check of a zone name, with a hint.
        pgrx::PgTryBuilder::new(|| {
            sql::kept(
                "SELECT pg_catalog.timezone($1, pg_catalog.now())",
                &[zone.into()],
                Access::Read,
                |_| {},
            )
        })
        .catch_others(|_| {
            refuse(
                format!("time zone \"{zone}\" not recognized"),
                "Name a zone of pg_timezone_names, such as 'America/New_York' or 'Europe/Paris'.",
            )
        })
        .execute();
    }
    Some((
        column.to_owned(),
        Bucketing {
            width,
            zone: zone.map(str::to_owned),
        },
    ))
}

/// Says (NOTICE) when no index leads with the org column and then the time column: reads between
/// two instants count the rows of the buckets their bounds cut from the table.
fn notice_without_time_index(table: RegClass, org_column: &str, time_column: &str) {
    let mut indexed = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i \
                         WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indnkeyatts OPERATOR(pg_catalog.>=) 2 \
                           AND i.indkey[0] OPERATOR(pg_catalog.=) (SELECT a.attnum FROM pg_catalog.pg_attribute a \
                                 WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2) \
                           AND i.indkey[1] OPERATOR(pg_catalog.=) (SELECT a.attnum FROM pg_catalog.pg_attribute a \
                                 WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $3))",
        &[table.into(), org_column.into(), time_column.into()],
        Access::Read,
        |row| indexed = row.get(1).unwrap(),
    );
    if !indexed {
        pgrx::notice!(
            "org_stats: no index of {} leads with ({org_column}, {time_column}); reads between two instants count \
             the rows of the buckets their bounds cut from the table, which such an index makes fast",
            table.display()
        );
    }
}

/// Where a new tracking of `table` by `org_column` keeps its counts, once what that needs is made
/// (see `counters::placement`); refuses a table whose rows no counters can be next to. Run as the
/// extension owner, before the triggers are installed.
fn counted_at(table: RegClass, org_column: &str) -> Placement {
    let placement = placer().placement(table, org_column);
    match &placement {
        Placement::Local => {}
        Placement::Nowhere(why) => raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot track {}: {why}", table.display()),
            "org_stats keeps a table's counts next to its rows, by org. On Citus it counts tables distributed by \
             hash of their org column (of type text, not partitioned) and Citus local tables; see docs/citus.md.",
        ),
        Placement::Remote(_) => {
            placer().require_own_transaction(table, "org_stats.track() of");
            placer().make_counters(table, org_column);
        }
    }
    placement
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
/// The type of column `column` of `table`; `42703` with `hint` if it has none.
fn column_type(table: RegClass, column: &str, hint: &str) -> pg_sys::Oid {
    let mut type_oid = None;
    sql::kept(
        "SELECT a.atttypid FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attname OPERATOR(pg_catalog.=) $2 \
            AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
        &[table.into(), column.into()],
        Access::Read,
        |row| type_oid = row.get::<pg_sys::Oid>(1),
    );
    type_oid.unwrap_or_else(|| {
        raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "column \"{column}\" of relation {} does not exist",
                table.display()
            ),
            hint,
        )
    })
}

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
        let type_oid = column_type(
            table,
            column,
            "Name the summed columns with sum_columns => ARRAY['...']; column names are case-sensitive.",
        );
        if sums::summand(type_oid).is_none() {
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
/// tracking of the table, read by that name; `group_by` groups by several columns instead of the
/// status column, and `time_column` with `bucket` also by the bucket of a time (see
/// `dimensions`). See docs/reference.md for the semantics.
#[pg_extern(volatile, parallel_unsafe, name = "track")]
#[allow(clippy::too_many_arguments)]
fn start_tracking_grouped(
    tbl: Option<RegClass>,
    org_column: default!(Option<Name>, "'workos_org_id'"),
    status_column: default!(Option<Name>, "'status'"),
    backfill: default!(Option<bool>, true),
    filter: default!(Option<&str>, "NULL"),
    sum_columns: default!(Option<Vec<Option<String>>>, "NULL"),
    name: default!(Option<&str>, "NULL"),
    group_by: default!(Option<Vec<Option<String>>>, "NULL"),
    time_column: default!(Option<Name>, "NULL"),
    bucket: default!(Option<pgrx::datum::Interval>, "NULL"),
    bucket_time_zone: default!(Option<&str>, "NULL"),
) {
    let tbl = required(tbl, "tbl");
    let sum_columns: Vec<String> = sum_columns
        .unwrap_or_default()
        .into_iter()
        .map(|c| required(c, "an element of sum_columns"))
        .collect();
    let group = grouping(&required(status_column, "status_column").0, group_by);
    let time = timing(
        tbl,
        time_column.as_ref().map(|c| c.0.as_str()),
        bucket,
        bucket_time_zone,
    );
    track_table(
        tbl,
        &required(org_column, "org_column").0,
        &group,
        time,
        required(backfill, "backfill"),
        filter,
        &sum_columns,
        name,
    );
}

/// 0.2.0's to 0.4.0's `track()`, which their SQL calls by this function's symbol until `ALTER
/// EXTENSION org_stats UPDATE`; the current install script does not declare it.
#[pg_extern(volatile, parallel_unsafe, sql = false)]
fn start_tracking(
    tbl: Option<RegClass>,
    org_column: Option<Name>,
    status_column: Option<Name>,
    backfill: Option<bool>,
    filter: Option<&str>,
    sum_columns: Option<Vec<Option<String>>>,
    name: Option<&str>,
) {
    start_tracking_grouped(
        tbl,
        org_column,
        status_column,
        backfill,
        filter,
        sum_columns,
        name,
        None,
        None,
        None,
        None,
    );
}

/// 0.1.0's `track()`, which 0.1.0's SQL calls by this function's symbol until `ALTER EXTENSION
/// org_stats UPDATE` (see `catalog::schema`); the current install script does not
/// declare it.
#[pg_extern(volatile, strict, parallel_unsafe, sql = false)]
fn track(tbl: RegClass, org_column: Name, status_column: Name, backfill: bool) {
    track_table(
        tbl,
        &org_column.0,
        &[status_column.0],
        None,
        backfill,
        None,
        &[],
        None,
    );
}

/// Makes a tracking of `tbl` grouped by `group` (its status column, then the others) and `time`.
#[allow(clippy::too_many_arguments)]
fn track_table(
    tbl: RegClass,
    org_column: &str,
    group: &[String],
    time: Option<(String, Bucketing)>,
    backfill: bool,
    filter: Option<&str>,
    sum_columns: &[String],
    name: Option<&str>,
) {
    let table_name = tbl.display();
    let status_column = group[0].as_str();
    validate(tbl, org_column, group, name.is_none());
    if let Some((column, _)) = &time {
        notice_without_time_index(tbl, org_column, column);
    }
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
        let placement = counted_at(tbl, org_column);
        let mut table_id = 0;
        let (filter_text, filter_columns) = match &filter {
            Some(f) => (Some(f.text.as_str()), f.columns.clone()),
            None => (None, Vec::new()),
        };
        let mut args = vec![tbl.into(), org_column.into(), status_column.into()];
        // 0.1.0's registry has none of the rest (see `catalog::schema`), and 0.1.0's
        // track() passes none of them.
        let query = if schema::schema() >= Schema::V0_5 {
            let (time_column, bucket, zone) = match &time {
                Some((column, bucketing)) => (
                    Some(column.as_str()),
                    Some(bucketing.width.as_interval()),
                    bucketing.zone.as_deref(),
                ),
                None => (None, None, None),
            };
            args.extend([
                name.into(),
                filter_text.into(),
                sum_columns.to_vec().into(),
                filter_columns.into(),
                placement.stored().into(),
                group[1..].to_vec().into(),
                time_column.into(),
                bucket.into(),
                zone.into(),
            ]);
            "INSERT INTO org_stats.tracked (relid, org_column, status_column, name, filter, sum_columns, filter_columns, \
                                            counted_in, group_columns, time_column, bucket, bucket_time_zone) \
             VALUES ($1, $2, $3, $4, $5, NULLIF($6::pg_catalog.text[], '{}'), NULLIF($7::pg_catalog.text[], '{}'), $8, \
                     NULLIF($9::pg_catalog.text[], '{}'), $10, $11, $12) \
             RETURNING table_id"
        } else if schema::schema() >= Schema::V0_2 {
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
    placer().require_own_transaction(tracked.relid, "org_stats.untrack() of");
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
        remote::forget_everywhere(tracked.table_id);
        forget_registration(tracked.table_id);
        placer().drop_unused();
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
