//! Reading traces (SPEC.md §4): map, iterate records without copying, decode
//! samples with per-thread delta state, and stop cleanly at any damage.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Damage, ReadError};
use crate::header::{Header, HEADER_SIZE};
use crate::records::{flags, kind, RawSample, Record};
use crate::writer::MAX_FRAMES;
use crate::{crc16, varint};

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// A trace opened for reading.
pub struct Trace {
    bytes: Bytes,
    header: Header,
    /// Where records end: the committed length, or the file's end if that is shorter.
    data_end: u64,
    /// Whether `data_end` is the committed length (not a fallback to the file's end).
    committed: bool,
    warnings: Vec<String>,
}

impl Trace {
    /// Maps the file at `path` and checks its header.
    pub fn open(path: &Path) -> Result<Trace, ReadError> {
        let io = |source| ReadError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Trace::from_bytes(Vec::new());
        }
        // SAFETY: the map is read-only; a writer still appending to the file
        // only ever adds bytes past the committed length we read below.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Trace::new(Bytes::Mapped(map))
    }

    /// Reads a trace held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Trace, ReadError> {
        Trace::new(Bytes::Owned(bytes))
    }

    fn new(bytes: Bytes) -> Result<Trace, ReadError> {
        let b: &[u8] = match &bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        let header = Header::decode(b)?;
        let file_len = b.len() as u64;
        let mut warnings = Vec::new();
        let committed = header.committed_len >= u64::from(header.header_size)
            && header.committed_len <= file_len;
        let data_end = if header.committed_len < u64::from(header.header_size) {
            warnings.push(format!(
                "the header's committed length ({}) is damaged; reading to the end of the file",
                header.committed_len
            ));
            file_len
        } else if header.committed_len > file_len {
            warnings.push(format!(
                "the trace is cut short: its header says {} bytes were written but the file has {}",
                header.committed_len, file_len
            ));
            file_len
        } else {
            header.committed_len
        };
        Ok(Trace {
            bytes,
            header,
            data_end,
            committed,
            warnings,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    /// Problems with the trace as a whole that do not stop reading.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Offset where the records end.
    pub fn data_end(&self) -> u64 {
        self.data_end
    }

    /// The framed records, checked but not decoded.
    pub fn records(&self) -> RecordIter<'_> {
        RecordIter {
            data: &self.bytes()[..self.data_end as usize],
            pos: usize::from(self.header.header_size).max(HEADER_SIZE),
            failed: false,
            zero_is_damage: self.committed,
        }
    }

    /// Decoded events, samples expanded.
    pub fn decoder(&self) -> Decoder<'_> {
        Decoder {
            records: self.records(),
            threads: HashMap::new(),
            stack: Vec::new(),
            failed: false,
        }
    }
}

/// A record as framed in the file.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Offset of the kind byte in the file.
    pub offset: u64,
    pub kind: u8,
    pub payload: &'a [u8],
}

/// Iterates framed records, stopping after the first error.
pub struct RecordIter<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
    zero_is_damage: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates framed records in `data`, which holds records only.
    pub fn for_tests(data: &'a [u8]) -> Self {
        RecordIter {
            data,
            pos: 0,
            failed: false,
            zero_is_damage: true,
        }
    }

    /// Offset of the next record.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    fn damaged(
        &mut self,
        offset: usize,
        damage: Damage,
    ) -> Option<Result<RawRecord<'a>, ReadError>> {
        self.failed = true;
        Some(Err(ReadError::Damaged {
            offset: offset as u64,
            damage,
        }))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RawRecord<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let kind = self.data[start];
        if kind == 0 {
            if self.zero_is_damage {
                return self.damaged(
                    start,
                    Damage::BadValue("record kind 0 inside the committed data"),
                );
            }
            // Unwritten space: the end of the data (SPEC.md §4.3).
            self.pos = self.data.len();
            return None;
        }
        let mut p = start + 1;
        let len = match varint::get(self.data, &mut p) {
            Ok(len) => len,
            Err(varint::VarintError::Truncated) => return self.damaged(start, Damage::PastEnd),
            Err(varint::VarintError::Overflow) => {
                return self.damaged(start, Damage::VarintOverflow)
            }
        };
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| p.checked_add(l))
            .and_then(|e| e.checked_add(2));
        let Some(end) = end.filter(|&e| e <= self.data.len()) else {
            return self.damaged(start, Damage::PastEnd);
        };
        let stored = u16::from_le_bytes([self.data[end - 2], self.data[end - 1]]);
        let computed = crc16(&self.data[start..end - 2]);
        if stored != computed {
            return self.damaged(start, Damage::BadCheck { stored, computed });
        }
        self.pos = end;
        Some(Ok(RawRecord {
            offset: start as u64,
            kind,
            payload: &self.data[p..end - 2],
        }))
    }
}

/// A decoded sample. `stack` is innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample<'a> {
    pub thread: u32,
    pub flags: u8,
    /// Monotonic time in ns.
    pub time_ns: u64,
    /// Thread CPU time in ns.
    pub cpu_ns: u64,
    /// CPU ns since this thread's previous sample (0 for its first).
    pub cpu_delta_ns: u64,
    pub stack: &'a [u64],
    /// Offset of the record in the file.
    pub offset: u64,
}

/// What a [`Decoder`] yields.
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
    time: u64,
    cpu: u64,
    stack: Vec<u64>,
}

/// Decodes a trace's records in order. Not an `Iterator` because samples
/// borrow the decoder's stack buffer; use `while let Some(e) = d.next()`.
pub struct Decoder<'a> {
    records: RecordIter<'a>,
    threads: HashMap<u32, ThreadState>,
    stack: Vec<u64>,
    failed: bool,
}

impl<'a> Decoder<'a> {
    /// The next event; after an error, `None`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<Event<'_>, ReadError>> {
        if self.failed {
            return None;
        }
        let rec = match self.records.next()? {
            Ok(r) => r,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if rec.kind == kind::SAMPLE {
            return match self.sample(rec) {
                Ok(mut s) => {
                    s.stack = &self.stack;
                    Some(Ok(Event::Sample(s)))
                }
                Err(e) => {
                    self.failed = true;
                    Some(Err(e))
                }
            };
        }
        let result = match Record::decode(rec.kind, rec.payload, rec.offset) {
            Ok(Some(r)) => Ok(Event::Record(r)),
            Ok(None) => Ok(Event::Unknown {
                offset: rec.offset,
                kind: rec.kind,
            }),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }

    /// Decodes a sample into `self.stack`; the returned sample's `stack` is
    /// left empty for the caller to point at it.
    fn sample(&mut self, rec: RawRecord<'_>) -> Result<Sample<'static>, ReadError> {
        let raw = RawSample::decode(rec.payload, rec.offset)?;
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
        let (time, cpu, cpu_delta) = if keyframe {
            (raw.time, raw.cpu, 0)
        } else {
            (
                st.time.saturating_add(raw.time),
                st.cpu.saturating_add(raw.cpu),
                raw.cpu,
            )
        };
        let prev_len = st.stack.len();
        if raw.keep > prev_len as u64 {
            return Err(damage(Damage::KeepBeyondStack {
                keep: raw.keep,
                prev: prev_len,
            }));
        }
        let keep = raw.keep as usize;
        // No writer records more than MAX_FRAMES frames; a deeper stack would
        // let each few-byte record copy an ever longer stack (quadratic time).
        // keep <= prev_len <= MAX_FRAMES and new <= payload length: no overflow.
        if keep as u64 + raw.new > MAX_FRAMES as u64 {
            return Err(damage(Damage::BadValue("stack deeper than 1024 frames")));
        }
        // new frames, outermost first; then reversed to innermost first.
        self.stack.clear();
        let mut reference = if keep > 0 {
            st.stack[prev_len - keep]
        } else {
            0
        };
        let mut pos = 0;
        for _ in 0..raw.new {
            let d = varint::get(raw.frames, &mut pos).map_err(|e| {
                damage(match e {
                    varint::VarintError::Truncated => Damage::FieldPastEnd,
                    varint::VarintError::Overflow => Damage::VarintOverflow,
                })
            })?;
            reference = reference.wrapping_add(varint::unzigzag(d) as u64);
            self.stack.push(reference);
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
            time_ns: time,
            cpu_ns: cpu,
            cpu_delta_ns: cpu_delta,
            stack: &[],
            offset: rec.offset,
        })
    }
}
