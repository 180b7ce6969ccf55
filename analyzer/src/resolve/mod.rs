//! From a trace to a symbolized [`Profile`].
//!
//! Native address → module (by recorded code range) → code offset → wasm file
//! offset (the recorded address map; return addresses are looked up at
//! address − 1 so the call itself is found) → function (the recorded
//! function table) → name (name section) and, with DWARF, file, line, column
//! and inlined frames.
//!
//! Work is proportional to what is *distinct*, not to the number of samples:
//! each distinct address is resolved once, and a sample whose outer frames
//! equal its thread's previous sample's reuses the stack nodes built for
//! them, so only the frames that changed are looked at.
//!
//! # Where things are
//!
//! - this file: [`analyze`], the loop over the trace's events, each handed
//!   to a step of the analysis;
//! - `analysis.rs`: the analysis's state and its steps (`on_module`,
//!   `on_thread_start`, `on_sample`, ...);
//! - `modules.rs`: loading the recorded modules, `--module` overrides;
//! - `resolver.rs`: address → frames, cached, and the stack nodes they make;
//! - `sample_stack.rs`: one sample's stack, reusing the previous sample's;
//! - `cpu.rs`: CPU time shared among samples without their own reading;
//! - `warnings.rs`: the end of the analysis (`finish`): the warnings about
//!   what the trace lacked, and the profile's last facts.

use std::path::{Path, PathBuf};

use wrec_format::{Event, ReadError, Record, Trace};

use crate::model::Profile;

mod analysis;
mod cpu;
mod modules;
mod resolver;
mod sample_stack;
#[cfg(test)]
mod tests;
mod warnings;

use analysis::Analysis;

/// How to analyze.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Look up file, line, column and inlined frames in the modules' DWARF.
    pub dwarf: bool,
    /// Wasm files to use instead of the paths recorded in the trace; each is
    /// matched to a recorded module by its SHA-256.
    pub modules: Vec<PathBuf>,
    /// Stacks of functions rather than frames, but for each sample's leaf
    /// frame ([`Interner::by_function`](crate::model::Interner::by_function)): enough for folded stacks and the
    /// text report, which name functions and leaf lines only, and a far
    /// smaller stack tree when stacks are deep and varied. The Firefox
    /// output needs every frame (addresses, lines).
    pub by_function: bool,
    /// Only the final stretch of the trace: samples within this long of
    /// its last sample (`wanalyze --last 30s`).
    pub last: Option<std::time::Duration>,
}

/// Why a trace could not be analyzed at all. Damage *inside* a trace is not
/// an error: the intact part is analyzed and the damage becomes a warning.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("{}", trace_error(path, source))]
    Trace {
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("{0}")]
    Symbols(#[from] crate::symbols::SymbolError),
    #[error(
        "{path}: the module recorded in the trace is not there; pass the wasm file that was profiled with --module PATH"
    )]
    ModuleMissing { path: PathBuf },
    #[error(
        "{path}: this is not the module that was profiled (its SHA-256 differs from the one recorded in the trace); pass the original with --module PATH"
    )]
    ModuleChanged { path: PathBuf },
    #[error(
        "{path}: --module does not match any module recorded in the trace (recorded: {recorded})"
    )]
    ModuleUnmatched { path: PathBuf, recorded: String },
    #[error(
        "{path}: the trace places its core module {index} where this file has no core module (is it the component that was profiled?)"
    )]
    InnerModule { path: PathBuf, index: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A trace error with the trace's path in front, once (an I/O error names it
/// already).
fn trace_error(path: &Path, e: &ReadError) -> String {
    match e {
        ReadError::Io { .. } => e.to_string(),
        _ => format!("{}: {e}", path.display()),
    }
}

/// The most CPU time, and the most lost samples, a profile adds up (about 146
/// years of ns): a hostile trace can claim any count, and this keeps every
/// sum an exporter takes over samples or threads far from overflowing.
const MAX_TOTAL: u64 = u64::MAX / 4;

/// Reads the trace at `path` and builds the profile. `progress` is called now
/// and then with (bytes read, bytes in all).
pub fn analyze(
    path: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Profile, AnalyzeError> {
    // A FIFO would block the open, and a device or a directory is no
    // trace: only a regular file is opened as one (it is mapped, not
    // read, so its size needs no bound).
    crate::files::open_regular(path).map_err(|source| AnalyzeError::Io {
        path: path.to_owned(),
        source,
    })?;
    let trace = Trace::open(path).map_err(|source| AnalyzeError::Trace {
        path: path.to_owned(),
        source,
    })?;
    let mut a = Analysis::new(path, &trace, opts)?;
    a.being_written = trace.being_written();
    let span = samples_span(&trace);
    // With --last, samples before this monotonic time are left out.
    let cutoff = opts
        .last
        .zip(span)
        .map(|(d, (_, last))| last.saturating_sub(d.as_nanos() as u64));
    let mut skipped = 0u64;
    let total = trace.data_end();
    // The decoder lets go of the trace's pages behind it as it reads.
    let mut decoder = trace.decoder();
    let mut n = 0u64;
    while let Some(ev) = decoder.next() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                a.on_damage(e);
                break;
            }
        };
        n += 1;
        match ev {
            Event::Sample(s) => {
                if n.is_multiple_of(65536) {
                    progress(s.offset, total);
                }
                if cutoff.is_some_and(|c| s.time_ns < c) {
                    skipped += 1;
                    continue;
                }
                a.on_sample(&s);
            }
            Event::Record(Record::RunInfo(ri)) => a.on_run_info(ri),
            Event::Record(Record::Module(rec)) => a.on_module(rec)?,
            Event::Record(Record::ThreadStart(ts)) => a.on_thread_start(ts),
            Event::Record(Record::ThreadEnd(te)) => a.on_thread_end(te),
            Event::Record(Record::SamplesLost(l)) => a.on_loss(l),
            Event::Record(Record::End(e)) => a.on_end(e),
            // Already attached to their module records by the decoder.
            Event::Record(Record::CodeAddresses(_)) => {}
            Event::Record(Record::Request(r)) => {
                // With --last, a request that ended before the window.
                if cutoff.is_none_or(|c| r.end_ns >= c) {
                    a.on_request(r);
                }
            }
            Event::Unknown { .. } => {}
        }
    }
    progress(total, total);
    let notes = span_notes(&trace, span, cutoff, skipped, opts.last);
    let mut profile = a.finish()?;
    profile.meta.notes = notes;
    Ok(profile)
}

/// The monotonic times of the trace's first and last samples, read in a
/// pass of their own (cheap next to resolving them): `--last` counts back
/// from the last one, and a ring trace says which span it holds.
fn samples_span(trace: &Trace) -> Option<(u64, u64)> {
    let mut span: Option<(u64, u64)> = None;
    let mut d = trace.decoder();
    while let Some(Ok(ev)) = d.next() {
        if let Event::Sample(s) = ev {
            let (lo, hi) = span.get_or_insert((s.time_ns, s.time_ns));
            *lo = (*lo).min(s.time_ns);
            *hi = (*hi).max(s.time_ns);
        }
    }
    span
}

/// What the profile covers, when that is not simply the whole run: a
/// flight-recorder trace (its oldest samples overwritten), a recording
/// still going, a `--last` window.
fn span_notes(
    trace: &Trace,
    span: Option<(u64, u64)>,
    cutoff: Option<u64>,
    skipped: u64,
    last: Option<std::time::Duration>,
) -> Vec<String> {
    let mut notes = Vec::new();
    // Seconds since the recorder started (its header's clock reading).
    let zero = trace.header().monotonic_reference_ns;
    let secs = |t: u64| t.saturating_sub(zero) as f64 / 1e9;
    if let Some(ring) = trace.ring() {
        let held = match span {
            Some((a, b)) => format!(
                "samples from {:.3} s to {:.3} s after recording started ({:.3} s)",
                secs(a),
                secs(b),
                secs(b) - secs(a)
            ),
            None => "no samples".to_owned(),
        };
        let older = if ring.first > 0 {
            "; older samples were overwritten"
        } else {
            "; nothing was overwritten yet"
        };
        notes.push(format!(
            "flight-recorder trace ({} segments of {} KiB): it holds {held}{older}",
            ring.layout.segments,
            ring.layout.segment_size >> 10
        ));
    }
    if trace.being_written() {
        notes.push(
            "the recording is still going (wrec is writing the trace): the profile holds what was committed when it was read"
                .to_owned(),
        );
    }
    if let (Some(d), Some(c), Some((_, b))) = (last, cutoff, span) {
        notes.push(format!(
            "--last {}: only the samples from {:.3} s to {:.3} s after recording started ({skipped} earlier samples left out)",
            humantime::format_duration(d),
            secs(c),
            secs(b)
        ));
    }
    notes
}

/// The file name of a path, e.g. `fib.wasm`.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}
