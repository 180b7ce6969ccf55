//! The optional call hook ([`ThreadSampler::call_hook`]): it tracks whether
//! wasm is running on the thread and, at every call from wasm into the host,
//! remembers where the host frames end, so that the handler knows a host
//! sample's wasm callers exactly instead of finding them.
//!
//! [`ThreadSampler::call_hook`]: super::ThreadSampler::call_hook

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::fiber_stacks::FIBER_STACKS;
use super::text_ranges::Code;
use super::thread_state::ThreadState;
use crate::arch::{current_fp, strip_pac};

/// How many nested host calls the call hook remembers a boundary for.
const BOUNDARY_SLOTS: usize = 16;

/// How many frames the call hook walks from itself looking for wasm.
const MAX_HOOK_FRAMES: usize = 64;

/// A host-call boundary: the host frame's fp and the return address into
/// module code at fp+8.
struct Boundary {
    fp: AtomicU64,
    ra: AtomicU64,
}

/// What the call hook tells the handler, kept in the thread's state: written
/// by the hook, read by the handler on the same thread.
pub(crate) struct HookState {
    /// Whether the call hook is installed (then `wasm_depth` is meaningful).
    pub(super) hooked: AtomicBool,
    wasm_depth: AtomicU32,
    host_depth: AtomicU32,
    boundaries: [Boundary; BOUNDARY_SLOTS],
}

/// The hook's word on the stack a sample interrupted: the
/// [`WalkInput`](super::walk::WalkInput) fields of the same names.
pub(super) struct HookFacts {
    pub(super) boundary: Option<(u64, u64)>,
    pub(super) wasm_active: Option<bool>,
    pub(super) in_host_call: Option<bool>,
    pub(super) nested_wasm: bool,
}

impl HookState {
    pub(super) fn new() -> HookState {
        HookState {
            hooked: AtomicBool::new(false),
            wasm_depth: AtomicU32::new(0),
            host_depth: AtomicU32::new(0),
            boundaries: [const {
                Boundary {
                    fp: AtomicU64::new(0),
                    ra: AtomicU64::new(0),
                }
            }; BOUNDARY_SLOTS],
        }
    }

    /// What the hook knows now (nothing if it is not installed). Called by
    /// the handler.
    #[inline]
    pub(super) fn facts(&self) -> HookFacts {
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
        HookFacts {
            boundary,
            wasm_active,
            in_host_call: hooked.then_some(d > 0),
            nested_wasm,
        }
    }
}

impl ThreadState {
    /// Call-hook body: keeps track of whether wasm is running and, on every
    /// call from wasm into the host, remembers where the host frames end.
    ///
    /// Cost: a walk of our own frame pointers from here up to the first
    /// return address in module code (about ten frames of Wasmtime's host-call
    /// path, all built with frame pointers) plus a few relaxed stores.
    #[inline]
    pub(super) fn on_call_hook(&self, kind: wasmtime::CallHook) {
        use wasmtime::CallHook::*;
        let h = &self.hook;
        match kind {
            CallingHost => {
                let d = h.host_depth.load(Ordering::Relaxed);
                if (d as usize) < BOUNDARY_SLOTS {
                    let (fp, ra) = self.find_boundary().unwrap_or((0, 0));
                    let slot = &h.boundaries[d as usize];
                    slot.fp.store(fp, Ordering::Relaxed);
                    slot.ra.store(ra, Ordering::Relaxed);
                }
                // Release: the slot is written before the handler can see the
                // new depth (the handler runs on this thread, so this is
                // about compiler ordering).
                h.host_depth.store(d + 1, Ordering::Release);
            }
            ReturningFromHost => {
                let d = h.host_depth.load(Ordering::Relaxed);
                h.host_depth.store(d.saturating_sub(1), Ordering::Release);
            }
            CallingWasm => {
                h.wasm_depth.fetch_add(1, Ordering::Release);
            }
            ReturningFromWasm => {
                let d = h.wasm_depth.load(Ordering::Relaxed).saturating_sub(1);
                if d == 0 {
                    // A host call that unwound (panic) leaves no stale depth.
                    h.host_depth.store(0, Ordering::Release);
                }
                h.wasm_depth.store(d, Ordering::Release);
            }
        }
    }

    /// Walks this thread's frame pointers from the caller up to the first
    /// return address in module code.
    #[inline(never)]
    fn find_boundary(&self) -> Option<(u64, u64)> {
        let mut fp = current_fp();
        let lo = fp;
        // The thread's own stack, or the fiber stack an async store runs
        // wasm on (held while it is read).
        let fiber;
        let hi = if lo >= self.stack_lo && lo < self.stack_hi {
            self.stack_hi
        } else {
            fiber = FIBER_STACKS.containing(lo)?;
            fiber.hi
        };
        let code = &self.ctx.ranges;
        let mut prev = 0u64;
        for _ in 0..MAX_HOOK_FRAMES {
            if fp & 7 != 0 || fp <= prev || fp < lo || fp > hi.saturating_sub(16) {
                return None;
            }
            // SAFETY: fp is 8-aligned and inside the live part of the stack
            // we run on (between our frame and its top).
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
}
