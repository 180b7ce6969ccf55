//! The sampler's signal handler makes no system call but the thread CPU
//! clock (and that at most once, and not for every sample), checked by tracing real `wrec` runs with strace: between
//! each `SIGPROF` delivery and its `rt_sigreturn` on the same thread, the only
//! system call allowed is `clock_gettime`. A lock that waits (futex), an
//! allocation that needs memory from the kernel (brk, mmap), a write or any
//! formatting to stderr would show up here. (Allocations served from the heap
//! without a system call are caught by recorder/tests/handler_alloc.rs.)
//!
//! The interval is 500us, not the 100us of the stress tests: the handler
//! runs the same code at any interval, and under ptrace every signal costs
//! ~5 tracer round trips (delivery, the clock's entry and exit, the
//! sigreturn's), ~100 us on this VM, so at 100us the traced guest could make
//! almost no progress between signals.

use std::collections::HashMap;
use std::process::Command;

use wrec_testkit::*;

fn strace() -> bool {
    Command::new("strace")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Handler runs seen, and every system call made inside one that is not
/// the CPU clock (`pid: line`).
fn handler_syscalls(log: &str) -> (usize, Vec<String>, usize) {
    let mut in_handler: HashMap<&str, usize> = HashMap::new();
    let (mut handlers, mut bad, mut clocks) = (0, Vec::new(), 0);
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("--- SIGPROF") {
            handlers += 1;
            in_handler.insert(pid, 0);
            continue;
        }
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        let name = rest
            .strip_prefix("<... ")
            .map(|r| r.split(' ').next().unwrap_or(""))
            .unwrap_or_else(|| rest.split('(').next().unwrap_or(""));
        if name == "rt_sigreturn" {
            in_handler.remove(pid);
            continue;
        }
        if let Some(n) = in_handler.get_mut(pid) {
            if name == "clock_gettime" && rest.contains("CLOCK_THREAD_CPUTIME_ID") {
                *n += 1;
                clocks += 1;
                if *n > 1 {
                    bad.push(format!("second CPU clock read: {line}"));
                }
            } else if !rest.starts_with("<... clock_gettime resumed") {
                bad.push(line.to_owned());
            }
        }
    }
    (handlers, bad, clocks)
}

#[test]
fn the_signal_handler_makes_no_system_call_but_the_cpu_clock() {
    if !strace() {
        // .ci/run installs strace; a developer machine without it only
        // skips this one check, loudly.
        eprintln!("SKIPPED: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // With --exact-cpu every handler run reads the CPU clock, which shows
    // that the log is read right; by default most runs at 500us skip it
    // (under ptrace, late timers make many read it anyway).
    // Last, the flight recorder (--max-size) with a ring of 11 segments of
    // 4 KiB, which a longer fib run wraps: the handler moves on to prepared
    // segments without a system call either.
    for (exact, ring) in [(true, false), (false, false), (false, true)] {
        for (fixture_name, args) in [("fib-O2.wasm", "40"), ("hostloop.wasm", "300")] {
            if ring && fixture_name != "fib-O2.wasm" {
                continue;
            }
            let args = if ring { "150" } else { args };
            let log = dir.path().join(format!("{fixture_name}.strace"));
            let mut cmd = Command::new("strace");
            cmd.args(["-f", "-qq", "-o"])
                .arg(&log)
                .arg(bin("wrec"))
                .args(["--interval", "500us", "-o"])
                .arg(dir.path().join("t.wrec"))
                .arg("--force");
            if exact {
                cmd.arg("--exact-cpu");
            }
            if ring {
                cmd.args(["--max-size", "300KiB", "--trace-segment-size", "4KiB"]);
            }
            let out = run(cmd.arg(fixture(fixture_name)).arg(args));
            assert!(out.status.success(), "{}", stderr(&out));
            if ring {
                let t = wrec_format::Trace::open(&dir.path().join("t.wrec")).unwrap();
                let r = t.ring().expect("a ring trace");
                assert!(r.first > 0, "the ring did not wrap: {r:?}");
            }
            let log = std::fs::read_to_string(&log).unwrap();
            let (handlers, bad, clocks) = handler_syscalls(&log);
            eprintln!(
                "{fixture_name} (exact CPU: {exact}, ring: {ring}): {handlers} handler runs, {clocks} CPU clock reads"
            );
            assert!(handlers >= 300, "{fixture_name}: only {handlers} signals");
            if exact {
                assert!(
                    clocks * 10 >= handlers * 9,
                    "{fixture_name}: with --exact-cpu the handler reads the CPU clock each time"
                );
            } else {
                assert!(clocks <= handlers);
            }
            assert!(
                bad.is_empty(),
                "{fixture_name}: system calls inside the signal handler:\n{}",
                bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
