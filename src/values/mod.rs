//! What org_stats makes of a row's values: the text a value is counted under, exact sums, and
//! filters.

pub mod filter;
pub mod sums;
pub mod text_form;
