//! Randomized model-based test of the org_stats invariant: thousands of random writes through every
//! write path (single and multi-row INSERT, INSERT ... SELECT, COPY, status and org UPDATEs, other
//! UPDATEs, DELETE, ON CONFLICT, MERGE, writable CTEs, TRUNCATE, rows moving between partitions),
//! mixed with transactions at every isolation level, savepoints rolled back or released, and
//! rollbacks. After every step, and inside open transactions, every org's count_by_status() and
//! count() must equal a live GROUP BY in the same statement. One table is tracked twice: with a
//! filter rows move into and out of (soft deletes) and exact sums (NULLs, values past bigint,
//! numeric's infinities), and by another status column with another filter; its totals() must
//! equal the GROUP BY with the same WHERE, count and sum() alike. A third tracking of it groups by
//! two columns and a 6-hour bucket of a time that writes move across buckets, to NULL and to
//! infinity, now and then settled by recalculate() into day and month totals: its groups() and
//! series() between bounds that change at every check (cutting buckets, on their edges, one or
//! none) must equal the GROUP BY with that WHERE.
//!
//! Needs ORG_STATS_DSN (pg_test.sh sets it). ORG_STATS_SEED replays a run; ORG_STATS_OPS sets
//! the number of operations (default 5000). With ORG_STATS_EDITION=portable it checks the portable
//! edition (installed beforehand), leaving out what only the native one does: the tracking by
//! several columns and a time bucket, and TRUNCATE at REPEATABLE READ and SERIALIZABLE (a DELETE
//! of every row stands for it there).

use org_stats_integration_tests::{
    connect, groups_mismatches, mismatches, portable, totals_mismatches, Grouped,
};
use postgres::Client;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::io::Write;

/// One tracked table of the model: its name, columns, and how to make org and status values.
struct Table {
    name: &'static str,
    org_column: &'static str,
    orgs: Vec<String>,
    statuses: Vec<&'static str>,
}

fn setup(client: &mut Client) -> Vec<Table> {
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS model CASCADE;
             CREATE SCHEMA model;
             CREATE TYPE model.load_status AS ENUM ('Open', 'Dispatched', 'Delivered', 'Cancelled');
             CREATE TABLE model.loads (id bigserial PRIMARY KEY, workos_org_id uuid, status model.load_status, note text);
             CREATE TABLE model.invoices (id bigserial PRIMARY KEY, workos_org_id text, status text, note text);
             CREATE TABLE model.bills (id bigserial PRIMARY KEY, workos_org_id text, status text, note text,
                                       kind text, amount numeric, units bigint, deleted_at timestamptz,
                                       due_at timestamptz);
             SELECT org_stats.track('model.loads');
             SELECT org_stats.track('model.invoices');
             SELECT org_stats.track('model.bills', filter => 'deleted_at IS NULL', sum_columns => ARRAY['amount', 'units']);
             SELECT org_stats.track('model.bills', status_column => 'kind', filter => 'amount > 0',
                                    sum_columns => ARRAY['units'], name => 'bills_by_kind');
             CREATE TABLE model.shipments (id bigint, org integer, status text, note text) PARTITION BY LIST (status);
             CREATE TABLE model.shipments_active PARTITION OF model.shipments FOR VALUES IN ('Open', 'Dispatched');
             CREATE TABLE model.shipments_done PARTITION OF model.shipments FOR VALUES IN ('Delivered', 'Cancelled');
             CREATE TABLE model.shipments_rest PARTITION OF model.shipments DEFAULT;
             SELECT org_stats.track('model.shipments', org_column => 'org');",
        )
        .expect("set up the model schema");
    // What only the native edition does: several columns and time buckets.
    if !portable() {
        client
            .batch_execute(
                "SELECT org_stats.track('model.bills', name => 'bills_by_lane', group_by => ARRAY['status', 'kind'],
                                        time_column => 'due_at', bucket => '6 hours', filter => 'deleted_at IS NULL',
                                        sum_columns => ARRAY['amount', 'units']);",
            )
            .expect("set up the native edition's part of the model schema");
    }
    let uuid = |i: u32| format!("00000000-0000-4000-8000-{i:012}");
    let tables = vec![
        Table {
            name: "model.loads",
            org_column: "workos_org_id",
            orgs: (1..=6).map(uuid).collect(),
            statuses: vec!["Open", "Dispatched", "Delivered", "Cancelled"],
        },
        Table {
            name: "model.invoices",
            org_column: "workos_org_id",
            orgs: [
                "hot",
                "acme",
                "globex",
                "initech",
                "umbrella",
                "O'Brien & Co",
            ]
            .map(String::from)
            .to_vec(),
            statuses: vec!["DRAFT", "SENT", "PAID", "VOID"],
        },
        Table {
            name: "model.shipments",
            org_column: "org",
            orgs: (1..=6).map(|i| (i * 7).to_string()).collect(),
            statuses: vec!["Open", "Dispatched", "Delivered", "Cancelled", "Lost"],
        },
        Table {
            name: "model.bills",
            org_column: "workos_org_id",
            orgs: ["hot", "acme", "globex", "initech"]
                .map(String::from)
                .to_vec(),
            statuses: vec!["DRAFT", "SENT", "PAID"],
        },
    ];
    tables
}

/// The trackings of model.bills: (reference, status column, filter, summed columns).
const BILLS_TRACKINGS: [(&str, &str, &str, &[&str]); 2] = [
    (
        "model.bills",
        "status",
        "deleted_at IS NULL",
        &["amount", "units"],
    ),
    ("bills_by_kind", "kind", "amount > 0", &["units"]),
];

/// model.bills' tracking by (status, kind) and a 6-hour bucket of due_at.
const BILLS_BY_LANE: Grouped = Grouped {
    tracking: "bills_by_lane",
    table: "model.bills",
    org_column: "workos_org_id",
    key: "ARRAY[status, kind]",
    time_column: "due_at",
    filter: "deleted_at IS NULL",
    sums: &["amount", "units"],
};
/// Where a row's bucket of bills_by_lane starts, as SQL (an infinite time is its own bucket).
const BILLS_BUCKET: &str = "CASE WHEN isfinite(due_at) THEN date_bin('6 hours', due_at, '2000-01-01 00:00+00') ELSE due_at END";

/// A random due_at of model.bills: within five days of 2026-11-01, or NULL, or infinite.
fn due_at(rng: &mut StdRng) -> String {
    match rng.gen_range(0..20) {
        0 => "NULL".into(),
        1 => "'infinity'".into(),
        _ => format!(
            "'2026-11-01 00:00+00'::timestamptz + interval '{} seconds'",
            rng.gen_range(0..5 * 86_400)
        ),
    }
}

/// Bounds of a check of bills_by_lane (SQL), varying with the check's number: each bound absent,
/// on a bucket's edge, or anywhere in the five days (or, rarely, infinite).
fn bounds(check: usize) -> (Option<String>, Option<String>) {
    let pick = |salt: usize| -> Option<String> {
        let x = (check
            .wrapping_mul(2_654_435_761)
            .wrapping_add(salt * 40_503))
            % 1_000_003;
        match x % 7 {
            0 => None,
            1 => Some(format!(
                "'2026-11-01 00:00+00'::timestamptz + interval '{} hours'",
                6 * (x % 20)
            )),
            2 if x % 3 == 0 => Some(["'-infinity'", "'infinity'"][x % 2].to_string()),
            _ => Some(format!(
                "'2026-11-01 00:00+00'::timestamptz + interval '{} seconds'",
                x % (5 * 86_400)
            )),
        }
    };
    (pick(1), pick(2))
}

/// A random value of model.bills' amount (numeric: NULL, cents, past bigint, the infinities) or
/// units (bigint, up to its limits).
fn amount(rng: &mut StdRng) -> String {
    match rng.gen_range(0..12) {
        0 | 1 => "NULL".into(),
        2 => "123456789012345678901234567890.125".into(),
        3 => "'Infinity'".into(),
        4 => "'-Infinity'".into(),
        5 => format!("-{}.{:02}", rng.gen_range(0..500), rng.gen_range(0..100)),
        _ => format!("{}.{:02}", rng.gen_range(0..5000), rng.gen_range(0..100)),
    }
}

fn units(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => "NULL".into(),
        1 => "9223372036854775807".into(),
        2 => "-9223372036854775807".into(),
        _ => rng.gen_range(-100..1000).to_string(),
    }
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl Table {
    fn cast(&self) -> &'static str {
        match self.name {
            "model.loads" => "::model.load_status",
            _ => "",
        }
    }

    /// A random org literal (hot org favoured, sometimes NULL) and status literal (sometimes NULL).
    fn org(&self, rng: &mut StdRng) -> String {
        match rng.gen_range(0..20) {
            0 => "NULL".into(),
            1..=8 => quote(&self.orgs[0]),
            _ => quote(self.orgs.choose(rng).unwrap()),
        }
    }

    fn status(&self, rng: &mut StdRng) -> String {
        if rng.gen_range(0..15) == 0 {
            "NULL".into()
        } else {
            format!(
                "{}{}",
                quote(self.statuses.choose(rng).unwrap()),
                self.cast()
            )
        }
    }

    fn org_col(&self) -> &'static str {
        self.org_column
    }

    /// A write of model.bills' own columns: a soft delete or undelete (rows leave and join the
    /// default tracking's filter), new amounts (rows leave and join the other's, and sums move),
    /// new kinds and units, or a row with all of them.
    fn bills_write(&self, rng: &mut StdRng) -> String {
        let t = self.name;
        let pick = format!(
            "(SELECT ctid FROM {t} ORDER BY random() LIMIT {})",
            rng.gen_range(1..6)
        );
        let kind = quote(["freight", "fuel", "toll"].choose(rng).unwrap());
        match rng.gen_range(0..6) {
            0 => format!(
                "UPDATE {t} SET deleted_at = CASE WHEN deleted_at IS NULL THEN now() END WHERE ctid = ANY (ARRAY{pick})"
            ),
            1 => format!(
                "UPDATE {t} SET amount = {} WHERE ctid = ANY (ARRAY{pick})",
                amount(rng)
            ),
            2 => format!(
                "UPDATE {t} SET units = {}, kind = {} WHERE ctid = ANY (ARRAY{pick})",
                units(rng),
                kind
            ),
            3 => format!(
                "UPDATE {t} SET due_at = {} WHERE ctid = ANY (ARRAY{pick})",
                due_at(rng)
            ),
            _ => format!(
                "INSERT INTO {t} (id, workos_org_id, status, kind, amount, units, deleted_at, due_at) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
                self.next_id(),
                self.org(rng),
                self.status(rng),
                kind,
                amount(rng),
                units(rng),
                if rng.gen_bool(0.3) { "now()" } else { "NULL" },
                due_at(rng)
            ),
        }
    }

    /// A random write statement (or statements) through one of the write paths.
    /// A random write; `truncate` allows TRUNCATE (else a DELETE of every row stands for it).
    fn random_write(
        &self,
        rng: &mut StdRng,
        client: &mut Client,
        truncate: bool,
    ) -> Result<String, postgres::Error> {
        let (t, org_col) = (self.name, self.org_col());
        if t == "model.bills" && rng.gen_bool(0.5) {
            let sql = self.bills_write(rng);
            client.batch_execute(&sql)?;
            return Ok(sql);
        }
        let pick = format!(
            "(SELECT ctid FROM {t} ORDER BY random() LIMIT {})",
            rng.gen_range(1..6)
        );
        let sql = match rng.gen_range(0..15) {
            0 | 1 => format!(
                "INSERT INTO {t} (id, {org_col}, status) VALUES ({}, {}, {})",
                self.next_id(),
                self.org(rng),
                self.status(rng)
            ),
            2 => {
                let rows: Vec<String> = (0..rng.gen_range(2..6))
                    .map(|i| format!("({} + {i}, {}, {})", self.next_id(), self.org(rng), self.status(rng)))
                    .collect();
                format!("INSERT INTO {t} (id, {org_col}, status) VALUES {}", rows.join(", "))
            }
            3 => format!(
                "INSERT INTO {t} (id, {org_col}, status) SELECT {} + i, {}, {} FROM generate_series(0, {}) i",
                self.next_id(),
                self.org(rng),
                self.status(rng),
                rng.gen_range(1..40)
            ),
            4 => return self.copy(rng, client),
            5 | 6 => format!("UPDATE {t} SET status = {} WHERE ctid = ANY (ARRAY{pick})", self.status(rng)),
            7 => format!("UPDATE {t} SET {org_col} = {} WHERE ctid = ANY (ARRAY{pick})", self.org(rng)),
            8 => format!("UPDATE {t} SET note = md5(random()::text) WHERE ctid = ANY (ARRAY{pick})"),
            9 => format!(
                "UPDATE {t} SET status = {} WHERE {org_col} = {} AND status IS NOT DISTINCT FROM {}",
                self.status(rng),
                self.org(rng),
                self.status(rng)
            ),
            10 => format!("DELETE FROM {t} WHERE ctid = ANY (ARRAY{pick})"),
            11 if t != "model.shipments" => format!(
                "INSERT INTO {t} (id, {org_col}, status) SELECT id + {}, {}, {} FROM {t} ORDER BY random() LIMIT 3 \
                 ON CONFLICT (id) DO {}",
                rng.gen_range(0..3),
                self.org(rng),
                self.status(rng),
                if rng.gen_bool(0.5) { "NOTHING".to_string() } else { format!("UPDATE SET status = {}", self.status(rng)) }
            ),
            11 | 12 => format!(
                "MERGE INTO {t} x USING ((SELECT id, random() < 0.3 AS drop_it FROM {t} ORDER BY random() LIMIT 4) \
                                         UNION ALL (SELECT {} + 1000000, false)) s ON x.id = s.id \
                 WHEN MATCHED AND s.drop_it THEN DELETE \
                 WHEN MATCHED THEN UPDATE SET status = {}, {org_col} = {} \
                 WHEN NOT MATCHED THEN INSERT (id, {org_col}, status) VALUES (s.id, {}, {})",
                self.next_id(),
                self.status(rng),
                self.org(rng),
                self.org(rng),
                self.status(rng)
            ),
            13 => format!(
                "WITH moved AS (UPDATE {t} SET status = {} WHERE ctid = ANY (ARRAY{pick}) RETURNING {org_col}), \
                      gone AS (DELETE FROM {t} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {t} ORDER BY random() LIMIT 2))) \
                 INSERT INTO {t} (id, {org_col}, status) SELECT {} + row_number() OVER (), {org_col}, {} FROM moved",
                self.status(rng),
                self.next_id(),
                self.status(rng)
            ),
            _ if rng.gen_range(0..8) == 0 => {
                format!("{} {t}", if truncate { "TRUNCATE" } else { "DELETE FROM" })
            }
            _ => format!("UPDATE {t} SET status = {} WHERE ctid = ANY (ARRAY{pick})", self.status(rng)),
        };
        client.batch_execute(&sql)?;
        Ok(sql)
    }

    fn next_id(&self) -> String {
        format!("(SELECT coalesce(max(id), 0) + 1 FROM {})", self.name)
    }

    fn copy(&self, rng: &mut StdRng, client: &mut Client) -> Result<String, postgres::Error> {
        let max_id: i64 = client
            .query_one(
                &format!("SELECT coalesce(max(id), 0) FROM {}", self.name),
                &[],
            )?
            .get(0);
        let mut data = String::new();
        for i in 1..=rng.gen_range(1..8) {
            let org = if rng.gen_range(0..10) == 0 {
                "\\N".to_string()
            } else {
                self.orgs.choose(rng).unwrap().clone()
            };
            let status = if rng.gen_range(0..10) == 0 {
                "\\N"
            } else {
                self.statuses.choose(rng).unwrap()
            };
            data.push_str(&format!("{}\t{org}\t{status}\n", max_id + i));
        }
        let sql = format!(
            "COPY {} (id, {}, status) FROM STDIN",
            self.name,
            self.org_col()
        );
        let mut writer = client.copy_in(&sql)?;
        writer
            .write_all(data.as_bytes())
            .expect("COPY data is sent");
        writer.finish()?;
        Ok(format!("{sql}\n{data}"))
    }
}

#[test]
fn counts_match_group_by_after_every_random_operation() {
    let seed: u64 = std::env::var("ORG_STATS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("ORG_STATS_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    println!(
        "randomized model test: seed {seed} (replay with ORG_STATS_SEED={seed}), {ops} operations"
    );

    let mut client = connect();
    let tables = setup(&mut client);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut history: Vec<String> = Vec::new();
    let mut checks = 0;
    let mut done = 0;

    let check = |client: &mut Client, history: &[String], checks: &mut usize| {
        for table in &tables {
            let bad: Vec<String> = if table.name == "model.bills" {
                let (since, until) = bounds(*checks);
                let bounds = (since.as_deref(), until.as_deref());
                let mut bad: Vec<String> = BILLS_TRACKINGS
                    .iter()
                    .flat_map(|(tracking, status, filter, sums)| {
                        totals_mismatches(
                            client,
                            tracking,
                            table.name,
                            (table.org_col(), status),
                            filter,
                            sums,
                            &table.orgs,
                        )
                    })
                    .collect();
                for bucket in [None, Some(BILLS_BUCKET)]
                    .into_iter()
                    .filter(|_| !portable())
                {
                    bad.extend(groups_mismatches(
                        client,
                        &BILLS_BY_LANE,
                        &table.orgs,
                        bounds,
                        bucket,
                    ));
                }
                bad
            } else {
                mismatches(client, table.name, table.org_col(), &table.orgs)
            };
            *checks += 1;
            assert!(
                bad.is_empty(),
                "seed {seed}: invariant broken after:\n{}\nmismatches:\n{}",
                history[history.len().saturating_sub(12)..].join("\n"),
                bad.join("\n")
            );
        }
    };

    // Runs a statement and records it for the failure report.
    let run = |client: &mut Client, history: &mut Vec<String>, sql: &str| {
        client.batch_execute(sql).unwrap();
        history.push(sql.to_string());
    };
    // The portable edition refuses TRUNCATE at REPEATABLE READ and SERIALIZABLE (docs/managed.md).
    let write =
        |client: &mut Client, history: &mut Vec<String>, rng: &mut StdRng, truncate: bool| {
            let table = tables.choose(rng).unwrap();
            history.push(
                table
                    .random_write(rng, client, truncate)
                    .expect("write succeeds"),
            );
        };

    while done < ops {
        if rng.gen_bool(0.3) {
            let level = ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
                .choose(&mut rng)
                .unwrap();
            run(
                &mut client,
                &mut history,
                &format!("BEGIN ISOLATION LEVEL {level}"),
            );
            let mut savepoint = false;
            for _ in 0..rng.gen_range(1..6) {
                if !savepoint && rng.gen_bool(0.3) {
                    run(&mut client, &mut history, "SAVEPOINT s");
                    savepoint = true;
                }
                write(
                    &mut client,
                    &mut history,
                    &mut rng,
                    !portable() || *level == "READ COMMITTED",
                );
                done += 1;
                if savepoint && rng.gen_bool(0.3) {
                    let end = ["ROLLBACK TO SAVEPOINT s", "RELEASE SAVEPOINT s"]
                        .choose(&mut rng)
                        .unwrap();
                    run(&mut client, &mut history, end);
                    savepoint = false;
                }
                check(&mut client, &history, &mut checks);
            }
            let end = if rng.gen_bool(0.25) {
                "ROLLBACK"
            } else {
                "COMMIT"
            };
            run(&mut client, &mut history, end);
        } else if rng.gen_bool(0.03) {
            // Settles bills_by_lane's hours into day and month totals, which reads then use; the
            // portable edition folds its session rows into settled ones.
            let tracking = if portable() {
                "model.bills"
            } else {
                "bills_by_lane"
            };
            run(
                &mut client,
                &mut history,
                &format!("SELECT count(*) FROM org_stats.recalculate('{tracking}')"),
            );
        } else {
            write(&mut client, &mut history, &mut rng, true);
            done += 1;
        }
        check(&mut client, &history, &mut checks);
    }
    let rows: i64 = tables
        .iter()
        .map(|t| -> i64 {
            client
                .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
                .unwrap()
                .get(0)
        })
        .sum();
    println!("{done} operations, {checks} invariant checks, 0 mismatches, {rows} rows at the end");
    client.batch_execute("DROP SCHEMA model CASCADE").unwrap();
}
