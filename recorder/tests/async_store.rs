//! The library with both kinds of store use: synchronous calls (`call`, the
//! guest on the thread's stack) and async ones (`call_async`, the guest on
//! a fiber, as `wasmtime run` runs it). With
//! [`wrec::configure`] the two give the same profile: full stacks on the
//! fiber, host calls under the wasm that made them (a call that waits, with
//! its fiber switched out, included), and no sample flagged `BROKEN`.

use std::path::Path;

use wasmtime::{Config, Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wrec::{ExitInfo, Recorder, RecorderOptions};
use wrec_format::flags;
use wrec_testkit::*;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Sync,
    Async,
}

/// Runs `fixture_name ARGS` as an embedder would, with a store of `kind`,
/// `dir` preopened as `.`, and reads the trace back.
fn record_with(kind: Kind, fixture_name: &str, args: &[&str], dir: &Path) -> Loaded {
    let wasm = fixture(fixture_name);
    let mut config = Config::new();
    wrec::configure(&mut config);
    let engine = Engine::new(&config).unwrap();
    let bytes = std::fs::read(&wasm).unwrap();
    let module = Module::new(&engine, &bytes).unwrap();
    let trace = dir.join(format!("{kind:?}.wrec"));
    let recorder = Recorder::create(
        &trace,
        RecorderOptions {
            interval: std::time::Duration::from_micros(500),
            ..RecorderOptions::default()
        },
    )
    .unwrap();
    recorder.add_module(&module, &wasm, &bytes).unwrap();

    let mut argv = vec![fixture_name];
    argv.extend(args);
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stderr()
        .allow_blocking_current_thread(true)
        .args(&argv)
        .preopened_dir(dir, ".", FsPerms::ReadWrite)
        .unwrap();
    let wasi = wasi.build_p1();
    let mut store = Store::new(&engine, wasi);
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);

    let sampler = recorder.thread_sampler("main").unwrap();
    let sampling = sampler.start().unwrap();
    let result = match kind {
        Kind::Sync => {
            p1::add_to_linker_sync(&mut linker, |c| c).unwrap();
            linker
                .instantiate(&mut store, &module)
                .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "_start"))
                .and_then(|f| f.call(&mut store, ()))
        }
        Kind::Async => {
            p1::add_to_linker_async(&mut linker, |c| c).unwrap();
            // The future runs on this thread (block_on), so does the fiber.
            wasmtime_wasi::runtime::in_tokio(async {
                let i = linker.instantiate_async(&mut store, &module).await?;
                let f = i.get_typed_func::<(), ()>(&mut store, "_start")?;
                f.call_async(&mut store, ()).await
            })
        }
    };
    drop(sampling);
    result.unwrap();
    drop(store);
    recorder.finish(ExitInfo::exited(0)).unwrap();
    Loaded::load(&trace, &wasm)
}

/// fib: nearly every sample in `fib`, deep recursive stacks down to the
/// command's entry, on the fiber as on the thread's stack.
#[test]
fn fib_has_the_same_profile_in_both_kinds_of_store() {
    let _g = timing_lock();
    let d = tempfile::tempdir().unwrap();
    for kind in [Kind::Sync, Kind::Async] {
        let l = record_with(kind, "fib-O2.wasm", &["40"], d.path());
        let n = l.samples.len();
        assert!(n >= 200, "{kind:?}: only {n} samples");
        let broken = l.samples.iter().filter(|s| s.has(flags::BROKEN)).count();
        assert_eq!(broken, 0, "{kind:?}: {broken} broken samples of {n}");
        // While the guest runs (not the host's setting up before it).
        let guest = l.guest_samples();
        let fib = guest
            .iter()
            .filter(|s| l.leaf(s).as_deref() == Some("fib"))
            .count();
        assert!(
            share(fib, guest.len()) > 0.95,
            "{kind:?}: {fib} of {} in fib ({n} in all)",
            guest.len()
        );
        let with_wasm: Vec<_> = l
            .samples
            .iter()
            .filter(|s| !l.frames(s).is_empty())
            .collect();
        let complete = with_wasm
            .iter()
            .filter(|s| {
                l.frames(s)
                    .last()
                    .is_some_and(|f| f == "_start.command_export")
            })
            .count();
        assert_eq!(
            complete,
            with_wasm.len(),
            "{kind:?}: stacks that do not reach the entry, e.g. {:?}",
            with_wasm
                .iter()
                .find(|s| l
                    .frames(s)
                    .last()
                    .is_none_or(|f| f != "_start.command_export"))
                .map(|s| l.frames(s))
        );
        let deepest = with_wasm.iter().map(|s| l.frames(s).len()).max().unwrap();
        assert!(deepest >= 25, "{kind:?}: deepest stack {deepest} frames");
    }
}

/// hostcalls: most wall time in host calls, each sample under the wasm that
/// made the call; the sleeps (`poll_oneoff`, where the async store's fiber
/// is switched out while the thread waits in the executor) under `nap`, the
/// writes under `write_lines`.
#[test]
fn host_calls_have_the_same_profile_in_both_kinds_of_store() {
    let _g = timing_lock();
    for kind in [Kind::Sync, Kind::Async] {
        let d = tempfile::tempdir().unwrap();
        let l = record_with(kind, "hostcalls.wasm", &["10", "."], d.path());
        assert_eq!(
            std::fs::metadata(d.path().join("hostcalls.txt"))
                .unwrap()
                .len(),
            160_000
        );
        let n = l.samples.len();
        let broken = l.samples.iter().filter(|s| s.has(flags::BROKEN)).count();
        assert_eq!(broken, 0, "{kind:?}: {broken} broken samples of {n}");
        // While the guest runs: the host's setting up before it (the first
        // WASI call starts WASI's Tokio runtime) is not a call the guest made.
        let guest = l.guest_samples();
        let host: Vec<_> = guest.iter().filter(|s| s.has(flags::HOST)).collect();
        assert!(
            share(host.len(), n) >= 0.8,
            "{kind:?}: {} of {n} samples in host calls",
            host.len()
        );
        // Wall time by the sample's time since the previous one: expirations
        // the kernel merged on a busy machine still count.
        let mut prev = guest[0].time_ns;
        let mut weight = std::collections::HashMap::new();
        for s in guest {
            weight.insert(s.time_ns, s.time_ns - prev);
            prev = s.time_ns;
        }
        let under = |call: &str, caller: &str| {
            host.iter()
                .filter(|s| {
                    let f = l.frames(s);
                    f.first().is_some_and(|x| x == call)
                        && f.iter().any(|x| x == caller)
                        && f.last().is_some_and(|x| x == "_start.command_export")
                })
                .map(|s| weight[&s.time_ns])
                .sum::<u64>()
        };
        let sleeps = under("__wasi_poll_oneoff", "nap");
        let writes = under("__wasi_fd_write", "write_lines");
        let host_ns: u64 = host.iter().map(|s| weight[&s.time_ns]).sum();
        // Ten sleeps of 20 ms.
        assert!(
            sleeps >= 180_000_000 && writes > 0 && sleeps + writes >= host_ns * 98 / 100,
            "{kind:?}: of {host_ns} ns in host calls, {sleeps} sleep under nap and {writes} write under write_lines; e.g. {:?}",
            host.iter().take(3).map(|s| l.frames(s)).collect::<Vec<_>>()
        );
    }
}

/// Wrec's stack creator gives Wasmtime each fiber's stack and takes it back:
/// the table the handler reads holds only live stacks.
#[test]
fn fiber_stacks_are_registered_while_they_live() {
    let _g = timing_lock();
    let d = tempfile::tempdir().unwrap();
    let before = wrec::registered_fiber_stacks();
    record_with(Kind::Async, "ratio.wasm", &["50"], d.path());
    // The store (and its fiber stacks) were dropped before the trace was
    // finished.
    assert_eq!(wrec::registered_fiber_stacks(), before);
}
