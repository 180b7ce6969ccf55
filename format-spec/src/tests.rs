//! Unit tests: round trips of every record, the spec's example, damage.

use super::*;
use std::path::Path;

pub(crate) fn example_header() -> Header {
    Header {
        version_major: VERSION_MAJOR,
        version_minor: VERSION_MINOR,
        arch: Arch::X86_64,
        header_size: HEADER_SIZE as u16,
        page_size: 4096,
        monotonic_clock_id: 1,
        cpu_clock_id: 3,
        wall_reference_ns: 1_000_000_000,
        monotonic_reference_ns: 1000,
        committed_len: 0,
        layout: 0,
    }
}

fn example_module() -> ModuleRecord {
    ModuleRecord {
        id: 0,
        path: "/a.wasm".into(),
        sha256: std::array::from_fn(|i| i as u8),
        text_addr: 0x10000,
        text_len: 256,
        functions: vec![FunctionEntry {
            index: 1,
            offset: 0x10,
            len: 0x80,
        }],
        address_map: vec![],
        addresses: vec![],
        inner: None,
    }
}

fn example_addresses() -> Vec<AddressMapEntry> {
    [(0x4f, Some(5)), (0x68, Some(9)), (0x70, None)]
        .into_iter()
        .map(|(code_offset, wasm_offset)| AddressMapEntry {
            code_offset,
            wasm_offset,
        })
        .collect()
}

/// Writes the trace of SPEC.md §6 with the real writer.
fn write_example(path: &Path) -> Vec<u8> {
    let w = TraceWriter::create(path, example_header(), WriterOptions::default()).unwrap();
    w.write_run_info(&RunInfo {
        interval_ns: 1_000_000,
        clock: TimerClock::Wall,
        recorder: "wrec 1.0".into(),
        args: vec![],
    })
    .unwrap();
    w.write_record(&Record::Module(example_module())).unwrap();
    w.write_record(&Record::ThreadStart(ThreadStart {
        thread: 0,
        time_ns: 1000,
        cpu_ns: 0,
        os_tid: 42,
        name: "main".into(),
    }))
    .unwrap();
    let mut enc = SampleEncoder::new(0);
    let s1 = [0x10070u64, 0x10050];
    let s2 = [0x10068u64, 0x10050];
    w.append_sample(
        &mut enc,
        &SampleRef {
            time_ns: 2_000_000,
            cpu_ns: 1_000_000,
            flags: 0,
            stack: &s1,
        },
    )
    .unwrap();
    w.append_sample(
        &mut enc,
        &SampleRef {
            time_ns: 3_001_000,
            cpu_ns: 1_998_000,
            flags: 0,
            stack: &s2,
        },
    )
    .unwrap();
    // No CPU time read: its cpu_ns is ignored.
    w.append_sample(
        &mut enc,
        &SampleRef {
            time_ns: 4_001_000,
            cpu_ns: 12_345_000,
            flags: flags::NO_CPU,
            stack: &s2,
        },
    )
    .unwrap();
    w.append_sample(
        &mut enc,
        &SampleRef {
            time_ns: 5_002_000,
            cpu_ns: 3_900_000,
            flags: 0,
            stack: &s2,
        },
    )
    .unwrap();
    w.write_record(&Record::CodeAddresses(CodeAddresses {
        module: 0,
        entries: example_addresses(),
    }))
    .unwrap();
    w.write_record(&Record::End(End {
        time_ns: 5_003_000,
        exit_kind: ExitKind::Exited,
        status: 0,
        message: String::new(),
        samples_written: 4,
        samples_lost: 0,
    }))
    .unwrap();
    w.finish().unwrap();
    std::fs::read(path).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the hex dumps of SPEC.md §6 (every fenced block after the
/// "## 6. Example" heading; `(...)` comments are skipped, `…` ranges are
/// the 32 hash bytes 00..1f).
fn spec_example_bytes() -> Vec<u8> {
    let spec = include_str!("../SPEC.md");
    let example = spec.split("## 6. Example").nth(1).expect("SPEC.md has §6");
    let mut out = Vec::new();
    let mut in_block = false;
    for line in example.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let line = line.trim();
        if line.starts_with("(32 bytes of SHA-256") {
            out.extend(0u8..32);
            continue;
        }
        for tok in line.split_whitespace() {
            out.push(
                u8::from_str_radix(tok, 16)
                    .unwrap_or_else(|_| panic!("bad hex {tok:?} in SPEC.md §6")),
            );
        }
    }
    out
}

#[test]
fn spec_example() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_example(&dir.path().join("t.wrec"));
    let spec = spec_example_bytes();
    assert_eq!(
        hex(&spec),
        hex(&written),
        "SPEC.md §6 and the writer disagree; the writer produced:\n{}",
        hex(&written)
    );
    // And the reader decodes it to the values the spec states.
    let t = Trace::from_bytes(spec).unwrap();
    assert_eq!(t.header().arch, Arch::X86_64);
    assert_eq!(t.header().wall_reference_ns, 1_000_000_000);
    assert_eq!(t.header().monotonic_reference_ns, 1000);
    assert_eq!(t.data_end(), t.bytes().len() as u64);
    let mut d = t.decoder();
    let mut samples = Vec::new();
    let mut records = Vec::new();
    while let Some(e) = d.next() {
        match e.unwrap() {
            Event::Sample(s) => samples.push((
                s.time_ns,
                s.cpu_ns,
                s.cpu_delta_ns,
                s.stack.to_vec(),
                s.flags,
            )),
            Event::Record(r) => records.push(r),
            Event::Unknown { .. } => panic!("unknown record"),
        }
    }
    assert_eq!(
        samples,
        vec![
            (
                2_000_000,
                1_000_000,
                0,
                vec![0x10070, 0x10050],
                flags::KEYFRAME
            ),
            (3_001_000, 1_998_000, 998_000, vec![0x10068, 0x10050], 0),
            (
                4_001_000,
                1_998_000,
                0,
                vec![0x10068, 0x10050],
                flags::NO_CPU
            ),
            (5_002_000, 3_900_000, 1_902_000, vec![0x10068, 0x10050], 0),
        ]
    );
    // The spec's sharing of the last sample's 1902 µs over it and the
    // sample without CPU time before it.
    let mut shares = Vec::new();
    crate::spread_cpu(1902, &[1000, 1001], |s| shares.push(s));
    assert_eq!(shares, vec![950, 952]);
    // The decoder hands the module its code addresses, written later.
    let mut m = example_module();
    m.addresses = example_addresses();
    assert_eq!(records[1], Record::Module(m));
    assert_eq!(
        records[3],
        Record::CodeAddresses(CodeAddresses {
            module: 0,
            entries: example_addresses()
        })
    );
    assert!(
        matches!(&records[0], Record::RunInfo(r) if r.interval_ns == 1_000_000 && r.recorder == "wrec 1.0")
    );
    assert!(matches!(&records[2], Record::ThreadStart(t) if t.os_tid == 42 && t.name == "main"));
    assert!(
        matches!(&records[4], Record::End(e) if e.samples_written == 4 && e.exit_kind == ExitKind::Exited)
    );
}

#[test]
fn every_record_round_trips() {
    let recs = vec![
        Record::RunInfo(RunInfo {
            interval_ns: 100_000,
            clock: TimerClock::Cpu,
            recorder: "wrec 0.1.0".into(),
            args: vec!["fib.wasm".into(), "30".into(), "ünïcode".into()],
        }),
        Record::Module(example_module()),
        Record::Module(ModuleRecord {
            functions: vec![
                FunctionEntry {
                    index: 5,
                    offset: 0,
                    len: 0x10,
                },
                FunctionEntry {
                    index: 2,
                    offset: 0x18,
                    len: 0x20,
                },
                FunctionEntry {
                    index: 3,
                    offset: 0x38,
                    len: 0,
                },
            ],
            address_map: example_addresses(),
            ..example_module()
        }),
        Record::CodeAddresses(CodeAddresses {
            module: 3,
            entries: example_addresses(),
        }),
        Record::ThreadStart(ThreadStart {
            thread: 7,
            time_ns: u64::MAX,
            cpu_ns: 0,
            os_tid: 1234,
            name: String::new(),
        }),
        Record::ThreadEnd(ThreadEnd {
            thread: 7,
            time_ns: 5,
            cpu_ns: 6,
        }),
        Record::SamplesLost(SamplesLost {
            thread: 7,
            count: 99,
            reason: LossReason::LogFull,
        }),
        Record::SamplesLost(SamplesLost {
            thread: 1,
            count: 1,
            reason: LossReason::StackWalk,
        }),
        Record::SamplesLost(SamplesLost {
            thread: 1,
            count: 5,
            reason: LossReason::TimerOverrun,
        }),
        Record::End(End {
            time_ns: 1,
            exit_kind: ExitKind::Trapped,
            status: -134,
            message: "wasm trap: unreachable".into(),
            samples_written: 10,
            samples_lost: 2,
        }),
        Record::Request(crate::Request::new(
            3, 1_000_000, 8_500_000, 41, "GET", "/a/b?n=5",
        )),
        Record::Request(crate::Request::new(0, u64::MAX - 1, u64::MAX, 0, "", "")),
    ];
    for r in &recs {
        let framed = frame(r);
        let mut it = RecordIter::for_tests(&framed);
        let raw = it.next().unwrap().unwrap();
        assert_eq!(raw.kind, r.kind());
        let back = Record::decode(raw.kind, raw.payload, 0).unwrap().unwrap();
        assert_eq!(&back, r);
    }
}

#[test]
fn samples_round_trip_with_deltas_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wrec");
    let w = TraceWriter::create(&path, Header::for_this_host(), WriterOptions::default()).unwrap();
    let mut enc = SampleEncoder::new(3);
    let mut enc2 = SampleEncoder::new(4);
    let stacks: Vec<Vec<u64>> = vec![
        vec![0x7f00_0000_1000, 0x7f00_0000_0800, 0x7f00_0000_0400],
        vec![0x7f00_0000_1004, 0x7f00_0000_0800, 0x7f00_0000_0400],
        vec![0x10, 0x7f00_0000_0400],
        vec![],
        vec![u64::MAX, 0, 1, u64::MAX],
        (0..(MAX_FRAMES as u64 + 10))
            .map(|i| 0x5000 + (i % 3) * 8)
            .collect(),
        vec![0x7f00_0000_0400],
    ];
    let mut expect = Vec::new();
    for (i, s) in stacks.iter().enumerate() {
        let f = if i == 2 { flags::HOST } else { 0 };
        let time = 1_000_000 * i as u64 + 17;
        let cpu = 900_000 * i as u64;
        // Times are kept in whole µs.
        let (time_us, cpu_us) = (time / 1000 * 1000, cpu / 1000 * 1000);
        let e = if i % 2 == 0 { &mut enc } else { &mut enc2 };
        w.append_sample(
            e,
            &SampleRef {
                time_ns: time,
                cpu_ns: cpu,
                flags: f,
                stack: s,
            },
        )
        .unwrap();
        let kept = &s[..s.len().min(MAX_FRAMES)];
        expect.push((
            if i % 2 == 0 { 3 } else { 4 },
            time_us,
            cpu_us,
            kept.to_vec(),
            s.len() > MAX_FRAMES,
            f,
        ));
    }
    assert_eq!(w.samples_written(), stacks.len() as u64);
    w.finish().unwrap();
    let t = Trace::open(&path).unwrap();
    let mut d = t.decoder();
    let mut got = Vec::new();
    while let Some(e) = d.next() {
        if let Event::Sample(s) = e.unwrap() {
            got.push((
                s.thread,
                s.time_ns,
                s.cpu_ns,
                s.stack.to_vec(),
                s.flags & flags::TRUNCATED != 0,
                s.flags & flags::HOST,
            ));
        }
    }
    assert_eq!(got, expect);
}

#[test]
fn a_sample_record_of_a_steady_stack_is_small() {
    // A production run at 1 kHz must not write hundreds of bytes a sample.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wrec");
    let w = TraceWriter::create(&path, Header::for_this_host(), WriterOptions::default()).unwrap();
    let mut enc = SampleEncoder::new(0);
    let base: Vec<u64> = (0..30).map(|i| 0x7f12_3456_0000 + i * 0x40).collect();
    let before = w.committed_len();
    for i in 0..1000u64 {
        let mut s = base.clone();
        s[0] += i % 7;
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: 1_000_000 * i + (i * 37 % 5000),
                cpu_ns: 990_000 * i,
                flags: 0,
                stack: &s,
            },
        )
        .unwrap();
    }
    let per_sample = (w.committed_len() - before) as f64 / 1000.0;
    assert!(per_sample < 16.0, "{per_sample} bytes a sample");
}

#[test]
fn header_rejects_foreign_files() {
    assert!(matches!(
        Trace::from_bytes(b"hello world".to_vec()),
        Err(ReadError::NotATrace)
    ));
    let empty = Trace::from_bytes(Vec::new()).err().unwrap();
    assert!(matches!(empty, ReadError::ShortHeader(0)));
    assert!(empty.to_string().contains("empty"), "{empty}");
    let mut h = example_header().encode().to_vec();
    h.truncate(40);
    assert!(matches!(
        Trace::from_bytes(h),
        Err(ReadError::ShortHeader(40))
    ));
    let mut h = example_header().encode().to_vec();
    h[8] = 4;
    assert!(matches!(
        Trace::from_bytes(h),
        Err(ReadError::UnsupportedVersion { major: 4, .. })
    ));
    // A 1.x trace: refused with a message saying what to do.
    let mut h = example_header();
    h.version_major = 1;
    h.version_minor = 1;
    let e = Trace::from_bytes(h.encode().to_vec()).err().unwrap();
    assert!(matches!(e, ReadError::OldVersion { major: 1, minor: 1 }));
    assert_eq!(
        e.to_string(),
        "format 1.1, written by an older wrec: record again"
    );
    let mut h = example_header().encode().to_vec();
    h[12..16].copy_from_slice(&BYTE_ORDER_MARK.to_be_bytes());
    assert!(matches!(Trace::from_bytes(h), Err(ReadError::BadByteOrder)));
}

#[test]
fn unknown_records_are_skipped() {
    let mut bytes = example_header().encode().to_vec();
    bytes.extend(frame_payload(100, b"private extension"));
    bytes.extend(frame(&Record::ThreadEnd(ThreadEnd {
        thread: 1,
        time_ns: 2,
        cpu_ns: 3,
    })));
    let len = bytes.len() as u64;
    bytes[48..56].copy_from_slice(&len.to_le_bytes());
    let t = Trace::from_bytes(bytes).unwrap();
    let mut d = t.decoder();
    assert!(matches!(
        d.next(),
        Some(Ok(Event::Unknown {
            kind: 100,
            offset: 64
        }))
    ));
    assert!(matches!(
        d.next(),
        Some(Ok(Event::Record(Record::ThreadEnd(_))))
    ));
    assert!(d.next().is_none());
}

#[test]
fn module_lookups() {
    let m = example_module();
    assert!(
        m.contains(0x10000) && m.contains(0x100ff) && !m.contains(0x10100) && !m.contains(0xffff)
    );
    assert_eq!(m.function_at(0x10).map(|f| f.index), Some(1));
    assert_eq!(m.function_at(0x8f).map(|f| f.index), Some(1));
    assert_eq!(m.function_at(0x90), None);
    assert_eq!(m.function_at(0x0f), None);
    let m = ModuleRecord {
        address_map: vec![
            AddressMapEntry {
                code_offset: 0,
                wasm_offset: None,
            },
            AddressMapEntry {
                code_offset: 0x20,
                wasm_offset: Some(5),
            },
            AddressMapEntry {
                code_offset: 0x30,
                wasm_offset: None,
            },
        ],
        addresses: example_addresses(),
        ..m
    };
    assert_eq!(m.wasm_offset(0x1f), None);
    assert_eq!(m.wasm_offset(0x20), Some(5));
    assert_eq!(m.wasm_offset(0xff), None);
    // The nearest mapped instruction in the function: before, else after.
    let f = m.functions[0];
    let mapped = m.mapped_entries();
    assert_eq!(m.nearest_wasm_offset(&mapped, 0x10, &f), Some(5));
    assert_eq!(m.nearest_wasm_offset(&mapped, 0x40, &f), Some(5));
    assert_eq!(m.exact_wasm_offset(0x4f), Some(Some(5)));
    assert_eq!(m.exact_wasm_offset(0x70), Some(None));
    assert_eq!(m.exact_wasm_offset(0x50), None);
}

/// A writer for a new trace at `path` with its run-info record written.
fn writer_with_run_info(path: &Path, interval_ns: u64) -> TraceWriter {
    let w = TraceWriter::create(path, Header::for_this_host(), WriterOptions::default()).unwrap();
    w.write_run_info(&RunInfo {
        interval_ns,
        clock: TimerClock::Wall,
        recorder: "t".into(),
        args: vec![],
    })
    .unwrap();
    w
}

#[test]
fn a_scanner_sees_the_samples_of_a_trace_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.wrec");
    let w = writer_with_run_info(&path, 1_000_000);
    let mut enc = SampleEncoder::new(0);
    let mut scanner = SampleScanner::new(HEADER_SIZE as u64);
    let mut seen = Vec::new();
    for i in 0..50u64 {
        let stack: Vec<u64> = (0..(i % 7 + 1))
            .map(|d| 0x1000 + d * 0x10 + i % 3)
            .collect();
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: i * 1_003_000,
                cpu_ns: i * 1_000_000,
                flags: 0,
                stack: &stack,
            },
        )
        .unwrap();
        if i % 10 == 3 {
            let bytes = std::fs::read(&path).unwrap();
            let from = scanner.position() as usize;
            scanner
                .scan(&bytes[from..w.committed_len() as usize], &mut |s| {
                    seen.push(s.stack.to_vec())
                })
                .unwrap();
        }
    }
    let from = scanner.position() as usize;
    scanner
        .scan(w.committed_since(from as u64), &mut |s| {
            seen.push(s.stack.to_vec())
        })
        .unwrap();
    assert_eq!(seen.len(), 50);
    assert_eq!(seen[49], vec![0x1001]);
    assert_eq!(
        seen[48],
        (0..7).map(|d| 0x1000 + d * 0x10).collect::<Vec<u64>>()
    );
}

/// Which pages of `len` bytes from `off` in the writer's mapping are in
/// memory (`mincore`).
fn resident(w: &TraceWriter, off: usize, len: usize) -> Vec<bool> {
    let page = 4096;
    let mut v = vec![0u8; len.div_ceil(page)];
    // SAFETY: the range lies inside the mapping; v has a byte per page.
    let rc = unsafe { libc::mincore(w.map.as_ptr().add(off) as *mut _, len, v.as_mut_ptr()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    v.iter().map(|b| b & 1 != 0).collect()
}

#[test]
fn the_pages_ahead_of_the_cursor_are_faulted_in_before_samples_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.wrec");
    let opts = WriterOptions::default();
    let w = TraceWriter::create(&path, Header::for_this_host(), opts).unwrap();
    // Right after creation: the window after the header is in memory, the
    // rest of the first growth step (allocated, never touched) is not.
    let window = opts.prefault as usize;
    assert!(resident(&w, 0, window).iter().all(|&r| r));
    assert!(
        !resident(&w, 4 << 20, 4096)[0],
        "4 MiB in should not be touched"
    );
    // Appending moves the window along when the housekeeper calls prefault.
    let mut enc = SampleEncoder::new(0);
    let stack: Vec<u64> = (0..40).map(|i| 0x7000_0000 + i * 0x1_0000).collect();
    let mut i = 0u64;
    while w.committed_len() < 3 * window as u64 {
        // Every sample a different innermost frame far from the others.
        let mut s = stack.clone();
        s[0] += i * 0x10_0000;
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: i * 1_000_000,
                cpu_ns: i * 1_000_000,
                flags: 0,
                stack: &s,
            },
        )
        .unwrap();
        i += 1;
    }
    let appended = w.committed_len() as usize;
    w.prefault();
    let cursor = w.committed_len() as usize & !4095;
    assert!(resident(&w, cursor, window).iter().all(|&r| r));
    // A fast writer gets a wider window: four times what it appended since
    // the previous call, and no more.
    let wide = (4 * appended) & !4095;
    assert!(resident(&w, cursor, wide - 4096).iter().all(|&r| r));
    assert!(!resident(&w, cursor + wide + (1 << 20), 4096)[0]);
    // Nothing was written there.
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes[w.committed_len() as usize..].iter().all(|&b| b == 0));
}

/// Resident set size, in bytes, of this process's mapping holding `p`
/// (from /proc/self/smaps).
fn mapping_rss(p: *const u8) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let p = p as u64;
    let mut inside = false;
    for line in smaps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = range.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                inside = lo <= p && p < hi;
                continue;
            }
        }
        if let (true, Some(kb)) = (inside, line.strip_prefix("Rss:")) {
            return kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap()
                * 1024;
        }
    }
    panic!("no mapping holds {p:#x}")
}

/// A mapped trace read to its end is not left resident: the decoder lets
/// go of the pages behind both its passes. A trace held in memory (not a
/// mapping) is left as it is.
#[test]
fn the_decoder_lets_go_of_a_mapped_trace_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wrec");
    let w = writer_with_run_info(&path, 1_000_000);
    let mut enc = SampleEncoder::new(0);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut n = 0u64;
    while w.committed_len() < 8 << 20 {
        w.grow().unwrap();
        // Fresh random frames: each sample is some 100 bytes.
        let stack: Vec<u64> = (0..12)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x >> 20
            })
            .collect();
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: n * 1_000_000,
                cpu_ns: n * 900_000,
                flags: 0,
                stack: &stack,
            },
        )
        .unwrap();
        n += 1;
    }
    let len = w.finish().unwrap();
    drop(w);
    let count = |t: &Trace| {
        let mut d = t.decoder();
        let mut samples = 0u64;
        while let Some(e) = d.next() {
            if let Event::Sample(_) = e.unwrap() {
                samples += 1;
            }
        }
        samples
    };
    let mapped = Trace::open(&path).unwrap();
    assert_eq!(count(&mapped), n);
    let rss = mapping_rss(mapped.bytes().as_ptr());
    assert!(
        rss < len / 4,
        "{rss} bytes of the {len}-byte trace still resident after reading it"
    );
    // Still readable, and unchanged, after being let go.
    assert_eq!(mapped.bytes(), &std::fs::read(&path).unwrap()[..]);
    assert_eq!(count(&mapped), n);
    let owned = Trace::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(count(&owned), n);
    assert_eq!(owned.bytes(), mapped.bytes());
}

/// The encoder leaves out the CPU field where asked, except where the format
/// needs one (a keyframe, the 256th sample in a row), and the decoder gives
/// every sample the right time and the measured sample the CPU time since
/// the last measured one.
#[test]
fn samples_without_cpu_time_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wrec");
    let w = writer_with_run_info(&path, 100_000);
    let mut enc = SampleEncoder::new(0);
    let stack = [0x1000u64, 0x2000];
    assert!(enc.needs_cpu());
    let n = 600u64;
    for i in 0..n {
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: 1_000_000 + i * 100_000,
                // The thread runs 90% of the time.
                cpu_ns: 50_000 + i * 90_000,
                flags: flags::NO_CPU,
                stack: &stack,
            },
        )
        .unwrap();
    }
    w.finish().unwrap();
    let t = Trace::open(&path).unwrap();
    let mut d = t.decoder();
    let mut got = Vec::new();
    while let Some(e) = d.next() {
        if let Event::Sample(s) = e.unwrap() {
            assert_eq!(s.stack, &stack);
            got.push((s.time_ns, s.cpu_ns, s.cpu_delta_ns, s.flags));
        }
    }
    assert_eq!(got.len() as u64, n);
    for (i, &(time, cpu, delta, fl)) in got.iter().enumerate() {
        let i = i as u64;
        assert_eq!(time, 1_000_000 + i * 100_000);
        // The first sample, then every 256th: 0, 256, 512.
        if i.is_multiple_of(256) {
            assert_eq!(fl & flags::NO_CPU, 0, "sample {i}");
            assert_eq!(cpu, 50_000 + i * 90_000, "sample {i}");
            let expect = if i == 0 { 0 } else { 256 * 90_000 };
            assert_eq!(delta, expect, "sample {i}");
        } else {
            assert_eq!(fl, flags::NO_CPU, "sample {i}");
            assert_eq!(delta, 0, "sample {i}");
            assert_eq!(cpu, 50_000 + (i / 256) * 256 * 90_000, "sample {i}");
        }
    }
}

/// A trace of format 2.0 (five flag bits, a CPU field in every sample) is
/// still read.
#[test]
fn a_format_2_trace_is_read() {
    let mut h = example_header();
    h.version_major = 2;
    h.committed_len = 0;
    let mut bytes = h.encode().to_vec();
    // Thread 3, keyframe: 3 × 32 + 1; then thread 3 with HOST: 3 × 32 + 2.
    let mut p = Vec::new();
    for v in [3 * 32 + 1, 2000, 1000, 0] {
        varint::push(&mut p, v);
    }
    p.extend_from_slice(&[0xfe, 0x20]);
    bytes.extend(frame_payload(kind::SAMPLE, &p));
    let mut p = Vec::new();
    // Δt = 0 + 1000 µs (no run info: interval 0), Δcpu = Δt − 3.
    for v in [3 * 32 + 2, varint::zigzag(1000), varint::zigzag(-3), 1] {
        varint::push(&mut p, v);
    }
    bytes.extend(frame_payload(kind::SAMPLE, &p));
    let len = bytes.len() as u64;
    bytes[48..56].copy_from_slice(&len.to_le_bytes());
    let t = Trace::from_bytes(bytes).unwrap();
    assert_eq!(t.header().version_major, 2);
    let mut d = t.decoder();
    let mut got = Vec::new();
    while let Some(e) = d.next() {
        if let Event::Sample(s) = e.unwrap() {
            got.push((s.thread, s.flags, s.time_ns, s.cpu_ns, s.stack.to_vec()));
        }
    }
    assert_eq!(
        got,
        vec![
            (3, flags::KEYFRAME, 2_000_000, 1_000_000, vec![0x10]),
            (3, flags::HOST, 3_000_000, 1_997_000, vec![0x10]),
        ]
    );
}

/// The run-info record sets the interval sample deltas are relative to, so
/// it is written once, first, through its own method.
#[test]
fn the_run_info_goes_first_and_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.wrec");
    let w = TraceWriter::create(&path, Header::for_this_host(), WriterOptions::default()).unwrap();
    let info = RunInfo {
        interval_ns: 250_000,
        clock: TimerClock::Wall,
        recorder: "t".into(),
        args: vec![],
    };
    assert_eq!(w.interval_ns(), 0);
    assert!(matches!(
        w.write_record(&Record::RunInfo(info.clone())),
        Err(WriteError::RunInfo { .. })
    ));
    w.write_run_info(&info).unwrap();
    assert_eq!(w.interval_ns(), 250_000);
    assert!(matches!(
        w.write_run_info(&info),
        Err(WriteError::RunInfo { .. })
    ));
    w.finish().unwrap();
    let t = Trace::open(&path).unwrap();
    let recs: Vec<u8> = t.records().map(|r| r.unwrap().kind).collect();
    assert_eq!(recs, [kind::RUN_INFO]);
}

#[test]
fn an_inner_module_round_trips_and_a_plain_one_writes_no_inner_fields() {
    let plain = example_module();
    let mut plain_bytes = Vec::new();
    Record::Module(plain.clone()).encode_payload(&mut plain_bytes);
    let inner = ModuleRecord {
        inner: Some(InnerModule {
            index: 2,
            offset: 0xb32,
            len: 153_882,
        }),
        ..plain.clone()
    };
    let mut inner_bytes = Vec::new();
    Record::Module(inner.clone()).encode_payload(&mut inner_bytes);
    // Appended fields only: a 3.0 reader reads the same record before them.
    assert!(inner_bytes.starts_with(&plain_bytes));
    let back = |b: &[u8]| match Record::decode(kind::MODULE, b, 0).unwrap() {
        Some(Record::Module(m)) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(back(&plain_bytes), plain);
    assert_eq!(back(&inner_bytes), inner);
    // An explicit 0 is "not inner", and later fields are ignored.
    let mut zero = plain_bytes.clone();
    zero.extend_from_slice(&[0, 7, 7]);
    assert_eq!(back(&zero), plain);
    let file = vec![1u8; 200];
    let i = InnerModule {
        index: 0,
        offset: 100,
        len: 50,
    };
    assert_eq!(i.slice(&file).map(|s| s.len()), Some(50));
    assert_eq!(InnerModule { len: 0, ..i }.slice(&file), None);
    assert_eq!(InnerModule { len: 101, ..i }.slice(&file), None);
}

#[test]
fn a_request_record_is_laid_out_as_the_spec_says_and_cut_to_its_bounds() {
    let r = crate::Request::new(2, 1000, 3500, 7, "GET", "/x?y=1");
    let mut payload = Vec::new();
    Record::Request(r.clone()).encode_payload(&mut payload);
    // thread, start, duration (2500 = c4 13), index, method, path.
    let mut want = vec![0x02, 0xe8, 0x07, 0xc4, 0x13, 0x07, 3];
    want.extend_from_slice(b"GET");
    want.push(6);
    want.extend_from_slice(b"/x?y=1");
    assert_eq!(payload, want);
    assert_eq!(frame(&Record::Request(r))[0], crate::kind::REQUEST);

    // Bounds: 256 bytes of path, 32 of method, cut at a character boundary;
    // an end before the start is the start.
    let long = format!("/{}", "é".repeat(200));
    let r = crate::Request::new(0, 10, 5, 0, &"M".repeat(40), &long);
    assert_eq!(r.method.len(), crate::MAX_REQUEST_METHOD);
    assert_eq!(r.path.len(), 255);
    assert!(long.starts_with(&r.path));
    assert_eq!(r.end_ns, 10);
    // A duration that overflows is damage.
    let mut bad = vec![0x00];
    crate::varint::push(&mut bad, u64::MAX);
    crate::varint::push(&mut bad, 1);
    bad.extend_from_slice(&[0, 0, 0]);
    assert!(Record::decode(crate::kind::REQUEST, &bad, 0).is_err());
}
