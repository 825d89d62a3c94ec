//! The counters: where a tracking's counts live (the seam integrations plug into), the deltas a
//! statement makes, which counter row a writer adds them to without waiting on another, writing
//! them, reading them, and what the table holds counted live.

pub mod deltas;
pub mod placement;
pub mod pool;
pub mod remote;
pub mod storage;
pub mod table_counts;
pub mod write;
