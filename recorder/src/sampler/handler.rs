//! The `SIGPROF` handler: takes one sample of the interrupted thread and
//! appends it to the trace. Everything it touches is reached from the signal
//! value: the thread's [`ThreadState`] and, through it, the
//! [`SignalContext`].

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wrec_format::{clock_ns, flags, SampleRef, TimerClock};

use super::context::SignalContext;
use super::registry::registered;
use super::thread_state::ThreadState;
use crate::arch::regs_from;

/// At intervals under this, the handler may skip the CPU clock for a sample,
/// but it reads it at least this often (SPEC.md §3).
pub(crate) const CPU_READ_SPAN_NS: u64 = 1_000_000;

/// Whether the handler can leave the CPU time out of a sample taken at
/// `time_ns` (SPEC.md §3: the thread evidently ran wasm the whole time since
/// the previous sample, and the CPU clock was read less than
/// [`CPU_READ_SPAN_NS`] ago). Pure, for tests.
#[inline]
pub(super) fn may_skip_cpu(
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
///   [`ThreadSampler`](super::ThreadSampler) deletes the timer on its own thread (so a pending
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
    if st.idle.on.load(Ordering::Relaxed) {
        st.stats.idle.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if st.busy.swap(true, Ordering::Acquire) {
        return;
    }
    let ctx: &SignalContext = &st.ctx;
    ctx.inflight.fetch_add(1, Ordering::SeqCst);
    if !ctx.closing.load(Ordering::SeqCst) {
        if ti.overrun > 0 {
            st.overruns.fetch_add(ti.overrun as u64, Ordering::Relaxed);
        }
        let time_ns = clock_ns(libc::CLOCK_MONOTONIC);
        let regs = regs_from(uc);
        // SAFETY: only this handler touches the scratch space, and `busy`
        // keeps two runs apart.
        let scratch = &mut *st.scratch.get();
        let (n, fl, via) = st.walk(regs, &ctx.ranges, &mut scratch.frames[..]);
        let host = fl & flags::HOST != 0;
        // The thread CPU clock is a system call, most of a sample's cost at
        // short intervals: read it where the format or the rule needs it.
        // The encoder knows the previous sample written (in whole µs).
        let enc = &scratch.encoder;
        let (prev_us, prev_flags) = enc.previous();
        let resumed = st.idle.resumed.load(Ordering::Relaxed);
        if resumed {
            st.idle.resumed.store(false, Ordering::Relaxed);
        }
        let read_cpu = ctx.cpu_every_sample
            || resumed
            || enc.needs_cpu()
            || !may_skip_cpu(
                ctx.interval_ns(),
                time_ns,
                host,
                ti.overrun > 0,
                prev_us.saturating_mul(1000),
                prev_flags & flags::HOST != 0,
                enc.cpu_read_time().saturating_mul(1000),
            );
        let (cpu_ns, cpu_flag) = if read_cpu {
            (st.recorded_cpu(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)), 0)
        } else {
            (0, flags::NO_CPU)
        };
        let sample = SampleRef {
            time_ns,
            cpu_ns,
            flags: fl | cpu_flag,
            stack: &scratch.frames[..n],
        };
        match ctx.writer.append_sample(&mut scratch.encoder, &sample) {
            Ok(()) => st.stats.count_sample(fl, via, read_cpu),
            Err(_) => {
                st.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if ctx.clock == TimerClock::Wall {
            // The handler's own cost (one more vDSO clock read).
            let took = clock_ns(libc::CLOCK_MONOTONIC).saturating_sub(time_ns);
            st.stats.count_handler_time(took);
        }
    }
    ctx.inflight.fetch_sub(1, Ordering::SeqCst);
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

pub(super) fn install_handler() -> io::Result<()> {
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
