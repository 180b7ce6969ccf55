//! Paths that name something other than the file they once were: the
//! wasm path a trace recorded, a trace, a `--module` file or the
//! `addr2line` and `view` inputs naming a FIFO, a character device, a
//! directory or a (sparse) file far larger than any module. wanalyze must
//! neither block nor read without bound: a module the trace recorded is
//! skipped with one warning that says to pass `--module`, anything given on
//! the command line is refused with one error line naming it.
//!
//! Each run has a time limit and an address-space limit, so that what this
//! guards against fails the test instead of hanging it or filling memory.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use wrec_format::Record;
use wrec_testkit::*;

/// `wanalyze ARGS` with 60 s and 4 GiB of address space at most; panics
/// naming the run if it was still running at the limit.
fn wanalyze_bounded(args: &[&OsStr]) -> Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -v 4194304 && exec \"$0\" \"$@\"")
        .arg(bin("wanalyze"))
        .args(args);
    run_with_timeout(&mut c, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("wanalyze {args:?} still running after 60 s"))
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success());
}

/// The things a path can name instead of a module: (path, what the
/// message calls it).
fn impostors(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.wasm");
    mkfifo(&fifo);
    let huge = dir.join("huge.wasm");
    // Sparse: 2 GiB that take no room and would take 2 GiB to read.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let subdir = dir.join("dir.wasm");
    std::fs::create_dir(&subdir).unwrap();
    vec![
        ("/dev/zero".into(), "a character device, not a regular file"),
        (fifo, "a FIFO (named pipe), not a regular file"),
        (huge, "larger than 1 GiB"),
        (subdir, "a directory, not a regular file"),
    ]
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

#[test]
fn a_recorded_module_path_naming_no_module_file_is_skipped_with_one_warning() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["28"]);
    let wasm = fixture("fib-O2.wasm");
    for (i, (target, what)) in impostors(dir.path()).into_iter().enumerate() {
        let hostile = dir.path().join(format!("hostile-{i}.wrec"));
        rewrite_trace(&trace, &hostile, |r| {
            if let Record::Module(m) = r {
                m.path = target.to_str().unwrap().to_owned();
            }
        });
        let out = wanalyze_bounded(&[
            hostile.as_os_str(),
            os("--format"),
            os("folded"),
            os("--quiet"),
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{}: {err}", target.display());
        let warning = format!(
            "wanalyze: warning: {}: the module recorded in the trace is {what}",
            target.display()
        );
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with(&warning)).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].ends_with("--module PATH"), "{}", lines[0]);
        // Its samples are unknown code, not wrong names.
        assert!(!stdout(&out).contains("fib"), "{}", stdout(&out));

        // With the module given, the same trace is whole again.
        let out = wanalyze_bounded(&[
            hostile.as_os_str(),
            os("--format"),
            os("folded"),
            os("--quiet"),
            os("--module"),
            wasm.as_os_str(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("fib;fib"), "{}", stdout(&out));
        assert!(!stderr(&out).contains("module"), "{}", stderr(&out));
    }
}

#[test]
fn a_trace_or_module_given_that_is_no_regular_file_is_refused_in_one_line() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["25"]);
    for (target, what) in impostors(dir.path()) {
        let t = target.as_os_str();
        // A trace is mapped, not read: a large file is simply no trace.
        let as_trace = if what.starts_with("larger") {
            "not a wrec trace"
        } else {
            what
        };
        let runs: Vec<(Vec<&OsStr>, &str)> = vec![
            (vec![t, os("--format"), os("text")], as_trace),
            (vec![os("view"), t], as_trace),
            (
                vec![
                    trace.as_os_str(),
                    os("--format"),
                    os("text"),
                    os("--module"),
                    t,
                ],
                what,
            ),
            (vec![os("addr2line"), t, os("0x10")], what),
        ];
        for (args, what) in runs {
            let out = wanalyze_bounded(&args);
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            let want = format!("wanalyze: error: {}: ", target.display());
            assert!(
                err.starts_with(&want) && err.contains(what),
                "{args:?}: {err}"
            );
        }
    }
}

/// A module whose file name is not UTF-8 (here the byte 0xff): the trace
/// records paths as UTF-8 text, with U+FFFD for such bytes, and wanalyze
/// finds the file whose name reads so and whose hash is the recorded one,
/// without --module.
#[test]
fn a_module_with_a_non_utf8_file_name_is_found_from_the_trace() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join(OsString::from_vec(b"d\xfeir".to_vec()));
    std::fs::create_dir(&sub).unwrap();
    // A decoy with the same lossy name and other bytes, which the hash
    // rules out.
    std::fs::write(
        sub.join(OsString::from_vec(b"fib\xfe.wasm".to_vec())),
        b"\0asm",
    )
    .unwrap();
    let wasm = sub.join(OsString::from_vec(b"fib\xff.wasm".to_vec()));
    std::fs::copy(fixture("fib-O2.wasm"), &wasm).unwrap();
    let trace = dir.path().join("t.wrec");
    let out = run(wrec_cmd(dir.path(), &["-o", "t.wrec"]).arg(&wasm).arg("25"));
    assert!(out.status.success(), "{}", stderr(&out));
    let stacks = folded(&trace, &[]);
    assert!(
        stacks.iter().any(|(s, _)| s.iter().any(|f| f == "fib")),
        "{stacks:?}"
    );
}
