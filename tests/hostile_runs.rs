//! What the environment of a recording can do to it: a `RUST_BACKTRACE=1`
//! (common in CI) must not put wrec's own backtrace and host paths into the
//! trace, and a start refused for lack of space must leave the file system
//! as it found it.

use std::path::Path;
use std::process::Command;

use wrec_format::{Event, Record, Trace};
use wrec_testkit::*;

/// The end record's message.
fn end_message(trace: &Path) -> String {
    let t = Trace::open(trace).unwrap();
    let mut d = t.decoder();
    while let Some(e) = d.next() {
        if let Ok(Event::Record(Record::End(e))) = e {
            return e.message;
        }
    }
    panic!("{}: no end record", trace.display())
}

#[test]
fn a_trap_recorded_with_rust_backtrace_keeps_only_the_guests_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("trap.wasm");
    let out = wrec_cmd(dir.path(), &["-o", "t.wrec", wasm.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    let msg = end_message(&dir.path().join("t.wrec"));
    let fixtures = wasm.parent().unwrap().to_str().unwrap();
    assert!(!msg.contains("Stack backtrace"), "{msg}");
    assert!(!msg.contains(".cargo"), "{msg}");
    assert!(!msg.contains(fixtures), "{msg}");
    assert!(!msg.contains(env!("CARGO_MANIFEST_DIR")), "{msg}");
    assert!(msg.contains("failed to run main module `trap.wasm`"), "{msg}");
    assert!(msg.contains("wasm backtrace"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_start_refused_for_lack_of_room_leaves_the_old_trace_and_no_file() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["25"]);
    let before = std::fs::read(&trace).unwrap();
    let names = listing(dir.path());
    let wasm = fixture("fib-O2.wasm");
    // A file size limit of 4 KiB: the trace's first space cannot be
    // allocated, so the recording cannot start.
    for output in ["t.wrec", "new.wrec"] {
        let script = format!(
            "ulimit -f 8 && exec {} --no-cache -o {output} {} 25",
            bin("wrec").display(),
            wasm.display()
        );
        let out = run(Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path()));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("wrec: error: "), "{err}");
        assert!(err.contains(output), "{err}");
        assert_eq!(std::fs::read(&trace).unwrap(), before, "the old trace changed");
        assert_eq!(listing(dir.path()), names, "a file was left behind");
    }
}
