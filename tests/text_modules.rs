//! A module in the wasm text format (`.wat`): wrec runs it (Wasmtime
//! compiles the text) and hashes the file as it is; wanalyze reads the same
//! text wherever it reads a binary module (the recorded path, `--module`,
//! `addr2line`, `view`), checks its hash against the text and compiles it
//! as Wasmtime did, so the recorded wasm offsets name the right functions.

use std::ffi::OsStr;

use wrec_testkit::*;

/// `_start` → `outer` → `spin`, which loops long enough for a few hundred
/// samples at the default interval.
const WAT: &str = r#"(module
  (func $spin (param $n i32) (result i32)
    (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (local.get $acc))
  (func $outer (result i32)
    (call $spin (i32.const 150000000)))
  (func $_start (export "_start")
    (drop (call $outer))))
"#;

#[test]
fn a_recording_of_a_text_module_is_analyzed_like_a_binary_one() {
    let dir = tempfile::tempdir().unwrap();
    let wat = dir.path().join("spin.wat");
    std::fs::write(&wat, WAT).unwrap();
    let out = wrec(dir.path(), &["-o", "t.wrec", "spin.wat"]);
    assert!(out.status.success(), "wrec: {}", stderr(&out));
    let trace = dir.path().join("t.wrec");

    // The recorded path, then the file moved and given with --module.
    let stacks = folded(&trace, &[]);
    let spin = stacks
        .iter()
        .find(|(s, _)| s.last().is_some_and(|f| f == "spin"))
        .unwrap_or_else(|| panic!("no sample in spin: {stacks:?}"));
    assert_eq!(spin.0, ["_start", "outer", "spin"]);
    let moved = dir.path().join("moved.wat");
    std::fs::rename(&wat, &moved).unwrap();
    assert_eq!(
        folded(&trace, &["--module", moved.to_str().unwrap()]),
        stacks
    );

    // addr2line at the address of a sample in spin (from the profile).
    let p = firefox_profile(&trace, dir.path(), &["--module", moved.to_str().unwrap()]);
    let leaf = p
        .samples(0)
        .into_iter()
        .filter_map(|s| s.first().cloned())
        .find(|f| f.func == "spin")
        .expect("a sample in spin");
    let out = wanalyze(&[
        OsStr::new("addr2line"),
        moved.as_os_str(),
        OsStr::new(&format!("{:#x}", leaf.address)),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{:#x}: spin\n", leaf.address));

    // view serves the module's code, compiled from the text.
    let opts = wanalyze::view::ViewOptions {
        modules: vec![moved.clone()],
        ..Default::default()
    };
    let (served, _) = wanalyze::view::Served::load(&trace, &opts).unwrap();
    assert_eq!(served.libs.len(), 1);
    assert_eq!(served.libs[0].debug_name, "moved.wat");
    assert_eq!(served.libs[0].symbols.function_name(0), "spin");

    // The hash is the text's: text changed in a comment only is another
    // file, refused at the recorded path as at --module.
    std::fs::write(&wat, format!("{WAT};; edited\n")).unwrap();
    let out = wanalyze(&[trace.as_os_str()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this is not the module that was profiled"),
        "{}",
        stderr(&out)
    );
}
