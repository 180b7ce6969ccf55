//! The process-wide registry of live thread states: it lets the handler
//! reject stale or foreign signal values before dereferencing them.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use super::thread_state::ThreadState;
use super::MAX_THREADS;

static REGISTRY: [AtomicPtr<ThreadState>; MAX_THREADS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_THREADS];
/// One past the highest slot ever used, so the handler scans only that far.
static REGISTRY_HIGH: AtomicUsize = AtomicUsize::new(0);

pub(super) fn register(p: *const ThreadState) -> Option<usize> {
    for (i, slot) in REGISTRY.iter().enumerate() {
        if slot
            .compare_exchange(
                ptr::null_mut(),
                p as *mut _,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok()
        {
            REGISTRY_HIGH.fetch_max(i + 1, Ordering::SeqCst);
            return Some(i);
        }
    }
    None
}

pub(super) fn unregister(slot: usize) {
    REGISTRY[slot].store(ptr::null_mut(), Ordering::SeqCst);
}

#[inline]
pub(super) fn registered(p: *const ThreadState) -> bool {
    if p.is_null() {
        return false;
    }
    let high = REGISTRY_HIGH.load(Ordering::Acquire).min(MAX_THREADS);
    REGISTRY[..high]
        .iter()
        .any(|s| std::ptr::eq(s.load(Ordering::Acquire), p))
}
