//! Reading traces (SPEC.md §4): map, iterate records without copying, decode
//! samples with per-thread delta state, and stop cleanly at any damage.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

mod decode;

use decode::DecodeState;
pub use decode::{Event, Sample, SampleScanner};

use crate::error::{Damage, ReadError};
use crate::header::COMMITTED_OFFSET;
use crate::header::{Header, HEADER_SIZE};
use crate::records::{kind, AddressMapEntry, Record};
use crate::release::Behind;
use crate::ring::{
    segment_check, RingLayout, OLDEST_AT, SEGMENT_HEADER_SIZE, SEG_CHECK_AT, SEG_COMMITTED_AT,
    SEG_GEN_AT,
};
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
    /// A ring trace's records, in reading order (empty for a linear one,
    /// whose records are `bytes[header_size..data_end]`).
    chunks: Vec<Chunk>,
    ring: Option<RingSpan>,
    /// Whether a recorder still held the file open for writing when it
    /// was opened.
    being_written: bool,
}

/// A stretch of records: `bytes[start..end]`, which came from file offset
/// `file`.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    start: usize,
    end: usize,
    file: u64,
    /// Whether a zero kind byte in it is damage (committed data) rather
    /// than the end of what was written.
    zero_is_damage: bool,
}

/// What a reader found in a ring trace (SPEC.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSpan {
    pub layout: RingLayout,
    /// The oldest generation the header named when the reading began.
    pub oldest: u64,
    /// Generations read, in order from the oldest intact one.
    pub first: u64,
    pub count: u64,
    /// Generations overwritten by the recorder while they were being read
    /// (a trace still being written), left out.
    pub overwritten: u64,
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
        let mut t = Trace::new(Bytes::Mapped(map))?;
        t.being_written = locked_for_writing(&file);
        Ok(t)
    }

    /// Whether a recorder held the file open for writing when it was
    /// opened: the run was still going, and the trace holds what was
    /// committed by then (SPEC.md §3). Known on Linux only (open file
    /// description locks); `false` elsewhere and for traces in memory.
    pub fn being_written(&self) -> bool {
        self.being_written
    }

    /// For a ring trace, what the reader found in its ring.
    pub fn ring(&self) -> Option<&RingSpan> {
        self.ring.as_ref()
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
        if header.layout == crate::ring::LAYOUT_RING {
            return Trace::new_ring(b, header);
        }
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
            chunks: Vec::new(),
            ring: None,
            being_written: false,
        })
    }

    /// Reads a ring trace (SPEC.md §5.4): copies the intact generations,
    /// oldest first, and the linear part, into memory of its own, in that
    /// order, so that a recorder still writing the file can overwrite the
    /// ring behind the copy; generations it overwrote while they were being
    /// copied are left out. Records are then read in the order: the linear
    /// part up to its end record, the ring's, the end record.
    fn new_ring(b: &[u8], header: Header) -> Result<Trace, ReadError> {
        let layout = RingLayout::decode(b).map_err(ReadError::BadHeader)?;
        let file_len = b.len() as u64;
        let header_size = u64::from(header.header_size);
        if layout.ring_offset < header_size {
            return Err(ReadError::BadHeader("the ring starts inside the header"));
        }
        if header_size > file_len {
            return Err(ReadError::BadHeader(
                "its size runs past the end of the file",
            ));
        }
        // Reads a word the recorder may be changing: one load of 8 bytes.
        let word = |at: u64| -> Option<u64> {
            let at = usize::try_from(at).ok()?;
            if at.checked_add(8)? > b.len() {
                return None;
            }
            // SAFETY: in bounds; a byte array has no alignment needs.
            Some(u64::from_le_bytes(unsafe {
                std::ptr::read_volatile(b.as_ptr().add(at) as *const [u8; 8])
            }))
        };
        let mut warnings = Vec::new();
        let oldest = word(OLDEST_AT as u64).unwrap_or(0);
        let mut out = b[..header_size as usize].to_vec();
        // (generation, start, end, file offset)
        let mut segs: Vec<(u64, usize, usize, u64)> = Vec::new();
        let n = u64::from(layout.segments);
        for k in 0..n {
            let Some(g) = oldest.checked_add(k) else {
                break;
            };
            let base = layout.slot_offset(g % n);
            if base + layout.segment_size > file_len {
                warnings.push(format!(
                    "the trace is cut short: its ring needs {} bytes but the file has {file_len}",
                    layout.file_len()
                ));
                break;
            }
            let check_at = (base + SEG_CHECK_AT) as usize;
            let check = u16::from_le_bytes([b[check_at], b[check_at + 1]]);
            if word(base + SEG_GEN_AT) != Some(g) || check != segment_check(g) {
                // Not prepared yet (or being prepared): the ring ends here.
                break;
            }
            let committed = word(base + SEG_COMMITTED_AT).unwrap_or(0);
            // The records below it were published before it moved.
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            if committed < SEGMENT_HEADER_SIZE || committed > layout.segment_size {
                warnings.push(format!(
                    "the committed length of the ring segment at byte {base} is damaged; the ring is read up to it"
                ));
                break;
            }
            let start = out.len();
            out.extend_from_slice(
                &b[(base + SEGMENT_HEADER_SIZE) as usize..(base + committed) as usize],
            );
            segs.push((g, start, out.len(), base + SEGMENT_HEADER_SIZE));
        }
        // A recorder still writing says a generation is gone before it
        // touches its bytes: what it retired meanwhile may be torn.
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        let oldest_now = word(OLDEST_AT as u64).unwrap_or(0);
        let before = segs.len();
        segs.retain(|s| s.0 >= oldest_now);
        let overwritten = (before - segs.len()) as u64;
        // The linear part last: every module and thread record a copied
        // sample needs was committed before the sample was.
        let committed = word(COMMITTED_OFFSET as u64).unwrap_or(0);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let (meta_end, meta_committed) = if committed < header_size
            || committed > layout.ring_offset.min(file_len)
        {
            warnings.push(format!(
                "the header's committed length ({committed}) is damaged; reading the linear part up to its unwritten space"
            ));
            (layout.ring_offset.min(file_len), false)
        } else {
            (committed, true)
        };
        let meta_start = out.len();
        out.extend_from_slice(&b[header_size as usize..meta_end as usize]);
        // Where the end record is, if the linear part has one.
        let mut end_at = out.len();
        {
            let mut it = RecordIter {
                buf: &out,
                data: &out[meta_start..],
                pos: 0,
                base: header_size,
                failed: false,
                zero_is_damage: meta_committed,
                rest: &[],
            };
            while let Some(Ok(r)) = it.next() {
                if r.kind == kind::END {
                    end_at = meta_start + (r.offset - header_size) as usize;
                    break;
                }
            }
        }
        let mut chunks = vec![Chunk {
            start: meta_start,
            end: end_at,
            file: header_size,
            zero_is_damage: meta_committed,
        }];
        chunks.extend(segs.iter().map(|&(_, start, end, file)| Chunk {
            start,
            end,
            file,
            zero_is_damage: true,
        }));
        chunks.push(Chunk {
            start: end_at,
            end: out.len(),
            file: header_size + (end_at - meta_start) as u64,
            zero_is_damage: meta_committed,
        });
        let ring = RingSpan {
            layout,
            oldest,
            first: segs.first().map_or(oldest_now, |s| s.0),
            count: segs.len() as u64,
            overwritten,
        };
        Ok(Trace {
            bytes: Bytes::Owned(out),
            header,
            data_end: file_len.min(layout.file_len()),
            committed: true,
            warnings,
            chunks,
            ring: Some(ring),
            being_written: false,
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
        if !self.chunks.is_empty() {
            return RecordIter {
                buf: self.bytes(),
                data: &[],
                pos: 0,
                base: 0,
                failed: false,
                zero_is_damage: true,
                rest: &self.chunks,
            };
        }
        RecordIter {
            buf: self.bytes(),
            data: &self.bytes()[..self.data_end as usize],
            pos: usize::from(self.header.header_size).max(HEADER_SIZE),
            base: 0,
            failed: false,
            zero_is_damage: self.committed,
            rest: &[],
        }
    }

    fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// Decoded events, samples expanded. Each module record comes with the
    /// code addresses (SPEC.md §2.7) of every code-addresses record for it
    /// in the intact part of the trace, wherever they lie: a first pass
    /// gathers them.
    ///
    /// Both passes read forward only, and a mapped trace's pages behind them
    /// are let go as they go (see `release.rs`): a large trace is never
    /// resident as a whole.
    pub fn decoder(&self) -> Decoder<'_> {
        let mut addresses: HashMap<u64, Vec<AddressMapEntry>> = HashMap::new();
        let mut behind = Behind::new(self.bytes(), self.is_mapped());
        for rec in self.records() {
            let Ok(rec) = rec else { break };
            behind.release(rec.offset);
            if rec.kind != kind::CODE_ADDRESSES {
                continue;
            }
            match Record::decode(rec.kind, rec.payload, rec.offset) {
                Ok(Some(Record::CodeAddresses(a))) => {
                    addresses.entry(a.module).or_default().extend(a.entries)
                }
                // The main pass reports the damage and stops there.
                _ => break,
            }
        }
        for v in addresses.values_mut() {
            v.sort_by_key(|e| e.code_offset);
            v.dedup_by_key(|e| e.code_offset);
        }
        Decoder {
            records: self.records(),
            state: DecodeState::new(self.header.version_major),
            addresses,
            failed: false,
            behind: Behind::new(self.bytes(), self.is_mapped()),
        }
    }
}

/// A record as framed in the file.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Offset of the kind byte in the file.
    pub offset: u64,
    /// The record's kind; [`kind::SAMPLE`] for short samples too.
    pub kind: u8,
    pub payload: &'a [u8],
    /// The whole record's length in the file: framing, payload and check.
    pub size: u64,
}

/// Iterates framed records, stopping after the first error.
pub struct RecordIter<'a> {
    /// What `data` and the chunks in `rest` lie in.
    buf: &'a [u8],
    /// The records being read, and the stretches read after them.
    rest: &'a [Chunk],
    data: &'a [u8],
    pos: usize,
    /// File offset of `data[0]`.
    base: u64,
    failed: bool,
    zero_is_damage: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates framed records in `data`, which holds records only.
    pub fn for_tests(data: &'a [u8]) -> Self {
        RecordIter {
            buf: data,
            rest: &[],
            data,
            pos: 0,
            base: 0,
            failed: false,
            zero_is_damage: true,
        }
    }

    /// Offset of the next record.
    pub fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn damaged(
        &mut self,
        offset: usize,
        damage: Damage,
    ) -> Option<Result<RawRecord<'a>, ReadError>> {
        self.failed = true;
        Some(Err(ReadError::Damaged {
            offset: self.base + offset as u64,
            damage,
        }))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RawRecord<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.pos >= self.data.len() {
            // The next stretch of a ring trace's records.
            let (c, rest) = self.rest.split_first()?;
            self.rest = rest;
            self.data = &self.buf[c.start..c.end];
            self.pos = 0;
            self.base = c.file;
            self.zero_is_damage = c.zero_is_damage;
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
            // Unwritten space: the end of these records (SPEC.md §4.3).
            self.pos = self.data.len();
            return self.next();
        }
        let mut p = start + 1;
        let len = if kind & kind::SHORT_SAMPLE != 0 {
            u64::from(kind & !kind::SHORT_SAMPLE)
        } else {
            match varint::get(self.data, &mut p) {
                Ok(len) => len,
                Err(varint::VarintError::Truncated) => return self.damaged(start, Damage::PastEnd),
                Err(varint::VarintError::Overflow) => {
                    return self.damaged(start, Damage::VarintOverflow)
                }
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
            offset: self.base + start as u64,
            kind: if kind & kind::SHORT_SAMPLE != 0 {
                kind::SAMPLE
            } else {
                kind
            },
            payload: &self.data[p..end - 2],
            size: (end - start) as u64,
        }))
    }
}

/// Decodes a trace's records in order. Not an `Iterator` because samples
/// borrow the decoder's stack buffer; use `while let Some(e) = d.next()`.
pub struct Decoder<'a> {
    records: RecordIter<'a>,
    state: DecodeState,
    /// Code addresses by module id, gathered before (see [`Trace::decoder`]).
    addresses: HashMap<u64, Vec<AddressMapEntry>>,
    failed: bool,
    behind: Behind<'a>,
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
        self.behind.release(rec.offset);
        let result = match self.state.event(rec) {
            Ok(Event::Record(Record::Module(mut m))) => {
                if let Some(a) = self.addresses.get(&m.id) {
                    m.addresses = a.clone();
                }
                Ok(Event::Record(Record::Module(m)))
            }
            other => other,
        };
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

/// Whether another open file description holds a write lock on `file`
/// (a recorder writing it, SPEC.md §3). Asks without locking anything.
fn locked_for_writing(file: &File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed flock is valid; fcntl with a valid fd and pointer.
        unsafe {
            let mut fl: libc::flock = std::mem::zeroed();
            fl.l_type = libc::F_RDLCK as _;
            fl.l_whence = libc::SEEK_SET as _;
            libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) == 0
                && fl.l_type != libc::F_UNLCK as _
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}
