//! Fuzz targets for wrec: see `README.md`. The target bodies live in
//! `harness.rs` so the regression tests (and the main workspace) can replay
//! crash inputs through exactly the same code.

#[path = "harness.rs"]
pub mod harness;
