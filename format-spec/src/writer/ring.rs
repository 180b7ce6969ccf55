//! The writer's side of the ring layout (SPEC.md §5): samples and
//! control records into the segment the cursor is in, and the committed
//! bytes of a segment for the recorder's own reader.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use super::{Dropped, TraceWriter, WriteError};
use crate::encoder::{SampleEncoder, SampleRef};
use crate::ring::{
    Reserve, Reserved, Ring, RingLayout, SEGMENT_HEADER_SIZE, SEG_COMMITTED_AT, SEG_GEN_AT,
};

impl TraceWriter {
    /// [`append_sample`](Self::append_sample) in the ring layout: a
    /// thread's first sample in each segment is a keyframe (SPEC.md §5.2),
    /// so the sample is encoded for the generation it is reserved in, and
    /// again if the cursor moved on meanwhile. Async-signal-safe.
    pub(super) fn append_sample_ring(
        &self,
        ring: &Ring,
        enc: &mut SampleEncoder,
        s: &SampleRef<'_>,
    ) -> Result<(), Dropped> {
        let interval_us = self.interval_ns.load(SeqCst) / 1000;
        // Bounded: each round either reserves, or finds the cursor moved to
        // a later generation (which takes a segment's worth of records).
        for _ in 0..64 {
            let generation = ring.generation();
            let len = enc.encode(s, interval_us, Some(generation));
            match ring.try_reserve(generation, len as u64) {
                Reserve::Done(r) => {
                    self.publish_ring(ring, &r, &enc.scratch[..len]);
                    enc.commit(s);
                    self.samples_written.fetch_add(1, SeqCst);
                    return Ok(());
                }
                Reserve::Moved => continue,
                Reserve::Full => break,
            }
        }
        self.samples_dropped.fetch_add(1, SeqCst);
        Err(Dropped::Full)
    }

    /// Copies a framed record into the segment space reserved at `r`,
    /// publishes it, commits it in its segment and leaves the slot.
    /// Async-signal-safe.
    fn publish_ring(&self, ring: &Ring, r: &Reserved, rec: &[u8]) {
        let base = ring.layout.slot_offset(r.slot);
        let at = base + r.offset;
        // SAFETY: [at, at + len) was reserved by us alone, in a prepared
        // segment of the mapped, allocated ring, which nobody prepares
        // again while we are counted in its in-flight writers.
        unsafe { self.place(at, rec) };
        // The segment's committed length: the same ordered commit as the
        // linear log's (SPEC.md §3), within the segment.
        // SAFETY: 8-aligned (segments are whole pages), inside the mapping,
        // only accessed atomically.
        let committed = unsafe {
            &*(self
                .map
                .as_mut_ptr()
                .add((base + SEG_COMMITTED_AT) as usize) as *const AtomicU64)
        };
        let mut c = r.offset;
        if committed.load(SeqCst) == c {
            loop {
                if c >= ring.limit(r.generation) || self.kind_byte(base + c).load(SeqCst) == 0 {
                    break;
                }
                // SAFETY: the record at c is published.
                let len = unsafe { self.framed_len(base + c) };
                if committed
                    .compare_exchange(c, c + len, SeqCst, SeqCst)
                    .is_err()
                {
                    break;
                }
                c += len;
            }
        }
        ring.release(r);
    }

    /// Writes a framed record into the ring (normal context), preparing the
    /// next segment itself if the housekeeper has not yet.
    pub(super) fn write_ring(&self, ring: &Ring, framed: &[u8]) -> Result<(), WriteError> {
        for _ in 0..1000 {
            let generation = ring.generation();
            match ring.try_reserve(generation, framed.len() as u64) {
                Reserve::Done(r) => {
                    self.publish_ring(ring, &r, framed);
                    return Ok(());
                }
                Reserve::Moved => continue,
                Reserve::Full => {
                    // SAFETY: the whole file is mapped and allocated.
                    if !unsafe { ring.prepare_ahead(self.map.as_mut_ptr(), 1) } {
                        std::thread::yield_now();
                    }
                }
            }
        }
        Err(WriteError::Full {
            path: self.path.clone(),
            len: framed.len() as u64,
        })
    }

    /// The committed records of ring generation `generation` from file
    /// offset `from` on (from the segment's first record if `from` is not
    /// inside its segment), with the file offset they start at, or `None` if the generation is not in the ring (overwritten, or not
    /// prepared yet). For the recorder's own reader of the samples, which
    /// runs on the thread that prepares segments: nothing overwrites the
    /// bytes while it reads them.
    pub fn ring_committed_since(&self, generation: u64, from: u64) -> Option<(u64, &[u8])> {
        let ring = self.ring.as_ref()?;
        let slot = generation % u64::from(ring.layout.segments);
        let base = ring.layout.slot_offset(slot);
        let word = |at: u64| {
            // SAFETY: 8-aligned words of a segment header, inside the
            // mapping, only accessed atomically.
            unsafe { &*(self.map.as_mut_ptr().add((base + at) as usize) as *const AtomicU64) }
                .load(SeqCst)
        };
        if word(SEG_GEN_AT) != generation {
            return None;
        }
        let end = word(SEG_COMMITTED_AT).min(ring.layout.segment_size);
        let from = if (base..base + ring.layout.segment_size).contains(&from) {
            from - base
        } else {
            0
        };
        let from = from.clamp(SEGMENT_HEADER_SIZE, end);
        // SAFETY: below the segment's committed length: published records
        // that nobody writes again until the slot is prepared anew.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add((base + from) as usize),
                (end - from) as usize,
            )
        };
        Some((base + from, bytes))
    }

    /// The generation the ring's cursor is in (0 for a linear log).
    pub fn ring_generation(&self) -> u64 {
        self.ring.as_ref().map_or(0, |r| r.generation())
    }

    /// The ring layout, for a bounded trace.
    pub fn ring_layout(&self) -> Option<RingLayout> {
        self.ring.as_ref().map(|r| r.layout)
    }
}
