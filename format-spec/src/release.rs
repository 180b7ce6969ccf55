//! Letting go of the part of a mapped trace the decoder has read.
//!
//! [`Trace::open`](crate::Trace::open) maps the whole file and the decoder
//! reads it front to back, twice: a first pass for the code addresses, then
//! the events. Every page it touched would stay resident until the reader
//! is dropped: the trace's whole size on top of whatever the caller builds.
//! Neither pass reads behind its position again (events own what they
//! carry), so the pages there can go (one [`Behind`] per pass):
//! `MADV_DONTNEED` on a read-only shared file mapping only drops them from
//! this process (the page cache keeps them, and a read maps them again,
//! unchanged), so a caller that does look back still reads the same bytes.

/// Releases pages behind a forward-only reader of `bytes`.
pub(crate) struct Behind<'a> {
    bytes: &'a [u8],
    /// Bytes released so far (a multiple of the page size).
    done: usize,
    page: usize,
    enabled: bool,
}

/// Releases in steps of at least this many bytes: a system call per 256
/// KiB read is nothing next to decoding them, and at most that much of the
/// trace is resident behind the reader.
const STEP: usize = 1 << 18;

impl<'a> Behind<'a> {
    /// `mapped`: `bytes` is a whole read-only file mapping (not memory the
    /// reader owns, where releasing would lose the contents).
    pub(crate) fn new(bytes: &'a [u8], mapped: bool) -> Self {
        let page = page_size();
        let enabled = cfg!(target_os = "linux")
            && mapped
            && page > 0
            && !bytes.is_empty()
            && (bytes.as_ptr() as usize).is_multiple_of(page);
        let b = Behind {
            bytes,
            done: 0,
            page,
            enabled,
        };
        if enabled {
            b.advise(0, bytes.len() / page * page, Advice::Sequential);
        }
        b
    }

    /// The reader is at `pos` and will not read before it again.
    #[inline]
    pub(crate) fn release(&mut self, pos: u64) {
        if !self.enabled {
            return;
        }
        // Keep the page `pos` is in.
        let end = (pos.min(self.bytes.len() as u64) as usize) / self.page * self.page;
        if end >= self.done + STEP {
            self.advise(self.done, end, Advice::DontNeed);
            self.done = end;
        }
    }

    /// Advises on the whole pages in `bytes[from..to]`; both are multiples
    /// of the page size.
    fn advise(&self, from: usize, to: usize, advice: Advice) {
        debug_assert!(from <= to && to <= self.bytes.len());
        #[cfg(target_os = "linux")]
        // SAFETY: the range is whole pages inside the trace's mapping (see
        // `new`). MADV_SEQUENTIAL is a hint; MADV_DONTNEED on a read-only
        // file mapping leaves its contents as they are (pages read again
        // come from the file), and nothing reads before the decoder anyway.
        unsafe {
            let advice = match advice {
                Advice::Sequential => libc::MADV_SEQUENTIAL,
                Advice::DontNeed => libc::MADV_DONTNEED,
            };
            // Best effort: a failure only keeps the pages resident.
            libc::madvise(
                self.bytes.as_ptr().add(from) as *mut libc::c_void,
                to - from,
                advice,
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, to, advice);
    }
}

enum Advice {
    Sequential,
    DontNeed,
}

fn page_size() -> usize {
    #[cfg(target_os = "linux")]
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    #[cfg(not(target_os = "linux"))]
    let n = 4096;
    usize::try_from(n).unwrap_or(0)
}
