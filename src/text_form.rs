//! The text under which a column value is counted. It is exactly `value::text`, so the counters
//! agree with `WHERE org_col::text = $1 GROUP BY status_col::text`. Only types whose cast to text
//! is their output function (or, for `character(n)`, the output without trailing blanks) are
//! accepted; `boolean` or `inet`, whose casts differ from their output, are refused by `track()`.

use pgrx::pg_sys;
use pgrx::FromDatum;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;

#[derive(Clone, Copy)]
pub enum TextForm {
    /// text, varchar: the value is its text form.
    Text,
    /// character(n): `::text` strips the padding blanks.
    Blank,
    /// uuid, integers, name: the type's output function.
    Output(pg_sys::Oid),
    /// Enums: their output function too; kept apart because SQL must not cast them (below).
    Enum(pg_sys::Oid),
}

impl TextForm {
    /// SQL for the text form of `column` (a quoted identifier). A `::text` cast of a built-in type
    /// can only run built-in code, but the owner of an enum may define its own cast to text, and
    /// org_stats reads tables with the extension owner's rights; so enums go through `enum_out`.
    pub fn sql(self, column: &str) -> String {
        match self {
            TextForm::Enum(_) => format!("pg_catalog.textin(pg_catalog.enum_out({column}))"),
            _ => format!("{column}::pg_catalog.text"),
        }
    }
}

thread_local! {
    /// Per-backend cache; emptied whenever any type changes (a dropped type's OID may be reused).
    static FORMS: RefCell<HashMap<pg_sys::Oid, Option<TextForm>>> = RefCell::new(HashMap::new());
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_types(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    FORMS.with(|f| f.borrow_mut().clear());
}

/// Registers the cache invalidation; called once per backend from `_PG_init`.
pub fn init() {
    // SAFETY: registers a plain function with no argument.
    unsafe {
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::TYPEOID as i32,
            Some(forget_types),
            pg_sys::Datum::from(0usize),
        )
    };
}

/// How values of `type_oid` (a domain counts as its base type) become text, or `None` if the
/// type is not supported.
pub fn for_type(type_oid: pg_sys::Oid) -> Option<TextForm> {
    if let Some(form) = FORMS.with(|f| f.borrow().get(&type_oid).copied()) {
        return form;
    }
    // SAFETY: catalog lookups on a type OID taken from a tuple descriptor.
    let form = unsafe {
        let base = pg_sys::getBaseType(type_oid);
        match base {
            pg_sys::TEXTOID | pg_sys::VARCHAROID => Some(TextForm::Text),
            pg_sys::BPCHAROID => Some(TextForm::Blank),
            pg_sys::UUIDOID
            | pg_sys::INT2OID
            | pg_sys::INT4OID
            | pg_sys::INT8OID
            | pg_sys::NAMEOID => Some(TextForm::Output(output_function(base))),
            _ if pg_sys::type_is_enum(base) => Some(TextForm::Enum(output_function(base))),
            _ => None,
        }
    };
    FORMS.with(|f| f.borrow_mut().insert(type_oid, form));
    form
}

unsafe fn output_function(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    let mut func = pg_sys::Oid::INVALID;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut func, &mut varlena);
    func
}

/// The text form of a non-NULL `datum` of a type `form` was made for.
///
/// # Safety
/// `datum` must be a valid, non-NULL value of that type.
pub unsafe fn to_text(form: TextForm, datum: pg_sys::Datum) -> String {
    match form {
        TextForm::Text => String::from_datum(datum, false).unwrap(),
        TextForm::Blank => {
            let mut s = String::from_datum(datum, false).unwrap();
            s.truncate(s.trim_end_matches(' ').len());
            s
        }
        TextForm::Output(func) | TextForm::Enum(func) => {
            let c = pg_sys::OidOutputFunctionCall(func, datum);
            let s = CStr::from_ptr(c).to_string_lossy().into_owned();
            pg_sys::pfree(c.cast());
            s
        }
    }
}
