//! `wrec serve`: the `http-handler` fixture served under load from several
//! client threads, stopped with SIGINT, its trace analyzed: one sampled
//! thread per worker, `hash_work` hot with its line, no broken sample, one
//! request record and one Firefox marker per request, and every sample of
//! `hash_work` inside a request of its thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wrec_format::flags;
use wrec_testkit::cli::{bin, firefox_profile};
use wrec_testkit::fixture;
use wrec_testkit::trace::Loaded;

const FIXTURE: &str = "http-handler.component.wasm";

/// A running `wrec serve`, its stderr lines arriving on `lines`.
struct Server {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    /// Lines read so far.
    seen: Vec<String>,
}

impl Server {
    /// Starts `wrec serve --addr 127.0.0.1:0 -o t.wrec EXTRA FIXTURE` in
    /// `dir` and waits until it listens.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(bin("wrec"))
            .current_dir(dir)
            .args([
                "serve",
                "--no-cache",
                "--addr",
                "127.0.0.1:0",
                "-o",
                "t.wrec",
            ])
            .args(extra)
            .arg(fixture(FIXTURE))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wrec serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let addr = line
                        .strip_prefix("Serving HTTP on http://")
                        .and_then(|a| a.strip_suffix('/'))
                        .map(|a| a.parse::<SocketAddr>().expect("an address"));
                    seen.push(line);
                    if let Some(a) = addr {
                        break a;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "wrec serve did not start listening; stderr:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        Server {
            child,
            addr,
            lines,
            seen,
        }
    }

    /// Sends `sig` (`INT`, `TERM`) and waits for the exit (at most a
    /// minute); the exit code and all of stderr.
    fn stop(mut self, sig: &str) -> (Option<i32>, String) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let rest: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "wrec serve did not exit after SIG{sig}; stderr:\n{}\n{}",
                    self.seen.join("\n"),
                    rest.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread ends at EOF.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(l);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// A response: status code and body.
struct Answer {
    status: u32,
    body: String,
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`).
fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("status line: {head}"));
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Answer { status, body }
}

/// A chunked body's content.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// `http-handler: method=GET path=PATH units=N hash=HEX16`: the hash.
fn check_body(a: &Answer, path: &str, units: u32) -> String {
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    let prefix = format!("http-handler: method=GET path={path} units={units} hash=");
    let hash = a
        .body
        .trim_end()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{path}: body {:?}", a.body));
    assert!(
        hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{path}: hash {hash:?}"
    );
    hash.to_owned()
}

const CLIENTS: usize = 4;
const PER_CLIENT: usize = 50;

/// Sends `CLIENTS` × `PER_CLIENT` requests (`n=5`), checking each answer;
/// a path answered twice has the same hash.
fn load(addr: SocketAddr) -> usize {
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut hashes = std::collections::HashMap::new();
                for i in 0..PER_CLIENT {
                    // Two paths a client, so each hash is seen again.
                    let path = format!("/c{c}/p{}?n=5", i % 2);
                    let hash = check_body(&get(addr, &path), &path, 5);
                    let first = hashes.entry(path.clone()).or_insert_with(|| hash.clone());
                    assert_eq!(*first, hash, "{path}: the hash changed");
                }
                PER_CLIENT
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).sum()
}

#[test]
fn serve_profiles_every_worker_under_load_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // A connection that never sends a request: a stop must not wait for it.
    let idle = TcpStream::connect(server.addr).unwrap();
    let sent = load(server.addr);
    assert_eq!(sent, CLIENTS * PER_CLIENT);
    // Idle workers take no samples (and would take ~300 a worker here).
    std::thread::sleep(Duration::from_millis(300));
    let (code, err) = server.stop("INT");
    drop(idle);
    assert_eq!(code, Some(0), "stderr:\n{err}");
    assert!(
        err.contains("wrec: SIGINT received: finishing the requests in progress"),
        "{err}"
    );
    assert!(
        err.contains(&format!("wrec: served {sent} requests")),
        "{err}"
    );
    let summary: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("wrec: trace "))
        .collect();
    assert_eq!(summary.len(), 1, "{err}");
    assert!(summary[0].contains("wanalyze t.wrec --dwarf"), "{err}");
    assert!(!err.contains("error"), "{err}");

    let trace = dir.path().join("t.wrec");
    let loaded = Loaded::load(&trace, &fixture(FIXTURE));
    assert_eq!(loaded.end.status, 0);
    assert!(
        loaded.starts.iter().all(|s| s.name.starts_with("worker ")),
        "{:?}",
        loaded.starts.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    // Every worker ended with the server.
    assert_eq!(loaded.starts.len(), loaded.ends.len());
    let broken = loaded
        .samples
        .iter()
        .filter(|s| s.has(flags::BROKEN))
        .count();
    assert_eq!(broken, 0, "of {} samples", loaded.samples.len());

    let p = firefox_profile(&trace, dir.path(), &["--dwarf"]);
    let mut busy_threads = 0;
    let mut leaves: std::collections::HashMap<String, usize> = Default::default();
    let mut hash_lines = std::collections::HashMap::new();
    for t in 0..p.threads().len() {
        let samples = p.samples(t);
        if samples
            .iter()
            .any(|s| s.iter().any(|f| f.func == "hash_work"))
        {
            busy_threads += 1;
        }
        for s in &samples {
            let Some(leaf) = s.first() else { continue };
            *leaves.entry(leaf.func.clone()).or_default() += 1;
            if leaf.func == "hash_work" {
                *hash_lines
                    .entry((leaf.file.clone().unwrap_or_default(), leaf.line))
                    .or_insert(0usize) += 1;
            }
        }
    }
    assert!(
        busy_threads >= 2,
        "{busy_threads} of {} threads ran hash_work",
        p.threads().len()
    );
    check_requests(&loaded, &p, sent);
    let text = wrec_testkit::cli::analyze_stdout(&trace, &["--format", "text", "--quiet"]);
    assert!(
        text.contains(&format!("requests      {sent}; slowest: request ")),
        "{text}"
    );
    check_endpoint_table(&text, sent);
    let hottest = leaves.iter().max_by_key(|(_, n)| **n).unwrap();
    assert_eq!(hottest.0, "hash_work", "{leaves:?}");
    let ((file, line), _) = hash_lines.iter().max_by_key(|(_, n)| **n).unwrap();
    assert!(file.ends_with("http-handler.c"), "{file}");
    assert!(matches!(line, Some(58 | 59)), "{hash_lines:?}");
    check_pprof_requests(&trace, dir.path());
}

/// The text report's requests by endpoint: the 8 paths, each asked for
/// by one client 25 times, with samples in each; together all requests.
fn check_endpoint_table(text: &str, sent: usize) {
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Requests by endpoint: 8 of 8"))
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 8, "{text}");
    let mut total = 0;
    for row in &table {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let requests: usize = cells[0].parse().unwrap();
        let samples: usize = cells[1].parse().unwrap();
        assert_eq!(requests, PER_CLIENT / 2, "{row}");
        assert!(samples > 0, "{row}");
        assert!(row.contains("GET /c") && row.ends_with("?n=5"), "{row}");
        total += requests;
    }
    assert_eq!(total, sent, "{text}");
}

/// The pprof profile labels every sample with its request (`request`:
/// method and path): `pprof -tags` lists all 8 paths the clients asked
/// for, and one path's profile alone has `hash_work` on top.
fn check_pprof_requests(trace: &Path, dir: &Path) {
    if !wrec_testkit::cli::have_go() {
        return;
    }
    let pb = dir.join("t.pb.gz");
    let out = wrec_testkit::cli::wanalyze(&[
        trace.as_os_str(),
        "--quiet".as_ref(),
        "--format".as_ref(),
        "pprof".as_ref(),
        "--out".as_ref(),
        pb.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", wrec_testkit::cli::stderr(&out));
    let tags = wrec_testkit::cli::go_pprof(&["-tags", "-sample_index=samples"], &pb).unwrap();
    assert!(tags.contains(" request:"), "{tags}");
    for c in 0..CLIENTS {
        for i in 0..2 {
            let name = format!("GET /c{c}/p{i}?n=5");
            assert!(tags.contains(&name), "no {name} in\n{tags}");
        }
    }
    let top = wrec_testkit::cli::go_pprof(
        &["-top", "-sample_index=samples", "-tagfocus=request=/c1/p0"],
        &pb,
    )
    .unwrap();
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.trim_end().ends_with("hash_work"), "{top}");
}

/// One request record per request sent, each once, with its method and
/// path; one `Request` marker per request in the Firefox profile, on the
/// thread of its record; every `hash_work` sample inside one of its
/// thread's markers.
fn check_requests(loaded: &Loaded, p: &wrec_testkit::firefox::FxProfile, sent: usize) {
    let mut indices: Vec<u64> = loaded.requests.iter().map(|r| r.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..sent as u64).collect::<Vec<_>>());
    let mut paths: Vec<String> = loaded.requests.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    let mut want: Vec<String> = (0..CLIENTS)
        .flat_map(|c| (0..PER_CLIENT).map(move |i| format!("/c{c}/p{}?n=5", i % 2)))
        .collect();
    want.sort();
    assert_eq!(paths, want);
    assert!(loaded.requests.iter().all(|r| r.method == "GET"));
    assert!(loaded.requests.iter().all(|r| r.end_ns > r.start_ns));

    let strings = p.json["shared"]["stringArray"].as_array().unwrap();
    let mut markers = 0;
    for (t, th) in p.threads().iter().enumerate() {
        let m = &th["markers"];
        let n = m["length"].as_u64().unwrap() as usize;
        let mut spans = Vec::new();
        for k in 0..n {
            let data = &m["data"][k];
            if data["type"] != "Request" {
                continue;
            }
            markers += 1;
            let name = strings[m["name"][k].as_u64().unwrap() as usize]
                .as_str()
                .unwrap();
            let path = data["path"].as_str().unwrap();
            assert_eq!(name, format!("GET {path}"));
            assert_eq!(data["method"], "GET");
            assert!(data["request"].as_u64().unwrap() < sent as u64);
            assert_eq!(m["phase"][k], 1);
            let (a, b) = (
                m["startTime"][k].as_f64().unwrap(),
                m["endTime"][k].as_f64().unwrap(),
            );
            assert!(a < b, "{a} {b}");
            spans.push((a, b));
        }
        // Every hash_work sample of this thread lies in one of its
        // requests, and so does nearly every sample: a worker between
        // requests is idle, not sampled. (A request's task may move to
        // another worker between two polls; its record is on the last.
        // Sample times are whole µs, rounded down.)
        let deltas = th["samples"]["timeDeltas"].as_array().unwrap();
        let samples = p.samples(t);
        let mut time = 0.0;
        let mut outside = Vec::new();
        for (k, s) in samples.iter().enumerate() {
            time += deltas[k].as_f64().unwrap();
            let inside = spans
                .iter()
                .any(|&(a, b)| a - 1e-3 <= time && time <= b + 1e-6);
            if !inside {
                outside.push((time, s.first().map(|f| f.func.clone())));
            }
            if s.first().is_some_and(|f| f.func == "hash_work") {
                assert!(
                    inside,
                    "thread {t}: a hash_work sample at {time} ms is in no request: {spans:?}"
                );
            }
        }
        eprintln!(
            "thread {t}: {} samples, {} outside its {} requests",
            samples.len(),
            outside.len(),
            spans.len()
        );
        assert!(
            outside.len() <= 2.max(samples.len() / 50),
            "thread {t}: {} of {} samples are in none of its requests: {outside:?}",
            outside.len(),
            samples.len()
        );
    }
    assert_eq!(markers, sent);
}

#[test]
fn a_second_sigint_ends_the_trace_at_once_while_a_request_runs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = server.addr;
    // About 1.5 s of hash_work (n is capped at 1000).
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /slow?n=1000 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    let kill = || {
        assert!(Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success())
    };
    kill();
    std::thread::sleep(Duration::from_millis(200));
    let (code, err) = server.stop("INT");
    let _ = slow.join();
    assert_eq!(code, Some(130), "stderr:\n{err}");
    assert!(err.contains("send it again to stop at once"), "{err}");
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("wrec: trace "))
            .count(),
        1,
        "{err}"
    );
    let loaded = Loaded::load(&dir.path().join("t.wrec"), &fixture(FIXTURE));
    assert_eq!(loaded.end.exit_kind, wrec_format::ExitKind::Signaled);
    assert_eq!(loaded.end.status, 130);
    // The request never ended: no record of it.
    assert!(loaded.requests.is_empty());
    assert!(loaded.samples.iter().any(|s| !s.stack.is_empty()));
}

#[test]
fn serve_refuses_a_core_module_and_a_busy_address_in_one_line_without_a_trace() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    for (wasm, addr, says) in [
        ("fib-O2.wasm", "127.0.0.1:0", "core module"),
        (FIXTURE, busy_addr.as_str(), "cannot listen on"),
    ] {
        let out = Command::new(bin("wrec"))
            .current_dir(dir.path())
            .args(["serve", "--no-cache", "--addr", addr, "-o", "t.wrec"])
            .arg(fixture(wasm))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{wasm}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!dir.path().join("t.wrec").exists(), "{wasm}");
    }
    drop(busy);
}

/// `wrec serve --max-size`: a service's flight recorder. Under load the
/// ring wraps several times, the file stays within its bound, and what it
/// holds (the newest stretch) analyzes with names, the requests of that
/// stretch and the span it covers.
#[test]
fn serve_as_a_flight_recorder_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    // A 256 KiB linear part and 11 segments of 4 KiB (the hidden test
    // flag): ~14,000 samples at 100us wrap the segments several times.
    let max = 300u64 << 10;
    let server = Server::start(
        dir.path(),
        &[
            "--interval",
            "100us",
            "--max-size",
            "300KiB",
            "--trace-segment-size",
            "4KiB",
        ],
    );
    let sent = load(server.addr);
    let (code, err) = server.stop("INT");
    assert_eq!(code, Some(0), "stderr:\n{err}");
    let trace = dir.path().join("t.wrec");
    let size = std::fs::metadata(&trace).unwrap().len();
    assert!(size <= max, "{size} bytes, over --max-size {max}");

    let out =
        wrec_testkit::cli::wanalyze(&[trace.as_os_str(), "--format".as_ref(), "text".as_ref()]);
    let (text, notes) = (
        wrec_testkit::cli::stdout(&out),
        wrec_testkit::cli::stderr(&out),
    );
    assert!(out.status.success(), "{notes}");
    assert!(notes.contains("older samples were overwritten"), "{notes}");
    assert!(text.contains("requests      "), "{text}");
    let p = firefox_profile(&trace, dir.path(), &["--dwarf"]);
    let mut leaves: std::collections::HashMap<String, usize> = Default::default();
    let mut markers = 0;
    for t in 0..p.threads().len() {
        for s in p.samples(t) {
            if let Some(leaf) = s.first() {
                *leaves.entry(leaf.func.clone()).or_default() += 1;
            }
        }
        let m = &p.threads()[t]["markers"];
        markers += (0..m["length"].as_u64().unwrap() as usize)
            .filter(|&k| m["data"][k]["type"] == "Request")
            .count();
    }
    let hottest = leaves.iter().max_by_key(|(_, n)| **n).unwrap();
    assert_eq!(hottest.0, "hash_work", "{leaves:?}");
    // Only the newest requests are left, and some are.
    assert!(
        markers > 0 && markers < sent,
        "{markers} of {sent} requests"
    );
}
