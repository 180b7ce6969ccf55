//! What one timer signal costs the thread it interrupts, on this machine,
//! so that an interval the machine cannot sustain does not stall the guest.
//!
//! The kernel's part of a timer signal (the timer interrupt, delivering
//! the signal, `sigreturn`) is paid whatever the handler does: about 1–3 µs
//! on bare metal, 15–30 µs on virtual machines, where the timer interrupt
//! leaves the VM. A periodic timer whose interval is shorter than that
//! fires again before the thread gets back to its own code, and the guest
//! never runs (`--interval 10us` on the development VM: still running after
//! 100 s, every sample in the kernel's return path). So the runner measures
//! the cost once at start ([`measure_signal_cost`]) and raises a shorter
//! interval to [`sustainable_interval`], with a warning.

use std::io;
use std::ptr;
use std::time::Duration;

use wrec_format::{clock_ns, TimerClock};

use super::handler::install_handler;
use super::timer::{unblock_sigprof, Timer};

/// Timer signals measured.
const PROBES: usize = 31;
/// A pause between two clock reads longer than this is a signal (or
/// another interruption: the median keeps those out).
const GAP_NS: u64 = 400;
/// How long a probe waits for its signal after it was due.
const PROBE_WAIT_NS: u64 = 1_000_000;
/// Each probe's timer fires this long after it is armed.
const PROBE_DELAY: Duration = Duration::from_micros(20);

/// How many times the signal's cost an interval must be at least: the
/// guest then keeps about two thirds of the CPU, less the handler's own
/// work (a few µs), and an underestimate by half still leaves it a third.
pub const SUSTAIN_FACTOR: u32 = 3;

/// The median time a one-shot `SIGPROF` timer takes from the interrupted
/// thread (the kernel's work and the handler, which ignores it), measured
/// with 31 probes on the calling thread (a few ms in all). `Duration::ZERO`
/// if most probes saw no pause at all (a machine where a signal costs less
/// than half a µs).
pub fn measure_signal_cost() -> io::Result<Duration> {
    install_handler()?;
    unblock_sigprof();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // A null signal value is no registered thread state: the handler
    // ignores the signal (or hands it to a SIGPROF handler installed
    // before ours).
    let timer = Timer::create(TimerClock::Wall, tid, ptr::null_mut())?;
    let mut gaps = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        timer.set_once(PROBE_DELAY)?;
        let start = clock_ns(libc::CLOCK_MONOTONIC);
        let deadline = start + PROBE_DELAY.as_nanos() as u64 + PROBE_WAIT_NS;
        let mut prev = start;
        loop {
            let now = clock_ns(libc::CLOCK_MONOTONIC);
            if now.saturating_sub(prev) > GAP_NS {
                gaps.push(now - prev);
                break;
            }
            if now > deadline {
                break;
            }
            prev = now;
        }
        // A probe whose signal came after its deadline: let it arrive now.
        timer.set(Duration::ZERO)?;
    }
    drop(timer);
    if gaps.len() <= PROBES / 2 {
        return Ok(Duration::ZERO);
    }
    gaps.sort_unstable();
    // The median of all probes, counting those without a pause as the
    // shortest.
    let missing = PROBES - gaps.len();
    Ok(Duration::from_nanos(gaps[PROBES / 2 - missing]))
}

/// The interval to sample at when `requested` was asked and one signal
/// costs `cost`: `requested`, or [`SUSTAIN_FACTOR`] × `cost` rounded up to
/// a whole µs if that is longer.
pub fn sustainable_interval(requested: Duration, cost: Duration) -> Duration {
    let min = cost * SUSTAIN_FACTOR;
    if requested >= min {
        return requested;
    }
    Duration::from_micros(min.as_nanos().div_ceil(1000) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_only_what_the_cost_does_not_allow() {
        let us = Duration::from_micros;
        assert_eq!(sustainable_interval(us(10), us(25)), us(75));
        assert_eq!(
            sustainable_interval(us(10), Duration::from_nanos(20_100)),
            us(61)
        );
        assert_eq!(sustainable_interval(us(100), us(25)), us(100));
        assert_eq!(sustainable_interval(us(10), us(2)), us(10));
        assert_eq!(sustainable_interval(us(10), Duration::ZERO), us(10));
    }

    #[test]
    fn the_measured_cost_is_finite_and_the_thread_goes_on() {
        let c = measure_signal_cost().unwrap();
        eprintln!("one timer signal costs {c:?} here");
        assert!(c < Duration::from_millis(2), "{c:?}");
    }
}
