//! `ThreadSampler::set_idle`, as a server's worker uses it between the
//! requests it polls: an idle stretch takes no samples, the CPU time the
//! thread spends in it is in none of the CPU times it records, and once it
//! goes on, the thread's timer stops waking it until it is busy again.

use std::time::Duration;

use wasmtime::{Config, Engine, Module};
use wrec::{ExitInfo, Recorder, RecorderOptions};
use wrec_format::clock_ns;
use wrec_testkit::*;

/// Keeps this thread busy until it has used `d` more CPU time.
fn spin_cpu(d: Duration) {
    let start = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut x = 0u64;
    while clock_ns(libc::CLOCK_THREAD_CPUTIME_ID) - start < d.as_nanos() as u64 {
        for i in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
    }
}

#[test]
fn an_idle_stretch_takes_no_samples_and_its_cpu_time_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("fib-O2.wasm");
    let mut config = Config::new();
    wrec::configure(&mut config);
    let engine = Engine::new(&config).unwrap();
    let bytes = std::fs::read(&wasm).unwrap();
    let module = Module::new(&engine, &bytes).unwrap();
    let trace = dir.path().join("idle.wrec");
    let recorder = Recorder::create(
        &trace,
        RecorderOptions {
            interval: Duration::from_millis(1),
            ..RecorderOptions::default()
        },
    )
    .unwrap();
    recorder.add_module(&module, &wasm, &bytes).unwrap();

    let busy = Duration::from_millis(40);
    let idle = Duration::from_millis(80);
    let sampling = recorder.thread_sampler("worker").unwrap().start().unwrap();
    spin_cpu(busy);
    sampling.set_idle(true);
    let idle_from = clock_ns(libc::CLOCK_MONOTONIC);
    spin_cpu(idle);
    // Asleep, as a worker waiting for connections: at 1 ms, 500 timer
    // signals would wake it.
    std::thread::sleep(Duration::from_millis(500));
    let idle_to = clock_ns(libc::CLOCK_MONOTONIC);
    sampling.set_idle(false);
    spin_cpu(busy);
    drop(sampling);
    let summary = recorder.finish(ExitInfo::exited(0)).unwrap();
    let loaded = Loaded::load(&trace, &wasm);

    // No sample inside the idle stretch; samples on both sides of it.
    let s = &loaded.samples;
    let before: Vec<_> = s.iter().filter(|s| s.time_ns < idle_from).collect();
    let after: Vec<_> = s.iter().filter(|s| s.time_ns > idle_to).collect();
    assert_eq!(
        before.len() + after.len(),
        s.len(),
        "samples between {idle_from} and {idle_to} ns: {:?}",
        s.iter()
            .map(|s| s.time_ns)
            .filter(|t| (idle_from..=idle_to).contains(t))
            .collect::<Vec<_>>()
    );
    assert!(
        before.len() >= 10 && after.len() >= 10,
        "{} {}",
        before.len(),
        after.len()
    );
    // The background thread (every 50 ms) stopped the idle thread's timer
    // (with 580 ms of idleness, not 500 signals), and the thread re-armed
    // it when busy again (the samples after).
    assert!(summary.stats.parks >= 1, "{:?}", summary.stats);
    assert!(summary.stats.idle < 250, "{:?}", summary.stats);

    // The first sample after it is charged with the CPU time since the last
    // sample before it, less the 80 ms spent idle.
    let across = after[0].cpu_ns - before.last().unwrap().cpu_ns;
    assert!(
        across < Duration::from_millis(20).as_nanos() as u64,
        "the sample after the idle stretch carries {across} ns of CPU time"
    );
    // The thread's recorded CPU time is its busy time, not its idle time.
    let (start, end) = (&loaded.starts[0], &loaded.ends[0]);
    let recorded = Duration::from_nanos(end.cpu_ns - start.cpu_ns);
    assert!(
        recorded >= 2 * busy && recorded < 2 * busy + idle / 2,
        "recorded {recorded:?} for {busy:?} busy twice and {idle:?} idle"
    );
    // Every recorded CPU time goes forward.
    assert!(s.windows(2).all(|w| w[0].cpu_ns <= w[1].cpu_ns));
}
