//! `wanalyze`: the command line over the `wanalyze` library.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod diff_cli;
use wanalyze::{
    firefox, folded, lookup, pprof, resolve, sources, symbols::WasmSymbols, text, view,
};

/// Turn a wrec trace into a profile: Firefox Profiler JSON, folded stacks or a
/// text report. Needs only the trace and the wasm files that were profiled.
#[derive(Parser)]
#[command(
    name = "wanalyze",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        wanalyze fib.wrec --dwarf                      # writes fib.profile.json for https://profiler.firefox.com\n  \
        wanalyze fib.wrec --dwarf --format text        # top functions and lines, for a CI log\n  \
        wanalyze fib.wrec --format folded > fib.folded # for inferno / flamegraph.pl / speedscope\n  \
        wanalyze fib.wrec --format pprof               # writes fib.pb.gz for go tool pprof\n  \
        wanalyze view fib.wrec                         # opens it in the Firefox Profiler, with sources and wasm code\n  \
        wanalyze fib.wrec --module build/fib.wasm      # the wasm file moved since recording\n  \
        wanalyze addr2line fib.wasm 0x1a2 300          # symbolize wasm file offsets\n  \
        wanalyze diff base.wrec new.wrec               # compare two recordings; exit 3 on a regression"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The trace written by `wrec`.
    trace: Option<PathBuf>,
    /// Add file, line, column and inlined frames from the modules' DWARF.
    #[arg(long)]
    dwarf: bool,
    /// The wasm file that was profiled, when it is no longer at the path the
    /// trace recorded (matched to the recorded module by its SHA-256).
    /// Repeat for several modules.
    #[arg(long = "module", value_name = "PATH")]
    modules: Vec<PathBuf>,
    /// Where to write the profile: `-` for stdout; a name ending in `.gz` is
    /// gzip-compressed. Default: `<trace>.profile.json` for firefox, stdout
    /// for folded and text.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Firefox)]
    format: Format,
    /// Rows in each table of the text report.
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,
    /// Analyze only the final stretch of the trace: samples within this
    /// long of its last one (e.g. 30s, 5min, 1h 30min).
    #[arg(long, value_name = "DURATION", value_parser = parse_last)]
    last: Option<std::time::Duration>,
    /// No progress bar and no summary line.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    sources: SourceArgs,
}

/// Where source files are (Firefox profiles with `--dwarf` embed the text
/// of every file that has samples, and `view` serves it).
#[derive(clap::Args, Clone, Default)]
struct SourceArgs {
    /// Look for source files DWARF names under DIR too (the directory the
    /// build ran in); repeatable.
    #[arg(long = "source-root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// A source path prefix the build used, and where those files are
    /// here: FROM=TO; repeatable.
    #[arg(long = "source-map", value_name = "FROM=TO", value_parser = sources::SourcePaths::parse_map)]
    maps: Vec<(PathBuf, PathBuf)>,
    /// Leave source texts out of the Firefox profile (and unserved by `view`).
    #[arg(long)]
    no_sources: bool,
}

impl SourceArgs {
    fn paths(&self) -> sources::SourcePaths {
        sources::SourcePaths {
            roots: self.roots.clone(),
            maps: self.maps.clone(),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the function and source lines (inlined frames innermost first)
    /// of wasm whole-file offsets, like `wasm-tools addr2line`.
    Addr2line {
        /// The wasm module.
        wasm: PathBuf,
        /// Offsets into the file: hex `0x…` or decimal.
        #[arg(required = true)]
        offsets: Vec<String>,
    },
    /// Open a recording in the Firefox Profiler: serves the profile (with
    /// DWARF lines and sources), its source files and its functions' wasm
    /// instructions on 127.0.0.1 and prints the URL that opens it, until
    /// Ctrl-C.
    View {
        /// A trace written by `wrec`, or a profile `wanalyze` wrote
        /// (`.json` or `.json.gz`).
        input: PathBuf,
        /// The wasm file that was profiled, when it is no longer at the
        /// recorded path, or for a profile (which names modules by file
        /// name only) when it is neither in the current directory nor
        /// beside the profile; repeatable.
        #[arg(long = "module", value_name = "PATH")]
        modules: Vec<PathBuf>,
        /// Serve on this port (default: a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Compare two recordings (or runs of each): the functions and lines
    /// whose share changed significantly, and the CPU time; a CI gate.
    Diff(Box<diff_cli::DiffArgs>),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Firefox Profiler processed profile (JSON).
    Firefox,
    /// Collapsed stacks, one line per stack with its count.
    Folded,
    /// A report for a terminal or CI log.
    Text,
    /// pprof's gzipped profile.proto, for `go tool pprof` (default
    /// `<trace>.pb.gz`).
    Pprof,
}

/// Prints `e` on one line, `wanalyze: error: ...`: the chain, minus causes
/// the message above them already quotes.
fn report_error(e: &anyhow::Error) -> ExitCode {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg = format!("{msg}: {c}");
        }
    }
    eprintln!("wanalyze: error: {msg}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Diff(args)) = cli.command {
        return diff_cli::main(*args);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report_error(&e),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Command::Addr2line { wasm, offsets }) = cli.command {
        let offsets = offsets
            .iter()
            .map(|o| lookup::parse_offset(o).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<u64>>>()?;
        let symbols = WasmSymbols::open(&wasm)?;
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        lookup::run(&symbols, &offsets, &mut out)?;
        return Ok(());
    }
    if let Some(Command::View {
        input,
        modules,
        port,
        sources,
    }) = cli.command
    {
        let opts = view::ViewOptions {
            modules,
            port,
            sources: (!sources.no_sources).then(|| sources.paths()),
        };
        return view::run(&input, &opts);
    }
    let Some(trace) = cli.trace else {
        anyhow::bail!(
            "no trace given; usage: wanalyze <TRACE> [--dwarf] [--out FILE] (see --help)"
        );
    };
    let opts = resolve::Options {
        dwarf: cli.dwarf,
        modules: cli.modules,
        // Folded stacks and the text report name functions and leaf lines
        // only: a smaller profile will do.
        by_function: !matches!(cli.format, Format::Firefox | Format::Pprof),
        last: cli.last,
    };
    let bar = progress_bar(cli.quiet);
    let profile = resolve::analyze(&trace, &opts, &mut |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut profile = profile;
    if cli.format == Format::Firefox && cli.dwarf && !cli.sources.no_sources {
        // Only after the analysis: the warnings above are the trace's.
        let warnings = sources::embed(&mut profile, &cli.sources.paths());
        profile.meta.warnings.extend(warnings);
    }
    for n in &profile.meta.notes {
        eprintln!("wanalyze: note: {n}");
    }
    for w in &profile.meta.warnings {
        eprintln!("wanalyze: warning: {w}");
    }
    let out = match (&cli.out, cli.format) {
        (Some(p), _) if p.as_os_str() == "-" => None,
        (Some(p), _) => Some(p.clone()),
        (None, Format::Firefox) => Some(default_out(&trace, "profile.json")),
        (None, Format::Pprof) => Some(default_out(&trace, "pb.gz")),
        (None, _) => None,
    };
    match (&out, cli.format) {
        (Some(path), Format::Firefox) => firefox::write_file(&profile, path)?,
        (Some(path), Format::Pprof) => {
            // Always gzipped, whatever the name: that is the pprof format.
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            pprof::write(&profile, &mut w)
                .and_then(|()| Ok(w.flush()?))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        (Some(path), f) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let file = std::io::BufWriter::new(file);
            let written = if path.extension().is_some_and(|e| e == "gz") {
                let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
                write_text_format(&profile, f, cli.top, &mut gz)?;
                gz.finish().and_then(|mut w| w.flush())
            } else {
                let mut w = file;
                write_text_format(&profile, f, cli.top, &mut w)?;
                w.flush()
            };
            written.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        (None, f) => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            match f {
                Format::Firefox => firefox::write(&profile, &mut w)?,
                f => write_text_format(&profile, f, cli.top, &mut w)?,
            }
            w.flush()?;
        }
    }
    if !cli.quiet {
        if let Some(path) = &out {
            let hint = match cli.format {
                Format::Firefox => "; open it at https://profiler.firefox.com (Load a profile from file), or run `wanalyze view` on the trace",
                Format::Pprof => "; read it with `go tool pprof -top` (or -http)",
                _ => "",
            };
            eprintln!(
                "wanalyze: wrote {} ({} samples, {} threads){hint}",
                path.display(),
                profile.sample_count(),
                profile.threads.len()
            );
        }
    }
    Ok(())
}

fn write_text_format(
    profile: &wanalyze::model::Profile,
    f: Format,
    top: usize,
    w: &mut dyn Write,
) -> anyhow::Result<()> {
    match f {
        Format::Folded => folded::write(profile, w)?,
        Format::Text => {
            let opts = text::TextOptions {
                top,
                ..Default::default()
            };
            text::write(profile, &opts, w)?
        }
        Format::Firefox => firefox::write(profile, w)?,
        Format::Pprof => pprof::write(profile, w)?,
    }
    Ok(())
}

/// `--last`: a positive duration in `humantime`'s syntax (`30s`, `5min`).
fn parse_last(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("--last needs a duration above zero".to_owned()),
        Err(e) => Err(format!("`{s}` is not a duration like 30s or 5min ({e})")),
    }
}

/// `fib.wrec` → `fib.<ext>` (`fib.profile.json`), beside the trace.
fn default_out(trace: &Path, ext: &str) -> PathBuf {
    let stem = trace
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "trace".into());
    trace.with_file_name(format!("{stem}.{ext}"))
}

fn progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} analyzing [{bar:40}] {bytes}/{total_bytes} ({eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    Some(b)
}
