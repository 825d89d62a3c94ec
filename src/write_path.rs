//! The trigger write path. Three triggers per tracked table (`track()` installs them):
//! - `org_stats_row`, AFTER INSERT/UPDATE/DELETE FOR EACH ROW: turns each row change into deltas
//!   in backend memory (see `deltas`); no SQL per row.
//! - `org_stats_flush`, AFTER INSERT/UPDATE/DELETE FOR EACH STATEMENT: writes the statement's
//!   deltas, one counter row per (org, status) group (which row: see `pool`).
//! - `org_stats_truncate`, BEFORE TRUNCATE: removes the table's (or partition's) share.
//!
//! Counting does not depend on the statement trigger alone: what is still pending at commit is
//! written by the pre-commit callback (a logical-replication apply worker fires only row
//! triggers), and a huge statement flushes early to keep memory bounded.

use crate::catalog::registry::{self, Tracked};
use crate::counters::deltas::{self, Delta};
use crate::counters::placement::{placer, readable, Place, Placement};
use crate::counters::pool;
use crate::counters::remote;
use crate::counters::storage;
use crate::counters::write::{add_rows_of, write, write_to};
use crate::pg::errors;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::dimensions::{self, Bucketing, Spec};
use crate::values::filter;
use crate::values::sums::{self, Sum, Summand};
use crate::values::text_form;
use pgrx::pg_sys;
use pgrx::prelude::*;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::rc::Rc;

/// A statement touching more distinct groups than this flushes early, bounding backend memory.
const FLUSH_THRESHOLD: usize = 50_000;

thread_local! {
    /// Pending entries at which the row trigger flushes next. Entries of outer subtransactions
    /// cannot be flushed from an inner one, so after an early flush the bar moves past them.
    static FLUSH_AT: std::cell::Cell<usize> = const { std::cell::Cell::new(FLUSH_THRESHOLD) };
}

/// The tracking a trigger counts for, from the trigger's own arguments (partitions fire with
/// their own relation, so the firing relation cannot say which table is tracked): its table_id,
/// org and status columns and, when it has them (trackings made before 0.2.0 do not), its filter
/// (empty for none), for a dimensional tracking its other grouping columns and time bucket
/// (`dimensions::Spec`), and its summed columns.
struct TriggerArgs<'a> {
    table_id: i32,
    org_column: &'a CStr,
    status_column: &'a CStr,
    filter: Option<&'a CStr>,
    spec: Option<&'a CStr>,
    sum_columns: Vec<&'a CStr>,
}

fn trigger_args<'a>(trigger: &'a PgTrigger<'a>) -> TriggerArgs<'a> {
    let t = trigger.trigger();
    assert!(
        t.tgnargs >= 3,
        "org_stats trigger {:?} has lost its arguments",
        trigger.name()
    );
    // SAFETY: tgargs holds tgnargs C strings for the life of the trigger call.
    unsafe {
        let arg = |i: usize| CStr::from_ptr(*t.tgargs.add(i));
        let count = t.tgnargs as usize;
        let spec = (count > 4)
            .then(|| arg(4))
            .filter(|a| Spec::is_arg(a.to_bytes()));
        let sums = 4 + usize::from(spec.is_some());
        TriggerArgs {
            table_id: arg(0).to_str().unwrap().parse().expect("table_id argument"),
            org_column: arg(1),
            status_column: arg(2),
            filter: (count > 3).then(|| arg(3)).filter(|f| !f.is_empty()),
            spec,
            sum_columns: (sums.min(count)..count).map(arg).collect(),
        }
    }
}

/// Where one tracked column is in a relation's rows, and what its values are to the counting.
#[derive(Clone, Copy)]
struct Column {
    attnum: i32,
    type_oid: pg_sys::Oid,
    kind: Kind,
    by_value: bool,
    length: i16,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Counted under its text form (org and grouping columns).
    Text(text_form::TextForm),
    /// Added up, read as stored.
    Summed(Summand),
    /// Bucketed, never made text.
    Time,
}

/// The org, status and summed columns in the rows of one relation, and where its counters are
/// (`None`: nowhere, its rows are not counted, see `Placer::place_of_rows`); for a dimensional
/// tracking also its other grouping columns and its time column, with their names and how the
/// time is bucketed.
struct Columns {
    org: Column,
    status: Column,
    sums: Vec<Column>,
    place: Option<Place>,
    dimensions: Option<Dimensions>,
}

struct Dimensions {
    group: Vec<(Column, CString)>,
    time: Option<(Column, CString, Bucketing)>,
}

impl Dimensions {
    /// Every column it reads, with its name.
    fn columns(&self) -> impl Iterator<Item = (&Column, &CStr)> {
        self.group
            .iter()
            .map(|(c, n)| (c, n.as_c_str()))
            .chain(self.time.iter().map(|(c, n, _)| (c, n.as_c_str())))
    }
}

thread_local! {
    /// Columns per (trigger, relation), so a row costs no lookup by name; checked against the
    /// relation's descriptor on every use (name and type at the cached position), so a renamed,
    /// re-added or retyped column is looked up again.
    static COLUMNS: RefCell<FxHashMap<(pg_sys::Oid, pg_sys::Oid), Rc<Columns>>> = RefCell::new(FxHashMap::default());
    /// Whether `COLUMNS` holds a relation counted nowhere: kept for the transaction only, since
    /// its counters may be made (and commit) meanwhile (see `Placer::place_of_rows`).
    static UNCOUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The attribute of `desc` at `attnum`, if there is a live one.
///
/// # Safety
/// `desc` must be a valid tuple descriptor.
unsafe fn attribute(
    desc: pg_sys::TupleDesc,
    attnum: i32,
) -> Option<&'static pg_sys::FormData_pg_attribute> {
    let index = usize::try_from(attnum - 1).ok()?;
    // The descriptor (not this borrowing view of it) outlives the trigger call using the attribute.
    let attr: *const pg_sys::FormData_pg_attribute =
        pgrx::PgTupleDesc::from_pg_unchecked(desc).get(index)?;
    let attr = &*attr;
    (!attr.attisdropped).then_some(attr)
}

fn still_valid(desc: pg_sys::TupleDesc, column: &Column, name: &CStr) -> bool {
    // SAFETY: desc is the open relation's descriptor.
    unsafe { attribute(desc, column.attnum) }.is_some_and(|a| {
        a.atttypid == column.type_oid && unsafe { CStr::from_ptr(a.attname.data.as_ptr()) } == name
    })
}

fn columns(trigger: &pg_sys::Trigger, rel: pg_sys::Relation, args: &TriggerArgs) -> Rc<Columns> {
    // SAFETY: rel is the open relation the trigger fired on.
    let (desc, relid) = unsafe { ((*rel).rd_att, (*rel).rd_id) };
    let key = (trigger.tgoid, relid);
    if let Some(cols) = COLUMNS.with(|c| c.borrow().get(&key).cloned()) {
        if still_valid(desc, &cols.org, args.org_column)
            && still_valid(desc, &cols.status, args.status_column)
            && cols.sums.len() == args.sum_columns.len()
            && cols
                .sums
                .iter()
                .zip(&args.sum_columns)
                .all(|(c, name)| still_valid(desc, c, name))
            && cols.dimensions.as_ref().is_none_or(|d| {
                d.columns()
                    .all(|(column, name)| still_valid(desc, column, name))
            })
        {
            return cols;
        }
    }
    let find = |name: &CStr, kind_of: fn(pg_sys::Oid) -> Option<Kind>| {
        // SAFETY: as above; SPI_fnumber only reads the descriptor.
        let attr = unsafe { attribute(desc, pg_sys::SPI_fnumber(desc, name.as_ptr())) };
        match attr.and_then(|a| Some((a, kind_of(a.atttypid)?))) {
            Some((a, kind)) => Column {
                attnum: a.attnum as i32,
                type_oid: a.atttypid,
                kind,
                by_value: a.attbyval,
                length: a.attlen,
            },
            None => errors::column_gone(
                // SAFETY: as above.
                &unsafe { CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr()) }
                    .to_string_lossy(),
                &name.to_string_lossy(),
            ),
        }
    };
    let spec = args.spec.map(|arg| {
        Spec::from_arg(&arg.to_string_lossy()).expect("a dimensions argument org_stats wrote")
    });
    let named = |name: &str| CString::new(name).expect("a column name has no NUL");
    let dimensions = spec.map(|spec| Dimensions {
        group: spec
            .group
            .iter()
            .map(|name| (find(&named(name), text_of), named(name)))
            .collect(),
        time: spec
            .time
            .map(|(name, bucketing)| (find(&named(&name), time_of), named(&name), bucketing)),
    });
    let cols = Rc::new(Columns {
        dimensions,
        org: find(args.org_column, text_of),
        status: find(args.status_column, text_of),
        sums: args
            .sum_columns
            .iter()
            .map(|name| find(name, sum_of))
            .collect(),
        // SAFETY: tgname is the trigger's NUL-terminated name.
        place: placer().place_of_rows(
            unsafe { CStr::from_ptr(trigger.tgname) },
            args.table_id,
            args.org_column,
        ),
    });
    if cols.place.is_none() {
        UNCOUNTED.with(|u| u.set(true));
    }
    COLUMNS.with(|c| c.borrow_mut().insert(key, cols.clone()));
    cols
}

/// How the values of a grouping or org column become text; `None` for a type it cannot have.
fn text_of(type_oid: pg_sys::Oid) -> Option<Kind> {
    text_form::for_type(type_oid).map(Kind::Text)
}

/// How the values of a summed column are added; `None` for a type it cannot have.
fn sum_of(type_oid: pg_sys::Oid) -> Option<Kind> {
    sums::summand(type_oid).map(Kind::Summed)
}

/// A time column's values are read as they are; `None` for a type it cannot have.
fn time_of(type_oid: pg_sys::Oid) -> Option<Kind> {
    dimensions::time_type(type_oid).map(|_| Kind::Time)
}

impl Column {
    /// The text form of this (org or grouping) column's non-NULL `value`.
    ///
    /// # Safety
    /// As `text_form::to_text`.
    unsafe fn text<'a>(&self, value: pg_sys::Datum) -> std::borrow::Cow<'a, str> {
        match self.kind {
            Kind::Text(form) => text_form::to_text(form, value),
            _ => unreachable!("only org and grouping columns are made text"),
        }
    }

    /// What this (summed) column's `value` adds, times `sign`.
    ///
    /// # Safety
    /// As `Sum::of_datum`.
    unsafe fn summed(&self, value: Option<pg_sys::Datum>, sign: i64) -> Sum {
        match self.kind {
            Kind::Summed(summand) => Sum::of_datum(value, summand, sign),
            _ => unreachable!("only summed columns are added"),
        }
    }
}

/// A column's value in a row: `None` for NULL.
fn value(
    tuple: pg_sys::HeapTuple,
    rel: pg_sys::Relation,
    column: &Column,
) -> Option<pg_sys::Datum> {
    let mut isnull = false;
    // SAFETY: tuple is a row of rel; the attnum was checked against rel's descriptor.
    let datum = unsafe { pg_sys::heap_getattr(tuple, column.attnum, (*rel).rd_att, &mut isnull) };
    (!isnull).then_some(datum)
}

/// Counts a row of `rel` once, with `sign` (+1 or -1): its org and status, and its summed
/// columns' values. Rows whose org is NULL belong to no organization, and rows of a relation
/// counted nowhere are not counted.
fn count(
    table_id: i32,
    tuple: pg_sys::HeapTuple,
    rel: pg_sys::Relation,
    cols: &Columns,
    sign: i64,
) {
    let (Some(place), Some(org)) = (cols.place, value(tuple, rel, &cols.org)) else {
        return;
    };
    let status = value(tuple, rel, &cols.status);
    // SAFETY: the datums are values of the columns' types; the text borrows memory of this
    // trigger call, which outlives its use here.
    unsafe {
        let text = |column: &Column| value(tuple, rel, column).map(|v| column.text(v));
        let delta = Delta {
            n: sign,
            sums: cols
                .sums
                .iter()
                .map(|column| column.summed(value(tuple, rel, column), sign))
                .collect(),
        };
        let org = cols.org.text(org);
        let status = status.map(|s| cols.status.text(s));
        match &cols.dimensions {
            None => deltas::add(table_id, place, &org, status.as_deref(), &delta),
            Some(d) => {
                let group: Vec<_> = d.group.iter().map(|(column, _)| text(column)).collect();
                let values: Vec<Option<&str>> = std::iter::once(status.as_deref())
                    .chain(group.iter().map(|v| v.as_deref()))
                    .collect();
                let bucket = d.time.as_ref().map(|(column, _, bucketing)| {
                    bucketing.of(value(tuple, rel, column)
                        .map(|v| dimensions::micros_of(v, column.type_oid)))
                });
                let key = dimensions::encode(bucket, &values);
                deltas::add(table_id, place, &org, Some(&key), &delta);
            }
        }
    }
}

/// Whether two values of a column are stored alike.
///
/// # Safety
/// Both must be non-NULL values of the column's type.
unsafe fn same_bytes(a: pg_sys::Datum, b: pg_sys::Datum, column: &Column) -> bool {
    let bytes = |d: pg_sys::Datum| -> &[u8] {
        if column.length > 0 {
            std::slice::from_raw_parts(d.cast_mut_ptr::<u8>(), column.length as usize)
        } else {
            let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
            std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            )
        }
    };
    if column.by_value {
        a.value() == b.value()
    } else {
        bytes(a) == bytes(b)
    }
}

/// Whether an UPDATE left a column's value as it was, compared as stored (equal bytes are equal
/// values; unequal ones are compared as what they are counted as: text, or a sum's addend, whose
/// display scale counts).
fn unchanged(
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    rel: pg_sys::Relation,
    column: &Column,
) -> bool {
    match (value(old, rel, column), value(new, rel, column)) {
        (None, None) => true,
        // SAFETY: both are non-NULL values of the column's type.
        (Some(a), Some(b)) => unsafe {
            same_bytes(a, b, column)
                || match column.kind {
                    Kind::Text(form) => text_form::to_text(form, a) == text_form::to_text(form, b),
                    Kind::Summed(_) => column.summed(Some(a), 1) == column.summed(Some(b), 1),
                    Kind::Time => false,
                }
        },
        _ => false,
    }
}

#[pg_trigger]
fn org_stats_row_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    let args = trigger_args(trigger);
    let data = trigger.trigger_data();
    let rel = data.tg_relation;
    let cols = columns(trigger.trigger(), rel, &args);
    let event = data.tg_event & pg_sys::TRIGGER_EVENT_OPMASK;
    let (old, new) = (data.tg_trigtuple, data.tg_newtuple);
    let counted = |tuple| {
        args.filter
            .is_none_or(|f| filter::matches(args.table_id, rel, f, tuple))
    };
    match event {
        pg_sys::TRIGGER_EVENT_INSERT if counted(old) => count(args.table_id, old, rel, &cols, 1),
        pg_sys::TRIGGER_EVENT_DELETE if counted(old) => count(args.table_id, old, rel, &cols, -1),
        pg_sys::TRIGGER_EVENT_INSERT | pg_sys::TRIGGER_EVENT_DELETE => {}
        pg_sys::TRIGGER_EVENT_UPDATE => {
            // A row moves between groups, into or out of the filter, or changes a sum; an
            // UPDATE of other columns changes nothing.
            let (was, is) = (counted(old), counted(new));
            let same = [&cols.org, &cols.status]
                .into_iter()
                .chain(&cols.sums)
                .chain(
                    cols.dimensions
                        .iter()
                        .flat_map(|d| d.columns().map(|(c, _)| c)),
                )
                .all(|column| unchanged(old, new, rel, column));
            if !(was && is && same) {
                if was {
                    count(args.table_id, old, rel, &cols, -1);
                }
                if is {
                    count(args.table_id, new, rel, &cols, 1);
                }
            }
        }
        _ => panic!("org_stats_row_trigger fired for an unexpected event {event}"),
    }
    if deltas::len() >= FLUSH_AT.with(|f| f.get()) {
        write(deltas::take_current());
        FLUSH_AT.with(|f| f.set(deltas::len() + FLUSH_THRESHOLD));
    }
    Ok(None)
}

#[pg_trigger]
fn org_stats_flush_trigger<'a>(
    _trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    write(deltas::take_current());
    Ok(None)
}

/// TRUNCATE removes its relation's share of the counts, as a decrement into this backend's own
/// slot like any other write. It holds ACCESS EXCLUSIVE on the relation, so it reads the latest
/// snapshot: every committed row, which no one can change any more (the statement's own snapshot
/// predates the wait for that lock, and at REPEATABLE READ the transaction's even more so).
#[pg_trigger]
fn org_stats_truncate_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, Infallible> {
    let args = trigger_args(trigger);
    let rel = trigger.trigger_data().tg_relation;
    // SAFETY: rel is the open relation the trigger fired on.
    let (relid, partitioned) = unsafe {
        (
            (*rel).rd_id,
            (*(*rel).rd_rel).relkind as u8 == pg_sys::RELKIND_PARTITIONED_TABLE,
        )
    };
    write(deltas::take_current());
    security::as_extension_owner(|| {
        let Some(t) = registry::find_by_id(args.table_id) else {
            return;
        };
        match readable(&t) {
            // Counted remotely (on Citus, its shards are emptied on their nodes), unless the
            // TRUNCATE does not empty the rows counted there.
            Ok(Placement::Remote(counters)) if placer().truncate_reaches_rows() => {
                remote::forget(&counters, t.table_id)
            }
            Ok(Placement::Local) if relid == t.relid.0 && !partitioned => {
                // The stored counts: this also clears any drift, as the table is now empty.
                let stored = sql::on_latest_snapshot(|| {
                    // SAFETY: on_latest_snapshot has just made it the active snapshot.
                    let latest = unsafe { pg_sys::GetActiveSnapshot() };
                    storage::all_counts(t.table_id, t.sum_columns.len(), latest)
                });
                for (org_id, status, counted) in stored {
                    deltas::add(
                        t.table_id,
                        Place::Local,
                        &org_id,
                        status.as_deref(),
                        &counted.negated(),
                    );
                }
            }
            Ok(Placement::Local)
                if relid != t.relid.0 && !partitioned && is_partition_of(relid, &t) =>
            {
                add_rows_of(&t, &[RegClass(relid)], -1)
            }
            // A partitioned table, whose leaf partitions fire their own truncate triggers; a
            // table detached from the tracked one that keeps this trigger but no longer counts;
            // or a tracking counted nowhere it could be read.
            _ => {}
        }
    });
    write(deltas::take_current());
    Ok(None)
}

fn is_partition_of(relid: pg_sys::Oid, t: &Tracked) -> bool {
    let mut inside = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_partition_tree($1) p WHERE p.relid OPERATOR(pg_catalog.=) $2)",
        &[t.relid.into(), RegClass(relid).into()],
        Access::Read,
        |row| inside = row.get(1).unwrap(),
    );
    inside
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::os::raw::c_void,
) {
    match event {
        pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT | pg_sys::XactEvent::XACT_EVENT_PRE_PREPARE
            if deltas::len() > 0 =>
        {
            // Nothing reads after this flush, so it may take any row; the snapshot is for what
            // it reads meanwhile (a toasted org id) and keeps the versions it saw from pruning.
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            write_to(deltas::take_all(), pool::Visible::Any);
            pg_sys::PopActiveSnapshot();
        }
        pg_sys::XactEvent::XACT_EVENT_ABORT
        | pg_sys::XactEvent::XACT_EVENT_COMMIT
        | pg_sys::XactEvent::XACT_EVENT_PREPARE => {
            // Only another extension's pre-commit callback, running after org_stats', could have
            // counted rows this late.
            if event != pg_sys::XactEvent::XACT_EVENT_ABORT && deltas::len() > 0 {
                pgrx::warning!(
                    "org_stats: {} counter changes made after its pre-commit flush were not written; \
                     run org_stats.recalculate()",
                    deltas::len()
                );
            }
            deltas::clear();
            FLUSH_AT.with(|f| f.set(FLUSH_THRESHOLD));
            if UNCOUNTED.with(|u| u.replace(false)) {
                COLUMNS.with(|c| c.borrow_mut().retain(|_, cols| cols.place.is_some()));
            }
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::os::raw::c_void,
) {
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => deltas::forget_subxact(subxact),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => deltas::promote_subxact(subxact, parent),
        _ => {}
    }
}

/// Registers the transaction callbacks; called once per backend from `_PG_init`.
pub fn init() {
    // SAFETY: registering plain function pointers with no argument.
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut());
    }
}
