//! The signal-driven stack sampler: per-thread POSIX timers, the `SIGPROF`
//! handler, the frame-pointer walk with its stack scan for host samples, and
//! the optional call hook that remembers where wasm called into the host.
//!
//! # How a sample is taken
//!
//! Every sampled thread owns a timer (`timer_create` with
//! `SIGEV_THREAD_ID`, so the signal goes to exactly that thread) whose
//! `sigev_value.sival_ptr` points at the thread's [`ThreadState`]. The
//! handler reads the interrupted registers from the `ucontext` and the
//! monotonic clock, walks the frame-pointer chain, reads the thread CPU
//! clock unless the sample may go without it (SPEC.md §3) and appends the raw return addresses with
//! [`TraceWriter::append_sample`](wrec_format::TraceWriter::append_sample).
//! Symbolization happens offline, in the analyzer.
//!
//! # Which frames are recorded
//!
//! Only addresses inside a registered module's compiled code (`Module::text()`):
//!
//! - PC in module code: the PC, then each return address while it is inside
//!   module code; the first return address outside is the host that called
//!   into wasm, and the walk stops there.
//! - PC outside module code (a WASI call, a libcall such as `memory.grow`, or
//!   the runtime): the sample is flagged `HOST`, host frames are skipped by
//!   walking frame pointers up to the first return address inside module code,
//!   and the walk goes on from there. Where the host frames cannot be walked
//!   (glibc is built without frame pointers), a bounded scan of the stack
//!   above `sp` finds the frame record of wasm's call into the host
//!   ([`scan_for_boundary`]); if the opt-in call hook is installed, the
//!   boundary it recorded when wasm called the host is used first (see
//!   [`ThreadState::on_call_hook`]).
//!
//! # Prologues and epilogues (x86_64)
//!
//! Cranelift's code, checked by disassembling `Module::text()` of the
//! fixtures (see `examples/dump_text.rs`), looks like this for every wasm
//! function and every trampoline:
//!
//! ```text
//! 55                push rbp            <- PC here: caller's return address at [rsp]
//! 48 89 e5          mov rbp, rsp        <- PC here: return address at [rsp+8]
//! 4c 8b 57 08 ...   stack-limit check   (rbp is this frame's from here on)
//! 48 83 ec 10       sub rsp, N
//! 48 89 1c 24 ...   callee-saved spills with mov, never push
//!   ... body ...
//! 48 8b 1c 24 ...   callee-saved reloads
//! 48 83 c4 10       add rsp, N
//! 48 89 ec          mov rsp, rbp
//! 5d                pop rbp             (rsp == rbp: still a normal frame)
//! c3                ret                 <- PC here: rbp is the caller's again, return address at [rsp]
//! ```
//!
//! No `leave`, no pushes besides `push rbp`, and the stack check comes after
//! `mov rbp, rsp`. So a PC on `push rbp` or `ret` finds the caller's return
//! address at `[rsp]`, a PC on `mov rbp, rsp` finds it at `[rsp+8]`, and in
//! every other instruction the frame-pointer walk is right. Without this fix
//! the plain walk skips the direct caller in those three instructions (one
//! sample in eight in call-heavy code).

use std::cell::UnsafeCell;
use std::io;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wrec_format::{clock_ns, flags, SampleEncoder, SampleRef, TimerClock, MAX_FRAMES};

use crate::arch::{
    current_fp, direct_call_target, frame_state, regs_from, strip_pac, Direct, FrameState, Memory,
    Regs,
};
use crate::Shared;

/// The most modules a recorder can register (the handler checks addresses
/// against a fixed array so it never allocates or locks).
pub const MAX_MODULES: usize = 64;

/// The most threads that can be sampled at once in a process.
pub const MAX_THREADS: usize = 256;

/// How many nested host calls the call hook remembers a boundary for.
const BOUNDARY_SLOTS: usize = 16;

/// How many host frames the handler walks through looking for wasm.
const MAX_HOST_FRAMES: usize = 256;

/// How many frames the call hook walks from itself looking for wasm.
const MAX_HOOK_FRAMES: usize = 64;

/// How far above the interrupted stack pointer the handler looks for the
/// frame record of wasm's call into the host when the host's frame-pointer
/// chain is broken (see [`scan_for_boundary`]). Wasmtime 48's WASI host-call
/// path keeps the first wasm frame a few KiB above a sample in glibc.
const SCAN_BYTES: u64 = 32 * 1024;

/// How many candidate frame records (a return address into module code) the
/// scan checks before it gives up. Wasmtime-WASI's `path_open` path leaves
/// up to ~22 implausible ones (code addresses in host frames) below the
/// boundary; 16 was too few there.
const SCAN_CANDIDATES: usize = 64;

// ---------------------------------------------------------------------------
// Text ranges
// ---------------------------------------------------------------------------

/// One module's compiled code, `[start, end)`.
pub(crate) struct TextRange {
    start: AtomicU64,
    end: AtomicU64,
}

/// The registered modules' code ranges, readable from a signal handler.
pub(crate) struct TextRanges {
    ranges: [TextRange; MAX_MODULES],
    len: AtomicUsize,
}

impl TextRanges {
    pub(crate) fn new() -> TextRanges {
        TextRanges {
            ranges: [const {
                TextRange {
                    start: AtomicU64::new(0),
                    end: AtomicU64::new(0),
                }
            }; MAX_MODULES],
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a range (normal context, serialized by the caller). The range is
    /// written before the length is published, so a handler never sees a
    /// half-written entry.
    pub(crate) fn push(&self, start: u64, len: u64) -> bool {
        let i = self.len.load(Ordering::Acquire);
        if i >= MAX_MODULES {
            return false;
        }
        self.ranges[i].start.store(start, Ordering::Relaxed);
        self.ranges[i]
            .end
            .store(start.saturating_add(len), Ordering::Relaxed);
        self.len.store(i + 1, Ordering::Release);
        true
    }
}

/// Address classification for the walk: which addresses are module code.
pub(crate) trait Code {
    /// The `[start, end)` of the module code holding `addr`, if any.
    fn range_of(&self, addr: u64) -> Option<(u64, u64)>;

    fn contains(&self, addr: u64) -> bool {
        self.range_of(addr).is_some()
    }
}

impl Code for TextRanges {
    #[inline]
    fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
        let n = self.len.load(Ordering::Acquire).min(MAX_MODULES);
        for r in &self.ranges[..n] {
            let start = r.start.load(Ordering::Relaxed);
            let end = r.end.load(Ordering::Relaxed);
            if addr >= start && addr < end {
                return Some((start, end));
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// The walk (pure: memory access goes through `Memory`, so tests can fake it)
// ---------------------------------------------------------------------------

/// The registers and thread facts a walk starts from.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WalkInput {
    pub pc: u64,
    pub fp: u64,
    pub sp: u64,
    /// Link register (aarch64); unused on x86_64.
    #[allow(dead_code)]
    pub lr: u64,
    /// Lowest and one past the highest address of the thread's stack.
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// The call hook's record of the innermost wasm→host boundary: the host
    /// frame's fp and the return address into module code stored at fp+8.
    pub boundary: Option<(u64, u64)>,
    /// Whether wasm is on the stack at all, if the call hook tells us.
    pub wasm_active: Option<bool>,
    /// Whether the thread is inside a host call made by wasm (so wasm frames
    /// are certainly on the stack), if the call hook tells us.
    pub in_host_call: Option<bool>,
    /// Whether wasm was called again from inside the innermost host call
    /// (then wasm frames may lie below the hook's boundary).
    pub nested_wasm: bool,
    /// A frame address that any wasm frame on this thread lies below: the
    /// frame that created the thread's sampler (0: unknown). A host chain
    /// that ends in a null frame pointer only counts as the thread's whole
    /// stack if it got at least this far.
    pub anchor: u64,
}

/// How a host sample found the wasm frames that called the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Not a host sample, no wasm frame found, or the host's frame-pointer
    /// chain led there.
    Chain,
    /// The call hook's boundary record (the chain was broken or disagreed).
    Hook,
    /// The chain was broken and [`scan_for_boundary`] found the record.
    Scan,
}

/// Walks the interrupted stack into `out` (innermost first) and returns the
/// frame count, the sample flags (`HOST`, `PROLOGUE`, `BROKEN`, `TRUNCATED`)
/// and how a host sample reached its wasm callers. Async-signal-safe: no allocation, no locks, no calls but
/// `mem` and `code`, and every memory read is checked first:
///
/// - stack words: 8-byte aligned, at or above the interrupted stack pointer
///   (everything there is the live, mapped stack) and below the stack top;
///   frame pointers strictly increase, so the walk ends;
/// - code bytes: only inside the module code range holding the PC.
pub(crate) fn walk<M: Memory, C: Code>(
    mem: &M,
    code: &C,
    inp: &WalkInput,
    out: &mut [u64],
) -> (usize, u8, Via) {
    let hi = inp.stack_hi;
    // The live stack is [sp, hi). An sp outside the thread's stack (a signal
    // handler running on an alternate stack, say) leaves nothing readable
    // from the registers.
    let sp_ok = inp.sp >= inp.stack_lo && inp.sp < hi;
    let lo = if sp_ok { inp.sp } else { hi };
    // A frame record [fp, fp+16) that can be read.
    let frame_ok = |fp: u64, prev: u64, lo: u64| {
        fp & 7 == 0 && fp > prev && fp >= lo && fp <= hi.saturating_sub(16)
    };
    let slot_ok = |a: u64| a & 7 == 0 && a >= lo && a <= hi.saturating_sub(8);
    let cap = out.len();
    let mut n = 0usize;
    let mut fl = 0u8;
    let mut via = Via::Chain;
    if cap == 0 {
        return (0, fl, via);
    }

    // Where the frame-record walk starts: `fp` is the frame whose return
    // address comes next, `prev` the last frame read (or 0).
    let mut fp;
    let mut prev = 0u64;
    let mut walk_lo = lo;

    if let Some((clo, chi)) = code.range_of(inp.pc) {
        out[n] = inp.pc;
        n += 1;
        match frame_state(mem, inp.pc, clo, chi, inp.sp) {
            FrameState::Normal => {}
            FrameState::ReturnAddressAt(slot) => {
                fl |= flags::PROLOGUE;
                if !slot_ok(slot) {
                    return (n, fl | flags::BROKEN, via);
                }
                let ra = strip_pac(mem.word(slot));
                if !code.contains(ra) {
                    // Called straight from the host: nothing more of wasm.
                    return (n, fl, via);
                }
                out[n] = ra;
                n += 1;
            }
            FrameState::ReturnAddressInLr => {
                fl |= flags::PROLOGUE;
                let ra = strip_pac(inp.lr);
                if !code.contains(ra) {
                    return (n, fl, via);
                }
                out[n] = ra;
                n += 1;
            }
        }
        fp = inp.fp;
    } else {
        fl |= flags::HOST;
        if inp.wasm_active == Some(false) {
            // No wasm call in progress on this thread: an empty host sample.
            return (0, fl, via);
        }
        // Skip host frames up to the first return address into module code.
        let mut found = None;
        let mut hfp = inp.fp;
        let mut hprev = 0u64;
        let mut clean_end = false;
        let mut complete = false;
        for _ in 0..MAX_HOST_FRAMES {
            if !frame_ok(hfp, hprev, lo) {
                clean_end = hfp == 0;
                // A null frame pointer after the frames up to the sampler's
                // creator ends the thread's whole stack: no wasm on it. (A
                // null frame pointer reached earlier may be a plain value
                // that a garbage frame pointer led to.)
                complete = clean_end && hprev != 0 && hprev >= inp.anchor;
                break;
            }
            let ra = strip_pac(mem.word(hfp + 8));
            if code.contains(ra) {
                found = Some((hfp, ra));
                break;
            }
            hprev = hfp;
            hfp = mem.word(hfp);
        }
        // The hook's boundary, if its frame is inside the stack (above the
        // interrupted sp when that is known: the host frames lie below it),
        // and still holds the return address the hook saw. The frame was
        // live when the hook ran and its host call has not returned, so it
        // is mapped.
        let bound = inp.boundary.filter(|&(bfp, bra)| {
            bfp & 7 == 0
                && bfp >= if sp_ok { lo } else { inp.stack_lo }
                && bfp <= hi.saturating_sub(16)
                && code.contains(bra)
                && strip_pac(mem.word(bfp + 8)) == bra
        });
        let start = match (found, bound) {
            // The hook's record is exact. A walk that disagrees followed a
            // frame pointer that was not one (glibc uses rbp as a plain
            // register), unless the host called back into wasm, which is
            // then below (more recent than) the boundary.
            (Some(f), Some(b)) => {
                if f.0 == b.0 || (inp.nested_wasm && f.0 < b.0) {
                    f
                } else {
                    via = Via::Hook;
                    b
                }
            }
            (Some(f), None) => f,
            (None, Some(b)) => {
                via = Via::Hook;
                b
            }
            (None, None) => {
                // The chain broke before reaching wasm (glibc code using the
                // frame pointer register as a plain one). Look for the frame
                // record of wasm's call into the host above the stack
                // pointer, unless the chain was complete (no wasm on this
                // stack) or the hook says no host call is in progress.
                let scan = sp_ok && !complete && inp.in_host_call != Some(false);
                let scanned = if scan {
                    scan_for_boundary(mem, code, lo, hi)
                } else {
                    Scan::GaveUp
                };
                match scanned {
                    Scan::Found(a, ra) => {
                        via = Via::Scan;
                        (a, ra)
                    }
                    Scan::NoWasm | Scan::GaveUp => {
                        // Inside a host call wasm frames are certainly
                        // there: the walk failed. Otherwise the thread is in
                        // the runtime between the call hook and the entry
                        // trampoline (or unwinding a trap or exit), with no
                        // wasm frame to find; without the hook's word, only
                        // a chain that ended cleanly or a scan of the whole
                        // stack says so.
                        let broken = match inp.in_host_call {
                            Some(in_call) => in_call,
                            None => !clean_end && scanned != Scan::NoWasm,
                        };
                        if broken {
                            fl |= flags::BROKEN;
                        }
                        return (0, fl, via);
                    }
                }
            }
        };
        out[n] = start.1;
        n += 1;
        prev = start.0;
        fp = mem.word(start.0);
        // Frames above the boundary are live even when sp was unusable.
        walk_lo = walk_lo.min(start.0);
    }

    // The frame-record walk: [fp] = caller's fp, [fp+8] = return address.
    loop {
        if !frame_ok(fp, prev, walk_lo) {
            // Still inside wasm (the last recorded frame is module code) and
            // no trustworthy frame: the outermost frames are missing.
            fl |= flags::BROKEN;
            break;
        }
        let ra = strip_pac(mem.word(fp + 8));
        if !code.contains(ra) {
            // The host that called into wasm: done.
            break;
        }
        if n == cap {
            fl |= flags::TRUNCATED;
            break;
        }
        out[n] = ra;
        n += 1;
        prev = fp;
        fp = mem.word(fp);
    }
    (n, fl, via)
}

/// What [`scan_for_boundary`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The record at `.0`, whose return address `.1` is in module code.
    Found(u64, u64),
    /// The whole live stack holds no plausible record: no wasm frames on it
    /// (the thread is in the runtime before or after its wasm calls).
    NoWasm,
    /// None found within `SCAN_BYTES` or `SCAN_CANDIDATES`.
    GaveUp,
}

/// Finds the frame record that a host function called from wasm pushed, by
/// scanning the live stack upward from the interrupted stack pointer `lo`
/// (below `hi`, the stack top): for a host sample whose frame-pointer chain
/// breaks before it reaches wasm, without the call hook.
///
/// A frame record `a` is `[a]` = the caller's frame pointer and `[a+8]` = the
/// return address. Records are 16-byte aligned (x86_64: `push rbp` right after
/// the call, with the stack 16-byte aligned at the call; aarch64: `stp x29,
/// x30, [sp, #-16]!`), so only 16-byte aligned `a` are looked at. The first
/// `a` whose return address lies in module code is taken if it is plausible
/// (see [`boundary_plausible`]); the walk then goes on from it, checking every
/// further frame as usual.
///
/// A record found this way can be wrong in one case: a stale record left by
/// an earlier, deeper wasm call in an uninitialised slot of a live host frame
/// below the true one, whose call was indirect (direct ones are rejected):
/// the sample then names a wasm function that is no longer on the stack.
/// With the call hook installed, its record is used instead, and the scan
/// runs only inside a host call whose record is missing.
///
/// Every read is an aligned word inside `[lo, hi)` (the live stack) or a code
/// byte inside the module code holding a candidate return address, so it
/// cannot fault.
///
/// Worst case: `SCAN_BYTES / 16` = 2048 word loads, each checked against the
/// registered code ranges (one range for a WASI program: ~1 ns each, so ~2 µs;
/// `MAX_MODULES` ranges at most), plus for at most `SCAN_CANDIDATES` = 64
/// candidates 5 code bytes, 3 stack words and 2 range checks. It runs only for
/// host samples whose frame-pointer chain is broken: 0.05–0.2% of host samples
/// on hostloop and hostcalls here (not the 3–5% NOTES.md reports).
pub(crate) fn scan_for_boundary<M: Memory, C: Code>(mem: &M, code: &C, lo: u64, hi: u64) -> Scan {
    // The last record start that keeps [a, a+16) inside the stack.
    let Some(last) = hi.checked_sub(16) else {
        return Scan::GaveUp;
    };
    let limit = lo.saturating_add(SCAN_BYTES);
    let end = last.min(limit);
    let mut a = lo.saturating_add(15) & !15;
    let mut candidates = 0usize;
    while a <= end {
        let ra = strip_pac(mem.word(a + 8));
        if let Some((clo, _)) = code.range_of(ra) {
            if boundary_plausible(mem, code, a, ra, clo, hi) {
                return Scan::Found(a, ra);
            }
            candidates += 1;
            if candidates == SCAN_CANDIDATES {
                return Scan::GaveUp;
            }
        }
        a += 16;
    }
    if last <= limit {
        Scan::NoWasm
    } else {
        Scan::GaveUp
    }
}

/// Whether the candidate record at `a` (return address `ra`, in the module
/// code starting at `clo`) looks like the one a host function called from
/// wasm pushed:
///
/// - the call that returns to `ra` is not a direct call into module code
///   (wasm calls the host through the wasm-to-host trampoline's indirect
///   call; a direct call means the frame at `a` was a wasm function's: a stale
///   record left in the host frames' uninitialised slots by an earlier, deeper
///   wasm call);
/// - the saved frame pointer `[a]` is a 16-byte aligned frame record above
///   `a` inside the stack, whose return address is in module code (the
///   trampoline's caller), and whose own saved frame pointer is such a record
///   too.
fn boundary_plausible<M: Memory, C: Code>(
    mem: &M,
    code: &C,
    a: u64,
    ra: u64,
    clo: u64,
    hi: u64,
) -> bool {
    if direct_call_target(mem, ra, clo).is_some_and(|t| code.contains(t)) {
        return false;
    }
    let record = |f: u64, below: u64| f & 15 == 0 && f > below && f <= hi.saturating_sub(16);
    let f1 = mem.word(a);
    if !record(f1, a) || !code.contains(strip_pac(mem.word(f1 + 8))) {
        return false;
    }
    record(mem.word(f1), f1)
}

// ---------------------------------------------------------------------------
// Per-thread state
// ---------------------------------------------------------------------------

/// A host-call boundary: the host frame's fp and the return address into
/// module code at fp+8.
struct Boundary {
    fp: AtomicU64,
    ra: AtomicU64,
}

/// Scratch space only the signal handler touches.
struct Scratch {
    encoder: Box<SampleEncoder>,
    frames: Box<[u64; MAX_FRAMES]>,
}

/// At intervals under this, the handler may skip the CPU clock for a sample,
/// but it reads it at least this often (SPEC.md §3).
pub(crate) const CPU_READ_SPAN_NS: u64 = 1_000_000;

/// Whether the handler can leave the CPU time out of a sample taken at
/// `time_ns` (SPEC.md §3: the thread evidently ran wasm the whole time since
/// the previous sample, and the CPU clock was read less than
/// [`CPU_READ_SPAN_NS`] ago). Pure, for tests.
#[inline]
fn may_skip_cpu(
    interval_ns: u64,
    time_ns: u64,
    host: bool,
    overrun: bool,
    prev_time_ns: u64,
    prev_host: bool,
    cpu_read_ns: u64,
) -> bool {
    !host
        && !prev_host
        && !overrun
        && time_ns.saturating_sub(prev_time_ns) <= interval_ns + interval_ns / 2
        && time_ns.saturating_sub(cpu_read_ns) < CPU_READ_SPAN_NS
}

/// Everything the signal handler needs for one thread, allocated before its
/// timer starts.
pub(crate) struct ThreadState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) thread: u32,
    /// OS thread id.
    tid: libc::pid_t,
    stack_lo: u64,
    stack_hi: u64,
    /// See [`WalkInput::anchor`].
    anchor: u64,
    clock: TimerClock,
    /// Checked first by the handler: samples are taken only while set.
    active: AtomicBool,
    /// Set while the handler runs (guards the scratch space).
    busy: AtomicBool,
    /// Whether the call hook is installed (then `wasm_depth` is meaningful).
    hooked: AtomicBool,
    wasm_depth: AtomicU32,
    host_depth: AtomicU32,
    boundaries: [Boundary; BOUNDARY_SLOTS],
    /// Samples the writer had no room for.
    pub(crate) dropped: AtomicU64,
    /// Timer expirations the kernel merged into one signal (`si_overrun`).
    pub(crate) overruns: AtomicU64,
    /// Samples written, and how many of them were HOST / BROKEN / PROLOGUE /
    /// TRUNCATED or found their wasm callers through the hook's boundary or
    /// the stack scan (diagnostics).
    pub(crate) stats: Stats,
    scratch: UnsafeCell<Scratch>,
}

/// Counters kept by the handler (relaxed atomics).
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) samples: AtomicU64,
    pub(crate) host: AtomicU64,
    pub(crate) broken: AtomicU64,
    pub(crate) prologue: AtomicU64,
    pub(crate) truncated: AtomicU64,
    /// Host samples whose wasm callers came from the call hook's record.
    pub(crate) via_hook: AtomicU64,
    /// Host samples whose wasm callers the stack scan found.
    pub(crate) via_scan: AtomicU64,
    /// Samples written without their CPU time (`NO_CPU`).
    pub(crate) no_cpu: AtomicU64,
    pub(crate) handler_ns: AtomicU64,
    pub(crate) handler_max_ns: AtomicU64,
    /// Handler runs that took over 50 µs of wall time (preempted, or a page
    /// fault on the trace that had to wait).
    pub(crate) handler_slow: AtomicU64,
}

// SAFETY: `scratch` is touched only by the signal handler, on the thread the
// state belongs to, and `busy` keeps two runs of it apart; everything else is
// atomics or immutable after construction.
unsafe impl Sync for ThreadState {}
unsafe impl Send for ThreadState {}

impl ThreadState {
    /// Call-hook body: keeps track of whether wasm is running and, on every
    /// call from wasm into the host, remembers where the host frames end.
    ///
    /// Cost: a walk of our own frame pointers from here up to the first
    /// return address in module code (about ten frames of Wasmtime's host-call
    /// path, all built with frame pointers) plus a few relaxed stores.
    #[inline]
    pub(crate) fn on_call_hook(&self, kind: wasmtime::CallHook) {
        use wasmtime::CallHook::*;
        match kind {
            CallingHost => {
                let d = self.host_depth.load(Ordering::Relaxed);
                if (d as usize) < BOUNDARY_SLOTS {
                    let (fp, ra) = self.find_boundary().unwrap_or((0, 0));
                    let slot = &self.boundaries[d as usize];
                    slot.fp.store(fp, Ordering::Relaxed);
                    slot.ra.store(ra, Ordering::Relaxed);
                }
                // Release: the slot is written before the handler can see the
                // new depth (the handler runs on this thread, so this is
                // about compiler ordering).
                self.host_depth.store(d + 1, Ordering::Release);
            }
            ReturningFromHost => {
                let d = self.host_depth.load(Ordering::Relaxed);
                self.host_depth
                    .store(d.saturating_sub(1), Ordering::Release);
            }
            CallingWasm => {
                self.wasm_depth.fetch_add(1, Ordering::Release);
            }
            ReturningFromWasm => {
                let d = self.wasm_depth.load(Ordering::Relaxed).saturating_sub(1);
                if d == 0 {
                    // A host call that unwound (panic) leaves no stale depth.
                    self.host_depth.store(0, Ordering::Release);
                }
                self.wasm_depth.store(d, Ordering::Release);
            }
        }
    }

    /// The thread's CPU time in ns, read from any thread (0 if it is gone).
    pub(crate) fn thread_cpu_ns(&self) -> u64 {
        // The kernel's per-thread CPU clock id, as glibc's
        // pthread_getcpuclockid builds it: ~tid << 3 | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED.
        let clock = ((!self.tid) << 3) | 4 | 2;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer; an unknown clock just fails.
        if unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut ts) } != 0 {
            return 0;
        }
        (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Walks this thread's frame pointers from the caller up to the first
    /// return address in module code.
    #[inline(never)]
    fn find_boundary(&self) -> Option<(u64, u64)> {
        let mut fp = current_fp();
        let lo = fp;
        let hi = self.stack_hi;
        if lo < self.stack_lo || lo >= hi {
            // Not on this sampler's thread.
            return None;
        }
        let code = &self.shared.ranges;
        let mut prev = 0u64;
        for _ in 0..MAX_HOOK_FRAMES {
            if fp & 7 != 0 || fp <= prev || fp < lo || fp > hi.saturating_sub(16) {
                return None;
            }
            // SAFETY: fp is 8-aligned and inside the live part of our own
            // stack (between our frame and the stack top).
            let ra = strip_pac(unsafe { ptr::read(((fp + 8) as usize) as *const u64) });
            if code.contains(ra) {
                return Some((fp, ra));
            }
            prev = fp;
            // SAFETY: as above.
            fp = unsafe { ptr::read(fp as usize as *const u64) };
        }
        None
    }

    fn walk_input(&self, regs: Regs) -> WalkInput {
        let hooked = self.hooked.load(Ordering::Relaxed);
        let wasm_active = hooked.then(|| self.wasm_depth.load(Ordering::Acquire) > 0);
        let d = self.host_depth.load(Ordering::Acquire) as usize;
        let nested_wasm = hooked && self.wasm_depth.load(Ordering::Relaxed) as usize > d.max(1);
        let boundary = if hooked && d > 0 && d <= BOUNDARY_SLOTS {
            let b = &self.boundaries[d - 1];
            let fp = b.fp.load(Ordering::Relaxed);
            let ra = b.ra.load(Ordering::Relaxed);
            (fp != 0).then_some((fp, ra))
        } else {
            None
        };
        WalkInput {
            pc: regs.pc,
            fp: regs.fp,
            sp: regs.sp,
            lr: regs.lr,
            stack_lo: self.stack_lo,
            stack_hi: self.stack_hi,
            boundary,
            wasm_active,
            in_host_call: hooked.then_some(d > 0),
            nested_wasm,
            anchor: self.anchor,
        }
    }
}

// ---------------------------------------------------------------------------
// Registry of live thread states (lets the handler reject stale or foreign
// signal values before dereferencing them)
// ---------------------------------------------------------------------------

static REGISTRY: [AtomicPtr<ThreadState>; MAX_THREADS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_THREADS];
/// One past the highest slot ever used, so the handler scans only that far.
static REGISTRY_HIGH: AtomicUsize = AtomicUsize::new(0);

fn register(p: *const ThreadState) -> Option<usize> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        if slot
            .compare_exchange(
                ptr::null_mut(),
                p as *mut _,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            REGISTRY_HIGH.fetch_max(i + 1, Ordering::SeqCst);
            return Some(i);
        }
    }
    None
}

fn unregister(slot: usize) {
    REGISTRY[slot].store(ptr::null_mut(), Ordering::SeqCst);
}

#[inline]
fn registered(p: *const ThreadState) -> bool {
    if p.is_null() {
        return false;
    }
    let high = REGISTRY_HIGH.load(Ordering::Acquire).min(MAX_THREADS);
    REGISTRY[..high]
        .iter()
        .any(|s| std::ptr::eq(s.load(Ordering::Acquire), p))
}

// ---------------------------------------------------------------------------
// The signal handler
// ---------------------------------------------------------------------------

/// The kernel's `siginfo_t` for timer signals (`_sifields._timer`), the same
/// on x86_64 and aarch64: the union starts at offset 16.
#[repr(C)]
struct TimerSigInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    tid: libc::c_int,
    overrun: libc::c_int,
    value: *mut libc::c_void,
}

/// The `SIGPROF` handler.
///
/// Why it is async-signal-safe:
/// - **No allocation**: the stack buffer and the encoder were allocated with
///   the thread state; `append_sample` encodes into that encoder's scratch
///   and copies into the already-mapped, already-allocated trace.
/// - **No locks**: the registry, the state flags, the text ranges and the
///   writer's cursor are atomics; `busy` is a try-flag, never waited on.
/// - **No system calls but `clock_gettime`**: the monotonic clock (through
///   the vDSO, no syscall) and, where [`may_skip_cpu`] does not let the
///   sample go without, the thread CPU clock (a real syscall on Linux, ~1 µs
///   on a VM). `__errno_location` only computes a thread-local address.
/// - **errno unchanged**: saved on entry, restored on exit.
/// - **No fault**: every stack read is checked against the live stack
///   `[interrupted sp, stack top)`, 8-byte alignment and strictly increasing
///   frame pointers; code bytes are read only inside module code (see
///   [`walk`]). A fault here while wasm is on the stack would reach
///   Wasmtime's SIGSEGV handler, which would find no wasm trap and kill the
///   process.
/// - **Small stack**: a few hundred bytes of locals (`Regs`, `WalkInput`,
///   `SampleRef`); the frames live in the thread state. It may run on
///   Wasmtime's 256 KiB alternate signal stack (`SA_ONSTACK`).
/// - **No stale state**: the signal value is used only if it is a registered,
///   live thread state, and `active` is checked before anything else;
///   [`ThreadSampler`] deletes the timer on its own thread (so a pending
///   signal is delivered before the syscall returns) before unregistering.
extern "C" fn on_sigprof(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo and ucontext.
    unsafe { handle(sig, info, uc) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

unsafe fn handle(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    if info.is_null() || uc.is_null() {
        return;
    }
    let ti = &*(info as *const TimerSigInfo);
    if ti.code != libc::SI_TIMER {
        chain_foreign(sig, info, uc);
        return;
    }
    let st = ti.value as *const ThreadState;
    if !registered(st) {
        chain_foreign(sig, info, uc);
        return;
    }
    let st = &*st;
    if !st.active.load(Ordering::Acquire) {
        return;
    }
    if st.busy.swap(true, Ordering::Acquire) {
        return;
    }
    let shared = &*st.shared;
    shared.inflight.fetch_add(1, Ordering::SeqCst);
    if !shared.closing.load(Ordering::SeqCst) {
        if ti.overrun > 0 {
            st.overruns.fetch_add(ti.overrun as u64, Ordering::Relaxed);
        }
        let time_ns = clock_ns(libc::CLOCK_MONOTONIC);
        let regs = regs_from(uc);
        let inp = st.walk_input(regs);
        // SAFETY: only this handler touches the scratch space, and `busy`
        // keeps two runs apart.
        let scratch = &mut *st.scratch.get();
        let (n, fl, via) = walk(&Direct, &shared.ranges, &inp, &mut scratch.frames[..]);
        let host = fl & flags::HOST != 0;
        // The thread CPU clock is a system call, most of a sample's cost at
        // short intervals: read it where the format or the rule needs it.
        // The encoder knows the previous sample written (in whole µs).
        let enc = &scratch.encoder;
        let (prev_us, prev_flags) = enc.previous();
        let read_cpu = shared.cpu_every_sample
            || enc.needs_cpu()
            || !may_skip_cpu(
                shared.interval_ns,
                time_ns,
                host,
                ti.overrun > 0,
                prev_us.saturating_mul(1000),
                prev_flags & flags::HOST != 0,
                enc.cpu_read_time().saturating_mul(1000),
            );
        let (cpu_ns, cpu_flag) = if read_cpu {
            (clock_ns(libc::CLOCK_THREAD_CPUTIME_ID), 0)
        } else {
            (0, flags::NO_CPU)
        };
        let sample = SampleRef {
            time_ns,
            cpu_ns,
            flags: fl | cpu_flag,
            stack: &scratch.frames[..n],
        };
        match shared.writer.append_sample(&mut scratch.encoder, &sample) {
            Ok(()) => {
                let s = &st.stats;
                if !read_cpu {
                    s.no_cpu.fetch_add(1, Ordering::Relaxed);
                }
                s.samples.fetch_add(1, Ordering::Relaxed);
                if host {
                    s.host.fetch_add(1, Ordering::Relaxed);
                }
                if fl & flags::BROKEN != 0 {
                    s.broken.fetch_add(1, Ordering::Relaxed);
                }
                if fl & flags::PROLOGUE != 0 {
                    s.prologue.fetch_add(1, Ordering::Relaxed);
                }
                if fl & flags::TRUNCATED != 0 {
                    s.truncated.fetch_add(1, Ordering::Relaxed);
                }
                match via {
                    Via::Chain => {}
                    Via::Hook => {
                        s.via_hook.fetch_add(1, Ordering::Relaxed);
                    }
                    Via::Scan => {
                        s.via_scan.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                st.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if st.clock == TimerClock::Wall {
            // The handler's own cost (one more vDSO clock read).
            let took = clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(time_ns);
            st.stats.handler_ns.fetch_add(took, Ordering::Relaxed);
            st.stats.handler_max_ns.fetch_max(took, Ordering::Relaxed);
            if took > 50_000 {
                st.stats.handler_slow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    shared.inflight.fetch_sub(1, Ordering::SeqCst);
    st.busy.store(false, Ordering::Release);
}

/// The `SIGPROF` disposition found when ours was installed, for signals that
/// are not our timers' (0: none, or default/ignore).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS_SIGINFO: AtomicBool = AtomicBool::new(false);

unsafe fn chain_foreign(sig: libc::c_int, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let prev = PREVIOUS.load(Ordering::Acquire);
    if prev == 0 {
        // The default action (terminate) is not what anyone profiling wants;
        // a stray SIGPROF is ignored.
        return;
    }
    if PREVIOUS_SIGINFO.load(Ordering::Acquire) {
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            std::mem::transmute(prev);
        f(sig, info, uc);
    } else {
        let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev);
        f(sig);
    }
}

fn install_handler() -> io::Result<()> {
    static INSTALLED: std::sync::OnceLock<Result<(), i32>> = std::sync::OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        // SAFETY: plain sigaction calls with zeroed, then filled, structs.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigprof as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPROF, &sa, &mut old) != 0 {
                return Err(io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL));
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                PREVIOUS_SIGINFO.store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::Release);
                PREVIOUS.store(old.sa_sigaction, Ordering::Release);
            }
        }
        Ok(())
    });
    r.map_err(io::Error::from_raw_os_error)
}

// ---------------------------------------------------------------------------
// ThreadSampler
// ---------------------------------------------------------------------------

/// Samples one thread: its timer, its preallocated state, and the call hook
/// to install on the [`wasmtime::Store`] that runs wasm on this thread.
///
/// Create it on the thread that will run wasm (with
/// [`Recorder::thread_sampler`](crate::Recorder::thread_sampler)), in the
/// function that makes the store's calls or one of its callers (samples in
/// host code use its frame to tell whether wasm can be below them),
/// optionally install [`ThreadSampler::call_hook`] on the store (exact
/// host-call boundaries for ~25 ns per host call), and bracket the store's calls
/// with [`start`](ThreadSampler::start) and [`stop`](ThreadSampler::stop)
/// (as often as you like). Dropping it (or [`end`](ThreadSampler::end))
/// deletes the timer and writes the thread's end record. It is not `Send`:
/// the timer and the stack bounds belong to the creating thread.
pub struct ThreadSampler {
    state: Arc<ThreadState>,
    slot: usize,
    timer: libc::timer_t,
    interval: Duration,
    running: bool,
    ended: bool,
    _not_send: PhantomData<*const ()>,
}

impl ThreadSampler {
    pub(crate) fn new(shared: Arc<Shared>, thread: u32) -> io::Result<ThreadSampler> {
        install_handler()?;
        let (stack_lo, stack_hi) = current_stack_bounds()?;
        // This frame (inside the call that creates the sampler) lies below
        // the caller's frame and above the wasm frames of the calls made
        // later from there.
        let fp = current_fp();
        let anchor = if fp > stack_lo && fp < stack_hi {
            fp
        } else {
            0
        };
        let clock = shared.clock;
        let state = Arc::new(ThreadState {
            shared: shared.clone(),
            thread,
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() },
            stack_lo,
            stack_hi,
            anchor,
            clock,
            active: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            hooked: AtomicBool::new(false),
            wasm_depth: AtomicU32::new(0),
            host_depth: AtomicU32::new(0),
            boundaries: [const {
                Boundary {
                    fp: AtomicU64::new(0),
                    ra: AtomicU64::new(0),
                }
            }; BOUNDARY_SLOTS],
            dropped: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            stats: Stats::default(),
            scratch: UnsafeCell::new(Scratch {
                encoder: SampleEncoder::new(thread),
                frames: vec![0u64; MAX_FRAMES]
                    .into_boxed_slice()
                    .try_into()
                    .map_err(|_| io::Error::other("frame buffer"))?,
            }),
        });
        let p = Arc::as_ptr(&state);
        let slot = register(p).ok_or_else(|| {
            io::Error::other(format!(
                "too many sampled threads (at most {MAX_THREADS} at once)"
            ))
        })?;
        // SAFETY: sigevent is plain data; zeroed then filled.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGPROF;
        sev.sigev_value = libc::sigval {
            sival_ptr: p as *mut libc::c_void,
        };
        sev.sigev_notify_thread_id = state.tid;
        let clockid = match clock {
            TimerClock::Wall => libc::CLOCK_MONOTONIC,
            TimerClock::Cpu => libc::CLOCK_THREAD_CPUTIME_ID,
        };
        let mut timer: libc::timer_t = ptr::null_mut();
        // SAFETY: valid pointers to a filled sigevent and an out-parameter.
        if unsafe { libc::timer_create(clockid, &mut sev, &mut timer) } != 0 {
            let e = io::Error::last_os_error();
            unregister(slot);
            return Err(e);
        }
        Ok(ThreadSampler {
            state,
            slot,
            timer,
            interval: Duration::from_nanos(shared.interval_ns),
            running: false,
            ended: false,
            _not_send: PhantomData,
        })
    }

    /// The thread id used in the trace.
    pub fn thread_id(&self) -> u32 {
        self.state.thread
    }

    /// A closure for [`wasmtime::Store::call_hook`] (optional). It tracks
    /// whether wasm is running on this thread and records, at every call from
    /// wasm into the host, where the wasm frames resume. Without it the
    /// handler finds the wasm callers of a sample in host code without frame
    /// pointers (glibc) by scanning the stack, which gave the same stacks on
    /// the fixtures; with it that boundary is exact, and samples in the
    /// runtime outside any wasm call (or on a signal handler's alternate
    /// stack) are known to have no wasm below them. It costs ~25 ns per host
    /// call (Wasmtime's hook mechanism ~9 ns, the walk to the boundary the
    /// rest). It returns `Ok(())` always. Install it on the store whose calls
    /// run on this thread, before the store's first call into wasm.
    pub fn call_hook<T>(
        &self,
    ) -> impl FnMut(wasmtime::StoreContextMut<'_, T>, wasmtime::CallHook) -> wasmtime::Result<()>
           + Send
           + Sync
           + 'static {
        let st = self.state.clone();
        // From now on the hook's depths are trusted: install the closure
        // before the store's first call.
        st.hooked.store(true, Ordering::Release);
        move |_, kind| {
            st.on_call_hook(kind);
            Ok(())
        }
    }

    /// Installs [`ThreadSampler::call_hook`] on `store`.
    pub fn install_call_hook<T: 'static>(&self, store: &mut wasmtime::Store<T>) {
        store.call_hook(self.call_hook());
    }

    /// Arms the timer: samples are taken from now on. Unblocks `SIGPROF` on
    /// this thread.
    pub fn start(&mut self) -> io::Result<()> {
        if self.ended {
            return Err(io::Error::other("this thread sampler has ended"));
        }
        if self.running {
            return Ok(());
        }
        // SAFETY: plain signal-mask calls.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPROF);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
        }
        self.state.active.store(true, Ordering::Release);
        let ts = timespec(self.interval);
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: the timer is ours and alive.
        if unsafe { libc::timer_settime(self.timer, 0, &spec, ptr::null_mut()) } != 0 {
            self.state.active.store(false, Ordering::Release);
            return Err(io::Error::last_os_error());
        }
        self.running = true;
        Ok(())
    }

    /// Disarms the timer. A signal already pending is delivered before this
    /// returns and ignored.
    pub fn stop(&mut self) -> io::Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        self.state.active.store(false, Ordering::Release);
        let zero = libc::itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(Duration::ZERO),
        };
        // SAFETY: the timer is ours and alive.
        if unsafe { libc::timer_settime(self.timer, 0, &zero, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops sampling, deletes the timer and writes the thread's losses and
    /// its end record. Also done on drop.
    pub fn end(mut self) -> io::Result<()> {
        self.end_inner()
    }

    fn end_inner(&mut self) -> io::Result<()> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        let r = self.stop();
        self.state.active.store(false, Ordering::Release);
        // SAFETY: the timer is ours; deleted once. The syscall returns to
        // this thread, so a signal it had pending is delivered (and ignored,
        // `active` being false) before we go on.
        unsafe { libc::timer_delete(self.timer) };
        // Any SIGPROF still pending here is blocked on this thread; a
        // pending one would carry a pointer we are about to unregister,
        // which the handler rejects.
        unregister(self.slot);
        self.state.shared.thread_ended(&self.state);
        r
    }

    pub(crate) fn state(&self) -> &Arc<ThreadState> {
        &self.state
    }
}

impl Drop for ThreadSampler {
    fn drop(&mut self) {
        let _ = self.end_inner();
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// The calling thread's stack `[lo, hi)`.
fn current_stack_bounds() -> io::Result<(u64, u64)> {
    // SAFETY: pthread_getattr_np fills attr for the calling thread; the attr
    // is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut addr: *mut libc::c_void = ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let lo = addr as u64;
        Ok((lo, lo + size as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// SPEC.md §3's rule, case by case, at 100 µs: a sample on time, in
    /// wasm after a sample in wasm, with the clock read under 1 ms ago,
    /// skips the CPU clock; anything else reads it.
    #[test]
    fn the_cpu_clock_is_skipped_only_where_the_thread_evidently_ran() {
        let i = 100_000;
        let skip = |time, host, overrun, prev, prev_host, read| {
            may_skip_cpu(i, time, host, overrun, prev, prev_host, read)
        };
        let t = 10_000_000;
        assert!(skip(t, false, false, t - i, false, t - 5 * i));
        // On time includes a timer up to half an interval late.
        assert!(skip(t, false, false, t - 3 * i / 2, false, t - 5 * i));
        assert!(!skip(t, false, false, t - 3 * i / 2 - 1, false, t - 5 * i));
        assert!(!skip(t, false, true, t - i, false, t - 5 * i));
        // Host code may block: its samples and the next read the clock.
        assert!(!skip(t, true, false, t - i, false, t - 5 * i));
        assert!(!skip(t, false, false, t - i, true, t - 5 * i));
        // At least every 1 ms: at 100 µs, nine samples in ten skip.
        assert!(skip(t, false, false, t - i, false, t - 9 * i));
        assert!(!skip(t, false, false, t - i, false, t - 10 * i));
        let (mut read, mut skipped) = (0u64, 0);
        for k in 1..=1000u64 {
            if skip(k * i, false, false, (k - 1) * i, false, read) {
                skipped += 1;
            } else {
                read = k * i;
            }
        }
        assert_eq!(skipped, 900);
    }

    struct FakeMem {
        words: HashMap<u64, u64>,
        code: HashMap<u64, u8>,
    }

    impl Memory for FakeMem {
        fn word(&self, addr: u64) -> u64 {
            assert_eq!(addr & 7, 0, "unaligned read at {addr:#x}");
            *self
                .words
                .get(&addr)
                .unwrap_or_else(|| panic!("read outside the fake stack at {addr:#x}"))
        }
        fn byte(&self, addr: u64) -> u8 {
            *self.code.get(&addr).unwrap_or(&0x90)
        }
    }

    struct FakeCode(u64, u64);
    impl Code for FakeCode {
        fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
            (addr >= self.0 && addr < self.1).then_some((self.0, self.1))
        }
    }

    const TEXT: FakeCode = FakeCode(0x1000, 0x2000);

    fn walk2(mem: &FakeMem, code: &FakeCode, inp: &WalkInput, out: &mut [u64]) -> (usize, u8) {
        let (n, fl, _) = walk(mem, code, inp, out);
        (n, fl)
    }
    const HOST_RA: u64 = 0x9000;

    /// A stack with frames at 0x100, 0x120, 0x140 (fp chain), return
    /// addresses 0x1100, 0x1200 (wasm) and HOST_RA.
    fn stack() -> FakeMem {
        let mut words = HashMap::new();
        for a in (0xf0..0x200).step_by(8) {
            words.insert(a, 0xdead_0000 + a);
        }
        words.insert(0x100, 0x120);
        words.insert(0x108, 0x1100);
        words.insert(0x120, 0x140);
        words.insert(0x128, 0x1200);
        words.insert(0x140, 0x160);
        words.insert(0x148, HOST_RA);
        FakeMem {
            words,
            code: HashMap::new(),
        }
    }

    fn input(pc: u64, fp: u64, sp: u64) -> WalkInput {
        WalkInput {
            pc,
            fp,
            sp,
            lr: 0,
            stack_lo: 0x0,
            stack_hi: 0x200,
            boundary: None,
            wasm_active: None,
            in_host_call: None,
            nested_wasm: false,
            anchor: 0,
        }
    }

    #[test]
    fn plain_walk_stops_at_host() {
        let mem = stack();
        let mut out = [0u64; 16];
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
        assert_eq!(fl, 0);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prologue_and_epilogue() {
        let mut mem = stack();
        // push rbp at 0x1050: return address at [rsp] = 0x1180, rbp is the caller's (0x100).
        mem.code.insert(0x1050, 0x55);
        mem.words.insert(0xf0, 0x1180);
        let mut out = [0u64; 16];
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1180, 0x1100, 0x1200]);
        assert_eq!(fl, flags::PROLOGUE);
        // ret
        mem.code.insert(0x1050, 0xc3);
        let (n, _) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1180, 0x1100, 0x1200]);
        // mov rbp, rsp after push rbp: return address at [rsp+8]
        mem.code.insert(0x1050, 0x48);
        mem.code.insert(0x1051, 0x89);
        mem.code.insert(0x1052, 0xe5);
        mem.code.insert(0x104f, 0x55);
        mem.words.insert(0xf0, 0x100); // the pushed rbp
        mem.words.insert(0xf8, 0x1190);
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1190, 0x1100, 0x1200]);
        assert_eq!(fl, flags::PROLOGUE);
        // mov rbp, rsp NOT preceded by push rbp: normal walk.
        mem.code.insert(0x104f, 0x00);
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
        assert_eq!(fl, 0);
    }

    #[test]
    fn host_sample_walks_to_wasm() {
        let mut mem = stack();
        // Host frames at 0xe0 -> 0xf0 -> 0x100 (whose RA is wasm).
        for a in (0xc0..0xf0).step_by(8) {
            mem.words.insert(a, 0);
        }
        mem.words.insert(0xe0, 0xf0);
        mem.words.insert(0xe8, 0x7777);
        mem.words.insert(0xf0, 0x100);
        mem.words.insert(0xf8, 0x8888);
        let mut inp = input(0x5000, 0xe0, 0xd0);
        let mut out = [0u64; 16];
        let (n, fl) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1100, 0x1200]);
        assert_eq!(fl, flags::HOST);
        assert_eq!(walk(&mem, &TEXT, &inp, &mut out).2, Via::Chain);
        // Broken host chain (glibc), no hook: the stack scan finds the record.
        inp.fp = 0x12345; // garbage
        let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1100, 0x1200]);
        assert_eq!((fl, via), (flags::HOST, Via::Scan));
        // ... also when the hook says a host call is in progress; not when it
        // says none is (the thread is in the runtime).
        inp.in_host_call = Some(true);
        let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
        inp.in_host_call = Some(false);
        assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
        // A complete host chain (ends in a null frame pointer): no wasm, no scan.
        inp.in_host_call = None;
        inp.fp = 0xe0;
        mem.words.insert(0xe0, 0);
        assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
        // ... unless it ends below the sampler's creator: then a garbage
        // frame pointer led to a zero word, and the scan finds the record.
        inp.anchor = 0x150;
        let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
        inp.anchor = 0;
        mem.words.insert(0xe0, 0xf0);
        inp.fp = 0x12345;
        inp.in_host_call = Some(true);
        inp.boundary = Some((0x100, 0x1100));
        let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1100, 0x1200]);
        assert_eq!((fl, via), (flags::HOST, Via::Hook));
        // A walk that went astray (garbage rbp) loses to the hook's boundary,
        // unless wasm was called again from the host call.
        mem.words.insert(0xe0, 0x120); // skips the frame at 0x100
        inp.fp = 0xe0;
        let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1100, 0x1200]);
        inp.boundary = Some((0x120, 0x1200));
        inp.fp = 0xf0;
        mem.words.insert(0xe0, 0xf0);
        let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!(
            &out[..n],
            &[0x1200],
            "boundary preferred over a deeper walk"
        );
        inp.nested_wasm = true;
        let (n, _) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!(
            &out[..n],
            &[0x1100, 0x1200],
            "nested wasm below the boundary"
        );
        inp.nested_wasm = false;
        inp.fp = 0x12345;
        // A stale boundary (its slot no longer holds the return address) is
        // ignored (and the scan finds the record).
        inp.boundary = Some((0x100, 0x1104));
        let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!((&out[..n], via), (&[0x1100u64, 0x1200][..], Via::Scan));
        // Nothing for the scan to find: broken.
        mem.words.insert(0x108, HOST_RA);
        let (_, fl) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!(fl, flags::HOST | flags::BROKEN);
        // No wasm running: an empty host sample, not broken.
        inp.wasm_active = Some(false);
        let (n, fl) = walk2(&mem, &TEXT, &inp, &mut out);
        assert_eq!((n, fl), (0, flags::HOST));
    }

    /// The stack scan for a host sample whose frame-pointer chain is broken.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn scan_skips_implausible_records() {
        let mut mem = stack();
        // The live stack starts at sp = 0xa0 (nothing below it is readable).
        for a in (0xa0..0xf0).step_by(8) {
            mem.words.insert(a, 0);
        }
        // A stale record of an earlier wasm call at 0xc0: its return address
        // follows a direct call (e8 rel32) to 0x1400, module code.
        mem.words.insert(0xc0, 0x120);
        mem.words.insert(0xc8, 0x1180);
        mem.code.insert(0x117b, 0xe8);
        for (k, b) in (0x1400i32 - 0x1180).to_le_bytes().into_iter().enumerate() {
            mem.code.insert(0x117c + k as u64, b);
        }
        // A return address into module code with a saved "fp" that is none.
        mem.words.insert(0xd0, 0x12345);
        mem.words.insert(0xd8, 0x1300);
        // An odd slot (not 16-byte aligned) is never a record.
        mem.words.insert(0xa8, 0x100);
        mem.words.insert(0xb0, 0x1310);
        let mut inp = input(0x5000, 0x12345, 0xa0);
        let mut out = [0u64; 16];
        let (n, fl, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1100, 0x1200]);
        assert_eq!((fl, via), (flags::HOST, Via::Scan));
        // A direct call to the host (not to module code) is a boundary.
        for (k, b) in (0x9000i32 - 0x1180).to_le_bytes().into_iter().enumerate() {
            mem.code.insert(0x117c + k as u64, b);
        }
        let (n, _, via) = walk(&mem, &TEXT, &inp, &mut out);
        assert_eq!(&out[..n], &[0x1180, 0x1200]);
        assert_eq!(via, Via::Scan);
        // A record whose caller's record would reach past the stack top is
        // rejected; every read stays below the top (the fake panics otherwise).
        // No plausible record in the whole live stack: no wasm on it, so the
        // sample is an empty host sample, not a broken one.
        mem.code.insert(0x117b, 0x90);
        inp.stack_hi = 0x130;
        assert_eq!(scan_for_boundary(&mem, &TEXT, 0xa0, 0x130), Scan::NoWasm);
        assert_eq!(walk2(&mem, &TEXT, &inp, &mut out), (0, flags::HOST));
        // The scan stops SCAN_BYTES above sp.
        inp.stack_hi = 0x200;
        assert_eq!(
            scan_for_boundary(&mem, &TEXT, 0xa0, 0x200),
            Scan::Found(0xc0, 0x1180)
        );
        let base = 0x10_0000;
        let r = base + SCAN_BYTES + 16;
        let mut far = FakeMem {
            words: (base..r + 48).step_by(8).map(|a| (a, 0)).collect(),
            code: HashMap::new(),
        };
        far.words.insert(r, r + 16);
        far.words.insert(r + 8, 0x1100);
        far.words.insert(r + 16, r + 32);
        far.words.insert(r + 24, 0x1200);
        far.words.insert(r + 40, HOST_RA);
        assert_eq!(scan_for_boundary(&far, &TEXT, base, r + 48), Scan::GaveUp);
        assert_eq!(
            scan_for_boundary(&far, &TEXT, base + 16, r + 48),
            Scan::Found(r, 0x1100)
        );
        // Too many implausible candidates: gives up.
        for k in 1..=SCAN_CANDIDATES as u64 {
            far.words.insert(base + 16 * k + 8, 0x1100);
        }
        assert_eq!(
            scan_for_boundary(&far, &TEXT, base + 16, r + 48),
            Scan::GaveUp
        );
        // sp outside the stack (alternate signal stack): no scan.
        inp.sp = 0x5000;
        assert_eq!(
            walk2(&mem, &TEXT, &inp, &mut out),
            (0, flags::HOST | flags::BROKEN)
        );
    }

    #[test]
    fn bounded_and_checked() {
        let mut mem = stack();
        let mut out = [0u64; 2];
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(n, 2);
        assert_eq!(fl, flags::TRUNCATED);
        // A loop in the chain ends as BROKEN (fps must increase).
        mem.words.insert(0x120, 0x100);
        let mut out = [0u64; 16];
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0xf0), &mut out);
        assert_eq!(&out[..n], &[0x1050, 0x1100, 0x1200]);
        assert_eq!(fl, flags::BROKEN);
        // fp below sp or past the stack top is never read.
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x80, 0xf0), &mut out);
        assert_eq!((n, fl), (1, flags::BROKEN));
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x1f8, 0xf0), &mut out);
        assert_eq!((n, fl), (1, flags::BROKEN));
        // sp outside the stack (alternate signal stack): nothing is read.
        let (n, fl) = walk2(&mem, &TEXT, &input(0x1050, 0x100, 0x5000), &mut out);
        assert_eq!((n, fl), (1, flags::BROKEN));
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// Warm cost of the handler's work without the signal: a 32-frame walk
    /// over a real stack image plus `append_sample` into a real trace.
    /// `cargo test --release -p wrec --lib -- --ignored --nocapture handler_work`
    #[test]
    #[ignore]
    fn handler_work() {
        let ranges = TextRanges::new();
        let text = vec![0x90u8; 4096];
        let t0 = text.as_ptr() as u64;
        ranges.push(t0, text.len() as u64);
        // A stack image: 32 frames of 32 bytes, each [fp] -> next, [fp+8] -> text.
        let mut stack = vec![0u64; 32 * 4 + 8];
        let base = stack.as_ptr() as u64;
        for i in 0..32 {
            let fp = base + (i as u64) * 32 + 32;
            let slot = (fp - base) as usize / 8;
            stack[slot] = fp + 32;
            stack[slot + 1] = t0 + 100 + i as u64 * 7;
        }
        let last = (base + 33 * 32 - base) as usize / 8;
        stack[last + 1] = 0x1234; // host
        let inp = WalkInput {
            pc: t0 + 10,
            fp: base + 32,
            sp: base,
            lr: 0,
            stack_lo: base,
            stack_hi: base + stack.len() as u64 * 8,
            boundary: None,
            wasm_active: Some(true),
            in_host_call: Some(false),
            nested_wasm: false,
            anchor: 0,
        };
        let dir = tempfile::tempdir().unwrap();
        let w = wrec_format::TraceWriter::create(
            &dir.path().join("b.wrec"),
            wrec_format::Header::for_this_host(),
            wrec_format::WriterOptions::default(),
        )
        .unwrap();
        let mut enc = SampleEncoder::new(0);
        let mut frames = vec![0u64; MAX_FRAMES];
        let n_iter = 200_000u64;
        let (mut t_walk, mut t_append, mut t_clocks) = (0u64, 0u64, 0u64);
        for i in 0..n_iter {
            let a = clock_ns(libc::CLOCK_MONOTONIC);
            let cpu = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            let b = clock_ns(libc::CLOCK_MONOTONIC);
            let (n, fl, _) = walk(&Direct, &ranges, &inp, &mut frames);
            assert_eq!(n, 33);
            // Vary the leaf so every sample writes a frame.
            frames[0] = t0 + 10 + (i % 50);
            let c = clock_ns(libc::CLOCK_MONOTONIC);
            let s = SampleRef {
                time_ns: a,
                cpu_ns: cpu,
                flags: fl,
                stack: &frames[..n],
            };
            w.append_sample(&mut enc, &s).unwrap();
            let d = clock_ns(libc::CLOCK_MONOTONIC);
            if i % 1000 == 0 {
                w.grow().unwrap();
            }
            t_clocks += b - a;
            t_walk += c - b;
            t_append += d - c;
        }
        eprintln!(
            "per sample: clocks (monotonic + thread CPU) {:.0} ns, 33-frame walk {:.0} ns, append {:.0} ns",
            t_clocks as f64 / n_iter as f64,
            t_walk as f64 / n_iter as f64,
            t_append as f64 / n_iter as f64
        );
    }
}
