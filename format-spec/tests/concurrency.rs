//! Appends from a signal handler that interrupts the same thread's other
//! writes, from several threads at once, and when the log is full.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use wrec_format::*;

struct HandlerState {
    writer: *const TraceWriter,
    enc: *mut SampleEncoder,
    fired: AtomicU64,
    time: AtomicU64,
}

static STATE: AtomicPtr<HandlerState> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_signal(_: libc::c_int) {
    // The same path the sampler takes: no allocation, no lock, no syscall
    // but the clock.
    let st = STATE.load(SeqCst);
    if st.is_null() {
        return;
    }
    let st = unsafe { &*st };
    let t = st.time.fetch_add(1000, SeqCst);
    let n = st.fired.fetch_add(1, SeqCst);
    let depth = 1 + (n % 40) as usize;
    let mut stack = [0u64; 64];
    for (i, s) in stack[..depth].iter_mut().enumerate() {
        *s = 0x5555_0000 + (i as u64 * 16) + (n % 3);
    }
    let _ = unsafe {
        (*st.writer).append_sample(
            &mut *st.enc,
            &SampleRef {
                time_ns: t,
                cpu_ns: clock_ns(libc::CLOCK_THREAD_CPUTIME_ID),
                flags: 0,
                stack: &stack[..depth],
            },
        )
    };
}

#[test]
fn a_signal_handler_appending_in_the_middle_of_other_records_keeps_the_trace_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sig.wrec");
    let writer =
        TraceWriter::create(&path, Header::for_this_host(), WriterOptions::default()).unwrap();
    let enc = Box::into_raw(SampleEncoder::new(0));
    let state = Box::into_raw(Box::new(HandlerState {
        writer: &writer,
        enc,
        fired: AtomicU64::new(0),
        time: AtomicU64::new(1000),
    }));
    STATE.store(state, SeqCst);
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGPROF, &sa, std::ptr::null_mut());
        // A per-thread CPU-time timer every 20 µs hits this thread inside
        // write_record over and over.
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGPROF;
        sev.sigev_notify_thread_id = libc::gettid();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer),
            0
        );
        let its = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000,
            },
            it_value: libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000,
            },
        };
        assert_eq!(libc::timer_settime(timer, 0, &its, std::ptr::null_mut()), 0);
        let names: Vec<String> = (0..300)
            .map(|i| format!("thread-{i}-{}", "x".repeat(i * 7 % 500)))
            .collect();
        let mut written = 0;
        let start = std::time::Instant::now();
        // Write big records for a while (a bounded number of rounds).
        for round in 0..20_000 {
            let name = &names[round % names.len()];
            writer
                .write_record(&Record::ThreadStart(ThreadStart {
                    thread: 1000 + round as u32,
                    time_ns: round as u64,
                    cpu_ns: 0,
                    os_tid: 1,
                    name: name.clone(),
                }))
                .unwrap();
            written += 1;
            if start.elapsed().as_millis() > 1500 && round > 2000 {
                break;
            }
        }
        libc::timer_delete(timer);
        STATE.store(std::ptr::null_mut(), SeqCst);
        writer.finish().unwrap();
        let fired = (*state).fired.load(SeqCst);
        assert!(fired > 100, "the timer fired only {fired} times");
        assert_eq!(writer.samples_written() + writer.samples_dropped(), fired);

        let t = Trace::open(&path).unwrap();
        let mut d = t.decoder();
        let (mut samples, mut records) = (0u64, 0usize);
        let mut last_time = 0;
        while let Some(e) = d.next() {
            match e.unwrap() {
                Event::Sample(s) => {
                    assert!(s.time_ns > last_time, "samples in order");
                    last_time = s.time_ns;
                    let depth = s.stack.len();
                    assert!((1..=40).contains(&depth));
                    samples += 1;
                }
                Event::Record(Record::ThreadStart(ts)) => {
                    let i = (ts.thread - 1000) as usize;
                    assert_eq!(ts.name, names[i % names.len()]);
                    records += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(records, written);
        assert_eq!(samples, writer.samples_written());
        drop(Box::from_raw(state));
        drop(Box::from_raw(enc));
    }
}

#[test]
fn threads_appending_at_once_each_keep_their_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mt.wrec");
    let writer = Arc::new(
        TraceWriter::create(&path, Header::for_this_host(), WriterOptions::default()).unwrap(),
    );
    let per_thread = 20_000u64;
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let w = writer.clone();
            std::thread::spawn(move || {
                let mut enc = SampleEncoder::new(t);
                for i in 0..per_thread {
                    let stack: Vec<u64> = (0..(i % 30 + 1))
                        .map(|d| 0x1000 * u64::from(t + 1) + d * 8)
                        .collect();
                    w.append_sample(
                        &mut enc,
                        &SampleRef {
                            time_ns: (i * 10 + 1) * 1000,
                            cpu_ns: i * 1000,
                            flags: 0,
                            stack: &stack,
                        },
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for i in 0..2000 {
        writer
            .write_record(&Record::SamplesLost(SamplesLost {
                thread: 99,
                count: i,
                reason: LossReason::Other,
            }))
            .unwrap();
    }
    for h in handles {
        h.join().unwrap();
    }
    writer.finish().unwrap();
    let t = Trace::open(&path).unwrap();
    let mut d = t.decoder();
    let mut next = [0u64; 4];
    while let Some(e) = d.next() {
        if let Event::Sample(s) = e.unwrap() {
            let i = next[s.thread as usize];
            assert_eq!(s.time_ns, (i * 10 + 1) * 1000);
            assert_eq!(s.stack.len() as u64, i % 30 + 1);
            assert_eq!(s.stack[0], 0x1000 * u64::from(s.thread + 1));
            assert_eq!(
                s.stack[s.stack.len() - 1],
                0x1000 * u64::from(s.thread + 1) + (i % 30) * 8
            );
            next[s.thread as usize] += 1;
        }
    }
    assert_eq!(next, [per_thread; 4]);
}

#[test]
fn a_full_log_drops_samples_but_keeps_room_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.wrec");
    let opts = WriterOptions {
        growth_step: 64 << 10,
        tail_reserve: 4 << 10,
        max_len: 256 << 10,
        ..WriterOptions::default()
    };
    let w = TraceWriter::create(&path, Header::for_this_host(), opts).unwrap();
    let mut enc = SampleEncoder::new(0);
    let stack: Vec<u64> = (0..20).map(|i| 0x4000_0000 + i * 0x1234).collect();
    let mut append = |i: u64| {
        w.append_sample(
            &mut enc,
            &SampleRef {
                time_ns: i * 1000,
                cpu_ns: i,
                flags: 0,
                stack: &stack[..(i % 20) as usize + 1],
            },
        )
    };
    // Without growth, the first step fills and samples are dropped.
    let mut i = 0;
    while append(i).is_ok() {
        i += 1;
    }
    let first_step = i;
    assert!(w.samples_dropped() == 1 && first_step > 1000);
    // Growth makes room again, up to the maximum.
    for _ in 0..20 {
        w.grow().unwrap();
        while append(i).is_ok() {
            i += 1;
        }
    }
    assert!(w.is_full(), "growth stops at max_len");
    assert!(i > 3 * first_step);
    // The tail reserve still takes the loss and end records.
    w.write_record(&Record::SamplesLost(SamplesLost {
        thread: 0,
        count: w.samples_dropped(),
        reason: LossReason::LogFull,
    }))
    .unwrap();
    w.write_record(&Record::End(End {
        time_ns: 1,
        exit_kind: ExitKind::Exited,
        status: 0,
        message: String::new(),
        samples_written: w.samples_written(),
        samples_lost: w.samples_dropped(),
    }))
    .unwrap();
    let len = w.finish().unwrap();
    assert!(len <= 256 << 10);
    let t = Trace::open(&path).unwrap();
    let mut d = t.decoder();
    let mut samples = 0;
    let mut end = None;
    while let Some(e) = d.next() {
        match e.unwrap() {
            Event::Sample(_) => samples += 1,
            Event::Record(Record::End(e)) => end = Some(e),
            _ => {}
        }
    }
    assert_eq!(samples, i);
    assert_eq!(end.unwrap().samples_written, i);
}
