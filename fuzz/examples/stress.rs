//! Hostile traces the fuzzer's small inputs cannot reach: measures time and
//! peak RSS of the reader and the analyzer on them.
//! `cargo run --release --example stress -- modules|modmany|deep|deepkeep|maxkeep N`
//! (`FIXTURE=i` picks the module from `harness::FIXTURES`, default fib-O2).

use std::time::Instant;

use wrec_format::*;
use wrec_fuzz::harness::{self, AnalyzeInput};

fn header() -> Vec<u8> {
    let mut h = Header::for_this_host();
    h.committed_len = 0; // patched below
    h.encode().to_vec()
}

fn finish(mut t: Vec<u8>) -> Vec<u8> {
    let len = t.len() as u64;
    t[48..56].copy_from_slice(&len.to_le_bytes());
    t
}

fn module(id: u64) -> Vec<u8> {
    frame(&Record::Module(ModuleRecord {
        id,
        path: "/m.wasm".into(),
        sha256: [0; 32],
        text_addr: 0x1000 + id * 0x1000,
        text_len: 0x1000,
        functions: vec![],
        address_map: vec![],
        addresses: vec![],
        inner: None,
    }))
}

fn sample(keyframe: bool, keep: u64, frames: &[u64]) -> Vec<u8> {
    let literals: Vec<i64> = frames.iter().map(|&f| f as i64).collect();
    let f = if keyframe { flags::KEYFRAME } else { 0 };
    frame_payload(kind::SAMPLE, &sample_payload(0, f, 1000, 1000, keep, &literals))
}

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let what = std::env::args().nth(1).expect("modules|deep|deepkeep");
    let n: u64 = std::env::args().nth(2).map_or(1000, |s| s.parse().unwrap());
    let mut t = header();
    match what.as_str() {
        // n module records, all matching the (150 KB) fixture.
        "modules" => {
            for i in 0..n {
                t.extend(module(i));
            }
        }
        // One keyframe sample n frames deep (each frame +1 from the last,
        // one byte), then n samples that keep it all and add one frame.
        "deepkeep" => {
            t.extend(module(0));
            t.extend(sample(true, 0, &vec![1u64; n as usize]));
            for _ in 0..n {
                t.extend(sample(false, n, &[1]));
            }
        }
        // The deepest stack a reader accepts (1024), kept by n samples of one
        // new frame each: the worst case once deep stacks are refused.
        "maxkeep" => {
            t.extend(module(0));
            t.extend(sample(true, 0, &vec![1u64; 1023]));
            for _ in 0..n {
                t.extend(sample(false, 1023, &[1]));
            }
        }
        // One function over n address-map entries that give no wasm offset,
        // then n/4 samples at distinct addresses in it (each resolved afresh,
        // each looking for the nearest mapped entry).
        "unmapped" => {
            t.extend(frame(&Record::Module(ModuleRecord {
                id: 0,
                path: "/m.wasm".into(),
                sha256: [0; 32],
                text_addr: 0x10_0000,
                text_len: n + 16,
                functions: vec![FunctionEntry { index: 1, offset: 0, len: n + 16 }],
                addresses: vec![],
                inner: None,
                address_map: (0..n)
                    .map(|i| AddressMapEntry { code_offset: i, wasm_offset: None })
                    .collect(),
            })));
            for i in 0..n / 4 {
                t.extend(sample(true, 0, &[0x10_0000 + n - i]));
            }
        }
        // n keyframe samples of n/4 frames each.
        "deep" => {
            t.extend(module(0));
            for _ in 0..4 {
                t.extend(sample(true, 0, &vec![1u64; n as usize / 4]));
            }
        }
        // n module records at distinct addresses, then n samples, each at a
        // new address in the last module (so each is looked up afresh).
        "modmany" => {
            for i in 0..n {
                t.extend(module(i));
            }
            let last = 0x1000 + (n - 1) * 0x1000;
            t.extend(sample(true, 0, &[last]));
            for i in 1..n {
                let _ = i;
                t.extend(sample(false, 0, &[last + (i % 0x1000)]));
            }
        }
        _ => panic!("unknown stress {what}"),
    }
    let t = finish(t);
    let size = t.len();
    let before = rss_kb();
    let start = Instant::now();
    harness::read_trace(&t);
    let read = start.elapsed();
    let fx = std::env::var("FIXTURE").map_or(0, |v| v.parse().unwrap());
    let data = harness::analyze_input_fixture(fx, true, &t);
    let input = AnalyzeInput::decode(&data).unwrap();
    let start = Instant::now();
    let r = harness::run_analyzer(&input);
    println!(
        "{what} {n}: trace {size} bytes; read {read:?}; analyze {:?} ({}); peak RSS {} MiB (was {} MiB)",
        start.elapsed(),
        if r.is_ok() { "ok" } else { "error" },
        rss_kb() / 1024,
        before / 1024
    );
}
