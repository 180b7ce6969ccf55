//! A sampled thread's state: everything its signal handler needs, allocated
//! before its timer starts.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use wrec_format::{SampleEncoder, MAX_FRAMES};

use wrec_format::flags;

use super::call_hook::HookState;
use super::context::SignalContext;
use super::fiber_stacks::FIBER_STACKS;
use super::idle::Idle;
use super::stats::Stats;
use super::text_ranges::TextRanges;
use super::timer::Timer;
use super::walk::{walk, Via, WalkInput};
use crate::arch::{Direct, Regs};

/// Scratch space only the signal handler touches.
pub(super) struct Scratch {
    pub(super) encoder: Box<SampleEncoder>,
    pub(super) frames: Box<[u64; MAX_FRAMES]>,
}

/// Everything the signal handler needs for one thread, allocated before its
/// timer starts.
pub(crate) struct ThreadState {
    /// The trace, the code ranges and the sampling rule, shared with the
    /// recorder and the other threads.
    pub(crate) ctx: Arc<SignalContext>,
    /// The thread id used in the trace.
    pub(crate) thread: u32,
    /// OS thread id.
    pub(super) tid: libc::pid_t,
    pub(super) stack_lo: u64,
    pub(super) stack_hi: u64,
    /// See [`WalkInput::anchor`].
    anchor: u64,
    /// Checked first by the handler: samples are taken only while set.
    pub(super) active: AtomicBool,
    /// The thread's idle stretches (see [`Idle`]).
    pub(super) idle: Idle,
    /// The thread's timer, from its sampler's creation until it is
    /// deleted: the sampler arms and disarms it, and the background thread
    /// parks it while the thread is idle (see [`Idle`]), under this lock
    /// (never taken by the handler).
    pub(super) timer: Mutex<Option<Timer>>,
    /// Set while the handler runs (guards the scratch space).
    pub(super) busy: AtomicBool,
    /// What the call hook, if installed, tells the handler.
    pub(super) hook: HookState,
    /// Samples the writer had no room for.
    pub(crate) dropped: AtomicU64,
    /// Timer expirations the kernel merged into one signal (`si_overrun`).
    pub(crate) overruns: AtomicU64,
    /// Samples written, and how many of them were HOST / BROKEN / PROLOGUE /
    /// TRUNCATED or found their wasm callers through the hook's boundary or
    /// the stack scan (diagnostics).
    pub(crate) stats: Stats,
    pub(super) scratch: UnsafeCell<Scratch>,
}

// SAFETY: `scratch` is touched only by the signal handler, on the thread the
// state belongs to, and `busy` keeps two runs of it apart; everything else is
// atomics or immutable after construction.
unsafe impl Sync for ThreadState {}
unsafe impl Send for ThreadState {}

impl ThreadState {
    /// The state of a thread whose stack is `[stack_lo, stack_hi)`, named
    /// `thread` in the trace; `anchor` as in [`WalkInput::anchor`]. Made on
    /// the thread itself (it records the OS thread id).
    pub(super) fn new(
        ctx: Arc<SignalContext>,
        thread: u32,
        (stack_lo, stack_hi): (u64, u64),
        anchor: u64,
    ) -> io::Result<ThreadState> {
        Ok(ThreadState {
            ctx,
            thread,
            // SAFETY: gettid has no preconditions.
            tid: unsafe { libc::gettid() },
            stack_lo,
            stack_hi,
            anchor,
            active: AtomicBool::new(false),
            idle: Idle::default(),
            timer: Mutex::new(None),
            busy: AtomicBool::new(false),
            hook: HookState::new(),
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
        })
    }

    /// The thread's CPU time in ns, read from any thread (0 if it is gone).
    pub(super) fn thread_cpu_ns(&self) -> u64 {
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

    /// Walks the interrupted stack into `out`: see [`walk`] for the result.
    /// The stack is the thread's own, or the registered fiber stack the
    /// stack pointer is in (see [`super::fiber_stacks`]); a host sample that
    /// finds no wasm on the thread's own stack looks for it on the fiber the
    /// thread suspended. Called by the handler; async-signal-safe.
    #[inline]
    pub(super) fn walk(&self, regs: Regs, code: &TextRanges, out: &mut [u64]) -> (usize, u8, Via) {
        let inp = self.walk_input(regs);
        let fibers = &FIBER_STACKS;
        if !fibers.any() {
            return walk(&Direct, code, &inp, out);
        }
        let on_thread = inp.sp >= inp.stack_lo && inp.sp < inp.stack_hi;
        if !on_thread {
            if let Some(f) = fibers.containing(inp.sp) {
                f.claim(self.tid);
                let inp = WalkInput {
                    stack_lo: f.lo,
                    stack_hi: f.hi,
                    anchor: 0,
                    ..inp
                };
                return walk(&Direct, code, &inp, out);
            }
        }
        let r = walk(&Direct, code, &inp, out);
        if r.0 != 0 || r.1 & flags::HOST == 0 {
            return r;
        }
        self.walk_suspended(&inp, code, out).unwrap_or(r)
    }

    /// The wasm stack of the fiber this thread suspended inside a host
    /// call, if exactly one of the fibers it ran on last has one.
    #[inline]
    fn walk_suspended(
        &self,
        inp: &WalkInput,
        code: &TextRanges,
        out: &mut [u64],
    ) -> Option<(usize, u8, Via)> {
        let mut found = None;
        let mut ambiguous = false;
        FIBER_STACKS.for_each_owned(self.tid, |f| {
            let Some((fp, sp)) = f.suspended(&Direct) else {
                return true;
            };
            let fiber = WalkInput {
                // Not module code: a host sample whose walk starts at the
                // frame the stack switch saved.
                pc: 0,
                fp,
                sp,
                lr: 0,
                stack_lo: f.lo,
                stack_hi: f.hi,
                anchor: 0,
                ..*inp
            };
            if found.is_some() {
                // A second one: whose wait this is cannot be told. (A walk
                // that finds nothing writes nothing into `out`.)
                ambiguous = walk(&Direct, code, &fiber, out).0 != 0;
                return !ambiguous;
            }
            let r = walk(&Direct, code, &fiber, out);
            if r.0 != 0 {
                found = Some(r);
            }
            true
        });
        found.filter(|_| !ambiguous)
    }

    /// Where the walk of an interrupted stack starts, on the thread's own
    /// stack.
    #[inline]
    pub(super) fn walk_input(&self, regs: Regs) -> WalkInput {
        let hook = self.hook.facts();
        WalkInput {
            pc: regs.pc,
            fp: regs.fp,
            sp: regs.sp,
            lr: regs.lr,
            stack_lo: self.stack_lo,
            stack_hi: self.stack_hi,
            boundary: hook.boundary,
            wasm_active: hook.wasm_active,
            in_host_call: hook.in_host_call,
            nested_wasm: hook.nested_wasm,
            anchor: self.anchor,
        }
    }
}

/// The calling thread's stack `[lo, hi)`.
pub(super) fn current_stack_bounds() -> io::Result<(u64, u64)> {
    // SAFETY: pthread_getattr_np fills attr for the calling thread; the attr
    // is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let rc = libc::pthread_getattr_np(libc::pthread_self(), &mut attr);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
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
