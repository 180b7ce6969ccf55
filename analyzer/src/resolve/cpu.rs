//! CPU time for samples without their own reading (`NO_CPU`): they are
//! held back until the thread's next reading, which they share as SPEC.md
//! §2.4 says.

use wrec_format::MAX_NO_CPU_RUN;

use super::MAX_TOTAL;
use crate::model::{Sample, Samples, StackId};

/// A sample on its way into a thread's [`Samples`], with its time in whole
/// µs for sharing CPU time.
pub(super) struct Pending {
    pub(super) time_us: u64,
    /// Since the profile's start.
    pub(super) time_ns: u64,
    pub(super) stack: Option<StackId>,
}

/// One thread's samples without CPU time since its last sample with one,
/// held back until a CPU time tells what they share.
#[derive(Default)]
pub(super) struct CpuShare {
    pending: Vec<Pending>,
    /// The time and CPU time of that last sample, in whole µs.
    at_us: (u64, u64),
}

/// The CPU time of a whole profile, kept under [`MAX_TOTAL`] (a damaged
/// trace's deltas could add up past 64 bits).
#[derive(Default)]
pub(super) struct CpuTotal(u64);

impl CpuTotal {
    /// Adds a sample's CPU delta to the total; returns what fitted.
    #[inline]
    fn capped(&mut self, d: u64) -> u64 {
        let d = d.min(MAX_TOTAL - self.0);
        self.0 += d;
        d
    }
}

impl CpuShare {
    /// A sample without its own CPU reading: held back.
    #[inline]
    pub(super) fn hold(&mut self, p: Pending, samples: &mut Samples, total: &mut CpuTotal) {
        if self.pending.len() >= MAX_NO_CPU_RUN as usize {
            // The decoder refuses longer runs; never hold more.
            self.flush(samples, total);
        }
        self.pending.push(p);
    }

    /// A sample whose CPU clock read `cpu_ns`, `cpu_delta_ns` since the
    /// previous reading: it and the held-back samples share that delta.
    #[inline]
    pub(super) fn read(
        &mut self,
        p: Pending,
        cpu_ns: u64,
        cpu_delta_ns: u64,
        samples: &mut Samples,
        total: &mut CpuTotal,
    ) {
        // The spans run from the previous reading: update it after.
        let at = (p.time_us, cpu_ns / 1000);
        self.close(samples, total, p, true, cpu_delta_ns / 1000);
        self.at_us = at;
    }

    /// The thread's end, at `time_ns` with `cpu_ns` of CPU time: it closes
    /// a run of held-back samples; the end's own share is no sample's.
    pub(super) fn end(
        &mut self,
        time_ns: u64,
        cpu_ns: u64,
        samples: &mut Samples,
        total: &mut CpuTotal,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let (at, cpu) = self.at_us;
        let end_us = (time_ns / 1000).max(at);
        let share = (cpu_ns / 1000).saturating_sub(cpu);
        let end = Pending {
            time_us: end_us,
            time_ns: 0,
            stack: None,
        };
        self.close(samples, total, end, false, share);
    }

    /// Pushes the held-back samples with their own time delta as CPU time:
    /// nothing measured closes their run (a recorder that was killed).
    pub(super) fn flush(&mut self, samples: &mut Samples, total: &mut CpuTotal) {
        let mut prev = self.at_us.0;
        for p in self.pending.drain(..) {
            let d = p.time_us.saturating_sub(prev);
            prev = p.time_us;
            samples.push(Sample {
                time_ns: p.time_ns,
                cpu_delta_ns: total.capped(d.saturating_mul(1000)),
                stack: p.stack,
            });
        }
        self.at_us.0 = prev;
    }

    /// Pushes the held-back samples and then `close` (if `push_close`; a
    /// thread's end is no sample), sharing `total_us` of CPU time, measured
    /// at `close`, among them.
    fn close(
        &mut self,
        samples: &mut Samples,
        total: &mut CpuTotal,
        close: Pending,
        push_close: bool,
        total_us: u64,
    ) {
        if self.pending.is_empty() {
            // Nearly every sample of a trace: nothing to share.
            if push_close {
                samples.push(Sample {
                    time_ns: close.time_ns,
                    cpu_delta_ns: total.capped(total_us.saturating_mul(1000)),
                    stack: close.stack,
                });
            }
            return;
        }
        let mut spans = [0u64; MAX_NO_CPU_RUN as usize + 1];
        let n = self.pending.len() + 1;
        let mut prev = self.at_us.0;
        for (span, t) in spans.iter_mut().zip(
            self.pending
                .iter()
                .map(|p| p.time_us)
                .chain([close.time_us]),
        ) {
            *span = t.saturating_sub(prev);
            prev = t;
        }
        let mut held = self.pending.drain(..).chain([close]);
        let mut k = 0;
        wrec_format::spread_cpu(total_us, &spans[..n], |share| {
            k += 1;
            let Some(p) = held.next() else { return };
            if k == n && !push_close {
                return;
            }
            samples.push(Sample {
                time_ns: p.time_ns,
                cpu_delta_ns: total.capped(share.saturating_mul(1000)),
                stack: p.stack,
            });
        });
    }
}
