//! org_stats' own tables and its registry of trackings: which tables are tracked, how, and which
//! version of its schema this database has.

pub mod registration;
pub mod registry;
pub mod schema;
