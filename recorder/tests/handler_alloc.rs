//! The sampler's signal handler never allocates or frees memory, checked on
//! real runs at the highest rate (100us) by the allocator itself.
//!
//! The sampler installs its handler with `SA_ONSTACK`, so it runs on the
//! thread's alternate signal stack (Wasmtime's, or std's). This test binary's
//! global allocator asks the kernel, on every call while armed, whether the
//! calling thread is executing on its alternate signal stack
//! (`sigaltstack(NULL, &old)` reports `SS_ONSTACK` there) and counts those
//! calls. A control handler that does allocate, run the same way, proves the
//! detector sees what it should. Locks and other syscalls in the handler are
//! checked by `tests/signal_safety.rs` at the workspace root (strace).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;

use wrec_testkit::fixture;

struct Detector;

static ARMED: AtomicBool = AtomicBool::new(false);
static ON_SIGNAL_STACK: AtomicU64 = AtomicU64::new(0);

fn on_signal_stack() -> bool {
    // SAFETY: a query only; `ss` is a valid out-pointer.
    unsafe {
        let mut ss: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut ss) == 0 && ss.ss_flags & libc::SS_ONSTACK != 0
    }
}

fn check() {
    if ARMED.load(SeqCst) && on_signal_stack() {
        ON_SIGNAL_STACK.fetch_add(1, SeqCst);
    }
}

unsafe impl GlobalAlloc for Detector {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        check();
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        check();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        check();
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        check();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Detector = Detector;

/// One test at a time: the counter and the armed flag are global.
static SERIAL: Mutex<()> = Mutex::new(());

extern "C" fn allocating_handler(_: libc::c_int) {
    // Exactly what the sampler must never do.
    std::hint::black_box(Box::new([0u8; 64]));
}

/// The control: a `SA_ONSTACK` handler that allocates is caught.
#[test]
fn the_detector_catches_an_allocating_handler() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(|| unsafe {
        // This thread's own alternate stack, as Wasmtime gives its threads.
        let stack = vec![0u8; 256 << 10].leak();
        let ss = libc::stack_t {
            ss_sp: stack.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: stack.len(),
        };
        assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = allocating_handler as *const () as usize;
        sa.sa_flags = libc::SA_ONSTACK;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        ON_SIGNAL_STACK.store(0, SeqCst);
        ARMED.store(true, SeqCst);
        libc::raise(libc::SIGUSR1);
        ARMED.store(false, SeqCst);
    })
    .join()
    .unwrap();
    assert!(ON_SIGNAL_STACK.load(SeqCst) >= 2, "alloc + free not seen");
}

fn record(name: &str, args: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = wrec::run::RunOptions::new(fixture(name));
    opts.args = args.iter().map(|s| s.to_string()).collect();
    opts.output = dir.path().join("t.wrec");
    opts.recording.interval = std::time::Duration::from_micros(100);
    ON_SIGNAL_STACK.store(0, SeqCst);
    ARMED.store(true, SeqCst);
    let outcome = wrec::run::run(&opts);
    ARMED.store(false, SeqCst);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.exit_code, 0, "{:?}", outcome.error);
    let summary = outcome.summary.unwrap();
    assert_eq!(
        ON_SIGNAL_STACK.load(SeqCst),
        0,
        "{name}: the signal handler allocated or freed memory"
    );
    summary.samples
}

#[test]
fn the_sampler_never_allocates_in_its_handler() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Deep, fast-changing stacks; then ~2.5 M host calls a second, so that
    // many samples land in host code (the host-frame walk).
    let fib = record("fib-O2.wasm", &["40"]);
    let hostloop = record("hostloop.wasm", &["400"]);
    eprintln!("samples: fib-O2 {fib}, hostloop {hostloop}");
    assert!(fib > 500 && hostloop > 500, "too few samples to tell");
}
