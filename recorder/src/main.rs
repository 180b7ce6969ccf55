//! `wrec`: run a WASI program on Wasmtime and record a sampling profile.
//! A thin command line over the `wrec` library (see `wrec::run`).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use wrec::run::serve::{ServeOptions, DEFAULT_ADDR};
use wrec::run::{self, shell_quote, DirMapping, EnvVar, RunOptions, UnknownImports};
use wrec::TimerClock;

mod guest_args;

const AFTER_HELP: &str = "\
Examples:
  wrec app.wasm                          record app.wasm, write app.wrec
  wrec -o run1.wrec app.wasm input.txt   pass input.txt to the guest
  wrec --interval 100us app.wasm         sample 10 000 times a second
  wrec --dir data::/data --env LANG=C app.wasm /data/in.csv
  wanalyze app.wrec --dwarf              look at the profile
  wrec serve --addr 127.0.0.1:8080 proxy.wasm
                                         serve a wasi:http/proxy component
                                         (see `wrec serve --help`)

`wrec serve` is a subcommand only as the first argument; a module file
named `serve` runs as `wrec ./serve`.

Everything after the module goes to the guest, exactly as typed and options
included, as with `wasmtime run` (`wrec app.wasm --help` passes --help to
app.wasm). Two exceptions: `--` ends wrec's options (`wrec app.wasm -- ARGS`
gives the guest ARGS), and when everything after the module is wrec's own
options (`wrec app.wasm -o t.wrec`), wrec takes them and says so. The guest
sees argv[0] = the module's file name, the inherited stdin/stdout/stderr,
only the variables given with --env and only the directories given with
--dir.

Exit status: the guest's own exit status; 134 (128 + SIGABRT, as `wasmtime
run`) if the guest trapped, after printing the trap and its wasm backtrace;
1 if wrec itself failed (cannot read or compile the module, missing import,
cannot write the trace: no trace is left behind then) or the host failed
while running the guest; 2 for a command-line error; 128 + the signal's
number after SIGINT, SIGTERM or SIGHUP, which stop the guest and end the
recording. Whatever the status, a trace that was started is finished and
readable, and wrec prints one line saying where it is and how many samples
it holds.

Output file: created with default permissions beside the output path and
renamed over it once the recording has started (a start that fails leaves
the path as it was); an existing wrec trace is replaced. Without --force, wrec refuses to write through a symbolic link
and to overwrite a file that is not a wrec trace.";

/// Run a WASI program on Wasmtime and record a sampling profile of it.
///
/// A timer interrupts the guest's thread every --interval and records the
/// raw wasm stack (frame-pointer walk, no instrumentation, the guest's code
/// is exactly what `wasmtime run` runs). `wanalyze` turns the trace into
/// function names, source lines and Firefox Profiler profiles.
#[derive(Parser, Debug)]
#[command(name = "wrec", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    opts: Opts,

    /// The WASI program to run: a command module (.wasm, or .wat text) or
    /// a command component (WASI 0.2)
    #[arg(value_name = "WASM")]
    wasm: PathBuf,

    /// Arguments for the guest
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    args: Vec<OsString>,
}

const SERVE_AFTER_HELP: &str = "\
Examples:
  wrec serve proxy.wasm                      listen on 0.0.0.0:8080, write proxy.wrec
  wrec serve --addr 127.0.0.1:0 proxy.wasm   a free port on the loopback only
  wanalyze proxy.wrec --dwarf                one thread per worker

As `wasmtime serve`: a Tokio runtime with one worker thread per CPU, a
fresh instance of the component for every request, HTTP/1.1 with
keep-alive. wrec prints `Serving HTTP on http://ADDR/` on stderr once it
listens. Every worker thread that runs a request is sampled by its own
timer and appears in the trace as `worker N`, but only while it runs a
request's guest code: between requests a worker is idle, takes no samples
(its timer stops after two intervals) and its CPU time is not counted, so
the profile and its CPU time are the requests'. Unlike `wasmtime serve`,
outgoing HTTP requests (`wasi:http/outgoing-handler`) are denied
(HTTP-request-denied), the guest's output has no `stdout [N] ::`
prefixes, and --call-hook is refused (a request may move between workers).

Every request is recorded with its index, method and path (query included,
up to 256 bytes: mind secrets in query strings when sharing a profile) and
the span a worker ran it; wanalyze shows each as a marker on its worker's
thread, labels each pprof sample with its request (`-tagfocus
request=PATH`), and its text report names the slowest.

Stopping: the first SIGINT, SIGTERM or SIGHUP (Ctrl-C) stops accepting
connections, closes idle ones, lets the requests in progress finish, then
finishes the trace and exits 0; a second one finishes the trace at once and
exits with 128 + its number.

The default address, 0.0.0.0:8080 as `wasmtime serve`'s, listens on every
interface: give --addr 127.0.0.1:PORT to keep the server to this machine.";

/// Serve a wasi:http/proxy component over HTTP, as `wasmtime serve` does, and
/// record a sampling profile of every worker thread that runs it.
#[derive(Parser, Debug)]
#[command(name = "wrec serve", bin_name = "wrec serve", after_help = SERVE_AFTER_HELP)]
struct ServeCli {
    #[command(flatten)]
    opts: Opts,

    /// Socket address to listen on (port 0: a free port, printed at start)
    #[arg(long, value_name = "SOCKADDR", default_value = DEFAULT_ADDR)]
    addr: std::net::SocketAddr,

    /// The wasi:http/proxy component to serve
    #[arg(value_name = "WASM")]
    wasm: PathBuf,
}

/// wrec's options alone: what the arguments after the module must all be
/// for wrec to take them as its own.
#[derive(Parser, Debug)]
#[command(name = "wrec", disable_help_flag = true, disable_version_flag = true)]
struct OptionsOnly {
    #[command(flatten)]
    _opts: Opts,
}

#[derive(Args, Debug)]
struct Opts {
    /// Where to write the trace [default: <WASM file stem>.wrec in the current directory]
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,

    /// Sampling interval: a number and a unit (ns, us, ms, s), between 10us
    /// and 10s, e.g. 100us, 250us, 0.5ms, 10ms. With --clock wall, an
    /// interval under 3 times what a timer signal costs on this machine
    /// (measured at start: ~25 us on a VM) is raised to that, with a warning
    /// (so that the guest keeps most of the CPU)
    #[arg(long, value_name = "DURATION", default_value = "1ms", value_parser = wrec::parse_interval)]
    interval: Duration,

    /// Which clock drives sampling: `wall` samples at regular real-time
    /// intervals, whether the guest computes or waits (in a WASI call, say);
    /// `cpu` samples only while the guest's thread uses CPU (such timers fire
    /// on the kernel's scheduler tick, often every 4 ms, so short intervals are
    /// coarser than asked). Every sample carries both clocks either way.
    #[arg(long, value_enum, default_value_t = ClockArg::Wall)]
    clock: ClockArg,

    /// Set an environment variable for the guest (KEY=VALUE), or pass on
    /// wrec's own value of KEY (KEY alone; skipped if wrec has none).
    /// Repeatable. The guest sees no other variables.
    #[arg(long = "env", value_name = "KEY[=VALUE]", value_parser = EnvVar::parse)]
    env: Vec<EnvVar>,

    /// Give the guest a host directory, read-write, under the name GUEST
    /// (default: the same as HOST). Repeatable. Without it the guest has no
    /// filesystem access.
    #[arg(long = "dir", value_name = "HOST[::GUEST]", value_parser = DirMapping::parse)]
    dirs: Vec<DirMapping>,

    /// Define imports that WASI does not provide as functions that trap when called
    #[arg(long, conflicts_with = "default_values_unknown_imports")]
    trap_unknown_imports: bool,

    /// Define imports that WASI does not provide as functions returning zeros
    #[arg(long)]
    default_values_unknown_imports: bool,

    /// Do not use Wasmtime's compiled-code cache (by default a module compiled
    /// once starts without recompiling, as with `wasmtime run`)
    #[arg(long)]
    no_cache: bool,

    /// Write through a symbolic link at the output path, and overwrite a file
    /// that is not a wrec trace
    #[arg(long)]
    force: bool,

    /// Do not print the summary line at the end
    #[arg(short, long)]
    quiet: bool,

    /// Print sampler diagnostics at the end (handler cost, flag counts)
    #[arg(long, hide = true)]
    stats: bool,

    /// Track every call from wasm into the host with Wasmtime's call hook.
    /// Without it (the default), a sample taken in host code (a WASI call, a
    /// libc routine) finds the wasm functions that made the call by walking
    /// frame pointers, or, where host code keeps none (parts of glibc), by a
    /// bounded scan of the stack; that costs nothing between samples. The
    /// hook records the exact wasm/host boundary at every host call instead,
    /// for about 25 ns per call: a few percent more CPU time for programs that
    /// make millions of host calls a second.
    #[arg(long, overrides_with = "no_call_hook")]
    call_hook: bool,

    /// Do not install the call hook (the default)
    #[arg(long, hide = true, overrides_with = "call_hook")]
    no_call_hook: bool,

    /// Read the thread's CPU clock at every sample. By default, at intervals
    /// under 1 ms, a sample taken while the guest evidently ran wasm code the
    /// whole time since the previous one skips that read (a system call that
    /// costs about 1 µs on a virtual machine, most of a sample's cost): the
    /// clock is still read at least every 1 ms and at every sample in or just
    /// after host code, and the analyzer shares the CPU time measured over
    /// the samples between. Totals are exact either way; this makes each
    /// sample's own CPU time exact too.
    #[arg(long)]
    exact_cpu: bool,

    /// Flight recorder: keep the trace at most SIZE bytes (e.g. 64MiB, 1GiB)
    /// by overwriting its oldest samples, so that it always holds the most
    /// recent stretch of the run (about 3/4 of SIZE holds samples: at 1ms,
    /// 15-25 bytes a sample, 64MiB is about an hour). The file takes SIZE on
    /// disk from the start. `wanalyze` says which span of time it covers
    /// and reads it while wrec runs.
    #[arg(long, value_name = "SIZE", value_parser = wrec::parse_size)]
    max_size: Option<u64>,

    /// With --max-size: segments of this many bytes (for testing the ring
    /// wrapping within a short run)
    #[arg(long, hide = true, value_name = "BYTES", requires = "max_size", value_parser = wrec::parse_size)]
    trace_segment_size: Option<u64>,

    /// Grow the trace file in steps of this many bytes (default 8 MiB; for
    /// testing the full-disk path)
    #[arg(long, hide = true, value_name = "BYTES")]
    trace_growth_step: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClockArg {
    Wall,
    Cpu,
}

/// Below this interval a CPU-time timer is coarser than asked (the kernel's
/// tick at HZ=250, the most common setting).
const CPU_TICK: Duration = Duration::from_millis(4);

/// Below this interval the timer signal's own cost (~20 µs a sample on a VM,
/// whatever the handler does) is a large part of the interval: at 20us the
/// guest ran 14 times slower than at 10ms on the bench machine.
const COSTLY_INTERVAL: Duration = Duration::from_micros(50);

/// Intervals under this are checked against what a timer signal costs
/// here (`wrec::measure_signal_cost`); no machine needs 300 us a signal.
const CALIBRATE_BELOW: Duration = Duration::from_millis(1);

fn main() -> ExitCode {
    // `wrec serve ...` is the subcommand; a module file named `serve` runs
    // as `wrec ./serve`.
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).map(OsString::as_os_str) == Some(std::ffi::OsStr::new("serve")) {
        return serve_main(&argv);
    }
    let (cli, taken) = parse_command_line(argv);
    let wasm = cli.wasm;
    let args = match cli
        .args
        .into_iter()
        .map(OsString::into_string)
        .collect::<Result<Vec<String>, _>>()
    {
        Ok(args) => args,
        Err(bad) => {
            say(format_args!(
                "wrec: error: the argument {} for the program is not valid UTF-8 (WASI arguments are strings)",
                bad.to_string_lossy()
            ));
            return ExitCode::from(2);
        }
    };
    let cli = cli.opts;
    let mut opts = match run_options(&cli, &wasm) {
        Ok(o) => o,
        Err(code) => return code,
    };
    opts.args = args;

    let module = wasm.to_string_lossy();
    if !taken.is_empty() {
        // `wrec app.wasm -o t.wrec`: wrec's options, typed after the module.
        let typed = join_quoted(&taken);
        say(format_args!(
            "wrec: note: took '{typed}' as wrec's options; write 'wrec {} -- {typed}' to pass them to the program",
            shell_quote(&module)
        ));
    } else if cli.output.is_none() {
        // `wrec app.wasm ARGS -o t.wrec` hands `-o t.wrec` to the guest with
        // its other arguments, as `wasmtime run` would: say where the trace
        // goes instead.
        if let Some(o) = opts
            .args
            .iter()
            .find(|a| *a == "-o" || *a == "--output" || a.starts_with("--output="))
        {
            say(format_args!(
                "wrec: note: '{o}' after the module goes to the program with its other arguments; the trace goes to {} (wrec's options go before the module: 'wrec -o FILE {} ...')",
                opts.output.display(),
                shell_quote(&module)
            ));
        }
    }
    check_interval(&mut opts);

    let outcome = match run::run(&opts) {
        Ok(o) => o,
        Err(e) => {
            say(format_args!("wrec: error: {e}"));
            return ExitCode::from(run::ERROR_EXIT_CODE as u8);
        }
    };
    if let Some(err) = &outcome.error {
        say(format_args!("{err}"));
    }
    report(&cli, &outcome.summary);
    // Like `wasmtime run`: the guest's status goes to the OS as is (the OS
    // keeps its low 8 bits).
    std::process::exit(outcome.exit_code)
}

/// `wrec serve ...`.
fn serve_main(argv: &[OsString]) -> ExitCode {
    let cli = ServeCli::parse_from(argv[1..].iter().cloned());
    if cli.opts.call_hook && !cli.opts.no_call_hook {
        say(format_args!(
            "wrec: error: --call-hook does not work with `wrec serve`: a request's store runs on whichever worker thread polls it"
        ));
        return ExitCode::from(2);
    }
    let mut run = match run_options(&cli.opts, &cli.wasm) {
        Ok(o) => o,
        Err(code) => return code,
    };
    check_interval(&mut run);
    let opts = ServeOptions {
        run,
        addr: cli.addr,
    };
    let outcome = match run::serve::serve(&opts) {
        Ok(o) => o,
        Err(e) => {
            say(format_args!("wrec: error: {e}"));
            return ExitCode::from(run::ERROR_EXIT_CODE as u8);
        }
    };
    if let Some(err) = &outcome.error {
        say(format_args!("{err}"));
    }
    if !cli.opts.quiet {
        say(format_args!("wrec: served {} requests", outcome.requests));
    }
    report(&cli.opts, &outcome.summary);
    std::process::exit(outcome.exit_code)
}

/// The run's options from wrec's options (everything but the guest's
/// arguments); `Err` with the exit code after printing why they are wrong.
fn run_options(cli: &Opts, wasm: &std::path::Path) -> Result<RunOptions, ExitCode> {
    let mut opts = RunOptions::new(wasm);
    if let Some(o) = &cli.output {
        opts.output = o.clone();
    }
    opts.env = cli.env.clone();
    opts.dirs = cli.dirs.clone();
    opts.unknown_imports = if cli.trap_unknown_imports {
        UnknownImports::Trap
    } else if cli.default_values_unknown_imports {
        UnknownImports::DefaultValues
    } else {
        UnknownImports::Error
    };
    opts.cache = !cli.no_cache;
    opts.quiet = cli.quiet;
    opts.call_hook = cli.call_hook && !cli.no_call_hook;
    opts.recording.exact_cpu = cli.exact_cpu;
    opts.recording.interval = cli.interval;
    opts.recording.clock = match cli.clock {
        ClockArg::Wall => TimerClock::Wall,
        ClockArg::Cpu => TimerClock::Cpu,
    };
    opts.recording.force = cli.force;
    if let Some(max) = cli.max_size {
        let layout = match cli.trace_segment_size {
            Some(seg) => wrec::layout_with_segments(max, seg),
            None => wrec::parse_max_size(&max.to_string()),
        };
        match layout {
            Ok(l) => opts.recording.writer.ring = Some(l),
            Err(e) => {
                say(format_args!("wrec: error: --max-size: {e}"));
                return Err(ExitCode::from(2));
            }
        }
    }
    if let Some(step) = cli.trace_growth_step {
        opts.recording.writer.growth_step = step.max(4096);
    }
    Ok(opts)
}

/// Warns about intervals the clock cannot give or that cost too much, and
/// raises one this machine cannot sustain.
fn check_interval(opts: &mut RunOptions) {
    if opts.recording.clock == TimerClock::Cpu && opts.recording.interval < CPU_TICK {
        say(format_args!(
            "wrec: warning: with --clock cpu the kernel fires the timer on its scheduler tick (every 4 ms on most Linux kernels), so samples come at most once a tick, not every {}; the default --clock wall samples at the interval asked and still records each sample's CPU time",
            wrec::format_interval(opts.recording.interval)
        ));
    }

    // An interval shorter than what a timer signal costs here would starve
    // the guest: measure the cost (a few ms) and raise such an interval.
    if opts.recording.clock == TimerClock::Wall && opts.recording.interval < CALIBRATE_BELOW {
        match wrec::measure_signal_cost() {
            Ok(cost) => {
                let asked = opts.recording.interval;
                let interval = wrec::sustainable_interval(asked, cost);
                if interval > asked {
                    say(format_args!(
                        "wrec: warning: a timer signal costs this machine about {:.0} us of CPU time, so at {} the guest would hardly run; sampling every {} instead ({} times that cost)",
                        cost.as_nanos() as f64 / 1e3,
                        wrec::format_interval(asked),
                        wrec::format_interval(interval),
                        wrec::SUSTAIN_FACTOR
                    ));
                    opts.recording.interval = interval;
                }
            }
            Err(e) => say(format_args!(
                "wrec: warning: could not measure what a timer signal costs here ({e}); sampling every {} as asked",
                wrec::format_interval(opts.recording.interval)
            )),
        }
    }

    if opts.recording.clock == TimerClock::Wall && opts.recording.interval < COSTLY_INTERVAL {
        say(format_args!(
            "wrec: warning: every sample costs the kernel's timer signal about 20 us of CPU time on a virtual machine (a few us on bare metal), so at {} the guest may run several times slower; 100us costs about a quarter, 1ms about 2%",
            wrec::format_interval(opts.recording.interval)
        ));
    }
}

/// Prints the stats (with --stats) and the summary line (without --quiet).
fn report(cli: &Opts, summary: &Result<wrec::Summary, wrec::Error>) {
    match summary {
        Ok(s) => {
            if cli.stats {
                let st = &s.stats;
                say(format_args!(
                    "wrec: stats: {} samples: {} host ({} via the hook, {} via the stack scan), \
                     {} broken, {} prologue, {} truncated, {} without CPU time; \
                     handler {:.2} us/sample, max {:.1} us, {} over 50 us{}",
                    st.handled,
                    st.host,
                    st.via_hook,
                    st.via_scan,
                    st.broken,
                    st.prologue,
                    st.truncated,
                    st.no_cpu,
                    st.handler_ns as f64 / st.handled.max(1) as f64 / 1e3,
                    st.handler_max_ns as f64 / 1e3,
                    st.handler_slow,
                    if st.idle + st.parks > 0 {
                        format!(
                            "; while idle: {} timer signals not sampled, the timer stopped {} times",
                            st.idle, st.parks
                        )
                    } else {
                        String::new()
                    },
                ));
            }
            if !cli.quiet {
                say(format_args!("{}", run::summary_line(s)));
            }
        }
        Err(e) => say(format_args!(
            "wrec: error: the trace could not be finished: {e}"
        )),
    }
}

/// Parses the command line: wrec's options, the module, and the guest's
/// arguments exactly as typed (see `guest_args`); also returns the options
/// typed after the module that were taken as wrec's own.
fn parse_command_line(argv: Vec<OsString>) -> (Cli, Vec<OsString>) {
    let cmd = Cli::command();
    let Some(split) = guest_args::split(&argv, &cmd, &OptionsOnly::command()) else {
        // No module: clap says what is missing (or prints the help).
        return (Cli::parse_from(argv), Vec::new());
    };
    let matches = cmd.get_matches_from(split.wrec);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.args = split.guest;
    (cli, split.taken)
}

/// Arguments as a shell would need them typed.
fn join_quoted(args: &[OsString]) -> String {
    args.iter()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a line on stderr; a closed stderr is not worth a panic.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
