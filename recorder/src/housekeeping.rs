//! The recorder's background thread: grows the trace ahead of the samplers,
//! pre-faults it, reports losses and writes the code addresses of newly
//! sampled code.
//!
//! In a flight-recorder trace (`--max-size`, SPEC.md §5) "growing" is
//! preparing the ring's next segment (`TraceWriter::grow` does either):
//! the one step that overwrites old samples happens here, in normal
//! context, and the signal handler only ever moves into a segment this
//! thread has zeroed and stamped. It also parks the timers of threads that
//! have been idle a while (`sampler/idle.rs`). When nothing happens, a
//! round costs a wake-up (the timed wait) and a few atomic loads: no other
//! system call, no page touched.

use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::recorder::Shared;

/// How often the background thread grows the trace, pre-faults it, reports
/// losses and writes the code addresses of newly sampled code. Each wake-up
/// costs ~45 us of CPU on these VMs (mostly the context switch), so at 10 ms
/// it was 0.6% of a program's CPU time; at 50 ms it is ~0.1%. Still far ahead
/// of need: at the fastest interval (10us, ~15 bytes a sample) a period
/// writes ~75 KiB, against a pre-faulted window of four periods' writing
/// (at least 64 KiB) and 4 MiB of growth margin.
/// The cost: a SIGKILLed recording may lack the lines (not the names) of
/// code first sampled in its last ~50 ms.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(50);

/// How many intervals a thread must have been idle before its timer is
/// parked: a short gap between two busy stretches is not worth two timer
/// system calls.
const PARK_AFTER_INTERVALS: u32 = 2;

/// The running background thread.
pub(crate) struct Housekeeper {
    thread: Option<JoinHandle<()>>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

impl Housekeeper {
    pub(crate) fn spawn(shared: Arc<Shared>) -> io::Result<Housekeeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("wrec-housekeeper".into())
                .spawn(move || run(&shared, &stop))?
        };
        Ok(Housekeeper {
            thread: Some(thread),
            stop,
        })
    }

    /// Stops the thread and waits for it to finish its current round.
    pub(crate) fn stop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// Every period until stopped: grows the trace and pre-faults it; while
/// there is room, reports losses and writes the code addresses of new
/// samples (when the trace is full, both are written once at the end, in
/// the space kept back for that).
fn run(shared: &Shared, stop: &(Mutex<bool>, Condvar)) {
    let (m, cv) = stop;
    let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (g, _) = cv
            .wait_timeout_while(stopped, HOUSEKEEPING_PERIOD, |s| !*s)
            .unwrap_or_else(|e| e.into_inner());
        stopped = g;
        if *stopped {
            return;
        }
        let writer = shared.writer();
        if let Err(e) = writer.grow() {
            shared.note_full(&e);
        }
        writer.prefault();
        // An idle thread's timer (wrec serve's workers between requests)
        // is stopped until the thread is busy again.
        shared
            .threads
            .park_idle(Duration::from_nanos(writer.interval_ns()) * PARK_AFTER_INTERVALS);
        if !writer.is_full() {
            shared.threads.report_losses(writer);
            shared.update_code_maps();
        }
    }
}
