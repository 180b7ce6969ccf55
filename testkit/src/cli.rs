//! Running `wrec` and `wanalyze` as a user would.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::firefox::FxProfile;
use crate::trace::Loaded;

/// A binary of the workspace (`wrec`, `wanalyze`, `wrec-bench`), built by
/// `cargo test --workspace` (cargo builds the binaries of every package
/// whose integration tests it runs).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built; run `cargo test --workspace` (or `cargo build --workspace --bins` first)",
        p.display()
    );
    p
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run")
}

/// Runs `cmd` (stdin from /dev/null) for at most `limit`; `None` if it
/// was still running then (it is killed): a hang is a failure, not a stuck
/// test.
pub fn run_with_timeout(cmd: &mut Command, limit: std::time::Duration) -> Option<Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The pipes are drained by threads, so a chatty child cannot block.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// Lossy UTF-8 of a process's output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn stderr(o: &Output) -> String {
    text(&o.stderr)
}

pub fn stdout(o: &Output) -> String {
    text(&o.stdout)
}

/// `wrec --no-cache ARGS` in `dir` (Wasmtime's code cache off: hermetic).
pub fn wrec_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("wrec"));
    c.current_dir(dir).arg("--no-cache").args(args);
    c
}

/// Runs [`wrec_cmd`].
pub fn wrec(dir: &Path, args: &[&str]) -> Output {
    wrec_cmd(dir, args).output().expect("run wrec")
}

/// Records `fixture_name` with `wrec WREC_OPTS -o t.wrec FIXTURE ARGS`, in a
/// fresh directory that is also the guest's working directory; returns the
/// directory (keep it alive), the trace's path and wrec's output.
pub fn record(
    fixture_name: &str,
    wrec_opts: &[&str],
    args: &[&str],
) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.wrec");
    let wasm = crate::fixture(fixture_name);
    let mut a: Vec<&str> = wrec_opts.to_vec();
    a.extend(["-o", "t.wrec", wasm.to_str().unwrap()]);
    a.extend(args);
    let out = wrec(dir.path(), &a);
    (dir, trace, out)
}

/// [`record`], asserting that wrec succeeded.
pub fn record_ok(
    fixture_name: &str,
    wrec_opts: &[&str],
    args: &[&str],
) -> (tempfile::TempDir, PathBuf) {
    let (dir, trace, out) = record(fixture_name, wrec_opts, args);
    assert!(out.status.success(), "wrec failed: {}", stderr(&out));
    (dir, trace)
}

/// [`record`], then reads the trace back completely (it must be whole).
pub fn record_loaded(
    fixture_name: &str,
    wrec_opts: &[&str],
    args: &[&str],
) -> (Output, Loaded, tempfile::TempDir) {
    let (dir, trace, out) = record(fixture_name, wrec_opts, args);
    assert!(
        trace.exists(),
        "no trace; status {:?}, stderr:\n{}",
        out.status,
        stderr(&out)
    );
    let loaded = Loaded::load(&trace, &crate::fixture(fixture_name));
    (out, loaded, dir)
}

/// Asserts wrec printed exactly one summary line naming the trace.
pub fn assert_summary_line(out: &Output, trace: &str) {
    let stderr = stderr(out);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("wrec: trace "))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one summary line, stderr:\n{stderr}"
    );
    assert!(lines[0].contains(trace), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("wanalyze {trace} --dwarf")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(" samples, ") && lines[0].contains(" lost"),
        "{}",
        lines[0]
    );
}

/// `wanalyze ARGS`.
pub fn wanalyze(args: &[&OsStr]) -> Output {
    run(Command::new(bin("wanalyze")).args(args))
}

/// Runs `wanalyze TRACE EXTRA...` and returns stdout (asserting success).
pub fn analyze_stdout(trace: &Path, extra: &[&str]) -> String {
    let mut args: Vec<&OsStr> = vec![trace.as_os_str()];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    let out = wanalyze(&args);
    assert!(out.status.success(), "wanalyze failed: {}", stderr(&out));
    stdout(&out)
}

/// Folded stacks of a trace: (frames root first, count).
pub fn folded(trace: &Path, extra: &[&str]) -> Vec<(Vec<String>, u64)> {
    let mut a = vec!["--format", "folded", "--quiet"];
    a.extend_from_slice(extra);
    analyze_stdout(trace, &a)
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').expect("folded line");
            (
                stack.split(';').map(str::to_owned).collect(),
                n.parse().expect("count"),
            )
        })
        .collect()
}

/// Self-time share of each leaf function in folded stacks.
pub fn self_shares(f: &[(Vec<String>, u64)]) -> HashMap<String, f64> {
    let total: u64 = f.iter().map(|(_, n)| n).sum();
    let mut m = HashMap::new();
    for (s, n) in f {
        *m.entry(s.last().cloned().unwrap_or_default())
            .or_insert(0.0) += *n as f64 / total as f64;
    }
    m
}

/// Runs `wanalyze TRACE EXTRA... --quiet --out DIR/p.json` and reads the
/// Firefox profile back.
pub fn firefox_profile(trace: &Path, dir: &Path, extra: &[&str]) -> FxProfile {
    let out = dir.join("p.json");
    let mut args = extra.to_vec();
    args.extend(["--quiet", "--out", out.to_str().unwrap()]);
    analyze_stdout(trace, &args);
    FxProfile::load(&out)
}

/// Whether the real `go` is here, for `go tool pprof`; without it, says
/// `SKIPPED: ...` (Debian's `golang-go` brings it; `.ci/run` installs it).
pub fn have_go() -> bool {
    let ok = Command::new("go").arg("version").output().is_ok();
    if !ok {
        println!("SKIPPED: no `go` (Debian golang-go) for go tool pprof");
    }
    ok
}

/// `go tool pprof ARGS PROFILE`'s output, or `None` without `go`.
pub fn go_pprof(args: &[&str], profile: &Path) -> Option<String> {
    let o = Command::new("go")
        .current_dir(crate::root())
        .args(["tool", "pprof"])
        .args(args)
        .arg(profile)
        .env("PPROF_TMPDIR", std::env::temp_dir())
        .output()
        .ok()?;
    assert!(o.status.success(), "go tool pprof {args:?}: {}", stderr(&o));
    Some(stdout(&o))
}
