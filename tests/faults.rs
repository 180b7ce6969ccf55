//! Faults while recording, end to end: `wrec` killed at any moment, and a
//! trace on a file system that fills up. What the README's "Guarantees"
//! section promises is checked here against the real binaries.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wrec_format::{Event, Record, Trace};
use wrec_testkit::*;

/// What the reader finds in a trace.
#[derive(Debug, Default)]
struct Contents {
    samples: u64,
    last_sample_ns: u64,
    has_end: bool,
    error: Option<String>,
}

fn read(trace: &Path) -> Contents {
    let t = Trace::open(trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    let mut c = Contents::default();
    let mut d = t.decoder();
    let mut last_time: std::collections::HashMap<u32, u64> = Default::default();
    while let Some(e) = d.next() {
        match e {
            Ok(Event::Sample(s)) => {
                c.samples += 1;
                // Per thread, time never goes back: no record is misread.
                let prev = last_time.insert(s.thread, s.time_ns).unwrap_or(0);
                assert!(s.time_ns >= prev, "{}: time went back", trace.display());
                assert!(!s.stack.is_empty() || s.flags & wrec_format::flags::HOST != 0);
                c.last_sample_ns = c.last_sample_ns.max(s.time_ns);
            }
            Ok(Event::Record(Record::End(_))) => c.has_end = true,
            Ok(_) => {}
            Err(e) => {
                c.error = Some(e.to_string());
                break;
            }
        }
    }
    c
}

/// Sample records that are complete and intact but lie past the committed
/// length: written before the kill, yet not counted as part of the trace. The
/// writer commits each record right after writing it, so at most the records
/// being written at the moment of the kill (one per thread, plus one from a
/// signal handler interrupting it) may be there.
fn complete_records_past_commit(trace: &Path) -> usize {
    let bytes = std::fs::read(trace).unwrap();
    let t = Trace::from_bytes(bytes.clone()).unwrap();
    let end = t.data_end() as usize;
    let tail = &bytes[end..];
    let mut it = wrec_format::RecordIter::for_tests(tail);
    let mut n = 0;
    while let Some(Ok(_)) = it.next() {
        n += 1;
    }
    n
}

/// SIGKILL at 24 moments, from before the guest starts to late in its run:
/// every trace that got its header reads cleanly up to its last committed
/// record (no damage, no sample misread), holds samples up to shortly before
/// the kill, and `wanalyze` writes a profile of all of them and says the end
/// record is missing. A trace killed before its header existed gets a clear
/// one-line error.
#[test]
fn a_killed_recorder_keeps_every_committed_sample() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("sortmap.wasm");
    // ~2 s of work: long enough that no kill below lands after the end.
    let args = ["3600"];
    let mut killed_with_samples = 0;
    let mut before_header = 0;
    let mut samples_by_delay = Vec::new();
    for i in 0..24u64 {
        let delay = Duration::from_millis(if i == 0 { 1 } else { 5 + i * 45 });
        let trace = dir.path().join(format!("k{i}.wrec"));
        let mut child = Command::new(bin("wrec"))
            .args(["--interval", "200us", "-o"])
            .arg(&trace)
            .arg(&wasm)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        let killed_at = started.elapsed();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the guest finished before the kill at {delay:?}: make it longer"
        );

        let len = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
        if len < 64 {
            // Killed before the header was written: nothing to keep, and
            // wanalyze says so in one line.
            before_header += 1;
            let out = wanalyze(&[trace.as_os_str()]);
            assert!(!out.status.success());
            let err = stderr(&out);
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains(&format!("k{i}.wrec")), "{err}");
            assert!(!err.contains("panicked"), "{err}");
            continue;
        }

        let c = read(&trace);
        assert_eq!(c.error, None, "kill at {killed_at:?}: damage in {c:?}");
        assert!(!c.has_end, "kill at {killed_at:?}: an end record");
        let unread = complete_records_past_commit(&trace);
        assert!(
            unread <= 2,
            "kill at {killed_at:?}: {unread} complete records past the committed length"
        );
        samples_by_delay.push((killed_at, c.samples));
        if c.samples == 0 {
            continue;
        }
        killed_with_samples += 1;

        // The whole committed part is in the profile, with the warning.
        let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
        let err = stderr(&out);
        assert!(out.status.success(), "kill at {killed_at:?}: {err}");
        assert!(err.contains("without its end record"), "{err}");
        let total: u64 = stdout(&out)
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, c.samples, "kill at {killed_at:?}");
        // Named wasm functions, not garbage: the sort and hash functions
        // are most of any sortmap profile longer than a few samples.
        if c.samples >= 50 {
            let f: Vec<(Vec<String>, u64)> = stdout(&out)
                .lines()
                .map(|l| {
                    let (s, n) = l.rsplit_once(' ').unwrap();
                    (
                        s.split(';').map(str::to_owned).collect(),
                        n.parse().unwrap(),
                    )
                })
                .collect();
            let shares = self_shares(&f);
            let known: f64 = [
                "merge",
                "msort",
                "memcpy",
                "ht_lookup",
                "ht_insert",
                "hash_key",
                "gen_records",
                "next_rand",
                "batch",
            ]
            .iter()
            .filter_map(|n| shares.get(*n))
            .sum();
            assert!(known > 0.9, "kill at {killed_at:?}: {shares:?}");
        }
    }
    eprintln!("samples by kill time: {samples_by_delay:?}");
    assert!(
        killed_with_samples >= 18,
        "only {killed_with_samples} of 24 kills left samples ({before_header} before the header)"
    );
    // Later kills keep more: the trace is written as the run goes, not at the end.
    let first = samples_by_delay.iter().find(|(_, n)| *n > 0).unwrap();
    let last = samples_by_delay.last().unwrap();
    assert!(
        last.1 > first.1 + 1000,
        "{first:?} vs {last:?}: samples are not committed as they are taken"
    );
}

/// `abort()` while recording, which is how a panic ends `wrec` built with
/// the `dist` profile (`panic = "abort"`, Cargo.toml): SIGABRT with its
/// default action, no destructor, no end record. Delivered from outside at
/// four moments (what `abort()` raises is the same signal): each trace that
/// got its header reads cleanly up to its last committed record, and
/// `wanalyze` writes a profile of all its samples and says the end record is
/// missing, as after SIGKILL above.
#[test]
fn an_aborted_recorder_keeps_every_committed_sample() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("sortmap.wasm");
    let mut with_samples = 0;
    for (i, ms) in [150u64, 400, 700, 1000].into_iter().enumerate() {
        let trace = dir.path().join(format!("a{i}.wrec"));
        // `ulimit -c 0`: no core file; `exec`: the signal goes to wrec.
        let mut child = Command::new("sh")
            .args(["-c", "ulimit -c 0; exec \"$@\"", "sh"])
            .arg(bin("wrec"))
            .args(["--interval", "200us", "-o"])
            .arg(&trace)
            .arg(&wasm)
            .arg("3600")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-ABRT", &pid]).status().unwrap();
        assert!(sent.success());
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(6),
            "abort at {ms} ms: {status:?} (the guest finished first?)"
        );

        let len = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
        if len < 64 {
            continue; // before the header: nothing to keep
        }
        let c = read(&trace);
        assert_eq!(c.error, None, "abort at {ms} ms: damage in {c:?}");
        assert!(!c.has_end, "abort at {ms} ms: an end record");
        let unread = complete_records_past_commit(&trace);
        assert!(
            unread <= 2,
            "abort at {ms} ms: {unread} records past commit"
        );
        if c.samples == 0 {
            continue;
        }
        with_samples += 1;
        let out = wanalyze(&[trace.as_os_str(), "--format".as_ref(), "folded".as_ref()]);
        let err = stderr(&out);
        assert!(out.status.success(), "abort at {ms} ms: {err}");
        assert!(err.contains("without its end record"), "{err}");
        let total: u64 = stdout(&out)
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, c.samples, "abort at {ms} ms");
    }
    assert!(
        with_samples >= 2,
        "only {with_samples} of 4 aborts left samples"
    );
}

/// Whether this process may make a private mount namespace (unprivileged
/// user namespaces, or root).
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["-Urm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Recording at 50us onto a 256 KiB tmpfs (room for about half the run):
/// the guest runs to its normal end with its
/// normal output and status; the trace holds what fitted, counts the rest as
/// lost, and wrec says so once. (RLIMIT_FSIZE, the other kind of full disk,
/// is in recorder/tests/sampling.rs.)
#[test]
fn a_full_file_system_keeps_the_guest_running() {
    if !can_mount_tmpfs() {
        // Not silent: the test log shows it. Both CI and the dev machines
        // allow it; a sandbox without user namespaces does not.
        eprintln!("SKIPPED: cannot mount a tmpfs here (no user namespaces)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path();
    let script = format!(
        "set -e; m={d}/mnt; mkdir -p $m; mount -t tmpfs -o size=256k none $m; \
         set +e; {wrec} --interval 50us -o $m/t.wrec {wasm} 2400; s=$?; \
         cp $m/t.wrec {d}/t.wrec; exit $s",
        d = out_dir.display(),
        wrec = bin("wrec").display(),
        wasm = fixture("sortmap.wasm").display(),
    );
    let out = run(Command::new("unshare").args(["-Urm", "sh", "-c", &script]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        stdout(&out),
        "sortmap: batches=2400 checksum=36f74332227e4e6a\n",
        "the guest's output changed"
    );
    assert_eq!(
        err.matches("No space left on device").count(),
        1,
        "wrec should say once that the disk is full:\n{err}"
    );
    let trace = out_dir.join("t.wrec");
    assert!(std::fs::metadata(&trace).unwrap().len() <= 256 << 10);
    let c = read(&trace);
    assert_eq!(c.error, None);
    assert!(c.has_end, "the end record fits in the reserve");
    assert!(c.samples > 1000, "{c:?}");
    let report = analyze_stdout(&trace, &["--format", "text"]);
    let lost_line = report
        .lines()
        .find(|l| l.trim_start().starts_with("lost samples"))
        .unwrap_or_else(|| panic!("no lost samples line:\n{report}"));
    let lost: u64 = lost_line
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(lost > 1000, "{lost_line}");
    assert!(report.contains("exited, status 0"), "{report}");
}
