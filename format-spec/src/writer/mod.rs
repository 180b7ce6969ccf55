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

use crate::coding::frame;
use crate::encoder::{SampleEncoder, SampleRef};
use crate::header::{Header, COMMITTED_OFFSET, HEADER_SIZE};
use crate::records::{kind, Record, RunInfo};
use crate::ring::{Ring, RingLayout, LAYOUT_RING, RING_HEADER_SIZE};

/// The granularity in which the file is extended when the file system refuses
/// a whole growth step.
mod ring;

const PAGE: u64 = 4096;

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
    /// A bounded trace in the ring layout (SPEC.md §5), `wrec --max-size`:
    /// the whole file is allocated up front and never grows; samples, loss
    /// and thread-end records go into the ring, overwriting the oldest
    /// segment, the other records into the linear part before it.
    /// `growth_step` and `max_len` are then unused.
    pub ring: Option<RingLayout>,
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
            ring: None,
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
    /// A run-info record given to [`TraceWriter::write_record`], or one not
    /// written first (use [`TraceWriter::write_run_info`], once, first).
    #[error("{path}: the run-info record goes first and once, through write_run_info")]
    RunInfo { path: PathBuf },
}

/// Why [`TraceWriter::append_sample`] dropped a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No room: the next growth step is not ready, or the disk is full.
    Full,
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
    /// The run's sampling interval in ns, from the run-info record (set once
    /// by [`TraceWriter::write_run_info`]; 0 without one). Sample time deltas
    /// are written relative to it, in whole µs (SPEC.md §2.4).
    interval_ns: AtomicU64,
    /// Pages below this offset have been made writable ahead of the cursor.
    prefaulted: AtomicU64,
    /// The cursor at the previous [`TraceWriter::prefault`] call.
    prefault_cursor: AtomicU64,
    grow_lock: Mutex<()>,
    /// The ring of a bounded trace (`None`: a linear log).
    ring: Option<Ring>,
    /// Where the linear records start: the header's size.
    header_size: u64,
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
        let mut opts = opts;
        if let Some(l) = &opts.ring {
            if l.segment_size >= 1 << 32
                || l.segment_size <= crate::ring::SEGMENT_HEADER_SIZE
                || l.segments < 2
                || l.ring_offset < RING_HEADER_SIZE as u64 + 4096
            {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "impossible ring layout",
                )));
            }
        }
        let header_size = if let Some(l) = &opts.ring {
            // The file never grows: map and allocate all of it now.
            opts.max_len = l.file_len();
            opts.growth_step = l.ring_offset;
            opts.tail_reserve = 0;
            RING_HEADER_SIZE
        } else {
            HEADER_SIZE
        } as u64;
        let map = MmapOptions::new()
            .len(opts.max_len as usize)
            .map_raw(&file)
            .map_err(io_err)?;
        lock_for_writing(&file);
        // Records are appended, never read back: without this hint the first
        // store makes the kernel read ahead a large window of the (zero,
        // freshly allocated) file. A hint only: its failure changes nothing.
        let _ = map.advise(Advice::Random);
        let w = TraceWriter {
            path: path.to_owned(),
            file,
            map,
            opts,
            cursor: AtomicU64::new(header_size),
            capacity: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            full: AtomicBool::new(false),
            samples_written: AtomicU64::new(0),
            samples_dropped: AtomicU64::new(0),
            interval_ns: AtomicU64::new(0),
            prefaulted: AtomicU64::new(0),
            prefault_cursor: AtomicU64::new(0),
            grow_lock: Mutex::new(()),
            ring: opts.ring.map(Ring::new),
            header_size,
        };
        let mut h = header;
        h.committed_len = header_size;
        if let Some(l) = &opts.ring {
            let len = l.file_len();
            w.allocate(len, len).map_err(io_err)?;
            // The linear part ends where the ring starts.
            w.capacity.store(l.ring_offset, SeqCst);
            h.layout = LAYOUT_RING;
            h.header_size = RING_HEADER_SIZE as u16;
        } else {
            let min_len = HEADER_SIZE as u64 + opts.tail_reserve * 2;
            w.allocate(opts.growth_step.max(min_len), min_len)
                .map_err(io_err)?;
        }
        // SAFETY: the first step is allocated and nobody else writes yet.
        unsafe {
            std::ptr::copy_nonoverlapping(h.encode().as_ptr(), w.map.as_mut_ptr(), HEADER_SIZE);
            if let (Some(l), Some(ring)) = (&opts.ring, &w.ring) {
                std::ptr::copy_nonoverlapping(
                    l.encode(0).as_ptr(),
                    w.map.as_mut_ptr().add(HEADER_SIZE),
                    RING_HEADER_SIZE - HEADER_SIZE,
                );
                ring.prepare_ahead(w.map.as_mut_ptr(), 1);
            }
        }
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
        let from = from.clamp(self.header_size, end);
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
    ///
    /// In the ring layout the file never grows: this prepares the next
    /// segment instead (SPEC.md §5.3), overwriting the oldest one's samples.
    pub fn grow(&self) -> Result<(), WriteError> {
        if self.full.load(SeqCst) || self.finished.load(SeqCst) {
            return Ok(());
        }
        if let Some(ring) = &self.ring {
            // One segment ahead, or as many as make 256 KiB (small segments,
            // in tests), so that samples between two calls find room.
            let l = ring.layout;
            let ahead = ((256 << 10) / l.segment_size).clamp(1, u64::from(l.segments / 2).max(1));
            // SAFETY: the whole file is mapped and allocated.
            unsafe {
                ring.prepare_ahead(self.map.as_mut_ptr(), ahead);
                ring.prefault_current(self.map.as_mut_ptr());
            }
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
        unsafe { self.place(at, rec) };
        self.advance_commit(at);
    }

    /// Copies a framed record to `at`, its kind byte last, so that a
    /// reader sees either no record there or the whole of it (the linear
    /// log's and the ring's publishing alike). Async-signal-safe.
    ///
    /// # Safety
    /// `[at, at + rec.len())` is reserved by the caller alone, inside the
    /// mapped, allocated file.
    #[inline(always)]
    pub(super) unsafe fn place(&self, at: u64, rec: &[u8]) {
        std::ptr::copy_nonoverlapping(
            rec.as_ptr().add(1),
            self.map.as_mut_ptr().add(at as usize + 1),
            rec.len() - 1,
        );
        self.kind_byte(at).store(rec[0], SeqCst);
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
        if let Some(ring) = &self.ring {
            return self.append_sample_ring(ring, enc, s);
        }
        let len = enc.encode(s, self.interval_ns.load(SeqCst) / 1000, None);
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

    /// Appends any record but a sample or the run info (normal context: it
    /// allocates, and may grow the file). Control records may use the tail
    /// reserve.
    pub fn write_record(&self, rec: &Record) -> Result<(), WriteError> {
        if let Record::RunInfo(_) = rec {
            return Err(WriteError::RunInfo {
                path: self.path.clone(),
            });
        }
        self.write_framed(rec)
    }

    /// Writes the run-info record, which must be the trace's first record.
    /// Its interval is the one sample time deltas are relative to from then
    /// on ([`interval_ns`](Self::interval_ns)).
    pub fn write_run_info(&self, info: &RunInfo) -> Result<(), WriteError> {
        if self.cursor.load(SeqCst) != self.header_size {
            return Err(WriteError::RunInfo {
                path: self.path.clone(),
            });
        }
        self.interval_ns.store(info.interval_ns, SeqCst);
        self.write_framed(&Record::RunInfo(info.clone()))
    }

    /// The sampling interval of the run-info record written (0 before).
    pub fn interval_ns(&self) -> u64 {
        self.interval_ns.load(SeqCst)
    }

    fn write_framed(&self, rec: &Record) -> Result<(), WriteError> {
        if self.finished.load(SeqCst) {
            return Err(WriteError::Finished {
                path: self.path.clone(),
            });
        }
        let framed = frame(rec);
        let len = framed.len() as u64;
        if let Some(ring) = &self.ring {
            if matches!(
                rec,
                Record::SamplesLost(_) | Record::ThreadEnd(_) | Record::Request(_)
            ) {
                return self.write_ring(ring, &framed);
            }
            // The linear part keeps its last 4 KiB for the end record.
            let limit = match rec {
                Record::End(_) => ring.layout.ring_offset,
                _ => ring.layout.ring_offset - 4096,
            };
            let at = self.reserve(len, limit).ok_or_else(|| WriteError::Full {
                path: self.path.clone(),
                len,
            })?;
            self.publish(at, &framed);
            return Ok(());
        }
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
        if let Some(ring) = &self.ring {
            // The ring stays where it is: its size is the bound asked for.
            return Ok(ring.layout.file_len());
        }
        self.file.set_len(len).map_err(io_err)?;
        self.capacity.store(len, SeqCst);
        Ok(len)
    }
}

/// Takes an open-file-description write lock on the whole file, held until
/// the writer's file is closed (or the process dies, SIGKILL included), so
/// that a reader can tell a trace still being written from one whose
/// recorder was killed, by asking (`F_OFD_GETLK`, which waits for nothing
/// and takes nothing). A file system without locks just loses that hint.
fn lock_for_writing(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed flock is valid; fcntl with a valid fd and pointer.
    unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        let _ = libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl);
    }
}
