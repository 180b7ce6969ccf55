//! The recorder's book of sampled threads: each live thread's losses as
//! already reported in the trace, the loss and end records written when a
//! thread ends, and the totals of the threads that have ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wrec_format::{clock_ns, LossReason, Record, SamplesLost, ThreadEnd, TraceWriter};

use crate::sampler::{SamplerStats, ThreadState};

/// A live thread's loss counters as already reported in the trace.
struct LossEntry {
    state: Arc<ThreadState>,
    reported_dropped: u64,
    reported_overruns: u64,
}

/// What the threads that have ended lost and counted.
#[derive(Default, Clone, Copy)]
pub(crate) struct Totals {
    /// Samples dropped for lack of room.
    pub(crate) dropped: u64,
    /// Timer expirations the kernel merged.
    pub(crate) overruns: u64,
    pub(crate) stats: SamplerStats,
}

/// The sampled threads, live and ended.
#[derive(Default)]
pub(crate) struct Threads {
    live: Mutex<Vec<LossEntry>>,
    ended: Mutex<Totals>,
}

impl Threads {
    /// Starts keeping the books of a thread (after its start record).
    pub(crate) fn add(&self, state: Arc<ThreadState>) {
        lock(&self.live).push(LossEntry {
            state,
            reported_dropped: 0,
            reported_overruns: 0,
        });
    }

    /// Writes loss records for every live thread whose counters moved since
    /// the last report.
    pub(crate) fn report_losses(&self, writer: &TraceWriter) {
        for e in lock(&self.live).iter_mut() {
            report_losses(writer, e);
        }
    }

    /// Parks the timers of the live threads that have been idle for
    /// `after` or more (see `sampler/idle.rs`); a few atomic loads a
    /// thread when none is.
    pub(crate) fn park_idle(&self, after: Duration) {
        let now = clock_ns(libc::CLOCK_MONOTONIC);
        for e in lock(&self.live).iter() {
            e.state.park_if_idle(now, after);
        }
    }

    /// Ends `thread`, whose CPU time is now `cpu_ns`: its last losses, its
    /// end record, its counters into the totals. Nothing if it has ended
    /// already (by [`end_all`](Threads::end_all)).
    pub(crate) fn end(&self, writer: &TraceWriter, thread: u32, cpu_ns: u64) {
        let mut live = lock(&self.live);
        let Some(i) = live.iter().position(|e| e.state.thread == thread) else {
            return;
        };
        let mut e = live.swap_remove(i);
        drop(live);
        self.end_thread(writer, &mut e, cpu_ns);
    }

    /// Ends every live thread (reading their CPU clocks from this thread).
    pub(crate) fn end_all(&self, writer: &TraceWriter) {
        let live = std::mem::take(&mut *lock(&self.live));
        for mut e in live {
            let cpu = e.state.recorded_cpu_now();
            self.end_thread(writer, &mut e, cpu);
        }
    }

    /// What the threads that have ended lost and counted.
    pub(crate) fn ended(&self) -> Totals {
        *lock(&self.ended)
    }

    fn end_thread(&self, writer: &TraceWriter, e: &mut LossEntry, cpu_ns: u64) {
        report_losses(writer, e);
        let _ = writer.write_record(&Record::ThreadEnd(ThreadEnd {
            thread: e.state.thread,
            time_ns: clock_ns(libc::CLOCK_MONOTONIC),
            cpu_ns,
        }));
        let mut t = lock(&self.ended);
        t.dropped += e.state.dropped.load(Ordering::Relaxed);
        t.overruns += e.state.overruns.load(Ordering::Relaxed);
        t.stats.merge(&e.state.stats.snapshot());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
