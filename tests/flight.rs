//! The flight recorder (`wrec --max-size`, SPEC.md §5) end to end: a ring
//! wrapped many times by a real run stays within its bound and holds the
//! newest samples, symbolized; SIGKILL at any moment leaves every committed
//! sample readable; and `wanalyze` reads a trace while wrec writes it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wrec_format::{flags, Event, Record, Trace};
use wrec_testkit::*;

/// A small ring that a run of a few seconds wraps many times, even on a
/// loaded machine whose timers lose most expirations: a 256 KiB linear part
/// and 11 segments of 4 KiB (the hidden test flag; the real layout's
/// segments are 256 KiB or more).
const RING: [&str; 4] = ["--max-size", "300KiB", "--trace-segment-size", "4KiB"];
const MAX: u64 = 300 << 10;

#[derive(Debug, Default)]
struct Contents {
    samples: u64,
    first_ns: u64,
    last_ns: u64,
    has_end: bool,
    error: Option<String>,
}

/// Every sample of the trace, checked as it is decoded.
fn read(trace: &Path) -> (Trace, Contents) {
    let t = Trace::open(trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    let mut c = Contents::default();
    {
        let mut d = t.decoder();
        let mut last_time: std::collections::HashMap<u32, u64> = Default::default();
        while let Some(e) = d.next() {
            match e {
                Ok(Event::Sample(s)) => {
                    if c.samples == 0 {
                        c.first_ns = s.time_ns;
                    }
                    c.samples += 1;
                    let prev = last_time.insert(s.thread, s.time_ns).unwrap_or(0);
                    assert!(s.time_ns >= prev, "{}: time went back", trace.display());
                    assert!(!s.stack.is_empty() || s.flags & flags::HOST != 0);
                    c.last_ns = c.last_ns.max(s.time_ns);
                }
                Ok(Event::Record(Record::End(_))) => c.has_end = true,
                Ok(_) => {}
                Err(e) => {
                    c.error = Some(e.to_string());
                    break;
                }
            }
        }
    }
    (t, c)
}

/// Sum of the counts of folded stacks, and the stacks.
fn folded_total(out: &str) -> u64 {
    out.lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_wrapped_ring_holds_the_newest_samples_with_names_and_lines_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("fr.wrec");
    let mut args: Vec<&str> = RING.to_vec();
    args.extend(["--interval", "100us", "-o", "fr.wrec"]);
    let wasm = fixture("fib-O2.wasm");
    args.push(wasm.to_str().unwrap());
    args.push("40");
    let out = wrec(dir.path(), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let written: u64 = stderr(&out)
        .split("fr.wrec: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sample count in {}", stderr(&out)));

    assert!(std::fs::metadata(&trace).unwrap().len() <= MAX);
    let (t, c) = read(&trace);
    assert_eq!(c.error, None);
    assert!(c.has_end);
    let ring = t.ring().expect("a ring trace");
    // The ring wrapped (how often depends on how many timer expirations a
    // loaded machine merges; the format's own test wraps one many times).
    assert!(ring.first > 0, "{ring:?}");
    // Nothing older than the ring holds: far fewer samples than written,
    // and they end with the run.
    assert!(c.samples < written, "{} of {written}", c.samples);
    assert!(c.samples > 300, "{}", c.samples);

    // Symbolized with names and lines, and wanalyze says what span it is.
    let out = wanalyze(&[
        trace.as_os_str(),
        "--dwarf".as_ref(),
        "--format".as_ref(),
        "text".as_ref(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("flight-recorder trace"), "{err}");
    assert!(err.contains("older samples were overwritten"), "{err}");
    assert!(!err.contains("no recorded wasm offset"), "{err}");
    let text = stdout(&out);
    assert!(text.contains("fib"), "{text}");
    assert!(text.contains("fib.c:"), "no source lines: {text}");

    // The folded profile holds exactly the samples the ring holds.
    let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(folded_total(&stdout(&out)), c.samples);

    // --last keeps the final stretch only.
    let span = Duration::from_nanos(c.last_ns - c.first_ns);
    let half = span / 2;
    let last = format!("{}ms", half.as_millis());
    let out = wanalyze(&[
        trace.as_os_str(),
        "--format".as_ref(),
        "folded".as_ref(),
        "--last".as_ref(),
        last.as_ref(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--last"), "{err}");
    let n = folded_total(&stdout(&out));
    assert!(n > 0 && n < c.samples, "{n} of {}", c.samples);
    // A bad duration is a one-line error.
    let out = wanalyze(&[trace.as_os_str(), "--last".as_ref(), "soon".as_ref()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a duration"), "{}", stderr(&out));
}

/// The reliability suite's kill test in flight-recorder mode: SIGKILL at
/// 12 moments of a run whose ring is overwritten every ~30 ms, so most
/// kills land after several laps, some while a segment is being prepared.
/// Every trace decodes without damage, within its bound, and `wanalyze`
/// profiles exactly its committed samples.
#[test]
fn a_killed_flight_recorder_keeps_every_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("sortmap.wasm");
    let mut wrapped = 0;
    for i in 0..12u64 {
        let delay = Duration::from_millis(20 + i * 140);
        let trace = dir.path().join(format!("k{i}.wrec"));
        let mut child = Command::new(bin("wrec"))
            .args(RING)
            .args(["--interval", "100us", "-o"])
            .arg(&trace)
            .arg(&wasm)
            .arg("7200")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let killed_at = started.elapsed();
        let status = child.wait().unwrap();
        assert!(!status.success(), "the guest finished before {delay:?}");
        let len = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
        if len < 128 {
            continue; // killed before the header: the kill test covers it
        }
        assert!(len <= MAX, "kill at {killed_at:?}: {len} bytes");
        let (t, c) = read(&trace);
        assert_eq!(c.error, None, "kill at {killed_at:?}: damage in {c:?}");
        assert!(!c.has_end);
        if t.ring().is_some_and(|r| r.first > 0) {
            wrapped += 1;
        }
        if c.samples == 0 {
            continue;
        }
        let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
        let err = stderr(&out);
        assert!(out.status.success(), "kill at {killed_at:?}: {err}");
        assert!(err.contains("without its end record"), "{err}");
        assert!(!err.contains("still going"), "{err}");
        assert_eq!(
            folded_total(&stdout(&out)),
            c.samples,
            "kill at {killed_at:?}"
        );
    }
    assert!(
        wrapped >= 5,
        "only {wrapped} of 12 kills after the ring wrapped"
    );
}

/// `wanalyze` on the trace of a running wrec, several times during one
/// run: each is a valid profile of what was committed, says the run is
/// still going, and takes nothing from the recorder (which finishes with
/// its trace intact). Both layouts: linear (a prefix of the run, growing)
/// and ring.
#[test]
fn a_trace_is_analyzed_while_wrec_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("sortmap.wasm");
    for ring in [false, true] {
        let trace = dir.path().join(format!("live-{ring}.wrec"));
        let mut cmd = Command::new(bin("wrec"));
        if ring {
            cmd.args(RING);
        }
        let mut child = cmd
            .args(["--interval", "200us", "-o"])
            .arg(&trace)
            .arg(&wasm)
            // ~4 s: longer than the four analyses on a fast machine.
            .arg("7200")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut counts = Vec::new();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(250));
            let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
            let err = stderr(&out);
            if child.try_wait().unwrap().is_some() {
                break; // finished already: nothing live to look at
            }
            assert!(out.status.success(), "{err}");
            assert!(err.contains("still going"), "{err}");
            assert!(!err.contains("damage"), "{err}");
            counts.push(folded_total(&stdout(&out)));
        }
        assert!(child.wait().unwrap().success());
        assert!(counts.len() >= 2, "the run ended before two live analyses");
        let (t, c) = read(&trace);
        assert_eq!(c.error, None);
        assert!(c.has_end);
        assert!(!t.being_written());
        if !ring {
            // Prefixes of the run: each holds at least the one before, and
            // at most the whole.
            for w in counts.windows(2) {
                assert!(w[0] <= w[1], "{counts:?}");
            }
            assert!(*counts.last().unwrap() <= c.samples);
        }
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
        assert!(!stderr(&out).contains("still going"), "{}", stderr(&out));
    }
}
