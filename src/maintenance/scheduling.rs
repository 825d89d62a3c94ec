//! Scheduling recalculation with pg_cron: one job, `org_stats_recalculate`, created or replaced
//! by `schedule_recalculation()`. It runs as the role that scheduled it, in this database, which
//! must therefore be pg_cron's `cron.database_name`.

use crate::pg::errors::raise;
use crate::pg::sql::{self, Access};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

const JOB_NAME: &str = "org_stats_recalculate";
const JOB_COMMAND: &str = "SELECT pg_catalog.count(*) FROM org_stats.recalculate()";

fn require_pg_cron() {
    let mut installed = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cron')",
        &[],
        Access::Read,
        |row| installed = row.get(1).unwrap(),
    );
    if !installed {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pg_cron is not installed in this database",
            "Install pg_cron (Debian: postgresql-15-cron), set shared_preload_libraries = 'pg_cron' and \
             cron.database_name = '<this database>' in postgresql.conf, restart PostgreSQL, then run \
             CREATE EXTENSION pg_cron; in this database.",
        );
    }
}

/// Creates or replaces the pg_cron job that runs `org_stats.recalculate()` on `schedule`
/// (cron syntax; pg_cron 1.4 has minute granularity) and returns its job id.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn schedule_recalculation(schedule: default!(&str, "'0 3 * * *'")) -> i64 {
    require_pg_cron();
    let mut job_id = 0;
    sql::kept(
        "SELECT cron.schedule($1, $2, $3)",
        &[JOB_NAME.into(), schedule.into(), JOB_COMMAND.into()],
        Access::Write,
        |row| job_id = row.get(1).unwrap(),
    );
    job_id
}

/// Removes the job; returns whether there was one.
#[pg_extern(volatile, parallel_unsafe)]
fn unschedule_recalculation() -> bool {
    require_pg_cron();
    let mut removed = false;
    sql::kept(
        "SELECT cron.unschedule(j.jobid) FROM cron.job j \
          WHERE j.jobname OPERATOR(pg_catalog.=) $1 AND j.username OPERATOR(pg_catalog.=) CURRENT_USER",
        &[JOB_NAME.into()],
        Access::Write,
        |row| removed = row.get(1).unwrap(),
    );
    removed
}
