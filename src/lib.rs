//! org_stats: exact per-organization, per-status row counts of application tables, kept by
//! triggers inside PostgreSQL. This file only wires the modules together; each concern lives in
//! one module:
//! - `tracking`: track()/untrack(), the tracking DDL
//! - `ddl`: following DDL on tracked tables (event triggers in sql/ddl.sql)
//! - `write_path` and `deltas`: the triggers and the per-statement delta map they fill
//! - `reads`: count_by_status(), count(), counts(), totals(), for one org, many, or all
//! - `filter`: checking and evaluating a tracking's filter
//! - `sums`: exact sums of a tracking's summed columns
//! - `live`: change notifications (shared memory, a notifier per database, listen/changed_since)
//! - `compat`: the calls whose form differs between PostgreSQL majors
//! - `backfill`: counting rows that already exist (at track() time, or online with backfill())
//! - `drift`: check_drift()/recalculate(), and the exact diff they and backfill share
//! - `scheduling`: schedule_recalculation() with pg_cron
//! - `registry`: the tracked-table registry and the argument types naming tables and columns
//! - `text_form`: the text form under which values are counted
//! - `security`: running the extension's SQL with its rights and a pinned search_path
//! - `sql`: SPI with kept plans and the caller's snapshot
//! - `pool`: which counter row a delta goes to, without waiting on other writers
//! - `storage`: direct index and heap access to the counters on the hot paths
//! - `superseded`: clear errors for functions of 0.1.0's SQL this library no longer serves
//! - `errors`: every error, with its SQLSTATE and HINT

use pgrx::prelude::*;

mod backfill;
mod citus;
mod compat;
mod ddl;
mod deltas;
mod drift;
mod errors;
mod filter;
mod live;
mod pool;
mod reads;
mod registry;
mod relcache;
mod scheduling;
mod security;
mod sql;
mod storage;
mod sums;
mod superseded;
mod text_form;
mod tracking;
mod write_path;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/backfill.sql",
    name = "backfill_procedure",
    requires = [
        backfill::trackings_to_backfill,
        backfill::backfill_start_tracking,
        backfill::backfill_batch_tracking,
        backfill::backfill_finish_tracking
    ]
);
extension_sql_file!(
    "../sql/ddl.sql",
    name = "ddl_event_triggers",
    requires = [
        ddl::ddl_start,
        ddl::ddl_end,
        drift::recalculate_of_table,
        citus::drop_unused_counters
    ]
);
extension_sql_file!(
    "../sql/reads.sql",
    name = "reads",
    requires = [citus::distributed_counts, citus::live_reason]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    write_path::init();
    text_form::init();
    security::init();
    storage::init();
    filter::init();
    live::init();
    citus::init();
    relcache::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod unit_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
