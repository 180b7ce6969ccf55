//! `wrec`: record WebAssembly programs running on Wasmtime with an
//! async-signal-safe stack sampler, into a trace in the wrec format
//! (`format-spec/SPEC.md`), for `wanalyze` to symbolize offline.
//!
//! The `wrec` binary is a thin command line over this library; an embedder
//! with its own Wasmtime host uses it the same way:
//!
//! ```no_run
//! use std::path::Path;
//! use wrec::{ExitInfo, ExitKind, Recorder, RecorderOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The engine: default Wasmtime plus what the sampler needs.
//! let mut config = wasmtime::Config::new();
//! wrec::configure(&mut config);
//! let engine = wasmtime::Engine::new(&config)?;
//!
//! // 2. Compile, then describe the module in the trace before it runs.
//! let bytes = std::fs::read("guest.wasm")?;
//! let module = wasmtime::Module::new(&engine, &bytes)?;
//! let recorder = Recorder::create(Path::new("guest.wrec"), RecorderOptions::default())?;
//! recorder.add_module(&module, Path::new("guest.wasm"), &bytes)?;
//!
//! // 3. Sample the thread that runs the store's calls.
//! let mut store = wasmtime::Store::new(&engine, ());
//! let mut sampler = recorder.thread_sampler("main")?;
//! // Optional, and costly for programs making millions of host calls:
//! // sampler.install_call_hook(&mut store);
//! sampler.start()?;
//! let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
//! let result = instance.get_typed_func::<(), ()>(&mut store, "run")?.call(&mut store, ());
//! sampler.stop()?;
//! drop(sampler); // writes the thread's end record
//!
//! // 4. Finish: the end record, then the file is truncated to its data.
//! let summary = recorder.finish(match &result {
//!     Ok(()) => ExitInfo::exited(0),
//!     Err(e) => ExitInfo { kind: ExitKind::Trapped, status: 134, message: format!("{e:?}") },
//! })?;
//! eprintln!("{} samples, {} lost", summary.samples, summary.lost);
//! # Ok(()) }
//! ```
//!
//! Process-wide effects: the recorder installs a `SIGPROF` handler (kept for
//! the life of the process; stray `SIGPROF`s that are not its timers' go to
//! the previous handler, or are ignored instead of killing the process) and
//! sets `SIGXFSZ` to ignored if it was at its default, so that a trace
//! reaching `RLIMIT_FSIZE` makes growing it fail (samples are then counted
//! as lost) instead of killing the process.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wrec_format::{
    clock_ns, flags, AddressMapEntry, CodeAddresses, End, FunctionEntry, Header, LossReason,
    ModuleRecord, Record, RunInfo, SampleScanner, SamplesLost, ThreadEnd, ThreadStart, TraceWriter,
    WriteError, HEADER_SIZE,
};

mod arch;
mod interval;
mod output;
pub mod run;
mod sampler;

pub use interval::{format_interval, parse_interval, MAX_INTERVAL, MIN_INTERVAL};
pub use sampler::{ThreadSampler, MAX_MODULES, MAX_THREADS};
pub use wrec_format::{ExitKind, TimerClock, WriterOptions};

use sampler::{TextRanges, ThreadState};

/// The recorder's name and version, as written in the trace's run-info record.
pub const RECORDER: &str = concat!("wrec ", env!("CARGO_PKG_VERSION"));

/// How often the background thread grows the trace, pre-faults it, reports
/// losses and writes the code addresses of newly sampled code. Each wake-up
/// costs ~45 us of CPU on these VMs (mostly the context switch), so at 10 ms
/// it was 0.6% of a program's CPU time; at 50 ms it is ~0.1%. Still far ahead
/// of need: at the fastest interval (10us, ~15 bytes a sample) a period
/// writes ~75 KiB, against a pre-faulted window of four periods' writing
/// (at least 64 KiB) and 4 MiB of growth margin.
/// The cost: a SIGKILLed recording may lack the lines (not the names) of
/// code first sampled in its last ~50 ms.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(50);

/// Applies what the sampler needs to a Wasmtime configuration, leaving
/// everything that affects the generated code at Wasmtime's defaults:
///
/// - `generate_address_map(true)` (the default, made explicit): the module
///   record carries the map from machine code to wasm offsets;
/// - no epoch interruption and no fuel: the guest runs exactly the code plain
///   Wasmtime runs;
/// - guest debugging stays off (this build of Wasmtime does not even have the
///   `debug` feature): with it, code is copied per store and sampled PCs no
///   longer fall inside `Module::text()`;
/// - wasm-level inlining stays at the default.
///
/// Cranelift always keeps frame pointers in Wasmtime, which is what the
/// sampler walks. The code cache is left alone (see [`run::RunOptions::cache`]).
pub fn configure(config: &mut wasmtime::Config) -> &mut wasmtime::Config {
    config.generate_address_map(true);
    config.epoch_interruption(false);
    config.consume_fuel(false);
    config
}

/// Options for [`Recorder::create`].
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Sampling interval (see [`MIN_INTERVAL`], [`MAX_INTERVAL`]).
    pub interval: Duration,
    /// Which clock drives the timers.
    pub clock: TimerClock,
    /// The guest's arguments, `argv[0]` first, for the run-info record.
    pub args: Vec<String>,
    /// Write through a symlink at the output path and overwrite a file that is
    /// not a trace. Without it, both are refused; an existing trace is always
    /// overwritten.
    pub force: bool,
    /// Trace growth sizes.
    pub writer: WriterOptions,
    /// Read the thread CPU clock at every sample. Without it, at intervals
    /// under 1 ms, samples taken while a thread evidently ran wasm the whole
    /// time since the previous one skip that read (a system call, ~1 µs on a
    /// VM) and are flagged `NO_CPU`; their CPU time is measured at most 1 ms
    /// later and shared out by the reader (SPEC.md §2.4 and §3).
    pub exact_cpu: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            interval: Duration::from_millis(1),
            clock: TimerClock::Wall,
            args: Vec::new(),
            force: false,
            writer: WriterOptions::default(),
            exact_cpu: false,
        }
    }
}

/// An error from the recorder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output path cannot or may not be written.
    #[error("{}: {msg}", path.display())]
    Output { path: PathBuf, msg: String },
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Setting up a timer or the signal handler failed.
    #[error("cannot start the sampler: {0}")]
    Sampler(#[source] io::Error),
    #[error("too many modules (a recorder holds at most {MAX_MODULES})")]
    TooManyModules,
    #[error(
        "the sampling interval must be between {} and {}",
        format_interval(MIN_INTERVAL),
        format_interval(MAX_INTERVAL)
    )]
    Interval,
}

/// How the recorded program ended, for the end record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub kind: ExitKind,
    /// The process exit code the embedder uses (wrec: the guest's status,
    /// 134 for a trap, 1 for its own errors).
    pub status: i64,
    /// The trap or error text; empty for a clean exit.
    pub message: String,
}

impl ExitInfo {
    /// A normal exit with `status`.
    pub fn exited(status: i64) -> ExitInfo {
        ExitInfo {
            kind: ExitKind::Exited,
            status,
            message: String::new(),
        }
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone)]
pub struct Summary {
    pub path: PathBuf,
    /// Samples written.
    pub samples: u64,
    /// Samples lost: dropped for lack of room, plus timer expirations the
    /// kernel merged (overruns).
    pub lost: u64,
    /// Of `lost`, how many were dropped because the trace could not grow.
    pub dropped: u64,
    /// Final size of the trace in bytes.
    pub bytes: u64,
    /// Why the trace stopped growing, if it did (disk full, file size limit).
    pub full: Option<String>,
    pub stats: SamplerStats,
}

/// Sampler diagnostics over all threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamplerStats {
    /// Samples taken outside wasm code (`HOST`).
    pub host: u64,
    /// Samples whose walk stopped at an untrusted frame (`BROKEN`).
    pub broken: u64,
    /// Samples in a prologue or epilogue (`PROLOGUE`).
    pub prologue: u64,
    /// Samples cut at the frame limit (`TRUNCATED`).
    pub truncated: u64,
    /// Samples written without their CPU time (`NO_CPU`, see
    /// [`RecorderOptions::exact_cpu`]).
    pub no_cpu: u64,
    /// Host samples whose wasm callers came from the call hook's record
    /// (their frame-pointer chain was broken or went astray).
    pub via_hook: u64,
    /// Host samples whose wasm callers the stack scan found (their
    /// frame-pointer chain was broken).
    pub via_scan: u64,
    /// Total time spent in the signal handler, in ns (wall-clock timers only).
    pub handler_ns: u64,
    /// The longest handler run, in ns (wall-clock timers only).
    pub handler_max_ns: u64,
    /// Handler runs over 50 µs (preempted, or waiting on a page fault).
    pub handler_slow: u64,
    /// Samples the handler wrote.
    pub handled: u64,
}

/// A live thread's loss counters as already reported in the trace.
struct LossEntry {
    state: Arc<ThreadState>,
    reported_dropped: u64,
    reported_overruns: u64,
}

/// State shared by the recorder, its background thread and the signal
/// handlers.
pub(crate) struct Shared {
    pub(crate) writer: TraceWriter,
    pub(crate) ranges: TextRanges,
    pub(crate) clock: TimerClock,
    pub(crate) interval_ns: u64,
    /// Whether the handler reads the CPU clock for every sample (see
    /// [`RecorderOptions::exact_cpu`]): asked for, a CPU-time timer, or an
    /// interval of 1 ms or more.
    pub(crate) cpu_every_sample: bool,
    /// Set by `finish`: handlers take no more samples.
    pub(crate) closing: AtomicBool,
    /// Handlers between their `closing` check and their last write.
    pub(crate) inflight: AtomicUsize,
    threads: Mutex<Vec<LossEntry>>,
    /// Losses and stats of threads that have ended.
    ended_dropped: AtomicU64,
    ended_overruns: AtomicU64,
    ended_stats: Mutex<SamplerStats>,
    full: Mutex<Option<String>>,
    code: Mutex<CodeMaps>,
}

/// At most this many code addresses (~8 bytes each) per module go into a
/// full trace's reserved tail (64 KiB by default).
const MAX_ENTRIES_WHEN_FULL: usize = 2048;

/// A module's full address map, kept to answer the code addresses the
/// samples use (SPEC.md §2.7).
struct ModuleMap {
    id: u64,
    /// The module record as written, but with the full address map.
    rec: ModuleRecord,
    mapped: Vec<usize>,
    /// Code offsets written in code-addresses records, and those found
    /// since (not yet written).
    written: rustc_hash::FxHashSet<u64>,
    pending: std::collections::BTreeMap<u64, Option<u64>>,
}

/// Reads the committed samples behind the samplers and writes the wasm
/// offsets of the code offsets they look up: the part of the address maps a
/// profile needs, instead of the whole maps (a module's map is ~15 KB).
struct CodeMaps {
    scanner: SampleScanner,
    modules: Vec<ModuleMap>,
    /// The frames looked at lately, direct-mapped by [`seen_key`]: a
    /// sample's frames mostly repeat recent samples', so most of them stop
    /// at one compare here instead of the module search and two set
    /// look-ups (which were most of this thread's time at 100us).
    seen: Box<[u64; SEEN_SLOTS]>,
}

/// Slots of [`CodeMaps::seen`] (32 KiB).
const SEEN_SLOTS: usize = 4096;
/// An empty slot: no key has all bits set (native addresses are below 2^63).
const SEEN_EMPTY: u64 = u64::MAX;

/// The key of a frame in [`CodeMaps::seen`]: its address, and whether it is
/// looked up as a return address (minus one).
fn seen_key(addr: u64, is_return: bool) -> u64 {
    addr << 1 | u64::from(is_return)
}

fn seen_slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SEEN_SLOTS.trailing_zeros())) as usize
}

impl CodeMaps {
    /// Notes the code offsets of newly committed samples and writes them.
    /// Normal context (housekeeping thread and `finish`).
    fn update(&mut self, writer: &TraceWriter) {
        let CodeMaps {
            scanner,
            modules,
            seen,
        } = self;
        let data = writer.committed_since(scanner.position());
        // Our own trace: damage is impossible short of a bug; stop looking.
        let _ = scanner.scan(data, &mut |s| {
            let host = s.flags & flags::HOST != 0;
            for (j, &addr) in s.stack.iter().enumerate() {
                let is_return = j > 0 || host;
                let key = seen_key(addr, is_return);
                let slot = &mut seen[seen_slot(key)];
                if *slot == key {
                    continue;
                }
                *slot = key;
                let Some(m) = modules.iter_mut().find(|m| m.rec.contains(addr)) else {
                    continue;
                };
                // The offset a reader looks up: return addresses minus one.
                let mut off = addr - m.rec.text_addr;
                if is_return && off > 0 {
                    off -= 1;
                }
                if m.written.contains(&off) || m.pending.contains_key(&off) {
                    continue;
                }
                // Trampolines have no function and need no entry.
                if let Some(f) = m.rec.function_at(off) {
                    let w = m.rec.nearest_wasm_offset(&m.mapped, off, f);
                    m.pending.insert(off, w);
                }
            }
        });
        // A full trace writes these (at the end) into the space kept back
        // for the loss and end records: a bounded share of it, so the end
        // record still fits; the rest lose their lines (wanalyze says so).
        let limit = if writer.is_full() {
            MAX_ENTRIES_WHEN_FULL
        } else {
            usize::MAX
        };
        for m in modules.iter_mut().filter(|m| !m.pending.is_empty()) {
            let entries: Vec<AddressMapEntry> = m
                .pending
                .iter()
                .take(limit)
                .map(|(&code_offset, &wasm_offset)| AddressMapEntry {
                    code_offset,
                    wasm_offset,
                })
                .collect();
            let n = entries.len();
            let rec = Record::CodeAddresses(CodeAddresses {
                module: m.id,
                entries,
            });
            // On failure (the trace is full) they stay pending for the
            // next try.
            if writer.write_record(&rec).is_ok() {
                for _ in 0..n {
                    if let Some((off, _)) = m.pending.pop_first() {
                        m.written.insert(off);
                    }
                }
            }
        }
    }
}

impl Shared {
    /// Writes loss records for every live thread (or just `only`) whose
    /// counters moved since the last report. Normal context.
    fn flush_losses(&self, only: Option<u32>) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for e in threads.iter_mut() {
            if only.is_some_and(|t| t != e.state.thread) {
                continue;
            }
            report_losses(&self.writer, e);
        }
    }

    /// Called by a thread sampler when it ends (on its own thread).
    pub(crate) fn thread_ended(&self, state: &ThreadState) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = threads.iter().position(|e| e.state.thread == state.thread) else {
            // `finish` already ended it.
            return;
        };
        let mut e = threads.swap_remove(i);
        drop(threads);
        self.end_thread(&mut e, clock_ns(libc::CLOCK_THREAD_CPUTIME_ID));
    }

    /// Reports a thread's last losses, writes its end record and folds its
    /// counters into the totals.
    fn end_thread(&self, e: &mut LossEntry, cpu_ns: u64) {
        report_losses(&self.writer, e);
        let _ = self.writer.write_record(&Record::ThreadEnd(ThreadEnd {
            thread: e.state.thread,
            time_ns: clock_ns(libc::CLOCK_MONOTONIC),
            cpu_ns,
        }));
        self.ended_dropped
            .fetch_add(e.state.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        self.ended_overruns
            .fetch_add(e.state.overruns.load(Ordering::Relaxed), Ordering::Relaxed);
        let mut s = self.ended_stats.lock().unwrap_or_else(|e| e.into_inner());
        add_stats(&mut s, &e.state);
    }

    fn note_full(&self, e: &WriteError) {
        let mut full = self.full.lock().unwrap_or_else(|e| e.into_inner());
        if full.is_none() {
            *full = Some(e.to_string());
        }
    }
}

fn add_stats(s: &mut SamplerStats, st: &ThreadState) {
    let t = &st.stats;
    s.host += t.host.load(Ordering::Relaxed);
    s.broken += t.broken.load(Ordering::Relaxed);
    s.prologue += t.prologue.load(Ordering::Relaxed);
    s.truncated += t.truncated.load(Ordering::Relaxed);
    s.no_cpu += t.no_cpu.load(Ordering::Relaxed);
    s.via_hook += t.via_hook.load(Ordering::Relaxed);
    s.via_scan += t.via_scan.load(Ordering::Relaxed);
    s.handler_ns += t.handler_ns.load(Ordering::Relaxed);
    s.handler_max_ns = s
        .handler_max_ns
        .max(t.handler_max_ns.load(Ordering::Relaxed));
    s.handler_slow += t.handler_slow.load(Ordering::Relaxed);
    s.handled += t.samples.load(Ordering::Relaxed);
}

fn report_losses(writer: &TraceWriter, e: &mut LossEntry) {
    let thread = e.state.thread;
    report_loss(
        writer,
        thread,
        &e.state.dropped,
        &mut e.reported_dropped,
        LossReason::LogFull,
    );
    report_loss(
        writer,
        thread,
        &e.state.overruns,
        &mut e.reported_overruns,
        LossReason::TimerOverrun,
    );
}

/// Writes a loss record for what `counter` gained since `reported`, and
/// moves `reported` on if it was written (else the next call retries).
fn report_loss(
    writer: &TraceWriter,
    thread: u32,
    counter: &AtomicU64,
    reported: &mut u64,
    reason: LossReason,
) {
    let now = counter.load(Ordering::Relaxed);
    if now > *reported {
        let rec = Record::SamplesLost(SamplesLost {
            thread,
            count: now - *reported,
            reason,
        });
        if writer.write_record(&rec).is_ok() {
            *reported = now;
        }
    }
}

/// Records one run into a trace file.
///
/// Create it, [`add_module`](Recorder::add_module) every module before it
/// runs, get a [`ThreadSampler`] for each thread that runs wasm, and
/// [`finish`](Recorder::finish) at the end. A background thread grows the
/// trace ahead of the samplers (every 50 ms) and reports losses.
pub struct Recorder {
    shared: Arc<Shared>,
    path: PathBuf,
    housekeeper: Option<JoinHandle<()>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    modules: Mutex<Vec<wasmtime::Module>>,
    next_thread: AtomicU32,
    finished: bool,
}

impl Recorder {
    /// Creates the trace at `path` and writes its run-info record.
    ///
    /// The file is created with default permissions. A symlink at `path` is
    /// refused, and so is an existing file that is not a wrec trace, unless
    /// [`RecorderOptions::force`]; anything but a regular file is always
    /// refused.
    pub fn create(path: &Path, opts: RecorderOptions) -> Result<Recorder, Error> {
        let file = output::open_output(path, opts.force)?;
        Recorder::from_file(path, file, opts)
    }

    /// Like [`Recorder::create`] on a file the caller opened (read and
    /// write, empty).
    pub fn from_file(path: &Path, file: File, opts: RecorderOptions) -> Result<Recorder, Error> {
        if opts.interval < MIN_INTERVAL || opts.interval > MAX_INTERVAL {
            return Err(Error::Interval);
        }
        ignore_sigxfsz();
        let writer = TraceWriter::from_file(path, file, Header::for_this_host(), opts.writer)?;
        let interval_ns = opts.interval.as_nanos() as u64;
        writer.write_run_info(&RunInfo {
            interval_ns,
            clock: opts.clock,
            recorder: RECORDER.to_owned(),
            args: opts.args.clone(),
        })?;
        let shared = Arc::new(Shared {
            writer,
            ranges: TextRanges::new(),
            clock: opts.clock,
            interval_ns,
            cpu_every_sample: opts.exact_cpu
                || opts.clock == TimerClock::Cpu
                || interval_ns >= sampler::CPU_READ_SPAN_NS,
            closing: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            ended_dropped: AtomicU64::new(0),
            ended_overruns: AtomicU64::new(0),
            ended_stats: Mutex::new(SamplerStats::default()),
            full: Mutex::new(None),
            code: Mutex::new(CodeMaps {
                scanner: SampleScanner::new(HEADER_SIZE as u64),
                modules: Vec::new(),
                seen: Box::new([SEEN_EMPTY; SEEN_SLOTS]),
            }),
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let housekeeper = {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wrec-housekeeper".into())
                .spawn(move || housekeeping(&shared, &stop))
                .map_err(Error::Sampler)?
        };
        Ok(Recorder {
            shared,
            path: path.to_owned(),
            housekeeper: Some(housekeeper),
            stop,
            modules: Mutex::new(Vec::new()),
            next_thread: AtomicU32::new(0),
            finished: false,
        })
    }

    /// The trace's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the module record for a compiled module and registers its code
    /// with the samplers; call it before the module runs. `path` is the wasm
    /// file (made absolute for the record) and `bytes` its content (hashed).
    /// The recorder keeps a reference to the module so its code stays
    /// mapped. Returns the module's id in the trace; adding the same module
    /// again returns the first id.
    pub fn add_module(
        &self,
        module: &wasmtime::Module,
        path: &Path,
        bytes: &[u8],
    ) -> Result<u64, Error> {
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let text = module.text();
        let text_addr = text.as_ptr() as u64;
        if let Some(i) = modules
            .iter()
            .position(|m| m.text().as_ptr() as u64 == text_addr)
        {
            return Ok(i as u64);
        }
        if modules.len() >= MAX_MODULES {
            return Err(Error::TooManyModules);
        }
        let id = modules.len() as u64;
        let mut functions: Vec<FunctionEntry> = module
            .functions()
            .map(|f| FunctionEntry {
                index: f.index.as_u32(),
                offset: f.offset as u64,
                len: f.len as u64,
            })
            .collect();
        functions.sort_by_key(|f| f.offset);
        let address_map = module
            .address_map()
            .map(|map| {
                map.map(|(offset, wasm)| AddressMapEntry {
                    code_offset: offset as u64,
                    wasm_offset: wasm.map(u64::from),
                })
                .collect()
            })
            .unwrap_or_default();
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_owned())
        });
        let mut rec = ModuleRecord {
            id,
            path: abs.to_string_lossy().into_owned(),
            sha256: Sha256::digest(bytes).into(),
            text_addr,
            text_len: text.len() as u64,
            functions,
            address_map: Vec::new(),
            addresses: Vec::new(),
        };
        // The record goes out before any sampler may point into the code;
        // the address map stays here, and only the code offsets that
        // samples use are written, as code addresses (SPEC.md §2.7).
        self.shared
            .writer
            .write_record(&Record::Module(rec.clone()))?;
        rec.address_map = address_map;
        let mut code = self.shared.code.lock().unwrap_or_else(|e| e.into_inner());
        code.modules.push(ModuleMap {
            id,
            mapped: rec.mapped_entries(),
            rec,
            written: Default::default(),
            pending: Default::default(),
        });
        // A frame seen before in no module could be in this one.
        code.seen.fill(SEEN_EMPTY);
        drop(code);
        if !self.shared.ranges.push(text_addr, text.len() as u64) {
            return Err(Error::TooManyModules);
        }
        modules.push(module.clone());
        Ok(id)
    }

    /// A sampler for the calling thread, named `name` in the trace. Writes
    /// the thread-start record; the timer is armed by
    /// [`ThreadSampler::start`].
    pub fn thread_sampler(&self, name: &str) -> Result<ThreadSampler, Error> {
        let thread = self.next_thread.fetch_add(1, Ordering::Relaxed);
        let sampler = ThreadSampler::new(self.shared.clone(), thread).map_err(Error::Sampler)?;
        self.shared
            .writer
            .write_record(&Record::ThreadStart(ThreadStart {
                thread,
                time_ns: clock_ns(libc::CLOCK_MONOTONIC),
                cpu_ns: clock_ns(libc::CLOCK_THREAD_CPUTIME_ID),
                // SAFETY: gettid has no preconditions.
                os_tid: unsafe { libc::gettid() } as u64,
                name: name.to_owned(),
            }))?;
        self.shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(LossEntry {
                state: sampler.state().clone(),
                reported_dropped: 0,
                reported_overruns: 0,
            });
        Ok(sampler)
    }

    /// Samples written so far.
    pub fn samples_written(&self) -> u64 {
        self.shared.writer.samples_written()
    }

    /// Ends the recording: stops all sampling, writes the remaining loss
    /// records, end records for threads whose samplers are still alive, and
    /// the end record, and truncates the file to its data.
    pub fn finish(mut self, exit: ExitInfo) -> Result<Summary, Error> {
        self.finish_inner(exit)
    }

    fn finish_inner(&mut self, exit: ExitInfo) -> Result<Summary, Error> {
        self.finished = true;
        let shared = &*self.shared;
        // No handler starts a sample after this; wait for those in flight.
        shared.closing.store(true, Ordering::SeqCst);
        while shared.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(h) = self.housekeeper.take() {
            let _ = h.join();
        }
        // Threads whose samplers are still alive end here.
        let live: Vec<LossEntry> =
            std::mem::take(&mut *shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for mut e in live {
            let cpu = e.state.thread_cpu_ns();
            shared.end_thread(&mut e, cpu);
        }
        // The wasm offsets of the code the last samples use.
        shared
            .code
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .update(&shared.writer);
        let dropped = shared.ended_dropped.load(Ordering::Relaxed);
        let lost = dropped + shared.ended_overruns.load(Ordering::Relaxed);
        let samples = shared.writer.samples_written();
        let end = shared.writer.write_record(&Record::End(End {
            time_ns: clock_ns(libc::CLOCK_MONOTONIC),
            exit_kind: exit.kind,
            status: exit.status,
            message: exit.message,
            samples_written: samples,
            samples_lost: lost,
        }));
        let bytes = shared.writer.finish();
        end?;
        let bytes = bytes?;
        let full = shared
            .full
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let stats = *shared.ended_stats.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Summary {
            path: self.path.clone(),
            samples,
            lost,
            dropped,
            bytes,
            full,
            stats,
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish_inner(ExitInfo {
                kind: ExitKind::Failed,
                status: 1,
                message: "the recorder was dropped without finish()".into(),
            });
        }
    }
}

/// The background thread: grows the trace ahead of the samplers, reports
/// losses and writes the code addresses of new samples while there is room
/// for them (when the trace is full, both are written once at the end, in
/// the space kept back for that).
fn housekeeping(shared: &Shared, stop: &(Mutex<bool>, Condvar)) {
    let (m, cv) = stop;
    let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (g, _) = cv
            .wait_timeout_while(stopped, HOUSEKEEPING_PERIOD, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = g;
        if *stopped {
            return;
        }
        if let Err(e) = shared.writer.grow() {
            shared.note_full(&e);
        }
        shared.writer.prefault();
        if !shared.writer.is_full() {
            shared.flush_losses(None);
            shared
                .code
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&shared.writer);
        }
    }
}

/// Sets `SIGXFSZ` to ignored if it is at its default (terminate), so that a
/// file size limit makes the trace's growth fail instead of killing us.
fn ignore_sigxfsz() {
    // SAFETY: plain sigaction calls.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    }
}
