//! The handler's diagnostic counters: one field list makes both the atomic
//! per-thread counters the handler bumps ([`Stats`]) and the plain totals
//! the recorder reports ([`SamplerStats`]).

use std::sync::atomic::{AtomicU64, Ordering};

use wrec_format::flags;

use super::walk::Via;

/// Defines [`SamplerStats`] (public, plain) and [`Stats`] (the handler's
/// relaxed atomics) from one list of fields, each with how two threads'
/// values combine (`sum` or `max`).
macro_rules! sampler_stats {
    ($($(#[$doc:meta])* $name:ident: $combine:ident,)*) => {
        /// Sampler diagnostics over all threads.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct SamplerStats {
            $($(#[$doc])* pub $name: u64,)*
        }

        /// One thread's counters behind [`SamplerStats`], kept by its signal
        /// handler (relaxed atomics).
        #[derive(Default)]
        pub(crate) struct Stats {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Stats {
            /// The counters as they are now.
            pub(crate) fn snapshot(&self) -> SamplerStats {
                SamplerStats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        impl SamplerStats {
            /// Folds another thread's counters into these.
            pub(crate) fn merge(&mut self, other: &SamplerStats) {
                $(self.$name = $combine(self.$name, other.$name);)*
            }
        }
    };
}

fn sum(a: u64, b: u64) -> u64 {
    a + b
}

fn max(a: u64, b: u64) -> u64 {
    a.max(b)
}

sampler_stats! {
    /// Samples taken outside wasm code (`HOST`).
    host: sum,
    /// Samples whose walk stopped at an untrusted frame (`BROKEN`).
    broken: sum,
    /// Samples in a prologue or epilogue (`PROLOGUE`).
    prologue: sum,
    /// Samples cut at the frame limit (`TRUNCATED`).
    truncated: sum,
    /// Samples written without their CPU time (`NO_CPU`, see
    /// [`RecorderOptions::exact_cpu`](crate::RecorderOptions::exact_cpu)).
    no_cpu: sum,
    /// Host samples whose wasm callers came from the call hook's record
    /// (their frame-pointer chain was broken or went astray).
    via_hook: sum,
    /// Host samples whose wasm callers the stack scan found (their
    /// frame-pointer chain was broken).
    via_scan: sum,
    /// Total time spent in the signal handler, in ns (wall-clock timers only).
    handler_ns: sum,
    /// The longest handler run, in ns (wall-clock timers only).
    handler_max_ns: max,
    /// Handler runs over 50 µs (preempted, or waiting on a page fault).
    handler_slow: sum,
    /// Samples the handler wrote.
    handled: sum,
    /// Timer signals that took no sample because the thread was idle
    /// ([`ThreadSampler::set_idle`](crate::ThreadSampler::set_idle)).
    idle: sum,
    /// Idle stretches long enough that the background thread stopped the
    /// thread's timer until it was busy again.
    parks: sum,
}

impl Stats {
    /// Counts a sample the handler wrote, with its flags, how a host sample
    /// found its wasm callers, and whether the CPU clock was read.
    #[inline(always)]
    pub(super) fn count_sample(&self, fl: u8, via: Via, read_cpu: bool) {
        if !read_cpu {
            self.no_cpu.fetch_add(1, Ordering::Relaxed);
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
        if fl & flags::HOST != 0 {
            self.host.fetch_add(1, Ordering::Relaxed);
        }
        if fl & flags::BROKEN != 0 {
            self.broken.fetch_add(1, Ordering::Relaxed);
        }
        if fl & flags::PROLOGUE != 0 {
            self.prologue.fetch_add(1, Ordering::Relaxed);
        }
        if fl & flags::TRUNCATED != 0 {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        match via {
            Via::Chain => {}
            Via::Hook => {
                self.via_hook.fetch_add(1, Ordering::Relaxed);
            }
            Via::Scan => {
                self.via_scan.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts one handler run's own cost, `took` ns.
    #[inline(always)]
    pub(super) fn count_handler_time(&self, took: u64) {
        self.handler_ns.fetch_add(took, Ordering::Relaxed);
        self.handler_max_ns.fetch_max(took, Ordering::Relaxed);
        if took > 50_000 {
            self.handler_slow.fetch_add(1, Ordering::Relaxed);
        }
    }
}
