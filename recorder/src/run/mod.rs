//! Running a WASI program under the recorder, the way `wasmtime run` runs
//! it: a command module (WASI preview 1) through its `_start` export (see
//! `module.rs`), or a command component (WASI 0.2) through its
//! `wasi:cli/run` export (see `component.rs`).
//!
//! - Like `wasmtime run`, the guest runs on a fiber (`call_async` inside a
//!   Tokio runtime's `block_on` on this thread) with WASI's async host
//!   functions: a WASI call that is ready at once (most are: clocks, writes
//!   to a terminal, a file or a pipe) costs a poll of its future, not a trip
//!   into the runtime.
//! - The guest gets inherited stdin, stdout and stderr, its arguments
//!   (`argv[0]` is the module's file name), only the environment variables
//!   given with `--env`, and only the directories given with `--dir`.
//! - Where the time of a WASI call that waits goes: file I/O blocks on the
//!   guest's thread, as `wasmtime run` does without a timeout
//!   (`allow_blocking_current_thread`), so its time is the guest thread's,
//!   wall-clock and CPU (the kernel's work for it included), instead of a
//!   helper thread's that nobody samples. A call that waits for a timer or
//!   for readiness (`poll_oneoff`'s sleeps, a read from a pipe that is not
//!   ready) switches the fiber out and the thread waits in the executor:
//!   wall-clock samples taken meanwhile carry the wasm stack of the waiting
//!   call (see `sampler::fiber_stacks`), and their CPU time is the thread's,
//!   near zero while it sleeps. So a wall-clock profile shows where the
//!   guest waited, and a CPU-weighted one where it computed.
//! - Exit status: the guest's own (`proc_exit` or 0 when `_start` returns),
//!   134 (128 + SIGABRT, like `wasmtime run` on Unix) for a trap, and 1 for a
//!   host error while running; the trap or error is printed as `wasmtime
//!   run` prints it (`Error: ` and the error chain with the wasm backtrace).
//!   Failures before the guest starts (unreadable or invalid module, bad
//!   `--dir`, missing imports, trace not writable) are [`RunError`]s and
//!   leave no trace behind.

use std::path::{Path, PathBuf};

use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::{ExitInfo, ExitKind, Recorder, RecorderOptions, Summary};

mod component;
mod module;
pub mod serve;

/// The exit code for a trap: 128 + SIGABRT, as `wasmtime run` uses on Unix.
pub const TRAP_EXIT_CODE: i32 = 128 + libc::SIGABRT;
/// The exit code for wrec's own errors and for host errors.
pub const ERROR_EXIT_CODE: i32 = 1;

/// What to do with imports the WASI linker does not provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownImports {
    /// Refuse to run (the default, like `wasmtime run`).
    #[default]
    Error,
    /// Define unknown functions as functions that trap when called.
    Trap,
    /// Define unknown functions as functions returning default values (zeros).
    DefaultValues,
}

/// An environment variable for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub key: String,
    /// `None`: inherit the value from wrec's environment (skipped if unset).
    pub value: Option<String>,
}

impl EnvVar {
    /// Parses `KEY=VALUE` or `KEY`.
    pub fn parse(s: &str) -> Result<EnvVar, String> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!("`{s}`: expected KEY=VALUE or KEY"));
        }
        Ok(EnvVar {
            key: key.to_owned(),
            value,
        })
    }
}

/// A host directory preopened for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMapping {
    pub host: PathBuf,
    /// The name the guest sees.
    pub guest: String,
}

impl DirMapping {
    /// Parses `HOST` (seen under the same name by the guest) or `HOST::GUEST`.
    pub fn parse(s: &str) -> Result<DirMapping, String> {
        let (host, guest) = match s.split_once("::") {
            Some((h, g)) => (h, g),
            None => (s, s),
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!("`{s}`: expected HOST or HOST::GUEST"));
        }
        Ok(DirMapping {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
        })
    }
}

/// Everything [`run`] needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The WASI command: a core module (binary or text format) or a WASI 0.2
    /// component exporting `wasi:cli/run`.
    pub wasm: PathBuf,
    /// The guest's arguments after `argv[0]`.
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub dirs: Vec<DirMapping>,
    pub unknown_imports: UnknownImports,
    /// Use Wasmtime's code cache (on by default, like `wasmtime run`): a
    /// module compiled once starts without recompiling. The cache uses
    /// Wasmtime's usual configuration (`$HOME/.config/wasmtime/config.toml`
    /// if present, else the default directory); its key includes the engine
    /// configuration, so wrec's entries never mix with differently
    /// configured ones. If the cache cannot be set up, compilation goes on
    /// without it.
    pub cache: bool,
    /// Install the call hook ([`crate::ThreadSampler::call_hook`]), which
    /// records the wasm/host boundary at every host call. Off by default: it
    /// costs ~25 ns per host call (Wasmtime's hook mechanism plus a
    /// frame-pointer walk; 5–7% on a program making 2.5 M host calls a second)
    /// and without it the signal handler finds the wasm callers of a host
    /// sample by itself (frame pointers, else a bounded stack scan). With it,
    /// the boundary of every host call is exact instead of found.
    pub call_hook: bool,
    /// The trace to write.
    pub output: PathBuf,
    /// Print no summary line when a stop signal ends the run (see
    /// [`crate::STOP_SIGNALS`]; otherwise the caller prints it).
    pub quiet: bool,
    /// How to record: interval, clock, output policy, trace growth, CPU
    /// reads. Its `args` are not used: the trace records the guest's
    /// ([`RunOptions::guest_argv`]).
    pub recording: RecorderOptions,
}

impl RunOptions {
    /// Options with wrec's defaults for `wasm`, writing `<stem>.wrec` in the
    /// current directory.
    pub fn new(wasm: impl Into<PathBuf>) -> RunOptions {
        let wasm = wasm.into();
        let output = default_output(&wasm);
        RunOptions {
            wasm,
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            unknown_imports: UnknownImports::Error,
            cache: true,
            call_hook: false,
            output,
            quiet: false,
            recording: RecorderOptions::default(),
        }
    }

    /// `argv` as the guest sees it.
    pub fn guest_argv(&self) -> Vec<String> {
        let argv0 = self
            .wasm
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.wasm.to_string_lossy().into_owned());
        std::iter::once(argv0)
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// `<wasm file stem>.wrec` in the current directory.
pub fn default_output(wasm: &Path) -> PathBuf {
    let stem = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "trace".into());
    PathBuf::from(format!("{stem}.wrec"))
}

/// A failure before the guest started: one line, no trace written.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunError(pub String);

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The exit code to use: the guest's status, [`TRAP_EXIT_CODE`] or
    /// [`ERROR_EXIT_CODE`].
    pub exit_code: i32,
    /// The trap or host error, formatted like `wasmtime run` (to print on
    /// stderr as is).
    pub error: Option<String>,
    /// The finished trace, or why finishing it failed.
    pub summary: Result<Summary, crate::Error>,
}

/// Compiles and runs the program in `opts` while recording it.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, RunError> {
    let wasm_name = opts.wasm.display().to_string();
    let bytes =
        std::fs::read(&opts.wasm).map_err(|e| RunError(format!("cannot read {wasm_name}: {e}")))?;
    let mut config = Config::new();
    crate::configure(&mut config);
    if opts.cache {
        if let Ok(cache) = wasmtime::Cache::from_file(None) {
            config.cache(Some(cache));
        }
    }
    let engine =
        Engine::new(&config).map_err(|e| RunError(format!("cannot set up Wasmtime: {e:#}")))?;
    if wasmparser::Parser::is_component(&bytes) {
        component::run(opts, &engine, &bytes)
    } else {
        module::run(opts, &engine, &bytes)
    }
}

/// What a prepared program gives [`record`]: how to describe it in the
/// trace, and how to run it (on this thread; the sampler is running).
pub(super) struct Program<T, A, R>
where
    T: 'static,
    A: FnOnce(&Recorder) -> Result<(), crate::Error>,
    R: FnOnce(&mut Store<T>) -> wasmtime::Result<()>,
{
    /// The guest's `argv`, for the trace.
    pub(super) argv: Vec<String>,
    /// The store, its WASI context built.
    pub(super) store: Store<T>,
    /// Adds the program's module records.
    pub(super) describe: A,
    /// Instantiates and runs it.
    pub(super) run: R,
    /// The context `wasmtime run` gives a failure, e.g. "failed to run main
    /// module `app.wasm`".
    pub(super) context: String,
}

/// Records one run of a prepared program: the trace (created only now that
/// everything the guest needs is there), its module records, the sampler
/// around the run, and the end record with the guest's exit.
pub(super) fn record<T, A, R>(
    opts: &RunOptions,
    p: Program<T, A, R>,
) -> Result<RunOutcome, RunError>
where
    T: 'static,
    A: FnOnce(&Recorder) -> Result<(), crate::Error>,
    R: FnOnce(&mut Store<T>) -> wasmtime::Result<()>,
{
    let Program {
        argv,
        mut store,
        describe,
        run,
        context,
    } = p;
    let recorder = Recorder::create(
        &opts.output,
        RecorderOptions {
            args: argv,
            ..opts.recording.clone()
        },
    )
    .map_err(|e| RunError(e.to_string()))?;
    // From here a stop signal finishes the trace and exits (128 + signal).
    let quiet = opts.quiet;
    let _stop = crate::signals::stop_on_signals(&recorder, move |code, summary| {
        report_stop(code, summary, quiet)
    })
    .map_err(|e| RunError(format!("cannot catch stop signals: {e}")))?;
    describe(&recorder).map_err(|e| RunError(e.to_string()))?;
    let sampler = recorder
        .thread_sampler("main")
        .map_err(|e| RunError(e.to_string()))?;
    if opts.call_hook {
        sampler.install_call_hook(&mut store);
    }
    let sampling = sampler
        .start()
        .map_err(|e| RunError(format!("cannot start the sampler: {e}")))?;

    let result = run(&mut store);

    // Stops sampling and writes the thread's end record.
    drop(sampling);

    let (exit, error) = match result {
        Ok(()) => (ExitInfo::exited(0), None),
        Err(e) => classify(e, context, &opts.wasm),
    };
    let exit_code = exit.status as i32;
    // The store (and WASI's open files) go before the trace is finished.
    drop(store);
    let summary = recorder.finish(exit);
    Ok(RunOutcome {
        exit_code,
        error,
        summary,
    })
}

/// The guest's WASI context as `wasmtime run` builds it from the same
/// options: inherited stdio, `argv`, the `--env` variables and the `--dir`
/// directories, blocking file I/O on the guest's thread.
pub(super) fn wasi_context(opts: &RunOptions, argv: &[String]) -> Result<WasiCtxBuilder, RunError> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio()
        .allow_blocking_current_thread(true)
        .args(argv);
    for var in &opts.env {
        match &var.value {
            Some(v) => {
                wasi.env(&var.key, v);
            }
            None => {
                if let Ok(v) = std::env::var(&var.key) {
                    wasi.env(&var.key, v);
                }
            }
        }
    }
    for dir in &opts.dirs {
        wasi.preopened_dir(&dir.host, &dir.guest, FsPerms::ReadWrite)
            .map_err(|e| {
                RunError(format!(
                    "--dir {}: cannot open {}: {}",
                    dir.guest,
                    dir.host.display(),
                    one_line(&e)
                ))
            })?;
    }
    Ok(wasi)
}

/// Turns a failed run into an exit record and the text `wasmtime run` prints
/// (`context` on top of the error chain).
fn classify(e: wasmtime::Error, context: String, wasm: &Path) -> (ExitInfo, Option<String>) {
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return (ExitInfo::exited(i64::from(exit.0)), None);
    }
    let trapped = e.is::<wasmtime::Trap>();
    let e = e.context(context);
    let text = format!("{e:?}");
    let (kind, status) = if trapped {
        (ExitKind::Trapped, TRAP_EXIT_CODE)
    } else {
        (ExitKind::Failed, ERROR_EXIT_CODE)
    };
    (
        ExitInfo {
            kind,
            status: i64::from(status),
            // No host backtrace, no host directory: the trace is shared.
            message: crate::redact::trap_message(&text, wasm),
        },
        Some(format!("Error: {text}")),
    )
}

/// What wrec prints when a stop signal ended the run (`code` is 128 + the
/// signal).
fn report_stop(code: i32, summary: Result<Summary, crate::Error>, quiet: bool) {
    use std::io::Write;
    let name = signal_hook::low_level::signal_name(code - 128).unwrap_or("a signal");
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "wrec: {name} received: the guest was stopped");
    match summary {
        Ok(s) if !quiet => {
            let _ = writeln!(err, "{}", summary_line(&s));
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(err, "wrec: error: the trace could not be finished: {e}");
        }
    }
}

/// An error chain on one line (`a: b: c`).
pub(super) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// Quotes `s` for a POSIX shell if it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./,:=+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The one line wrec prints at the end.
pub fn summary_line(s: &Summary) -> String {
    let path = s.path.display().to_string();
    let mut line = format!("wrec: trace {path}: {} samples, {} lost", s.samples, s.lost);
    if let Some(full) = &s.full {
        line.push_str(&format!(" (the trace stopped growing: {full})"));
    }
    line.push_str(&format!(
        "; analyze with: wanalyze {} --dwarf",
        shell_quote(&path)
    ));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_env_and_dirs() {
        assert_eq!(
            EnvVar::parse("A=b=c").unwrap(),
            EnvVar {
                key: "A".into(),
                value: Some("b=c".into())
            }
        );
        assert_eq!(EnvVar::parse("HOME").unwrap().value, None);
        assert!(EnvVar::parse("=x").is_err());
        let d = DirMapping::parse("/tmp/x::/data").unwrap();
        assert_eq!(
            (d.host, d.guest.as_str()),
            (PathBuf::from("/tmp/x"), "/data")
        );
        let d = DirMapping::parse(".").unwrap();
        assert_eq!((d.host, d.guest.as_str()), (PathBuf::from("."), "."));
        assert!(DirMapping::parse("::x").is_err());
    }

    #[test]
    fn names() {
        assert_eq!(
            default_output(Path::new("/a/b/fib-O2.wasm")),
            PathBuf::from("fib-O2.wrec")
        );
        let o = RunOptions::new("dir/prog.wasm");
        assert_eq!(o.guest_argv(), vec!["prog.wasm".to_string()]);
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("fib.wrec"), "fib.wrec");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
