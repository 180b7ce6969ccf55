//! The ring layout (SPEC.md §5): a fast-forwarded writer that wraps the
//! ring many times, the file's bound, what a reader sees at every moment,
//! and damage in the ring.

use std::path::Path;

use wrec_format::*;

const TEXT: u64 = 0x7f00_0000_0000;

fn ring_writer(path: &Path, max_size: u64) -> TraceWriter {
    let opts = WriterOptions {
        ring: Some(RingLayout::for_max_size(max_size).unwrap()),
        ..WriterOptions::default()
    };
    let w = TraceWriter::create(path, Header::for_this_host(), opts).unwrap();
    w.write_run_info(&RunInfo {
        interval_ns: 1_000_000,
        clock: TimerClock::Wall,
        recorder: "test".into(),
        args: vec!["prog.wasm".into()],
    })
    .unwrap();
    w.write_record(&Record::Module(ModuleRecord {
        id: 0,
        path: "/tmp/prog.wasm".into(),
        sha256: [7; 32],
        text_addr: TEXT,
        text_len: 0x10000,
        functions: vec![FunctionEntry {
            index: 1,
            offset: 0,
            len: 0x10000,
        }],
        address_map: vec![],
        addresses: vec![],
        inner: None,
    }))
    .unwrap();
    for t in 0..2u32 {
        w.write_record(&Record::ThreadStart(ThreadStart {
            thread: t,
            time_ns: 0,
            cpu_ns: 0,
            os_tid: 100 + u64::from(t),
            name: format!("t{t}"),
        }))
        .unwrap();
    }
    w
}

/// Sample `i`'s stack: deep and changing, so records vary in size.
fn stack(i: u64) -> Vec<u64> {
    let depth = 3 + (i * 7 % 40) as usize;
    (0..depth)
        .map(|d| TEXT + 0x100 * ((d as u64 + i / 5) % 60) + (d as u64 % 3))
        .collect()
}

/// Sample `i` is taken on thread `i % 2` at `i` ms.
fn append(w: &TraceWriter, encs: &mut [Box<SampleEncoder>], i: u64) -> bool {
    let flags = if i.is_multiple_of(3) {
        0
    } else {
        flags::NO_CPU
    };
    w.append_sample(
        &mut encs[(i % 2) as usize],
        &SampleRef {
            time_ns: (i + 1) * 1_000_000,
            cpu_ns: (i + 1) * 900_000,
            flags,
            stack: &stack(i),
        },
    )
    .is_ok()
}

/// Every sample of the trace at `path`: (thread, time in ms), checking
/// each stack against the one appended.
fn read(bytes: Vec<u8>) -> (Trace, Vec<(u32, u64)>) {
    let t = Trace::from_bytes(bytes).unwrap();
    let mut out = Vec::new();
    {
        let mut d = t.decoder();
        while let Some(ev) = d.next() {
            match ev.unwrap() {
                Event::Sample(s) => {
                    let i = s.time_ns / 1_000_000 - 1;
                    assert_eq!(s.stack, &stack(i)[..], "sample {i}");
                    assert_eq!(s.thread as u64, i % 2);
                    out.push((s.thread, i));
                }
                Event::Record(_) | Event::Unknown { .. } => {}
            }
        }
    }
    (t, out)
}

#[test]
fn a_ring_wrapped_many_times_holds_the_newest_samples_and_never_grows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.wrec");
    let max = 2u64 << 20;
    let w = ring_writer(&path, max);
    let layout = w.ring_layout().unwrap();
    let mut encs = [SampleEncoder::new(0), SampleEncoder::new(1)];
    let n = 600_000u64;
    let mut dropped = 0;
    for i in 0..n {
        if !append(&w, &mut encs, i) {
            dropped += 1;
        }
        // The housekeeper's round, fast-forwarded: every 2000 samples
        // (a few KiB, far less than a segment).
        if i.is_multiple_of(2000) {
            w.grow().unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() <= max);
        }
        // A reader at moments that include segment overwrites: every
        // sample it finds is one appended, in order, and they are the
        // newest ones up to now, without a gap but at segment boundaries
        // of the oldest segment.
        if i.is_multiple_of(97_003) && i > 0 {
            let (t, s) = read(std::fs::read(&path).unwrap());
            let last = s.last().unwrap().1;
            assert_eq!(
                last,
                i,
                "a committed sample is missing: {:?} {:?}, writer in generation {}",
                t.ring(),
                t.warnings(),
                w.ring_generation()
            );
            for pair in s.windows(2) {
                assert_eq!(pair[1].1, pair[0].1 + 1, "a gap inside the ring");
            }
        }
    }
    assert_eq!(dropped, 0, "the prepared segment ran out");
    w.write_record(&Record::ThreadEnd(ThreadEnd {
        thread: 0,
        time_ns: (n + 1) * 1_000_000,
        cpu_ns: n * 900_000,
    }))
    .unwrap();
    w.write_record(&Record::End(End {
        time_ns: (n + 2) * 1_000_000,
        exit_kind: ExitKind::Exited,
        status: 0,
        message: String::new(),
        samples_written: n,
        samples_lost: 0,
    }))
    .unwrap();
    w.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() <= max);
    let (t, s) = read(std::fs::read(&path).unwrap());
    let ring = t.ring().unwrap();
    // Many laps: the oldest generation is far past the segment count.
    assert!(ring.oldest > 10 * u64::from(layout.segments), "{ring:?}");
    assert!(ring.count >= u64::from(layout.segments) - 2, "{ring:?}");
    // The newest samples, all of them from the first one kept on.
    let first = s[0].1;
    assert_eq!(s.last().unwrap().1, n - 1);
    assert_eq!(s.len() as u64, n - first);
    // And nothing older: far fewer than written.
    assert!(first > n / 2, "first sample kept: {first}");
    // The end record is read last, after the ring's samples.
    let mut d = t.decoder();
    let mut last = None;
    while let Some(ev) = d.next() {
        last = Some(matches!(ev.unwrap(), Event::Record(Record::End(_))));
    }
    assert_eq!(last, Some(true));
}

#[test]
fn a_reader_stops_at_a_segment_being_prepared_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.wrec");
    let w = ring_writer(&path, 2 << 20);
    let layout = w.ring_layout().unwrap();
    let mut encs = [SampleEncoder::new(0), SampleEncoder::new(1)];
    let mut i = 0;
    // Past one lap, and the next generation prepared.
    while w.ring_generation() < u64::from(layout.segments) + 2 {
        assert!(append(&w, &mut encs, i));
        i += 1;
        if i.is_multiple_of(1000) {
            w.grow().unwrap();
        }
    }
    w.grow().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (t, all) = read(bytes.clone());
    let oldest = t.ring().unwrap().first;
    // A kill in the middle of preparing the slot after the newest: its
    // generation field says no generation, its records half zeroed.
    let next = w.ring_generation() + 1;
    let slot = layout.slot_offset(next % u64::from(layout.segments)) as usize;
    let mut torn = bytes.clone();
    torn[slot..slot + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    for b in &mut torn[slot + 32..slot + 1000] {
        *b = 0;
    }
    let (_, s) = read(torn);
    assert!(s == all, "a torn slot after the newest changes nothing");
    // The oldest generation raised (step 1 of preparing), nothing else
    // yet: the slot's old samples are no longer read, the rest are.
    let mut raised = bytes.clone();
    raised[88..96].copy_from_slice(&(oldest + 1).to_le_bytes());
    let (t2, s2) = read(raised);
    assert_eq!(t2.ring().unwrap().first, oldest + 1);
    assert!(s2.len() < all.len());
    assert_eq!(s2.last(), all.last());
    // Damage inside a segment's records: the samples before it are kept,
    // and the reader says where.
    let newest = layout.slot_offset(w.ring_generation() % u64::from(layout.segments)) as usize;
    let mut damaged = bytes.clone();
    damaged[newest + 40] ^= 0x55;
    let t3 = Trace::from_bytes(damaged).unwrap();
    let mut d = t3.decoder();
    let mut samples = 0;
    let mut err = None;
    while let Some(ev) = d.next() {
        match ev {
            Ok(Event::Sample(_)) => samples += 1,
            Ok(_) => {}
            Err(e) => err = Some(e),
        }
    }
    let err = err.expect("damage reported");
    assert!(err.offset().unwrap() >= newest as u64, "{err}");
    assert!(samples > 0 && samples < all.len());
    // A damaged ring header is an error, not a guess.
    let mut bad = bytes;
    bad[72] ^= 1;
    let e = Trace::from_bytes(bad).err().unwrap();
    assert!(e.to_string().contains("ring header"), "{e}");
}

/// A ring trace cut short anywhere, or with any byte of its headers
/// changed, reads without a panic: an error, or the records it still has.
#[test]
fn a_cut_or_damaged_ring_trace_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.wrec");
    let w = ring_writer(&path, 2 << 20);
    let mut encs = [SampleEncoder::new(0), SampleEncoder::new(1)];
    for i in 0..40_000 {
        append(&w, &mut encs, i);
        if i.is_multiple_of(1000) {
            w.grow().unwrap();
        }
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let drain = |b: Vec<u8>| {
        if let Ok(t) = Trace::from_bytes(b) {
            let mut d = t.decoder();
            while let Some(ev) = d.next() {
                if ev.is_err() {
                    break;
                }
            }
        }
    };
    let layout = w.ring_layout().unwrap();
    for cut in [
        0,
        63,
        64,
        100,
        127,
        128,
        4096,
        layout.ring_offset as usize - 1,
    ]
    .into_iter()
    .chain((0..layout.segments as usize).map(|s| layout.slot_offset(s as u64) as usize + 20))
    {
        drain(bytes[..cut.min(bytes.len())].to_vec());
    }
    // Every byte of the header, the ring header and a segment header,
    // flipped; and header sizes past the file.
    let seg = layout.slot_offset(1) as usize;
    for at in (0..128).chain(seg..seg + 32) {
        let mut b = bytes.clone();
        b[at] ^= 0xa5;
        drain(b);
    }
    let mut b = bytes[..200].to_vec();
    b[18..20].copy_from_slice(&60000u16.to_le_bytes());
    let check = crc16(&b[..48]);
    b[58..60].copy_from_slice(&check.to_le_bytes());
    drain(b);
}
