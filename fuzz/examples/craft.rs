//! Writes hand-made hostile inputs (the ones the issue lists that random
//! mutation is unlikely to build) into `regressions/<target>/crafted-*`.
//! `cargo run --example craft`

use std::path::Path;

use wrec_format::*;
use wrec_fuzz::harness;

fn trace(records: &[Vec<u8>]) -> Vec<u8> {
    let mut h = Header::for_this_host();
    h.wall_reference_ns = 1_700_000_000_000_000_000;
    h.monotonic_reference_ns = 1_000;
    let mut t = h.encode().to_vec();
    for r in records {
        t.extend_from_slice(r);
    }
    let len = t.len() as u64;
    t[48..56].copy_from_slice(&len.to_le_bytes());
    t
}

fn module(id: u64, text_addr: u64, text_len: u64) -> Vec<u8> {
    frame(&Record::Module(ModuleRecord {
        id,
        path: "/nonexistent/m.wasm".into(),
        sha256: [0; 32],
        text_addr,
        text_len,
        functions: vec![FunctionEntry { index: 1, offset: 0x10, len: 0x40 }],
        address_map: vec![
            AddressMapEntry { code_offset: 0, wasm_offset: None },
            AddressMapEntry { code_offset: 0x10, wasm_offset: Some(0x1_0000_0000) },
        ],
        addresses: vec![],
        inner: None,
    }))
}

/// A sample of raw time and CPU fields (µs in a keyframe, zigzag deltas
/// otherwise) and literal frames (differences, outermost first).
fn sample(thread: u32, sflags: u8, time: u64, cpu: u64, keep: u64, frames: &[i64]) -> Vec<u8> {
    frame_payload(kind::SAMPLE, &sample_payload(thread, sflags, time, cpu, keep, frames))
}

fn lost(thread: u32, count: u64) -> Vec<u8> {
    frame(&Record::SamplesLost(SamplesLost { thread, count, reason: LossReason::LogFull }))
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let put = |target: &str, name: &str, data: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("crafted-{name}")), data).unwrap();
    };
    let key = flags::KEYFRAME;
    // The largest CPU delta a sample can carry (no run info: the interval
    // is 0, so a time field of 0 is a delta of 0).
    let huge = varint::zigzag(i64::MAX);
    let addresses = |module, entries: &[(u64, Option<u64>)]| {
        frame(&Record::CodeAddresses(CodeAddresses {
            module,
            entries: entries
                .iter()
                .map(|&(code_offset, wasm_offset)| AddressMapEntry { code_offset, wasm_offset })
                .collect(),
        }))
    };
    let base = 0x7f00_0000_0000i64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Lost-sample counts that overflow a u64 when added up.
        ("lost-overflow", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            lost(0, u64::MAX),
            lost(0, u64::MAX),
            lost(7, u64::MAX),
        ])),
        // Lost counts that overflow only when the threads' totals are added.
        ("lost-two-threads", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            sample(1, key, 10, 10, 0, &[base + 0x20]),
            lost(0, u64::MAX),
            lost(1, u64::MAX),
        ])),
        // CPU deltas that overflow when summed over samples, in one thread
        // and over two.
        ("cpu-deltas", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            sample(0, 0, 0, huge, 1, &[]),
            sample(0, 0, 0, huge, 1, &[]),
            sample(1, key, 10, 10, 0, &[base + 0x30]),
            sample(1, 0, 0, huge, 1, &[]),
        ])),
        // Times and CPU times at the extremes; a second sample wrapping them.
        ("time-extremes", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, u64::MAX, u64::MAX, 0, &[base + 0x20]),
            sample(0, 0, u64::MAX, u64::MAX, 1, &[]),
            sample(1, key, 0, 0, 0, &[base + 0x20]),
            frame(&Record::ThreadEnd(ThreadEnd { thread: 1, time_ns: 0, cpu_ns: u64::MAX })),
            frame(&Record::End(End {
                time_ns: 0, exit_kind: ExitKind::Signaled, status: i64::MIN,
                message: "\u{0}\u{7}\"<script>".into(), samples_written: u64::MAX, samples_lost: u64::MAX,
            })),
        ])),
        // Module code at the top of the address space; addresses around it
        // and a stack mixing it with addresses in no module.
        ("module-at-top", trace(&[
            module(0, u64::MAX - 0x40, 0x40),
            module(1, 0, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[-1, 0x11 - -1 + 0, 1, -0x12]),
            sample(0, key | flags::TRUNCATED | flags::BROKEN, 2, 2, 0, &[]),
            sample(0, key | flags::HOST, 3, 3, 0, &[]),
        ])),
        // A function table and address map that point outside the wasm
        // file (the override is a real module; offsets are beyond it).
        ("map-outside-wasm", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[base + 0x11, 0]),
            sample(0, key, 2, 2, 0, &[base + 0x30]),
        ])),
        // Code addresses before their module, for a module that does not
        // exist, outside the code, past the wasm file, and listed twice.
        ("code-addresses", trace(&[
            addresses(0, &[(0x20, Some(u64::MAX - 1))]),
            module(0, base as u64, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[base + 0x21, -0x11, 0x10]),
            addresses(0, &[(0x20, Some(5)), (0x2f, None), (u64::MAX, Some(0x1_0000_0000))]),
            addresses(7, &[(0x20, Some(1))]),
            addresses(0, &[(0x20, Some(9)), (0x2f, Some(3))]),
        ])),
    ];
    for (name, t) in &cases {
        put("trace_reader", name, t);
        put("analyze", &format!("{name}.fib-O2"), &harness::analyze_input_fixture(0, true, t));
        put("analyze", &format!("{name}.tiny"), &harness::analyze_input_fixture(5, true, t));
    }
}
