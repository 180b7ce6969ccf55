//! Test support for every test root of the wrec workspace (the end-to-end
//! tests in `tests/`, and each crate's `tests/`), so that tests read like
//! usage and no helper is written twice.
//!
//! - [`fixture`], [`fixture_source`]: the committed fixtures by name.
//! - [`cli`]: run `wrec` and `wanalyze` as a user would; record a fixture,
//!   analyze the trace, read folded stacks back.
//! - [`firefox`]: a Firefox profile read back as the profiler shows it.
//! - [`http`]: a minimal loopback HTTP client (for `wanalyze view`).
//! - [`trace`]: a trace read back completely (or rewritten: [`rewrite_trace`]), with a minimal
//!   address-to-function lookup from its module records and the wasm's
//!   name section (independent of the analyzer).
//! - [`wasm`]: LEB128, sections and source lines of the fixtures.
//! - [`synth`]: small traces written with the format crate, for its tests.
//!
//! Unit tests inside a crate cannot use this crate (it links the crate's
//! library, not its test build); integration tests can.

pub mod cli;
pub mod firefox;
pub mod http;
pub mod synth;
pub mod trace;
pub mod wasm;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

pub use cli::*;
pub use firefox::{assert_mix_inlined_in_hash_block, FxFrame, FxProfile};
pub use trace::{function_names, rewrite_trace, Loaded, OwnedSample};
pub use wasm::{custom_section, function_lines, leb, line_of};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the repository root")
        .to_owned()
}

/// A committed fixture (`fixtures/NAME`), which must exist.
pub fn fixture(name: &str) -> PathBuf {
    let p = root().join("fixtures").join(name);
    assert!(p.exists(), "missing fixture {}", p.display());
    p
}

/// The text of a fixture's C source (`fixtures/src/NAME`).
pub fn fixture_source(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/src").join(name))
        .unwrap_or_else(|e| panic!("fixtures/src/{name}: {e}"))
}

/// Tests that measure timing (all `#[ignore]`d in the default run) take
/// this lock so they do not compete with each other for the cores.
pub fn timing_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The share (0..1) of `part` in `whole`.
pub fn share(part: usize, whole: usize) -> f64 {
    part as f64 / whole.max(1) as f64
}
