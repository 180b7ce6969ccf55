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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use sha2::{Digest, Sha256};
use wrec_format::{
    flags, Event, LossReason, ModuleRecord, ReadError, Record, Trace, MAX_NO_CPU_RUN,
};

use crate::model::{
    Category, Frame, FrameId, Func, FuncId, Interner, Lib, Meta, Profile, RunEnd, Sample, Stack,
    StackId, Thread,
};
use crate::ranges::FirstOwner;
use crate::symbols::{CallTarget, WasmSymbols};

/// How to analyze.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Look up file, line, column and inlined frames in the modules' DWARF.
    pub dwarf: bool,
    /// Wasm files to use instead of the paths recorded in the trace; each is
    /// matched to a recorded module by its SHA-256.
    pub modules: Vec<PathBuf>,
    /// Stacks of functions rather than frames, but for each sample's leaf
    /// frame ([`Interner::by_function`]): enough for folded stacks and the
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

/// A loaded module: what the trace recorded and what the wasm file says.
struct Module {
    rec: ModuleRecord,
    /// Shared by every module record with the same SHA-256.
    symbols: Arc<WasmSymbols>,
    lib: u32,
    dwarf: bool,
}

/// The most CPU time, and the most lost samples, a profile adds up (about 146
/// years of ns): a hostile trace can claim any count, and this keeps every
/// sum an exporter takes over samples or threads far from overflowing.
const MAX_TOTAL: u64 = u64::MAX / 4;

/// Synthetic frame names.
const UNKNOWN: &str = "[unknown code]";
const TRUNCATED: &str = "[stack truncated]";
const HOST: &str = "[host]";

/// What one raw stack entry resolves to.
#[derive(Clone, Copy)]
struct Resolved {
    /// Where its frames are in [`Resolver::frames`], outermost first (an
    /// inline chain ends with the innermost inlined call). Empty for
    /// trampolines, which are skipped.
    start: usize,
    end: usize,
    /// For a host call's caller: the wasm offset of its call instruction.
    call_site: Option<(usize, u64)>,
}

impl Resolved {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Slots of [`Resolver::recent`]: enough for the distinct addresses of most
/// programs' samples, small enough to stay in cache.
const RECENT: usize = 4096;

struct Resolver {
    modules: Vec<Module>,
    /// Which of `modules` holds an address: the first whose code does.
    module_ranges: FirstOwner,
    profile: Profile,
    interner: Interner,
    /// Every distinct (address, is return) resolved so far.
    resolved: Vec<Resolved>,
    /// The frames of every [`Resolved`], one after the other.
    frames: Vec<FrameId>,
    /// (address, is return) → index in `resolved`. Raw addresses come from
    /// the trace, so this keeps std's keyed hash: a hostile trace cannot make
    /// its look-ups quadratic.
    cache: HashMap<(u64, bool), usize>,
    /// A direct-mapped cache in front of `cache`: (address, index in
    /// `resolved` × 2 + is return), `u64::MAX` when empty. A collision only
    /// costs a look-up in `cache`.
    recent: Vec<(u64, u64)>,
    host_cache: HashMap<Option<(usize, u64)>, FrameId>,
    real_funcs: HashMap<(usize, u32), FuncId>,
    /// Per module (built on first use): the indices of its address-map
    /// entries that carry a wasm offset, for [`nearest_wasm_offset`].
    mapped: FxHashMap<usize, Vec<usize>>,
    synthetic: FxHashMap<&'static str, FrameId>,
    /// Distinct code offsets inside functions that the trace gives no wasm
    /// offset for (no code-addresses entry, no full map: the recorder was
    /// killed before writing it).
    unmapped: u64,
}

impl Resolver {
    fn synthetic(&mut self, name: &'static str, category: Category) -> FrameId {
        if let Some(&f) = self.synthetic.get(name) {
            return f;
        }
        let f = self.leaf_frame(name.to_owned(), category, None);
        self.synthetic.insert(name, f);
        f
    }

    /// A frame without address or line for a function of its own: the
    /// synthetic and host frames.
    fn leaf_frame(&mut self, name: String, category: Category, lib: Option<u32>) -> FrameId {
        let func = self.interner.func(
            &mut self.profile,
            Func {
                name,
                file: None,
                line: None,
                category,
                lib,
            },
        );
        self.interner.frame(
            &mut self.profile,
            Frame {
                func,
                address: None,
                line: None,
                column: None,
                inline_depth: 0,
            },
        )
    }

    fn module_of(&self, addr: u64) -> Option<usize> {
        self.module_ranges.find(addr)
    }

    /// Resolves one stack entry (cached); its frames are in `self.frames`.
    fn resolve(&mut self, addr: u64, is_return: bool) -> Resolved {
        let slot = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % RECENT;
        let (a, tagged) = self.recent[slot];
        if a == addr && tagged != u64::MAX && (tagged & 1 == 1) == is_return {
            return self.resolved[(tagged >> 1) as usize];
        }
        let i = match self.cache.get(&(addr, is_return)) {
            Some(&i) => i,
            None => {
                let start = self.frames.len();
                let call_site = self.resolve_uncached(addr, is_return);
                self.resolved.push(Resolved {
                    start,
                    end: self.frames.len(),
                    call_site,
                });
                let i = self.resolved.len() - 1;
                self.cache.insert((addr, is_return), i);
                i
            }
        };
        self.recent[slot] = (addr, (i as u64) << 1 | u64::from(is_return));
        self.resolved[i]
    }

    /// Appends the frames of a stack entry to `self.frames`; returns its
    /// call site.
    fn resolve_uncached(&mut self, addr: u64, is_return: bool) -> Option<(usize, u64)> {
        let Some(mi) = self.module_of(addr) else {
            let f = self.synthetic(UNKNOWN, Category::Other);
            self.frames.push(f);
            return None;
        };
        let m = &self.modules[mi];
        let mut off = addr - m.rec.text_addr;
        if is_return && off > 0 {
            off -= 1;
        }
        let Some(func) = m.rec.function_at(off).copied() else {
            // A trampoline: part of the call into or out of wasm, no frame.
            return None;
        };
        let wasm_off = match m.rec.exact_wasm_offset(off) {
            Some(w) => w,
            None if m.rec.address_map.is_empty() => {
                self.unmapped += 1;
                None
            }
            None => {
                let mapped = self
                    .mapped
                    .entry(mi)
                    .or_insert_with(|| m.rec.mapped_entries());
                m.rec.nearest_wasm_offset(mapped, off, &func)
            }
        };
        let lib = m.lib;
        let source = match wasm_off {
            Some(w) if m.dwarf => m.symbols.source_frames(w),
            _ => Vec::new(),
        };
        let real = self.real_func(mi, func.index);
        if source.is_empty() {
            let f = self.interner.frame(
                &mut self.profile,
                Frame {
                    func: real,
                    address: wasm_off,
                    line: None,
                    column: None,
                    inline_depth: 0,
                },
            );
            self.frames.push(f);
        } else {
            // Innermost first from DWARF; the outermost is the real function,
            // named from the name section like every other frame.
            let depth = source.len() - 1;
            for (i, sf) in source.iter().enumerate().rev() {
                let inline_depth = (depth - i) as u32;
                let f = if i == depth {
                    real
                } else {
                    self.interner.func(
                        &mut self.profile,
                        Func {
                            name: sf
                                .function
                                .clone()
                                .unwrap_or_else(|| "[inlined]".to_owned()),
                            file: sf.file.clone(),
                            line: sf.decl_line,
                            category: Category::Wasm,
                            lib: Some(lib),
                        },
                    )
                };
                let f = self.interner.frame(
                    &mut self.profile,
                    Frame {
                        func: f,
                        address: wasm_off,
                        // 0 means "no line/column" in DWARF.
                        line: sf.line.filter(|&l| l != 0),
                        column: sf.column.filter(|&c| c != 0),
                        inline_depth,
                    },
                );
                self.frames.push(f);
            }
        }
        wasm_off.filter(|_| is_return).map(|w| (mi, w))
    }

    /// The function a wasm function index names: one per (module, index),
    /// named from the name section, with its file and declaration line from
    /// the DWARF at its body's start.
    fn real_func(&mut self, mi: usize, index: u32) -> FuncId {
        if let Some(&f) = self.real_funcs.get(&(mi, index)) {
            return f;
        }
        let m = &self.modules[mi];
        let name = m.symbols.function_name(index);
        let outer = match m.symbols.function_body(index) {
            Some(body) if m.dwarf => m.symbols.source_frames(body.start).pop(),
            _ => None,
        };
        let lib = m.lib;
        let f = self.interner.func(
            &mut self.profile,
            Func {
                name,
                file: outer.as_ref().and_then(|o| o.file.clone()),
                line: outer.and_then(|o| o.decl_line),
                category: Category::Wasm,
                lib: Some(lib),
            },
        );
        self.real_funcs.insert((mi, index), f);
        f
    }

    /// The leaf frame of a host call made at `site`.
    fn host_frame(&mut self, site: Option<(usize, u64)>) -> FrameId {
        if let Some(&f) = self.host_cache.get(&site) {
            return f;
        }
        let (name, lib) = match site {
            Some((mi, w)) => {
                let m = &self.modules[mi];
                let name = match m.symbols.call_target(w) {
                    Some(CallTarget::Direct(i)) if i < m.symbols.num_imported_funcs() => {
                        m.symbols.function_name(i)
                    }
                    Some(CallTarget::Direct(_)) => "[host: runtime]".to_owned(),
                    Some(CallTarget::Indirect) => "[host: indirect call]".to_owned(),
                    Some(CallTarget::Other(op)) => format!("[libcall] {op}"),
                    None => HOST.to_owned(),
                };
                (name, Some(m.lib))
            }
            None => (HOST.to_owned(), None),
        };
        let f = self.leaf_frame(name, Category::Host, lib);
        self.host_cache.insert(site, f);
        f
    }

    /// Pushes a synthetic or host frame (the only frame of its function,
    /// so a leaf or not makes no difference) onto `parent`.
    fn push(&mut self, parent: Option<StackId>, frame: FrameId) -> Option<StackId> {
        push(
            &mut self.interner,
            &mut self.profile,
            parent,
            &[frame],
            false,
        )
    }

    /// Pushes the frames of `res` (from [`Resolver::resolve`]) onto `parent`;
    /// `leaf`: the last of them is the sample's leaf.
    fn push_resolved(
        &mut self,
        parent: Option<StackId>,
        res: Resolved,
        leaf: bool,
    ) -> Option<StackId> {
        push(
            &mut self.interner,
            &mut self.profile,
            parent,
            &self.frames[res.start..res.end],
            leaf,
        )
    }
}

/// The stack node for `frames` (outermost first) called from `parent`;
/// `leaf`: the last frame is a sample's leaf ([`Interner::leaf_stack`]).
fn push(
    interner: &mut Interner,
    profile: &mut Profile,
    parent: Option<StackId>,
    frames: &[FrameId],
    leaf: bool,
) -> Option<StackId> {
    let mut node = parent;
    for (i, &frame) in frames.iter().enumerate() {
        let s = Stack {
            parent: node,
            frame,
        };
        node = Some(if leaf && i + 1 == frames.len() {
            interner.leaf_stack(profile, s)
        } else {
            interner.stack(profile, s)
        });
    }
    node
}

/// Per-thread state for reusing the previous sample's stack nodes.
#[derive(Default)]
struct ThreadCtx {
    last_time: Option<u64>,
    /// The thread's samples without CPU time (`NO_CPU`) since its last
    /// sample with one, held back until a CPU time tells what they share.
    pending: Vec<Pending>,
    /// The time and CPU time of that last sample, in whole µs.
    cpu_at_us: (u64, u64),
    prev_raw: Vec<u64>,
    prev_flags: u8,
    /// Root first: `nodes[k]` is the stack node for the previous sample's
    /// outermost `k` raw entries (`nodes[0]`: none, or `[stack truncated]`).
    nodes: Vec<Option<StackId>>,
    /// `sites[k]`: the call site of the innermost function frame in them.
    sites: Vec<Option<(usize, u64)>>,
}

/// A sample held back for its CPU time (see [`ThreadCtx::pending`]).
struct Pending {
    time_us: u64,
    /// Since the profile's start.
    time_ns: u64,
    stack: Option<StackId>,
}

/// Adds a sample's CPU delta to the profile's total, which it keeps under
/// [`MAX_TOTAL`] (a damaged trace's deltas could add up past 64 bits).
fn capped(d: u64, cpu_total: &mut u64) -> u64 {
    let d = d.min(MAX_TOTAL - *cpu_total);
    *cpu_total += d;
    d
}

/// Pushes the thread's held-back samples and then `close` (if `push_close`;
/// a thread's end is no sample), sharing `total_us` of CPU time, measured at
/// `close`, among them as SPEC.md §2.4 says.
fn close_pending(
    ctx: &mut ThreadCtx,
    samples: &mut crate::model::Samples,
    cpu_total: &mut u64,
    close: Pending,
    push_close: bool,
    total_us: u64,
) {
    if ctx.pending.is_empty() {
        // Nearly every sample of a trace: nothing to share.
        if push_close {
            samples.push(Sample {
                time_ns: close.time_ns,
                cpu_delta_ns: capped(total_us.saturating_mul(1000), cpu_total),
                stack: close.stack,
            });
        }
        return;
    }
    let mut spans = [0u64; MAX_NO_CPU_RUN as usize + 1];
    let n = ctx.pending.len() + 1;
    let mut prev = ctx.cpu_at_us.0;
    for (span, t) in spans
        .iter_mut()
        .zip(ctx.pending.iter().map(|p| p.time_us).chain([close.time_us]))
    {
        *span = t.saturating_sub(prev);
        prev = t;
    }
    let mut held = ctx.pending.drain(..).chain([close]);
    let mut k = 0;
    wrec_format::spread_cpu(total_us, &spans[..n], |share| {
        k += 1;
        let Some(p) = held.next() else { return };
        if k == n && !push_close {
            return;
        }
        samples.push(Sample {
            time_ns: p.time_ns,
            cpu_delta_ns: capped(share.saturating_mul(1000), cpu_total),
            stack: p.stack,
        });
    });
}

/// Pushes the thread's held-back samples with their own time delta as CPU
/// time: nothing measured closes their run.
fn flush_pending(ctx: &mut ThreadCtx, samples: &mut crate::model::Samples, cpu_total: &mut u64) {
    let mut prev = ctx.cpu_at_us.0;
    for p in ctx.pending.drain(..) {
        let d = p.time_us.saturating_sub(prev);
        prev = p.time_us;
        samples.push(Sample {
            time_ns: p.time_ns,
            cpu_delta_ns: capped(d.saturating_mul(1000), cpu_total),
            stack: p.stack,
        });
    }
    ctx.cpu_at_us.0 = prev;
}

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
    let overrides = load_overrides(&opts.modules)?;
    let mut r = Resolver {
        modules: Vec::new(),
        module_ranges: FirstOwner::default(),
        profile: Profile::default(),
        interner: if opts.by_function {
            Interner::by_function()
        } else {
            Interner::default()
        },
        resolved: Vec::new(),
        frames: Vec::new(),
        cache: HashMap::new(),
        recent: vec![(0, u64::MAX); RECENT],
        host_cache: HashMap::new(),
        real_funcs: HashMap::new(),
        mapped: FxHashMap::default(),
        synthetic: FxHashMap::default(),
        unmapped: 0,
    };
    let header = *trace.header();
    let mut meta = Meta {
        warnings: trace
            .warnings()
            .iter()
            .map(|w| format!("{}: {w}", path.display()))
            .collect(),
        ..Meta::default()
    };
    // Thread id → index in `ctxs` and `r.profile.threads`.
    let mut threads: HashMap<u32, usize> = HashMap::new();
    let mut ctxs: Vec<ThreadCtx> = Vec::new();
    // The thread of the previous sample: (id, index).
    let mut last_thread: Option<(u32, usize)> = None;
    // Index in `r.modules` of the first module with each hash.
    let mut by_hash: FxHashMap<[u8; 32], usize> = FxHashMap::default();
    let mut start_ns: Option<u64> = None;
    let (mut cpu_total, mut lost_total) = (0u64, 0u64);
    let mut used_overrides = vec![false; overrides.len()];
    let mut samples_read = 0u64;
    let mut saw_end = false;
    let mut lost_by_reason = Losses::default();
    let total = trace.data_end();
    let file_len = std::fs::metadata(path).map_or(0, |m| m.len());
    // The decoder's first pass reads the whole trace, then the main pass
    // reads it again: each lets go of the pages behind it.
    let mut behind = crate::release::Behind::new(trace.bytes(), file_len);
    let mut decoder = trace.decoder_with(&mut |offset| behind.release(offset));
    let mut behind = crate::release::Behind::new(trace.bytes(), file_len);
    let mut n = 0u64;
    let mut damage = None;
    while let Some(ev) = decoder.next() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                damage = Some(e);
                break;
            }
        };
        n += 1;
        match ev {
            Event::Sample(s) => {
                samples_read += 1;
                if n.is_multiple_of(4096) {
                    // A few hundred KB of trace: the pages behind go
                    // before they add up (see `release::STEP`).
                    behind.release(s.offset);
                    if n.is_multiple_of(65536) {
                        progress(s.offset, total);
                    }
                }
                let zero = *start_ns.get_or_insert(s.time_ns);
                // Most traces have one thread, or long runs of one: skip the
                // (keyed, so slower) hash when it is the last one again.
                let i = match last_thread {
                    Some((tid, i)) if tid == s.thread => i,
                    _ => *threads.entry(s.thread).or_insert_with(|| {
                        r.profile.threads.push(Thread {
                            name: format!("thread {}", s.thread),
                            tid: s.thread,
                            start_ns: s.time_ns.saturating_sub(zero),
                            ..Thread::default()
                        });
                        ctxs.push(ThreadCtx::default());
                        ctxs.len() - 1
                    }),
                };
                last_thread = Some((s.thread, i));
                let ctx = &mut ctxs[i];
                let stack = sample_stack(&mut r, ctx, s.flags, s.stack);
                ctx.last_time = Some(s.time_ns);
                let samples = &mut r.profile.threads[i].samples;
                let this = Pending {
                    // The decoder's times and CPU times are whole µs.
                    time_us: s.time_ns / 1000,
                    time_ns: s.time_ns.saturating_sub(zero),
                    stack,
                };
                if s.flags & flags::NO_CPU != 0 {
                    meta.samples_without_cpu += 1;
                    if ctx.pending.len() >= MAX_NO_CPU_RUN as usize {
                        // The decoder refuses longer runs; never hold more.
                        flush_pending(ctx, samples, &mut cpu_total);
                    }
                    ctx.pending.push(this);
                } else {
                    // The spans run from the previous reading: update it after.
                    let at = (this.time_us, s.cpu_ns / 1000);
                    close_pending(
                        ctx,
                        samples,
                        &mut cpu_total,
                        this,
                        true,
                        s.cpu_delta_ns / 1000,
                    );
                    ctx.cpu_at_us = at;
                }
            }
            Event::Record(Record::RunInfo(ri)) => {
                meta.interval_ns = ri.interval_ns;
                meta.clock = Some(ri.clock);
                meta.recorder = ri.recorder;
                meta.args = ri.args;
            }
            Event::Record(Record::Module(rec)) => {
                // A module recorded more than once is read and indexed once:
                // memory stays proportional to the files, not to the number
                // of module records times the module's size.
                let m = match by_hash.get(&rec.sha256) {
                    Some(&i) => {
                        let first = &r.modules[i];
                        let (symbols, lib, dwarf) = (first.symbols.clone(), first.lib, first.dwarf);
                        Module {
                            rec,
                            symbols,
                            lib,
                            dwarf,
                        }
                    }
                    None => {
                        by_hash.insert(rec.sha256, r.modules.len());
                        load_module(
                            rec,
                            &overrides,
                            &mut used_overrides,
                            opts,
                            &mut meta,
                            &mut r.profile,
                        )?
                    }
                };
                r.module_ranges
                    .add(m.rec.text_addr, m.rec.text_len, r.modules.len());
                r.modules.push(m);
            }
            Event::Record(Record::ThreadStart(ts)) => {
                let zero = *start_ns.get_or_insert(ts.time_ns);
                let idx = *threads.entry(ts.thread).or_insert_with(|| {
                    r.profile.threads.push(Thread::default());
                    ctxs.push(ThreadCtx::default());
                    ctxs.len() - 1
                });
                let t = &mut r.profile.threads[idx];
                t.name = if ts.name.is_empty() {
                    format!("thread {}", ts.thread)
                } else {
                    ts.name
                };
                t.tid = ts.thread;
                t.start_ns = ts.time_ns.saturating_sub(zero);
            }
            Event::Record(Record::ThreadEnd(te)) => {
                if let Some(&i) = threads.get(&te.thread) {
                    let zero = start_ns.unwrap_or(te.time_ns);
                    r.profile.threads[i].end_ns = Some(te.time_ns.saturating_sub(zero));
                    // Its CPU time closes a run of samples without one
                    // (SPEC.md §2.4); the end's own share is no sample's.
                    let ctx = &mut ctxs[i];
                    if !ctx.pending.is_empty() {
                        let (at, cpu) = ctx.cpu_at_us;
                        let end_us = (te.time_ns / 1000).max(at);
                        let total = (te.cpu_ns / 1000).saturating_sub(cpu);
                        close_pending(
                            ctx,
                            &mut r.profile.threads[i].samples,
                            &mut cpu_total,
                            Pending {
                                time_us: end_us,
                                time_ns: 0,
                                stack: None,
                            },
                            false,
                            total,
                        );
                    }
                }
            }
            Event::Record(Record::SamplesLost(l)) => {
                let count = l.count.min(MAX_TOTAL - lost_total);
                lost_total += count;
                if let Some(&i) = threads.get(&l.thread) {
                    let t = &mut r.profile.threads[i];
                    t.lost = t.lost.saturating_add(count);
                }
                lost_by_reason.add(l.reason, count);
            }
            Event::Record(Record::End(e)) => {
                saw_end = true;
                meta.end = Some(RunEnd {
                    kind: e.exit_kind,
                    status: e.status,
                    message: e.message,
                });
            }
            // Already attached to their module records by the decoder.
            Event::Record(Record::CodeAddresses(_)) => {}
            Event::Unknown { .. } => {}
        }
    }
    // Samples without CPU time that nothing closed (a recorder that was
    // killed): each gets its own time delta.
    for (ctx, t) in ctxs.iter_mut().zip(&mut r.profile.threads) {
        flush_pending(ctx, &mut t.samples, &mut cpu_total);
    }
    progress(total, total);
    let damaged = damage.is_some();
    if let Some(e) = damage {
        meta.warnings.push(format!(
            "{}: {e}; the profile covers the {samples_read} samples before it",
            path.display()
        ));
    } else if !saw_end {
        meta.warnings.push(format!(
            "{}: the trace ended without its end record (the recorder was killed or crashed); the profile covers the {samples_read} samples it holds",
            path.display()
        ));
    }
    for (i, used) in used_overrides.iter().enumerate() {
        if !used && damaged {
            // Its module record may be in the damaged part: the intact
            // part is still worth a profile.
            meta.warnings.push(format!(
                "{}: --module matched no module record before the damage; not used",
                overrides[i].0.display()
            ));
        } else if !used {
            let recorded: Vec<String> = r.modules.iter().map(|m| m.rec.path.clone()).collect();
            return Err(AnalyzeError::ModuleUnmatched {
                path: overrides[i].0.clone(),
                recorded: if recorded.is_empty() {
                    "none".to_owned()
                } else {
                    recorded.join(", ")
                },
            });
        }
    }
    if r.unmapped > 0 {
        meta.warnings.push(format!(
            "{}: {} sampled code addresses have no recorded wasm offset (the recorder was probably killed before writing them): their frames name the function but have no line",
            path.display(),
            r.unmapped
        ));
    }
    for (reason, lost) in lost_by_reason.iter() {
        let why = match reason {
            LossReason::LogFull => "the trace file was full: the disk ran out or growth fell behind",
            LossReason::StackWalk => "their stacks could not be walked",
            LossReason::TimerOverrun => {
                "the timer fired while the thread waited for a CPU (a busy machine), and those expirations merged"
            }
            LossReason::Other => "other reasons",
        };
        meta.warnings
            .push(format!("the recorder lost {lost} samples: {why}"));
    }
    for (i, m) in r.modules.iter().enumerate() {
        if by_hash.get(&m.rec.sha256) != Some(&i) {
            continue; // a module recorded again: its warnings are in already
        }
        for w in m.symbols.warnings() {
            meta.warnings.push(w.clone());
        }
        if m.dwarf {
            // Problems met while looking lines up (damaged DWARF).
            meta.warnings.extend(m.symbols.dwarf_warnings());
        }
    }
    meta.has_lines = r.modules.iter().any(|m| m.dwarf && m.symbols.found_lines());
    // No stack is added after this; it gives them their parents.
    std::mem::take(&mut r.interner).finish(&mut r.profile);
    if let Some(&unknown) = r.synthetic.get(UNKNOWN) {
        // Addresses in no recorded module: a trace whose module records are
        // missing, late or wrong. Say how much of the profile that is.
        let p = &r.profile;
        let mut has_unknown = vec![false; p.stacks.len()];
        for (i, st) in p.stacks.iter().enumerate() {
            // Parents come before children in the stack table.
            has_unknown[i] =
                st.frame == unknown || st.parent.is_some_and(|q| has_unknown[q as usize]);
        }
        let (n, total) =
            p.threads
                .iter()
                .flat_map(|t| &t.samples)
                .fold((0u64, 0u64), |(n, t), s| {
                    (
                        n + u64::from(s.stack.is_some_and(|st| has_unknown[st as usize])),
                        t + 1,
                    )
                });
        if n > 0 {
            meta.warnings.push(format!(
                "{}: {n} of {total} samples have code addresses in no module the trace describes (shown as {UNKNOWN}): the trace's module records are missing or wrong",
                path.display()
            ));
        }
    }
    meta.product = r
        .modules
        .first()
        .map(|m| file_name(&m.rec.path))
        .or_else(|| meta.args.first().cloned())
        .unwrap_or_else(|| "wasm".to_owned());
    let zero = start_ns.unwrap_or(header.monotonic_reference_ns);
    let wall_ns =
        header.wall_reference_ns as f64 + (zero as f64 - header.monotonic_reference_ns as f64);
    meta.start_unix_ms = wall_ns / 1e6;
    r.profile.start_ns = zero;
    r.profile.meta = meta;
    Ok(r.profile)
}

/// Samples lost, by reason: each reason met (even with a count of 0) in
/// the order of [`Losses::ORDER`], the order the warnings list them.
#[derive(Default)]
struct Losses([Option<u64>; 4]);

impl Losses {
    const ORDER: [LossReason; 4] = [
        LossReason::LogFull,
        LossReason::StackWalk,
        LossReason::TimerOverrun,
        LossReason::Other,
    ];

    fn add(&mut self, reason: LossReason, count: u64) {
        let slot = match reason {
            LossReason::LogFull => 0,
            LossReason::StackWalk => 1,
            LossReason::TimerOverrun => 2,
            LossReason::Other => 3,
        };
        let n = self.0[slot].get_or_insert(0);
        *n = n.saturating_add(count);
    }

    fn iter(&self) -> impl Iterator<Item = (LossReason, u64)> + '_ {
        Self::ORDER
            .into_iter()
            .zip(&self.0)
            .filter_map(|(r, n)| Some((r, (*n)?)))
    }
}

/// Builds (or reuses) the stack nodes of one sample; returns its leaf.
fn sample_stack(r: &mut Resolver, ctx: &mut ThreadCtx, sflags: u8, raw: &[u64]) -> Option<StackId> {
    let n = raw.len();
    let host = sflags & flags::HOST != 0;
    let incomplete = sflags & (flags::TRUNCATED | flags::BROKEN);
    // How many outermost entries are shared with the previous sample and
    // were resolved the same way (entry 0 is special: the leaf).
    let mut shared = 0;
    if incomplete == ctx.prev_flags & (flags::TRUNCATED | flags::BROKEN)
        && ctx.nodes.len() == ctx.prev_raw.len() + 1
    {
        let m = ctx.prev_raw.len();
        while shared < n.min(m) && raw[n - 1 - shared] == ctx.prev_raw[m - 1 - shared] {
            shared += 1;
        }
        // Entry 0 of either stack is the leaf, resolved differently.
        shared = shared.min(n.saturating_sub(1)).min(m.saturating_sub(1));
    }
    // Root first, the shared entries stay where they are.
    let (nodes, sites) = (&mut ctx.nodes, &mut ctx.sites);
    if shared > 0 {
        nodes.truncate(shared + 1);
        sites.truncate(shared + 1);
    } else {
        nodes.clear();
        sites.clear();
        nodes.push(if incomplete != 0 {
            let f = r.synthetic(TRUNCATED, Category::Other);
            r.push(None, f)
        } else {
            None
        });
        sites.push(None);
    }
    for j in (0..n - shared).rev() {
        let is_return = j > 0 || host;
        let res = r.resolve(raw[j], is_return);
        // Entry 0's innermost frame is the sample's leaf unless a host
        // frame goes below it (then nothing is pushed here if it is in a
        // trampoline). The node is never a parent: the next sample keeps
        // none of this sample's entry 0 (see `shared`).
        let node = r.push_resolved(nodes[n - j - 1], res, j == 0 && !host);
        let site = if res.is_empty() {
            sites[n - j - 1]
        } else {
            res.call_site
        };
        nodes.push(node);
        sites.push(site);
    }
    // The leaf: a host call (or a PC in a trampoline, on its way in or out
    // of the host) ends in a frame naming the callee.
    let leaf_in_trampoline = n > 0 && !host && r.resolve(raw[0], false).is_empty();
    let leaf = if host || leaf_in_trampoline || n == 0 {
        let f = r.host_frame(sites[n]);
        r.push(nodes[n], f)
    } else {
        nodes[n]
    };
    ctx.prev_raw.clear();
    ctx.prev_raw.extend_from_slice(raw);
    ctx.prev_flags = sflags;
    leaf
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `--module` file: its path, bytes and SHA-256.
type Override = (PathBuf, Vec<u8>, [u8; 32]);

/// `--module` files, read and hashed.
fn load_overrides(paths: &[PathBuf]) -> Result<Vec<Override>, AnalyzeError> {
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).map_err(|source| AnalyzeError::Io {
                path: p.clone(),
                source,
            })?;
            let h = sha256(&bytes);
            Ok((p.clone(), bytes, h))
        })
        .collect()
}

fn load_module(
    rec: ModuleRecord,
    overrides: &[Override],
    used: &mut [bool],
    opts: &Options,
    meta: &mut Meta,
    profile: &mut Profile,
) -> Result<Module, AnalyzeError> {
    let (path, bytes) = match overrides.iter().position(|o| o.2 == rec.sha256) {
        Some(i) => {
            used[i] = true;
            (overrides[i].0.clone(), overrides[i].1.clone())
        }
        None => {
            let path = PathBuf::from(&rec.path);
            // The analyzer reads the recorded path only if its hash matches.
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(AnalyzeError::ModuleMissing { path });
                }
                Err(source) => return Err(AnalyzeError::Io { path, source }),
            };
            if sha256(&bytes) != rec.sha256 {
                if let Some((p, _, _)) = overrides.first() {
                    return Err(AnalyzeError::ModuleUnmatched {
                        path: p.clone(),
                        recorded: rec.path.clone(),
                    });
                }
                return Err(AnalyzeError::ModuleChanged { path });
            }
            (path, bytes)
        }
    };
    let symbols = WasmSymbols::from_bytes(&path, bytes)?;
    let dwarf = opts.dwarf && symbols.has_dwarf();
    if opts.dwarf && !symbols.has_dwarf() {
        meta.warnings.push(format!(
            "{}: has no DWARF debug info, so the profile has function names but no source lines (rebuild with -g)",
            path.display()
        ));
    }
    profile.libs.push(Lib {
        name: file_name(&path.to_string_lossy()),
        path: path.to_string_lossy().into_owned(),
        sha256: hex(&rec.sha256),
    });
    Ok(Module {
        rec,
        symbols: Arc::new(symbols),
        lib: (profile.libs.len() - 1) as u32,
        dwarf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrec_format::{AddressMapEntry, FunctionEntry};

    /// The linear scan `nearest_wasm_offset` replaced, as the reference.
    fn nearest_linear(rec: &ModuleRecord, off: u64, func: &FunctionEntry) -> Option<u64> {
        let i = rec.address_map.partition_point(|e| e.code_offset <= off);
        let before = rec.address_map[..i]
            .iter()
            .rev()
            .take_while(|e| e.code_offset >= func.offset)
            .find_map(|e| e.wasm_offset);
        before.or_else(|| {
            rec.address_map[i..]
                .iter()
                .take_while(|e| e.code_offset < func.offset + func.len)
                .find_map(|e| e.wasm_offset)
        })
    }

    #[test]
    fn nearest_wasm_offset_matches_a_linear_scan() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut rnd = move |n: u64| next() % n;
        for _ in 0..300 {
            let mut at = 0;
            let address_map: Vec<AddressMapEntry> = (0..rnd(40))
                .map(|_| {
                    at += rnd(4); // repeated offsets too
                    AddressMapEntry {
                        code_offset: at,
                        wasm_offset: (rnd(3) == 0).then(|| rnd(1000)),
                    }
                })
                .collect();
            let rec = ModuleRecord {
                id: 0,
                path: String::new(),
                sha256: [0; 32],
                text_addr: 0,
                text_len: at + 10,
                functions: Vec::new(),
                address_map,
                addresses: Vec::new(),
            };
            let mapped = rec.mapped_entries();
            for _ in 0..20 {
                let offset = rnd(at + 5);
                let func = FunctionEntry {
                    index: 0,
                    offset,
                    len: rnd(at + 6 - offset) + 1,
                };
                for off in offset..offset + func.len {
                    assert_eq!(
                        rec.nearest_wasm_offset(&mapped, off, &func),
                        nearest_linear(&rec, off, &func),
                        "{rec:?} {func:?} at {off}"
                    );
                }
            }
        }
    }

    #[test]
    fn hex_and_file_name() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(file_name("/a/b/fib.wasm"), "fib.wasm");
        assert_eq!(file_name("fib.wasm"), "fib.wasm");
    }
}
