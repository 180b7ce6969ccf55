//! The ring layout of a bounded trace (SPEC.md §5): the ring header after
//! the 64-byte header, the segment headers, and the writer's side of the
//! ring (reserving in the current segment, moving to the next one, and
//! preparing segments ahead of the samplers).
//!
//! # Who does what
//!
//! The signal handler only ever writes into a segment that is already
//! prepared: zeroed, stamped with its generation, and present in memory.
//! When the current segment has no room for a record, the handler moves the
//! cursor to the next generation with one compare-and-swap, **if** that
//! generation is prepared; otherwise the sample is dropped (and counted).
//! Preparing, the only step that overwrites old samples, is done from normal
//! context ([`Ring::prepare_ahead`], called by the recorder's background
//! thread every 50 ms and by normal-context writers that find no room): it
//! says in the header that the slot's old generation is gone (the oldest
//! generation moves on) **before** it touches the slot, waits for no one
//! (a slot that a handler is still writing into is left for the next
//! round), zeroes the slot (which also faults its pages in, so that the
//! handler never takes a page fault) and stamps the segment header last.
//!
//! So at every moment the file says: generations `oldest ..` are intact up
//! to each segment's committed length, and a reader stops at the first
//! generation whose segment header does not name it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use crate::header::HEADER_SIZE;

/// Header size of a ring trace: the 64-byte header and the ring header.
pub const RING_HEADER_SIZE: usize = 128;
/// Bytes at the start of every segment before its records.
pub const SEGMENT_HEADER_SIZE: u64 = 32;
/// Header layout byte of a ring trace.
pub const LAYOUT_RING: u8 = 1;

/// Offsets in the file (ring header) and in a segment (segment header).
pub(crate) const RING_OFFSET_AT: usize = 64;
pub(crate) const SEGMENT_SIZE_AT: usize = 72;
pub(crate) const SEGMENT_COUNT_AT: usize = 80;
pub(crate) const OLDEST_AT: usize = 88;
pub(crate) const RING_CHECK_AT: usize = 126;
pub(crate) const SEG_GEN_AT: u64 = 0;
pub(crate) const SEG_COMMITTED_AT: u64 = 8;
pub(crate) const SEG_CHECK_AT: u64 = 30;

/// Where the ring is and how it is cut (SPEC.md §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// File offset of the first segment; the linear part (run info,
    /// modules, thread starts, code addresses, end) lies before it.
    pub ring_offset: u64,
    /// Bytes of each segment, its header included.
    pub segment_size: u64,
    pub segments: u32,
}

impl RingLayout {
    /// The layout `wrec --max-size` uses for a trace of at most `max_size`
    /// bytes: an eighth for the linear part (256 KiB to 16 MiB), the rest
    /// in segments of a sixteenth of it (256 KiB to 16 MiB, whole pages).
    /// `None` if `max_size` is too small for four segments.
    pub fn for_max_size(max_size: u64) -> Option<RingLayout> {
        const KIB: u64 = 1024;
        let page = 4 * KIB;
        let linear = (max_size / 8).clamp(256 * KIB, 16 * KIB * KIB) / page * page;
        let ring = max_size.checked_sub(linear)?;
        let segment_size = (ring / 16).clamp(256 * KIB, 16 * KIB * KIB) / page * page;
        let segments = ring / segment_size;
        if segments < 4 || segments > u64::from(u32::MAX) {
            return None;
        }
        Some(RingLayout {
            ring_offset: linear,
            segment_size,
            segments: segments as u32,
        })
    }

    /// The smallest `--max-size` [`for_max_size`](Self::for_max_size) accepts.
    pub const MIN_MAX_SIZE: u64 = 2 << 20;

    /// The file's size: the linear part and every segment.
    pub fn file_len(&self) -> u64 {
        self.ring_offset + self.segment_size * u64::from(self.segments)
    }

    /// File offset of the segment in `slot`.
    pub fn slot_offset(&self, slot: u64) -> u64 {
        self.ring_offset + slot * self.segment_size
    }

    /// Bytes 64–127 of the header, with `oldest` as the oldest generation.
    pub(crate) fn encode(&self, oldest: u64) -> [u8; RING_HEADER_SIZE - HEADER_SIZE] {
        let mut b = [0u8; RING_HEADER_SIZE - HEADER_SIZE];
        let o = |at: usize| at - HEADER_SIZE;
        b[o(RING_OFFSET_AT)..o(RING_OFFSET_AT) + 8]
            .copy_from_slice(&self.ring_offset.to_le_bytes());
        b[o(SEGMENT_SIZE_AT)..o(SEGMENT_SIZE_AT) + 8]
            .copy_from_slice(&self.segment_size.to_le_bytes());
        b[o(SEGMENT_COUNT_AT)..o(SEGMENT_COUNT_AT) + 4]
            .copy_from_slice(&self.segments.to_le_bytes());
        b[o(OLDEST_AT)..o(OLDEST_AT) + 8].copy_from_slice(&oldest.to_le_bytes());
        let check = crate::crc16(&b[..o(OLDEST_AT)]);
        b[o(RING_CHECK_AT)..o(RING_CHECK_AT) + 2].copy_from_slice(&check.to_le_bytes());
        b
    }

    /// Reads the ring header from a whole header (at least 128 bytes).
    pub(crate) fn decode(b: &[u8]) -> Result<RingLayout, &'static str> {
        if b.len() < RING_HEADER_SIZE {
            return Err("a ring trace's header is shorter than 128 bytes");
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let stored = u16::from_le_bytes([b[RING_CHECK_AT], b[RING_CHECK_AT + 1]]);
        if stored != crate::crc16(&b[RING_OFFSET_AT..OLDEST_AT]) {
            return Err("the ring header's check does not match bytes 64-87");
        }
        let l = RingLayout {
            ring_offset: u64_at(RING_OFFSET_AT),
            segment_size: u64_at(SEGMENT_SIZE_AT),
            segments: u32::from_le_bytes(
                b[SEGMENT_COUNT_AT..SEGMENT_COUNT_AT + 4]
                    .try_into()
                    .unwrap(),
            ),
        };
        if l.segments == 0
            || l.segment_size <= SEGMENT_HEADER_SIZE
            || l.ring_offset < RING_HEADER_SIZE as u64
            || l.segment_size
                .checked_mul(u64::from(l.segments))
                .and_then(|r| r.checked_add(l.ring_offset))
                .is_none()
        {
            return Err("the ring header's sizes are impossible");
        }
        Ok(l)
    }
}

/// The check of a segment header: CRC-16 of its generation's bytes.
pub(crate) fn segment_check(generation: u64) -> u16 {
    crate::crc16(&generation.to_le_bytes())
}

/// How far past the cursor a segment of the ring's first lap is made
/// present ahead of the handler: far more than the fastest sampling writes
/// between two housekeeping rounds (~75 KiB at 10 µs in 50 ms).
const PREFAULT_WINDOW: u64 = 256 << 10;

/// A slot's state as the handler sees it: the generation it holds, ready
/// for records, or [`RETIRED`].
const RETIRED: u64 = u64::MAX;

/// The writer's side of the ring. Every field the handler touches is an
/// atomic; `prepare` is normal context only.
pub(crate) struct Ring {
    pub(crate) layout: RingLayout,
    /// The next free byte: the generation being written in the high 32
    /// bits, the offset in its segment in the low 32 (a segment may fill
    /// up exactly: its offset is then the segment size).
    pub(crate) cursor: AtomicU64,
    /// The highest generation whose segment is prepared.
    prepared: AtomicU64,
    /// Per slot: the generation it holds (ready for records), or
    /// [`RETIRED`] while it is being prepared for the next.
    slot_gen: Box<[AtomicU64]>,
    /// Per slot: handlers (and normal-context writers) between their check
    /// of `slot_gen` and the last write of their record into it.
    inflight: Box<[AtomicU32]>,
    prepare_lock: Mutex<()>,
}

/// Where a record was reserved: its generation and file offset.
#[derive(Clone, Copy)]
pub(crate) struct Reserved {
    pub(crate) generation: u64,
    pub(crate) slot: u64,
    /// Offset of the record within its segment.
    pub(crate) offset: u64,
}

/// What [`Ring::try_reserve`] found.
pub(crate) enum Reserve {
    Done(Reserved),
    /// The generation the cursor is in changed since the caller looked:
    /// encode again (a sample's first in a segment is a keyframe).
    Moved,
    /// No room: the next segment is not prepared yet.
    Full,
}

impl Ring {
    /// A ring for `layout`, whose segments must be smaller than 4 GiB
    /// (the cursor holds an offset in 32 bits).
    pub(crate) fn new(layout: RingLayout) -> Ring {
        assert!(
            layout.segment_size < 1 << 32,
            "ring segments of 4 GiB or more"
        );
        let n = layout.segments as usize;
        Ring {
            layout,
            cursor: AtomicU64::new(SEGMENT_HEADER_SIZE),
            prepared: AtomicU64::new(0),
            slot_gen: (0..n).map(|_| AtomicU64::new(RETIRED)).collect(),
            inflight: (0..n).map(|_| AtomicU32::new(0)).collect(),
            prepare_lock: Mutex::new(()),
        }
    }

    /// The generation the cursor is in. Async-signal-safe.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.cursor.load(SeqCst) >> 32
    }

    /// Reserves `len` bytes in generation `generation` (the caller encoded
    /// for it), moving on to the next generation if this one is full and
    /// the next is prepared. On `Done`, the caller is counted in the slot's
    /// in-flight writers: it writes and publishes its record, then calls
    /// [`release`](Self::release). Async-signal-safe: atomics only.
    pub(crate) fn try_reserve(&self, generation: u64, len: u64) -> Reserve {
        let size = self.layout.segment_size;
        if len > size - SEGMENT_HEADER_SIZE {
            return Reserve::Full;
        }
        loop {
            let cur = self.cursor.load(SeqCst);
            let (g, off) = (cur >> 32, cur & 0xffff_ffff);
            if g != generation {
                return Reserve::Moved;
            }
            if off + len > size {
                // This segment is done: on to the next, if it is ready.
                // Whoever wins the swap, the caller encodes again.
                if self.prepared.load(SeqCst) <= g {
                    return Reserve::Full;
                }
                let _ = self.cursor.compare_exchange(
                    cur,
                    ((g + 1) << 32) | SEGMENT_HEADER_SIZE,
                    SeqCst,
                    SeqCst,
                );
                return Reserve::Moved;
            }
            let slot = g % u64::from(self.layout.segments);
            let inflight = &self.inflight[slot as usize];
            inflight.fetch_add(1, SeqCst);
            // The preparer marks a slot retired before it looks at the
            // in-flight count, and we count ourselves before we look at the
            // mark: one of us sees the other.
            if self.slot_gen[slot as usize].load(SeqCst) != g {
                inflight.fetch_sub(1, SeqCst);
                return Reserve::Full;
            }
            if self
                .cursor
                .compare_exchange(cur, cur + len, SeqCst, SeqCst)
                .is_ok()
            {
                return Reserve::Done(Reserved {
                    generation: g,
                    slot,
                    offset: off,
                });
            }
            inflight.fetch_sub(1, SeqCst);
        }
    }

    /// The record reserved at `r` is written and committed.
    #[inline]
    pub(crate) fn release(&self, r: &Reserved) {
        self.inflight[r.slot as usize].fetch_sub(1, SeqCst);
    }

    /// How far the records of generation `g` may reach within its segment:
    /// the cursor while `g` is being written, the segment's end after.
    #[inline]
    pub(crate) fn limit(&self, g: u64) -> u64 {
        let cur = self.cursor.load(SeqCst);
        if cur >> 32 == g {
            cur & 0xffff_ffff
        } else {
            self.layout.segment_size
        }
    }

    /// On the ring's first lap, makes the pages of the current segment from
    /// the cursor to [`PREFAULT_WINDOW`] past it present and writable (an
    /// atomic add of 0 per page, which leaves any byte a writer stores
    /// meanwhile as it is), so that the handler takes no page fault there.
    /// Later laps write into segments that preparing zeroed whole. Normal
    /// context.
    ///
    /// # Safety
    /// `map` must point to a writable mapping of the whole file.
    pub(crate) unsafe fn prefault_current(&self, map: *mut u8) {
        let cur = self.cursor.load(SeqCst);
        let (g, off) = (cur >> 32, cur & 0xffff_ffff);
        let n = u64::from(self.layout.segments);
        if g >= n || self.slot_gen[(g % n) as usize].load(SeqCst) != g {
            return;
        }
        let base = self.layout.slot_offset(g % n);
        let end = self.layout.segment_size.min(off + PREFAULT_WINDOW);
        let mut at = off & !4095;
        while at < end {
            let byte = &*(map.add((base + at) as usize) as *const std::sync::atomic::AtomicU8);
            byte.fetch_add(0, SeqCst);
            at += 4096;
        }
    }

    /// Prepares generations up to `ahead` past the one being written.
    /// Normal context. `map` is the start of the file's mapping, whose
    /// whole ring is allocated. Returns whether they are all prepared (a
    /// slot a writer is still in is left for a later call).
    ///
    /// # Safety
    /// `map` must point to a writable mapping of the whole file.
    pub(crate) unsafe fn prepare_ahead(&self, map: *mut u8, ahead: u64) -> bool {
        let _g = self.prepare_lock.lock().unwrap_or_else(|e| e.into_inner());
        let want = self.generation() + ahead;
        loop {
            let next =
                if self.slot_gen[0].load(SeqCst) == RETIRED && self.prepared.load(SeqCst) == 0 {
                    0
                } else {
                    self.prepared.load(SeqCst) + 1
                };
            if next > want {
                return true;
            }
            if !self.prepare(map, next) {
                return false;
            }
        }
    }

    /// Prepares generation `h` in its slot. See the module docs for the
    /// order of the steps.
    unsafe fn prepare(&self, map: *mut u8, h: u64) -> bool {
        let n = u64::from(self.layout.segments);
        let slot = h % n;
        let state = &self.slot_gen[slot as usize];
        state.store(RETIRED, SeqCst);
        if self.inflight[slot as usize].load(SeqCst) != 0 {
            // A writer still finishing a record of the old generation (it
            // was preempted for a whole lap of the ring): next time.
            return false;
        }
        let base = map.add(self.layout.slot_offset(slot) as usize);
        if h >= n {
            // The old generation leaves the trace before any of its bytes
            // change: a reader or a crash from here on never looks at it.
            let oldest = &*(map.add(OLDEST_AT) as *const AtomicU64);
            oldest.fetch_max(h - n + 1, SeqCst);
        }
        // Zero the slot, its header last: the committed length and the
        // generation were the old ones' until now. Writing faults the pages
        // in, so the handler finds them present.
        let gen = &*(base.add(SEG_GEN_AT as usize) as *const AtomicU64);
        gen.store(RETIRED, SeqCst);
        // On the first lap the slot is still the zeroes of a new file:
        // only its first pages are made present now (the rest as the
        // cursor nears them, `prefault_current`), so that starting a
        // recording does not fault in megabytes.
        let zero = if h < n {
            self.layout.segment_size.min(PREFAULT_WINDOW)
        } else {
            self.layout.segment_size
        };
        std::ptr::write_bytes(
            base.add(SEGMENT_HEADER_SIZE as usize),
            0,
            (zero - SEGMENT_HEADER_SIZE) as usize,
        );
        let committed = &*(base.add(SEG_COMMITTED_AT as usize) as *const AtomicU64);
        committed.store(SEGMENT_HEADER_SIZE, SeqCst);
        std::ptr::copy_nonoverlapping(
            segment_check(h).to_le_bytes().as_ptr(),
            base.add(SEG_CHECK_AT as usize),
            2,
        );
        std::sync::atomic::fence(SeqCst);
        gen.store(h, SeqCst);
        state.store(h, SeqCst);
        self.prepared.store(h, SeqCst);
        true
    }
}
