//! Small traces written with the format crate, and what a full read of
//! one sees: for the format crate's own tests.

use std::path::Path;
use wrec_format::*;

/// A realistic small trace: run info, a module, two threads, samples with
/// deep and changing stacks, a loss record and an end record.
pub fn write_sample_trace(path: &Path) -> (Vec<u8>, usize) {
    let w = TraceWriter::create(path, Header::for_this_host(), WriterOptions::default()).unwrap();
    w.write_run_info(&RunInfo {
        interval_ns: 1_000_000,
        clock: TimerClock::Wall,
        recorder: "test".into(),
        args: vec!["prog.wasm".into(), "--flag".into()],
    })
    .unwrap();
    let text = 0x7f00_0000_0000u64;
    w.write_record(&Record::Module(ModuleRecord {
        id: 0,
        path: "/tmp/prog.wasm".into(),
        sha256: [7; 32],
        text_addr: text,
        text_len: 0x10000,
        functions: (0..20)
            .map(|i| FunctionEntry {
                index: i + 3,
                offset: u64::from(i) * 0x100,
                len: 0x100,
            })
            .collect(),
        address_map: (0..200)
            .map(|i| AddressMapEntry {
                code_offset: i * 0x20,
                wasm_offset: (i % 5 != 0).then_some(0x400 + i * 3),
            })
            .collect(),
        addresses: vec![],
        inner: None,
    }))
    .unwrap();
    let mut encs = [SampleEncoder::new(0), SampleEncoder::new(1)];
    for (t, _) in encs.iter().enumerate() {
        w.write_record(&Record::ThreadStart(ThreadStart {
            thread: t as u32,
            time_ns: 10,
            cpu_ns: 0,
            os_tid: 100 + t as u64,
            name: format!("t{t}"),
        }))
        .unwrap();
    }
    let mut n = 0;
    for i in 0..60u64 {
        let depth = 3 + (i * 7 % 25) as usize;
        let stack: Vec<u64> = (0..depth)
            .map(|d| text + 0x100 * ((d as u64 + i) % 20) + 0x10 + (d as u64 % 3))
            .collect();
        let t = (i % 2) as usize;
        w.append_sample(
            &mut encs[t],
            &SampleRef {
                time_ns: 1000 + i * 1_000_000,
                cpu_ns: i * 900_000,
                flags: if i % 9 == 0 { flags::HOST } else { 0 },
                stack: &stack,
            },
        )
        .unwrap();
        n += 1;
    }
    w.write_record(&Record::CodeAddresses(CodeAddresses {
        module: 0,
        entries: (0..30)
            .map(|i| AddressMapEntry {
                code_offset: i * 0x100 + 0x10,
                wasm_offset: (i % 4 != 0).then_some(0x500 + i),
            })
            .collect(),
    }))
    .unwrap();
    w.write_record(&Record::SamplesLost(SamplesLost {
        thread: 0,
        count: 3,
        reason: LossReason::LogFull,
    }))
    .unwrap();
    for t in 0..2 {
        w.write_record(&Record::ThreadEnd(ThreadEnd {
            thread: t,
            time_ns: 70_000_000,
            cpu_ns: 60_000_000,
        }))
        .unwrap();
    }
    w.write_record(&Record::End(End {
        time_ns: 70_000_000,
        exit_kind: ExitKind::Exited,
        status: 0,
        message: String::new(),
        samples_written: n as u64,
        samples_lost: 3,
    }))
    .unwrap();
    w.finish().unwrap();
    (std::fs::read(path).unwrap(), n)
}

/// What a full read of a trace saw.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    /// (offset, kind) of every record read.
    pub records: Vec<(u64, u8)>,
    pub samples: usize,
    pub error: Option<ReadError>,
    pub saw_end: bool,
}

pub fn read_all(bytes: Vec<u8>) -> Result<ReadOutcome, ReadError> {
    let t = Trace::from_bytes(bytes)?;
    let mut out = ReadOutcome::default();
    let mut d = t.decoder();
    while let Some(e) = d.next() {
        match e {
            Ok(Event::Sample(s)) => {
                out.records.push((s.offset, kind::SAMPLE));
                out.samples += 1;
            }
            Ok(Event::Record(r)) => {
                if matches!(r, Record::End(_)) {
                    out.saw_end = true;
                }
                out.records.push((0, r.kind()));
            }
            Ok(Event::Unknown { offset, kind }) => out.records.push((offset, kind)),
            Err(e) => out.error = Some(e),
        }
    }
    Ok(out)
}

/// Offsets of every record's first byte, and the end of the last one.
pub fn record_bounds(bytes: &[u8]) -> Vec<u64> {
    let t = Trace::from_bytes(bytes.to_vec()).unwrap();
    let mut v: Vec<u64> = t.records().map(|r| r.unwrap().offset).collect();
    v.push(t.data_end());
    v
}
