//! Citus' SQL functions: `distribute()`, the counts `organization_stats` and `health` read from
//! every node, and the cleanup DROP TABLE and DROP EXTENSION run.

use crate::catalog::registry;
use crate::citus::placer::{self, installed, present};
use crate::counters::placement::{placer, readable, Placement};
use crate::counters::remote;
use crate::maintenance::drift;
use crate::pg::errors::{self, raise};
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

/// Distributes tracked table `tbl` by its org column, as Citus' `create_distributed_table()`
/// would, which refuses a table with triggers unless `citus.enable_unsafe_triggers` is on: in
/// one transaction that writers wait for, distributes it with its triggers and counts each of its
/// trackings again next to its shards (see `maintenance::relocate`).
#[pg_extern(volatile, parallel_unsafe)]
fn distribute(
    tbl: Option<RegClass>,
    shard_count: default!(Option<i32>, "NULL"),
    colocate_with: default!(Option<&str>, "'default'"),
) {
    let Some(table) = tbl else {
        raise(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "org_stats.distribute(): tbl must not be NULL",
            "Name the tracked table to distribute.",
        );
    };
    let name = table.display();
    if !installed() {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "org_stats.distribute() needs Citus, which is not installed in this database",
            "Preload citus and run CREATE EXTENSION citus first; without Citus, nothing is distributed.",
        );
    }
    security::require_owner(table, "distribute");
    // SAFETY: reads the transaction state.
    if unsafe { pg_sys::IsTransactionBlock() } {
        raise(
            PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
            format!("org_stats.distribute() of {name} cannot run inside a transaction block"),
            "Run it as a statement of its own, as org_stats.track() of a distributed table: Citus may send \
             the block's later writes over a connection that does not see org_stats' new triggers.",
        );
    }
    if placer().placement(table, "") != Placement::Local {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{name} is a Citus table already"),
            "org_stats.distribute() distributes a tracked local table. To distribute a Citus table another way, \
             use Citus' own functions: org_stats follows them.",
        );
    }
    let trackings = security::as_extension_owner(|| registry::all_of(table));
    let Some(org_column) = trackings.first().map(|t| t.org_column.clone()) else {
        errors::not_tracked(&name);
    };
    if trackings.iter().any(|t| t.org_column != org_column) {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("the trackings of {name} count by different org columns"),
            "A distributed table's counts live with its rows, by the column it is distributed by; \
             untrack the trackings by another org column first.",
        );
    }
    let mut notifying = false;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT EXISTS (SELECT FROM org_stats.tracked t WHERE t.relid OPERATOR(pg_catalog.=) $1 AND t.notify)",
            &[table.into()],
            Access::Read,
            |row| notifying = row.get(1).unwrap(),
        )
    });
    if notifying {
        raise(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot distribute {name}: a tracking of it notifies changes"),
            "Distributed trackings do not notify; turn it off first with org_stats.set_notify('...', false).",
        );
    }
    // Writers wait from here until commit, so the counts made below see every row.
    security::as_extension_owner(|| {
        sql::exec(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                table.qualified()
            ),
            &[],
        )
    });
    // As the caller, whom Citus checks owns the table; Citus copies the triggers to the shards.
    placer::with_triggers_allowed(|| {
        sql::exec(
            "SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3, shard_count => $4)",
            &[
                table.into(),
                org_column.as_str().into(),
                colocate_with.unwrap_or("default").into(),
                shard_count.into(),
            ],
        )
    });
    // Reads from here on must see the table distributed.
    sql::seeing_own_changes(|| {
        security::as_extension_owner(|| {
            for t in registry::all_of(table) {
                drift::count_again(&t);
            }
        })
    });
}

/// The counts of the distributed trackings whose tables the caller may read (as the count
/// functions check), per (tracking, org, status): what `org_stats.organization_stats` shows of
/// them besides the trackings counted in `org_stats.counters`. Only trackings whose counts are
/// Drops the counters table of every colocation group left without a tracked table (after
/// `untrack()` or `DROP TABLE`), and so its shards on every node (see `placer`).
#[pg_extern(volatile, parallel_unsafe)]
pub fn drop_unused_counters() {
    placer().drop_unused();
}

/// kept where their table is now (see `readable`). Empty without Citus.
#[pg_extern(stable, parallel_restricted)]
fn distributed_counts() -> TableIterator<
    'static,
    (
        name!(table_id, i32),
        name!(org_id, String),
        name!(status, Option<String>),
        name!(count, i64),
    ),
> {
    let mut rows = Vec::new();
    if present() {
        for t in security::as_extension_owner(registry::all_read) {
            if !(security::can_read(t.relid.0) && security::rls_allows_counts(t.relid)) {
                continue;
            }
            if let Ok(Placement::Remote(counters)) = readable(&t) {
                let counts = remote::all_counts(&counters, t.table_id, 0);
                rows.extend(
                    counts
                        .into_iter()
                        .map(|(org, status, counted)| (t.table_id, org, status, counted.n)),
                );
            }
        }
    }
    TableIterator::new(rows)
}

/// tables of distributed trackings first, so that Citus removes their shards from every node
/// (they are not members of the extension, whose members Citus leaves on the workers). Written
/// to the C calling convention to read the statement, which a PL/pgSQL event trigger cannot.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn on_drop_extension(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the context is checked to be an EventTriggerData of a DropStmt (a direct call has
    // none); a DROP EXTENSION names its extensions by String nodes.
    let dropping_org_stats = unsafe {
        let data = (*fcinfo).context as *mut pg_sys::EventTriggerData;
        let is = |node: *mut pg_sys::Node, tag| !node.is_null() && (*node).type_ == tag;
        if !is(data.cast(), pg_sys::NodeTag::T_EventTriggerData)
            || !is((*data).parsetree, pg_sys::NodeTag::T_DropStmt)
        {
            raise(
                PgSqlErrorCode::ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED,
                "org_stats.on_drop_extension() runs only as the event trigger before DROP EXTENSION",
                "It is called by PostgreSQL, not by hand.",
            );
        }
        let stmt = (*data).parsetree as *mut pg_sys::DropStmt;
        let names = (*stmt).objects;
        (*stmt).removeType == pg_sys::ObjectType::OBJECT_EXTENSION
            && (0..pg_sys::list_length(names)).any(|i| {
                let name = (*(*names).elements.add(i as usize)).ptr_value as *mut pg_sys::String;
                std::ffi::CStr::from_ptr((*name).sval) == c"org_stats"
            })
    };
    if dropping_org_stats && installed() {
        security::as_extension_owner(drop_counters_tables);
    }
    pg_sys::Datum::from(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_on_drop_extension() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

/// Drops every distributed counters table (on the coordinator, see `counters_tables`).
fn drop_counters_tables() {
    for (_, table) in placer::counters_tables() {
        sql::exec(&format!("DROP TABLE {table}"), &[]);
    }
}
