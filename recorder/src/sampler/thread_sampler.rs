//! [`ThreadSampler`] and [`Sampling`]: what an embedder holds for each
//! thread that runs wasm.

use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::context::SignalContext;
use super::handler::install_handler;
use super::registry::{register, unregister};
use super::thread_state::{current_stack_bounds, ThreadState};
use super::timer::{unblock_sigprof, Timer};
use super::MAX_THREADS;
use crate::arch::current_fp;

/// What the owner of a sampler does when the sampler ends: called once, on
/// the sampled thread, after its timer is gone and no handler can run for it
/// any more (the recorder writes the thread's last losses and its end
/// record there).
pub(crate) type OnEnd = Box<dyn FnOnce(&ThreadState)>;

/// Samples one thread: its timer, its preallocated state, and the call hook
/// to install on the [`wasmtime::Store`] that runs wasm on this thread.
///
/// Create it on the thread that will run wasm (with
/// [`Recorder::thread_sampler`](crate::Recorder::thread_sampler)), in the
/// function that makes the store's calls or one of its callers (samples in
/// host code use its frame to tell whether wasm can be below them),
/// optionally install [`ThreadSampler::call_hook`] on the store (exact
/// host-call boundaries for ~25 ns per host call), and
/// [`start`](ThreadSampler::start) it: samples are taken until the
/// [`Sampling`] it returns is dropped, which also ends the thread (deletes
/// its timer and writes its end record), or until [`Sampling::stop`], which
/// gives the sampler back to start again. It is not `Send`: the timer and the
/// stack bounds belong to the creating thread.
pub struct ThreadSampler {
    state: Arc<ThreadState>,
    slot: usize,
    on_end: Option<OnEnd>,
    running: bool,
    _not_send: PhantomData<*const ()>,
}

/// A thread being sampled, from [`ThreadSampler::start`]. Dropping it stops
/// sampling and ends the thread in the trace (its end record);
/// [`stop`](Sampling::stop) stops sampling and keeps the sampler. It
/// dereferences to its [`ThreadSampler`].
#[must_use = "sampling stops, and the thread ends, when this is dropped"]
pub struct Sampling {
    sampler: ThreadSampler,
}

impl ThreadSampler {
    /// A sampler for the calling thread, named `thread` in the trace;
    /// `on_end` runs when it is dropped.
    pub(crate) fn new(
        ctx: Arc<SignalContext>,
        thread: u32,
        on_end: OnEnd,
    ) -> io::Result<ThreadSampler> {
        install_handler()?;
        let stack = current_stack_bounds()?;
        // This frame (inside the call that creates the sampler) lies below
        // the caller's frame and above the wasm frames of the calls made
        // later from there.
        let fp = current_fp();
        let anchor = if fp > stack.0 && fp < stack.1 { fp } else { 0 };
        let clock = ctx.clock;
        let state = Arc::new(ThreadState::new(ctx, thread, stack, anchor)?);
        let p = Arc::as_ptr(&state);
        let slot = register(p).ok_or_else(|| {
            io::Error::other(format!(
                "too many sampled threads (at most {MAX_THREADS} at once)"
            ))
        })?;
        let timer = match Timer::create(clock, state.tid, p as *mut libc::c_void) {
            Ok(t) => t,
            Err(e) => {
                unregister(slot);
                return Err(e);
            }
        };
        *state.timer_lock() = Some(timer);
        Ok(ThreadSampler {
            state,
            slot,
            on_end: Some(on_end),
            running: false,
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
        st.hook.hooked.store(true, Ordering::Release);
        move |_, kind| {
            st.on_call_hook(kind);
            Ok(())
        }
    }

    /// Installs [`ThreadSampler::call_hook`] on `store`.
    pub fn install_call_hook<T: 'static>(&self, store: &mut wasmtime::Store<T>) {
        store.call_hook(self.call_hook());
    }

    /// Arms the timer: samples are taken from now on, until the returned
    /// [`Sampling`] is stopped or dropped. Unblocks `SIGPROF` on this thread.
    pub fn start(mut self) -> io::Result<Sampling> {
        unblock_sigprof();
        self.state.active.store(true, Ordering::Release);
        let interval = self.state.ctx.interval();
        if let Err(e) = self.set_timer(interval) {
            self.state.active.store(false, Ordering::Release);
            return Err(e);
        }
        self.running = true;
        Ok(Sampling { sampler: self })
    }

    /// Marks this thread idle (`true`) or busy again (`false`); it starts
    /// busy. For a thread that runs guest code only part of the time, such
    /// as a server's worker between the requests it polls: while idle, the
    /// timer's signals take no sample (the handler returns at once and
    /// counts them in [`SamplerStats::idle`]), and the CPU time the thread
    /// spends idle is left out of every CPU time it records afterwards, so
    /// the first sample after an idle stretch is not charged with it. The
    /// profile then shows the thread's busy time only, and its CPU total is
    /// the CPU time spent busy. A stretch longer than two intervals has the
    /// thread's timer stopped by the recorder's background thread (every
    /// 50 ms; [`SamplerStats::parks`]), and the thread going busy re-arms
    /// it, its first signal at a random point of the first interval. Costs
    /// two reads of the thread's CPU clock per idle stretch, and a timer
    /// system call on the way out of a stopped one. Call it on this thread
    /// (it is not `Send`).
    ///
    /// [`SamplerStats::parks`]: crate::SamplerStats::parks
    ///
    /// [`SamplerStats::idle`]: crate::SamplerStats::idle
    pub fn set_idle(&self, idle: bool) {
        self.state.set_idle(idle);
    }

    pub(crate) fn state(&self) -> &Arc<ThreadState> {
        &self.state
    }

    /// Arms the timer to fire every `interval` (zero: disarms), whether or
    /// not the background thread had parked it.
    fn set_timer(&self, interval: Duration) -> io::Result<()> {
        let timer = self.state.timer_lock();
        self.state.clear_parked();
        timer
            .as_ref()
            .expect("the timer lives as long as the sampler")
            .set(interval)
    }

    /// Disarms the timer. A signal already pending is delivered before this
    /// returns and ignored.
    fn disarm(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        self.state.active.store(false, Ordering::Release);
        // A timer that cannot be disarmed fires into a state that ignores it
        // until it is deleted.
        let _ = self.set_timer(Duration::ZERO);
    }
}

impl Drop for ThreadSampler {
    /// Stops sampling, deletes the timer and ends the thread (`on_end`).
    fn drop(&mut self) {
        self.disarm();
        self.state.active.store(false, Ordering::Release);
        // Deleting the timer returns to this thread, so a signal it had
        // pending is delivered (and ignored, `active` being false) before we
        // go on.
        drop(self.state.timer_lock().take());
        // Any SIGPROF still pending here is blocked on this thread; a
        // pending one would carry a pointer we are about to unregister,
        // which the handler rejects.
        unregister(self.slot);
        if let Some(on_end) = self.on_end.take() {
            on_end(&self.state);
        }
    }
}

impl Sampling {
    /// Stops sampling (a signal already pending is delivered before this
    /// returns and ignored) and gives the sampler back, to
    /// [`start`](ThreadSampler::start) again later or drop.
    pub fn stop(self) -> ThreadSampler {
        let mut sampler = self.sampler;
        sampler.disarm();
        sampler
    }
}

impl Deref for Sampling {
    type Target = ThreadSampler;

    fn deref(&self) -> &ThreadSampler {
        &self.sampler
    }
}
