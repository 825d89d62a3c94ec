//! The registry of tracked tables (`org_stats.tracked`): which table, which columns, under which
//! stable `table_id`. Counters and triggers refer to the `table_id`, never to the table's OID,
//! so they survive dump/restore and renames.

use crate::errors;
use crate::sql::{self, Access};
use crate::text_form::{self, TextForm};
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;

/// A `regclass` argument: a table named by the caller, resolved (and checked to exist) by
/// PostgreSQL's own input function before org_stats sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegClass(pub pg_sys::Oid);

impl RegClass {
    /// The table's name as `regclass` prints it (schema-qualified when not on the search path).
    pub fn display(self) -> String {
        // SAFETY: regclassout accepts any OID and returns a palloc'd C string.
        unsafe {
            let text = pg_sys::OidOutputFunctionCall(
                pgrx::pg_sys::Oid::from(pg_sys::F_REGCLASSOUT),
                pg_sys::Datum::from(self.0),
            );
            std::ffi::CStr::from_ptr(text)
                .to_string_lossy()
                .into_owned()
        }
    }

    /// `"schema"."table"`, quoted for use in SQL text whatever the search_path.
    pub fn qualified(self) -> String {
        // SAFETY: lsyscache lookups of an existing relation.
        unsafe {
            let name = |p: *mut std::os::raw::c_char| {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            };
            let schema = name(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(
                self.0,
            )));
            let table = name(pg_sys::get_rel_name(self.0));
            format!(
                "{}.{}",
                pgrx::spi::quote_identifier(schema),
                pgrx::spi::quote_identifier(table)
            )
        }
    }
}

impl FromDatum for RegClass {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then(|| RegClass(pg_sys::Oid::from(datum.value() as u32)))
    }
}

impl IntoDatum for RegClass {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.0))
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::REGCLASSOID
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for RegClass {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        arg.unbox_arg_using_from_datum()
            .expect("regclass argument is not NULL")
    }
}

unsafe impl BoxRet for RegClass {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        fcinfo.return_raw_datum(pg_sys::Datum::from(self.0))
    }
}

unsafe impl SqlTranslatable for RegClass {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(RegClass);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> =
        Ok(SqlMappingRef::literal("regclass"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("regclass")));
}

/// A `name` argument (a column name), as `pg_attribute.attname` stores it.
pub struct Name(pub String);

impl FromDatum for Name {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then(|| {
            let c = std::ffi::CStr::from_ptr(datum.cast_mut_ptr::<std::os::raw::c_char>());
            Name(c.to_string_lossy().into_owned())
        })
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for Name {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        arg.unbox_arg_using_from_datum()
            .expect("name argument is not NULL")
    }
}

unsafe impl SqlTranslatable for Name {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(Name);
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("name"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("name")));
}

/// One registered table.
pub struct Tracked {
    pub relid: RegClass,
    pub table_id: i32,
    pub org_column: String,
    pub status_column: String,
    /// Whether the counters are authoritative: the whole table was backfilled, or (when asked
    /// about one org) that org was.
    pub counted: bool,
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

    /// SQL for the status column's text form.
    pub fn status_sql(&self) -> String {
        self.form(&self.status_column, self.status_type)
            .sql(&quote_identifier(&self.status_column))
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
    }
}

/// A registry query: the columns `tracked_from` reads, then `$tail` (a WHERE clause on `t`).
/// `$2` is the org whose backfill state decides `counted`.
macro_rules! tracked_query {
    ($tail:literal) => {
        concat!(
            "SELECT t.relid, t.table_id, t.org_column::pg_catalog.text, t.status_column::pg_catalog.text, \
                    t.backfilled_at IS NOT NULL OR EXISTS ( \
                        SELECT FROM org_stats.org_state s WHERE s.table_id OPERATOR(pg_catalog.=) t.table_id \
                           AND s.org_id OPERATOR(pg_catalog.=) $2 AND s.backfilled_at IS NOT NULL), \
                    (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.relid \
                        AND a.attname OPERATOR(pg_catalog.=) t.org_column AND NOT a.attisdropped), \
                    (SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) t.relid \
                        AND a.attname OPERATOR(pg_catalog.=) t.status_column AND NOT a.attisdropped) \
               FROM org_stats.tracked t ",
            $tail
        )
    };
}

fn lookup(query: &'static str, args: &[pgrx::datum::DatumWithOid], access: Access) -> Vec<Tracked> {
    let mut found = Vec::new();
    sql::kept(query, args, access, |row| found.push(tracked_from(row)));
    found
}

/// The registration of `table`, if it is tracked, with whether `org_id`'s counters are
/// authoritative. Reads the caller's snapshot; run with the extension's rights.
pub fn find(table: RegClass, org_id: Option<&str>) -> Option<Tracked> {
    lookup(
        tracked_query!("WHERE t.relid OPERATOR(pg_catalog.=) $1"),
        &[table.into(), org_id.into()],
        Access::Read,
    )
    .pop()
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

/// The registration of `table`, or the not-tracked error naming it `name` (as the caller wrote it;
/// under the extension's pinned search_path `display()` would qualify it).
pub fn require_named(table: RegClass, name: &str, org_id: Option<&str>) -> Tracked {
    find(table, org_id).unwrap_or_else(|| errors::not_tracked(name))
}

/// Every tracked table owned by `role` (or a role it is a member of), in table_id order.
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
