//! A thread's idle stretches ([`ThreadSampler::set_idle`]): while idle, the
//! thread takes no samples and the CPU time it spends is left out of every
//! CPU time it records (SPEC.md §3); and when a stretch goes on, the
//! background thread parks its timer, so an idle thread is not woken by
//! its timer either.
//!
//! Parking and unparking meet on two flags and the timer's lock, never
//! taken by the handler. The thread going busy stores `on = false` and
//! then reads `parked`; the background thread stores `parked = true` and
//! then reads `on` (all sequentially consistent). So either the thread
//! sees `parked` and re-arms the timer under the lock, after the
//! background thread's disarming, or the background thread sees the
//! thread busy and leaves the timer alone: a busy thread's timer is never
//! left disarmed.
//!
//! [`ThreadSampler::set_idle`]: super::ThreadSampler::set_idle

use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};
use std::sync::MutexGuard;
use std::time::Duration;

use wrec_format::clock_ns;

use super::thread_state::ThreadState;
use super::timer::Timer;

/// A thread's idle state.
#[derive(Default)]
pub(crate) struct Idle {
    /// What `set_idle` said last: the handler takes no sample while set.
    pub(super) on: AtomicBool,
    /// Set when the thread stops being idle: the handler's next sample
    /// reads the CPU clock (no `NO_CPU` run spans an idle stretch).
    pub(super) resumed: AtomicBool,
    /// The CPU time spent idle in stretches that have ended, in ns.
    cpu_ns: AtomicU64,
    /// The thread's CPU clock when the current stretch began.
    since_cpu_ns: AtomicU64,
    /// The monotonic clock when the current stretch began.
    since_ns: AtomicU64,
    /// Whether the background thread has disarmed the timer for this
    /// stretch.
    parked: AtomicBool,
}

impl ThreadState {
    /// Marks the thread idle or not. On the thread itself: the handler
    /// cannot see one of these steps half done, and the orders below keep
    /// the CPU times the thread records from ever going backwards.
    pub(super) fn set_idle(&self, idle: bool) {
        let st = &self.idle;
        if st.on.load(Ordering::Relaxed) == idle {
            return;
        }
        if idle {
            // First no more samples, then the clock: a sample between the
            // two would count CPU time the stretch leaves out again.
            st.on.store(true, Ordering::SeqCst);
            compiler_fence(Ordering::SeqCst);
            st.since_cpu_ns
                .store(clock_ns(libc::CLOCK_THREAD_CPUTIME_ID), Ordering::Relaxed);
            st.since_ns
                .store(clock_ns(libc::CLOCK_MONOTONIC), Ordering::Relaxed);
        } else {
            let now = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
            let since = st.since_cpu_ns.load(Ordering::Relaxed);
            st.cpu_ns
                .fetch_add(now.saturating_sub(since), Ordering::Relaxed);
            st.resumed.store(true, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            st.on.store(false, Ordering::SeqCst);
            if st.parked.load(Ordering::SeqCst) {
                self.unpark();
            }
        }
    }

    /// The CPU time to record for a reading `raw` of the thread's CPU clock:
    /// `raw` less the time the thread spent idle. Async-signal-safe.
    #[inline]
    pub(crate) fn recorded_cpu(&self, raw: u64) -> u64 {
        let st = &self.idle;
        let mut idle = st.cpu_ns.load(Ordering::Relaxed);
        if st.on.load(Ordering::Relaxed) {
            idle += raw.saturating_sub(st.since_cpu_ns.load(Ordering::Relaxed));
        }
        raw.saturating_sub(idle)
    }

    /// The CPU time to record for the thread now (see
    /// [`recorded_cpu`](Self::recorded_cpu)), read from any thread (0 if
    /// it is gone).
    pub(crate) fn recorded_cpu_now(&self) -> u64 {
        self.recorded_cpu(self.thread_cpu_ns())
    }

    /// From the background thread: disarms the timer of a thread that has
    /// been idle for `after` or more at `now_ns` (monotonic), until it is
    /// busy again. Returns whether it did.
    pub(crate) fn park_if_idle(&self, now_ns: u64, after: Duration) -> bool {
        let st = &self.idle;
        if !st.on.load(Ordering::SeqCst)
            || st.parked.load(Ordering::Relaxed)
            || now_ns.saturating_sub(st.since_ns.load(Ordering::Relaxed)) < after.as_nanos() as u64
        {
            return false;
        }
        let timer = self.timer_lock();
        let Some(timer) = timer.as_ref() else {
            return false;
        };
        if !self.active.load(Ordering::Acquire) {
            return false;
        }
        st.parked.store(true, Ordering::SeqCst);
        if !st.on.load(Ordering::SeqCst) || timer.set(Duration::ZERO).is_err() {
            // Busy again meanwhile (it unparks under this lock, after us),
            // or the timer could not be disarmed.
            st.parked.store(false, Ordering::SeqCst);
            return false;
        }
        self.stats.parks.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// On the thread, busy again: re-arms a parked timer, its first signal
    /// at a random point of the first interval (so the samples after an
    /// idle stretch are as likely at any moment as the others).
    fn unpark(&self) {
        let timer = self.timer_lock();
        if !self.idle.parked.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Some(timer) = timer.as_ref() {
            if self.active.load(Ordering::Acquire) {
                let interval = self.ctx.interval();
                let first = random_below(interval);
                // A timer that cannot be re-armed leaves the thread
                // unsampled; nothing better can be done here.
                let _ = timer.set_first(first, interval);
            }
        }
    }

    /// The timer's lock (see [`ThreadState::timer`]).
    pub(super) fn timer_lock(&self) -> MutexGuard<'_, Option<Timer>> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a parked stretch: the sampler has just armed or disarmed
    /// the timer itself, under its lock.
    pub(super) fn clear_parked(&self) {
        self.idle.parked.store(false, Ordering::SeqCst);
    }
}

/// A duration in `(0, d]`, from the monotonic clock's nanoseconds mixed
/// (enough to place one signal).
fn random_below(d: Duration) -> Duration {
    let d = d.as_nanos().max(1) as u64;
    let x = clock_ns(libc::CLOCK_MONOTONIC).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Duration::from_nanos(((x as u128 * d as u128) >> 64) as u64 + 1)
}
