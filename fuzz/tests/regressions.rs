//! Replays every input in `fuzz/regressions/<target>/` through its target's
//! harness (without libFuzzer): `cargo test` in `fuzz/`.

use std::path::Path;

#[test]
fn every_regression_input_is_handled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let ran = wrec_fuzz::harness::replay_dir(&dir);
    assert!(ran > 0, "no regression inputs found in {}", dir.display());
}
