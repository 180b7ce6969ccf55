//! The symbolized profile every exporter reads.
//!
//! The resolver (`resolve/`) builds it from a trace and the wasm files;
//! the exporters (`firefox/`, `folded.rs`, `text.rs`, `pprof.rs`) only read it, after
//! [`Profile::check`]. Tables are deduplicated: each distinct function,
//! frame and stack appears once, and samples point at stacks, so a million
//! samples with deep stacks stay small.
//!
//! - this file: the tables' rows ([`Func`], [`Frame`], [`Stack`],
//!   [`Thread`], [`Lib`], [`NativeSymbol`], [`SourceText`]) and the run's
//!   [`Meta`];
//! - `stacks.rs`: the stack prefix tree, compact ([`Stacks`]);
//! - `samples.rs`: a thread's samples, varint-encoded ([`Samples`]);
//! - `interner.rs`: what builds the tables ([`Interner`]);
//! - `check.rs`: [`Profile::check`], the validation every exporter runs;
//! - `paths.rs`: `FuncPaths`, the stack tree by function, which the folded
//!   and text outputs count samples on;
//! - `stats.rs`: samples and CPU time per function and per line
//!   ([`Stats`]), which the text report and the diff read.
//! - `requests.rs`: which request of a `wrec serve` trace a sample was
//!   taken in ([`RequestSpans`]) and the requests by endpoint
//!   ([`endpoints`]), which the text report and pprof read;
//! - `redact.rs`: host paths out of the text a profile shares (the run's
//!   end message, warnings).
//!
//! No host address ever enters this model: frames are identified by wasm
//! file offsets, names and source locations only, so every output can be
//! shared with the people whose code it is.

mod check;
mod interner;
mod paths;
pub mod redact;
mod requests;
mod samples;
mod stacks;
mod stats;
#[cfg(test)]
mod tests;

pub use interner::Interner;
pub(crate) use paths::FuncPaths;
pub use requests::{endpoints, Endpoint, RequestSpans};
pub use samples::{Sample, SampleIter, Samples};
pub use stacks::Stacks;
pub use stats::{FuncStat, LineStat, LineTotal, Stats, StatsOptions};
pub use wrec_format::{ExitKind, TimerClock};

/// Index into [`Profile::funcs`].
pub type FuncId = u32;
/// Index into [`Profile::frames`].
pub type FrameId = u32;
/// Index into [`Profile::stacks`].
pub type StackId = u32;

/// What kind of code a function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Compiled WebAssembly.
    Wasm,
    /// A host call: a WASI import or a runtime libcall (`memory.grow`).
    Host,
    /// Synthetic frames: `[truncated]`, `[unknown]`, ...
    Other,
}

/// A function: a wasm function, an inlined function (from DWARF), or a host
/// import / libcall.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Func {
    /// Demangled name, e.g. `fib`, `core::ptr::drop_in_place<T>`,
    /// `wasi_snapshot_preview1::fd_write`, `wasm-function[12]`.
    pub name: String,
    /// Source file from DWARF, as written there (e.g. `fixtures/src/fib.c`).
    pub file: Option<String>,
    /// The line where the function is declared (DWARF `DW_AT_decl_line`), if known.
    pub line: Option<u32>,
    pub category: Category,
    /// Index into [`Profile::libs`] of the module it belongs to.
    pub lib: Option<u32>,
}

/// A frame: one position in a function. Frames of one inlined chain share
/// `address` and differ in `inline_depth` (outermost 0), `func` and `line`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub func: FuncId,
    /// Wasm whole-file offset of the instruction (for a return address: of
    /// the call instruction). `None` for synthetic and host frames.
    pub address: Option<u64>,
    /// Source line and column of this position, from DWARF.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub inline_depth: u32,
    /// Index into [`Profile::native_symbols`]: the physical wasm function
    /// whose code this position is in, shared by every frame of an inline
    /// chain. `None` for synthetic and host frames.
    pub native_symbol: Option<u32>,
}

/// A physical wasm function, as compiled: what the Firefox Profiler calls a
/// native symbol. Inlined functions have none of their own; their frames
/// name the function they were inlined into.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NativeSymbol {
    /// Index into [`Profile::libs`].
    pub lib: u32,
    /// Whole-file offset of the function's body (after its size).
    pub address: u64,
    /// Length of the body in bytes.
    pub size: u64,
    /// The function's name (as its frames at inline depth 0 name it).
    pub name: String,
}

/// The text of a source file the profile's functions name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceText {
    /// The file as the profile names it ([`Func::file`]).
    pub file: String,
    pub text: String,
}

/// A node of the stack prefix tree: `frame` called from `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stack {
    pub parent: Option<StackId>,
    pub frame: FrameId,
}

/// One guest thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thread {
    pub name: String,
    /// The thread's id within the trace.
    pub tid: u32,
    /// Nanoseconds since [`Profile::start_ns`].
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub samples: Samples,
    /// Samples the recorder lost on this thread.
    pub lost: u64,
    /// Requests this thread ran (`wrec serve`, SPEC.md §2.8), in the order
    /// they ended.
    pub requests: Vec<Request>,
}

/// A request a server handled on a thread: its samples are those of the
/// thread between `start_ns` and `end_ns`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// From 0, in the order the server received them.
    pub index: u64,
    /// Nanoseconds since [`Profile::start_ns`].
    pub start_ns: u64,
    pub end_ns: u64,
    pub method: String,
    /// Path and query, at most 256 bytes.
    pub path: String,
    /// `METHOD PATH`, what the profile calls it.
    pub name: String,
}

/// A wasm module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    /// File name, e.g. `fib-O2.wasm`: what every output calls the module,
    /// as its name and as its path.
    pub name: String,
    /// Where the analyzer read the module on this machine (a `--module`
    /// path, or the one the trace recorded), for `view` to read it again.
    /// Never written to an output: it names the host's directories.
    pub local_path: std::path::PathBuf,
    /// SHA-256 of the module, lower-case hex (of the component file, for a
    /// module inside one).
    pub sha256: String,
    /// For a core module inside a component: which one and where its bytes
    /// are in the component file at `local_path`.
    pub inner: Option<wrec_format::InnerModule>,
}

/// How the run ended, from the trace's end record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// How: see [`exit_kind_name`] for the outputs' words.
    pub kind: ExitKind,
    pub status: i64,
    pub message: String,
}

/// Metadata about the whole run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// The recorded program's name (file name of its main module).
    pub product: String,
    /// Wall-clock time of `start_ns`, in ms since the Unix epoch.
    pub start_unix_ms: f64,
    /// Sampling interval in ns.
    pub interval_ns: u64,
    /// The clock that drove the sampling timer (see [`clock_name`]);
    /// `None` if the trace has no run-info record.
    pub clock: Option<TimerClock>,
    /// The guest's arguments, `argv[0]` first.
    pub args: Vec<String>,
    /// The recorder's name and version.
    pub recorder: String,
    /// `None` if the trace has no end record (the recorder was killed).
    pub end: Option<RunEnd>,
    /// Problems met while reading and symbolizing, one line each.
    pub warnings: Vec<String>,
    /// What part of the run the profile covers, where that is not all of
    /// it (a flight-recorder trace, a recording still going, `--last`).
    pub notes: Vec<String>,
    /// Whether frames carry DWARF lines (`--dwarf` and the module had DWARF).
    pub has_lines: bool,
    /// Samples the recorder took without reading the CPU clock (`NO_CPU`):
    /// their CPU deltas are their share of the next reading (SPEC.md §2.4).
    pub samples_without_cpu: u64,
}

/// How the outputs name a clock: `wall` or `cpu`.
pub fn clock_name(clock: TimerClock) -> &'static str {
    match clock {
        TimerClock::Wall => "wall",
        TimerClock::Cpu => "cpu",
    }
}

/// How the outputs name the way a run ended: `exited`, `trapped`,
/// `failed` or `signaled`.
pub fn exit_kind_name(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Exited => "exited",
        ExitKind::Trapped => "trapped",
        ExitKind::Failed => "failed",
        ExitKind::Signaled => "signaled",
    }
}

/// A whole symbolized profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub meta: Meta,
    /// Monotonic ns of the profile's zero (the first thread's start).
    pub start_ns: u64,
    pub funcs: Vec<Func>,
    pub frames: Vec<Frame>,
    pub stacks: Stacks,
    pub threads: Vec<Thread>,
    pub libs: Vec<Lib>,
    /// The physical functions frames are in.
    pub native_symbols: Vec<NativeSymbol>,
    /// Source texts to embed in outputs that can carry them (added after
    /// the analysis, see `wanalyze::sources`); sorted by file, one per file.
    pub sources: Vec<SourceText>,
}

impl Profile {
    /// The frames of a stack, leaf first.
    pub fn stack_frames(&self, mut stack: Option<StackId>) -> impl Iterator<Item = FrameId> + '_ {
        std::iter::from_fn(move || {
            let s = self.stacks.get(stack? as usize);
            stack = s.parent;
            Some(s.frame)
        })
    }

    /// The text of `file`, if [`Profile::sources`] has it.
    pub fn source_text(&self, file: &str) -> Option<&str> {
        let i = self
            .sources
            .binary_search_by(|s| s.file.as_str().cmp(file))
            .ok()?;
        Some(&self.sources[i].text)
    }

    /// Total number of samples over all threads.
    pub fn sample_count(&self) -> usize {
        self.threads.iter().map(|t| t.samples.len()).sum()
    }
}
