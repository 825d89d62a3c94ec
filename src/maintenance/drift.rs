//! Drift: counts that disagree with the table (after writes with triggers disabled, a restore of
//! base data alone, a manual edit). `check_drift()` reports them; `recalculate()` repairs them.
//!
//! Both compare, in ONE statement and so on one snapshot, a GROUP BY of the table with the sum of
//! the counters. A transaction's rows and its counter deltas commit together, so on any snapshot
//! their difference is exactly the drift, whatever other transactions are doing. The repair adds
//! that difference as an increment, the way writers add theirs (see `pool`), never as an
//! absolute value, so it commutes with the writers' own increments: writers are never locked out
//! and never wait. Only maintenance runs of
//! the same table (recalculate, backfill) wait for each other, on an advisory lock, so that two of
//! them never add the same difference twice; each must then read a snapshot taken after that lock,
//! which READ COMMITTED guarantees.

use crate::catalog::registry::{self, Tracked};
use crate::catalog::schema::{self, Schema};
use crate::counters::deltas::{Delta, Group};
use crate::counters::placement::{moved, placer, readable, Place, Placement};
use crate::counters::pool;
use crate::counters::remote;
use crate::counters::storage;
use crate::counters::write;
use crate::maintenance::relocate::relocate;
use crate::maintenance::settle;
use crate::pg::errors;
use crate::pg::errors::raise;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use crate::values::sums::{self, Sum};
use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::{pg_sys, PgSqlErrorCode};

/// First key of org_stats' advisory locks (the second is the table_id): 'orgs' in ASCII.
const LOCK_SPACE: i32 = 0x6f72_6773;

/// Which orgs of a table a scan covers.
pub enum Orgs<'a> {
    All,
    One(&'a str),
    /// Org ids read from the table itself, so valid input for the org column's type.
    Batch(&'a [String]),
}

pub struct Drift {
    pub org_id: String,
    pub status: Option<String>,
    /// The count and sums stored, and those of the table.
    pub stored: Delta,
    pub actual: Delta,
}

pub struct Scan {
    pub drift: Vec<Drift>,
    pub orgs_checked: i64,
    pub rows: i64,
}

/// Refuses to run maintenance at REPEATABLE READ or SERIALIZABLE, where the snapshot may predate
/// the maintenance lock and another run's repair would be applied twice.
pub fn require_read_committed(what: &str) {
    // SAFETY: reads the transaction's isolation level.
    if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 {
        raise(
            PgSqlErrorCode::ERRCODE_INVALID_TRANSACTION_STATE,
            format!("{what} must run at READ COMMITTED"),
            "Its count must come from a snapshot taken after it has locked out other maintenance of the \
             table; run it in its own READ COMMITTED transaction.",
        );
    }
}

/// Waits for other maintenance of the table; held until the transaction ends. Writers never take
/// it. The table itself is locked first (in ACCESS SHARE mode, as the scan would), so maintenance
/// takes its locks in the order DDL does (table, then this lock) and never deadlocks with an
/// ALTER TABLE or a dropped partition whose event trigger recounts. Returns false if the table
/// was untracked meanwhile.
pub fn lock_table(t: &Tracked) -> bool {
    sql::exec(
        &format!("LOCK TABLE {} IN ACCESS SHARE MODE", t.relid.qualified()),
        &[],
    );
    sql::kept(
        "SELECT pg_catalog.pg_advisory_xact_lock($1, $2)",
        &[LOCK_SPACE.into(), t.table_id.into()],
        Access::Write,
        |_| {},
    );
    registry::find_by_id(t.table_id).is_some()
}

/// Compares (and with `repair`, fixes) the counts of `orgs` in `t`, kept where its table is now
/// (see `counters::placement`; nothing is compared where nothing can be kept). Run with the
/// extension's rights.
pub fn scan(t: &Tracked, orgs: Orgs, repair: bool) -> Scan {
    let mut out = Scan {
        drift: Vec::new(),
        orgs_checked: 0,
        rows: 0,
    };
    let placement = placer().placement(t.relid, &t.org_column);
    let Some(counters) = placement.counters() else {
        return out;
    };
    let (org, status) = (t.org_sql(), t.status_sql());
    let (table_filter, counter_filter, arg): (String, &str, Option<pgrx::datum::DatumWithOid>) =
        match orgs {
            Orgs::All => (
                format!("{} IS NOT NULL", quote_identifier(&t.org_column)),
                "true",
                None,
            ),
            Orgs::One(id) => (
                format!("{org} OPERATOR(pg_catalog.=) $2"),
                "c.org_id OPERATOR(pg_catalog.=) $2",
                Some(id.into()),
            ),
            Orgs::Batch(ids) => (
                t.org_in_sql(2),
                "c.org_id OPERATOR(pg_catalog.=) ANY ($2)",
                Some(ids.to_vec().into()),
            ),
        };
    let checked = if repair {
        "checked AS (
            INSERT INTO org_stats.org_state AS s (org_id, table_id, last_recalculated, backfilled_at)
            SELECT DISTINCT g.org_id, $1, pg_catalog.now(), pg_catalog.now() FROM groups g
            ON CONFLICT (org_id, table_id) DO UPDATE
            SET last_recalculated = excluded.last_recalculated,
                backfilled_at = COALESCE(s.backfilled_at, excluded.backfilled_at)),"
    } else {
        ""
    };
    // Summed columns: each group's stored and actual sums, part by part (see `sums`).
    let summed = |side: &str| sums::total_sql(&format!("g.{side}"), t.sum_columns.len());
    let query = format!(
        "WITH groups AS (
            SELECT g.org_id, g.status, pg_catalog.sum(g.stored)::pg_catalog.int8 AS stored,
                   pg_catalog.sum(g.actual)::pg_catalog.int8 AS actual,
                   {stored_sums} AS stored_sums, {actual_sums} AS actual_sums
              FROM (SELECT {org}, {status}, 0::pg_catalog.int8, pg_catalog.count(*),
                           NULL::pg_catalog.numeric[], {sums}
                      FROM {table} WHERE {table_filter} GROUP BY 1, 2
                    UNION ALL
                    SELECT c.org_id, {stored_status}, c.n, 0, {stored_sums_column}, NULL FROM {counters} c
                     WHERE c.table_id OPERATOR(pg_catalog.=) $1 AND {counter_filter}{not_totals}
                   ) AS g(org_id, status, stored, actual, stored_sums, actual_sums)
             GROUP BY 1, 2),
         drift AS (SELECT * FROM groups g WHERE g.stored OPERATOR(pg_catalog.<>) g.actual
                                             OR g.stored_sums IS DISTINCT FROM g.actual_sums),
         {checked}
         totals AS (SELECT pg_catalog.count(DISTINCT g.org_id) AS orgs,
                           COALESCE(pg_catalog.sum(g.actual), 0)::pg_catalog.int8 AS rows FROM groups g)
         SELECT d.org_id, d.status, d.stored, d.actual, s.orgs, s.rows, d.stored_sums, d.actual_sums
           FROM totals s LEFT JOIN drift d ON true ORDER BY d.org_id, d.status",
        table = t.relid.qualified(),
        counters = counters,
        table_filter = t.counted_sql(&table_filter),
        sums = t.sums_sql(),
        stored_sums = summed("stored_sums"),
        // A timed tracking's settled keys count their bucket's rows with its fresh keys, and
        // its day and month totals repeat them (see `dimensions::Level`, `settle`).
        stored_status = if t.time.is_some() {
            "CASE WHEN c.status OPERATOR(pg_catalog.~~) '@h%' \
                  THEN '@' OPERATOR(pg_catalog.||) pg_catalog.substr(c.status, 3) ELSE c.status END"
        } else {
            "c.status"
        },
        not_totals = if t.time.is_some() {
            " AND c.status OPERATOR(pg_catalog.!~) '^@[dm]'"
        } else {
            ""
        },
        // 0.1.0's counters have no sums (see `catalog::schema`).
        stored_sums_column = if schema::schema() >= Schema::V0_2 { "c.sums" } else { "NULL" },
        actual_sums = summed("actual_sums"),
    );
    let mut args = vec![t.table_id.into()];
    args.extend(arg);
    let access = if repair { Access::Write } else { Access::Read };
    sql::once(&query, &args, access, |row| {
        out.orgs_checked = row.get(5).unwrap();
        out.rows = row.get(6).unwrap();
        if let Some(org_id) = row.get(1) {
            out.drift.push(Drift {
                org_id,
                status: row.get(2),
                stored: Delta {
                    n: row.get(3).unwrap(),
                    sums: sums::from_numerics(row.get(7)),
                },
                actual: Delta {
                    n: row.get(4).unwrap(),
                    sums: sums::from_numerics(row.get(8)),
                },
            });
        }
    });
    // A timed tracking's day and month totals against the settled keys they total.
    let org = match orgs {
        Orgs::All => Some(None),
        Orgs::One(id) => Some(Some(id)),
        Orgs::Batch(_) => None,
    };
    if let Some(org) = org {
        out.drift
            .extend(settle::totals_drift(t, org).into_iter().map(
                |(org_id, key, stored, actual)| Drift {
                    org_id,
                    status: Some(key),
                    stored,
                    actual,
                },
            ));
    }
    if repair {
        let differences = out.drift.iter().map(|d| {
            let mut difference = d.actual.clone();
            difference.add(&d.stored.negated());
            (d.org_id.clone(), d.status.clone(), difference)
        });
        match &placement {
            Placement::Remote(counters) => remote::add(
                counters,
                t.table_id,
                t.sum_columns.len(),
                &differences.collect::<Vec<_>>(),
            ),
            _ => write::write(
                differences
                    .map(|(org_id, status, difference)| {
                        let group = Group {
                            table_id: t.table_id,
                            place: Place::Local,
                            org_id,
                            status,
                        };
                        (group, difference)
                    })
                    .collect(),
            ),
        }
    }
    out
}

/// Counts tracking `t` again where its table's rows are now, after they moved (see
/// `relocate`), in this transaction; `None` where they cannot be counted. Run with the
/// extension's rights.
pub fn count_again(t: &Tracked) -> Option<Scan> {
    let placement = relocate(t, false);
    let counters = placement.counters()?;
    let scan = scan(t, Orgs::All, true);
    sql::kept(
        "UPDATE org_stats.tracked t SET backfilled_at = COALESCE(t.backfilled_at, pg_catalog.now()) \
          WHERE t.table_id OPERATOR(pg_catalog.=) $1",
        &[t.table_id.into()],
        Access::Write,
        |_| {},
    );
    pgrx::notice!(
        "org_stats: {} moved; counted its {} rows again in {counters}",
        t.relid.display(),
        scan.rows
    );
    Some(scan)
}

/// Folds the counter rows of each group of `t` into one (see `pool::fold`), so reads sum a
/// handful of rows again and groups whose count went back to zero leave no rows behind. Rows a
/// writer holds right now are skipped, never waited for. Run with the extension's rights, last
/// in the transaction, after `lock_table`.
pub fn fold(t: &Tracked) {
    let mut groups = Vec::new();
    sql::kept(
        "SELECT c.org_id, c.status FROM org_stats.counters c WHERE c.table_id OPERATOR(pg_catalog.=) $1 \
          GROUP BY 1, 2 HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1 OR pg_catalog.sum(c.n) OPERATOR(pg_catalog.=) 0",
        &[t.table_id.into()],
        // A fresh snapshot, which sees the rows this transaction's repair just wrote.
        Access::Write,
        |row| {
            groups.push(Group {
                table_id: t.table_id,
                place: Place::Local,
                org_id: row.get(1).unwrap(),
                status: row.get(2),
            })
        },
    );
    pool::fold(&storage::counters(pg_sys::RowExclusiveLock), &groups);
}

/// The trackings a maintenance call covers: every tracking of `tbl` (owned by the caller), or
/// every tracking of a table the caller owns.
pub fn targets(tbl: Option<RegClass>, action: &str) -> Vec<Tracked> {
    match tbl {
        Some(table) => {
            let name = table.display();
            security::require_owner(table, action);
            let all = security::as_extension_owner(|| registry::all_of(table));
            if all.is_empty() {
                errors::not_tracked(&name);
            }
            all
        }
        None => all_owned(),
    }
}

/// The tracking `tracking` names (owned by the caller), or with None every tracking of a table
/// the caller owns.
pub fn targets_named(tracking: Option<&str>, action: &str) -> Vec<Tracked> {
    match tracking {
        Some(reference) => {
            let t = registry::resolve(reference, None);
            security::require_owner(t.relid, action);
            vec![t]
        }
        None => all_owned(),
    }
}

fn all_owned() -> Vec<Tracked> {
    let caller = security::current_role();
    security::as_extension_owner(|| registry::all_owned_by(caller))
}

/// (table_name, org_id, status, stored, actual, tracking, stored_sums, actual_sums): the rows
/// check_drift and recalculate return.
type DriftRow = (
    RegClass,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    Option<pgrx::JsonB>,
    Option<pgrx::JsonB>,
);

fn rows_of(t: &Tracked, drift: Vec<Drift>) -> impl Iterator<Item = DriftRow> + '_ {
    let json =
        |sums: &[Sum]| (!t.sum_columns.is_empty()).then(|| sums::json_object(&t.sum_columns, sums));
    drift.into_iter().map(move |d| {
        (
            t.relid,
            d.org_id,
            t.shown_status(d.status),
            d.stored.n,
            d.actual.n,
            t.name.clone(),
            json(&d.stored.sums),
            json(&d.actual.sums),
        )
    })
}

/// The drift of `trackings`; changes nothing. A tracking whose reads count live has no stored
/// counts to check (see `counters::placement::readable`).
fn check(trackings: Vec<Tracked>, org_id: Option<&str>) -> Vec<DriftRow> {
    let mut rows = Vec::new();
    for t in &trackings {
        if let Err(why) = readable(t) {
            pgrx::notice!(
                "org_stats: reads of {} count its rows live: {why}",
                t.reference()
            );
            continue;
        }
        let orgs = org_id.map_or(Orgs::All, Orgs::One);
        let found = security::as_extension_owner(|| scan(t, orgs, false));
        rows.extend(rows_of(t, found.drift));
    }
    rows
}

/// Repairs the drift of `trackings` and returns what it repaired (stored = before, actual =
/// after).
fn repair(trackings: Vec<Tracked>, org_id: Option<&str>) -> Vec<DriftRow> {
    require_read_committed("org_stats.recalculate()");
    let mut rows = Vec::new();
    let mut orgs_checked = 0;
    security::as_extension_owner(|| {
        for t in &trackings {
            if !lock_table(t) {
                continue;
            }
            // Counted where its table's rows no longer are: counted again where they are.
            let found = if moved(t) {
                match count_again(t) {
                    Some(found) => found,
                    None => continue,
                }
            } else if let Err(why) = readable(t) {
                pgrx::notice!(
                    "org_stats: reads of {} count its rows live: {why}",
                    t.reference()
                );
                continue;
            } else {
                scan(t, org_id.map_or(Orgs::All, Orgs::One), true)
            };
            orgs_checked += found.orgs_checked;
            sql::kept(
                "UPDATE org_stats.tracked t SET last_recalculated = pg_catalog.now(), last_groups_repaired = $2, \
                        backfilled_at = CASE WHEN $3 THEN COALESCE(t.backfilled_at, pg_catalog.now()) \
                                             ELSE t.backfilled_at END \
                  WHERE t.table_id OPERATOR(pg_catalog.=) $1",
                &[t.table_id.into(), (found.drift.len() as i64).into(), org_id.is_none().into()],
                Access::Write,
                |_| {},
            );
            rows.extend(rows_of(t, found.drift));
        }
        // Last, so the rows they claim stay held for as short a time as possible.
        for t in &trackings {
            settle::settle(t);
            fold(t);
        }
        sql::kept(
            "INSERT INTO org_stats.recalculation_log \
                    (started_at, finished_at, tables, orgs_checked, groups_repaired, triggered_by) \
             VALUES (pg_catalog.now(), pg_catalog.clock_timestamp(), $1, $2, $3, \
                     CASE WHEN pg_catalog.current_setting('application_name') OPERATOR(pg_catalog.=) 'pg_cron' \
                          THEN 'cron' ELSE 'manual' END)",
            &[(trackings.len() as i32).into(), orgs_checked.into(), (rows.len() as i64).into()],
            Access::Write,
            |_| {},
        );
    });
    rows
}

/// Declares one of the drift functions: the two of a table (every tracking of it) and the two of
/// a tracking reference, which differ only in their first argument and what they call, and return
/// the same rows; one declaration keeps their result type in one place.
macro_rules! drift_function {
    ($(#[$doc:meta])* $rust:ident = $sql:literal, $volatility:ident, $parallel:ident,
     $arg:ident [$($param:tt)*], $targets:expr, $action:literal, $run:ident) => {
        $(#[$doc])*
        #[pg_extern($volatility, $parallel, name = $sql)]
        fn $rust(
            $($param)*,
            org_id: default!(Option<&str>, "NULL"),
        ) -> TableIterator<
            'static,
            (
                name!(table_name, RegClass),
                name!(org_id, String),
                name!(status, Option<String>),
                name!(stored, i64),
                name!(actual, i64),
                name!(tracking, Option<String>),
                name!(stored_sums, Option<pgrx::JsonB>),
                name!(actual_sums, Option<pgrx::JsonB>),
            ),
        > {
            TableIterator::new($run($targets($arg, $action), org_id))
        }
    };
}

drift_function!(
    /// One row per (tracking, org, status) whose stored count or sums differ from the table, for
    /// every tracking of `tbl` (NULL: of every table the caller owns); changes nothing.
    check_drift_of_table = "check_drift", stable, parallel_restricted,
    tbl [tbl: default!(Option<RegClass>, "NULL")], targets, "check_drift", check
);
drift_function!(
    /// `check_drift()` of the tracking `tracking` names.
    check_drift_of = "check_drift", stable, parallel_restricted,
    tracking [tracking: Option<&str>], targets_named, "check_drift", check
);
drift_function!(
    /// Repairs drift and returns what it repaired (stored = before, actual = after).
    recalculate_of_table = "recalculate", volatile, parallel_unsafe,
    tbl [tbl: default!(Option<RegClass>, "NULL")], targets, "recalculate", repair
);
drift_function!(
    /// `recalculate()` of the tracking `tracking` names.
    recalculate_of = "recalculate", volatile, parallel_unsafe,
    tracking [tracking: Option<&str>], targets_named, "recalculate", repair
);
