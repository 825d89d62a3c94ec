//! Filters: a tracking may count only the rows satisfying a boolean expression over the table's
//! own columns (`deleted_at IS NULL`). The expression is evaluated by the row trigger, without
//! SQL per row, and appears in the `WHERE` of the `GROUP BY`s that backfill and check the counts.
//!
//! org_stats evaluates filters with its own rights (in those `GROUP BY`s), so a filter may use
//! only built-in immutable functions and operators (those of `pg_catalog`), the table's own
//! columns and constants: no subquery, no function or operator of a user's, no domain (whose
//! constraints could call one), no system column. `check` refuses anything else when a tracking
//! is made, and stores the expression as PostgreSQL prints it with the search path pinned to
//! `pg_catalog`, so every later parse of that text, under the same pinned path, binds exactly
//! the objects that were checked, whatever the writer's or the reader's search path.

use crate::pg::compat;
use crate::pg::errors;
use crate::pg::relcache;
use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::ffi::{CStr, CString};

/// A filter checked for a table: its text as stored, and the columns it reads.
pub struct Checked {
    pub text: String,
    pub columns: Vec<String>,
}

/// Parses `text` as a boolean expression over the columns of `rel` (raising the parser's own
/// error when it is not one), transformed but not yet planned.
///
/// # Safety
/// `rel` is open.
unsafe fn parse(rel: pg_sys::Relation, text: &str) -> *mut pg_sys::Node {
    let sql = CString::new(format!("SELECT ({text})"))
        .unwrap_or_else(|_| refuse(rel, "contains a NUL character".into()));
    let statements = pg_sys::raw_parser(sql.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
    let select = (pg_sys::list_length(statements) == 1)
        .then(|| (*(first(statements) as *mut pg_sys::RawStmt)).stmt)
        .filter(|stmt| pgrx::is_a(*stmt, pg_sys::NodeTag::T_SelectStmt))
        .map(|stmt| stmt as *mut pg_sys::SelectStmt)
        .filter(|&s| {
            let s = &*s;
            pg_sys::list_length(s.targetList) == 1
                && s.fromClause.is_null()
                && s.whereClause.is_null()
                && s.groupClause.is_null()
                && s.havingClause.is_null()
                && s.windowClause.is_null()
                && s.distinctClause.is_null()
                && s.sortClause.is_null()
                && s.limitCount.is_null()
                && s.limitOffset.is_null()
                && s.lockingClause.is_null()
                && s.withClause.is_null()
                && s.valuesLists.is_null()
                && s.intoClause.is_null()
                && s.op == pg_sys::SetOperation::SETOP_NONE
        })
        .unwrap_or_else(|| refuse(rel, "is not a single expression".into()));
    let target = first((*select).targetList) as *mut pg_sys::ResTarget;
    let pstate = pg_sys::make_parsestate(std::ptr::null_mut());
    (*pstate).p_sourcetext = sql.as_ptr();
    let item = pg_sys::addRangeTableEntryForRelation(
        pstate,
        rel,
        pg_sys::AccessShareLock as i32,
        std::ptr::null_mut(),
        false,
        true,
    );
    pg_sys::addNSItemToQuery(pstate, item, true, true, true);
    // The expression kind of a CHECK constraint refuses subqueries, aggregates, window and
    // set-returning functions, as a filter must.
    let expr = pg_sys::transformExpr(
        pstate,
        (*target).val,
        pg_sys::ParseExprKind::EXPR_KIND_CHECK_CONSTRAINT,
    );
    let expr = pg_sys::coerce_to_boolean(pstate, expr, c"org_stats filter".as_ptr());
    pg_sys::assign_expr_collations(pstate, expr);
    pg_sys::free_parsestate(pstate);
    expr
}

/// # Safety
/// `list` is a non-empty pointer List.
unsafe fn first(list: *mut pg_sys::List) -> *mut std::ffi::c_void {
    (*(*list).elements).ptr_value
}

const HINT: &str = "A filter is a boolean expression over the table's own columns and constants, using \
                    built-in (pg_catalog) immutable functions and operators only, such as deleted_at IS NULL \
                    or status <> 'VOID': org_stats evaluates it with its own rights.";

/// The refusal of a filter whose value could change while its row does not, in both editions.
const IMMUTABLE: &str = "is not immutable (it depends on the time, a setting or the session)";

fn relation_name(rel: pg_sys::Relation) -> String {
    // SAFETY: the relation is open.
    unsafe { CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn refuse(rel: pg_sys::Relation, why: String) -> ! {
    errors::raise(
        PgSqlErrorCode::ERRCODE_INVALID_OBJECT_DEFINITION,
        format!("filter of table {} {why}", relation_name(rel)),
        HINT,
    )
}

/// What the walker found that a filter may not have, if anything.
#[derive(Default)]
struct Found {
    function: Option<pg_sys::Oid>,
    other: Option<&'static str>,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn foreign_function(
    func: pg_sys::Oid,
    _context: *mut std::ffi::c_void,
) -> bool {
    pg_sys::get_func_namespace(func) != pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE)
        || pg_sys::func_volatile(func) != pg_sys::PROVOLATILE_IMMUTABLE as std::ffi::c_char
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forbidden(
    node: *mut pg_sys::Node,
    context: *mut std::ffi::c_void,
) -> bool {
    if node.is_null() {
        return false;
    }
    let found = &mut *(context as *mut Found);
    if pg_sys::check_functions_in_node(node, Some(foreign_function), std::ptr::null_mut()) {
        // The node's own function, found again to name it.
        let mut which = pg_sys::Oid::INVALID;
        pg_sys::check_functions_in_node(node, Some(name_function), (&raw mut which).cast());
        found.function = Some(which);
        return true;
    }
    found.other = if pgrx::is_a(node, pg_sys::NodeTag::T_Var) {
        ((*(node as *mut pg_sys::Var)).varattno <= 0)
            .then_some("reads a system column or a whole row")
    } else if pgrx::is_a(node, pg_sys::NodeTag::T_CoerceToDomain) {
        Some("uses a domain, whose constraints could call any function")
    } else if pgrx::is_a(node, pg_sys::NodeTag::T_Param) {
        Some("uses a parameter")
    } else {
        None
    };
    found.other.is_some() || pg_sys::expression_tree_walker(node, Some(forbidden), context)
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn name_function(
    func: pg_sys::Oid,
    context: *mut std::ffi::c_void,
) -> bool {
    let foreign = foreign_function(func, std::ptr::null_mut());
    if foreign {
        *(context as *mut pg_sys::Oid) = func;
    }
    foreign
}

/// Checks `text` as a filter of `relid` and returns it as stored: parsed with the caller's
/// search path (so it reads as the caller meant it), printed with the path pinned to
/// `pg_catalog` (so names outside it come out qualified), and parsed again from that print to
/// make sure it means the same. Run as the caller: parsing a constant may call its type's input
/// function.
pub fn check(relid: pg_sys::Oid, text: &str) -> Checked {
    // SAFETY: the relation is opened and closed here; parse trees live in the current context.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        // The parser's own errors (a subquery, an aggregate, an unknown column) say "check
        // constraint", the kind of expression a filter is parsed as: say "filter", with the hint.
        let expr = pgrx::PgTryBuilder::new(|| parse(rel, text))
            .catch_others(|error| match error {
                pgrx::pg_sys::panic::CaughtError::PostgresError(report) => errors::raise(
                    report.sql_error_code(),
                    format!(
                        "invalid filter of table {}: {}",
                        relation_name(rel),
                        report
                            .message()
                            .replace("check constraints", "filters")
                            .replace("check constraint", "filter")
                    ),
                    HINT,
                ),
                other => other.rethrow(),
            })
            .execute();
        let mut found = Found::default();
        if forbidden(expr, (&raw mut found).cast()) {
            let why = match found.function {
                Some(func) => format!(
                    "calls {}, which is not a built-in immutable function",
                    CStr::from_ptr(pg_sys::format_procedure(func)).to_string_lossy()
                ),
                None => found.other.unwrap_or("is not allowed").into(),
            };
            refuse(rel, why);
        }
        // What the walker does not name: CURRENT_DATE, CURRENT_USER and the like, which change
        // while the row does not.
        if pg_sys::contain_mutable_functions(expr) {
            refuse(rel, IMMUTABLE.into());
        }
        let stored = {
            let _path = compat::PinnedSearchPath::pin();
            let context =
                pg_sys::deparse_context_for((*(*rel).rd_rel).relname.data.as_ptr(), relid);
            let printed = pg_sys::deparse_expression(expr, context, false, false);
            let stored = CStr::from_ptr(printed).to_string_lossy().into_owned();
            if !pg_sys::equal(expr.cast(), parse(rel, &stored).cast()) {
                refuse(
                    rel,
                    "does not mean the same without the caller's search path; qualify its names"
                        .into(),
                );
            }
            stored
        };
        let mut attnums: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos(expr, 1, &mut attnums);
        let mut columns = Vec::new();
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(attnums, member);
            if member < 0 {
                break;
            }
            let attnum =
                (member + pg_sys::FirstLowInvalidHeapAttributeNumber) as pg_sys::AttrNumber;
            columns.push(
                CStr::from_ptr(pg_sys::get_attname(relid, attnum, false))
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        Checked {
            text: stored,
            columns,
        }
    }
}

/// A filter ready to evaluate on rows of one relation: everything in `memory`.
struct Compiled {
    text: String,
    memory: pg_sys::MemoryContext,
    state: *mut pg_sys::ExprState,
    econtext: *mut pg_sys::ExprContext,
    slot: *mut pg_sys::TupleTableSlot,
}

thread_local! {
    /// Filters per (tracking, relation): a partition's columns may sit at other positions than
    /// its parent's, so each relation has its own. Forgotten when the relation changes.
    static COMPILED: RefCell<FxHashMap<(i32, pg_sys::Oid), Compiled>> = RefCell::new(FxHashMap::default());
}

fn forget(relid: pg_sys::Oid) {
    COMPILED.with(|c| {
        c.borrow_mut().retain(|(_, rel), compiled| {
            let keep = relid != pg_sys::Oid::INVALID && *rel != relid;
            if !keep {
                // SAFETY: the context holds only this filter, which nothing uses any more.
                unsafe { pg_sys::MemoryContextDelete(compiled.memory) };
            }
            keep
        })
    });
}

/// Listens to relcache invalidations; called once per backend from `_PG_init`.
pub fn init() {
    relcache::listen(forget);
}

/// Parses and plans a stored filter for `rel`, under the pinned search path, into a new memory
/// context that keeps it for the life of the relation's cache entry.
///
/// # Safety
/// `rel` is open.
unsafe fn compile(rel: pg_sys::Relation, text: &str) -> Compiled {
    let memory = pg_sys::AllocSetContextCreateInternal(
        pg_sys::CacheMemoryContext,
        c"org_stats filter".as_ptr(),
        pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
        pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
        pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
    );
    let caller = pg_sys::MemoryContextSwitchTo(memory);
    let expr = {
        let _path = compat::PinnedSearchPath::pin();
        pg_sys::expression_planner(parse(rel, text).cast())
    };
    let state = pg_sys::ExecInitExpr(expr, std::ptr::null_mut());
    let econtext = pg_sys::CreateStandaloneExprContext();
    let desc = pg_sys::CreateTupleDescCopy((*rel).rd_att);
    let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsHeapTuple);
    pg_sys::MemoryContextSwitchTo(caller);
    Compiled {
        text: text.to_owned(),
        memory,
        state,
        econtext,
        slot,
    }
}

/// Whether `tuple`, a row of `rel`, satisfies the filter `text` of tracking `table_id` (a NULL
/// result does not, as in a WHERE clause).
pub fn matches(
    table_id: i32,
    rel: pg_sys::Relation,
    text: &CStr,
    tuple: pg_sys::HeapTuple,
) -> bool {
    let text = text.to_string_lossy();
    // SAFETY: rel is the open relation the trigger fired on and tuple one of its rows; the
    // compiled state lives until the relation is invalidated, which cannot happen while an
    // expression of built-in immutable functions is evaluated.
    unsafe {
        let key = (table_id, (*rel).rd_id);
        let stale = COMPILED.with(|c| c.borrow().get(&key).is_none_or(|f| f.text != text));
        if stale {
            let compiled = compile(rel, &text);
            if let Some(old) = COMPILED.with(|c| c.borrow_mut().insert(key, compiled)) {
                pg_sys::MemoryContextDelete(old.memory);
            }
        }
        COMPILED.with(|c| {
            let c = c.borrow();
            let f = c.get(&key).expect("compiled just above");
            pg_sys::ExecStoreHeapTuple(tuple, f.slot, false);
            (*f.econtext).ecxt_scantuple = f.slot;
            let mut isnull = false;
            let result = pg_sys::ExecEvalExprSwitchContext(f.state, f.econtext, &mut isnull);
            pg_sys::MemoryContextReset((*f.econtext).ecxt_per_tuple_memory);
            pg_sys::ExecClearTuple(f.slot);
            !isnull && result.value() != 0
        })
    }
}

/// The stored filter `text` of `relid` as a parse tree (which names columns by number), for
/// `deparse` to print again after DDL renamed or retyped them.
pub fn tree(relid: pg_sys::Oid, text: &str) -> String {
    // SAFETY: the relation is opened and closed here.
    unsafe {
        let rel = pg_sys::relation_open(relid, pg_sys::AccessShareLock as i32);
        let expr = {
            let _path = compat::PinnedSearchPath::pin();
            parse(rel, text)
        };
        pg_sys::relation_close(rel, pg_sys::AccessShareLock as i32);
        CStr::from_ptr(pg_sys::nodeToString(expr.cast()))
            .to_string_lossy()
            .into_owned()
    }
}

/// A filter's parse tree from `tree`, printed with `relid`'s current column names.
pub fn deparse(relid: pg_sys::Oid, tree: &str) -> String {
    let tree = CString::new(tree).expect("a parse tree has no NUL");
    // SAFETY: the tree was made by `tree` for this relation; deparsing reads the catalogs.
    unsafe {
        let expr = pg_sys::stringToNode(tree.as_ptr()) as *mut pg_sys::Node;
        let _path = compat::PinnedSearchPath::pin();
        let context = pg_sys::deparse_context_for(pg_sys::get_rel_name(relid), relid);
        CStr::from_ptr(pg_sys::deparse_expression(expr, context, false, false))
            .to_string_lossy()
            .into_owned()
    }
}
