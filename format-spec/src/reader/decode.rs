//! Decoding samples (SPEC.md §2.4): each thread's delta state, the frame
//! codes, and the scanner the recorder runs over a trace it is writing.

use std::collections::HashMap;

use super::{RawRecord, RecordIter};
use crate::coding::{Recent, CODE_LITERAL, CODE_NONE, MAX_FRAMES};
use crate::error::{Damage, ReadError};
use crate::records::{flags, kind, RawSample, Record};
use crate::{varint, MAX_NO_CPU_RUN};

/// A decoded sample. `stack` is innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    pub thread: u32,
    pub flags: u8,
    /// Monotonic time in ns.
    pub time_ns: u64,
    /// Thread CPU time in ns. For a sample flagged `NO_CPU` (the recorder
    /// did not read the clock), the CPU time of the thread's last sample
    /// that had it.
    pub cpu_ns: u64,
    /// CPU ns since this thread's previous sample that had a CPU time (0 for
    /// its first, and for `NO_CPU` samples). So a sample after `NO_CPU`
    /// samples carries their CPU time too: [`crate::spread_cpu`] shares it
    /// out as SPEC.md §2.4 says.
    pub cpu_delta_ns: u64,
    pub stack: &'a [u64],
    /// Offset of the record in the file.
    pub offset: u64,
}

/// What a [`Decoder`](crate::Decoder) yields.
#[derive(Debug)]
pub enum Event<'a> {
    Record(Record),
    Sample(Sample<'a>),
    /// A record of a kind this reader does not know, skipped (SPEC.md §1.2).
    Unknown {
        offset: u64,
        kind: u8,
    },
}

#[derive(Default)]
struct ThreadState {
    /// Time of the previous sample, in µs.
    time: u64,
    /// CPU time and time of the previous sample that had a CPU time, in µs.
    cpu: u64,
    cpu_time: u64,
    /// `NO_CPU` samples since then.
    no_cpu_run: u32,
    stack: Vec<u64>,
    recent: Option<Box<Recent>>,
}

/// What decoding samples needs to remember: the format's major version, the
/// run's interval and each thread's previous sample.
#[derive(Default)]
pub(super) struct DecodeState {
    /// 2 for a 2.x trace; anything else reads the current format.
    major: u16,
    interval_us: u64,
    threads: HashMap<u32, ThreadState>,
    stack: Vec<u64>,
}

/// Decodes the samples of a trace that is still being written, a piece at a
/// time: the recorder uses it to learn which code addresses were sampled.
#[derive(Default)]
pub struct SampleScanner {
    state: DecodeState,
    /// File offset of the next record.
    pos: u64,
    failed: bool,
}

impl SampleScanner {
    /// A scanner starting at the first record after a header of `header_size` bytes.
    pub fn new(header_size: u64) -> SampleScanner {
        SampleScanner {
            pos: header_size,
            state: DecodeState::new(crate::VERSION_MAJOR),
            failed: false,
        }
    }

    /// File offset of the first record not scanned yet.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The run's sampling interval, which sample time deltas are relative
    /// to: taken from the run-info record when the scanner reads it, but a
    /// scanner of a ring's samples (SPEC.md §5) never does.
    pub fn set_interval(&mut self, interval_ns: u64) {
        self.state.interval_us = interval_ns / 1000;
    }

    /// Goes on scanning at file offset `pos` (the next segment of a ring,
    /// whose samples start with keyframes).
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// Decodes the records in `data`, the bytes of the file from
    /// [`position`](Self::position) up to a record boundary (the committed
    /// length), calling `f` with each sample. Stops for good at damage.
    pub fn scan(&mut self, data: &[u8], f: &mut dyn FnMut(&Sample<'_>)) -> Result<(), ReadError> {
        if self.failed {
            return Ok(());
        }
        let mut records = RecordIter {
            buf: data,
            rest: &[],
            data,
            pos: 0,
            base: self.pos,
            failed: false,
            zero_is_damage: true,
        };
        for rec in records.by_ref() {
            let ev = rec.and_then(|r| self.state.event(r));
            match ev {
                Ok(Event::Sample(s)) => f(&s),
                Ok(_) => {}
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
        self.pos = records.position();
        Ok(())
    }
}

impl DecodeState {
    pub(super) fn new(major: u16) -> DecodeState {
        DecodeState {
            major,
            ..DecodeState::default()
        }
    }

    pub(super) fn event(&mut self, rec: RawRecord<'_>) -> Result<Event<'_>, ReadError> {
        if rec.kind == kind::SAMPLE {
            let mut s = self.sample(rec)?;
            s.stack = &self.stack;
            return Ok(Event::Sample(s));
        }
        match Record::decode(rec.kind, rec.payload, rec.offset)? {
            Some(r) => {
                if let Record::RunInfo(ri) = &r {
                    self.interval_us = ri.interval_ns / 1000;
                }
                Ok(Event::Record(r))
            }
            None => Ok(Event::Unknown {
                offset: rec.offset,
                kind: rec.kind,
            }),
        }
    }

    /// Decodes a sample into `self.stack`; the returned sample's `stack` is
    /// left empty for the caller to point at it.
    fn sample(&mut self, rec: RawRecord<'_>) -> Result<Sample<'static>, ReadError> {
        let raw = RawSample::decode_version(rec.payload, rec.offset, self.major)?;
        let damage = |damage| ReadError::Damaged {
            offset: rec.offset,
            damage,
        };
        let keyframe = raw.flags & flags::KEYFRAME != 0;
        let st = match self.threads.get_mut(&raw.thread) {
            Some(st) => st,
            None if keyframe => self.threads.entry(raw.thread).or_default(),
            None => return Err(damage(Damage::NoKeyframe(raw.thread))),
        };
        // Δt = interval + the svarint; Δcpu = Δt' + the other, where Δt'
        // runs from the last sample with a CPU time (the previous sample in
        // format 2). Negative deltas and sums past 64 bits are damage.
        let add = |prev: u64, d: i128| {
            u64::try_from(d)
                .ok()
                .and_then(|d| prev.checked_add(d))
                .ok_or_else(|| damage(Damage::BadValue("time or CPU time delta")))
        };
        let time = if keyframe {
            raw.time
        } else {
            add(
                st.time,
                i128::from(self.interval_us) + i128::from(varint::unzigzag(raw.time)),
            )?
        };
        // `decode_version` refuses a keyframe without a CPU field.
        let (cpu, cpu_delta) = match raw.cpu {
            Some(c) if keyframe => (c, 0),
            Some(c) => {
                let dc = i128::from(time - st.cpu_time) + i128::from(varint::unzigzag(c));
                (add(st.cpu, dc)?, dc as u64)
            }
            None => {
                st.no_cpu_run += 1;
                if st.no_cpu_run > MAX_NO_CPU_RUN {
                    return Err(damage(Damage::BadValue(
                        "more than 255 samples in a row without CPU time",
                    )));
                }
                (st.cpu, 0)
            }
        };
        if raw.cpu.is_some() {
            st.no_cpu_run = 0;
            st.cpu_time = time;
        }
        let prev_len = st.stack.len();
        if raw.keep > prev_len as u64 {
            return Err(damage(Damage::KeepBeyondStack {
                keep: raw.keep,
                prev: prev_len,
            }));
        }
        let keep = raw.keep as usize;
        let recent = st.recent.get_or_insert_with(|| Box::new(Recent::new()));
        if keyframe {
            **recent = Recent::new();
        }
        // New frames, outermost first; then reversed to innermost first.
        self.stack.clear();
        let mut reference = if keep > 0 {
            st.stack[prev_len - keep]
        } else {
            0
        };
        let frames = raw.frames;
        let mut pos = 0;
        while pos < frames.len() {
            let codes = frames[pos];
            pos += 1;
            for (i, code) in [codes & 0xf, codes >> 4].into_iter().enumerate() {
                let addr = match code {
                    CODE_NONE if i == 1 && pos == frames.len() => break,
                    CODE_NONE => return Err(damage(Damage::BadValue("frame code"))),
                    CODE_LITERAL => {
                        let d = varint::get(frames, &mut pos).map_err(|e| {
                            damage(match e {
                                varint::VarintError::Truncated => Damage::FieldPastEnd,
                                varint::VarintError::Overflow => Damage::VarintOverflow,
                            })
                        })?;
                        let addr = reference.wrapping_add(varint::unzigzag(d) as u64);
                        recent.insert(addr);
                        addr
                    }
                    slot => recent.take(usize::from(slot)).ok_or_else(|| {
                        damage(Damage::BadValue("frame code past the recent addresses"))
                    })?,
                };
                // No writer records more than MAX_FRAMES frames; a deeper
                // stack would let each few-byte record copy an ever longer
                // stack (quadratic time).
                if keep + self.stack.len() >= MAX_FRAMES {
                    return Err(damage(Damage::BadValue("stack deeper than 1024 frames")));
                }
                self.stack.push(addr);
                reference = addr;
            }
        }
        self.stack.reverse();
        self.stack.extend_from_slice(&st.stack[prev_len - keep..]);
        st.stack.clear();
        st.stack.extend_from_slice(&self.stack);
        st.time = time;
        st.cpu = cpu;
        Ok(Sample {
            thread: raw.thread,
            flags: raw.flags,
            time_ns: time.saturating_mul(1000),
            cpu_ns: cpu.saturating_mul(1000),
            cpu_delta_ns: cpu_delta.saturating_mul(1000),
            stack: &[],
            offset: rec.offset,
        })
    }
}
