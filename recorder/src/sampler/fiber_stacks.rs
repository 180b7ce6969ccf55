//! Fiber stacks: where a store with async support runs wasm, and how the
//! handler finds and reads them.
//!
//! An async call (`call_async`, `instantiate_async`) runs the guest on a
//! fiber: a stack of its own, which Wasmtime allocates per call unless the
//! engine has a stack creator.
//! [`configure`](crate::configure) installs [`FiberStackCreator`], which
//! maps those stacks itself and records each one's range in a fixed table
//! of atomics ([`FIBER_STACKS`]), so the signal handler can:
//!
//! - **walk a running fiber**: a sample whose stack pointer lies in a
//!   registered fiber stack is walked with that stack's bounds instead of the
//!   thread's (every read is still checked against the bounds of the stack
//!   being walked);
//! - **walk a suspended fiber**: when a host call on the fiber waits (an
//!   async WASI call: a sleep, a read that is not ready), the fiber is
//!   switched out and the thread waits in the executor on its own stack,
//!   where no wasm is. The fiber's saved stack pointer (at the top of the
//!   fiber stack, Wasmtime's fiber layout, see [`suspended_fp_offset`]) leads
//!   to the frames of the host call and the wasm that made it: the sample is
//!   a host sample with that wasm stack, as it is for a blocking call in a
//!   synchronous store. Only the fibers this thread ran on last count
//!   (`owner`), and only if exactly one of them has wasm frames.
//!
//! Reading a stack that another thread frees: a reader announces itself
//! (`readers`) before it reads the slot's range and re-reads it after; a
//! stack is unpublished and then waits for the readers to leave before it
//! is unmapped. The handler never waits.
//!
//! Stacks beyond [`MAX_FIBER_STACKS`] alive at once still work, unregistered:
//! samples on them keep only their program counter, flagged `BROKEN`, as
//! before this table existed. So do stacks from Wasmtime's pooling
//! allocator, which does not use a stack creator.

use std::ops::Range;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{suspended_fp_offset, Memory};

/// The most fiber stacks registered at once.
pub const MAX_FIBER_STACKS: usize = 1024;

/// One registered stack: `[lo, hi)` without its guard page; `hi` is 0 when
/// the slot is free and 1 while it is being filled.
struct Slot {
    lo: AtomicU64,
    hi: AtomicU64,
    /// The OS thread that last ran on the stack (its creator at first).
    owner: AtomicI32,
    /// Handlers reading the stack right now.
    readers: AtomicU32,
}

/// The table of live fiber stacks.
pub(crate) struct FiberStacks {
    slots: [Slot; MAX_FIBER_STACKS],
    /// One past the highest slot ever used.
    high: AtomicUsize,
}

/// The process's fiber stacks (every engine configured by wrec shares it).
pub(crate) static FIBER_STACKS: FiberStacks = FiberStacks::new();

/// A registered stack being read: its readers count holds it mapped until
/// this is dropped.
pub(crate) struct Held<'a> {
    slot: &'a Slot,
    pub(crate) lo: u64,
    pub(crate) hi: u64,
}

impl Drop for Held<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slot.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Held<'_> {
    /// Marks the stack as the calling thread's (the handler, for the thread
    /// it interrupted on this stack).
    #[inline]
    pub(crate) fn claim(&self, tid: libc::pid_t) {
        if self.slot.owner.load(Ordering::Relaxed) != tid {
            self.slot.owner.store(tid, Ordering::Relaxed);
        }
    }

    /// Where the walk of this stack's suspended fiber starts: its frame
    /// pointer and stack pointer as saved by Wasmtime's stack switch, if
    /// they lie inside the stack (while the fiber runs, the slot holds the
    /// stack pointer of the stack that resumed it, which does not).
    /// Async-signal-safe.
    #[inline]
    pub(crate) fn suspended<M: Memory>(&self, mem: &M) -> Option<(u64, u64)> {
        suspended(mem, self.lo, self.hi)
    }
}

/// [`Held::suspended`] for the stack `[lo, hi)`: reads only aligned words
/// inside it.
#[inline]
fn suspended<M: Memory>(mem: &M, lo: u64, hi: u64) -> Option<(u64, u64)> {
    // Wasmtime's layout: [hi - 16] = the stack pointer to resume at.
    let slot = hi.checked_sub(16)?;
    if slot < lo || slot & 7 != 0 {
        return None;
    }
    let sp = mem.word(slot);
    let fp_at = sp.checked_add(suspended_fp_offset())?;
    if sp & 7 != 0 || sp < lo || fp_at >= slot {
        return None;
    }
    Some((mem.word(fp_at), sp))
}

impl FiberStacks {
    const fn new() -> FiberStacks {
        FiberStacks {
            slots: [const {
                Slot {
                    lo: AtomicU64::new(0),
                    hi: AtomicU64::new(0),
                    owner: AtomicI32::new(0),
                    readers: AtomicU32::new(0),
                }
            }; MAX_FIBER_STACKS],
            high: AtomicUsize::new(0),
        }
    }

    /// Whether any stack was ever registered: without, the handler skips
    /// every look-up.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.high.load(Ordering::Acquire) != 0
    }

    /// Registers `[lo, hi)`, created by thread `owner`; the slot's index, or
    /// `None` when the table is full. Normal context.
    fn register(&self, lo: u64, hi: u64, owner: libc::pid_t) -> Option<usize> {
        for (i, s) in self.slots.iter().enumerate() {
            if s.hi
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                s.lo.store(lo, Ordering::SeqCst);
                s.owner.store(owner, Ordering::SeqCst);
                self.high.fetch_max(i + 1, Ordering::SeqCst);
                s.hi.store(hi, Ordering::SeqCst);
                return Some(i);
            }
        }
        None
    }

    /// Unpublishes slot `i` and waits until no handler reads it. Normal
    /// context; the caller unmaps the stack afterwards.
    fn unregister(&self, i: usize) {
        let s = &self.slots[i];
        s.hi.store(1, Ordering::SeqCst);
        s.lo.store(0, Ordering::SeqCst);
        while s.readers.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
        s.owner.store(0, Ordering::SeqCst);
        s.hi.store(0, Ordering::SeqCst);
    }

    /// Holds slot `s` if it is a live stack. Async-signal-safe.
    #[inline]
    fn hold<'a>(&self, s: &'a Slot) -> Option<Held<'a>> {
        if s.hi.load(Ordering::Relaxed) <= 1 {
            return None;
        }
        s.readers.fetch_add(1, Ordering::SeqCst);
        // Read after announcing: a stack seen now stays mapped until the
        // readers count drops (see `unregister`).
        let held = Held {
            slot: s,
            hi: s.hi.load(Ordering::SeqCst),
            lo: s.lo.load(Ordering::SeqCst),
        };
        (held.hi > 1 && held.lo < held.hi).then_some(held)
    }

    /// The registered stack holding `addr`, held. Async-signal-safe.
    #[inline]
    pub(crate) fn containing(&self, addr: u64) -> Option<Held<'_>> {
        let n = self.high.load(Ordering::Acquire).min(MAX_FIBER_STACKS);
        for s in &self.slots[..n] {
            let hi = s.hi.load(Ordering::Relaxed);
            if hi > 1 && addr < hi && addr >= s.lo.load(Ordering::Relaxed) {
                let held = self.hold(s)?;
                return (addr >= held.lo && addr < held.hi).then_some(held);
            }
        }
        None
    }

    /// Calls `f` with each live stack that thread `tid` ran on last, held,
    /// until it returns false. Async-signal-safe.
    #[inline]
    pub(crate) fn for_each_owned(&self, tid: libc::pid_t, mut f: impl FnMut(&Held<'_>) -> bool) {
        let n = self.high.load(Ordering::Acquire).min(MAX_FIBER_STACKS);
        for s in &self.slots[..n] {
            if s.owner.load(Ordering::Relaxed) != tid {
                continue;
            }
            if let Some(held) = self.hold(s) {
                if s.owner.load(Ordering::Relaxed) == tid && !f(&held) {
                    return;
                }
            }
        }
    }
}

/// Wasmtime's stack creator for fibers ([`wasmtime::Config::with_host_stack`]):
/// stacks mapped by wrec, with a guard page below, whose ranges the sampler
/// knows. [`configure`](crate::configure) installs it; an embedder building
/// its own configuration can install it with `with_host_stack`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FiberStackCreator;

/// A fiber stack from [`FiberStackCreator`].
struct FiberStack {
    /// The whole mapping, guard page first.
    base: *mut u8,
    len: usize,
    page: usize,
    slot: Option<usize>,
}

// SAFETY: the stack is plain memory owned by this value; Wasmtime uses it
// from one thread at a time.
unsafe impl Send for FiberStack {}
unsafe impl Sync for FiberStack {}

// SAFETY: every stack is a fresh page-aligned anonymous mapping (so zeroed),
// with a PROT_NONE guard page below its usable range, unmapped only on drop.
unsafe impl wasmtime::StackCreator for FiberStackCreator {
    fn new_stack(
        &self,
        size: usize,
        _zeroed: bool,
    ) -> wasmtime::Result<Box<dyn wasmtime::StackMemory>> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = size
            .checked_next_multiple_of(page)
            .filter(|&s| s > 0)
            .ok_or_else(|| wasmtime::format_err!("fiber stack size {size} is out of range"))?;
        let len = size + page;
        // SAFETY: a new anonymous mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(wasmtime::format_err!(
                "cannot map a fiber stack of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        let base = base.cast::<u8>();
        // SAFETY: [base + page, base + len) is inside the mapping.
        if unsafe {
            libc::mprotect(
                base.add(page).cast(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        } != 0
        {
            let e = std::io::Error::last_os_error();
            // SAFETY: our own mapping.
            unsafe { libc::munmap(base.cast(), len) };
            return Err(wasmtime::format_err!("cannot map a fiber stack: {e}"));
        }
        let lo = base as u64 + page as u64;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let slot = FIBER_STACKS.register(lo, base as u64 + len as u64, tid);
        Ok(Box::new(FiberStack {
            base,
            len,
            page,
            slot,
        }))
    }
}

// SAFETY: top and range describe the mapping made in `new_stack`, which
// lives as long as this value.
unsafe impl wasmtime::StackMemory for FiberStack {
    fn top(&self) -> *mut u8 {
        self.base.wrapping_add(self.len)
    }

    fn range(&self) -> Range<usize> {
        self.base as usize + self.page..self.base as usize + self.len
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.base..self.base.wrapping_add(self.page)
    }
}

impl Drop for FiberStack {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            FIBER_STACKS.unregister(i);
        }
        // SAFETY: our own mapping, no longer used by Wasmtime nor read by
        // any handler.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// How many fiber stacks are registered now (for tests).
pub fn registered_fiber_stacks() -> usize {
    let n = FIBER_STACKS
        .high
        .load(Ordering::Acquire)
        .min(MAX_FIBER_STACKS);
    FIBER_STACKS.slots[..n]
        .iter()
        .filter(|s| s.hi.load(Ordering::Acquire) > 1)
        .count()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Memory that only has the words given, inside `[lo, hi)`.
    struct Words {
        lo: u64,
        hi: u64,
        words: HashMap<u64, u64>,
    }

    impl Memory for Words {
        fn word(&self, addr: u64) -> u64 {
            assert!(
                addr & 7 == 0 && addr >= self.lo && addr + 8 <= self.hi,
                "{addr:#x}"
            );
            self.words.get(&addr).copied().unwrap_or(0)
        }
        fn byte(&self, _: u64) -> u8 {
            unreachable!()
        }
    }

    #[test]
    fn a_suspended_fiber_is_read_only_inside_its_stack() {
        let (lo, hi) = (0x10_000, 0x20_000);
        let mut m = Words {
            lo,
            hi,
            words: HashMap::new(),
        };
        // Suspended: the saved sp inside, the frame pointer above it.
        let sp = hi - 0x200;
        m.words.insert(hi - 16, sp);
        m.words.insert(sp + suspended_fp_offset(), hi - 0x100);
        assert_eq!(suspended(&m, lo, hi), Some((hi - 0x100, sp)));
        // Running elsewhere: the slot holds another stack's sp.
        for other in [lo - 0x1000, hi, hi - 16 - suspended_fp_offset(), sp + 4, 0] {
            m.words.insert(hi - 16, other);
            assert_eq!(suspended(&m, lo, hi), None, "{other:#x}");
        }
        // A stack too small for the slot.
        assert_eq!(suspended(&m, hi - 8, hi), None);
    }

    #[test]
    fn stacks_are_found_while_registered() {
        let t = FiberStacks::new();
        assert!(!t.any());
        let a = t.register(0x1000, 0x3000, 7).unwrap();
        let b = t.register(0x5000, 0x6000, 8).unwrap();
        assert!(t.any());
        let h = t.containing(0x2fff).unwrap();
        assert_eq!((h.lo, h.hi), (0x1000, 0x3000));
        assert!(t.containing(0x3000).is_none() && t.containing(0xfff).is_none());
        // A handler on thread 9 sampling stack b makes it thread 9's.
        t.containing(0x5800).unwrap().claim(9);
        drop(h);
        let mut owned = Vec::new();
        t.for_each_owned(9, |h| {
            owned.push(h.lo);
            true
        });
        assert_eq!(owned, [0x5000]);
        t.unregister(a);
        assert!(t.containing(0x2000).is_none());
        // The slot is reused.
        assert_eq!(t.register(0x8000, 0x9000, 7), Some(a));
        t.unregister(a);
        t.unregister(b);
        assert!(t
            .slots
            .iter()
            .all(|s| s.readers.load(Ordering::SeqCst) == 0));
    }
}
