//! The trace writer: appends records into a memory-mapped file (SPEC.md §3).
//!
//! # Signal safety
//!
//! [`TraceWriter::append_sample`] is async-signal-safe: it encodes into the
//! caller's preallocated [`SampleEncoder`], reserves space with a
//! compare-and-swap on an atomic cursor, copies bytes into memory mapped
//! before, stores the kind byte and advances the committed length with
//! atomics. It allocates nothing, takes no lock and makes no system call.
//! Everything that may block or allocate (growing the file, writing the
//! large records, finishing) happens in [`TraceWriter::write_record`],
//! [`TraceWriter::grow`] and [`TraceWriter::finish`], from normal context.
//!
//! A sample may be appended by a signal handler that interrupted the same
//! thread in the middle of `write_record`: reservation gives both records
//! disjoint space, and the ordered commit (SPEC.md §3) never lets the
//! committed length pass the unfinished one. No signal needs masking.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::Mutex;

use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::header::{Header, COMMITTED_OFFSET, HEADER_SIZE};
use crate::records::{flags, kind, Record, SHORT_SAMPLE_MAX};
use crate::{crc16, varint};

/// The deepest stack a sample holds; deeper stacks keep their innermost
/// frames and are flagged `TRUNCATED`.
/// The granularity in which the file is extended when the file system refuses
/// a whole growth step.
const PAGE: u64 = 4096;

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
    fn find(&self, addr: u64) -> Option<usize> {
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

/// Sizes the writer works with.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// How much the file grows at a time (default 8 MiB).
    pub growth_step: u64,
    /// Space at the end of the file that samples may not use, kept for the
    /// loss, thread-end and end records (default 64 KiB).
    pub tail_reserve: u64,
    /// The largest the trace may grow (default 16 GiB); the mapping reserves
    /// this much address space up front so it never moves.
    pub max_len: u64,
    /// How far past the cursor [`TraceWriter::prefault`] keeps the pages
    /// mapped writable, at least (default 64 KiB), so that the signal
    /// handler never takes a page fault. The window widens to four times
    /// what was appended between two calls, so a fast writer stays covered;
    /// a slow one does not pay for pages it never uses (each costs ~10 µs
    /// to make writable on ext4, and again to drop at the end).
    pub prefault: u64,
}

/// The widest window [`TraceWriter::prefault`] keeps ahead of the cursor.
const MAX_PREFAULT: u64 = 16 << 20;

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            growth_step: 8 << 20,
            tail_reserve: 64 << 10,
            max_len: 16 << 30,
            prefault: 64 << 10,
        }
    }
}

/// An error writing a trace.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: no space left for a {len}-byte record (disk full or file size limit)")]
    Full { path: PathBuf, len: u64 },
    #[error("{path}: the trace is already finished")]
    Finished { path: PathBuf },
}

/// Why [`TraceWriter::append_sample`] dropped a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No room: the next growth step is not ready, or the disk is full.
    Full,
}

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

/// Per-thread delta state and scratch space for [`TraceWriter::append_sample`].
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
    scratch: [u8; MAX_SAMPLE_RECORD],
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

    /// Whether sample `s` goes without its CPU time.
    fn skips_cpu(&self, s: &SampleRef<'_>) -> bool {
        s.flags & flags::NO_CPU != 0 && !self.needs_cpu()
    }

    /// The sample's time and CPU time in whole µs, never before the
    /// previous sample's (so that deltas are never negative); without its
    /// CPU time (`no_cpu`, see [`skips_cpu`](Self::skips_cpu)), the last
    /// one written.
    fn times(&self, s: &SampleRef<'_>, no_cpu: bool) -> (u64, u64) {
        let (t, c) = (s.time_ns / 1000, s.cpu_ns / 1000);
        if no_cpu {
            (t.max(self.prev_time), self.prev_cpu)
        } else if self.started {
            (t.max(self.prev_time), c.max(self.prev_cpu))
        } else {
            (t, c)
        }
    }

    /// Encodes a whole sample record (framing and check included) into the
    /// scratch space and returns its length. `interval_us` is the run's
    /// sampling interval in whole µs. Does not update the delta state.
    fn encode(&mut self, s: &SampleRef<'_>, interval_us: u64) -> usize {
        let stack = &s.stack[..s.stack.len().min(MAX_FRAMES)];
        let mut sflags = s.flags & flags::ALL & !(flags::KEYFRAME | flags::NO_CPU);
        if s.stack.len() > MAX_FRAMES {
            sflags |= flags::TRUNCATED;
        }
        let no_cpu = self.skips_cpu(s);
        if no_cpu {
            sflags |= flags::NO_CPU;
        }
        let (t, c) = self.times(s, no_cpu);
        let (time, cpu, keep) = if self.started {
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
        self.next_recent = if self.started {
            self.recent
        } else {
            Recent::new()
        };
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

    fn commit(&mut self, s: &SampleRef<'_>) {
        let stack = &s.stack[..s.stack.len().min(MAX_FRAMES)];
        let no_cpu = self.skips_cpu(s);
        let (t, c) = self.times(s, no_cpu);
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

/// Appends records to a trace file. `Sync`: share it between threads.
pub struct TraceWriter {
    path: PathBuf,
    file: File,
    pub(crate) map: MmapRaw,
    opts: WriterOptions,
    /// Next free byte: everything below is reserved.
    cursor: AtomicU64,
    /// Bytes of the file that have disk space behind them.
    capacity: AtomicU64,
    finished: AtomicBool,
    full: AtomicBool,
    samples_written: AtomicU64,
    samples_dropped: AtomicU64,
    /// The run's sampling interval in whole µs, from the run-info record;
    /// sample time deltas are written relative to it (SPEC.md §2.4).
    interval_us: AtomicU64,
    /// Pages below this offset have been made writable ahead of the cursor.
    prefaulted: AtomicU64,
    /// The cursor at the previous [`TraceWriter::prefault`] call.
    prefault_cursor: AtomicU64,
    grow_lock: Mutex<()>,
}

impl TraceWriter {
    /// Creates (or truncates) the trace at `path`, writes its header and
    /// allocates the first growth step.
    pub fn create(
        path: &Path,
        header: Header,
        opts: WriterOptions,
    ) -> Result<TraceWriter, WriteError> {
        let io_err = |source| WriteError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(io_err)?;
        Self::from_file(path, file, header, opts)
    }

    /// Like [`TraceWriter::create`] on a file the caller opened (for read and
    /// write, empty).
    pub fn from_file(
        path: &Path,
        file: File,
        header: Header,
        opts: WriterOptions,
    ) -> Result<TraceWriter, WriteError> {
        let io_err = |source| WriteError::Io {
            path: path.to_owned(),
            source,
        };
        let map = MmapOptions::new()
            .len(opts.max_len as usize)
            .map_raw(&file)
            .map_err(io_err)?;
        // Records are appended, never read back: without this hint the first
        // store makes the kernel read ahead a large window of the (zero,
        // freshly allocated) file. A hint only: its failure changes nothing.
        let _ = map.advise(Advice::Random);
        let w = TraceWriter {
            path: path.to_owned(),
            file,
            map,
            opts,
            cursor: AtomicU64::new(HEADER_SIZE as u64),
            capacity: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            full: AtomicBool::new(false),
            samples_written: AtomicU64::new(0),
            samples_dropped: AtomicU64::new(0),
            interval_us: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
            prefault_cursor: AtomicU64::new(0),
            grow_lock: Mutex::new(()),
        };
        let min_len = HEADER_SIZE as u64 + opts.tail_reserve * 2;
        w.allocate(opts.growth_step.max(min_len), min_len)
            .map_err(io_err)?;
        let mut h = header;
        h.committed_len = HEADER_SIZE as u64;
        // SAFETY: the first step is allocated and nobody else writes yet.
        unsafe {
            std::ptr::copy_nonoverlapping(h.encode().as_ptr(), w.map.as_mut_ptr(), HEADER_SIZE)
        };
        w.prefault();
        Ok(w)
    }

    /// Makes the pages from the cursor to [`WriterOptions::prefault`] bytes
    /// past it, or four times what was appended since the previous call if
    /// that is more (up to 16 MiB), within the allocated space, present
    /// and writable, so that
    /// appending there takes no page fault: a fault in the signal handler
    /// costs microseconds, or much more when the page must be read. Call it
    /// from normal context, regularly (the recorder's background thread
    /// does, after [`grow`](Self::grow)). Works in steps of a quarter of the
    /// window, so most calls make no system call.
    pub fn prefault(&self) {
        // SAFETY: sysconf has no preconditions.
        let page = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096)) as u64;
        let cap = self.capacity.load(SeqCst);
        let cursor = self.cursor.load(SeqCst);
        let appended = cursor.saturating_sub(self.prefault_cursor.swap(cursor, SeqCst));
        let window = self
            .opts
            .prefault
            .max(appended.saturating_mul(4).min(MAX_PREFAULT));
        let want = cursor.saturating_add(window).min(cap);
        let done = self.prefaulted.load(SeqCst).max(cursor & !(page - 1));
        if want <= done || (want - done < window / 4 && want < cap) {
            return;
        }
        let (from, to) = (done & !(page - 1), want);
        let populated = self
            .map
            .advise_range(Advice::PopulateWrite, from as usize, (to - from) as usize)
            .is_ok();
        if !populated {
            // Kernels before 5.14: touch each page with an atomic add of 0,
            // which writes back what it reads, so it cannot undo a sampler's
            // store into space reserved meanwhile.
            let mut at = from;
            while at < to {
                // SAFETY: at < capacity, inside the mapping; the byte is only
                // accessed atomically here, and the add leaves it unchanged.
                unsafe { &*(self.map.as_mut_ptr().add(at as usize) as *const AtomicU8) }
                    .fetch_add(0, SeqCst);
                at += page;
            }
        }
        self.prefaulted.fetch_max(to, SeqCst);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples appended so far.
    pub fn samples_written(&self) -> u64 {
        self.samples_written.load(SeqCst)
    }

    /// Samples dropped for lack of space so far.
    pub fn samples_dropped(&self) -> u64 {
        self.samples_dropped.load(SeqCst)
    }

    /// Whether a growth step has failed (the disk is full or the file hit a
    /// size limit); later samples are dropped.
    pub fn is_full(&self) -> bool {
        self.full.load(SeqCst)
    }

    /// The committed length (SPEC.md §3).
    pub fn committed_len(&self) -> u64 {
        self.committed().load(SeqCst)
    }

    /// The committed records from file offset `from` (at least the header
    /// size) on: bytes that no writer touches again, for a reader running
    /// beside the samplers (SPEC.md §2.7).
    pub fn committed_since(&self, from: u64) -> &[u8] {
        let end = self.committed_len();
        let from = from.clamp(HEADER_SIZE as u64, end);
        // SAFETY: [from, end) lies below the committed length: published
        // records that nobody writes again, inside allocated space, and
        // after the header (whose committed-length word changes).
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().add(from as usize), (end - from) as usize)
        }
    }

    fn committed(&self) -> &AtomicU64 {
        // SAFETY: offset 48 of the mapping is 8-aligned (the mapping is
        // page-aligned), always allocated, and only ever accessed atomically.
        unsafe { &*(self.map.as_mut_ptr().add(COMMITTED_OFFSET) as *const AtomicU64) }
    }

    fn kind_byte(&self, at: u64) -> &AtomicU8 {
        // SAFETY: callers pass offsets below the cursor, inside allocated space.
        unsafe { &*(self.map.as_mut_ptr().add(at as usize) as *const AtomicU8) }
    }

    /// Extends the file's allocated space to `len` bytes, or, when the file
    /// system refuses that much (`ENOSPC`: a small or nearly full disk;
    /// `EFBIG`: `RLIMIT_FSIZE`), to as much as fits, halving the extension
    /// down to no less than `min_len` bytes in all. So a trace on a disk with
    /// little room holds what fits instead of failing outright.
    fn allocate(&self, len: u64, min_len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = len.min(self.opts.max_len);
        let cap = self.capacity.load(SeqCst);
        if len <= cap {
            return Ok(());
        }
        let min_extra = min_len.saturating_sub(cap).clamp(1, len - cap);
        let mut extra = len - cap;
        loop {
            // posix_fallocate gives the pages disk blocks now, so a store into
            // the mapping can never hit a full disk (which would be SIGBUS).
            let rc =
                unsafe { libc::posix_fallocate(self.file.as_raw_fd(), cap as i64, extra as i64) };
            if rc == 0 {
                self.capacity.store(cap + extra, SeqCst);
                return Ok(());
            }
            let smaller = (extra / 2) & !(PAGE - 1);
            if !matches!(rc, libc::ENOSPC | libc::EFBIG) || smaller < min_extra || smaller == 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            extra = smaller;
        }
    }

    /// Grows the file by a step if less than half a step is left. Call it
    /// regularly from a normal thread so the sampler never waits. After a
    /// failure (disk full, `RLIMIT_FSIZE`) it keeps failing without trying
    /// again, and samples are dropped from then on.
    pub fn grow(&self) -> Result<(), WriteError> {
        if self.full.load(SeqCst) || self.finished.load(SeqCst) {
            return Ok(());
        }
        let _g = self.grow_lock.lock().unwrap_or_else(|e| e.into_inner());
        let cap = self.capacity.load(SeqCst);
        let used = self.cursor.load(SeqCst);
        if cap.saturating_sub(used) > self.opts.growth_step / 2 + self.opts.tail_reserve {
            return Ok(());
        }
        if cap >= self.opts.max_len {
            self.full.store(true, SeqCst);
            return Ok(());
        }
        self.allocate(cap + self.opts.growth_step, cap + PAGE)
            .map_err(|source| {
                self.full.store(true, SeqCst);
                WriteError::Io {
                    path: self.path.clone(),
                    source,
                }
            })
    }

    /// Reserves `len` bytes; `limit` is how far the record may reach.
    fn reserve(&self, len: u64, limit: u64) -> Option<u64> {
        let mut cur = self.cursor.load(SeqCst);
        loop {
            let end = cur.checked_add(len)?;
            if end > limit {
                return None;
            }
            match self.cursor.compare_exchange_weak(cur, end, SeqCst, SeqCst) {
                Ok(_) => return Some(cur),
                Err(now) => cur = now,
            }
        }
    }

    /// Copies a framed record into reserved space, publishes it and commits.
    /// Async-signal-safe.
    fn publish(&self, at: u64, rec: &[u8]) {
        // SAFETY: [at, at + len) was reserved by us alone and is allocated.
        unsafe {
            std::ptr::copy_nonoverlapping(
                rec.as_ptr().add(1),
                self.map.as_mut_ptr().add(at as usize + 1),
                rec.len() - 1,
            );
        }
        self.kind_byte(at).store(rec[0], SeqCst);
        self.advance_commit(at);
    }

    /// Moves the committed length over every published record from `from`
    /// on, if the committed length has reached `from` (SPEC.md §3).
    fn advance_commit(&self, from: u64) {
        let committed = self.committed();
        let mut c = from;
        if committed.load(SeqCst) != c {
            // An earlier record is still being written; its writer will
            // advance over ours.
            return;
        }
        loop {
            if c >= self.cursor.load(SeqCst) || self.kind_byte(c).load(SeqCst) == 0 {
                return;
            }
            // SAFETY: the record at c is published: its bytes are written.
            let len = unsafe { self.framed_len(c) };
            if committed
                .compare_exchange(c, c + len, SeqCst, SeqCst)
                .is_err()
            {
                return;
            }
            c += len;
        }
    }

    /// Total length of the published record at `at`, read from its framing.
    unsafe fn framed_len(&self, at: u64) -> u64 {
        let k = self.kind_byte(at).load(SeqCst);
        if k & kind::SHORT_SAMPLE != 0 {
            return 1 + u64::from(k & !kind::SHORT_SAMPLE) + 2;
        }
        let base = self.map.as_mut_ptr().add(at as usize + 1);
        let mut v: u64 = 0;
        let mut i = 0;
        loop {
            let b = *base.add(i);
            v |= u64::from(b & 0x7f) << (7 * i);
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        1 + i as u64 + v + 2
    }

    /// Appends a sample. **Async-signal-safe** (see the module docs).
    ///
    /// On success the encoder's delta state moves on to this sample; a
    /// dropped sample leaves it, so the next one encodes against the last
    /// sample actually written. The caller counts drops and reports them with
    /// a [`Record::SamplesLost`] from normal context.
    pub fn append_sample(&self, enc: &mut SampleEncoder, s: &SampleRef<'_>) -> Result<(), Dropped> {
        if self.finished.load(SeqCst) {
            return Err(Dropped::Full);
        }
        let len = enc.encode(s, self.interval_us.load(SeqCst));
        let limit = self
            .capacity
            .load(SeqCst)
            .saturating_sub(self.opts.tail_reserve);
        let Some(at) = self.reserve(len as u64, limit) else {
            self.samples_dropped.fetch_add(1, SeqCst);
            return Err(Dropped::Full);
        };
        self.publish(at, &enc.scratch[..len]);
        enc.commit(s);
        self.samples_written.fetch_add(1, SeqCst);
        Ok(())
    }

    /// Appends any record but a sample (normal context: it allocates, and may
    /// grow the file). Control records may use the tail reserve.
    pub fn write_record(&self, rec: &Record) -> Result<(), WriteError> {
        if self.finished.load(SeqCst) {
            return Err(WriteError::Finished {
                path: self.path.clone(),
            });
        }
        if let Record::RunInfo(r) = rec {
            self.interval_us.store(r.interval_ns / 1000, SeqCst);
        }
        let framed = frame(rec);
        let len = framed.len() as u64;
        let at = match self.reserve(len, self.capacity.load(SeqCst)) {
            Some(at) => at,
            None => {
                // Large records (modules) may need more than a step.
                let _g = self.grow_lock.lock().unwrap_or_else(|e| e.into_inner());
                let want = self.cursor.load(SeqCst) + len + self.opts.growth_step;
                if !self.full.load(SeqCst) {
                    let need = self.cursor.load(SeqCst) + len;
                    if let Err(e) = self.allocate(want, need) {
                        if matches!(
                            rec,
                            Record::Module(_) | Record::RunInfo(_) | Record::ThreadStart(_)
                        ) {
                            self.full.store(true, SeqCst);
                            return Err(WriteError::Io {
                                path: self.path.clone(),
                                source: e,
                            });
                        }
                    }
                }
                self.reserve(len, self.capacity.load(SeqCst))
                    .ok_or_else(|| WriteError::Full {
                        path: self.path.clone(),
                        len,
                    })?
            }
        };
        self.publish(at, &framed);
        Ok(())
    }

    /// Stops all appends and truncates the file to its committed length.
    /// Call it once no sampler can append any more (timers stopped).
    pub fn finish(&self) -> Result<u64, WriteError> {
        self.finished.store(true, SeqCst);
        let _g = self.grow_lock.lock().unwrap_or_else(|e| e.into_inner());
        let len = self.committed_len();
        let io_err = |source| WriteError::Io {
            path: self.path.clone(),
            source,
        };
        // No msync: the page cache is coherent, so every reader sees the
        // records now, and the kernel writes them back in its own time
        // (SPEC.md §3; the trace is not meant to survive a machine crash).
        self.file.set_len(len).map_err(io_err)?;
        self.capacity.store(len, SeqCst);
        Ok(len)
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
