//! A tracking as reads need it, read from `org_stats.tracked` by an index probe on the caller's
//! snapshot (no SQL on the read path, see `pg::access`).

use crate::catalog::schema::{self, Own, Schema};
use crate::pg::access::{self, row_at, value, Key};
use crate::values::dimensions::{self, Bucketing};
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::ffi::CStr;

/// How a read names the tracking it reads.
#[derive(Clone, Copy)]
pub enum Lookup<'a> {
    /// The default tracking of the table with this OID.
    Table(pg_sys::Oid),
    /// The tracking with this name.
    Name(&'a str),
}

/// A tracking as reads need it.
pub struct Registration {
    pub table_id: i32,
    pub relid: pg_sys::Oid,
    pub org_column: String,
    /// Where its counts are kept, as `org_stats.tracked.counted_in` says (see `citus`).
    pub counted_in: Option<String>,
    /// Whether every org of it is counted (`backfilled_at` is set).
    pub all_backfilled: bool,
    /// The columns it sums (read only when asked for).
    pub sum_columns: Vec<String>,
    /// For a tracking grouped by more than one column or by a time bucket, what its keys hold.
    pub grouping: Option<Grouping>,
}

/// What the group keys of a dimensional tracking hold (see `dimensions`).
pub struct Grouping {
    /// The grouping columns, the status column first.
    pub columns: Vec<String>,
    /// The time column and its bucketing.
    pub time: Option<Timed>,
}

pub struct Timed {
    pub column: String,
    pub bucketing: Bucketing,
    /// Whether the column is a `timestamptz` (see `Bucketing::part`).
    pub instants: bool,
}

thread_local! {
    /// Where each tracking's registration row was last found, by table OID (default trackings)
    /// and by name: a read first checks whether its snapshot sees that row version, before
    /// probing the index.
    static REGISTRATIONS: RefCell<FxHashMap<pg_sys::Oid, pg_sys::ItemPointerData>> =
        RefCell::new(FxHashMap::default());
    static NAMED_REGISTRATIONS: RefCell<FxHashMap<String, pg_sys::ItemPointerData>> =
        RefCell::new(FxHashMap::default());
}

/// The tracking `lookup` names, as `snapshot` sees `org_stats.tracked`, with its summed columns
/// if `sums`; `None` if there is none.
pub fn registration(
    lookup: Lookup,
    snapshot: pg_sys::Snapshot,
    sums: bool,
) -> Option<Registration> {
    if matches!(lookup, Lookup::Name(_)) && schema::schema() < Schema::V0_2 {
        return None;
    }
    let index = match lookup {
        Lookup::Table(_) => Own::TrackedRelidKey,
        Lookup::Name(_) => Own::TrackedNameKey,
    };
    let tracked = schema::open(Own::Tracked, index, pg_sys::AccessShareLock);
    // Columns of org_stats.tracked: table_id integer NOT NULL (1), relid (2), org_column name
    // NOT NULL (3), status_column name NOT NULL (4), backfilled_at (6), name (9), sum_columns
    // (11), counted_in (15), group_columns (16), time_column (17), bucket (18),
    // bucket_time_zone (19).
    let read = |get: &mut dyn FnMut(i32) -> Option<pg_sys::Datum>| {
        // SAFETY: the datums are the columns' values, of these types.
        let relid = unsafe { get(2).and_then(|d| pg_sys::Oid::from_datum(d, false)) }?;
        let name = unsafe { get(9).and_then(|d| String::from_datum(d, false)) };
        let wanted = match lookup {
            Lookup::Table(oid) => relid == oid && name.is_none(),
            Lookup::Name(wanted) => name.as_deref() == Some(wanted),
        };
        wanted.then(|| Registration {
            table_id: unsafe { get(1).and_then(|d| i32::from_datum(d, false)) }.unwrap(),
            relid,
            // SAFETY: a name is a NUL-terminated string in a fixed-size datum.
            org_column: unsafe {
                CStr::from_ptr(get(3).unwrap().cast_mut_ptr::<std::os::raw::c_char>())
            }
            .to_string_lossy()
            .into_owned(),
            counted_in: unsafe { get(15).and_then(|d| String::from_datum(d, false)) },
            all_backfilled: get(6).is_some(),
            sum_columns: sums
                .then(|| unsafe { get(11).and_then(|d| Vec::<String>::from_datum(d, false)) })
                .flatten()
                .unwrap_or_default(),
            // SAFETY: the datums are the columns' values, of these types.
            grouping: unsafe { grouping(relid, get) },
        })
    };
    let remembered = match lookup {
        Lookup::Table(oid) => REGISTRATIONS.with(|r| r.borrow().get(&oid).copied()),
        Lookup::Name(name) => NAMED_REGISTRATIONS.with(|r| r.borrow().get(name).copied()),
    };
    if let Some(tid) = remembered {
        // SAFETY: the relation is open; a visible row version there is the one this snapshot
        // sees (the lookup key is unique), whatever has been written since. Registrations are
        // rarely updated: their page is left for other accesses to prune.
        let found = unsafe {
            row_at(tracked.heap, tid, snapshot, |row| {
                read(&mut |attnum| row.get(attnum))
            })
        };
        if let Some(Some(found)) = found {
            return Some(found);
        }
    }
    let mut found = None;
    let key = match lookup {
        Lookup::Table(oid) => Key::Oid(oid),
        Lookup::Name(name) => Key::Text(name),
    };
    tracked.scan(&[key], snapshot, |row, _| {
        // SAFETY: a row of org_stats.tracked, pinned in the slot.
        let mut get = |attnum| unsafe { value(row, attnum) };
        found = read(&mut get).map(|registration| (unsafe { (*row).tts_tid }, registration));
        false
    });
    let (tid, registration) = found?;
    match lookup {
        Lookup::Table(oid) => access::remember(&REGISTRATIONS, oid, tid),
        Lookup::Name(name) => access::remember(&NAMED_REGISTRATIONS, name.to_owned(), tid),
    }
    Some(registration)
}

/// The grouping of a tracking whose registration row `get` reads, if it is dimensional.
///
/// # Safety
/// `get` returns the columns of a row of `org_stats.tracked`.
unsafe fn grouping(
    relid: pg_sys::Oid,
    get: &mut dyn FnMut(i32) -> Option<pg_sys::Datum>,
) -> Option<Grouping> {
    let name = |d: pg_sys::Datum| {
        CStr::from_ptr(d.cast_mut_ptr::<std::os::raw::c_char>())
            .to_string_lossy()
            .into_owned()
    };
    let others = get(16).and_then(|d| Vec::<String>::from_datum(d, false));
    let time = get(17).map(name);
    if others.is_none() && time.is_none() {
        return None;
    }
    let time = time.map(|column| {
        let bucket = get(18)
            .and_then(|d| pgrx::datum::Interval::from_datum(d, false))
            .expect("a time column has a bucket")
            .into_inner();
        let width = dimensions::width_of(bucket.month, bucket.day, bucket.time)
            .expect("a bucket track() checked");
        let zone = get(19).and_then(|d| String::from_datum(d, false));
        let column_name = std::ffi::CString::new(column.as_str()).expect("a name has no NUL");
        let type_oid = pg_sys::get_atttype(relid, pg_sys::get_attnum(relid, column_name.as_ptr()));
        Timed {
            instants: dimensions::time_type(type_oid) == Some(true),
            column,
            bucketing: Bucketing { width, zone },
        }
    });
    Some(Grouping {
        columns: std::iter::once(name(get(4).expect("a status column")))
            .chain(others.unwrap_or_default())
            .collect(),
        time,
    })
}
