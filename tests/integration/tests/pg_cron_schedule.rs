//! pg_cron end to end, for real: in pg_cron's database (cron.database_name, which pg_test.sh sets
//! to `postgres` and preloads pg_cron for), schedule recalculation every minute, inject drift,
//! and wait (at most 150 s) until pg_cron reports a succeeded run, the drift is gone and
//! recalculation_log has a row triggered by cron.

use org_stats_integration_tests::connect;
use std::thread::sleep;
use std::time::{Duration, Instant};

#[test]
fn scheduled_recalculation_repairs_drift_through_pg_cron() {
    let mut db = connect();
    db.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS pg_cron;
         CREATE EXTENSION IF NOT EXISTS org_stats;
         DROP TABLE IF EXISTS cron_loads;
         CREATE TABLE cron_loads (workos_org_id text, status text);
         INSERT INTO cron_loads SELECT 'org' || (i % 3), 'Open' FROM generate_series(1, 30) i;
         SELECT org_stats.track('cron_loads');
         SET session_replication_role = replica;
         INSERT INTO cron_loads VALUES ('org1', 'Open'), ('org2', 'Lost');
         RESET session_replication_role;",
    )
    .unwrap();
    let drift = |db: &mut postgres::Client| -> i64 {
        db.query_one(
            "SELECT count(*) FROM org_stats.check_drift('cron_loads')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    assert_eq!(drift(&mut db), 2, "drift injected");

    let job: i64 = db
        .query_one("SELECT org_stats.schedule_recalculation('* * * * *')", &[])
        .unwrap()
        .get(0);
    let again: i64 = db
        .query_one("SELECT org_stats.schedule_recalculation('* * * * *')", &[])
        .unwrap()
        .get(0);
    assert_eq!(job, again, "scheduling again replaces the job");
    let command: String = db
        .query_one(
            "SELECT command FROM cron.job WHERE jobid = $1 AND jobname = 'org_stats_recalculate'",
            &[&job],
        )
        .unwrap()
        .get(0);
    assert!(
        command.contains("org_stats.recalculate()"),
        "job runs recalculate(): {command}"
    );

    let started = Instant::now();
    let (succeeded, repaired, by_cron) = loop {
        let succeeded: bool = db
            .query_one("SELECT EXISTS (SELECT FROM cron.job_run_details WHERE jobid = $1 AND status = 'succeeded')", &[&job])
            .unwrap()
            .get(0);
        let by_cron: bool = db
            .query_one("SELECT EXISTS (SELECT FROM org_stats.recalculation_log WHERE triggered_by = 'cron')", &[])
            .unwrap()
            .get(0);
        let left = drift(&mut db);
        if (succeeded && by_cron && left == 0) || started.elapsed() > Duration::from_secs(150) {
            break (succeeded, left == 0, by_cron);
        }
        sleep(Duration::from_secs(2));
    };
    let failures: Vec<String> = db
        .query("SELECT status || ': ' || coalesce(return_message, '') FROM cron.job_run_details WHERE jobid = $1 AND status <> 'succeeded'", &[&job])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        succeeded,
        "pg_cron ran the job successfully within 150 s; other runs: {failures:?}"
    );
    assert!(by_cron, "recalculation_log has a row triggered by cron");
    assert!(repaired, "the scheduled recalculation repaired the drift");
    println!(
        "pg_cron job {job} repaired the drift after {:?}",
        started.elapsed()
    );

    let removed: bool = db
        .query_one("SELECT org_stats.unschedule_recalculation()", &[])
        .unwrap()
        .get(0);
    let removed_again: bool = db
        .query_one("SELECT org_stats.unschedule_recalculation()", &[])
        .unwrap()
        .get(0);
    assert!(removed && !removed_again, "unschedule removes the job once");
    db.batch_execute("SELECT org_stats.untrack('cron_loads'); DROP TABLE cron_loads;")
        .unwrap();
}
