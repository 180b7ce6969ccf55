//! The frame-pointer walk: from the interrupted registers to the return
//! addresses of the wasm frames on the stack. Pure: memory goes through
//! [`Memory`] and code ranges through [`Code`], so tests fake both.
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

use wrec_format::flags;

use super::boundary_scan::{scan_for_boundary, Scan};
use super::text_ranges::Code;
use crate::arch::{frame_state, strip_pac, FrameState, Memory};

/// How many host frames the handler walks through looking for wasm.
const MAX_HOST_FRAMES: usize = 256;

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
