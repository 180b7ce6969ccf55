//! The sample encoder: a thread's delta state and the scratch space a
//! sample record is encoded in (SPEC.md §2.4). Async-signal-safe: it
//! allocates nothing after [`SampleEncoder::new`].

use crate::coding::{Recent, CODE_LITERAL, CODE_NONE, MAX_FRAMES, MAX_SAMPLE_RECORD};
use crate::records::{flags, kind, SHORT_SAMPLE_MAX};
use crate::{crc16, varint};

/// A sample to append, stack innermost first.
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a> {
    pub time_ns: u64,
    /// Ignored with `NO_CPU` (unless [`SampleEncoder::needs_cpu`]).
    pub cpu_ns: u64,
    /// `HOST`, `TRUNCATED`, `BROKEN`, `PROLOGUE`, and `NO_CPU` when the CPU
    /// clock was not read; `KEYFRAME` is the encoder's business, and so is
    /// dropping `NO_CPU` where the format needs a CPU time.
    pub flags: u8,
    pub stack: &'a [u64],
}

/// Per-thread delta state and scratch space for [`TraceWriter::append_sample`](crate::TraceWriter::append_sample).
///
/// Preallocate one per sampled thread (it is about 20 KiB; box it) and use it
/// from that thread's signal handler only.
pub struct SampleEncoder {
    thread: u32,
    started: bool,
    /// The previous sample's time, in whole µs.
    prev_time: u64,
    /// The CPU time and the time of the previous sample with a CPU time.
    prev_cpu: u64,
    prev_cpu_time: u64,
    /// `NO_CPU` samples written since then.
    no_cpu_run: u32,
    /// The previous sample's flags, as its [`SampleRef`] gave them.
    prev_flags: u8,
    prev_len: usize,
    prev: [u64; MAX_FRAMES],
    recent: Recent,
    /// The table as it will be once the encoded sample is written.
    next_recent: Recent,
    pub(crate) scratch: [u8; MAX_SAMPLE_RECORD],
    /// The ring generation of the previous sample written (ring layout).
    generation: u64,
    /// What [`encode`](Self::encode) decided, for [`commit`](Self::commit):
    /// a keyframe, in that generation.
    pending_key: bool,
    pending_generation: u64,
}

impl SampleEncoder {
    pub fn new(thread: u32) -> Box<SampleEncoder> {
        Box::new(SampleEncoder {
            thread,
            started: false,
            prev_time: 0,
            prev_cpu: 0,
            prev_cpu_time: 0,
            no_cpu_run: 0,
            prev_flags: 0,
            prev_len: 0,
            prev: [0; MAX_FRAMES],
            recent: Recent::new(),
            next_recent: Recent::new(),
            scratch: [0; MAX_SAMPLE_RECORD],
            generation: 0,
            pending_key: false,
            pending_generation: 0,
        })
    }

    pub fn thread(&self) -> u32 {
        self.thread
    }

    /// Whether the next sample must carry a CPU time: the thread's first
    /// (a keyframe), or one after [`MAX_NO_CPU_RUN`](crate::MAX_NO_CPU_RUN)
    /// samples without. A sample flagged `NO_CPU` then is written with its
    /// `cpu_ns`, so read the clock for it.
    #[inline]
    pub fn needs_cpu(&self) -> bool {
        !self.started || self.no_cpu_run >= crate::MAX_NO_CPU_RUN
    }

    /// The previous sample written: its time in whole µs and its flags (as
    /// its [`SampleRef`] gave them).
    #[inline]
    pub fn previous(&self) -> (u64, u8) {
        (self.prev_time, self.prev_flags)
    }

    /// The time, in whole µs, of the last sample written with a CPU time.
    #[inline]
    pub fn cpu_read_time(&self) -> u64 {
        self.prev_cpu_time
    }

    /// Whether sample `s` goes without its CPU time (`key`: it is a
    /// keyframe, which always has one).
    fn skips_cpu(&self, s: &SampleRef<'_>, key: bool) -> bool {
        s.flags & flags::NO_CPU != 0 && !self.needs_cpu() && !key
    }

    /// The sample's time and CPU time in whole µs, never before the
    /// previous sample's (so that deltas are never negative); without its
    /// CPU time (`no_cpu`, see [`skips_cpu`](Self::skips_cpu)), the last
    /// one written.
    fn times(&self, s: &SampleRef<'_>, no_cpu: bool) -> (u64, u64) {
        let (t, c) = (s.time_ns / 1000, s.cpu_ns / 1000);
        if no_cpu || (self.started && s.flags & flags::NO_CPU != 0 && !self.needs_cpu()) {
            // Without a reading (or a keyframe the ring forced on a sample
            // whose clock was not read: it carries the last reading, and the
            // next reading's delta covers the time since).
            (t.max(self.prev_time), self.prev_cpu)
        } else if self.started {
            (t.max(self.prev_time), c.max(self.prev_cpu))
        } else {
            (t, c)
        }
    }

    /// Encodes a whole sample record (framing and check included) into the
    /// scratch space and returns its length. `interval_us` is the run's
    /// sampling interval in whole µs; `generation`, in the ring layout, the
    /// segment generation it is for (the thread's first sample there is a
    /// keyframe, SPEC.md §5.2). Does not update the delta state.
    pub(crate) fn encode(
        &mut self,
        s: &SampleRef<'_>,
        interval_us: u64,
        generation: Option<u64>,
    ) -> usize {
        let key = !self.started || generation.is_some_and(|g| g != self.generation);
        self.pending_key = key;
        self.pending_generation = generation.unwrap_or(0);
        let stack = &s.stack[..s.stack.len().min(MAX_FRAMES)];
        let mut sflags = s.flags & flags::ALL & !(flags::KEYFRAME | flags::NO_CPU);
        if s.stack.len() > MAX_FRAMES {
            sflags |= flags::TRUNCATED;
        }
        let no_cpu = self.skips_cpu(s, key);
        if no_cpu {
            sflags |= flags::NO_CPU;
        }
        let (t, c) = self.times(s, no_cpu);
        let (time, cpu, keep) = if !key {
            let prev = &self.prev[..self.prev_len];
            let max = stack.len().min(prev.len());
            let mut keep = 0;
            while keep < max && stack[stack.len() - 1 - keep] == prev[prev.len() - 1 - keep] {
                keep += 1;
            }
            // Deltas are never negative (see `times`); i64 holds any
            // realistic span of µs.
            // The CPU delta is predicted from the time since the last
            // sample with a CPU time (the previous one, unless some went
            // without).
            let dt = (t - self.prev_time) as i64;
            let dtc = (t - self.prev_cpu_time) as i64;
            let dc = (c - self.prev_cpu) as i64;
            (
                varint::zigzag(dt.wrapping_sub(interval_us as i64)),
                varint::zigzag(dc.wrapping_sub(dtc)),
                keep,
            )
        } else {
            sflags |= flags::KEYFRAME;
            (t, c, 0)
        };
        self.next_recent = if !key { self.recent } else { Recent::new() };
        let new = stack.len() - keep;
        // Payload first, leaving room in front for the kind and length.
        const START: usize = 6;
        let buf = &mut self.scratch;
        let mut p = START;
        p = varint::put(buf, p, (u64::from(self.thread) << 6) | u64::from(sflags));
        p = varint::put(buf, p, time);
        if !no_cpu {
            p = varint::put(buf, p, cpu);
        }
        p = varint::put(buf, p, keep as u64);
        // New frames, outermost first, two codes to a byte.
        let mut reference = if keep > 0 { stack[new] } else { 0 };
        let recent = &mut self.next_recent;
        let mut i = new;
        while i > 0 {
            let code_at = p;
            p += 1;
            let mut codes = [CODE_NONE; 2];
            for code in codes.iter_mut() {
                if i == 0 {
                    break;
                }
                i -= 1;
                let addr = stack[i];
                *code = match recent.find(addr) {
                    Some(slot) => {
                        recent.take(slot);
                        slot as u8
                    }
                    None => {
                        p = varint::put(
                            buf,
                            p,
                            varint::zigzag(addr.wrapping_sub(reference) as i64),
                        );
                        recent.insert(addr);
                        CODE_LITERAL
                    }
                };
                reference = addr;
            }
            buf[code_at] = codes[0] | (codes[1] << 4);
        }
        let payload_len = p - START;
        let begin = if payload_len <= SHORT_SAMPLE_MAX {
            let begin = START - 1;
            buf[begin] = kind::SHORT_SAMPLE | payload_len as u8;
            begin
        } else {
            let len_len = varint::len(payload_len as u64);
            let begin = START - 1 - len_len;
            buf[begin] = kind::SAMPLE;
            varint::put(buf, begin + 1, payload_len as u64);
            begin
        };
        let check = crc16(&buf[begin..p]);
        buf[p..p + 2].copy_from_slice(&check.to_le_bytes());
        // Move the record to the start of the scratch space.
        let total = p + 2 - begin;
        buf.copy_within(begin..begin + total, 0);
        total
    }

    pub(crate) fn commit(&mut self, s: &SampleRef<'_>) {
        let stack = &s.stack[..s.stack.len().min(MAX_FRAMES)];
        let no_cpu = self.skips_cpu(s, self.pending_key);
        let (t, c) = self.times(s, no_cpu);
        self.generation = self.pending_generation;
        if no_cpu {
            self.no_cpu_run += 1;
        } else {
            self.no_cpu_run = 0;
            self.prev_cpu = c;
            self.prev_cpu_time = t;
        }
        self.prev[..stack.len()].copy_from_slice(stack);
        self.prev_len = stack.len();
        self.prev_time = t;
        self.prev_flags = s.flags;
        self.recent = self.next_recent;
        self.started = true;
    }
}
