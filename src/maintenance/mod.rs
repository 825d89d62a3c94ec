//! Keeping counts right over time: drift checks and repair, online backfill, counting a tracking
//! again where its rows moved, and scheduling recalculation with pg_cron.

pub mod backfill;
pub mod drift;
pub mod relocate;
pub mod scheduling;
