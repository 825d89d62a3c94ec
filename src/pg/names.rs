//! The argument types naming tables and columns: a `regclass` resolved by PostgreSQL's own input
//! function, and a column `name`.

use crate::pg::errors;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::prelude::*;

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

/// The table `name` names, as a `regclass` argument would read it (search path, quoting), if
/// there is one.
pub fn regclass_of(name: &str) -> Option<RegClass> {
    // SAFETY: to_regclass reads a text and returns an OID or NULL.
    unsafe { pgrx::direct_function_call::<pg_sys::Oid>(pg_sys::to_regclass, &[name.into_datum()]) }
        .map(RegClass)
}

/// The tracking a text reference names: the tracking of that name, or else the default tracking
/// of the table of that name (read as `regclass` reads it); `named` looks a name up, `of_table` a
/// table. Raises the error of a table not tracked, or of a name that is neither.
pub fn resolve_with<T>(
    reference: &str,
    named: impl FnOnce(&str) -> Option<T>,
    of_table: impl FnOnce(RegClass) -> Option<T>,
) -> T {
    if let Some(found) = named(reference) {
        return found;
    }
    match regclass_of(reference) {
        Some(table) => of_table(table).unwrap_or_else(|| errors::not_tracked(reference)),
        None => errors::no_such_tracking(reference),
    }
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
