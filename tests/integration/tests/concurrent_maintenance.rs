//! Maintenance under a live multi-client write load. Writer threads (several orgs, one hot org,
//! multi-statement transactions touching two orgs in random order) run while
//! 1. another session loops recalculate() and check_drift(), after drift was injected; and
//! 2. CALL org_stats.backfill() counts a table tracked with backfill => false, while a reader
//!    compares counts with a live GROUP BY in the same statement, at READ COMMITTED and
//!    REPEATABLE READ.
//!
//! Afterwards: 0 drift, 0 deadlocks, 0 errors in any client, 0 mismatches seen by the reader.

use org_stats_integration_tests::{connect, mismatches};
use postgres::{Client, IsolationLevel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const WRITERS: u64 = 6;
const ORGS: u64 = 12;
const LOAD_SECONDS: u64 = 15;

fn org(rng: &mut StdRng) -> String {
    // Half of all writes go to the hot org.
    if rng.gen_bool(0.5) {
        "org_hot".into()
    } else {
        format!("org{}", rng.gen_range(1..ORGS))
    }
}

fn status(rng: &mut StdRng) -> &'static str {
    ["Open", "Dispatched", "Delivered", "Cancelled"][rng.gen_range(0..4)]
}

/// One writer's transaction. Each writer touches only rows with id % WRITERS = its number, so
/// the base rows never conflict: any wait or deadlock would come from the counters.
fn write_once(
    client: &mut Client,
    table: &str,
    me: u64,
    rng: &mut StdRng,
) -> Result<(), postgres::Error> {
    let mine = format!("id % {WRITERS} = {me}");
    let pick = format!(
        "(SELECT id FROM {table} WHERE {mine} AND workos_org_id = $1 ORDER BY random() LIMIT 1)"
    );
    match rng.gen_range(0..5) {
        0 => {
            client.execute(
                &format!("INSERT INTO {table} (id, workos_org_id, status) SELECT nextval('{table}_ids') * {WRITERS} + {me}, $1, $2 FROM generate_series(1, $3)"),
                &[&org(rng), &status(rng), &rng.gen_range(1..4i32)],
            )?;
        }
        1 => {
            client.execute(
                &format!("UPDATE {table} SET status = $2 WHERE id = {pick}"),
                &[&org(rng), &status(rng)],
            )?;
        }
        2 => {
            // Two orgs, in random order, in one transaction: the classic counter deadlock.
            let mut tx = client.transaction()?;
            for _ in 0..2 {
                tx.execute(
                    &format!("UPDATE {table} SET status = $2 WHERE id = {pick}"),
                    &[&org(rng), &status(rng)],
                )?;
            }
            tx.commit()?;
        }
        3 => {
            client.execute(
                &format!("UPDATE {table} SET workos_org_id = $2 WHERE id = {pick}"),
                &[&org(rng), &org(rng)],
            )?;
        }
        _ => {
            client.execute(
                &format!("DELETE FROM {table} WHERE id = {pick}"),
                &[&org(rng)],
            )?;
        }
    }
    Ok(())
}

struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<thread::JoinHandle<(u64, Vec<String>)>>,
}

fn start_writers(table: &'static str, seed: u64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..WRITERS)
        .map(|me| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut client = connect();
                let mut rng = StdRng::seed_from_u64(seed + me);
                let (mut done, mut errors) = (0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match write_once(&mut client, table, me, &mut rng) {
                        Ok(()) => done += 1,
                        Err(e) => errors.push(format!("writer {me}: {e}")),
                    }
                }
                (done, errors)
            })
        })
        .collect();
    Load { stop, handles }
}

impl Load {
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for handle in self.handles {
            let (done, errors) = handle.join().unwrap();
            assert!(
                errors.is_empty(),
                "writers failed (deadlocks are 40P01):\n{}",
                errors.join("\n")
            );
            total += done;
        }
        total
    }
}

fn orgs() -> Vec<String> {
    std::iter::once("org_hot".to_string())
        .chain((1..ORGS).map(|i| format!("org{i}")))
        .collect()
}

fn setup(client: &mut Client, table: &str, rows: i64, orgs: u64, backfill: bool) {
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, workos_org_id text, status text);
             CREATE INDEX ON {table} (workos_org_id);
             CREATE SEQUENCE {table}_ids START 1000000;
             INSERT INTO {table} SELECT i, CASE WHEN i % 2 = 0 THEN 'org_hot' ELSE 'org' || (1 + i % {orgs}) END,
                                        (ARRAY['Open', 'Dispatched', 'Delivered', 'Cancelled'])[1 + i % 4]
               FROM generate_series(1, {rows}) i;
             SELECT org_stats.track('{table}', backfill => {backfill});"
        ))
        .unwrap();
}

#[test]
fn recalculate_and_check_drift_under_write_load_stay_exact() {
    let seed: u64 = rand::random();
    println!("concurrent recalculate: seed {seed}");
    let mut admin = connect();
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS conc CASCADE; CREATE EXTENSION IF NOT EXISTS org_stats; CREATE SCHEMA conc;",
        )
        .unwrap();
    setup(&mut admin, "conc.loads", 20_000, ORGS - 1, true);
    // Drift for the maintenance loop to find and repair while the writers run.
    admin
        .batch_execute(
            "SET session_replication_role = replica;
             INSERT INTO conc.loads VALUES (-1, 'org_hot', 'Lost'), (-2, 'org3', 'Open');
             RESET session_replication_role;",
        )
        .unwrap();
    assert_eq!(
        admin
            .query("SELECT * FROM org_stats.check_drift('conc.loads')", &[])
            .unwrap()
            .len(),
        2
    );

    let load = start_writers("conc.loads", seed);
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECONDS);
    let (mut runs, mut repaired, mut reported) = (0, 0, 0);
    while Instant::now() < deadline {
        repaired += admin
            .query("SELECT * FROM org_stats.recalculate('conc.loads')", &[])
            .unwrap()
            .len();
        reported += admin
            .query("SELECT * FROM org_stats.check_drift('conc.loads')", &[])
            .unwrap()
            .len();
        runs += 1;
    }
    let writes = load.finish();

    let drift = admin
        .query(
            "SELECT org_id, status, stored, actual FROM org_stats.check_drift('conc.loads')",
            &[],
        )
        .unwrap();
    assert!(
        drift.is_empty(),
        "{} groups drifted under concurrent recalculate()",
        drift.len()
    );
    assert_eq!(
        repaired, 2,
        "recalculate() repaired the injected drift, and only that"
    );
    assert_eq!(
        reported, 0,
        "check_drift() found no drift once it was repaired, writers notwithstanding"
    );
    let bad = mismatches(&mut admin, "conc.loads", "workos_org_id", &orgs());
    assert!(
        bad.is_empty(),
        "counts differ from GROUP BY:\n{}",
        bad.join("\n")
    );
    println!(
        "{writes} writer transactions, {runs} recalculate+check_drift rounds, 0 drift, 0 errors"
    );
    admin.batch_execute("DROP SCHEMA conc CASCADE").unwrap();
}

#[test]
fn backfill_under_write_load_is_exact_before_during_and_after() {
    let seed: u64 = rand::random();
    println!("concurrent backfill: seed {seed}");
    let mut admin = connect();
    admin
        .batch_execute(
            "DROP SCHEMA IF EXISTS concb CASCADE; CREATE EXTENSION IF NOT EXISTS org_stats; CREATE SCHEMA concb;",
        )
        .unwrap();
    // Many orgs, one per batch, so the backfill takes long enough for the reader to overlap it.
    setup(&mut admin, "concb.invoices", 30_000, 300, false);

    let load = start_writers("concb.invoices", seed);
    let reading = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicU64::new(0));
    // The reader compares one org at a time (so it reads often while the backfill runs), in
    // transactions alternating READ COMMITTED and REPEATABLE READ, several reads per transaction.
    let reader = {
        let (reading, reads) = (reading.clone(), reads.clone());
        thread::spawn(move || {
            let mut client = connect();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut bad = Vec::new();
            let mut round = 0;
            while reading.load(Ordering::Relaxed) {
                let isolation = [
                    IsolationLevel::ReadCommitted,
                    IsolationLevel::RepeatableRead,
                ][round % 2];
                round += 1;
                let mut tx = client
                    .build_transaction()
                    .isolation_level(isolation)
                    .start()
                    .unwrap();
                for _ in 0..5 {
                    let org = if rng.gen_bool(0.3) {
                        "org_hot".to_string()
                    } else {
                        format!("org{}", rng.gen_range(1..=300))
                    };
                    let row = tx
                        .query_one(
                            "SELECT org_stats.counts('concb.invoices', $1),
                                    (SELECT COALESCE(jsonb_object_agg(status, n), '{}') FROM (
                                        SELECT status, count(*) AS n FROM concb.invoices WHERE workos_org_id = $1 GROUP BY 1) g)",
                            &[&org],
                        )
                        .unwrap();
                    let (counted, actual): (
                        postgres::types::Json<serde_json::Value>,
                        postgres::types::Json<serde_json::Value>,
                    ) = (row.get(0), row.get(1));
                    if counted.0 != actual.0 {
                        bad.push(format!(
                            "{isolation:?} {org}: counted {} actual {}",
                            counted.0, actual.0
                        ));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                tx.commit().unwrap();
            }
            bad
        })
    };

    let started = Instant::now();
    // Separate statements: a multi-statement string runs as one transaction, where CALL cannot commit.
    admin
        .batch_execute("SET client_min_messages = warning")
        .unwrap();
    admin
        .batch_execute("CALL org_stats.backfill('concb.invoices', batch_size => 1)")
        .unwrap();
    let backfill_time = started.elapsed();
    let reads_during = reads.load(Ordering::Relaxed);
    thread::sleep(Duration::from_secs(3));
    reading.store(false, Ordering::Relaxed);
    let bad = reader.join().unwrap();
    let writes = load.finish();

    assert!(
        bad.is_empty(),
        "reads during backfill differed from GROUP BY:\n{}",
        bad.join("\n")
    );
    assert!(
        reads_during >= 20,
        "the reader overlapped the backfill ({reads_during} reads)"
    );
    let backfilled: bool = admin
        .query_one("SELECT backfilled_at IS NOT NULL FROM org_stats.tracked_tables WHERE table_name = 'concb.invoices'::regclass", &[])
        .unwrap()
        .get(0);
    assert!(backfilled, "the table is marked backfilled");
    let drift = admin
        .query("SELECT * FROM org_stats.check_drift('concb.invoices')", &[])
        .unwrap();
    assert!(
        drift.is_empty(),
        "{} groups drifted during the online backfill",
        drift.len()
    );
    let after = mismatches(&mut admin, "concb.invoices", "workos_org_id", &orgs());
    assert!(
        after.is_empty(),
        "counts differ from GROUP BY after backfill:\n{}",
        after.join("\n")
    );
    println!(
        "backfill of 30,000 rows in {backfill_time:?} under {writes} writer transactions; {} reads compared ({reads_during} during the backfill), 0 mismatches",
        reads.load(Ordering::Relaxed)
    );
    admin.batch_execute("DROP SCHEMA concb CASCADE").unwrap();
}
