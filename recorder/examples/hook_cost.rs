//! Measures what the call hook costs per host call, without sampling:
//!
//! - a micro benchmark: wasm calling a no-op host function 10 million times
//!   (the host call itself is all there is);
//! - fixtures/hostloop.wasm: a realistic host-call-heavy guest (two WASI
//!   calls per iteration plus some compute).
//!
//! Each runs with no hook, with an empty hook (Wasmtime's call-hook
//! mechanism alone) and with wrec's hook (which also walks from the hook to
//! the wasm frames), interleaved, several rounds; the best thread-CPU time
//! per host call of each is printed.
//!
//! ```text
//! cargo run --release -p wrec --example hook_cost -- fixtures/hostloop.wasm 1250 7
//! ```
use std::path::Path;

use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::WasiCtxBuilder;

const MICRO_CALLS: u64 = 10_000_000;
const MICRO_WAT: &str = r#"(module
  (import "env" "nop" (func $nop (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (call $nop (local.get $acc)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000000))))))"#;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Hook {
    None,
    Empty,
    Wrec,
}

fn cpu_ns() -> u64 {
    wrec_format::clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let wasm = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("fixtures/hostloop.wasm");
    let iters_k: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1250);
    let rounds: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(7);

    let mut config = Config::new();
    wrec::configure(&mut config);
    let engine = Engine::new(&config)?;
    let bytes = std::fs::read(wasm)?;
    let hostloop = Module::new(&engine, &bytes)?;
    let micro = Module::new(&engine, MICRO_WAT)?;
    let dir = tempfile::tempdir()?;
    let recorder =
        wrec::Recorder::create(&dir.path().join("t.wrec"), wrec::RecorderOptions::default())?;
    recorder.add_module(&hostloop, Path::new(wasm), &bytes)?;
    recorder.add_module(&micro, Path::new("micro.wat"), MICRO_WAT.as_bytes())?;
    let sampler = recorder.thread_sampler("main")?;

    let hooks = [Hook::None, Hook::Empty, Hook::Wrec];
    let mut best_micro = [f64::MAX; 3];
    let mut best_loop = [f64::MAX; 3];
    for _ in 0..rounds {
        for (i, hook) in hooks.into_iter().enumerate() {
            // Micro: a no-op host function.
            let mut store = Store::new(&engine, ());
            install(&mut store, hook, &sampler);
            let mut linker: Linker<()> = Linker::new(&engine);
            linker.func_wrap("env", "nop", |x: i32| x.wrapping_add(1))?;
            let start = linker
                .instantiate(&mut store, &micro)?
                .get_typed_func::<(), ()>(&mut store, "_start")?;
            let t = cpu_ns();
            start.call(&mut store, ())?;
            best_micro[i] = best_micro[i].min((cpu_ns() - t) as f64 / MICRO_CALLS as f64);

            // hostloop: WASI calls.
            let mut wasi = WasiCtxBuilder::new();
            wasi.allow_blocking_current_thread(true)
                .args(&["hostloop.wasm".to_string(), iters_k.to_string()]);
            let mut store = Store::new(&engine, wasi.build_p1());
            install(&mut store, hook, &sampler);
            let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
            p1::add_to_linker_sync(&mut linker, |c| c)?;
            let start = linker
                .instantiate(&mut store, &hostloop)?
                .get_typed_func::<(), ()>(&mut store, "_start")?;
            let t = cpu_ns();
            start.call(&mut store, ())?;
            best_loop[i] = best_loop[i].min((cpu_ns() - t) as f64 / (iters_k * 2000) as f64);
        }
    }
    for (what, best) in [
        ("no-op host function", best_micro),
        ("hostloop.wasm (WASI)", best_loop),
    ] {
        println!(
            "{what:22} best of {rounds}, thread CPU ns per host call: no hook {:.1}, empty hook {:.1} (+{:.1}), \
             wrec hook {:.1} (+{:.1} over none, +{:.1} over the empty hook)",
            best[0],
            best[1],
            best[1] - best[0],
            best[2],
            best[2] - best[0],
            best[2] - best[1]
        );
    }
    drop(sampler);
    recorder.finish(wrec::ExitInfo::exited(0))?;
    Ok(())
}

fn install<T: 'static>(store: &mut Store<T>, hook: Hook, sampler: &wrec::ThreadSampler) {
    match hook {
        Hook::None => {}
        Hook::Empty => store.call_hook(|_, _| Ok(())),
        Hook::Wrec => sampler.install_call_hook(store),
    }
}
