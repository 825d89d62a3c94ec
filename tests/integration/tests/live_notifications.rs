//! Live notifications: a session subscribed with org_stats.listen() learns, after each commit,
//! which orgs' counts changed, and reads them exact; org_stats.changed_since() replays the same
//! changes from a token. Every expectation is computed from the base table (which orgs a
//! statement touched, what their counts are), never written into the test.

use org_stats_integration_tests::{
    connect, connect_to, drop_database, fresh_database, groups_mismatches, mismatches, Grouped,
};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

const DB: &str = "org_stats_live";
/// Notifications are sent within about 50 ms of a commit; this much silence means none is coming.
const QUIET: Duration = Duration::from_millis(800);

/// Every notification received until none arrives for `QUIET`, as parsed payloads.
fn drain(listener: &mut Client) -> Vec<Value> {
    let mut got = Vec::new();
    let mut notifications = listener.notifications();
    let mut it = notifications.timeout_iter(QUIET);
    while let Some(n) = it.next().expect("notifications arrive") {
        got.push(serde_json::from_str(n.payload()).expect("a JSON payload"));
    }
    got
}

/// The orgs named by notifications of tracking `tracking` (JSON null: the default tracking).
fn orgs_of(got: &[Value], tracking: &Value) -> BTreeSet<String> {
    got.iter()
        .filter(|p| &p["tracking"] == tracking && p.get("resync").is_none())
        .map(|p| p["org_id"].as_str().expect("an org id").to_owned())
        .collect()
}

/// Orgs of `live_loads` a query over it returns, read live.
fn live_orgs(db: &mut Client, query: &str) -> BTreeSet<String> {
    db.query(query, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn all_orgs(db: &mut Client) -> Vec<String> {
    live_orgs(db, "SELECT DISTINCT workos_org_id FROM live_loads")
        .into_iter()
        .collect()
}

fn assert_exact(db: &mut Client) {
    let orgs = all_orgs(db);
    assert_eq!(
        mismatches(db, "live_loads", "workos_org_id", &orgs),
        Vec::<String>::new()
    );
}

fn sql_state(err: &postgres::Error) -> Option<&SqlState> {
    err.as_db_error().map(|e| e.code())
}

/// changed_since(token): the changes (table, tracking, org) and the final row's token and
/// resync flag.
type Changes = (Vec<(String, Option<String>, Option<String>)>, String, bool);

fn changed_since(db: &mut Client, token: Option<&str>) -> Changes {
    let rows = db
        .query(
            "SELECT table_name::text, tracking, org_id, token, resync FROM org_stats.changed_since($1)",
            &[&token],
        )
        .unwrap();
    let (last, changes) = rows.split_last().expect("a final row, always");
    assert!(
        last.get::<_, Option<String>>(0).is_none(),
        "the final row has no table"
    );
    let changes = changes
        .iter()
        .map(|r| {
            assert!(!r.get::<_, bool>(4), "a change row is no resync");
            (r.get(0), r.get(1), r.get(2))
        })
        .collect();
    (changes, last.get(3), last.get(4))
}

fn signal(signal: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// A process stopped with SIGSTOP, continued when this is dropped (also when an assertion
/// fails, so a failing test leaves no stopped server process behind).
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

/// Stops the notifier `pid` with SIGSTOP at a moment it waits on its latch (so it holds no
/// lock a writer could need), retrying until it is caught there.
fn stop_between_drains(db: &mut Client, pid: i32) -> Stopped {
    for _ in 0..1000 {
        signal("-STOP", pid);
        let waits: Option<String> = db
            .query_one(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if waits.as_deref() == Some("Extension") {
            return Stopped(pid);
        }
        signal("-CONT", pid);
        std::thread::sleep(Duration::from_millis(3));
    }
    panic!("notifier {pid} was never caught waiting on its latch");
}

fn token_now(db: &mut Client) -> String {
    let (changes, token, resync) = changed_since(db, None);
    assert!(
        changes.is_empty() && resync,
        "a NULL token is answered with a resync and a token"
    );
    token
}

#[test]
fn listeners_learn_which_orgs_changed_after_commit() {
    let mut writer = fresh_database(DB);
    writer
        .batch_execute(
            "CREATE TABLE live_loads (id serial PRIMARY KEY, workos_org_id text NOT NULL, status text, amount int);
             INSERT INTO live_loads (workos_org_id, status, amount)
                  SELECT 'org' || (i % 5), 'Open', i FROM generate_series(1, 50) i;
             SELECT org_stats.track('live_loads', 'workos_org_id', 'status');
             SELECT org_stats.track('live_loads', 'workos_org_id', 'status',
                                    filter => 'amount > 25', name => 'big_loads');",
        )
        .unwrap();

    // Not notifying yet: listening is refused with the way to turn it on.
    let mut listener = connect_to(DB);
    let err = listener
        .query_one("SELECT org_stats.listen('live_loads')", &[])
        .unwrap_err();
    assert_eq!(
        sql_state(&err),
        Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
    );

    writer
        .batch_execute(
            "SELECT org_stats.set_notify('live_loads'); SELECT org_stats.set_notify('big_loads');",
        )
        .unwrap();
    let default_channel: String = listener
        .query_one("SELECT org_stats.listen('live_loads')", &[])
        .unwrap()
        .get(0);
    let named_channel: String = listener
        .query_one("SELECT org_stats.listen('big_loads')", &[])
        .unwrap()
        .get(0);
    assert_ne!(
        default_channel, named_channel,
        "each tracking has its own channel"
    );
    let start = token_now(&mut listener);
    // Every org notified from here on, as the base table says.
    let mut ever = BTreeSet::new();

    // One row: its org, on the default tracking's channel, with the table and a token.
    writer
        .batch_execute("INSERT INTO live_loads (workos_org_id, status, amount) VALUES ('org1', 'Delivered', 1)")
        .unwrap();
    let got = drain(&mut listener);
    assert_eq!(got.len(), 1, "one notification: {got:?}");
    assert_eq!(got[0]["table"], "public.live_loads");
    assert_eq!(got[0]["tracking"], Value::Null);
    assert_eq!(got[0]["org_id"], "org1");
    ever.insert("org1".to_owned());
    assert_exact(&mut listener);

    // The filter decides which trackings changed: a big load notifies both.
    writer
        .batch_execute(
            "INSERT INTO live_loads (workos_org_id, status, amount) VALUES ('org2', 'Open', 99)",
        )
        .unwrap();
    let got = drain(&mut listener);
    assert_eq!(
        orgs_of(&got, &Value::Null),
        BTreeSet::from(["org2".to_owned()])
    );
    assert_eq!(
        orgs_of(&got, &Value::from("big_loads")),
        BTreeSet::from(["org2".to_owned()])
    );
    ever.insert("org2".to_owned());

    // A bulk statement: one notification per org it touched, however many rows.
    let touched = live_orgs(
        &mut writer,
        "SELECT DISTINCT workos_org_id FROM live_loads WHERE id % 3 = 0",
    );
    writer
        .batch_execute("UPDATE live_loads SET status = 'Delivered' WHERE id % 3 = 0")
        .unwrap();
    let got = drain(&mut listener);
    assert_eq!(orgs_of(&got, &Value::Null), touched);
    assert_eq!(
        got.iter().filter(|p| p["tracking"].is_null()).count(),
        touched.len()
    );
    ever.extend(touched);
    assert_exact(&mut listener);

    // A row moving between orgs changes both.
    let mut moved = live_orgs(
        &mut writer,
        "SELECT workos_org_id FROM live_loads WHERE id = 1",
    );
    writer
        .batch_execute("UPDATE live_loads SET workos_org_id = 'org9' WHERE id = 1")
        .unwrap();
    moved.insert("org9".to_owned());
    assert_eq!(orgs_of(&drain(&mut listener), &Value::Null), moved);
    ever.extend(moved);

    // Rolled back: nothing. A rolled-back savepoint: only what stayed.
    writer
        .batch_execute(
            "BEGIN; INSERT INTO live_loads (workos_org_id, status) VALUES ('org_rolled_back', 'Open'); ROLLBACK;
             BEGIN;
             INSERT INTO live_loads (workos_org_id, status) VALUES ('org_kept', 'Open');
             SAVEPOINT s;
             INSERT INTO live_loads (workos_org_id, status) VALUES ('org_undone', 'Open');
             ROLLBACK TO SAVEPOINT s;
             COMMIT;",
        )
        .unwrap();
    let kept = live_orgs(
        &mut writer,
        "SELECT workos_org_id FROM live_loads WHERE workos_org_id LIKE 'org\\_%'",
    );
    assert_eq!(orgs_of(&drain(&mut listener), &Value::Null), kept);
    ever.extend(kept);
    assert_exact(&mut listener);

    // Many commits to one org while the notifier waits between drains are one notification per
    // drain, and the last arrives after the last commit: reading then gives the final count.
    for _ in 0..200 {
        writer
            .batch_execute("INSERT INTO live_loads (workos_org_id, status) VALUES ('org3', 'Open')")
            .unwrap();
    }
    let got = drain(&mut listener);
    let notified = got.iter().filter(|p| p["tracking"].is_null()).count();
    assert!(
        (1..200).contains(&notified),
        "200 commits coalesced into {notified} notifications"
    );
    ever.insert("org3".to_owned());
    assert_exact(&mut listener);

    // The notifier exits when idle; the next commit starts it again.
    std::thread::sleep(Duration::from_secs(3));
    writer
        .batch_execute("INSERT INTO live_loads (workos_org_id, status) VALUES ('org4', 'Open')")
        .unwrap();
    assert_eq!(
        orgs_of(&drain(&mut listener), &Value::Null),
        BTreeSet::from(["org4".to_owned()])
    );
    ever.insert("org4".to_owned());

    // A notifier terminated (by an administrator, or failing) is replaced by the next commit.
    let notifier = "SELECT pid FROM pg_stat_activity
                     WHERE backend_type = 'org_stats notifier' AND datname = current_database()";
    let pids: Vec<i32> = writer
        .query(notifier, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pids.len(), 1, "one notifier runs for the database");
    writer
        .execute("SELECT pg_terminate_backend($1, 5000)", &[&pids[0]])
        .unwrap();
    writer
        .batch_execute("INSERT INTO live_loads (workos_org_id, status) VALUES ('org6', 'Open')")
        .unwrap();
    assert_eq!(
        orgs_of(&drain(&mut listener), &Value::Null),
        BTreeSet::from(["org6".to_owned()])
    );
    ever.insert("org6".to_owned());

    // A notifier that stops (here a SIGSTOP, taken while it waits between drains, so it holds no
    // lock) holds up no writer, and changed_since already shows what it has not sent; terminated,
    // it is replaced at once and what was waiting is sent with no further commit.
    let pid = loop {
        if let Some(row) = writer.query_opt(notifier, &[]).unwrap() {
            break row.get::<_, i32>(0);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let before = token_now(&mut listener);
    let stopped = stop_between_drains(&mut writer, pid);
    writer
        .batch_execute("INSERT INTO live_loads (workos_org_id, status) VALUES ('org7', 'Open')")
        .unwrap();
    let waiting: BTreeSet<String> = changed_since(&mut listener, Some(&before))
        .0
        .into_iter()
        .filter_map(|(_, _, org)| org)
        .collect();
    assert_eq!(waiting, BTreeSet::from(["org7".to_owned()]));
    assert_eq!(drain(&mut listener), Vec::<Value>::new(), "not sent yet");
    writer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    drop(stopped);
    assert_eq!(
        orgs_of(&drain(&mut listener), &Value::Null),
        BTreeSet::from(["org7".to_owned()])
    );
    ever.insert("org7".to_owned());

    // TRUNCATE empties every org that had rows.
    let emptied = live_orgs(&mut writer, "SELECT DISTINCT workos_org_id FROM live_loads");
    writer.batch_execute("TRUNCATE live_loads").unwrap();
    assert_eq!(orgs_of(&drain(&mut listener), &Value::Null), emptied);
    ever.extend(emptied);
    assert_exact(&mut listener);

    // changed_since replays the same: every org notified since the first token, each once;
    // from the token it returns, nothing more.
    let (replay, last, resync) = changed_since(&mut listener, Some(&start));
    assert!(!resync);
    let replayed: BTreeSet<String> = replay
        .iter()
        .filter(|(_, tracking, _)| tracking.is_none())
        .map(|(_, _, org)| org.clone().expect("an org"))
        .collect();
    assert_eq!(replayed, ever);
    assert_eq!(
        replay.len(),
        replay.iter().collect::<BTreeSet<_>>().len(),
        "each once"
    );
    assert!(replay.iter().all(|(table, _, _)| table == "live_loads"));
    assert_eq!(
        changed_since(&mut listener, Some(&last)),
        (vec![], last.clone(), false)
    );
    // A token from elsewhere (another server start, garbage, far too old) asks for a full re-read.
    let started = start.split('-').next().unwrap();
    for foreign in ["1-1", "garbage", &format!("{started}-18446744073709551615")] {
        let (changes, _, resync) = changed_since(&mut listener, Some(foreign));
        assert!(changes.is_empty() && resync, "{foreign}");
    }

    // Many statements on one org in one transaction are one change, however many.
    writer
        .batch_execute(
            "DO $$ BEGIN FOR i IN 1 .. 3000 LOOP
                 INSERT INTO live_loads (workos_org_id, status) VALUES ('org5', 'Open');
             END LOOP; END $$",
        )
        .unwrap();
    let got = drain(&mut listener);
    assert!(got.iter().all(|p| p.get("resync").is_none()), "{got:?}");
    assert_eq!(
        orgs_of(&got, &Value::Null),
        BTreeSet::from(["org5".to_owned()])
    );
    let (_, last, _) = changed_since(&mut listener, Some(&last));

    // A transaction changing more orgs than the notifier holds tells listeners to resynchronize.
    writer
        .batch_execute(
            "INSERT INTO live_loads (workos_org_id, status) SELECT 'bulk' || i, 'Open' FROM generate_series(1, 3000) i",
        )
        .unwrap();
    let got = drain(&mut listener);
    assert!(
        got.iter().any(|p| p["resync"] == true),
        "a resync notification: {got:?}"
    );
    let (changes, _, resync) = changed_since(&mut listener, Some(&last));
    assert!(changes.is_empty() && resync);
    assert_exact(&mut listener);

    // Turned off: no more notifications.
    writer
        .batch_execute("SELECT org_stats.set_notify('live_loads', false)")
        .unwrap();
    writer
        .batch_execute("INSERT INTO live_loads (workos_org_id, status) VALUES ('org1', 'Open')")
        .unwrap();
    assert_eq!(
        orgs_of(&drain(&mut listener), &Value::Null),
        BTreeSet::new()
    );
    // Turned on again, on a new channel: whoever learnt the old one hears nothing more.
    writer
        .batch_execute("SELECT org_stats.set_notify('live_loads')")
        .unwrap();
    let renewed: String = listener
        .query_one("SELECT org_stats.listen('live_loads')", &[])
        .unwrap()
        .get(0);
    assert_ne!(renewed, default_channel);

    // A tracking grouped by two columns and an hour notifies the orgs whose groups changed.
    writer
        .batch_execute(
            "ALTER TABLE live_loads ADD COLUMN lane text, ADD COLUMN at timestamptz;
             SELECT org_stats.track('live_loads', name => 'lanes', group_by => ARRAY['status', 'lane'],
                                    time_column => 'at', bucket => '1 hour');
             SELECT org_stats.set_notify('lanes');",
        )
        .unwrap();
    listener
        .batch_execute("SELECT org_stats.listen('lanes')")
        .unwrap();
    // The orgs whose rows move to another bucket, as the table says, and the one inserted into.
    let mut touched = live_orgs(
        &mut writer,
        "SELECT DISTINCT workos_org_id FROM live_loads WHERE workos_org_id IN ('org1', 'org2')",
    );
    touched.insert("org3".to_owned());
    writer
        .batch_execute(
            "INSERT INTO live_loads (workos_org_id, status, lane, at) VALUES ('org3', 'Open', 'north', now());
             UPDATE live_loads SET at = now() - interval '2 hours' WHERE workos_org_id IN ('org1', 'org2');",
        )
        .unwrap();
    assert_eq!(
        orgs_of(&drain(&mut listener), &Value::from("lanes")),
        touched
    );
    let grouped = Grouped {
        tracking: "lanes",
        table: "live_loads",
        org_column: "workos_org_id",
        key: "ARRAY[status, lane]",
        time_column: "at",
        filter: "true",
        sums: &[],
    };
    let orgs = all_orgs(&mut listener);
    let recent = (Some("now() - interval '90 minutes'"), None);
    assert_eq!(
        groups_mismatches(&mut listener, &grouped, &orgs, recent, None),
        Vec::<String>::new()
    );

    drop(listener);
    drop(writer);
    drop_database(DB);
}

#[test]
fn only_readers_of_the_counts_may_listen() {
    const SECURE: &str = "org_stats_live_secure";
    let mut owner = fresh_database(SECURE);
    owner
        .batch_execute(
            "DROP ROLE IF EXISTS live_reader; DROP ROLE IF EXISTS live_stranger;
             CREATE ROLE live_reader LOGIN; CREATE ROLE live_stranger LOGIN;
             CREATE TABLE secret_loads (workos_org_id text, status text);
             CREATE TABLE rls_loads (workos_org_id text, status text);
             ALTER TABLE rls_loads ENABLE ROW LEVEL SECURITY;
             GRANT SELECT ON secret_loads, rls_loads TO live_reader;
             SELECT org_stats.track('secret_loads', 'workos_org_id', 'status');
             SELECT org_stats.track('rls_loads', 'workos_org_id', 'status');
             SELECT org_stats.set_notify('secret_loads'); SELECT org_stats.set_notify('rls_loads');",
        )
        .unwrap();
    let as_role = |role: &str| {
        Client::connect(
            &org_stats_integration_tests::dsn(Some(SECURE))
                .replace("user=postgres", &format!("user={role}")),
            NoTls,
        )
        .unwrap()
    };
    let mut reader = as_role("live_reader");
    let mut stranger = as_role("live_stranger");

    reader
        .query_one("SELECT org_stats.listen('secret_loads')", &[])
        .unwrap();
    let err = stranger
        .query_one("SELECT org_stats.listen('secret_loads')", &[])
        .unwrap_err();
    assert_eq!(sql_state(&err), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Row-level security applies to the reader on rls_loads: the counts (and their changes)
    // are not theirs to see, as count_by_status refuses them.
    let err = reader
        .query_one("SELECT org_stats.listen('rls_loads')", &[])
        .unwrap_err();
    assert_eq!(sql_state(&err), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // Only the owner may turn notifications on or off.
    let err = reader
        .batch_execute("SELECT org_stats.set_notify('secret_loads', false)")
        .unwrap_err();
    assert_eq!(sql_state(&err), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    let start = token_now(&mut stranger);
    owner
        .batch_execute(
            "INSERT INTO secret_loads VALUES ('acme', 'Open');
             INSERT INTO rls_loads VALUES ('acme', 'Open');",
        )
        .unwrap();
    let got = drain(&mut reader);
    assert_eq!(got.len(), 1, "the reader hears secret_loads only: {got:?}");
    assert_eq!(got[0]["table"], "public.secret_loads");
    // changed_since shows each role only what it may read.
    let tables = |client: &mut Client| -> Vec<String> {
        let mut tables: Vec<String> = changed_since(client, Some(&start))
            .0
            .into_iter()
            .map(|(table, _, _)| table)
            .collect();
        tables.sort();
        tables
    };
    assert_eq!(tables(&mut stranger), Vec::<String>::new());
    assert_eq!(tables(&mut reader), vec!["secret_loads".to_owned()]);
    assert_eq!(
        tables(&mut owner),
        vec!["rls_loads".to_owned(), "secret_loads".to_owned()]
    );

    drop((owner, reader, stranger));
    drop_database(SECURE);
    connect()
        .batch_execute("DROP ROLE live_reader; DROP ROLE live_stranger;")
        .unwrap();
}

/// Without org_stats in shared_preload_libraries (the publisher cluster of the replication test
/// has none), counting works and turning notifications on is refused with the way to fix it.
#[test]
fn notifications_need_the_library_preloaded() {
    let dsn = std::env::var("ORG_STATS_PUBLISHER_DSN")
        .expect("ORG_STATS_PUBLISHER_DSN is set by pg_test.sh");
    let mut db = Client::connect(&dsn, NoTls).unwrap();
    db.batch_execute(
        "DROP TABLE IF EXISTS live_loads; DROP EXTENSION IF EXISTS org_stats; CREATE EXTENSION org_stats;
         CREATE TABLE live_loads (workos_org_id text, status text);
         SELECT org_stats.track('live_loads', 'workos_org_id', 'status');
         INSERT INTO live_loads VALUES ('acme', 'Open'), ('acme', 'Open');",
    )
    .unwrap();
    for call in [
        "SELECT org_stats.set_notify('live_loads')",
        "SELECT org_stats.listen('live_loads')",
        "SELECT * FROM org_stats.changed_since(NULL)",
    ] {
        let err = db.batch_execute(call).unwrap_err();
        assert_eq!(
            sql_state(&err),
            Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
            "{call}"
        );
        let hint = err
            .as_db_error()
            .unwrap()
            .hint()
            .unwrap_or_default()
            .to_owned();
        assert!(hint.contains("shared_preload_libraries"), "{call}: {hint}");
    }
    assert_exact(&mut db);
    db.batch_execute("DROP TABLE live_loads; DROP EXTENSION org_stats;")
        .unwrap();
}

/// A crash restart (a backend killed with SIGKILL) makes the server's shared memory anew, and
/// changes are numbered from 1 again: a token from before it asks for a resync, even once the
/// new numbers have passed it.
#[test]
fn tokens_from_before_a_crash_restart_ask_for_a_resync() {
    const CRASH: &str = "org_stats_live_crash";
    let mut db = fresh_database(CRASH);
    db.batch_execute(
        "CREATE TABLE crash_loads (workos_org_id text, status text);
         SELECT org_stats.track('crash_loads', 'workos_org_id', 'status');
         SELECT org_stats.set_notify('crash_loads');
         INSERT INTO crash_loads VALUES ('acme', 'Open');",
    )
    .unwrap();
    let number = |token: &str| -> u64 { token.rsplit_once('-').unwrap().1.parse().unwrap() };
    let old = token_now(&mut db);
    let mut victim = connect_to(CRASH);
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    signal("-KILL", pid);
    drop(victim);
    let mut db = (0..120)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(500));
            Client::connect(&org_stats_integration_tests::dsn(Some(CRASH)), NoTls)
                .ok()
                .filter(|c| !c.is_closed())
        })
        .expect("the server is back after its crash restart");
    let mut next = 0;
    while number(&token_now(&mut db)) <= number(&old) {
        db.batch_execute(&format!(
            "INSERT INTO crash_loads SELECT 'org' || i, 'Open' FROM generate_series({next}, {next} + 999) i"
        ))
        .unwrap();
        next += 1000;
        std::thread::sleep(Duration::from_millis(200));
    }
    let (changes, _, resync) = changed_since(&mut db, Some(&old));
    assert!(changes.is_empty() && resync, "{changes:?}");
    let orgs: Vec<String> = db
        .query("SELECT DISTINCT workos_org_id FROM crash_loads", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        mismatches(&mut db, "crash_loads", "workos_org_id", &orgs),
        Vec::<String>::new()
    );
    drop(db);
    drop_database(CRASH);
}
