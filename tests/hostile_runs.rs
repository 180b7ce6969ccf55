//! What the environment of a recording can do to it: a `RUST_BACKTRACE=1`
//! (common in CI) must not put wrec's own backtrace and host paths into the
//! trace, a start refused for lack of space must leave the file system
//! as it found it, and SIGINT, SIGTERM or SIGHUP (a terminal's Ctrl-C, a CI
//! job's time-out) must leave a finished trace and the status a killed
//! process has.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wrec_format::{Event, ExitKind, Record, Trace};
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
    assert!(
        msg.contains("failed to run main module `trap.wasm`"),
        "{msg}"
    );
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
        assert_eq!(
            std::fs::read(&trace).unwrap(),
            before,
            "the old trace changed"
        );
        assert_eq!(listing(dir.path()), names, "a file was left behind");
    }
}

/// A guest that computes forever without calling the host.
const FOREVER_WAT: &str = r#"(module
  (func $spin (loop $l (br $l)))
  (func $_start (export "_start") (call $spin)))
"#;

#[test]
fn sigint_sigterm_and_sighup_end_the_recording_with_a_finished_trace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("forever.wat"), FOREVER_WAT).unwrap();
    for (sig, name) in [(2, "SIGINT"), (15, "SIGTERM"), (1, "SIGHUP")] {
        let trace = dir.path().join(format!("{name}.wrec"));
        let mut child = wrec_cmd(dir.path(), &["-o", trace.to_str().unwrap(), "forever.wat"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The trace is put in place once the recording has started; then
        // some samples.
        while !trace.exists() {
            assert!(child.try_wait().unwrap().is_none(), "wrec ended early");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let st = Command::new("kill")
            .args([format!("-{sig}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let out = wait_bounded(child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{name}: wrec still running 60 s after the signal"));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(128 + sig), "{name}: {err}");
        assert_summary_line(&out, trace.to_str().unwrap());
        assert!(
            err.contains(&format!("wrec: {name} received")),
            "{name}: {err}"
        );

        // Finished: trimmed to its data, read whole, with the end record.
        let t = Trace::open(&trace).unwrap();
        assert_eq!(t.data_end(), std::fs::metadata(&trace).unwrap().len());
        let mut d = t.decoder();
        let (mut samples, mut end) = (0, None);
        while let Some(e) = d.next() {
            match e.unwrap_or_else(|e| panic!("{name}: {e}")) {
                Event::Sample(_) => samples += 1,
                Event::Record(Record::End(e)) => end = Some(e),
                _ => {}
            }
        }
        let end = end.unwrap_or_else(|| panic!("{name}: no end record"));
        assert_eq!(end.exit_kind, ExitKind::Signaled, "{name}");
        assert_eq!(end.status, i64::from(128 + sig), "{name}");
        assert!(end.message.contains(name), "{name}: {}", end.message);
        assert!(samples > 0, "{name}");
        assert_eq!(end.samples_written, samples, "{name}");
        let report = analyze_stdout(&trace, &["--format", "text"]);
        assert!(report.contains("spin"), "{report}");
    }
}

/// Waits for `child` at most `limit`; kills it and returns `None` after.
fn wait_bounded(mut child: std::process::Child, limit: Duration) -> Option<std::process::Output> {
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

/// The run-info record's interval.
fn recorded_interval_ns(trace: &Path) -> u64 {
    let t = Trace::open(trace).unwrap();
    let mut d = t.decoder();
    while let Some(e) = d.next() {
        if let Ok(Event::Record(Record::RunInfo(r))) = e {
            return r.interval_ns;
        }
    }
    panic!("{}: no run-info record", trace.display())
}

/// The shortest interval the CLI accepts must let the guest finish, on a
/// VM too, where a timer signal costs more than 10 us (there, before, the
/// guest never ran: still running after 100 s).
#[test]
fn the_shortest_accepted_interval_lets_the_guest_finish() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("fib-O2.wasm");
    let mut cmd = wrec_cmd(
        dir.path(),
        &[
            "--interval",
            "10us",
            "-o",
            "t.wrec",
            wasm.to_str().unwrap(),
            "30",
        ],
    );
    let out = run_with_timeout(&mut cmd, Duration::from_secs(300))
        .expect("the guest made no progress in 300 s at --interval 10us");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout(&out),
        "fib(30) = 832040 x 30, checksum 24961200\n",
        "{err}"
    );
    let trace = dir.path().join("t.wrec");
    let recorded = recorded_interval_ns(&trace);
    // Raised (on a VM) with one warning saying to what, which the trace
    // records; or, on a machine fast enough, kept.
    match err.lines().find(|l| l.contains("instead")) {
        Some(w) => {
            let to = w.split("sampling every ").nth(1).unwrap();
            let to = to.split(' ').next().unwrap();
            let us: u64 = to
                .strip_suffix("us")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{w}"));
            assert_eq!(recorded, us * 1000, "{w}");
            assert!(recorded > 10_000, "{w}");
        }
        None => assert_eq!(recorded, 10_000, "{err}"),
    }
}
