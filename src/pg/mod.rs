//! PostgreSQL glue that knows nothing of what org_stats counts: the calls whose form differs
//! between majors, errors, SQL through SPI, the extension's rights, relcache invalidations, the
//! argument types naming tables and columns, and direct index and heap access.

pub mod access;
pub mod compat;
pub mod errors;
pub mod names;
pub mod relcache;
pub mod security;
pub mod sql;
