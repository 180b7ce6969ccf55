//! Helpers for the end-to-end tests: run `wrec` and `wanalyze` as a user
//! would, and read what they wrote.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// A binary of the workspace, built by `cargo test --workspace` (cargo builds
/// the binaries of every package whose integration tests it runs).
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

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Records `fixture` with `args`, in a fresh directory that is also the
/// guest's preopened `.`; returns the directory and the trace's path.
pub fn record(
    fixture_name: &str,
    wrec_opts: &[&str],
    args: &[&str],
) -> (tempfile::TempDir, PathBuf, Output) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.wrec");
    let out = run(Command::new(bin("wrec"))
        .args(wrec_opts)
        .arg("-o")
        .arg(&trace)
        .arg(fixture(fixture_name))
        .args(args)
        .current_dir(dir.path()));
    (dir, trace, out)
}

pub fn record_ok(
    fixture_name: &str,
    wrec_opts: &[&str],
    args: &[&str],
) -> (tempfile::TempDir, PathBuf) {
    let (dir, trace, out) = record(fixture_name, wrec_opts, args);
    assert!(out.status.success(), "wrec failed: {}", stderr(&out));
    (dir, trace)
}

pub fn wanalyze(args: &[&std::ffi::OsStr]) -> Output {
    run(Command::new(bin("wanalyze")).args(args))
}

/// Runs wanalyze on a trace with extra arguments and returns stdout (asserting success).
pub fn analyze_stdout(trace: &Path, extra: &[&str]) -> String {
    let mut args: Vec<&std::ffi::OsStr> = vec![trace.as_os_str()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let out = wanalyze(&args);
    assert!(out.status.success(), "wanalyze failed: {}", stderr(&out));
    stdout(&out)
}

/// Folded stacks: (frames root first, count).
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

/// One frame of a Firefox profile sample, as the profiler would show it.
#[derive(Debug, Clone)]
pub struct FxFrame {
    pub func: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub inline_depth: u64,
    pub address: i64,
    pub category: u64,
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

/// A Firefox processed profile, read back.
pub struct FxProfile {
    pub json: serde_json::Value,
}

impl FxProfile {
    pub fn load(path: &Path) -> FxProfile {
        let bytes = std::fs::read(path).unwrap();
        FxProfile {
            json: serde_json::from_slice(&bytes).expect("valid JSON"),
        }
    }

    pub fn threads(&self) -> &Vec<serde_json::Value> {
        self.json["threads"].as_array().expect("threads")
    }

    /// Every sample of thread `t` as its frames, leaf first.
    pub fn samples(&self, t: usize) -> Vec<Vec<FxFrame>> {
        let th = &self.threads()[t];
        let strings: Vec<&str> = th["stringArray"]
            .as_array()
            .expect("stringArray")
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let col = |table: &str, c: &str| -> Vec<serde_json::Value> {
            th[table][c]
                .as_array()
                .unwrap_or_else(|| panic!("{table}.{c}"))
                .clone()
        };
        let (st_frame, st_prefix) = (col("stackTable", "frame"), col("stackTable", "prefix"));
        let (fr_func, fr_line, fr_col, fr_depth, fr_addr, fr_cat) = (
            col("frameTable", "func"),
            col("frameTable", "line"),
            col("frameTable", "column"),
            col("frameTable", "inlineDepth"),
            col("frameTable", "address"),
            col("frameTable", "category"),
        );
        let (fn_name, fn_file) = (col("funcTable", "name"), col("funcTable", "fileName"));
        let frame = |f: usize| {
            let func = fr_func[f].as_u64().unwrap() as usize;
            FxFrame {
                func: strings[fn_name[func].as_u64().unwrap() as usize].to_owned(),
                file: fn_file[func]
                    .as_u64()
                    .map(|i| strings[i as usize].to_owned()),
                line: fr_line[f].as_u64(),
                column: fr_col[f].as_u64(),
                inline_depth: fr_depth[f].as_u64().unwrap(),
                address: fr_addr[f].as_i64().unwrap(),
                category: fr_cat[f].as_u64().unwrap_or(0),
            }
        };
        col("samples", "stack")
            .iter()
            .map(|s| {
                let mut frames = Vec::new();
                let mut cur = s.as_u64();
                while let Some(st) = cur {
                    frames.push(frame(st_frame[st as usize].as_u64().unwrap() as usize));
                    cur = st_prefix[st as usize].as_u64();
                }
                frames
            })
            .collect()
    }
}

/// Lines `first..=last` of the C function `name` in a fixture's source: from
/// the line that opens its definition to its closing brace.
pub fn function_lines(source: &str, name: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(root().join(source)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| {
            !l.starts_with(' ')
                && !l.starts_with('\t')
                && !l.starts_with('*')
                && !l.starts_with("/*")
                && l.contains(&format!("{name}("))
                && !l.trim_end().ends_with(';')
        })
        .unwrap_or_else(|| panic!("no definition of {name} in {source}"));
    let end = (start..lines.len())
        .find(|&i| lines[i].starts_with('}'))
        .expect("closing brace");
    (start as u64 + 1, end as u64 + 1)
}
