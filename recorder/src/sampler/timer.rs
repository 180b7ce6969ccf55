//! A thread's POSIX timer: `timer_create` with `SIGEV_THREAD_ID`, so its
//! `SIGPROF` goes to exactly that thread, carrying a pointer to the thread's
//! state as its signal value.

use std::io;
use std::ptr;
use std::time::Duration;

use wrec_format::TimerClock;

/// A timer that sends `SIGPROF` to one thread. Deleted on drop.
pub(super) struct Timer {
    id: libc::timer_t,
}

// SAFETY: a timer id is the process's, usable from any thread (the
// background thread parks idle threads' timers).
unsafe impl Send for Timer {}

impl Timer {
    /// A disarmed timer on `clock` that signals thread `tid` with `value`.
    pub(super) fn create(
        clock: TimerClock,
        tid: libc::pid_t,
        value: *mut libc::c_void,
    ) -> io::Result<Timer> {
        // SAFETY: sigevent is plain data; zeroed then filled.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGPROF;
        sev.sigev_value = libc::sigval { sival_ptr: value };
        sev.sigev_notify_thread_id = tid;
        let clockid = match clock {
            TimerClock::Wall => libc::CLOCK_MONOTONIC,
            TimerClock::Cpu => libc::CLOCK_THREAD_CPUTIME_ID,
        };
        let mut id: libc::timer_t = ptr::null_mut();
        // SAFETY: valid pointers to a filled sigevent and an out-parameter.
        if unsafe { libc::timer_create(clockid, &mut sev, &mut id) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Timer { id })
    }

    /// Fires every `interval` from one `interval` from now (`Duration::ZERO`:
    /// disarms).
    pub(super) fn set(&self, interval: Duration) -> io::Result<()> {
        self.set_first(interval, interval)
    }

    /// Fires `first` from now, then every `interval` (`first` zero:
    /// disarms).
    pub(super) fn set_first(&self, first: Duration, interval: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(interval),
            it_value: timespec(first),
        };
        // SAFETY: the timer is ours and alive.
        if unsafe { libc::timer_settime(self.id, 0, &spec, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Timer {
    /// Fires once, `after` from now.
    pub(super) fn set_once(&self, after: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: timespec(after),
        };
        // SAFETY: the timer is ours and alive.
        if unsafe { libc::timer_settime(self.id, 0, &spec, ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer is ours; deleted once. On the thread it signals,
        // the syscall returns only after a signal it had pending was
        // delivered.
        unsafe { libc::timer_delete(self.id) };
    }
}

/// Unblocks `SIGPROF` on the calling thread.
pub(super) fn unblock_sigprof() {
    // SAFETY: plain signal-mask calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPROF);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
    }
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
