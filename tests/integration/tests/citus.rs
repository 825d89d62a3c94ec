//! Citus: a coordinator and two workers on private ports, `loads` distributed by its org column
//! and tracked three times (by default; as `valued`: a filter and a summed column; as `lanes`:
//! by two columns and a day bucket, with a summed column), every count
//! and sum compared with a live GROUP BY on the distributed table after each step: backfill,
//! single- and multi-shard writes, COPY, INSERT ... SELECT, writes through a worker, a
//! transaction with a rolled-back savepoint, concurrent writers through the coordinator, a
//! shard move, a shard split and a rebalance, drift repaired by recalculate(), CALL backfill(),
//! TRUNCATE, a table tracked before org_stats.distribute() distributes it, a column rename, refusals (another distribution column, a reference table, a read
//! Citus sends to a worker), DROP TABLE, untrack() and DROP EXTENSION leaving nothing on any node.
//!
//! Citus is not in Debian: the test runs when citus.so is in the server's library directory and
//! says that it skipped otherwise.

use org_stats_integration_tests::citus::{
    assert_exact, error_code, error_code_in_block, mismatches, Cluster, ORGS, PORTS,
};

/// The second tracking of `loads`: the rows its filter keeps, and the sum of `amount`.
const VALUED: &str = "valued";
const VALUED_FILTER: &str = "status <> 'Cancelled'";

#[test]
fn distributed_counts_stay_exact_on_a_three_node_cluster() {
    let Some(cluster) = Cluster::start(4) else {
        return;
    };
    let mut db = cluster.node(PORTS[0]);
    db.batch_execute(
        "CREATE EXTENSION org_stats;
         CREATE TABLE loads (id bigserial, workos_org_id text NOT NULL, status text, amount numeric,
                             carrier text, at timestamptz, PRIMARY KEY (workos_org_id, id));
         SELECT create_distributed_table('loads', 'workos_org_id');
         INSERT INTO loads (workos_org_id, status, amount, carrier, at)
         SELECT 'org' || (i % 7), CASE WHEN i % 3 = 0 THEN 'Open' ELSE 'Delivered' END,
                CASE WHEN i % 10 <> 0 THEN i * 1.25 END, (ARRAY['UPS', 'FedEx', NULL])[1 + i % 3],
                '2026-11-01 00:00+00'::timestamptz + i * interval '37 minutes'
           FROM generate_series(1, 300) i;",
    )
    .unwrap();
    // track() of a distributed table runs as a transaction of its own (it refuses a block).
    db.batch_execute("SELECT org_stats.track('loads')").unwrap();
    db.execute(
        "SELECT org_stats.track('loads', name => $1, filter => $2, sum_columns => ARRAY['amount'])",
        &[&VALUED, &VALUED_FILTER],
    )
    .unwrap();
    db.batch_execute(
        "SELECT org_stats.track('loads', name => 'lanes', group_by => ARRAY['status', 'carrier'],
                                time_column => 'at', bucket => '1 day', sum_columns => ARRAY['amount'])",
    )
    .unwrap();
    assert_exact(&mut db, "loads", "track() with backfill");

    db.batch_execute(
        "INSERT INTO loads (workos_org_id, status) VALUES ('org1', 'Open');
         UPDATE loads SET status = 'Delivered' WHERE workos_org_id = 'org2' AND id % 2 = 0;
         UPDATE loads SET status = 'Cancelled' WHERE id % 11 = 0;
         DELETE FROM loads WHERE id % 13 = 0;
         UPDATE loads SET amount = amount * 2 - 0.5 WHERE workos_org_id = 'org3';
         UPDATE loads SET at = '2026-11-05 12:30+00' WHERE id % 5 = 0;
         UPDATE loads SET carrier = 'DHL', at = NULL WHERE id % 17 = 0;
         INSERT INTO loads (workos_org_id, status, amount) SELECT workos_org_id, 'Copied', amount FROM loads WHERE status = 'Open';",
    )
    .unwrap();
    let mut copy = db
        .copy_in("COPY loads (workos_org_id, status, amount) FROM STDIN")
        .unwrap();
    use std::io::Write;
    for i in 0..70 {
        writeln!(copy, "org{}\tCopied\t{i}.5", i % 7).unwrap();
    }
    copy.finish().unwrap();
    assert_exact(
        &mut db,
        "loads",
        "single- and multi-shard writes, INSERT ... SELECT and COPY",
    );

    cluster
        .node(PORTS[1])
        .batch_execute(
            "INSERT INTO loads (workos_org_id, status) VALUES ('org3', 'FromWorker'), ('org4', 'FromWorker');
             UPDATE loads SET status = 'Open' WHERE workos_org_id = 'org5' AND status = 'Copied';",
        )
        .unwrap();
    assert_exact(&mut db, "loads", "writes through a worker");

    db.batch_execute(
        "BEGIN;
         INSERT INTO loads (workos_org_id, status) SELECT 'org' || (i % 7), 'Kept' FROM generate_series(1, 20) i;
         SAVEPOINT s;
         DELETE FROM loads WHERE status = 'Delivered';
         ROLLBACK TO SAVEPOINT s;
         UPDATE loads SET status = 'Kept' WHERE workos_org_id = 'org6' AND status = 'Open';
         COMMIT;",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "loads",
        "a transaction with a rolled-back savepoint",
    );

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut client = cluster.node(PORTS[0]);
            std::thread::spawn(move || {
                for i in 0..150 {
                    let org = format!("org{}", (w * 3 + i) % 7);
                    let other = format!("org{}", (w + i * 5) % 7);
                    client
                        .batch_execute(&format!(
                            "BEGIN;
                             INSERT INTO loads (workos_org_id, status, amount) VALUES ('{org}', 'Busy', {i}), ('{other}', 'Open', 1);
                             UPDATE loads SET status = 'Done' WHERE id = (SELECT max(id) FROM loads WHERE workos_org_id = '{other}');
                             COMMIT;"
                        ))
                        .unwrap();
                    if i % 10 == 0 {
                        client
                            .batch_execute(&format!(
                                "DELETE FROM loads WHERE workos_org_id = '{org}' AND status = 'Busy'"
                            ))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert_exact(
        &mut db,
        "loads",
        "4 concurrent writers through the coordinator",
    );

    let (shard, from): (i64, i32) = {
        let row = db
            .query_one(
                "SELECT shardid, nodeport FROM citus_shards
                  WHERE shardid = get_shard_id_for_distribution_column('loads', 'org1')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let to = if from == i32::from(PORTS[1]) {
        PORTS[2]
    } else {
        PORTS[1]
    };
    let host = cluster.dir.display().to_string();
    db.execute(
        "SELECT citus_move_shard_placement($1, $2, $3, $2, $4, shard_transfer_mode => 'block_writes')",
        &[&shard, &host, &from, &i32::from(to)],
    )
    .unwrap();
    db.batch_execute(
        "INSERT INTO loads (workos_org_id, status) SELECT 'org' || (i % 7), 'Moved' FROM generate_series(1, 70) i;",
    )
    .unwrap();
    assert_exact(&mut db, "loads", "a shard move and writes after it");

    // A split of that shard in two, one half on each worker: Citus splits its counters shard at
    // the same point, so each org's counts go with its rows.
    let (middle, nodes): (String, Vec<i32>) = {
        let row = db
            .query_one(
                "SELECT ((shardminvalue::bigint + shardmaxvalue::bigint) / 2)::text,
                        (SELECT array_agg(nodeid ORDER BY nodeport) FROM pg_dist_node WHERE groupid <> 0)
                   FROM pg_dist_shard WHERE shardid = $1",
                &[&shard],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    db.execute(
        "SELECT citus_split_shard_by_split_points($1, ARRAY[$2], $3, shard_transfer_mode => 'block_writes')",
        &[&shard, &middle, &nodes],
    )
    .unwrap();
    db.batch_execute(
        "INSERT INTO loads (workos_org_id, status, amount) SELECT 'org' || (i % 7), 'Split', i FROM generate_series(1, 70) i;",
    )
    .unwrap();
    assert_exact(&mut db, "loads", "a shard split and writes after it");

    // All of the table's shards onto one worker, then the rebalancer spreads them again.
    for row in db
        .query(
            "SELECT shardid, nodeport FROM citus_shards WHERE table_name = 'loads'::regclass AND nodeport <> $1",
            &[&i32::from(PORTS[1])],
        )
        .unwrap()
    {
        let (shard, from): (i64, i32) = (row.get(0), row.get(1));
        db.execute(
            "SELECT citus_move_shard_placement($1, $2, $3, $2, $4, shard_transfer_mode => 'block_writes')",
            &[&shard, &host, &from, &i32::from(PORTS[1])],
        )
        .unwrap();
    }
    db.batch_execute("SELECT rebalance_table_shards(shard_transfer_mode => 'block_writes')")
        .unwrap();
    let spread: i64 = db
        .query_one(
            "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'loads'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(spread, 2, "the rebalancer moved shards to both workers");
    db.batch_execute(
        "UPDATE loads SET status = 'Rebalanced' WHERE status = 'Split' AND workos_org_id IN ('org1', 'org4');
         INSERT INTO loads (workos_org_id, status, amount) SELECT 'org' || (i % 7), 'Rebalanced', i FROM generate_series(1, 35) i;",
    )
    .unwrap();
    assert_exact(&mut db, "loads", "a rebalance and writes after it");

    // Drift: rows written on a worker with triggers off (as a replica would apply them), in the
    // shard of org1, which holds rows.
    let (shard_name, port): (String, i32) = {
        let row = db
            .query_one(
                "SELECT 'loads_' || shardid, nodeport FROM citus_shards
                  WHERE shardid = get_shard_id_for_distribution_column('loads', 'org1')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    cluster
        .node(u16::try_from(port).unwrap())
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO {shard_name} (id, workos_org_id, status)
             SELECT id + 1000000, workos_org_id, 'Unseen' FROM {shard_name} LIMIT 5;
             RESET session_replication_role;"
        ))
        .unwrap();
    assert!(
        !mismatches(&mut db, "loads").is_empty(),
        "rows written with triggers off show as drift"
    );
    let repaired = db
        .query(
            "SELECT * FROM org_stats.recalculate('loads'::regclass)",
            &[],
        )
        .unwrap()
        .len();
    assert!(
        repaired > 0,
        "recalculate() repaired the drift of both trackings of loads"
    );
    assert_exact(&mut db, "loads", "recalculate()");

    db.batch_execute(
        "CREATE TABLE invoices (id bigserial, workos_org_id text NOT NULL, status text, PRIMARY KEY (workos_org_id, id));
         SELECT create_distributed_table('invoices', 'workos_org_id', colocate_with => 'loads');
         INSERT INTO invoices (workos_org_id, status) SELECT 'org' || (i % 7), 'DRAFT' FROM generate_series(1, 90) i;",
    )
    .unwrap();
    db.batch_execute("SELECT org_stats.track('invoices', backfill => false)")
        .unwrap();
    db.batch_execute("INSERT INTO invoices (workos_org_id, status) VALUES ('org2', 'VOID')")
        .unwrap();
    db.batch_execute("CALL org_stats.backfill('invoices')")
        .unwrap();
    assert_exact(&mut db, "invoices", "CALL org_stats.backfill()");

    db.batch_execute(
        "TRUNCATE invoices; INSERT INTO invoices (workos_org_id, status) VALUES ('org1', 'DRAFT');",
    )
    .unwrap();
    assert_exact(&mut db, "invoices", "TRUNCATE");

    // Tracked before it is distributed: Citus' create_distributed_table() refuses a table with
    // triggers, org_stats.distribute() distributes it and counts it on the shards.
    db.batch_execute(
        "CREATE TABLE trips (id bigserial, workos_org_id text NOT NULL, status text, PRIMARY KEY (workos_org_id, id));
         INSERT INTO trips (workos_org_id, status) SELECT 'org' || (i % 7), 'Planned' FROM generate_series(1, 80) i;",
    )
    .unwrap();
    db.batch_execute("SELECT org_stats.track('trips')").unwrap();
    db.batch_execute("UPDATE trips SET status = 'Driving' WHERE id % 4 = 0")
        .unwrap();
    assert_eq!(
        error_code_in_block(&mut db, "SELECT org_stats.distribute('trips')"),
        "25001",
        "distribute() inside a transaction block is refused"
    );
    db.batch_execute("SELECT org_stats.distribute('trips', shard_count => 2)")
        .unwrap();
    assert_exact(&mut db, "trips", "distribute() of a tracked table");
    let left_local: i64 = db
        .query_one(
            "SELECT count(*) FROM org_stats.counters c JOIN org_stats.tracked t USING (table_id)
              WHERE t.relid = 'trips'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left_local, 0, "the counts of trips moved to its shards");
    // Citus left the rows' local copy behind; emptying it leaves the counts of the shards alone.
    db.batch_execute("SELECT truncate_local_data_after_distributing_table('trips')")
        .unwrap();
    db.batch_execute(
        "INSERT INTO trips (workos_org_id, status) SELECT 'org' || (i % 7), 'Planned' FROM generate_series(1, 20) i;
         DELETE FROM trips WHERE status = 'Driving' AND workos_org_id = 'org2';",
    )
    .unwrap();
    assert_exact(
        &mut db,
        "trips",
        "truncate_local_data_after_distributing_table() and writes",
    );
    assert_eq!(
        error_code(db.execute("SELECT org_stats.distribute('trips')", &[])),
        "55000",
        "distribute() of a Citus table is refused"
    );
    db.batch_execute("CREATE TABLE untracked (workos_org_id text, status text)")
        .unwrap();
    assert_eq!(
        error_code(db.execute("SELECT org_stats.distribute('untracked')", &[])),
        "42704",
        "distribute() of a table org_stats does not track is refused"
    );
    db.batch_execute("DROP TABLE trips; DROP TABLE untracked;")
        .unwrap();

    // One statement per call: Citus propagates DDL from the query string, which must hold one.
    for statement in [
        "ALTER TABLE loads RENAME COLUMN status TO state",
        "INSERT INTO loads (workos_org_id, state) VALUES ('org0', 'Renamed')",
        "ALTER TABLE loads RENAME COLUMN state TO status",
        "UPDATE loads SET status = 'Open' WHERE status = 'Renamed'",
    ] {
        db.batch_execute(statement).unwrap();
    }
    for statement in [
        "ALTER TABLE loads RENAME TO shipments",
        "INSERT INTO shipments (workos_org_id, status) VALUES ('org1', 'Renamed')",
        "ALTER TABLE shipments RENAME TO loads",
    ] {
        db.batch_execute(statement).unwrap();
    }
    assert_exact(&mut db, "loads", "renaming the status column and the table");
    let (orgs, rows): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT orgs_counted, rows_counted FROM org_stats.health WHERE table_name = 'loads'::regclass AND tracking IS NULL",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (actual_orgs, actual_rows): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(DISTINCT workos_org_id), count(*) FROM loads",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(
        (orgs, rows),
        (actual_orgs, actual_rows),
        "org_stats.health counts the distributed tracking"
    );

    db.batch_execute(
        "CREATE TABLE by_status (id bigserial, workos_org_id text NOT NULL, status text);
         SELECT create_distributed_table('by_status', 'status');
         CREATE TABLE statuses (workos_org_id text, status text);
         SELECT create_reference_table('statuses');",
    )
    .unwrap();
    assert_eq!(
        error_code(db.execute("SELECT org_stats.track('by_status')", &[])),
        "0A000",
        "a table distributed by another column is refused"
    );
    assert_eq!(
        error_code(db.execute("SELECT org_stats.track('statuses')", &[])),
        "0A000",
        "a reference table is refused"
    );
    assert_eq!(
        error_code(db.execute("SELECT org_stats.set_notify('loads')", &[])),
        "0A000",
        "notifications of a distributed tracking are refused"
    );
    assert_eq!(
        error_code(db.execute(
            "SELECT org_stats.count('loads'::regclass, 'org3'), (SELECT count(*) FROM loads WHERE workos_org_id = 'org3')",
            &[]
        )),
        "0A000",
        "a read Citus sends to a worker inside a query on the table is refused"
    );

    for (what, statement) in [
        ("track()", "SELECT org_stats.track('by_status', 'status')"),
        ("untrack()", "SELECT org_stats.untrack('loads')"),
        (
            "renaming a tracked column",
            "ALTER TABLE loads RENAME COLUMN status TO state",
        ),
    ] {
        assert_eq!(
            error_code_in_block(&mut db, statement),
            "25001",
            "{what} of a distributed table inside a transaction block is refused"
        );
    }
    assert!(
        db.execute("SELECT org_stats.on_drop_extension()", &[])
            .is_err(),
        "the DROP EXTENSION event trigger's function refuses a direct call"
    );
    db.batch_execute(
        "CREATE TABLE parted (id bigserial, workos_org_id text NOT NULL, status text, PRIMARY KEY (workos_org_id, status, id))
             PARTITION BY LIST (status);
         CREATE TABLE parted_open PARTITION OF parted FOR VALUES IN ('Open');
         SELECT create_distributed_table('parted', 'workos_org_id');",
    )
    .unwrap();
    assert_eq!(
        error_code(db.execute("SELECT org_stats.track('parted')", &[])),
        "0A000",
        "a partitioned distributed table is refused"
    );

    // A role that may only read the table reads the counts, as on one node.
    db.batch_execute(
        "CREATE ROLE dashboard LOGIN; GRANT SELECT ON loads TO dashboard; GRANT USAGE ON SCHEMA org_stats TO dashboard;
         SET ROLE dashboard;",
    )
    .unwrap();
    for org in ORGS {
        let counted: i64 = db
            .query_one("SELECT org_stats.count('loads', $1)", &[&org])
            .unwrap()
            .get(0);
        let actual: i64 = db
            .query_one(
                "SELECT count(*) FROM loads WHERE workos_org_id = $1",
                &[&org],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            counted, actual,
            "{org} read as a role with SELECT on the table only"
        );
    }
    let listed: i64 = db
        .query_one(
            "SELECT sum(count)::bigint FROM org_stats.organization_stats WHERE tracking IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    let rows: i64 = db
        .query_one("SELECT count(*) FROM loads", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        listed, rows,
        "organization_stats shows that role the table it may read"
    );
    db.batch_execute("RESET ROLE").unwrap();
    println!("citus: exact for a role with SELECT on the table only");

    // A name so long that Citus shortens its shards' names with a hash, a "C" collation, and a
    // colocation group of its own (3 shards), whose counters go with the table.
    let long = "shipments_of_the_organization_with_a_rather_long_table_name";
    for statement in [
        format!(
            "CREATE TABLE {long} (id bigserial, workos_org_id text COLLATE \"C\" NOT NULL, status text,
                                  PRIMARY KEY (workos_org_id, id))"
        ),
        format!("SELECT create_distributed_table('{long}', 'workos_org_id', shard_count => 3)"),
        format!("INSERT INTO {long} (workos_org_id, status) SELECT 'org' || (i % 7), 'Open' FROM generate_series(1, 40) i"),
        format!("SELECT org_stats.track('{long}')"),
        format!("INSERT INTO {long} (workos_org_id, status) SELECT 'org' || (i % 7), 'Late' FROM generate_series(1, 30) i"),
    ] {
        db.batch_execute(&statement).unwrap();
    }
    assert_exact(
        &mut db,
        long,
        "writes to a table whose shard names Citus shortens",
    );
    let long_counters: String = db
        .query_one(
            &format!("SELECT 'counters_' || colocationid FROM pg_dist_partition WHERE logicalrelid = '{long}'::regclass"),
            &[],
        )
        .unwrap()
        .get(0);
    db.batch_execute(&format!("DROP TABLE {long}")).unwrap();
    db.batch_execute("CALL citus_cleanup_orphaned_resources()")
        .unwrap();
    let left_of_group: Vec<String> = cluster
        .counters_left()
        .into_iter()
        .filter(|r| r.contains(&format!("{long_counters}_")) || r.ends_with(&long_counters))
        .collect();
    assert_eq!(
        left_of_group,
        Vec::<String>::new(),
        "DROP TABLE of a group's last tracked table drops its counters from every node"
    );

    let invoices_id: i32 = db
        .query_one(
            "SELECT table_id FROM org_stats.tracked WHERE relid = 'invoices'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    let counters: String = db
        .query_one(
            "SELECT 'org_stats.counters_' || colocationid FROM pg_dist_partition WHERE logicalrelid = 'loads'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    db.batch_execute("DROP TABLE invoices").unwrap();
    let left: i64 = db
        .query_one(
            &format!("SELECT count(*) FROM {counters} WHERE table_id = $1"),
            &[&invoices_id],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "DROP TABLE leaves no counters of the table");
    assert_exact(&mut db, "loads", "DROP TABLE of another tracked table");

    db.execute("SELECT org_stats.untrack($1::text)", &[&VALUED])
        .unwrap();
    db.batch_execute("SELECT org_stats.untrack('lanes'), org_stats.untrack('loads')")
        .unwrap();
    db.batch_execute("CALL citus_cleanup_orphaned_resources()")
        .unwrap();
    assert_eq!(
        cluster.counters_left(),
        Vec::<String>::new(),
        "untrack() of the group's last tracked table drops its counters from every node"
    );

    db.batch_execute("SELECT org_stats.track('loads')").unwrap();
    assert_exact(&mut db, "loads", "tracking again");
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
