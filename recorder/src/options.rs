//! What a recording is asked to do, and how the recorded program ended.

use std::time::Duration;

use wrec_format::{ExitKind, TimerClock, WriterOptions};

/// Options for [`Recorder::create`](crate::Recorder::create).
#[derive(Debug, Clone)]
pub struct RecorderOptions {
    /// Sampling interval (see [`MIN_INTERVAL`](crate::MIN_INTERVAL),
    /// [`MAX_INTERVAL`](crate::MAX_INTERVAL)). Used as given: on a machine
    /// where a timer signal costs about as much as a short interval, the
    /// sampled thread barely runs; the `wrec` runner passes it through
    /// [`sustainable_interval`](crate::sustainable_interval) with
    /// [`measure_signal_cost`](crate::measure_signal_cost) first, and an
    /// embedder can do the same.
    pub interval: Duration,
    /// Which clock drives the timers.
    pub clock: TimerClock,
    /// The guest's arguments, `argv[0]` first, for the run-info record.
    pub args: Vec<String>,
    /// Write through a symlink at the output path and overwrite a file that is
    /// not a trace. Without it, both are refused; an existing trace is always
    /// overwritten.
    pub force: bool,
    /// Trace growth sizes.
    pub writer: WriterOptions,
    /// Read the thread CPU clock at every sample. Without it, at intervals
    /// under 1 ms, samples taken while a thread evidently ran wasm the whole
    /// time since the previous one skip that read (a system call, ~1 µs on a
    /// VM) and are flagged `NO_CPU`; their CPU time is measured at most 1 ms
    /// later and shared out by the reader (SPEC.md §2.4 and §3).
    pub exact_cpu: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            interval: Duration::from_millis(1),
            clock: TimerClock::Wall,
            args: Vec::new(),
            force: false,
            writer: WriterOptions::default(),
            exact_cpu: false,
        }
    }
}

/// How the recorded program ended, for the end record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub kind: ExitKind,
    /// The process exit code the embedder uses (wrec: the guest's status,
    /// 134 for a trap, 1 for its own errors).
    pub status: i64,
    /// The trap or error text; empty for a clean exit.
    pub message: String,
}

impl ExitInfo {
    /// A normal exit with `status`.
    pub fn exited(status: i64) -> ExitInfo {
        ExitInfo {
            kind: ExitKind::Exited,
            status,
            message: String::new(),
        }
    }
}
