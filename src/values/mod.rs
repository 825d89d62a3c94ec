//! What org_stats makes of a row's values: the text a value is counted under, exact sums,
//! filters, and the group key of a tracking grouped by several columns or a time bucket.

pub mod dimensions;
pub mod filter;
pub mod sums;
pub mod text_form;
