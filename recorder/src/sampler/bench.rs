//! A micro-benchmark of the handler's work without the signal.

use wrec_format::{clock_ns, SampleEncoder, SampleRef, MAX_FRAMES};

use super::text_ranges::TextRanges;
use super::walk::{walk, WalkInput};
use crate::arch::Direct;

/// Warm cost of the handler's work without the signal: a 32-frame walk
/// over a real stack image plus `append_sample` into a real trace.
/// `cargo test --release -p wrec --lib -- --ignored --nocapture handler_work`
#[test]
#[ignore]
fn handler_work() {
    let ranges = TextRanges::new();
    let text = vec![0x90u8; 4096];
    let t0 = text.as_ptr() as u64;
    ranges.push(t0, text.len() as u64);
    // A stack image: 32 frames of 32 bytes, each [fp] -> next, [fp+8] -> text.
    let mut stack = vec![0u64; 32 * 4 + 8];
    let base = stack.as_ptr() as u64;
    for i in 0..32 {
        let fp = base + (i as u64) * 32 + 32;
        let slot = (fp - base) as usize / 8;
        stack[slot] = fp + 32;
        stack[slot + 1] = t0 + 100 + i as u64 * 7;
    }
    let last = (base + 33 * 32 - base) as usize / 8;
    stack[last + 1] = 0x1234; // host
    let inp = WalkInput {
        pc: t0 + 10,
        fp: base + 32,
        sp: base,
        lr: 0,
        stack_lo: base,
        stack_hi: base + stack.len() as u64 * 8,
        boundary: None,
        wasm_active: Some(true),
        in_host_call: Some(false),
        nested_wasm: false,
        anchor: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let w = wrec_format::TraceWriter::create(
        &dir.path().join("b.wrec"),
        wrec_format::Header::for_this_host(),
        wrec_format::WriterOptions::default(),
    )
    .unwrap();
    let mut enc = SampleEncoder::new(0);
    let mut frames = vec![0u64; MAX_FRAMES];
    let n_iter = 200_000u64;
    let (mut t_walk, mut t_append, mut t_clocks) = (0u64, 0u64, 0u64);
    for i in 0..n_iter {
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let cpu = clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        let (n, fl, _) = walk(&Direct, &ranges, &inp, &mut frames);
        assert_eq!(n, 33);
        // Vary the leaf so every sample writes a frame.
        frames[0] = t0 + 10 + (i % 50);
        let c = clock_ns(libc::CLOCK_MONOTONIC);
        let s = SampleRef {
            time_ns: a,
            cpu_ns: cpu,
            flags: fl,
            stack: &frames[..n],
        };
        w.append_sample(&mut enc, &s).unwrap();
        let d = clock_ns(libc::CLOCK_MONOTONIC);
        if i % 1000 == 0 {
            w.grow().unwrap();
        }
        t_clocks += b - a;
        t_walk += c - b;
        t_append += d - c;
    }
    eprintln!(
        "per sample: clocks (monotonic + thread CPU) {:.0} ns, 33-frame walk {:.0} ns, append {:.0} ns",
        t_clocks as f64 / n_iter as f64,
        t_walk as f64 / n_iter as f64,
        t_append as f64 / n_iter as f64
    );
}
