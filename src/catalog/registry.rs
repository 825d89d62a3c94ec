//! The registry of tracked tables (`org_stats.tracked`): which table, which columns, under which
//! stable `table_id`. Counters and triggers refer to the `table_id`, never to the table's OID,
//! so they survive dump/restore and renames.

use crate::catalog::schema::{self, Schema};
use crate::pg::errors;
use crate::pg::names::{resolve_with, RegClass};
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::dimensions::{self, Bucketing};
use crate::values::text_form::{self, TextForm};
use pgrx::pg_sys;
use pgrx::spi::{quote_identifier, quote_literal};

/// One tracking of a table: its registration. `table_id` names the tracking (a table tracked
/// twice has two).
pub struct Tracked {
    pub relid: RegClass,
    pub table_id: i32,
    pub org_column: String,
    pub status_column: String,
    /// None for the table's default tracking, read by the table's name.
    pub name: Option<String>,
    /// The rows counted: those satisfying it (see `filter`); None counts every row.
    pub filter: Option<String>,
    /// The columns summed per group, and the columns the filter reads.
    pub sum_columns: Vec<String>,
    pub filter_columns: Vec<String>,
    /// Whether the counters are authoritative: the whole table was backfilled, or (when asked
    /// about one org) that org was.
    pub counted: bool,
    /// Where its counts are kept, as `org_stats.tracked.counted_in` stores it (see `citus`).
    pub counted_in: Option<String>,
    /// The columns it groups by after the status column, in order (see `dimensions`).
    pub group_columns: Vec<String>,
    /// The time column it buckets, and how.
    pub time: Option<(String, Bucketing)>,
    org_type: pg_sys::Oid,
    status_type: pg_sys::Oid,
}

impl Tracked {
    fn form(&self, column: &str, type_oid: pg_sys::Oid) -> TextForm {
        text_form::for_type(type_oid)
            .unwrap_or_else(|| errors::column_gone(&self.relid.display(), column))
    }

    /// SQL for the org column's text form.
    pub fn org_sql(&self) -> String {
        self.form(&self.org_column, self.org_type)
            .sql(&quote_identifier(&self.org_column))
    }

    /// Whether it groups by more than its status column (several columns, or a time bucket): its
    /// counters' status is then an encoded key (see `dimensions`).
    pub fn dimensional(&self) -> bool {
        !self.group_columns.is_empty() || self.time.is_some()
    }

    /// A status as drift checks show it: a dimensional tracking's key decoded (see
    /// `dimensions::display`).
    pub fn shown_status(&self, status: Option<String>) -> Option<String> {
        if !self.dimensional() {
            return status;
        }
        let instants = self
            .time
            .as_ref()
            .is_some_and(|(column, _)| dimensions::time_type(self.type_of(column)) == Some(true));
        status.map(|key| dimensions::display(&key, instants))
    }

    /// The type of column `name` now (InvalidOid if it is gone).
    fn type_of(&self, name: &str) -> pg_sys::Oid {
        let name = std::ffi::CString::new(name).expect("a column name has no NUL");
        // SAFETY: syscache lookups of a relation's column.
        unsafe {
            pg_sys::get_atttype(
                self.relid.0,
                pg_sys::get_attnum(self.relid.0, name.as_ptr()),
            )
        }
    }

    /// SQL for what the counters keep as a row's status: the status column's text form or, for a
    /// dimensional tracking, the row's encoded key, as the triggers make it.
    pub fn status_sql(&self) -> String {
        let status = self
            .form(&self.status_column, self.status_type)
            .sql(&quote_identifier(&self.status_column));
        if !self.dimensional() {
            return status;
        }
        let mut values = vec![status];
        for column in &self.group_columns {
            values.push(
                self.form(column, self.type_of(column))
                    .sql(&quote_identifier(column)),
            );
        }
        let values = format!("ARRAY[{}]::pg_catalog.text[]", values.join(", "));
        match &self.time {
            None => format!("org_stats.group_key({values})"),
            Some((column, bucketing)) => {
                let (months, micros) = bucketing.width.parts();
                let zone = match (dimensions::time_type(self.type_of(column)), &bucketing.zone) {
                    (Some(true), Some(zone)) => {
                        format!(", {}::pg_catalog.text", quote_literal(zone))
                    }
                    (Some(true), None) => ", NULL::pg_catalog.text".into(),
                    (Some(false), _) => String::new(),
                    (None, _) => errors::column_gone(&self.relid.display(), column),
                };
                format!(
                    "org_stats.group_key({values}, {}, {months}::pg_catalog.int4, {micros}::pg_catalog.int8{zone})",
                    quote_identifier(column)
                )
            }
        }
    }

    /// A name that reads and maintenance resolve to this tracking whatever the search path: its
    /// name, or its table's schema-qualified name (tracking names have no dot).
    pub fn reference(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.relid.qualified())
    }

    /// SQL selecting the rows this tracking counts, among those `rows` (SQL) selects: the rows
    /// also satisfying its filter, if it has one.
    pub fn counted_sql(&self, rows: &str) -> String {
        match &self.filter {
            Some(filter) => format!("({rows}) AND ({filter})"),
            None => rows.to_owned(),
        }
    }

    /// SQL aggregating, over a group's rows, the sums of the summed columns as a counter row
    /// stores them (`sums::PARTS` numbers per column, see `sums`), or NULL with no summed column.
    pub fn sums_sql(&self) -> String {
        if self.sum_columns.is_empty() {
            return "NULL::pg_catalog.numeric[]".into();
        }
        let parts: Vec<String> = self
            .sum_columns
            .iter()
            .map(|column| {
                let column = quote_identifier(column);
                let value = format!("{column}::pg_catalog.numeric");
                let special = |v: &str| {
                    format!(
                        "pg_catalog.count(*) FILTER (WHERE {value} OPERATOR(pg_catalog.=) '{v}'::pg_catalog.numeric)"
                    )
                };
                format!(
                    "COALESCE(pg_catalog.sum({value}) FILTER (WHERE {value} OPERATOR(pg_catalog.<>) \
                     ALL ('{{NaN,Infinity,-Infinity}}'::pg_catalog.numeric[])), 0), pg_catalog.count({column}), {}, {}, {}",
                    special("NaN"),
                    special("Infinity"),
                    special("-Infinity")
                )
            })
            .collect();
        format!("ARRAY[{}]::pg_catalog.numeric[]", parts.join(", "))
    }

    /// SQL testing the org column against `$n`, an array of org ids taken from the table: a typed
    /// comparison an index can serve, except for enums, whose owner may define the casts.
    pub fn org_in_sql(&self, n: u32) -> String {
        let column = quote_identifier(&self.org_column);
        match self.form(&self.org_column, self.org_type) {
            TextForm::Enum(_) => format!("{} OPERATOR(pg_catalog.=) ANY (${n})", self.org_sql()),
            _ => {
                // SAFETY: catalog lookups of an existing type; format_type_be returns a palloc'd string.
                let base = unsafe {
                    let name = pg_sys::format_type_be(pg_sys::getBaseType(self.org_type));
                    std::ffi::CStr::from_ptr(name)
                        .to_string_lossy()
                        .into_owned()
                };
                format!("{column} OPERATOR(pg_catalog.=) ANY (${n}::pg_catalog.text[]::{base}[])")
            }
        }
    }
}

fn tracked_from(row: &sql::Row) -> Tracked {
    Tracked {
        relid: row.get(1).unwrap(),
        table_id: row.get(2).unwrap(),
        org_column: row.get(3).unwrap(),
        status_column: row.get(4).unwrap(),
        counted: row.get(5).unwrap(),
        org_type: row.get(6).unwrap_or(pg_sys::Oid::INVALID),
        status_type: row.get(7).unwrap_or(pg_sys::Oid::INVALID),
        name: row.get(8),
        filter: row.get(9),
        sum_columns: row.get(10).unwrap_or_default(),
        filter_columns: row.get(11).unwrap_or_default(),
        counted_in: row.get(12),
        group_columns: row.get(13).unwrap_or_default(),
        time: row.get::<String>(14).map(|column| {
            let bucket: pgrx::datum::Interval = row.get(15).expect("a time column has a bucket");
            let bucket = bucket.into_inner();
            let width = dimensions::width_of(bucket.month, bucket.day, bucket.time)
                .expect("a bucket checked by track()");
            (
                column,
                Bucketing {
                    width,
                    zone: row.get(16),
                },
            )
        }),
    }
}

/// A registry query: the columns `tracked_from` reads, then `$tail` (a WHERE clause on `t`).
/// `$2` is the org whose backfill state decides `counted`. Made three times: for this version's
/// registry, for 0.2.0's to 0.4.0's, which do not say where counts are kept, and for 0.1.0's,
/// whose trackings have no name, filter or sums either (see `catalog::schema`).
macro_rules! tracked_query {
    ($tail:literal) => {
        [tracked_query!($tail, "org_stats.tracked t "), tracked_query!($tail,
            "(SELECT t.*, NULL::pg_catalog.text AS counted_in, NULL::pg_catalog.text[] AS group_columns, \
                     NULL::pg_catalog.name AS time_column, NULL::pg_catalog.interval AS bucket, \
                     NULL::pg_catalog.text AS bucket_time_zone \
                FROM org_stats.tracked t) t "),
         tracked_query!($tail,
            "(SELECT t.table_id, t.relid, t.org_column, t.status_column, t.tracked_at, t.backfilled_at, \
                     NULL::pg_catalog.text AS name, NULL::pg_catalog.text AS filter, \
                     NULL::pg_catalog.text[] AS sum_columns, NULL::pg_catalog.text[] AS filter_columns, \
                     NULL::pg_catalog.text AS counted_in, NULL::pg_catalog.text[] AS group_columns, \
                     NULL::pg_catalog.name AS time_column, NULL::pg_catalog.interval AS bucket, \
                     NULL::pg_catalog.text AS bucket_time_zone \
                FROM org_stats.tracked t) t ")]
    };
    ($tail:literal, $from:literal) => {
        concat!(
            "SELECT t.relid, t.table_id, t.org_column::pg_catalog.text, t.status_column::pg_catalog.text, \
                    t.backfilled_at IS NOT NULL OR EXISTS ( \
                        SELECT FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) t.table_id \
                           AND s.org_id OPERATOR(pg_catalog.=) $2 AND s.backfilled_at IS NOT NULL), \
                    (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.relid \
                        AND a.attname OPERATOR(pg_catalog.=) t.org_column AND NOT a.attisdropped), \
                    (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.relid \
                        AND a.attname OPERATOR(pg_catalog.=) t.status_column AND NOT a.attisdropped), \
                    t.name, t.filter, t.sum_columns, t.filter_columns, t.counted_in, \
                    t.group_columns, t.time_column::pg_catalog.text, t.bucket, t.bucket_time_zone \
               FROM ",
            $from,
            $tail
        )
    };
}

fn lookup(
    queries: [&'static str; 3],
    args: &[pgrx::datum::DatumWithOid],
    access: Access,
) -> Vec<Tracked> {
    let query = match schema::schema() {
        Schema::V0_5 => queries[0],
        Schema::V0_2 | Schema::V0_3 => queries[1],
        Schema::V0_1 => queries[2],
    };
    let mut found = Vec::new();
    sql::kept(query, args, access, |row| found.push(tracked_from(row)));
    found
}

/// The default tracking of `table`, if it is tracked, with whether `org_id`'s counters are
/// authoritative. Reads the caller's snapshot; run with the extension's rights.
pub fn find(table: RegClass, org_id: Option<&str>) -> Option<Tracked> {
    lookup(
        tracked_query!("WHERE t.relid OPERATOR(pg_catalog.=) $1 AND t.name IS NULL"),
        &[table.into(), org_id.into()],
        Access::Read,
    )
    .pop()
}

/// The default tracking of `table`, as a fresh snapshot sees it (so after a lock it also sees a
/// registration committed while the caller waited). Run with the extension's rights.
pub fn find_latest(table: RegClass) -> Option<Tracked> {
    lookup(
        tracked_query!("WHERE t.relid OPERATOR(pg_catalog.=) $1 AND t.name IS NULL"),
        &[table.into(), None::<String>.into()],
        Access::Write,
    )
    .pop()
}

/// Every tracking of `table`, in table_id order (maintenance of a table covers them all).
pub fn all_of(table: RegClass) -> Vec<Tracked> {
    lookup(
        tracked_query!("WHERE t.relid OPERATOR(pg_catalog.=) $1 ORDER BY t.table_id"),
        &[table.into(), None::<String>.into()],
        Access::Read,
    )
}

/// The registration with this table_id (what triggers carry), if it still exists. Reads a fresh
/// snapshot, so it also sees a registration this very statement made (track() reads its own).
pub fn find_by_id(table_id: i32) -> Option<Tracked> {
    lookup(
        tracked_query!("WHERE t.table_id OPERATOR(pg_catalog.=) $1"),
        &[table_id.into(), None::<String>.into()],
        Access::Write,
    )
    .pop()
}

/// The registration with this table_id, as the caller's snapshot sees it.
pub fn find_by_id_read(table_id: i32) -> Option<Tracked> {
    lookup(
        tracked_query!("WHERE t.table_id OPERATOR(pg_catalog.=) $1"),
        &[table_id.into(), None::<String>.into()],
        Access::Read,
    )
    .pop()
}

/// The tracking `reference` names: the tracking of that name, or else the default tracking of the
/// table of that name (as a `regclass` argument reads it), with whether `org_id`'s counters are
/// authoritative; or the not-tracked error. Run as the caller (the table name is read with the
/// caller's search path); the registry is read with the extension's rights.
pub fn resolve(reference: &str, org_id: Option<&str>) -> Tracked {
    resolve_with(
        reference,
        |name| {
            security::as_extension_owner(|| {
                lookup(
                    tracked_query!("WHERE t.name OPERATOR(pg_catalog.=) $1"),
                    &[name.into(), org_id.into()],
                    Access::Read,
                )
                .pop()
            })
        },
        |table| security::as_extension_owner(|| find(table, org_id)),
    )
}

/// The registration of `table`, or the not-tracked error naming it `name` (as the caller wrote it;
/// under the extension's pinned search_path `display()` would qualify it).
pub fn require_named(table: RegClass, name: &str, org_id: Option<&str>) -> Tracked {
    find(table, org_id).unwrap_or_else(|| errors::not_tracked(name))
}

/// Every tracking, in table_id order.
pub fn all() -> Vec<Tracked> {
    lookup(
        tracked_query!("ORDER BY t.table_id"),
        &[None::<String>.into(), None::<String>.into()],
        Access::Write,
    )
}

/// Every tracking, in table_id order, as the caller's snapshot sees them.
pub fn all_read() -> Vec<Tracked> {
    lookup(
        tracked_query!("ORDER BY t.table_id"),
        &[None::<String>.into(), None::<String>.into()],
        Access::Read,
    )
}

/// Every tracking of a table owned by `role` (or a role it is a member of), in table_id order.
pub fn all_owned_by(role: pg_sys::Oid) -> Vec<Tracked> {
    lookup(
        tracked_query!(
            "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid \
             WHERE pg_catalog.pg_has_role($1, c.relowner, 'USAGE') ORDER BY t.table_id"
        ),
        &[role.into(), None::<String>.into()],
        Access::Read,
    )
}
