//! PostgreSQL glue that knows nothing of what org_stats counts: the calls whose form differs
//! between majors, errors, SQL through SPI, the extension's rights, relcache invalidations, the
//! argument types naming tables and columns, direct index and heap access, and `numeric` values
//! made and read without their text form.

pub mod access;
pub mod compat;
pub mod errors;
pub mod names;
pub mod numeric;
pub mod relcache;
pub mod security;
pub mod sql;
