//! Placeholder library so the root package (end-to-end tests) is a valid crate.
