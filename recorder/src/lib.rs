//! `wrec`: record WebAssembly programs running on Wasmtime with an
//! async-signal-safe stack sampler, into a trace in the wrec format
//! (`format-spec/SPEC.md`), for `wanalyze` to symbolize offline.
//!
//! The `wrec` binary is a thin command line over this library; an embedder
//! with its own Wasmtime host uses it the same way:
//!
//! ```no_run
//! use std::path::Path;
//! use wrec::{ExitInfo, ExitKind, Recorder, RecorderOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The engine: default Wasmtime plus what the sampler needs.
//! let mut config = wasmtime::Config::new();
//! wrec::configure(&mut config);
//! let engine = wasmtime::Engine::new(&config)?;
//!
//! // 2. Compile, then describe the module in the trace before it runs.
//! let bytes = std::fs::read("guest.wasm")?;
//! let module = wasmtime::Module::new(&engine, &bytes)?;
//! let recorder = Recorder::create(Path::new("guest.wrec"), RecorderOptions::default())?;
//! recorder.add_module(&module, Path::new("guest.wasm"), &bytes)?;
//! // (A component: `recorder.add_component(&component, path, &bytes)`, one
//! // module record for each core module inside it.)
//!
//! // 3. Sample the thread that runs the store's calls.
//! let mut store = wasmtime::Store::new(&engine, ());
//! let sampler = recorder.thread_sampler("main")?;
//! // Optional, and costly for programs making millions of host calls:
//! // sampler.install_call_hook(&mut store);
//! let sampling = sampler.start()?;
//! let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
//! let result = instance.get_typed_func::<(), ()>(&mut store, "run")?.call(&mut store, ());
//! drop(sampling); // stops sampling and writes the thread's end record
//!
//! // 4. Finish: the end record, then the file is truncated to its data.
//! let summary = recorder.finish(match &result {
//!     Ok(()) => ExitInfo::exited(0),
//!     Err(e) => ExitInfo { kind: ExitKind::Trapped, status: 134, message: format!("{e:?}") },
//! })?;
//! eprintln!("{} samples, {} lost", summary.samples, summary.lost);
//! # Ok(()) }
//! ```
//!
//! Async calls work the same way: with the engine configured by
//! [`configure`], `instantiate_async` and `call_async` (the guest then runs
//! on a fiber, as `wasmtime run` runs it) give the same samples as `call`,
//! full stacks on the fiber included. Create the thread sampler on the
//! thread that polls the call's future (e.g. inside
//! `wasmtime_wasi::runtime::in_tokio`, which polls it on the calling
//! thread). A host call that waits (an async sleep or read) switches the
//! fiber out while the thread waits in the executor; its samples carry the
//! wasm stack of the waiting call, as a blocking call's would
//! (`tests/async_store.rs` runs the same fixtures both ways).
//!
//! A server whose worker threads run guest code only part of the time
//! (each request in its own store, as `wrec serve` runs them) gives each
//! worker a sampler once and marks it busy around every poll of a
//! request's guest code ([`ThreadSampler::set_idle`]`(false)` before,
//! `(true)` after): between polls the worker takes no samples, its CPU time
//! is not counted, and once it has been idle two intervals its timer is
//! stopped until the next poll. [`Recorder::record_request`] writes what
//! each request was (index, method, path, span), for the request markers,
//! labels and endpoint table of `wanalyze`'s outputs.
//!
//! Process-wide effects: the recorder installs a `SIGPROF` handler (kept for
//! the life of the process; stray `SIGPROF`s that are not its timers' go to
//! the previous handler, or are ignored instead of killing the process) and
//! sets `SIGXFSZ` to ignored if it was at its default, so that a trace
//! reaching `RLIMIT_FSIZE` makes growing it fail (samples are then counted
//! as lost) instead of killing the process.
//!
//! # Layout
//!
//! - `recorder.rs`: [`Recorder`] and [`Summary`]; `options.rs` and
//!   `error.rs`: what it is asked and how it fails.
//! - `code_maps.rs`: the wasm offsets of the code the samples use;
//!   `losses.rs`: loss records, thread end records and totals;
//!   `housekeeping.rs`: the background thread that grows the trace and
//!   writes both.
//! - `sampler/`: timers, the signal handler, the stack walk, the boundary
//!   scan, the call hook and the per-thread state (its `mod.rs` maps the
//!   files). The sampler knows nothing of the recorder: it sees one
//!   `SignalContext` (the trace writer, the code
//!   ranges, the sampling rule) and calls back only through the closure the
//!   recorder gives each [`ThreadSampler`] for its end.
//! - `arch.rs`: registers, frame setup and pointer authentication per
//!   architecture; `interval.rs`, `output.rs`: the interval syntax and the
//!   output file policy; `run/`: the WASI runner the binary uses (core
//!   modules and components, and `run/serve.rs`, `wrec serve`: a
//!   `wasi:http/proxy` server whose workers each have a sampler, and whose
//!   requests are request records, [`Recorder::record_request`]);
//!   `component.rs`: a component's core modules as module records.

mod arch;
mod code_maps;
mod component;
mod error;
mod housekeeping;
mod interval;
mod losses;
mod max_size;
mod options;
mod output;
mod recorder;
mod redact;
pub mod run;
mod sampler;
mod signals;

pub use error::Error;
pub use interval::{format_interval, parse_interval, MAX_INTERVAL, MIN_INTERVAL};
pub use max_size::{layout_with_segments, parse_max_size, parse_size};
pub use options::{ExitInfo, RecorderOptions};
pub use recorder::{Recorder, Summary, RECORDER};
pub use sampler::{
    measure_signal_cost, registered_fiber_stacks, sustainable_interval, FiberStackCreator,
    SamplerStats, Sampling, ThreadSampler, MAX_FIBER_STACKS, MAX_MODULES, MAX_THREADS,
    SUSTAIN_FACTOR,
};
pub use signals::STOP_SIGNALS;
pub use wrec_format::{ExitKind, TimerClock, WriterOptions};

/// Applies what the sampler needs to a Wasmtime configuration, leaving
/// everything that affects the generated code at Wasmtime's defaults:
///
/// - `generate_address_map(true)` (the default, made explicit): the module
///   record carries the map from machine code to wasm offsets;
/// - no epoch interruption and no fuel: the guest runs exactly the code plain
///   Wasmtime runs;
/// - guest debugging stays off (this build of Wasmtime does not even have the
///   `debug` feature): with it, code is copied per store and sampled PCs no
///   longer fall inside `Module::text()`;
/// - wasm-level inlining stays at the default.
///
/// - fiber stacks come from [`FiberStackCreator`]
///   (`Config::with_host_stack`): async calls (`call_async`,
///   `instantiate_async`) run wasm on a fiber, a stack of its own, and the
///   sampler must know where those stacks are to walk them. With it, samples of async calls are
///   as complete as those of synchronous ones, including a host call that
///   waits (its fiber is switched out while the thread waits in the
///   executor: the sample shows the wasm stack that made the call). Without
///   it (or with Wasmtime's pooling allocator, which keeps its own fiber
///   stacks), a sample on a fiber keeps only its program counter and is
///   flagged `BROKEN`.
///
/// Cranelift always keeps frame pointers in Wasmtime, which is what the
/// sampler walks. The code cache is left alone (see [`run::RunOptions::cache`]).
pub fn configure(config: &mut wasmtime::Config) -> &mut wasmtime::Config {
    config.generate_address_map(true);
    config.epoch_interruption(false);
    config.consume_fuel(false);
    config.with_host_stack(std::sync::Arc::new(FiberStackCreator));
    config
}
