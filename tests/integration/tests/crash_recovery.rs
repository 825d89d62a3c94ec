//! Crash safety: writers load tracked tables, the postmaster is killed with SIGKILL at a random
//! moment, PostgreSQL recovers from WAL, and the counts have no drift. Three times.

use org_stats_integration_tests::{connect, drift, pg_program};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn data_directory() -> String {
    std::env::var("ORG_STATS_PGDATA").expect("ORG_STATS_PGDATA is set by pg_test.sh")
}

fn kill_postmaster() {
    let pid_file = std::fs::read_to_string(format!("{}/postmaster.pid", data_directory())).unwrap();
    let pid = pid_file.lines().next().unwrap().trim().to_string();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

/// Starts PostgreSQL again (crash recovery). The dead postmaster's children exit when they notice
/// it is gone; until they have, the new postmaster refuses to start, so it is retried.
fn restart() {
    let log = std::env::var("ORG_STATS_PGLOG").expect("ORG_STATS_PGLOG is set by pg_test.sh");
    for _ in 0..60 {
        thread::sleep(Duration::from_secs(1));
        let status = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_program("pg_ctl").get_program())
            .args([
                "-D",
                &data_directory(),
                "-l",
                &log,
                "-w",
                "-t",
                "120",
                "start",
            ])
            .env_remove("RUST_BACKTRACE")
            .status()
            .unwrap();
        if status.success() {
            return;
        }
    }
    let tail = std::fs::read_to_string(&log).unwrap_or_default();
    panic!(
        "PostgreSQL did not restart after the crash:\n{}",
        &tail[tail.len().saturating_sub(3000)..]
    );
}

#[test]
fn counts_survive_kill_9_of_the_postmaster() {
    let mut db = connect();
    db.batch_execute(
        "DROP TABLE IF EXISTS crash_loads;
         CREATE TABLE crash_loads (id bigserial PRIMARY KEY, workos_org_id text, status text);
         INSERT INTO crash_loads (workos_org_id, status) SELECT 'org' || (i % 5), 'Open' FROM generate_series(1, 1000) i;
         SELECT org_stats.track('crash_loads');",
    )
    .unwrap();
    drop(db);
    let mut rng = rand::thread_rng();
    for round in 1..=3 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut client = connect();
                    let mut done = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let org = format!("org{}", (done + w) % 5);
                        let result = client.batch_execute(&format!(
                            "BEGIN;
                             INSERT INTO crash_loads (workos_org_id, status) VALUES ('{org}', 'Open'), ('{org}', 'Closed');
                             UPDATE crash_loads SET status = 'Done' WHERE id = (SELECT max(id) FROM crash_loads WHERE workos_org_id = '{org}');
                             DELETE FROM crash_loads WHERE id = (SELECT min(id) FROM crash_loads WHERE workos_org_id = '{org}');
                             COMMIT;"
                        ));
                        if result.is_err() {
                            break; // the server went away
                        }
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(rng.gen_range(500..3000)));
        kill_postmaster();
        stop.store(true, Ordering::Relaxed);
        let committed: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        restart();
        let mut db = connect();
        let left = drift(&mut db);
        assert_eq!(left, 0, "round {round}: no drift after crash recovery");
        println!("round {round}: killed after {committed} committed transactions; recovered with 0 drift");
    }
    connect()
        .batch_execute("SELECT org_stats.untrack('crash_loads'); DROP TABLE crash_loads;")
        .unwrap();
}
