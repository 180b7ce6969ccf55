//! The signal-driven stack sampler: per-thread POSIX timers, the `SIGPROF`
//! handler, the frame-pointer walk with its stack scan for host samples, and
//! the optional call hook that remembers where wasm called into the host.
//!
//! # Where things are
//!
//! | file | what |
//! |---|---|
//! | [`thread_sampler`] | [`ThreadSampler`] and [`Sampling`]: the public face, one per sampled thread |
//! | [`context`] | [`SignalContext`]: the one thing the handler sees besides its thread's state |
//! | [`handler`] | the `SIGPROF` handler and its CPU-clock rule |
//! | [`walk`] | the frame-pointer walk (pure, tested with a fake stack) |
//! | [`fiber_stacks`] | the fiber stacks of async stores: their stack creator and the table the handler reads |
//! | [`boundary_scan`] | the stack scan for host samples whose frame-pointer chain is broken |
//! | [`call_hook`] | the optional `Store::call_hook` that records host-call boundaries |
//! | [`thread_state`] | a sampled thread's preallocated state |
//! | [`idle`] | a thread's idle stretches: no samples, no CPU time, its timer parked |
//! | [`registry`] | the live thread states, so the handler rejects stale signal values |
//! | [`timer`] | the per-thread POSIX timer |
//! | [`calibrate`] | what a timer signal costs here, and the interval that leaves the guest its CPU |
//! | [`text_ranges`] | the registered modules' code, readable from the handler |
//! | [`stats`] | the handler's counters and [`SamplerStats`] |
//!
//! Nothing here knows the recorder: it hands the sampler a [`SignalContext`]
//! and a closure to run when a thread's sampling ends.
//!
//! # How a sample is taken
//!
//! Every sampled thread owns a timer (`timer_create` with
//! `SIGEV_THREAD_ID`, so the signal goes to exactly that thread) whose
//! `sigev_value.sival_ptr` points at the thread's [`ThreadState`]. The
//! handler reads the interrupted registers from the `ucontext` and the
//! monotonic clock, walks the frame-pointer chain, reads the thread CPU
//! clock unless the sample may go without it (SPEC.md §3) and appends the raw return addresses with
//! [`TraceWriter::append_sample`](wrec_format::TraceWriter::append_sample).
//! Symbolization happens offline, in the analyzer.
//!
//! # Which frames are recorded
//!
//! Only addresses inside a registered module's compiled code (`Module::text()`):
//!
//! - PC in module code: the PC, then each return address while it is inside
//!   module code; the first return address outside is the host that called
//!   into wasm, and the walk stops there.
//! - PC outside module code (a WASI call, a libcall such as `memory.grow`, or
//!   the runtime): the sample is flagged `HOST`, host frames are skipped by
//!   walking frame pointers up to the first return address inside module code,
//!   and the walk goes on from there. Where the host frames cannot be walked
//!   (glibc is built without frame pointers), a bounded scan of the stack
//!   above `sp` finds the frame record of wasm's call into the host
//!   ([`scan_for_boundary`](boundary_scan::scan_for_boundary)); if the opt-in
//!   call hook is installed, the boundary it recorded when wasm called the
//!   host is used first (see [`call_hook`]).
//!
//! PCs in a prologue or epilogue are handled as described in [`walk`].

mod boundary_scan;
mod calibrate;
mod call_hook;
mod context;
mod fiber_stacks;
mod handler;
mod idle;
mod registry;
mod stats;
mod text_ranges;
mod thread_sampler;
mod thread_state;
mod timer;
mod walk;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

pub use calibrate::{measure_signal_cost, sustainable_interval, SUSTAIN_FACTOR};
pub(crate) use context::SignalContext;
pub use fiber_stacks::{registered_fiber_stacks, FiberStackCreator, MAX_FIBER_STACKS};
pub use stats::SamplerStats;
pub use thread_sampler::{Sampling, ThreadSampler};
pub(crate) use thread_state::ThreadState;

/// The most modules a recorder can register (the handler checks addresses
/// against a fixed array so it never allocates or locks).
pub const MAX_MODULES: usize = 64;

/// The most threads that can be sampled at once in a process.
pub const MAX_THREADS: usize = 256;
