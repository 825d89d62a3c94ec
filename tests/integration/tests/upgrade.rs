//! Upgrades: install the oldest SQL script committed in sql/, track and write, then ALTER
//! EXTENSION UPDATE to each later version in turn, writing and finding no drift after each, and
//! using what each version added while the current library serves it; the upgraded database's
//! objects (functions, tables, indexes, constraints, views,
//! rights, dump configuration) are exactly those of a fresh install of the current version.
//! (pg_test.sh separately fails when the generated install script of the current version
//! differs from the committed one.)

use org_stats_integration_tests::{
    drift, drop_database, empty_database, fresh_database, groups_mismatches, totals_mismatches,
    Grouped,
};
use postgres::Client;

fn committed_versions() -> Vec<String> {
    let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql");
    let mut versions: Vec<String> = std::fs::read_dir(sql)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let version = name
                .strip_prefix("org_stats--")?
                .strip_suffix(".sql")?
                .to_string();
            (!version.contains("--")).then_some(version)
        })
        .collect();
    versions.sort_by_key(|v| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap())
            .collect::<Vec<_>>()
    });
    versions
}

#[test]
fn oldest_committed_version_upgrades_step_by_step_to_current_without_drift() {
    let versions = committed_versions();
    let oldest = versions
        .first()
        .expect("sql/ holds the install script of every released version");
    let mut db = empty_database("upgrade_test");
    db.batch_execute(&format!("CREATE EXTENSION org_stats VERSION '{oldest}'"))
        .unwrap();
    db.batch_execute(
        "CREATE TABLE loads (id serial PRIMARY KEY, workos_org_id text, status text);
         INSERT INTO loads (workos_org_id, status) SELECT 'org' || (i % 3), 'Open' FROM generate_series(1, 60) i;
         SELECT org_stats.track('loads');
         UPDATE loads SET status = 'Closed' WHERE id % 4 = 0;",
    )
    .unwrap();
    // Each update in turn: the current library serves every intermediate version's schema.
    for version in &versions[1..] {
        db.batch_execute(&format!("ALTER EXTENSION org_stats UPDATE TO '{version}'"))
            .unwrap();
        db.batch_execute(&format!(
            "INSERT INTO loads (workos_org_id, status) VALUES ('org1', 'Open'), ('org_{}', 'Open');
             DELETE FROM loads WHERE id = (SELECT min(id) FROM loads);",
            version.replace('.', "_")
        ))
        .unwrap();
        assert_eq!(drift(&mut db), 0, "no drift after the update to {version}");
        uses_what_it_added(&mut db, version);
    }
    let installed: String = db
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'org_stats'",
            &[],
        )
        .unwrap()
        .get(0);
    let default: String = db
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'org_stats'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        installed, default,
        "updated from {oldest} to the current version"
    );
    assert_eq!(
        drift(&mut db),
        0,
        "no drift in the upgraded database's trackings"
    );
    let upgraded = objects(&mut db);
    drop(db);
    drop_database("upgrade_test");

    let mut fresh = fresh_database("upgrade_fresh");
    let installed = objects(&mut fresh);
    drop(fresh);
    drop_database("upgrade_fresh");
    let missing: Vec<&String> = installed.iter().filter(|o| !upgraded.contains(o)).collect();
    let extra: Vec<&String> = upgraded.iter().filter(|o| !installed.contains(o)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the upgrade from {oldest} does not make what a fresh install makes:\n\
         only in a fresh install:\n{missing:#?}\nonly after the upgrade:\n{extra:#?}"
    );
}

/// Uses what `version` added, on a database just updated to it, beside the trackings made before.
fn uses_what_it_added(db: &mut Client, version: &str) {
    match version {
        "0.2.0" => {
            // A named tracking with a filter and a sum.
            db.batch_execute(
                "ALTER TABLE loads ADD COLUMN amount numeric, ADD COLUMN deleted_at timestamptz;
                 UPDATE loads SET amount = id * 1.5, deleted_at = CASE WHEN id % 5 = 0 THEN now() END;
                 SELECT org_stats.track('loads', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount'],
                                        name => 'live_loads');
                 UPDATE loads SET deleted_at = NULL WHERE id % 10 = 0;
                 INSERT INTO loads (workos_org_id, status, amount) VALUES ('org2', 'Open', 7.25);",
            )
            .unwrap();
            let bad = totals_mismatches(
                db,
                "live_loads",
                "loads",
                ("workos_org_id", "status"),
                "deleted_at IS NULL",
                &["amount"],
                &[],
            );
            assert!(bad.is_empty(), "database updated to 0.2.0: {bad:?}");
        }
        "0.3.0" => {
            // Notifications of the oldest tracking: a change shows in changed_since() once sent.
            let token: String = db
                .query_one("SELECT token FROM org_stats.changed_since(NULL)", &[])
                .unwrap()
                .get(0);
            db.batch_execute("SELECT org_stats.set_notify('loads')")
                .unwrap();
            db.batch_execute(
                "INSERT INTO loads (workos_org_id, status) VALUES ('org_new', 'Open')",
            )
            .unwrap();
            let sent = std::time::Instant::now();
            while db
                .query(
                    "SELECT FROM org_stats.changed_since($1) WHERE org_id = 'org_new'",
                    &[&token],
                )
                .unwrap()
                .is_empty()
            {
                assert!(
                    sent.elapsed().as_secs() < 10,
                    "the change was sent within 10 s"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        "0.4.0" => {
            // distribute() exists and, on a node without Citus, says so.
            let err = db
                .batch_execute("SELECT org_stats.distribute('loads')")
                .unwrap_err();
            let err = err.as_db_error().expect("an error from the server");
            assert_eq!(err.code().code(), "55000", "{err:?}");
            assert!(err.message().contains("Citus"), "{err:?}");
        }
        "0.5.0" => {
            // Every tracking, made before or after, records its counts as kept on this node, and
            // health says its reads read them.
            db.batch_execute("SELECT org_stats.track('loads', name => 'loads_again')")
                .unwrap();
            let placed: Vec<(Option<String>, Option<String>)> = db
                .query(
                    "SELECT t.counted_in, h.live_reason FROM org_stats.tracked t
                       JOIN org_stats.health h ON h.table_name = t.relid AND h.tracking IS NOT DISTINCT FROM t.name",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            assert!(placed.len() >= 3, "{placed:?}");
            assert!(
                placed.iter().all(|p| *p == (None, None)),
                "kept in org_stats.counters and read from there: {placed:?}"
            );
            // Grouping by several columns and a time bucket.
            db.batch_execute(
                "ALTER TABLE loads ADD COLUMN lane text;
                 UPDATE loads SET lane = (ARRAY['north', 'south', NULL])[1 + id % 3];
                 SELECT org_stats.track('loads', name => 'lanes', group_by => ARRAY['status', 'lane'],
                                        time_column => 'deleted_at', bucket => '1 day', sum_columns => ARRAY['amount']);
                 UPDATE loads SET lane = 'east', deleted_at = now() - interval '3 days' WHERE id % 7 = 0;",
            )
            .unwrap();
            let lanes = Grouped {
                tracking: "lanes",
                table: "loads",
                org_column: "workos_org_id",
                key: "ARRAY[status, lane]",
                time_column: "deleted_at",
                filter: "true",
                sums: &["amount"],
            };
            let orgs = ["org1".to_string()];
            for bounds in [
                (None, None),
                (Some("now() - interval '50 hours'"), Some("now()")),
            ] {
                let bad = groups_mismatches(db, &lanes, &orgs, bounds, None);
                assert!(bad.is_empty(), "groups() after the update: {bad:?}");
            }
        }
        _ => {}
    }
}

/// Every object of the extension in schema org_stats, described with what defines it.
fn objects(db: &mut Client) -> Vec<String> {
    db.query(
        "SELECT concat_ws(' ', 'function', p.oid::regprocedure, pg_get_function_arguments(p.oid),
                          pg_get_function_result(p.oid), p.provolatile, p.proisstrict, p.proparallel, p.prosecdef,
                          p.proconfig, p.prosrc, coalesce(p.proacl::text, 'default rights'))
           FROM pg_proc p WHERE p.pronamespace = 'org_stats'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'column', c.relname || '.' || a.attname, a.attnum, format_type(a.atttypid, a.atttypmod),
                          a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE c.relnamespace = 'org_stats'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
         UNION ALL
         SELECT concat_ws(' ', 'relation', c.relname, c.relkind, c.reloptions, coalesce(c.relacl::text, 'default rights'),
                          CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END)
           FROM pg_class c WHERE c.relnamespace = 'org_stats'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'index', pg_get_indexdef(i.indexrelid))
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'org_stats'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'constraint', conname, pg_get_constraintdef(oid))
           FROM pg_constraint WHERE connamespace = 'org_stats'::regnamespace
         UNION ALL
         SELECT concat_ws(' ', 'event trigger', evtname, evtevent, evtfoid::regproc, evttags)
           FROM pg_event_trigger
         UNION ALL
         SELECT concat_ws(' ', 'dumped', c::regclass, w)
           FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS u(c, w) WHERE e.extname = 'org_stats'
         ORDER BY 1",
        &[],
    )
    .expect("catalog query runs")
    .iter()
    .map(|r| r.get(0))
    .collect()
}
