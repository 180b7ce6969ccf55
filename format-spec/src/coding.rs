//! What the writer and the reader share about the bytes of a record
//! (SPEC.md §1.2 and §2.4): framing (kind, length, payload, check), the
//! frame codes of a sample's stack and the table of recent addresses they
//! refer to, and the limits that bound a sample record. Neither side
//! imports the other: both import this.

use crate::records::{flags, Record};
use crate::{crc16, varint};

/// The deepest stack a sample holds; deeper stacks keep their innermost
/// frames and are flagged `TRUNCATED`.
pub const MAX_FRAMES: usize = 1024;
/// Slots in a thread's table of recent addresses (SPEC.md §2.4).
pub const RECENT_SLOTS: usize = 14;
/// Frame code: the frame is written out as an svarint delta.
pub(crate) const CODE_LITERAL: u8 = 14;
/// Frame code: no frame (pads the last code byte).
pub(crate) const CODE_NONE: u8 = 15;
/// The largest sample record: framing (kind, length, check), the fixed
/// fields and `MAX_FRAMES` literal frames with their code bytes.
pub const MAX_SAMPLE_RECORD: usize = 1 + 5 + 4 * 10 + MAX_FRAMES / 2 + MAX_FRAMES * 10 + 2;

/// The table of a thread's recently written frame addresses, most recent
/// first (SPEC.md §2.4). No allocation: usable in a signal handler.
#[derive(Clone, Copy)]
pub(crate) struct Recent {
    slots: [u64; RECENT_SLOTS],
    len: usize,
}

impl Recent {
    pub(crate) const fn new() -> Recent {
        Recent {
            slots: [0; RECENT_SLOTS],
            len: 0,
        }
    }

    /// The slot holding `addr`, if any.
    #[inline]
    pub(crate) fn find(&self, addr: u64) -> Option<usize> {
        self.slots[..self.len].iter().position(|&a| a == addr)
    }

    /// The address in slot `i` (moved to the front), or `None` past the end.
    #[inline]
    pub(crate) fn take(&mut self, i: usize) -> Option<u64> {
        if i >= self.len {
            return None;
        }
        let a = self.slots[i];
        self.slots.copy_within(0..i, 1);
        self.slots[0] = a;
        Some(a)
    }

    /// Puts a new address in front, dropping the oldest if the table is full.
    #[inline]
    pub(crate) fn insert(&mut self, addr: u64) {
        let n = self.len.min(RECENT_SLOTS - 1);
        self.slots.copy_within(0..n, 1);
        self.slots[0] = addr;
        self.len = n + 1;
    }
}

/// Frames a record: kind, length, payload, check.
pub fn frame(rec: &Record) -> Vec<u8> {
    let mut payload = Vec::new();
    rec.encode_payload(&mut payload);
    frame_payload(rec.kind(), &payload)
}

/// A sample payload of the current format built field by field (SPEC.md
/// §2.4), for tests and tools that build traces by hand: `time` and `cpu`
/// are the raw field values (absolute µs in a keyframe, zigzag deltas
/// otherwise; `cpu` is left out with `NO_CPU`), and `literals` the new
/// frames, outermost first, each as a literal difference from the frame
/// outside it. Frame it with `frame_payload(kind::SAMPLE, ..)`.
pub fn sample_payload(
    thread: u32,
    flags: u8,
    time: u64,
    cpu: u64,
    keep: u64,
    literals: &[i64],
) -> Vec<u8> {
    let mut p = Vec::new();
    varint::push(
        &mut p,
        (u64::from(thread) << 6) | u64::from(flags & flags::ALL),
    );
    varint::push(&mut p, time);
    if flags & flags::NO_CPU == 0 {
        varint::push(&mut p, cpu);
    }
    varint::push(&mut p, keep);
    for pair in literals.chunks(2) {
        let none = if pair.len() == 2 {
            CODE_LITERAL
        } else {
            CODE_NONE
        };
        p.push(CODE_LITERAL | (none << 4));
        for &d in pair {
            varint::push(&mut p, varint::zigzag(d));
        }
    }
    p
}

/// Frames a payload of any kind (for tests and tools that write extensions).
pub fn frame_payload(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.push(kind);
    varint::push(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    let check = crc16(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}
