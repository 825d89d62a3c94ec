//! Keeping counts right over time: drift checks and repair, online backfill, counting a tracking
//! again where its rows moved, settling time-bucketed counts into day and month totals, and
//! scheduling recalculation with pg_cron.

pub mod backfill;
pub mod drift;
pub mod relocate;
pub mod scheduling;
pub mod settle;
