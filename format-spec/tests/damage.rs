//! Truncated and corrupted traces: every complete record before the damage is
//! read, the damage is reported with its offset, nothing panics and no
//! allocation is larger than the file.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wrec_format::*;
use wrec_testkit::synth::*;

/// Tracks the largest single allocation, to prove no count in a damaged
/// file makes the reader allocate beyond the file's size.
/// Per thread, since the tests run in parallel.
struct Tracking;
thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn reset_largest() {
    LARGEST.with(|l| l.set(0));
}

fn largest() -> usize {
    LARGEST.with(|l| l.get())
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// A trace of these framed records after `header`, its committed length set
/// to the end of the last one.
fn committed(header: &[u8], records: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = header.to_vec();
    for r in records {
        bytes.extend_from_slice(r);
    }
    let len = bytes.len() as u64;
    bytes[48..56].copy_from_slice(&len.to_le_bytes());
    bytes
}

#[test]
fn truncation_at_every_offset_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, n) = write_sample_trace(&dir.path().join("t.wrec"));
    let full = read_all(bytes.clone()).unwrap();
    assert!(full.error.is_none() && full.saw_end && full.samples == n);
    let bounds = record_bounds(&bytes);
    // Every offset inside the last 12 records (and then some).
    let from = bounds[bounds.len() - 13] as usize;
    for cut in from..bytes.len() {
        let out = read_all(bytes[..cut].to_vec()).unwrap();
        let complete = bounds.iter().filter(|&&b| b as usize <= cut).count() - 1;
        assert_eq!(
            out.records.len(),
            complete,
            "cut at {cut}: expected the {complete} records that end before it"
        );
        if bounds.contains(&(cut as u64)) {
            assert!(
                out.error.is_none(),
                "cut at a record boundary {cut}: {:?}",
                out.error
            );
        } else {
            let e = out.error.expect("a cut inside a record is reported");
            assert_eq!(e.offset(), Some(bounds[complete]), "cut at {cut}");
            assert!(e.to_string().contains("cut short"), "{e}");
        }
        assert_eq!(out.saw_end, cut == bytes.len());
    }
}

#[test]
fn a_killed_writer_leaves_every_committed_record_readable() {
    // What SIGKILL leaves: the committed length at a record boundary and
    // zeros (or a half-written record) after it, in a file grown ahead.
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = write_sample_trace(&dir.path().join("t.wrec"));
    let bounds = record_bounds(&bytes);
    for (i, &b) in bounds.iter().enumerate().skip(1) {
        let mut killed = bytes.clone();
        killed[48..56].copy_from_slice(&b.to_le_bytes());
        // Zero the rest of what "was not yet written", keep a tail of space.
        for x in &mut killed[b as usize..] {
            *x = 0;
        }
        killed.resize(killed.len() + 4096, 0);
        let out = read_all(killed).unwrap();
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.records.len(), i);
        assert!(!out.saw_end || i == bounds.len() - 1);
    }
}

#[test]
fn every_single_byte_change_is_detected_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = write_sample_trace(&dir.path().join("t.wrec"));
    let bounds = record_bounds(&bytes);
    reset_largest();
    for at in 0..bytes.len() {
        for val in [bytes[at] ^ 0xff, bytes[at] ^ 0x01, 0x00, 0x80, 0x7f] {
            if val == bytes[at] {
                continue;
            }
            let mut bad = bytes.clone();
            bad[at] = val;
            let result = read_all(bad);
            if at < 48 {
                // Static header fields are covered by the header check.
                assert!(result.is_err(), "header byte {at} -> {val:#x} not detected");
                continue;
            }
            if (48..64).contains(&at) {
                // The committed length and reserved bytes: anything but a
                // panic is acceptable; a shorter committed length reads fewer
                // records and the missing end record shows.
                continue;
            }
            let out = result.unwrap();
            let e = out
                .error
                .unwrap_or_else(|| panic!("record byte {at} -> {val:#x} not detected"));
            // The damage is reported at the record holding the byte, and every
            // record before it was read.
            let rec = bounds.iter().rposition(|&b| b as usize <= at).unwrap();
            assert_eq!(e.offset(), Some(bounds[rec]), "byte {at} -> {val:#x}: {e}");
            assert_eq!(out.records.len(), rec, "byte {at}");
        }
    }
    let largest = largest();
    assert!(
        largest <= bytes.len() + 4096,
        "an allocation of {largest} bytes for a {}-byte trace",
        bytes.len()
    );
}

#[test]
fn huge_counts_and_lengths_are_refused_without_allocating() {
    let mut h = Header::for_this_host();
    h.committed_len = 0;
    let base = h.encode().to_vec();
    let payloads: Vec<(u8, Vec<u8>)> = vec![
        // Run info claiming 2^62 arguments.
        (kind::RUN_INFO, {
            let mut p = vec![1, 0, 0];
            varint::push(&mut p, 1 << 62);
            p
        }),
        // A module claiming a billion functions.
        (kind::MODULE, {
            let mut p = vec![0, 0];
            p.extend([0u8; 32]);
            p.extend([1, 1]);
            varint::push(&mut p, 1_000_000_000);
            p
        }),
        // A sample whose frames come from recent addresses it has none of.
        (kind::SAMPLE, {
            let mut p = sample_payload(0, flags::KEYFRAME, 1, 1, 0, &[]);
            p.extend([0x10, 0x32]);
            p
        }),
        // A sample with a padding code before its last code byte.
        (kind::SAMPLE, {
            let mut p = sample_payload(0, flags::KEYFRAME, 1, 1, 0, &[5]);
            p.extend([0xee, 2, 2]);
            p
        }),
        // A string longer than the record.
        (kind::THREAD_START, vec![0, 0, 0, 0, 0x7f, b'x']),
        // A varint with 11 bytes.
        (kind::THREAD_END, vec![0xff; 11]),
    ];
    reset_largest();
    for (k, p) in payloads {
        let out = read_all(committed(&base, &[frame_payload(k, &p)])).unwrap();
        let e = out.error.expect("refused");
        assert_eq!(e.offset(), Some(64), "{e}");
    }
    assert!(largest() < 64 << 10);
    // A record length far beyond the file.
    let mut record = vec![kind::SAMPLE];
    varint::push(&mut record, u64::from(u32::MAX));
    record.extend([0; 8]);
    let out = read_all(committed(&base, &[record])).unwrap();
    assert!(matches!(
        out.error,
        Some(ReadError::Damaged {
            offset: 64,
            damage: Damage::PastEnd
        })
    ));
}

#[test]
fn samples_that_do_not_follow_their_thread_are_damage() {
    let mut h = Header::for_this_host();
    h.committed_len = 0;
    let header = h.encode();
    // A non-keyframe sample for a thread never seen.
    let bytes = committed(
        &header,
        &[frame_payload(
            kind::SAMPLE,
            &sample_payload(9, 0, 1, 1, 0, &[]),
        )],
    );
    let e = read_all(bytes).unwrap().error.unwrap();
    assert!(matches!(
        e,
        ReadError::Damaged {
            damage: Damage::NoKeyframe(9),
            ..
        }
    ));
    // Keeping more frames than the previous stack had.
    let bytes = committed(
        &header,
        &[
            frame_payload(
                kind::SAMPLE,
                &sample_payload(1, flags::KEYFRAME, 1, 1, 0, &[1]),
            ),
            frame_payload(kind::SAMPLE, &sample_payload(1, 0, 2, 0, 5, &[])),
        ],
    );
    let out = read_all(bytes).unwrap();
    assert_eq!(out.samples, 1);
    assert!(matches!(
        out.error,
        Some(ReadError::Damaged {
            damage: Damage::KeepBeyondStack { keep: 5, prev: 1 },
            ..
        })
    ));
    // A time delta that takes the time past 64 bits.
    let bytes = committed(
        &header,
        &[
            frame_payload(
                kind::SAMPLE,
                &sample_payload(1, flags::KEYFRAME, u64::MAX - 5, 1, 0, &[]),
            ),
            frame_payload(kind::SAMPLE, &sample_payload(1, 0, 20, 0, 0, &[])),
        ],
    );
    let out = read_all(bytes).unwrap();
    assert_eq!(out.samples, 1);
    assert!(matches!(
        out.error,
        Some(ReadError::Damaged {
            damage: Damage::BadValue(_),
            ..
        })
    ));
}

#[test]
fn a_stack_deeper_than_the_writers_limit_is_damage() {
    // A sample record with `keep` previous frames and `new` frames of +1.
    let sample = |keyframe: bool, keep: u64, new: usize| {
        let f = if keyframe { flags::KEYFRAME } else { 0 };
        frame_payload(
            kind::SAMPLE,
            &sample_payload(1, f, 2, 0, keep, &vec![1; new]),
        )
    };
    let header = Header::for_this_host().encode();
    let trace = |records: &[Vec<u8>]| committed(&header, records);
    // MAX_FRAMES deep, then kept whole with one frame replaced: fine.
    let out = read_all(trace(&[
        sample(true, 0, MAX_FRAMES),
        sample(false, MAX_FRAMES as u64 - 1, 1),
    ]))
    .unwrap();
    assert_eq!(out.samples, 2);
    assert!(out.error.is_none(), "{:?}", out.error);
    // One more frame, in a keyframe or on top of kept frames: damage, so no
    // few-byte record can make the reader copy an ever deeper stack.
    for records in [
        vec![sample(true, 0, MAX_FRAMES + 1)],
        vec![
            sample(true, 0, MAX_FRAMES),
            sample(false, MAX_FRAMES as u64, 1),
        ],
    ] {
        let n = records.len();
        let out = read_all(trace(&records)).unwrap();
        assert_eq!(out.samples, n - 1);
        assert!(matches!(
            out.error,
            Some(ReadError::Damaged {
                damage: Damage::BadValue(_),
                ..
            })
        ));
    }
}

#[test]
fn samples_without_cpu_time_break_no_rule_unnoticed() {
    let mut h = Header::for_this_host();
    h.committed_len = 0;
    let header = h.encode();
    let key = frame_payload(
        kind::SAMPLE,
        &sample_payload(1, flags::KEYFRAME, 1000, 500, 0, &[0x10]),
    );
    let no_cpu = frame_payload(
        kind::SAMPLE,
        &sample_payload(1, flags::NO_CPU, 0, 0, 1, &[]),
    );
    // A keyframe must carry its CPU time.
    let bytes = committed(
        &header,
        &[frame_payload(
            kind::SAMPLE,
            &sample_payload(1, flags::KEYFRAME | flags::NO_CPU, 1000, 0, 0, &[]),
        )],
    );
    let out = read_all(bytes).unwrap();
    assert_eq!(out.samples, 0);
    assert!(matches!(
        out.error,
        Some(ReadError::Damaged {
            damage: Damage::BadValue("keyframe without CPU time"),
            ..
        })
    ));
    // 255 in a row are allowed; the 256th is damage.
    let mut records = vec![key.clone()];
    records.extend(std::iter::repeat_n(no_cpu.clone(), 255));
    let out = read_all(committed(&header, &records)).unwrap();
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.samples, 256);
    records.push(no_cpu);
    let out = read_all(committed(&header, &records)).unwrap();
    assert_eq!(out.samples, 256);
    assert!(matches!(
        out.error,
        Some(ReadError::Damaged {
            damage: Damage::BadValue("more than 255 samples in a row without CPU time"),
            ..
        })
    ));
}
