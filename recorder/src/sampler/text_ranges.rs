//! The registered modules' code ranges, in a fixed array of atomics so the
//! signal handler can classify addresses without allocating or locking.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::MAX_MODULES;

/// One module's compiled code, `[start, end)`.
pub(crate) struct TextRange {
    start: AtomicU64,
    end: AtomicU64,
}

/// The registered modules' code ranges, readable from a signal handler.
pub(crate) struct TextRanges {
    ranges: [TextRange; MAX_MODULES],
    len: AtomicUsize,
}

impl TextRanges {
    pub(crate) fn new() -> TextRanges {
        TextRanges {
            ranges: [const {
                TextRange {
                    start: AtomicU64::new(0),
                    end: AtomicU64::new(0),
                }
            }; MAX_MODULES],
            len: AtomicUsize::new(0),
        }
    }

    /// Adds a range (normal context, serialized by the caller). The range is
    /// written before the length is published, so a handler never sees a
    /// half-written entry.
    pub(crate) fn push(&self, start: u64, len: u64) -> bool {
        let i = self.len.load(Ordering::Acquire);
        if i >= MAX_MODULES {
            return false;
        }
        self.ranges[i].start.store(start, Ordering::Relaxed);
        self.ranges[i]
            .end
            .store(start.saturating_add(len), Ordering::Relaxed);
        self.len.store(i + 1, Ordering::Release);
        true
    }
}

/// Address classification for the walk: which addresses are module code.
pub(crate) trait Code {
    /// The `[start, end)` of the module code holding `addr`, if any.
    fn range_of(&self, addr: u64) -> Option<(u64, u64)>;

    fn contains(&self, addr: u64) -> bool {
        self.range_of(addr).is_some()
    }
}

impl Code for TextRanges {
    #[inline]
    fn range_of(&self, addr: u64) -> Option<(u64, u64)> {
        let n = self.len.load(Ordering::Acquire).min(MAX_MODULES);
        for r in &self.ranges[..n] {
            let start = r.start.load(Ordering::Relaxed);
            let end = r.end.load(Ordering::Relaxed);
            if addr >= start && addr < end {
                return Some((start, end));
            }
        }
        None
    }
}
