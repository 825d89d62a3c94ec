//! org_stats: exact per-organization, per-status row counts of application tables, kept by
//! triggers inside PostgreSQL. This file only wires the modules together.
//!
//! Layers, lowest first. A module imports only from its own layer or the layers below it, and no
//! two modules depend on each other, directly or through others (`tests/layers.py`, run by
//! `./pg_test.sh`, checks both from the `crate::` paths):
//! 1. `pg`: PostgreSQL glue: compat (every version condition), errors, sql, security, relcache,
//!    names (`regclass`, `name`), access (direct index and heap access), numeric (made and
//!    read without text)
//! 2. `values`: the text a value is counted under, exact sums, filters, group keys and time buckets
//! 3. `catalog`: org_stats' own tables, the registry of trackings
//! 4. `counters`: where counts live (the seam integrations plug into), deltas, the row choice,
//!    writing and reading counters, what a table holds counted live
//! 5. `write_path`, `reads`, `maintenance`: the triggers; the read functions; drift, backfill,
//!    relocation and scheduling
//! 6. `tracking`, `superseded`: track()/untrack(), triggers, DDL following; 0.1.0's retired
//!    functions
//! 7. `live`, `citus`: integrations that plug into the layers below (notifications on the write
//!    path's hook, Citus as a placement) and are named by nothing below them

use pgrx::prelude::*;

mod catalog;
mod citus;
mod counters;
mod live;
mod maintenance;
mod pg;
mod reads;
mod superseded;
mod tracking;
mod values;
mod write_path;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../sql/backfill.sql",
    name = "backfill_procedure",
    requires = [
        maintenance::backfill::trackings_to_backfill,
        maintenance::backfill::backfill_start_tracking,
        maintenance::backfill::backfill_batch_tracking,
        maintenance::backfill::backfill_finish_tracking
    ]
);
extension_sql_file!(
    "../sql/ddl.sql",
    name = "ddl_event_triggers",
    requires = [
        tracking::ddl::ddl_start,
        tracking::ddl::ddl_end,
        maintenance::drift::recalculate_of_table,
        citus::api::drop_unused_counters
    ]
);
extension_sql_file!(
    "../sql/reads.sql",
    name = "reads",
    requires = [citus::api::distributed_counts, reads::live_reason]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::security::init();
    pg::relcache::init();
    values::text_form::init();
    values::filter::init();
    catalog::schema::init();
    write_path::init();
    live::init();
    citus::init();
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
