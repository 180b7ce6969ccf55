//! One measured run, in a child process: a WASI command module under one of
//! the four configurations.
//!
//! Every configuration gets the WASI setup `wrec` had before issue 13:
//! inherited stdio, the guest's argv, blocking calls on the guest's thread,
//! no preopened directory, the synchronous p1 linker (`wrec` now runs the
//! guest on a fiber with the async one; `wrec-bench cli` compares the real
//! binaries). The module is not compiled
//! here: the parent precompiled it with the same engine configuration, so the
//! child's peak RSS is the run's, not Cranelift's.
//!
//! The measured window runs from just before the profiler is set up to just
//! after its output is written and closed: setup, instantiation, `_start`,
//! dropping the store, and writing the output. Its CPU time is the whole
//! process's (`CLOCK_PROCESS_CPUTIME_ID`), so helper threads (the guest
//! profiler's ticker, wrec's housekeeper) count.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use wasmtime::{AsContext, Config, Engine, GuestProfiler, Linker, Module, Store, UpdateDeadline};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::WasiCtxBuilder;

use crate::sys;

/// The four configurations, in the order a round runs them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConfigKind {
    /// No profiling, default engine configuration.
    Plain,
    /// The same per-thread timer as wrec, with a handler that does nothing.
    Floor,
    /// Wasmtime's GuestProfiler driven like `wasmtime run --profile=guest`.
    Guest,
    /// The wrec recorder.
    Wrec,
    /// Diagnostic (only with `--configs`): plain plus an empty
    /// `Store::call_hook`, the cost of Wasmtime's call-hook mechanism alone.
    Hook,
    /// Diagnostic (only with `--configs`): wrec with its optional call hook
    /// (`wrec --call-hook`), to measure what the hook costs.
    WrecHook,
    /// Diagnostic (only with `--configs`): wrec reading the thread CPU clock
    /// at every sample (`wrec --exact-cpu`), to measure what skipping it
    /// saves below 1 ms.
    WrecExact,
    /// Diagnostic (only with `--configs`): wrec as a flight recorder
    /// (`wrec --max-size 64MiB`), the ring layout of SPEC.md §5.
    WrecRing,
}

impl ConfigKind {
    /// The configurations a default run compares.
    pub const ALL: [ConfigKind; 4] = [
        ConfigKind::Plain,
        ConfigKind::Floor,
        ConfigKind::Guest,
        ConfigKind::Wrec,
    ];
    /// With the diagnostic ones.
    pub const EVERY: [ConfigKind; 8] = [
        ConfigKind::Plain,
        ConfigKind::Floor,
        ConfigKind::Guest,
        ConfigKind::Wrec,
        ConfigKind::Hook,
        ConfigKind::WrecHook,
        ConfigKind::WrecExact,
        ConfigKind::WrecRing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConfigKind::Plain => "plain",
            ConfigKind::Floor => "floor",
            ConfigKind::Guest => "guest",
            ConfigKind::Wrec => "wrec",
            ConfigKind::Hook => "hook",
            ConfigKind::WrecHook => "wrec-hook",
            ConfigKind::WrecExact => "wrec-exact",
            ConfigKind::WrecRing => "wrec-ring",
        }
    }

    /// The engine configuration class: modules are precompiled once per class.
    pub fn engine_class(self) -> EngineClass {
        match self {
            ConfigKind::Plain | ConfigKind::Floor | ConfigKind::Hook => EngineClass::Default,
            ConfigKind::Guest => EngineClass::Epoch,
            ConfigKind::Wrec
            | ConfigKind::WrecHook
            | ConfigKind::WrecExact
            | ConfigKind::WrecRing => EngineClass::Wrec,
        }
    }
}

/// How an engine is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineClass {
    /// `Config::new()`.
    Default,
    /// `Config::new()` plus `epoch_interruption(true)`, as `wasmtime run
    /// --profile=guest` configures it.
    Epoch,
    /// `Config::new()` through `wrec::configure`.
    Wrec,
}

impl EngineClass {
    pub const ALL: [EngineClass; 3] = [EngineClass::Default, EngineClass::Epoch, EngineClass::Wrec];

    pub fn name(self) -> &'static str {
        match self {
            EngineClass::Default => "default",
            EngineClass::Epoch => "epoch",
            EngineClass::Wrec => "wrec",
        }
    }

    pub fn engine(self) -> Result<Engine> {
        let mut config = Config::new();
        match self {
            EngineClass::Default => {}
            EngineClass::Epoch => {
                config.epoch_interruption(true);
            }
            EngineClass::Wrec => {
                wrec::configure(&mut config);
            }
        }
        Engine::new(&config).map_err(|e| anyhow!("cannot set up Wasmtime: {e:#}"))
    }
}

/// What a child reports about its run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    /// Wall time of the measured window.
    pub wall_ns: u64,
    /// Process CPU time (all threads) of the measured window.
    pub cpu_ns: u64,
    /// Of `cpu_ns`: before the guest starts (profiler setup), while it runs
    /// (instantiation and `_start`), and after (stopping, dropping the store,
    /// writing the output).
    #[serde(default)]
    pub setup_cpu_ns: u64,
    #[serde(default)]
    pub run_cpu_ns: u64,
    #[serde(default)]
    pub teardown_cpu_ns: u64,
    /// Of `cpu_ns`, kernel time.
    pub sys_ns: u64,
    /// CPU time of the thread that ran the guest, over the window.
    pub thread_cpu_ns: u64,
    /// Wall time while sampling was armed (0 for plain).
    pub sampled_ns: u64,
    /// CPU time of the guest's thread while sampling was armed: on a busy
    /// machine the thread waits for a CPU part of the wall time, and a
    /// wall-clock timer's expirations while it waits merge into one signal.
    #[serde(default)]
    pub sampled_cpu_ns: u64,
    /// Samples taken (floor: signals handled; guest: epoch callbacks, each
    /// one `GuestProfiler::sample`; wrec: samples written).
    pub samples: u64,
    /// wrec: samples lost (dropped or merged by the kernel).
    pub lost: u64,
    /// Size of the profile or trace written, in bytes.
    pub output_bytes: u64,
    /// wrec: bytes of the trace's sample records alone (the rest is the
    /// header, run info, module record with its address map, thread and end
    /// records).
    pub sample_bytes: u64,
    /// Wall time spent writing the output at the end (finish).
    pub finish_ns: u64,
    /// wrec: total time in the signal handler, and the number of its runs.
    pub handler_ns: u64,
    pub handled: u64,
    pub handler_max_ns: u64,
    /// wrec: process CPU µs of each step of its setup and teardown.
    #[serde(default)]
    pub wrec_steps_us: Vec<(String, u64)>,
    /// Peak RSS of the child (`VmHWM`, read by the child at the end).
    pub maxrss_kib: u64,
    /// `ru_maxrss` of the child from `wait4` (filled in by the parent; at
    /// least the parent's own RSS, see `sys::vm_hwm_kib`).
    #[serde(default)]
    pub wait4_maxrss_kib: u64,
}

/// Arguments of the hidden `child` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    #[arg(long, value_enum)]
    pub config: ConfigKind,
    /// The wasm file (for `argv[0]`, wrec's module record and the hash).
    #[arg(long)]
    pub wasm: PathBuf,
    /// The module precompiled for this configuration's engine; compiled from
    /// `--wasm` if absent.
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    #[arg(long, value_parser = wrec::parse_interval)]
    pub interval: Duration,
    /// Where the profile or trace goes.
    #[arg(long)]
    pub output: PathBuf,
    /// Keep the output instead of deleting it after measuring its size.
    #[arg(long)]
    pub keep_output: bool,
    /// Where to write the result (JSON).
    #[arg(long)]
    pub result: PathBuf,
    /// The guest's arguments.
    #[arg(last = true)]
    pub args: Vec<String>,
}

struct Host {
    wasi: WasiP1Ctx,
    profiler: Option<GuestProfiler>,
    guest_samples: u64,
}

pub fn main(a: &ChildArgs) -> Result<()> {
    let r = run(a)?;
    write_result(&a.result, &r)
}

fn run(a: &ChildArgs) -> Result<RunResult> {
    let bytes = std::fs::read(&a.wasm).with_context(|| format!("reading {}", a.wasm.display()))?;
    let engine = a.config.engine_class().engine()?;
    let module = match &a.artifact {
        // SAFETY: the artifact was written by `Engine::precompile_module` of
        // this same binary with this same configuration, just before.
        Some(p) => unsafe { Module::deserialize_file(&engine, p) }
            .map_err(|e| anyhow!("{}: {e:#}", p.display()))?,
        None => Module::new(&engine, &bytes).map_err(|e| anyhow!("{}: {e:#}", a.wasm.display()))?,
    };
    let argv0 = a
        .wasm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "guest.wasm".into());
    let argv: Vec<String> = std::iter::once(argv0.clone())
        .chain(a.args.iter().cloned())
        .collect();

    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio()
        .allow_blocking_current_thread(true)
        .args(&argv);
    let mut store = Store::new(
        &engine,
        Host {
            wasi: wasi.build_p1(),
            profiler: None,
            guest_samples: 0,
        },
    );
    let mut linker: Linker<Host> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |h: &mut Host| &mut h.wasi)
        .map_err(|e| anyhow!("{e:#}"))?;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| anyhow!("{e:#}"))?;
    let _ = std::fs::remove_file(&a.output);

    let mut r = RunResult::default();
    let cpu0 = sys::process_cpu_ns();
    let sys0 = sys::process_sys_ns();
    let thread0 = sys::thread_cpu_ns();
    let t0 = sys::mono_ns();

    let result;
    let mut marks = (0u64, 0u64);
    match a.config {
        ConfigKind::Plain => {
            result = run_timed(&pre, &mut store, &mut marks);
            drop(store);
        }
        ConfigKind::Hook => {
            store.call_hook(|_, _| Ok(()));
            result = run_timed(&pre, &mut store, &mut marks);
            drop(store);
        }
        ConfigKind::Floor => {
            let mut timer = crate::floor::FloorTimer::arm(a.interval)?;
            let (armed, armed_cpu) = (sys::mono_ns(), sys::thread_cpu_ns());
            result = run_timed(&pre, &mut store, &mut marks);
            r.samples = timer.disarm();
            r.sampled_ns = sys::mono_ns() - armed;
            r.sampled_cpu_ns = sys::thread_cpu_ns() - armed_cpu;
            drop(store);
        }
        ConfigKind::Guest => {
            // As `wasmtime run --profile=guest,PATH,INTERVAL` sets it up
            // (src/commands/run.rs, `setup_guest_profiler`), with the
            // profiler held in the store's data.
            let profiler = GuestProfiler::new(
                &engine,
                &argv0,
                a.interval,
                vec![(argv0.clone(), module.clone())],
            )
            .map_err(|e| anyhow!("{e:#}"))?;
            store.data_mut().profiler = Some(profiler);
            store.call_hook(|mut store, kind| {
                let mut p = store.data_mut().profiler.take().expect("profiler");
                p.call_hook(store.as_context(), kind);
                store.data_mut().profiler = Some(p);
                Ok(())
            });
            store.epoch_deadline_callback(|mut store| {
                let mut p = store.data_mut().profiler.take().expect("profiler");
                p.sample(store.as_context(), Duration::ZERO);
                let data = store.data_mut();
                data.profiler = Some(p);
                data.guest_samples += 1;
                Ok(UpdateDeadline::Continue(1))
            });
            store.set_epoch_deadline(1);
            let stop = Arc::new(AtomicBool::new(false));
            let ticker = {
                let engine = engine.clone();
                let stop = stop.clone();
                let interval = a.interval;
                std::thread::Builder::new()
                    .name("epoch-ticker".into())
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(interval);
                            engine.increment_epoch();
                        }
                    })?
            };
            let (armed, armed_cpu) = (sys::mono_ns(), sys::thread_cpu_ns());
            result = run_timed(&pre, &mut store, &mut marks);
            r.sampled_ns = sys::mono_ns() - armed;
            r.sampled_cpu_ns = sys::thread_cpu_ns() - armed_cpu;
            stop.store(true, Ordering::Relaxed);
            let _ = ticker.join();
            r.samples = store.data().guest_samples;
            let profiler = store.data_mut().profiler.take().expect("profiler");
            drop(store);
            let f0 = sys::mono_ns();
            let file = File::create(&a.output)
                .with_context(|| format!("creating {}", a.output.display()))?;
            let mut out = BufWriter::new(file);
            profiler
                .finish(&mut out)
                .map_err(|e| anyhow!("writing the guest profile: {e:#}"))?;
            out.flush()?;
            drop(out);
            r.finish_ns = sys::mono_ns() - f0;
        }
        ConfigKind::Wrec | ConfigKind::WrecHook | ConfigKind::WrecExact | ConfigKind::WrecRing => {
            let mut step_cpu = sys::process_cpu_ns();
            let mut step = |r: &mut RunResult, name: &str| {
                let now = sys::process_cpu_ns();
                r.wrec_steps_us
                    .push((name.to_owned(), (now - step_cpu) / 1000));
                step_cpu = now;
            };
            let recorder = wrec::Recorder::create(
                &a.output,
                wrec::RecorderOptions {
                    interval: a.interval,
                    args: argv.clone(),
                    force: true,
                    exact_cpu: a.config == ConfigKind::WrecExact,
                    writer: wrec::WriterOptions {
                        ring: (a.config == ConfigKind::WrecRing)
                            .then(|| wrec::parse_max_size("64MiB").expect("a valid size")),
                        ..wrec::WriterOptions::default()
                    },
                    ..wrec::RecorderOptions::default()
                },
            )?;
            step(&mut r, "Recorder::create");
            recorder.add_module(&module, &a.wasm, &bytes)?;
            step(&mut r, "add_module");
            let sampler = recorder.thread_sampler("main")?;
            step(&mut r, "thread_sampler");
            if a.config == ConfigKind::WrecHook {
                sampler.install_call_hook(&mut store);
            }
            let sampling = sampler.start()?;
            step(&mut r, "hook + start");
            let (armed, armed_cpu) = (sys::mono_ns(), sys::thread_cpu_ns());
            result = run_timed(&pre, &mut store, &mut marks);
            let sampler = sampling.stop();
            r.sampled_ns = sys::mono_ns() - armed;
            r.sampled_cpu_ns = sys::thread_cpu_ns() - armed_cpu;
            drop(sampler);
            step(&mut r, "run + stop + drop sampler");
            drop(store);
            step(&mut r, "drop store");
            let exit = match &result {
                Ok(()) => wrec::ExitInfo::exited(0),
                Err(e) => wrec::ExitInfo {
                    kind: wrec::ExitKind::Failed,
                    status: 1,
                    message: e.to_string(),
                },
            };
            let f0 = sys::mono_ns();
            let summary = recorder.finish(exit)?;
            r.finish_ns = sys::mono_ns() - f0;
            step(&mut r, "finish");
            r.samples = summary.samples;
            r.lost = summary.lost;
            r.handler_ns = summary.stats.handler_ns;
            r.handled = summary.stats.handled;
            r.handler_max_ns = summary.stats.handler_max_ns;
        }
    }

    r.wall_ns = sys::mono_ns() - t0;
    r.thread_cpu_ns = sys::thread_cpu_ns() - thread0;
    let cpu_end = sys::process_cpu_ns();
    r.cpu_ns = cpu_end - cpu0;
    r.setup_cpu_ns = marks.0.saturating_sub(cpu0);
    r.run_cpu_ns = marks.1.saturating_sub(marks.0);
    r.teardown_cpu_ns = cpu_end.saturating_sub(marks.1);
    r.sys_ns = sys::process_sys_ns().saturating_sub(sys0);
    result?;
    r.maxrss_kib = sys::vm_hwm_kib();
    if matches!(
        a.config,
        ConfigKind::Guest
            | ConfigKind::Wrec
            | ConfigKind::WrecHook
            | ConfigKind::WrecExact
            | ConfigKind::WrecRing
    ) {
        r.output_bytes = sys::file_len(&a.output);
        if a.config != ConfigKind::Guest {
            r.sample_bytes = sample_record_bytes(&a.output)?;
        }
        if !a.keep_output {
            let _ = std::fs::remove_file(&a.output);
        }
    }
    Ok(r)
}

/// The bytes a trace spends on sample records.
fn sample_record_bytes(path: &Path) -> Result<u64> {
    let trace =
        wrec_format::Trace::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut n = 0u64;
    for rec in trace.records() {
        let rec = rec.with_context(|| format!("reading {}", path.display()))?;
        if rec.kind == wrec_format::kind::SAMPLE {
            n += rec.size;
        }
    }
    Ok(n)
}

/// [`run_start`], noting the process CPU time before and after in `marks`.
fn run_timed(
    pre: &wasmtime::InstancePre<Host>,
    store: &mut Store<Host>,
    marks: &mut (u64, u64),
) -> Result<()> {
    marks.0 = sys::process_cpu_ns();
    let r = run_start(pre, store);
    marks.1 = sys::process_cpu_ns();
    r
}

/// Instantiates the module and runs `_start`; a `proc_exit(0)` is success.
fn run_start(pre: &wasmtime::InstancePre<Host>, store: &mut Store<Host>) -> Result<()> {
    let result = pre
        .instantiate(&mut *store)
        .and_then(|instance| instance.get_typed_func::<(), ()>(&mut *store, "_start"))
        .and_then(|start| start.call(&mut *store, ()));
    match result {
        Ok(()) => Ok(()),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => Ok(()),
            Some(exit) => bail!("the guest exited with status {}", exit.0),
            None => bail!("the guest failed: {e:?}"),
        },
    }
}

/// The counter the floor handler bumps (kept here so the child can read it).
pub static FLOOR_SIGNALS: AtomicU64 = AtomicU64::new(0);

/// Writes `r` where the parent expects it (for children that measure
/// something else than a guest run).
pub fn write_result<T: Serialize>(path: &Path, r: &T) -> Result<()> {
    std::fs::write(path, serde_json::to_vec(r)?)
        .with_context(|| format!("writing {}", path.display()))
}
