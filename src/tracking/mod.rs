//! Tracking DDL: making and dropping trackings, their triggers, and following DDL on tracked
//! tables.

pub mod ddl;
pub mod track;
pub mod triggers;
