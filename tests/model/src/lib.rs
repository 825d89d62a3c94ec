//! Helpers for the randomized model test live in its test file; this crate has no library code.
