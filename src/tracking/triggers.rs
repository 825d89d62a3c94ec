//! A tracking's triggers (see `write_path`): made on the tracked table and the statement triggers
//! on each of its partitions, found again, and dropped; wherever its rows are (see
//! `counters::placement`).

use crate::catalog::registry::Tracked;
use crate::counters::placement::placer;
use crate::pg::names::RegClass;
use crate::pg::sql::{self, Access};
use crate::values::dimensions::Spec;
use pgrx::spi::quote_literal;

/// The triggers of one tracking; the table_id in their names lets a table be tracked more than
/// once and a partition on its own as well as through its parent, and tells a dropped trigger's
/// tracking (see `ddl`).
fn trigger_names(table_id: i32) -> [String; 3] {
    ["row", "flush", "truncate"].map(|kind| format!("org_stats_{kind}_{table_id}"))
}

/// The arguments every org_stats trigger carries: which tracking, by which columns, and, for a
/// tracking with a filter, summed columns or other grouping columns, the filter (empty for none),
/// the other grouping columns and time bucket of a dimensional tracking, and the summed columns.
fn trigger_args(t: &Tracked) -> String {
    let mut args = vec![
        format!("'{}'", t.table_id),
        quote_literal(&t.org_column),
        quote_literal(&t.status_column),
    ];
    if t.filter.is_some() || !t.sum_columns.is_empty() || t.dimensional() {
        args.push(quote_literal(t.filter.as_deref().unwrap_or("")));
        if t.dimensional() {
            let spec = Spec {
                group: t.group_columns.clone(),
                time: t.time.clone(),
            };
            args.push(quote_literal(spec.to_arg()));
        }
        args.extend(t.sum_columns.iter().map(quote_literal));
    }
    args.join(", ")
}

/// Installs the triggers of a tracked table: the row trigger on `table` (PostgreSQL clones it
/// onto every partition, now and later) and the statement triggers on `relations` (the table and
/// its partitions; statement triggers are not cloned). On a logical-replication subscriber they
/// fire ALWAYS, since the apply worker runs as a replica and would skip them.
pub fn install_triggers(table: Option<RegClass>, relations: &[RegClass], t: &Tracked) {
    placer().with_triggers(&mut || install_triggers_now(table, relations, t))
}

fn install_triggers_now(table: Option<RegClass>, relations: &[RegClass], t: &Tracked) {
    let [row, flush, truncate] = trigger_names(t.table_id);
    let args = trigger_args(t);
    let mut created = Vec::new();
    if let Some(table) = table {
        sql::exec(
            &format!(
                "CREATE TRIGGER {row} AFTER INSERT OR UPDATE OR DELETE ON {} \
                 FOR EACH ROW EXECUTE FUNCTION org_stats.org_stats_row_trigger({args})",
                table.qualified()
            ),
            &[],
        );
        created.push((table, row));
    }
    for rel in relations {
        let name = rel.qualified();
        sql::exec(
            &format!(
                "CREATE TRIGGER {flush} AFTER INSERT OR UPDATE OR DELETE ON {name} \
                 FOR EACH STATEMENT EXECUTE FUNCTION org_stats.org_stats_flush_trigger({args})"
            ),
            &[],
        );
        sql::exec(
            &format!(
                "CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {name} \
                 FOR EACH STATEMENT EXECUTE FUNCTION org_stats.org_stats_truncate_trigger({args})"
            ),
            &[],
        );
        created.push((*rel, flush.clone()));
        created.push((*rel, truncate.clone()));
    }
    for (rel, trigger) in created {
        if is_subscription_target(rel) {
            sql::exec(
                &format!(
                    "ALTER TABLE {} ENABLE ALWAYS TRIGGER {trigger}",
                    rel.qualified()
                ),
                &[],
            );
        }
    }
}

fn is_subscription_target(rel: RegClass) -> bool {
    let mut target = false;
    sql::kept(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription_rel s \
                         WHERE s.srrelid OPERATOR(pg_catalog.=) $1 \
                            OR s.srrelid IN (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a))",
        &[rel.into()],
        Access::Read,
        |row| target = row.get(1).unwrap(),
    );
    target
}

/// The table and every partition below it.
pub fn partition_tree(table: RegClass) -> Vec<RegClass> {
    let mut tree = Vec::new();
    sql::kept(
        "SELECT $1 UNION SELECT t.relid FROM pg_catalog.pg_partition_tree($1) t",
        &[table.into()],
        Access::Write,
        |r| tree.push(r.get(1).unwrap()),
    );
    tree
}

/// The relations carrying this tracked table's statement triggers (its tree, as of the last
/// DDL org_stats saw).
pub fn relations_with_triggers(table_id: i32) -> Vec<RegClass> {
    let [_, flush, _] = trigger_names(table_id);
    let mut rels = Vec::new();
    sql::kept(
        "SELECT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t \
          WHERE t.tgname OPERATOR(pg_catalog.=) $1 AND t.tgparentid OPERATOR(pg_catalog.=) 0",
        &[flush.as_str().into()],
        Access::Write,
        |r| rels.push(r.get(1).unwrap()),
    );
    rels
}

/// Drops this tracked table's triggers from `relations` (the row trigger lives on the table itself
/// and goes with it; its clones go with it too).
pub fn remove_triggers(relations: &[RegClass], table_id: i32) {
    placer().with_triggers(&mut || remove_triggers_now(relations, table_id))
}

fn remove_triggers_now(relations: &[RegClass], table_id: i32) {
    let names: Vec<String> = trigger_names(table_id).into();
    for rel in relations {
        let mut drops = Vec::new();
        sql::kept(
            "SELECT pg_catalog.format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::pg_catalog.regclass) \
               FROM pg_catalog.pg_trigger t \
              WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 AND t.tgparentid OPERATOR(pg_catalog.=) 0 \
                AND t.tgname OPERATOR(pg_catalog.=) ANY ($2)",
            &[(*rel).into(), names.clone().into()],
            Access::Write,
            |row| drops.push(row.get::<String>(1).unwrap()),
        );
        for drop in drops {
            sql::exec(&drop, &[]);
        }
    }
}
