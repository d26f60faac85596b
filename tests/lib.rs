//! End-to-end tests live in the `[[test]]` targets beside this file; this crate has no library code.
