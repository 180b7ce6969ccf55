//! Replays every input in `fuzz/regressions/<target>/` (crash inputs the
//! fuzzers found, and hand-made hostile traces) through the same harness the
//! fuzz targets run (`fuzz/src/harness.rs`), without libFuzzer or nightly.
//! Each must be handled: an error or a profile, never a panic.

#[path = "../fuzz/src/harness.rs"]
mod harness;

#[test]
fn every_fuzz_regression_input_is_handled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let ran = harness::replay_dir(&dir);
    assert!(ran > 0, "no inputs in {}", dir.display());
}
