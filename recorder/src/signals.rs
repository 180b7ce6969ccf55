//! The runner's answer to SIGINT, SIGTERM and SIGHUP (what a terminal's
//! Ctrl-C, a CI job's time-out and a closed terminal send): instead of
//! dying with the trace at its pre-grown size and no end record, wrec
//! stops sampling, writes the end record (killed by that signal), trims
//! the trace, prints its summary line and exits with 128 + the signal's
//! number, the status a shell reports for a process the signal killed.
//!
//! The signal handler is signal-hook's: it only writes the signal's number
//! to a self-pipe (async-signal-safe). A thread of ours reads the pipe and
//! does the work, in normal context, while the guest goes on running on
//! its own thread until the process exits: a guest computing in a loop
//! that never calls the host is stopped all the same.

use std::io;
use std::thread::JoinHandle;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::recorder::Recorder;
use crate::{ExitInfo, ExitKind};

/// The signals that end a recording.
pub const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// While alive, a stop signal finishes the recording and exits; dropping
/// it closes the pipe and joins the thread (the signals stay caught, and
/// are then ignored: the recording is over by then).
pub(crate) struct StopOnSignals {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that answers stop signals for `recorder`. `report`
/// prints what wrec prints at the end (given the exit code and the
/// summary, or why the trace could not be finished), before the process
/// exits.
pub(crate) fn stop_on_signals(
    recorder: &Recorder,
    report: impl FnOnce(i32, Result<crate::Summary, crate::Error>) + Send + 'static,
) -> io::Result<StopOnSignals> {
    let mut signals = Signals::new(STOP_SIGNALS)?;
    let handle = signals.handle();
    let ending = recorder.ending();
    let thread = std::thread::Builder::new()
        .name("wrec-signals".into())
        .spawn(move || {
            let Some(sig) = signals.forever().next() else {
                return;
            };
            let code = 128 + sig;
            let name = signal_hook::low_level::signal_name(sig).unwrap_or("a signal");
            let exit = ExitInfo {
                kind: ExitKind::Signaled,
                status: i64::from(code),
                message: format!("wrec received {name} and stopped the guest"),
            };
            // Holding the recording until the process is gone: the main
            // thread, if its guest ends meanwhile, waits instead of
            // reporting too.
            ending.finish_then(exit, |result| {
                report(code, result);
                std::process::exit(code)
            });
        })?;
    Ok(StopOnSignals {
        handle,
        thread: Some(thread),
    })
}

impl Drop for StopOnSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
