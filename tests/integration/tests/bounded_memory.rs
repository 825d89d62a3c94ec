//! Bounded memory: one statement touching 2,000,000 rows across 500,000 distinct orgs. The
//! per-statement delta map is flushed whenever it holds 50,000 groups, so org_stats adds little
//! to what PostgreSQL itself keeps for the statement's AFTER ROW trigger events. The test records
//! the backend's peak anonymous memory, against the same statement on an untracked table, and
//! checks the counts are exact.

use org_stats_integration_tests::{connect, drift};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Runs `statement` and returns the backend's peak anonymous memory (RssAnon, kB) meanwhile.
fn peak_memory_kb(statement: &str) -> u64 {
    let mut client = connect();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    for line in status.lines().filter(|l| l.starts_with("RssAnon:")) {
                        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        })
    };
    client.batch_execute(statement).unwrap();
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    peak.load(Ordering::Relaxed)
}

#[test]
fn two_million_rows_over_half_a_million_orgs_in_one_statement() {
    let mut db = connect();
    db.batch_execute(
        "DROP TABLE IF EXISTS mem_plain, mem_tracked;
         CREATE TABLE mem_plain (workos_org_id text, status text);
         CREATE TABLE mem_tracked (workos_org_id text, status text);
         SELECT org_stats.track('mem_tracked');",
    )
    .unwrap();
    let load = |table: &str| {
        format!(
            "INSERT INTO {table} SELECT 'org' || (i % 500000), (ARRAY['Open', 'Closed'])[1 + (i / 500000) % 2] \
               FROM generate_series(1, 2000000) i"
        )
    };
    let plain = peak_memory_kb(&load("mem_plain"));
    let tracked = peak_memory_kb(&load("mem_tracked"));
    println!(
        "peak backend memory (RssAnon): {} MB without org_stats, {} MB with",
        plain / 1024,
        tracked / 1024
    );
    assert_eq!(drift(&mut db), 0, "exact after the 2M-row statement");
    let orgs: i64 = db
        .query_one("SELECT count(DISTINCT org_id) FROM org_stats.organization_stats WHERE table_name = 'mem_tracked'::regclass", &[])
        .unwrap()
        .get(0);
    assert_eq!(orgs, 500_000);
    // PostgreSQL's own AFTER ROW event queue grows with the row count; org_stats' map is capped at
    // 50,000 groups (a few MB), where holding all 500,000 would take well over 100 MB more.
    assert!(
        tracked < plain + 150 * 1024 + 2_000_000 * 64 / 1024,
        "org_stats kept its per-statement memory bounded: {tracked} kB vs {plain} kB untracked"
    );
    db.batch_execute("SELECT org_stats.untrack('mem_tracked'); DROP TABLE mem_plain, mem_tracked;")
        .unwrap();
}
