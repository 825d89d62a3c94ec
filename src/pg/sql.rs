//! Running SQL through SPI with the semantics org_stats needs: statements on the hot paths are
//! planned once per backend and kept, and reads run read-only on the caller's snapshot, exactly as
//! a STABLE PL function would, so a count agrees with a GROUP BY in the same statement.

use pgrx::datum::{DatumWithOid, FromDatum};
use pgrx::pg_sys;
use pgrx::spi::Spi;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

thread_local! {
    /// Plans kept for the life of the backend, keyed by the address of their static SQL text.
    static KEPT: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
    /// Plans of statements built at run time, kept by their text (see `kept_text`).
    static KEPT_TEXT: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
}

/// How many statements built at run time a backend keeps planned; past it, all are let go (a
/// backend builds few: one per tracking and shape of read).
const KEPT_TEXTS: usize = 256;

/// Whether a statement may see the caller's snapshot only (a read) or writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One result row; valid only inside the callback it is passed to.
pub struct Row {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl Row {
    /// Column `n` (1-based), `None` for NULL.
    pub fn get<T: FromDatum>(&self, n: i32) -> Option<T> {
        let mut isnull = false;
        // SAFETY: tuple and desc come from SPI_tuptable of the statement just executed.
        unsafe {
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut isnull);
            T::from_datum(datum, isnull)
        }
    }
}

/// Runs `f` on the latest snapshot: every row committed so far. Only right where a lock the caller
/// holds keeps those rows from changing (TRUNCATE, ATTACH and DETACH hold ACCESS EXCLUSIVE), since
/// the statement's own snapshot may predate the wait for that lock.
pub fn on_latest_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushed here and popped below; an ERROR in between aborts the (sub)transaction,
    // which pops it.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let result = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

/// Runs `f` on the active snapshot advanced to see every change this transaction made so far: for
/// a function that reads what a statement it ran has just written, such as the catalog rows Citus
/// writes when it distributes a table, which reads on the statement's snapshot would not see.
pub fn seeing_own_changes<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushed here and popped below, as in on_latest_snapshot.
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
    }
    let result = f();
    // SAFETY: pops the snapshot pushed above.
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

/// Runs a statement whose text is a `'static` string, planning it once per backend.
pub fn kept(
    sql: &'static str,
    args: &[DatumWithOid],
    access: Access,
    each: impl FnMut(&Row),
) -> u64 {
    Spi::connect(|_| {
        let key = sql.as_ptr() as usize;
        let plan = KEPT
            .with(|k| k.borrow().get(&key).copied())
            .unwrap_or_else(|| {
                let plan = prepare(sql, args, pg_sys::CURSOR_OPT_GENERIC_PLAN);
                // SAFETY: plan was just prepared in this SPI connection.
                unsafe { pg_sys::SPI_keepplan(plan) };
                KEPT.with(|k| k.borrow_mut().insert(key, plan as usize));
                plan as usize
            });
        run(plan as pg_sys::SPIPlanPtr, args, access, each)
    })
}

/// Runs a statement built at run time (identifiers quoted by the caller), planned once per
/// backend and text as `kept` plans (PostgreSQL plans it again when what it reads changes).
pub fn kept_text(sql: &str, args: &[DatumWithOid], access: Access, each: impl FnMut(&Row)) -> u64 {
    Spi::connect(|_| {
        let known = KEPT_TEXT.with(|k| k.borrow().get(sql).copied());
        let plan = known.unwrap_or_else(|| {
            let plan = prepare(sql, args, pg_sys::CURSOR_OPT_GENERIC_PLAN);
            // SAFETY: plan was just prepared in this SPI connection.
            unsafe { pg_sys::SPI_keepplan(plan) };
            KEPT_TEXT.with(|k| {
                let mut kept = k.borrow_mut();
                if kept.len() >= KEPT_TEXTS {
                    for (_, old) in kept.drain() {
                        // SAFETY: a kept plan no call is running (this backend runs one at a time).
                        unsafe { pg_sys::SPI_freeplan(old as pg_sys::SPIPlanPtr) };
                    }
                }
                kept.insert(sql.to_owned(), plan as usize);
            });
            plan as usize
        });
        run(plan as pg_sys::SPIPlanPtr, args, access, each)
    })
}

/// Runs a statement built at run time (identifiers quoted by the caller), planned for this call
/// with its parameters' values (which Citus needs to plan a distributed statement).
pub fn once(sql: &str, args: &[DatumWithOid], access: Access, each: impl FnMut(&Row)) -> u64 {
    Spi::connect(|_| {
        let plan = prepare(sql, args, pg_sys::CURSOR_OPT_CUSTOM_PLAN);
        let processed = run(plan, args, access, each);
        // SAFETY: the plan belongs to this SPI connection and is not used again.
        unsafe { pg_sys::SPI_freeplan(plan) };
        processed
    })
}

/// Runs a statement for its effect.
pub fn exec(sql: &str, args: &[DatumWithOid]) -> u64 {
    once(sql, args, Access::Write, |_| {})
}

/// Plans `sql`. Kept statements get a plan for every parameter value (a generic plan):
/// org_stats' statements are key lookups whose best plan does not depend on the values, and
/// re-planning each call (what the plan cache does for the first executions, or for good when
/// arrays make estimates differ) would cost more than running them.
fn prepare(sql: &str, args: &[DatumWithOid], options: u32) -> pg_sys::SPIPlanPtr {
    let text = CString::new(sql).expect("SQL text contains no NUL byte");
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    // SAFETY: text and types outlive the call; SPI raises an ERROR itself on a bad statement.
    let plan = unsafe {
        pg_sys::SPI_prepare_cursor(
            text.as_ptr(),
            types.len() as i32,
            types.as_mut_ptr(),
            options as i32,
        )
    };
    assert!(!plan.is_null(), "SPI_prepare failed: {}", unsafe {
        pg_sys::SPI_result
    });
    plan
}

fn run(
    plan: pg_sys::SPIPlanPtr,
    args: &[DatumWithOid],
    access: Access,
    mut each: impl FnMut(&Row),
) -> u64 {
    let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(args.len());
    let mut nulls: Vec<std::os::raw::c_char> = Vec::with_capacity(args.len());
    for arg in args {
        match arg.datum() {
            Some(d) => {
                values.push(d.sans_lifetime());
                nulls.push(b' ' as std::os::raw::c_char);
            }
            None => {
                values.push(pg_sys::Datum::from(0usize));
                nulls.push(b'n' as std::os::raw::c_char);
            }
        }
    }
    // SAFETY: values/nulls match the plan's argument count; results are read before SPI_finish.
    unsafe {
        let status = pg_sys::SPI_execute_plan(
            plan,
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
            access == Access::Read,
            0,
        );
        assert!(status >= 0, "SPI_execute_plan failed with status {status}");
        let processed = pg_sys::SPI_processed;
        let table = pg_sys::SPI_tuptable;
        if !table.is_null() {
            for i in 0..(*table).numvals as usize {
                each(&Row {
                    tuple: *(*table).vals.add(i),
                    desc: (*table).tupdesc,
                });
            }
        }
        processed
    }
}
