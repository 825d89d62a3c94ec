//! Running org_stats' own SQL with the extension's rights: as the extension's owner, with the
//! search path pinned to `pg_catalog`. This is what `SECURITY DEFINER SET search_path` does, done
//! in Rust so the trigger write path pays for it once per flush, not once per row, and so the
//! commit-time flush (which no SQL function wraps) gets the same protection. Also the checks of
//! the caller's rights that reads and maintenance make, and the `org_stats.count_under_rls`
//! setting.

use crate::pg::compat;
use crate::pg::errors;
use crate::pg::names::RegClass;
use crate::pg::sql::{self, Access};
use pgrx::pg_sys;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::cell::Cell;

/// `org_stats.count_under_rls`: whether roles subject to a table's row-level security may read
/// its counts, which include rows the policies hide from them. Off by default; superuser only.
static COUNT_UNDER_RLS: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Defines the settings; called once per backend from `_PG_init`.
pub fn init() {
    GucRegistry::define_bool_guc(
        c"org_stats.count_under_rls",
        c"Lets roles subject to a table's row-level security read its org_stats counts.",
        c"The counts include rows the policies hide from such roles. Off by default.",
        &COUNT_UNDER_RLS,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// Whether the caller may read `table`'s counts as far as row-level security goes: it does not
/// apply to the caller, or counts have been allowed to such roles.
pub fn rls_allows_counts(table: RegClass) -> bool {
    // SAFETY: a catalog check for an existing relation, as the current user.
    let rls = unsafe { pg_sys::check_enable_rls(table.0, pg_sys::Oid::INVALID, false) };
    rls != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32 || COUNT_UNDER_RLS.get()
}

/// Raises 42501 when row-level security applies to the caller on `relid` and counts have not
/// been allowed to such roles.
pub fn require_rls_allows_counts(table: RegClass) {
    if !rls_allows_counts(table) {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("row-level security on table {} applies to this role", table.display()),
            "The counts include rows its policies may hide from this role. A superuser can allow them with \
             ALTER ROLE ... SET org_stats.count_under_rls = on (see docs/reference.md, Row-level security).",
        );
    }
}

thread_local! {
    static OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The role that owns the extension and therefore its counter storage.
fn extension_owner() -> pg_sys::Oid {
    if let Some(owner) = OWNER.with(Cell::get) {
        return owner;
    }
    let mut owner = None;
    sql::kept(
        "SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'org_stats'",
        &[],
        Access::Read,
        |row| owner = row.get::<pg_sys::Oid>(1),
    );
    let owner = owner.expect("org_stats is installed in this database");
    OWNER.with(|o| o.set(Some(owner)));
    owner
}

/// Restores the caller's identity when the privileged section ends, including by unwinding (an
/// ERROR); a (sub)transaction abort would restore it too.
struct RestoreUser {
    user: pg_sys::Oid,
    context: i32,
}

impl Drop for RestoreUser {
    fn drop(&mut self) {
        // SAFETY: restores what `as_extension_owner` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) };
    }
}

/// Runs `f` as the extension owner with a pinned search path.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = extension_owner();
    let mut user = pg_sys::Oid::INVALID;
    let mut context = 0;
    // SAFETY: plain calls into the backend's user-id machinery, undone by `RestoreUser`.
    let _user = unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
        RestoreUser { user, context }
    };
    let _path = compat::PinnedSearchPath::pin();
    f()
}

/// The role the caller is acting as (to be read before `as_extension_owner` switches it).
pub fn current_role() -> pg_sys::Oid {
    // SAFETY: always valid inside a transaction.
    unsafe { pg_sys::GetUserId() }
}

/// Raises 42501 unless the current user owns `table` (directly or through a role), which is what
/// tracking and maintenance of a table require.
pub fn require_owner(table: RegClass, action: &str) {
    let mut owner = false;
    sql::kept(
        "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c \
          WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[table.into()],
        Access::Read,
        |row| owner = row.get(1).unwrap(),
    );
    if !owner {
        errors::not_owner(&table.display(), action);
    }
}

/// Whether the current user may SELECT from `relid` (what the count functions require).
pub fn can_read(relid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup for an existing relation.
    unsafe {
        pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_SELECT as pg_sys::AclMode,
        ) == pg_sys::AclResult::ACLCHECK_OK
    }
}
