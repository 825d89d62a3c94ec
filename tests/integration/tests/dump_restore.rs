//! pg_dump / pg_restore, plain and custom format, into a fresh database: tracking, counters,
//! last_recalculated and recalculation_log survive (they are extension configuration tables),
//! the triggers fire after the restore, and there is no drift; a named tracking with a filter and
//! sums keeps them, and its enum filter (whose type gets a new OID) still binds after the restore;
//! a tracking by status and day bucket, settled into month totals, reads the same.
//! A data-only restore of base tables with triggers disabled leaves drift that recalculate()
//! repairs.

use org_stats_integration_tests::{
    connect_to, drift, drop_database, empty_database, fresh_database, run_on,
};
use postgres::Client;

fn snapshot(db: &mut Client) -> Vec<String> {
    let queries = [
        "SELECT concat_ws(' ', table_name, org_column, status_column, backfilled_at IS NOT NULL, tracking, filter, sum_columns) \
           FROM org_stats.tracked_tables ORDER BY 1",
        "SELECT format('%s %s %s %s %s %s', table_name, org_id, status, count, last_recalculated, tracking) \
           FROM org_stats.organization_stats ORDER BY 1",
        "SELECT format('%s %s %s %s', o, t.status, t.count, t.sums) \
           FROM unnest(ARRAY['org0', 'org1', 'org2', 'org3']) o, org_stats.totals('live_loads', o) t ORDER BY 1",
        "SELECT format('%s %s %s %s', tables, orgs_checked, groups_repaired, triggered_by) FROM org_stats.recalculation_log ORDER BY id",
        "SELECT format('%s %s %s %s', o, g.key, g.count, g.sums) \
           FROM unnest(ARRAY['org0', 'org1', 'org2', 'org3']) o, \
                org_stats.groups('by_day', o, '2026-11-02 10:00+00', '2026-12-20 13:00+00') g ORDER BY 1",
        "SELECT format('%s %s %s %s', o, s.bucket, s.key, s.count) \
           FROM unnest(ARRAY['org0', 'org1', 'org2', 'org3']) o, org_stats.series('by_day', o, NULL, NULL) s ORDER BY 1",
    ];
    queries
        .iter()
        .flat_map(|q| {
            db.query(*q, &[])
                .unwrap()
                .into_iter()
                .map(|r| r.get::<_, String>(0))
        })
        .collect()
}

#[test]
fn dump_and_restore_keep_tracking_counts_and_history() {
    let mut src = fresh_database("dump_src");
    src.batch_execute(
        "CREATE TYPE state AS ENUM ('Open', 'Closed');
         CREATE TABLE loads (id serial PRIMARY KEY, workos_org_id text, status state, weight numeric, at timestamptz);
         CREATE TABLE invoices (id serial PRIMARY KEY, workos_org_id uuid, status text);
         INSERT INTO loads (workos_org_id, status, weight, at)
         SELECT 'org' || (i % 4), (ARRAY['Open', 'Closed']::state[])[1 + i % 2], i * 0.5,
                '2026-11-01 00:00+00'::timestamptz + i * interval '7 hours' FROM generate_series(1, 200) i;
         INSERT INTO invoices (workos_org_id, status) SELECT ('00000000-0000-0000-0000-00000000000' || (i % 3))::uuid, 'DRAFT' FROM generate_series(1, 90) i;
         SELECT org_stats.track('loads');
         SELECT org_stats.track('loads', filter => $$status <> 'Closed'$$, sum_columns => ARRAY['weight'],
                                name => 'live_loads');
         SELECT org_stats.track('loads', name => 'by_day', time_column => 'at', bucket => '1 day');
         SELECT org_stats.track('invoices', backfill => false);",
    )
    .unwrap();
    // CALL commits, so it runs as a statement of its own, not in a multi-statement string.
    src.batch_execute("CALL org_stats.backfill()").unwrap();
    src.batch_execute("SELECT count(*) FROM org_stats.recalculate(); UPDATE loads SET status = 'Closed' WHERE id < 20;")
        .unwrap();
    let before = snapshot(&mut src);
    assert!(before.len() > 5, "something to compare: {before:?}");
    let dir = std::env::temp_dir().join(format!("org_stats_dump_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let (plain, custom, data) = (file("plain.sql"), file("custom.dump"), file("data.sql"));
    run_on("pg_dump", "dump_src", &["-f", &plain]);
    run_on("pg_dump", "dump_src", &["-Fc", "-f", &custom]);

    for (target, how) in [("dump_plain", "plain"), ("dump_custom", "custom")] {
        drop(empty_database(target));
        if how == "plain" {
            run_on(
                "psql",
                target,
                &["-v", "ON_ERROR_STOP=1", "-q", "-f", &plain],
            );
        } else {
            run_on("pg_restore", target, &["--exit-on-error", &custom]);
        }
        let mut dst = connect_to(target);
        assert_eq!(
            snapshot(&mut dst),
            before,
            "{how} restore keeps registry, counts and history"
        );
        assert_eq!(drift(&mut dst), 0, "{how} restore has no drift");
        dst.batch_execute(
            "INSERT INTO loads (workos_org_id, status, weight) VALUES ('org1', 'Open', 2.5), ('org9', 'Closed', 1);
             UPDATE loads SET status = 'Open' WHERE id = 20;
             DELETE FROM invoices WHERE id < 10;",
        )
        .unwrap();
        let org9: i64 = dst
            .query_one("SELECT org_stats.count('loads', 'org9')", &[])
            .unwrap()
            .get(0);
        assert_eq!(org9, 1, "{how}: the triggers fire after the restore");
        assert_eq!(
            drift(&mut dst),
            0,
            "{how}: writes after the restore are counted exactly"
        );
    }

    // Base-table data alone, restored with triggers disabled into a database that tracks the
    // table: the rows arrive uncounted; recalculate() is the fix.
    run_on(
        "pg_dump",
        "dump_src",
        &[
            "--data-only",
            "--disable-triggers",
            "-t",
            "loads",
            "-f",
            &data,
        ],
    );
    let mut dst = connect_to("dump_plain");
    dst.batch_execute("TRUNCATE loads").unwrap();
    run_on(
        "psql",
        "dump_plain",
        &["-v", "ON_ERROR_STOP=1", "-q", "-f", &data],
    );
    assert!(
        drift(&mut dst) > 0,
        "a restore with triggers disabled is not counted"
    );
    dst.batch_execute("SELECT count(*) FROM org_stats.recalculate()")
        .unwrap();
    assert_eq!(drift(&mut dst), 0, "recalculate() repairs it");

    std::fs::remove_dir_all(&dir).unwrap();
    drop((src, dst));
    for db in ["dump_src", "dump_plain", "dump_custom"] {
        drop_database(db);
    }
}
