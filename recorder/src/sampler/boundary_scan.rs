//! The stack scan for host samples whose frame-pointer chain breaks before
//! it reaches wasm (glibc code using the frame-pointer register as a plain
//! one): finds the frame record of wasm's call into the host above the
//! interrupted stack pointer.

use super::text_ranges::Code;
use crate::arch::{direct_call_target, strip_pac, Memory};

/// How far above the interrupted stack pointer the handler looks for the
/// frame record of wasm's call into the host when the host's frame-pointer
/// chain is broken (see [`scan_for_boundary`]). Wasmtime 48's WASI host-call
/// path keeps the first wasm frame a few KiB above a sample in glibc.
pub(super) const SCAN_BYTES: u64 = 32 * 1024;

/// How many candidate frame records (a return address into module code) the
/// scan checks before it gives up. Wasmtime-WASI's `path_open` path leaves
/// up to ~22 implausible ones (code addresses in host frames) below the
/// boundary; 16 was too few there.
pub(super) const SCAN_CANDIDATES: usize = 64;

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
