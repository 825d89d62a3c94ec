//! Every error org_stats raises: one SQLSTATE, one message and one HINT per failure mode,
//! so callers can match on the code and a human knows what to do next.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR; the current (sub)transaction aborts, so nothing the caller started is left
/// half-done.
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    ErrorReport::new(code, message.into(), "org_stats")
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

pub fn not_tracked(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("table {table} is not tracked by org_stats"),
        "Track it with org_stats.track(); org_stats.tracked_tables lists the tracked tables.",
    )
}

pub fn no_such_tracking(name: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
        format!("no tracking or table is named \"{name}\""),
        "Name a tracking, or a tracked table as a regclass would (schema-qualified if it is not on the search \
         path); org_stats.tracked_tables lists each tracking's table and name.",
    )
}

pub fn cannot_read(table: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("permission denied for table {table}"),
        "Counts of a table are visible to roles with SELECT on it; ask its owner to GRANT SELECT.",
    )
}

pub fn not_owner(table: &str, action: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("must be owner of table {table}"),
        format!(
            "org_stats.{action}() acts only on tables the caller owns, directly or through a role."
        ),
    )
}

pub fn column_gone(table: &str, column: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
        format!("tracked column \"{column}\" of table {table} no longer exists or changed to an unsupported type"),
        "Untrack the table and track it again with its current column names.",
    )
}

pub fn storage_missing(relation: &std::ffi::CStr) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!(
            "org_stats' own relation org_stats.{} is missing",
            relation.to_string_lossy()
        ),
        "It was dropped by hand; reinstall with DROP EXTENSION org_stats CASCADE; CREATE EXTENSION org_stats.",
    )
}

pub fn counters_altered(what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("org_stats.counters {what}"),
        "org_stats writes its counters directly, as PostgreSQL writes its catalogs; undo the change made to \
         org_stats.counters by hand, or reinstall with DROP EXTENSION org_stats CASCADE; CREATE EXTENSION org_stats.",
    )
}

pub fn claim_broken() -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        "an org_stats counter row changed while org_stats held it",
        "Something wrote org_stats.counters directly; retry the transaction.",
    )
}

pub fn superseded(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("org_stats.{function}() of this database's org_stats version is served by a newer library"),
        "Run ALTER EXTENSION org_stats UPDATE in this database; until then writes are counted and reads \
         answered as before, and the functions whose arguments or results changed are unavailable.",
    )
}

pub fn set_not_accepted(function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("org_stats.{function}() returns a set, which this context cannot accept"),
        format!("Call it in FROM: SELECT * FROM org_stats.{function}(...)."),
    )
}

pub fn grouped_by_several(tracking: &str, function: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!("tracking \"{tracking}\" groups by several columns, which org_stats.{function}() cannot show"),
        format!("Read it with org_stats.groups('{tracking}', org_id), one row per combination of its columns' values."),
    )
}

pub fn no_time_column(tracking: &str, what: &str) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        format!("tracking \"{tracking}\" has no time column, so {what}"),
        "Track the table with time_column => '...' and bucket => '...' to count by time.",
    )
}
