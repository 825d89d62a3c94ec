//! Logical replication: base tables published by one cluster and tracked on the subscriber. The
//! apply worker runs as a replica, so track() makes org_stats' triggers fire ALWAYS on
//! subscription targets, and the apply worker's row triggers are flushed at commit. Under the
//! publisher's write load the subscriber's counts stay exact, and so do the counts and sums of a
//! second, named tracking with a filter.

use org_stats_integration_tests::{connect, drift};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

fn counts(client: &mut Client) -> Vec<(String, String, i64)> {
    client
        .query(
            "SELECT workos_org_id, status, count(*) FROM rep_loads GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits until the subscriber's rows equal the publisher's; how long that took.
fn catch_up(publisher: &mut Client, subscriber: &mut Client) -> Duration {
    let expected = counts(publisher);
    let started = Instant::now();
    while counts(subscriber) != expected {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the subscriber caught up within 90 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    started.elapsed()
}

#[test]
fn subscriber_counts_stay_exact_under_publisher_load() {
    let publisher_dsn = std::env::var("ORG_STATS_PUBLISHER_DSN")
        .expect("ORG_STATS_PUBLISHER_DSN is set by pg_test.sh");
    let mut publisher = Client::connect(&publisher_dsn, NoTls).unwrap();
    let mut subscriber = connect();
    publisher
        .batch_execute(
            "DROP PUBLICATION IF EXISTS org_stats_pub; DROP TABLE IF EXISTS rep_loads;
             CREATE TABLE rep_loads (id int PRIMARY KEY, workos_org_id text, status text, amount numeric);
             INSERT INTO rep_loads SELECT i, 'org' || (i % 4), 'Open', i * 1.25 FROM generate_series(1, 200) i;
             CREATE PUBLICATION org_stats_pub FOR TABLE rep_loads;",
        )
        .unwrap();
    subscriber
        .batch_execute("DROP TABLE IF EXISTS rep_loads; CREATE TABLE rep_loads (id int PRIMARY KEY, workos_org_id text, status text, amount numeric);")
        .unwrap();
    subscriber
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION org_stats_sub CONNECTION '{publisher_dsn}' PUBLICATION org_stats_pub"
        ))
        .unwrap();
    subscriber
        .batch_execute(
            "SELECT org_stats.track('rep_loads');
             SELECT org_stats.track('rep_loads', filter => $$status <> 'Done'$$, sum_columns => ARRAY['amount'],
                                    name => 'rep_open_amounts');",
        )
        .unwrap();
    let enabled: Vec<String> = subscriber
        .query("SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = 'rep_loads'::regclass AND tgname LIKE 'org_stats%'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        enabled,
        vec!["A"; 6],
        "org_stats' triggers fire ALWAYS on a subscription target"
    );

    for round in 0..200 {
        publisher
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO rep_loads VALUES ({id}, 'org{org}', 'Open', {id} * 0.5), ({id} + 1, 'org{org}', 'Closed', NULL);
                 UPDATE rep_loads SET status = 'Done' WHERE id = {upd};
                 UPDATE rep_loads SET workos_org_id = 'org{other}' WHERE id = {mv};
                 DELETE FROM rep_loads WHERE id = {del};
                 COMMIT;",
                id = 1000 + round * 2,
                org = round % 4,
                other = (round + 1) % 4,
                upd = 1 + round % 200,
                mv = 1 + (round * 7) % 200,
                del = 1 + (round * 13) % 200,
            ))
            .unwrap();
    }
    let caught_up = catch_up(&mut publisher, &mut subscriber);
    assert_eq!(
        drift(&mut subscriber),
        0,
        "the subscriber's counts equal its rows"
    );
    let org1: i64 = subscriber
        .query_one("SELECT org_stats.count('rep_loads', 'org1')", &[])
        .unwrap()
        .get(0);
    let org1_publisher: i64 = publisher
        .query_one(
            "SELECT count(*) FROM rep_loads WHERE workos_org_id = 'org1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(org1, org1_publisher);
    println!("subscriber caught up after {caught_up:?}; counts exact");

    // The apply worker fires row triggers but no statement triggers, so the TRUNCATE in the
    // middle of this transaction finds the inserts before it still to be written: it writes them
    // and must then read them back, to subtract everything the table held.
    publisher
        .batch_execute(
            "BEGIN;
             INSERT INTO rep_loads VALUES (100000, 'org0', 'Open'), (100001, 'org0', 'Open');
             TRUNCATE rep_loads;
             INSERT INTO rep_loads VALUES (100002, 'org0', 'Open');
             COMMIT;",
        )
        .unwrap();
    catch_up(&mut publisher, &mut subscriber);
    assert_eq!(
        drift(&mut subscriber),
        0,
        "a replicated TRUNCATE between inserts leaves exact counts"
    );
    // DROP SUBSCRIPTION may not run in the implicit transaction of a multi-statement string.
    subscriber
        .batch_execute("DROP SUBSCRIPTION org_stats_sub")
        .unwrap();
    subscriber
        .batch_execute("SELECT org_stats.untrack('rep_open_amounts'); SELECT org_stats.untrack('rep_loads'); DROP TABLE rep_loads;")
        .unwrap();
    publisher
        .batch_execute("DROP PUBLICATION org_stats_pub; DROP TABLE rep_loads;")
        .unwrap();
}
