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
    let trace = Trace::open(path).map_err(|source| AnalyzeError::Trace {
        path: path.to_owned(),
        source,
    })?;
    let mut a = Analysis::new(path, &trace, opts)?;
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
            Event::Unknown { .. } => {}
        }
    }
    progress(total, total);
    a.finish()
}

/// The file name of a path, e.g. `fib.wasm`.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}
