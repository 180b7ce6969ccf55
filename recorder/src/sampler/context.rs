//! What the signal handler sees besides its own thread's state.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wrec_format::{TimerClock, TraceWriter};

use super::handler::CPU_READ_SPAN_NS;
use super::text_ranges::TextRanges;

/// Everything the `SIGPROF` handler reads that is not its thread's own: the
/// trace it appends to, the module code it recognises, the sampling rule,
/// and the flags that let the recorder close the trace under running
/// handlers. Made by the recorder (which keeps using the writer and adds
/// code ranges), shared through an `Arc` with every [`ThreadState`]
/// (see [`ThreadState::ctx`]); all of it is safe to read from the handler.
///
/// [`ThreadState`]: super::ThreadState
/// [`ThreadState::ctx`]: super::ThreadState::ctx
pub(crate) struct SignalContext {
    pub(crate) writer: TraceWriter,
    pub(crate) ranges: TextRanges,
    pub(crate) clock: TimerClock,
    /// Whether the handler reads the CPU clock for every sample (see
    /// [`RecorderOptions::exact_cpu`](crate::RecorderOptions::exact_cpu)):
    /// asked for, a CPU-time timer, or an interval of 1 ms or more.
    pub(super) cpu_every_sample: bool,
    /// Set by [`close`](SignalContext::close): handlers take no more samples.
    pub(super) closing: AtomicBool,
    /// Handlers between their `closing` check and their last write.
    pub(super) inflight: AtomicUsize,
}

impl SignalContext {
    /// A context for `writer`, which has written its run-info record: the
    /// interval there is the one the timers and the handler's CPU rule use
    /// ([`interval_ns`](Self::interval_ns)).
    pub(crate) fn new(writer: TraceWriter, clock: TimerClock, exact_cpu: bool) -> SignalContext {
        let interval_ns = writer.interval_ns();
        SignalContext {
            writer,
            ranges: TextRanges::new(),
            clock,
            cpu_every_sample: exact_cpu
                || clock == TimerClock::Cpu
                || interval_ns >= CPU_READ_SPAN_NS,
            closing: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
        }
    }

    /// The sampling interval, in ns: the run-info record's, kept by the
    /// writer (its one owner).
    #[inline]
    pub(crate) fn interval_ns(&self) -> u64 {
        self.writer.interval_ns()
    }

    /// The sampling interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns())
    }

    /// Stops all sampling: no handler starts a sample after this returns,
    /// and those that had started have finished writing.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        while self.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }
}
