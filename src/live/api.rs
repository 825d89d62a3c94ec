//! The SQL functions of notifications: turning them on and off, subscribing to a tracking's
//! channel, and the changes committed since a token.

use super::shmem::{my_db, require_preloaded, token, Change, LIVE, LOG};
use crate::catalog::registry::{self, Tracked};
use crate::catalog::schema;
use crate::counters::placement::{placer, Placement};
use crate::pg::errors;
use crate::pg::names::RegClass;
use crate::pg::security;
use crate::pg::sql::{self, Access};
use pgrx::prelude::*;
use rustc_hash::FxHashMap;

/// Turns notifications of a tracking on, with a new secret channel, or off, forgetting the
/// channel (so turning them off and on shuts out whoever learnt the old one).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn set_notify(tracking: &str, enabled: default!(bool, true)) {
    if enabled {
        require_preloaded();
    }
    let t = registry::resolve(tracking, None);
    security::require_owner(t.relid, "set_notify");
    if enabled {
        refuse_notify(&t);
    }
    security::as_extension_owner(|| {
        sql::kept(
            "UPDATE org_stats.tracked t SET notify = $2, \
                    channel = CASE WHEN $2 THEN COALESCE(t.channel, 'org_stats_' OPERATOR(pg_catalog.||) \
                                   pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', '')) END \
              WHERE t.table_id OPERATOR(pg_catalog.=) $1",
            &[t.table_id.into(), enabled.into()],
            Access::Write,
            |_| {},
        );
    });
    // Every backend reads the notifying trackings again after this commits.
    // SAFETY: queues an invalidation of an existing relation.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(schema::tracked_relid()) };
}

/// Subscribes this session to a notifying tracking's changes and returns its channel:
/// notifications arrive on it after this transaction commits.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn listen(tracking: &str) -> String {
    require_preloaded();
    let t = registry::resolve(tracking, None);
    if !security::can_read(t.relid.0) {
        errors::cannot_read(&t.relid.display());
    }
    security::require_rls_allows_counts(t.relid);
    let mut channel: Option<String> = None;
    security::as_extension_owner(|| {
        sql::kept(
            "SELECT t.channel FROM org_stats.tracked t WHERE t.table_id OPERATOR(pg_catalog.=) $1 AND t.notify",
            &[t.table_id.into()],
            Access::Read,
            |row| channel = row.get(1),
        )
    });
    let channel = channel.unwrap_or_else(|| {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("tracking {tracking} does not notify"),
            "Its owner turns notifications on with SELECT org_stats.set_notify('...');",
        )
    });
    sql::exec(
        &format!("LISTEN {}", pgrx::spi::quote_identifier(&channel)),
        &[],
    );
    channel
}

/// The (tracking, org) changes committed after `token`, one row each with the token of its
/// latest change, for the trackings whose counts the caller may read, then always one row with no
/// table: the token to continue from, and whether to re-read everything first (the token is
/// unknown, too old, from before a restart, or changes were lost meanwhile). A first call passes
/// NULL. Changes not sent yet are included, with the token to continue from (they come again,
/// with their own, once sent).
// The columns' names must be spelled in the signature for pgrx, so no type alias can shorten it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_restricted)]
fn changed_since(
    token: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(table_name, Option<RegClass>),
        name!(tracking, Option<String>),
        name!(org_id, Option<String>),
        name!(token, String),
        name!(resync, bool),
    ),
> {
    require_preloaded();
    let db = my_db();
    let epoch = LIVE.share().epoch;
    let epoch = if epoch == 0 {
        LIVE.exclusive().epoch()
    } else {
        epoch
    };
    let since = token
        .and_then(|t| t.split_once('-'))
        .filter(|(started, _)| *started == epoch.to_string())
        .and_then(|(_, seq)| seq.parse::<u64>().ok());
    let (changes, last) = {
        let live = LIVE.share();
        let last = live.next_seq - 1;
        let oldest = live.next_seq.saturating_sub(LOG as u64).max(1);
        let changes: Option<Vec<(u64, Change)>> = since
            .filter(|&s| s <= last && s.saturating_add(1) >= oldest)
            .map(|s| {
                (s + 1..=last)
                    .map(|seq| (seq, live.log[(seq % LOG as u64) as usize]))
                    .filter(|(_, c)| c.db == db)
                    .chain(live.pending_of(db).map(|c| (last, *c)))
                    .collect()
            });
        (changes, last)
    };
    let resync = changes
        .as_ref()
        .is_none_or(|changes| changes.iter().any(|(_, c)| c.table_id == 0));
    let mut rows = Vec::new();
    if !resync {
        let mut latest: FxHashMap<(i32, u32, Option<String>), u64> = FxHashMap::default();
        for (seq, change) in changes.into_iter().flatten() {
            latest.insert((change.table_id, change.relid, change.org()), seq);
        }
        let mut allowed: FxHashMap<(i32, u32), Option<(RegClass, Option<String>)>> =
            FxHashMap::default();
        let mut entries: Vec<_> = latest.into_iter().collect();
        entries.sort_by_key(|(_, seq)| *seq);
        for ((table_id, relid, org), seq) in entries {
            let visible = allowed.entry((table_id, relid)).or_insert_with(|| {
                let t = security::as_extension_owner(|| registry::find_by_id(table_id))?;
                (t.relid.0.to_u32() == relid
                    && security::can_read(t.relid.0)
                    && security::rls_allows_counts(t.relid))
                .then_some((t.relid, t.name))
            });
            if let Some((relid, name)) = visible {
                rows.push((
                    Some(*relid),
                    name.clone(),
                    org,
                    self::token(epoch, seq),
                    false,
                ));
            }
        }
    }
    rows.push((None, None, None, self::token(epoch, last), resync));
    TableIterator::new(rows)
}

/// Refuses notifications of a tracking whose counts are not kept on this node: its writes are
/// counted elsewhere (on the Citus workers), where nothing tells them to notify.
fn refuse_notify(t: &Tracked) {
    if placer().placement(t.relid, &t.org_column) != Placement::Local {
        errors::raise(
            pgrx::PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot notify changes of distributed table {}", t.relid.display()),
            "Its writes are counted on the Citus workers, which do not send org_stats' notifications; \
             poll org_stats.count_by_status() instead.",
        );
    }
}
