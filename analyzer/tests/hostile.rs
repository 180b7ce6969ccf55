//! The analyzer on hostile traces that the fuzzers' small inputs cannot
//! reach (see fuzz/FINDINGS.md): many copies of one module, sums of
//! lost-sample counts and CPU times beyond u64. And, with the same
//! hand-made traces, stacks by function.

use wanalyze::resolve::{analyze, Options};
use wanalyze::{firefox, folded, text};
use wrec_format::*;
use wrec_testkit::fixture;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// A trace of these framed records (committed length set, header checked).
fn trace(records: &[Vec<u8>]) -> Vec<u8> {
    let mut t = Header::for_this_host().encode().to_vec();
    for r in records {
        t.extend_from_slice(r);
    }
    let len = t.len() as u64;
    t[48..56].copy_from_slice(&len.to_le_bytes());
    t
}

fn module(id: u64, sha256: [u8; 32]) -> Vec<u8> {
    module_record(
        id,
        sha256,
        1,
        vec![AddressMapEntry {
            code_offset: 0x10,
            wasm_offset: Some(0x200),
        }],
    )
}

/// A framed record of fib-O2.wasm's code at 0x10_0000 (0x100 bytes), with
/// one function, wasm function `index`, at code offsets 0x10..0x50.
fn module_record(
    id: u64,
    sha256: [u8; 32],
    index: u32,
    address_map: Vec<AddressMapEntry>,
) -> Vec<u8> {
    frame(&Record::Module(ModuleRecord {
        id,
        path: "/nonexistent/fib-O2.wasm".into(),
        sha256,
        text_addr: 0x10_0000,
        text_len: 0x100,
        functions: vec![FunctionEntry {
            index,
            offset: 0x10,
            len: 0x40,
        }],
        address_map,
        addresses: vec![],
        inner: None,
    }))
}

/// A sample of raw time and CPU fields (SPEC.md §2.4) and a whole stack.
fn sample(thread: u32, sflags: u8, time: u64, cpu: u64, frames: &[u64]) -> Vec<u8> {
    let mut prev = 0u64;
    let literals: Vec<i64> = frames
        .iter()
        .map(|&f| {
            let d = f.wrapping_sub(prev) as i64;
            prev = f;
            d
        })
        .collect();
    frame_payload(
        kind::SAMPLE,
        &sample_payload(thread, sflags, time, cpu, 0, &literals),
    )
}

/// Analyzes `t` against fib-O2.wasm and runs every exporter.
fn analyze_all(t: &[u8]) -> wanalyze::model::Profile {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wrec");
    std::fs::write(&path, t).unwrap();
    let opts = Options {
        dwarf: true,
        modules: vec![fixture("fib-O2.wasm")],
        by_function: false,
        last: None,
    };
    let p = analyze(&path, &opts, &mut |_, _| {}).unwrap();
    firefox::write(&p, &mut std::io::sink()).unwrap();
    folded::write(&p, &mut std::io::sink()).unwrap();
    text::write(&p, &text::TextOptions::default(), &mut std::io::sink()).unwrap();
    p
}

#[test]
fn a_module_recorded_many_times_is_loaded_once() {
    let hash = sha256(&std::fs::read(fixture("fib-O2.wasm")).unwrap());
    let mut records: Vec<Vec<u8>> = (0..500).map(|i| module(i, hash)).collect();
    records.push(sample(0, flags::KEYFRAME, 1, 1, &[0x10_0020]));
    let p = analyze_all(&trace(&records));
    assert_eq!(p.libs.len(), 1, "one wasm file, one lib");
    assert_eq!(p.sample_count(), 1);
}

#[test]
fn lost_counts_and_cpu_times_beyond_u64_do_not_overflow() {
    let hash = sha256(&std::fs::read(fixture("fib-O2.wasm")).unwrap());
    let lost = |thread| {
        frame(&Record::SamplesLost(SamplesLost {
            thread,
            count: u64::MAX,
            reason: LossReason::LogFull,
        }))
    };
    // CPU deltas of 2^63 - 1 µs (u64::MAX ns once in ns), two in a thread
    // and one in another; lost counts of u64::MAX, twice in a thread, once
    // in another and once for a thread that has no samples. No run info:
    // the interval is 0, so a time field of 0 is a delta of 0.
    let huge = varint::zigzag(i64::MAX);
    let p = analyze_all(&trace(&[
        module(0, hash),
        sample(0, flags::KEYFRAME, 0, 0, &[0x10_0020]),
        sample(0, 0, 0, huge, &[0x10_0020]),
        sample(0, 0, 0, huge, &[0x10_0020]),
        sample(1, flags::KEYFRAME, 5, 5, &[0x10_0030]),
        sample(1, 0, 0, huge, &[0x10_0030]),
        lost(0),
        lost(0),
        lost(1),
        lost(9),
    ]));
    assert_eq!(p.sample_count(), 5);
    assert!(p.threads[0].lost > 0);
    let cpu: u64 = p.threads[0]
        .samples
        .iter()
        .fold(0u64, |a, s| a.saturating_add(s.cpu_delta_ns));
    assert_eq!(cpu, u64::MAX / 4, "the analyzer caps the sum");
}

#[test]
fn a_sampled_address_without_its_code_address_is_named_and_reported() {
    // What a recorder killed before writing a code-addresses record leaves:
    // a module record without a full map, samples in its function, and a
    // code address for one of the two sampled offsets only.
    let hash = sha256(&std::fs::read(fixture("fib-O2.wasm")).unwrap());
    // Function 8 of fib-O2.wasm is `fib` (0-7 are its WASI imports).
    let module = module_record(0, hash, 8, vec![]);
    let addresses = frame(&Record::CodeAddresses(CodeAddresses {
        module: 0,
        entries: vec![AddressMapEntry {
            code_offset: 0x20,
            wasm_offset: Some(0x200),
        }],
    }));
    let with = analyze_all(&trace(&[
        module.clone(),
        sample(0, flags::KEYFRAME, 1, 1, &[0x10_0020]),
        addresses.clone(),
    ]));
    assert!(
        !with.meta.warnings.iter().any(|w| w.contains("wasm offset")),
        "{:?}",
        with.meta.warnings
    );
    let without = analyze_all(&trace(&[
        module,
        sample(0, flags::KEYFRAME, 1, 1, &[0x10_0020]),
        sample(1, flags::KEYFRAME, 1, 1, &[0x10_0030]),
        addresses,
    ]));
    assert_eq!(without.sample_count(), 2);
    // Both samples are named from the function table, with or without a
    // wasm offset for their address.
    for t in &without.threads {
        for smp in &t.samples {
            let leaf = without.stacks.get(smp.stack.expect("a stack") as usize);
            let func = without.frames[leaf.frame as usize].func;
            assert_eq!(without.funcs[func as usize].name, "fib");
        }
    }
    let warning = without
        .meta
        .warnings
        .iter()
        .find(|w| w.contains("have no recorded wasm offset"))
        .unwrap_or_else(|| panic!("{:?}", without.meta.warnings));
    assert!(warning.contains(" 1 sampled code addresses"), "{warning}");
}

/// Stacks by function merge the frames of one function (here at two wasm
/// offsets) into one node but for leaves, and folded stacks and the text
/// report, which name functions and leaf lines only, come out the same.
#[test]
fn stacks_by_function_give_the_same_folded_stacks_from_fewer_nodes() {
    let hash = sha256(&std::fs::read(fixture("fib-O2.wasm")).unwrap());
    // Function 8 of fib-O2.wasm: `fib`; wasm offsets 0x218 and 0x222 are
    // its lines 45 and 47.
    let module = module_record(
        0,
        hash,
        8,
        vec![
            AddressMapEntry {
                code_offset: 0x10,
                wasm_offset: Some(0x218),
            },
            AddressMapEntry {
                code_offset: 0x20,
                wasm_offset: Some(0x222),
            },
        ],
    );
    let t = trace(&[
        module,
        // Leaves at either offset, called through the two call sites in
        // either order (recursion).
        sample(0, flags::KEYFRAME, 1, 1, &[0x10_0011, 0x10_0012, 0x10_0022]),
        sample(0, flags::KEYFRAME, 2, 2, &[0x10_0011, 0x10_0022, 0x10_0012]),
        sample(0, flags::KEYFRAME, 3, 3, &[0x10_0021, 0x10_0012, 0x10_0022]),
        sample(0, flags::KEYFRAME, 4, 4, &[0x10_0021, 0x10_0022, 0x10_0012]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wrec");
    std::fs::write(&path, t).unwrap();
    let run = |by_function| {
        let opts = Options {
            dwarf: true,
            modules: vec![fixture("fib-O2.wasm")],
            by_function,
            last: None,
        };
        let p = analyze(&path, &opts, &mut |_, _| {}).unwrap();
        let mut out = Vec::new();
        folded::write(&p, &mut out).unwrap();
        let mut report = Vec::new();
        text::write(&p, &Default::default(), &mut report).unwrap();
        let report = String::from_utf8(report).unwrap();
        (p.stacks.len(), String::from_utf8(out).unwrap(), report)
    };
    let (frame_nodes, by_frame, frame_report) = run(false);
    let (func_nodes, by_func, func_report) = run(true);
    assert_eq!(by_func, by_frame);
    assert_eq!(func_report, frame_report);
    // Both leaf lines are there.
    assert!(func_report.contains("fib.c:45"), "{func_report}");
    assert!(func_report.contains("fib.c:47"), "{func_report}");
    assert_eq!(by_func, "fib;fib;fib 4\n");
    // By frame, each call site order and leaf offset makes its own nodes;
    // by function: `fib`, `fib` under it, and the two leaves under that
    // (leaves keep their frames, for their lines).
    assert_eq!((frame_nodes, func_nodes), (10, 4));
}

/// Samples without CPU time (`NO_CPU`) get their share of the CPU time
/// measured at the next sample (SPEC.md §2.4), or at the thread's end, or
/// their own time delta when nothing measures it.
#[test]
fn cpu_time_is_shared_over_samples_without_it() {
    let hash = sha256(&std::fs::read(fixture("fib-O2.wasm")).unwrap());
    let z = varint::zigzag;
    let at = [0x10_0020u64];
    let no_cpu = |thread: u32, dt_minus_i: i64| {
        frame_payload(
            kind::SAMPLE,
            &sample_payload(thread, flags::NO_CPU, z(dt_minus_i), 0, 1, &[]),
        )
    };
    let records = vec![
        frame(&Record::RunInfo(RunInfo {
            interval_ns: 100_000,
            clock: TimerClock::Wall,
            recorder: "test".into(),
            args: vec![],
        })),
        module_record(
            0,
            hash,
            8,
            vec![AddressMapEntry {
                code_offset: 0x1f,
                wasm_offset: Some(0x200),
            }],
        ),
        // Thread 0: at 1000 µs, CPU 500; two samples without CPU time
        // (Δt 100 and 200); then one at Δt 100 measuring 360 µs over the
        // 400 µs since 1000 (field: 360 − 400 = −40).
        sample(0, flags::KEYFRAME, 1000, 500, &at),
        no_cpu(0, 0),
        no_cpu(0, 100),
        frame_payload(kind::SAMPLE, &sample_payload(0, 0, z(0), z(-40), 1, &[])),
        // Then two more without, closed by the thread's end at 1700 µs
        // (+300) with CPU 1160 µs (+300): Δt 100, 100, and 100 for the end.
        no_cpu(0, 0),
        no_cpu(0, 0),
        frame(&Record::ThreadEnd(ThreadEnd {
            thread: 0,
            time_ns: 1_700_999,
            cpu_ns: 1_160_999,
        })),
        // Thread 1: two without CPU time and no end (a killed recorder):
        // their own Δt, 100 and 300 µs.
        sample(1, flags::KEYFRAME, 5000, 0, &at),
        no_cpu(1, 0),
        no_cpu(1, 200),
    ];
    let p = analyze_all(&trace(&records));
    let cpu = |t: usize| -> Vec<u64> {
        p.threads[t]
            .samples
            .iter()
            .map(|s| s.cpu_delta_ns / 1000)
            .collect()
    };
    // 360 over spans 100, 200, 100: ⌊360·100/400⌋ = 90, ⌊360·300/400⌋ = 270.
    // The end's 300 over 100, 100, 100: 100 each, the end's dropped.
    assert_eq!(cpu(0), vec![0, 90, 180, 90, 100, 100]);
    assert_eq!(cpu(1), vec![0, 100, 300]);
    let times: Vec<u64> = p.threads[0]
        .samples
        .iter()
        .map(|s| s.time_ns / 1000)
        .collect();
    assert_eq!(times, vec![0, 100, 300, 400, 500, 600]);
    // The text report says how many samples were not timed alone.
    assert_eq!(p.meta.samples_without_cpu, 6);
    let mut out = Vec::new();
    text::write(&p, &text::TextOptions::default(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("(67% of samples were not timed alone"),
        "{out}"
    );
    // And so does the Firefox profile's "more info" panel.
    let mut out = Vec::new();
    firefox::write(&p, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let entry = v["meta"]["extra"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "Samples without their own CPU reading")
        .expect("the entry");
    assert_eq!(entry["value"], 6);
}
