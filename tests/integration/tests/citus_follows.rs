//! Citus' own functions on tracked tables: org_stats follows `create_distributed_table()` (into a
//! colocation group with a tracked table, into a new one, inside a transaction block with writes
//! and reads before COMMIT), `create_distributed_table_concurrently()` under concurrent writers,
//! `alter_distributed_table()` (out of its group, and with every table of its group),
//! `update_distributed_table_colocation()`, `undistribute_table()`,
//! `citus_add_local_table_to_metadata()`, and the tables it cannot count where Citus keeps them
//! (a reference table, a table distributed by another column), which it reads live until
//! `undistribute_table()` brings them back. After each, and after writes through the coordinator
//! and a worker, every read of each tracking (a default one, and one with a filter and a summed
//! column) is compared with a live GROUP BY, and check_drift() finds nothing.

use org_stats_integration_tests::citus::{assert_exact, Cluster, PORTS};
use postgres::Client;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A table with rows of every org, tracked by default and as `<table>_valued` (a filter and a
/// summed column), not distributed.
fn tracked_table(db: &mut Client, table: &str) {
    db.batch_execute(&format!(
        "CREATE TABLE {table} (id bigserial, workos_org_id text NOT NULL, status text, amount numeric,
                               PRIMARY KEY (workos_org_id, id));
         INSERT INTO {table} (workos_org_id, status, amount)
         SELECT 'org' || (i % 7), (ARRAY['Open', 'Delivered', 'VOID'])[1 + i % 3], i * 1.5
           FROM generate_series(1, 210) i;"
    ))
    .unwrap();
    db.batch_execute(&format!("SELECT org_stats.track('{table}')"))
        .unwrap();
    db.batch_execute(&format!(
        "SELECT org_stats.track('{table}', name => '{table}_valued', filter => 'status <> ''VOID''',
                                sum_columns => ARRAY['amount'])"
    ))
    .unwrap();
}

/// Where Citus lets `write` go.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// Through the coordinator.
    Coordinator,
    /// Through the coordinator and a worker.
    AnyNode,
    /// Through both, but for status changes: the table is distributed by its status.
    AnyNodeByStatus,
}

/// Inserts, status and amount changes and deletes.
fn write(cluster: &Cluster, db: &mut Client, table: &str, writes: Writes) {
    let status = if writes == Writes::AnyNodeByStatus {
        "status"
    } else {
        "'Moved'"
    };
    db.batch_execute(&format!(
        "INSERT INTO {table} (workos_org_id, status, amount) SELECT 'org' || (i % 7), 'Written', i FROM generate_series(1, 21) i;
         UPDATE {table} SET status = {status}, amount = amount + 1 WHERE id % 5 = 0 AND status <> 'Moved';
         DELETE FROM {table} WHERE id % 11 = 0;"
    ))
    .unwrap();
    if writes != Writes::Coordinator {
        cluster
            .node(PORTS[1])
            .batch_execute(&format!(
                "INSERT INTO {table} (workos_org_id, status, amount) VALUES ('org3', 'FromWorker', 2), ('org4', 'VOID', 3);
                 UPDATE {table} SET amount = 0 WHERE workos_org_id = 'org5' AND status = 'Written';"
            ))
            .unwrap();
    }
}

/// Counter rows of a table's trackings in the coordinator's `org_stats.counters`.
fn local_counters(db: &mut Client, table: &str) -> i64 {
    db.query_one(
        "SELECT count(*) FROM org_stats.counters c JOIN org_stats.tracked t USING (table_id)
          WHERE t.relid = $1::text::regclass",
        &[&table],
    )
    .unwrap()
    .get(0)
}

fn live_reason(db: &mut Client, table: &str) -> Option<String> {
    db.query_one(
        "SELECT live_reason FROM org_stats.health WHERE table_name = $1::text::regclass AND tracking IS NULL",
        &[&table],
    )
    .unwrap()
    .get(0)
}

#[test]
fn counts_follow_what_citus_does_to_a_tracked_table() {
    let Some(cluster) = Cluster::start(4) else {
        return;
    };
    let mut db = cluster.node(PORTS[0]);
    // Citus refuses to distribute a table with triggers unless told it may.
    db.batch_execute(
        "CREATE EXTENSION org_stats;
         ALTER ROLE postgres SET citus.enable_unsafe_triggers = on;
         SET citus.enable_unsafe_triggers = on;",
    )
    .unwrap();

    // The sequence: a tracked table distributed into a group that has a tracked table.
    db.batch_execute(
        "CREATE TABLE anchor (id bigserial, workos_org_id text NOT NULL, status text, amount numeric,
                              PRIMARY KEY (workos_org_id, id));
         SELECT create_distributed_table('anchor', 'workos_org_id');
         INSERT INTO anchor (workos_org_id, status) SELECT 'org' || (i % 7), 'Open' FROM generate_series(1, 70) i;",
    )
    .unwrap();
    db.batch_execute("SELECT org_stats.track('anchor')")
        .unwrap();
    tracked_table(&mut db, "inv");
    db.batch_execute(
        "SELECT create_distributed_table('inv', 'workos_org_id', colocate_with => 'anchor')",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "inv",
        "create_distributed_table() into a group with a tracked table",
    );
    assert_eq!(
        local_counters(&mut db, "inv"),
        0,
        "inv's counts moved next to its shards"
    );
    write(&cluster, &mut db, "inv", Writes::AnyNode);
    assert_exact(&mut db, "inv", "writes to it");

    // Into a group of its own: writes work at once, and are counted.
    tracked_table(&mut db, "lone");
    db.batch_execute(
        "SELECT create_distributed_table('lone', 'workos_org_id', colocate_with => 'none', shard_count => 6)",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "lone",
        "create_distributed_table() into a new group",
    );
    write(&cluster, &mut db, "lone", Writes::AnyNode);
    assert_exact(&mut db, "lone", "writes to it");

    // Inside a transaction block, written and read before COMMIT: reads count live until then.
    tracked_table(&mut db, "blk");
    db.batch_execute(
        "BEGIN;
         SELECT create_distributed_table('blk', 'workos_org_id');
         INSERT INTO blk (workos_org_id, status, amount) SELECT 'org' || (i % 7), 'InBlock', i FROM generate_series(1, 14) i;",
    )
    .unwrap();
    assert!(
        live_reason(&mut db, "blk").is_some(),
        "blk's reads count live until the block commits"
    );
    assert_exact(
        &mut db,
        "blk",
        "create_distributed_table() and writes in an open block",
    );
    db.batch_execute("COMMIT").unwrap();
    assert_exact(&mut db, "blk", "the block's COMMIT");

    // Concurrently, with writers through the coordinator all along.
    tracked_table(&mut db, "conc");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (mut client, stop) = (cluster.node(PORTS[0]), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let org = format!("org{}", (w * 3 + i) % 7);
                    client
                        .batch_execute(&format!(
                            "INSERT INTO conc (workos_org_id, status, amount) VALUES ('{org}', 'Busy', {i});
                             UPDATE conc SET status = 'Done' WHERE workos_org_id = '{org}' AND status = 'Busy' AND id % 2 = 0;"
                        ))
                        .unwrap();
                    i += 1;
                }
                i
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    db.batch_execute("SELECT create_distributed_table_concurrently('conc', 'workos_org_id')")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written: i32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(written > 0, "the writers wrote while conc was distributed");
    assert_exact(
        &mut db,
        "conc",
        "create_distributed_table_concurrently() under 2 writers",
    );

    // Another shard count: out of its group, into a new one.
    db.batch_execute(
        "SELECT alter_distributed_table('inv', shard_count => 6, cascade_to_colocated => false)",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "inv",
        "alter_distributed_table() to another shard count",
    );
    write(&cluster, &mut db, "inv", Writes::AnyNode);
    assert_exact(&mut db, "inv", "writes to it");
    // With every table of its group, org_stats' counters among them.
    db.batch_execute(
        "SELECT alter_distributed_table('anchor', shard_count => 5, cascade_to_colocated => true)",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "anchor",
        "alter_distributed_table() of its whole group",
    );
    write(&cluster, &mut db, "anchor", Writes::AnyNode);
    assert_exact(&mut db, "anchor", "writes to it");

    // Into another group of the same shard count.
    db.batch_execute("SELECT update_distributed_table_colocation('lone', colocate_with => 'inv')")
        .unwrap();
    assert_exact(&mut db, "lone", "update_distributed_table_colocation()");
    write(&cluster, &mut db, "lone", Writes::AnyNode);
    assert_exact(&mut db, "lone", "writes to it");

    // Back to one node.
    db.batch_execute("SELECT undistribute_table('inv')")
        .unwrap();
    assert_exact(&mut db, "inv", "undistribute_table()");
    write(&cluster, &mut db, "inv", Writes::Coordinator);
    assert_exact(&mut db, "inv", "writes to it");
    assert!(
        local_counters(&mut db, "inv") > 0,
        "inv is counted in org_stats.counters again"
    );

    // Where org_stats cannot count: read live, writes never fail, and undistributing counts
    // again.
    tracked_table(&mut db, "refd");
    db.batch_execute("SELECT create_reference_table('refd')")
        .unwrap();
    assert!(
        live_reason(&mut db, "refd").is_some_and(|why| why.contains("reference table")),
        "health says why refd's reads count live"
    );
    assert_exact(&mut db, "refd", "create_reference_table()");
    write(&cluster, &mut db, "refd", Writes::AnyNode);
    assert_exact(&mut db, "refd", "writes to it");
    db.batch_execute("SELECT undistribute_table('refd')")
        .unwrap();
    assert_eq!(live_reason(&mut db, "refd"), None, "refd is counted again");
    assert_exact(&mut db, "refd", "undistribute_table() of it");

    tracked_table(&mut db, "other");
    db.batch_execute(
        "ALTER TABLE other DROP CONSTRAINT other_pkey;
         SELECT create_distributed_table('other', 'status');",
    )
    .unwrap();
    assert!(
        live_reason(&mut db, "other").is_some_and(|why| why.contains("by column status")),
        "health says why other's reads count live"
    );
    assert_exact(
        &mut db,
        "other",
        "create_distributed_table() by another column",
    );
    write(&cluster, &mut db, "other", Writes::AnyNodeByStatus);
    assert_exact(&mut db, "other", "writes to it");
    db.batch_execute("SELECT undistribute_table('other')")
        .unwrap();
    assert_exact(&mut db, "other", "undistribute_table() of it");

    // A Citus local table: its one shard is on the coordinator, counted there.
    tracked_table(&mut db, "loc");
    db.batch_execute("SELECT citus_add_local_table_to_metadata('loc')")
        .unwrap();
    assert_exact(&mut db, "loc", "citus_add_local_table_to_metadata()");
    write(&cluster, &mut db, "loc", Writes::Coordinator);
    db.batch_execute(
        "TRUNCATE loc; INSERT INTO loc (workos_org_id, status, amount) VALUES ('org1', 'Open', 1);",
    )
    .unwrap();
    assert_exact(&mut db, "loc", "writes to it and TRUNCATE");

    // The counters tables left are exactly those the trackings record.
    let recorded: Vec<String> = db
        .query(
            "SELECT DISTINCT counted_in FROM org_stats.tracked WHERE counted_in <> '' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let made: Vec<String> = db
        .query(
            "SELECT logicalrelid::regclass::text FROM pg_dist_partition
              WHERE logicalrelid::regclass::text ~ '^org_stats\\.counters_[0-9]+$' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        made, recorded,
        "no counters table is left that no tracking counts in"
    );
    db.batch_execute("DROP EXTENSION org_stats CASCADE")
        .unwrap();
    db.batch_execute("CALL citus_cleanup_orphaned_resources()")
        .unwrap();
    assert_eq!(
        cluster.counters_left(),
        Vec::<String>::new(),
        "DROP EXTENSION leaves no counters on any node"
    );
}
