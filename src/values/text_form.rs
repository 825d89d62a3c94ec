//! The text under which a column value is counted. It is exactly `value::text`, so the counters
//! agree with `WHERE org_col::text = $1 GROUP BY status_col::text`. Only types whose cast to text
//! is their output function (or, for `character(n)`, the output without trailing blanks) are
//! accepted; `boolean` or `inet`, whose casts differ from their output, are refused by `track()`.

use pgrx::pg_sys;
use std::borrow::Cow;
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

/// The text form of a non-NULL `datum` of a type `form` was made for, borrowed where it can be:
/// text from the value itself, other types from their output function's result, which the
/// current memory context (a trigger call's, or a statement's) frees.
///
/// # Safety
/// `datum` must be a valid, non-NULL value of that type, and the returned text must not outlive
/// the value or the current memory context.
pub unsafe fn to_text<'a>(form: TextForm, datum: pg_sys::Datum) -> Cow<'a, str> {
    match form {
        TextForm::Text => varlena_text(datum),
        TextForm::Blank => match varlena_text(datum) {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim_end_matches(' ')),
            Cow::Owned(s) => Cow::Owned(s.trim_end_matches(' ').to_owned()),
        },
        TextForm::Output(func) | TextForm::Enum(func) => {
            CStr::from_ptr(pg_sys::OidOutputFunctionCall(func, datum)).to_string_lossy()
        }
    }
}

unsafe fn varlena_text<'a>(datum: pg_sys::Datum) -> Cow<'a, str> {
    let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
    let bytes = std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(value) as *const u8,
        pgrx::varlena::varsize_any_exhdr(value),
    );
    String::from_utf8_lossy(bytes)
}

/// How `a` and `b` order under `collation`, as ORDER BY orders text.
pub fn compare(a: &str, b: &str, collation: pg_sys::Oid) -> std::cmp::Ordering {
    // SAFETY: both are valid strings; varstr_cmp compares them under an existing collation.
    let order = unsafe {
        pg_sys::varstr_cmp(
            a.as_ptr().cast(),
            a.len() as i32,
            b.as_ptr().cast(),
            b.len() as i32,
            collation,
        )
    };
    order.cmp(&0)
}
