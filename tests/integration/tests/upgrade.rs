//! Upgrades: install the oldest SQL script committed in sql/, track and write, ALTER EXTENSION
//! UPDATE to the current version, write more, and find no drift. (pg_test.sh separately fails when
//! the generated install script of the current version differs from the committed one.)

use org_stats_integration_tests::{drift, drop_database, empty_database};

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
fn oldest_committed_version_upgrades_to_current_without_drift() {
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
    db.batch_execute("ALTER EXTENSION org_stats UPDATE")
        .unwrap();
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
    db.batch_execute("INSERT INTO loads (workos_org_id, status) VALUES ('org1', 'Open'); DELETE FROM loads WHERE id = 1;").unwrap();
    assert_eq!(
        drift(&mut db),
        0,
        "no drift across the upgrade from {oldest}"
    );
    drop(db);
    drop_database("upgrade_test");
}
