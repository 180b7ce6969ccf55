//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/`:
//!
//! - `symbols`: every `fixtures/*.wasm` and `fuzz/wasm/*.wasm`.
//! - `trace_reader`: real traces recorded by `target/debug/wrec` (when it is
//!   built) from the fixtures, plus traces synthesized with
//!   `wrec_format::TraceWriter` whose module records describe a fixture's
//!   real function table (found with wasmparser): function entries, an
//!   address map onto real instruction offsets, and stacks built from real
//!   call sites (so the analyzer's call-target look-ups and host-call
//!   frames are reached), with host samples, truncated stacks, two threads,
//!   lost samples and an end record.
//! - `analyze`: those traces in fixture mode (mode byte = the fixture's index
//!   in `harness::FIXTURES`, with and without DWARF), and in own-wasm mode
//!   with the small modules of `fuzz/wasm/` and `fib-stripped.wasm`.
//! - both: `wrec serve` traces (`syn-serve-*`, format 3.3) whose request
//!   records nest, overlap, share names, are zero-length or end before
//!   they start, carry odd paths (non-ASCII, control characters, 256 bytes
//!   and more), lie before or after the samples, or sit on a thread
//!   without samples or one that never started.
//!
//! Run: `cargo run --release --example seeds` (from `fuzz/`). Extra traces
//! to add can be given as arguments: `-- path/to/a.wrec=fib-O2.wasm`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmparser::{Operator, Parser, Payload, TypeRef};
use wrec_format::*;
use wrec_fuzz::harness::{self, FIXTURES};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One defined function of a module, as the synthesizer sees it.
struct Func {
    index: u32,
    /// Whole-file offsets of its instructions.
    insts: Vec<u64>,
    /// (instruction number, callee index) of its `call`s.
    calls: Vec<(usize, u32)>,
}

struct Wasm {
    imports: u32,
    funcs: Vec<Func>,
}

fn parse(wasm: &[u8]) -> Wasm {
    let mut imports = 0;
    let mut funcs = Vec::new();
    for p in Parser::new(0).parse_all(wasm) {
        match p.expect("fixture parses") {
            Payload::ImportSection(r) => {
                for i in r {
                    if let TypeRef::Func(_) = i.unwrap().ty {
                        imports += 1;
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let index = imports + funcs.len() as u32;
                let mut ops = body.get_operators_reader().unwrap();
                let mut insts = Vec::new();
                let mut calls = Vec::new();
                while !ops.eof() {
                    let at = ops.original_position() as u64;
                    let op = ops.read().unwrap();
                    if let Operator::Call { function_index } = op {
                        calls.push((insts.len(), function_index));
                    }
                    insts.push(at);
                }
                funcs.push(Func {
                    index,
                    insts,
                    calls,
                });
            }
            _ => {}
        }
    }
    Wasm { imports, funcs }
}

/// xorshift64*: deterministic seeds.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes of fake machine code per wasm instruction.
const INST: u64 = 8;
/// Trampoline space before each function.
const GAP: u64 = 0x20;
/// Address-map entries kept per function (evenly spread, calls always kept).
const MAP_PER_FUNC: usize = 48;

struct Layout {
    text_addr: u64,
    /// Code offset of each function's start, by position in `Wasm::funcs`.
    starts: Vec<u64>,
    record: ModuleRecord,
}

fn layout(w: &Wasm, path: &str, sha256: [u8; 32], text_addr: u64) -> Layout {
    let mut functions = Vec::new();
    let mut address_map = Vec::new();
    let mut starts = Vec::new();
    let mut at = 0;
    for f in &w.funcs {
        address_map.push(AddressMapEntry {
            code_offset: at,
            wasm_offset: None,
        });
        at += GAP;
        starts.push(at);
        let n = f.insts.len();
        functions.push(FunctionEntry {
            index: f.index,
            offset: at,
            len: n as u64 * INST,
        });
        let step = n.div_ceil(MAP_PER_FUNC).max(1);
        let mut keep: Vec<usize> = (0..n).step_by(step).collect();
        keep.extend(f.calls.iter().map(|c| c.0));
        keep.sort_unstable();
        keep.dedup();
        for j in keep {
            address_map.push(AddressMapEntry {
                code_offset: at + j as u64 * INST,
                wasm_offset: Some(f.insts[j]),
            });
        }
        at += n as u64 * INST;
    }
    address_map.push(AddressMapEntry {
        code_offset: at,
        wasm_offset: None,
    });
    at += GAP;
    Layout {
        text_addr,
        starts,
        record: ModuleRecord {
            id: 0,
            path: path.to_owned(),
            sha256,
            text_addr,
            text_len: at,
            functions,
            address_map,
            addresses: Vec::new(),
            inner: None,
        },
    }
}

/// A stack, innermost first, walking real call sites from a random function.
fn stack(w: &Wasm, l: &Layout, rng: &mut Rng, max_depth: usize) -> (Vec<u64>, u8) {
    let by_index = |i: u32| i.checked_sub(w.imports).map(|k| k as usize).filter(|&k| k < w.funcs.len());
    let mut outer_first = Vec::new();
    // The entry trampoline's return address, sometimes.
    if rng.below(3) == 0 {
        outer_first.push(l.text_addr + 4);
    }
    let mut f = rng.below(w.funcs.len());
    let mut flags = 0;
    loop {
        let func = &w.funcs[f];
        let code = l.text_addr + l.starts[f];
        let calls: Vec<&(usize, u32)> = func.calls.iter().collect();
        if calls.is_empty() || outer_first.len() >= max_depth || rng.below(8) == 0 {
            // Leaf: a PC in this function, or a host call from it.
            let host_calls: Vec<_> = calls.iter().filter(|c| c.1 < w.imports).collect();
            if !host_calls.is_empty() && rng.below(3) == 0 {
                let (j, _) = *host_calls[rng.below(host_calls.len())];
                outer_first.push(code + (*j as u64 + 1) * INST);
                flags |= flags::HOST;
            } else if rng.below(10) == 0 {
                // In a trampoline on the way out.
                outer_first.push(code - 2);
            } else {
                let j = rng.below(func.insts.len());
                outer_first.push(code + j as u64 * INST + rng.below(INST as usize) as u64);
            }
            break;
        }
        let &&(j, callee) = &calls[rng.below(calls.len())];
        outer_first.push(code + (j as u64 + 1) * INST);
        match by_index(callee) {
            Some(k) => f = k,
            None => {
                // A call to an import: the host is running.
                flags |= flags::HOST;
                break;
            }
        }
    }
    if outer_first.len() >= max_depth {
        flags |= flags::TRUNCATED;
    }
    outer_first.reverse();
    (outer_first, flags)
}

struct SynthOpts {
    seed: u64,
    samples: usize,
    threads: u32,
    max_depth: usize,
    finish: bool,
    /// In the ring layout (SPEC.md §5), small enough to wrap.
    ring: bool,
}

fn synth(wasm: &[u8], path: &str, o: &SynthOpts) -> Vec<u8> {
    let w = parse(wasm);
    let mut rng = Rng(o.seed | 1);
    let text_addr = 0x7f3a_0000_0000 + (o.seed << 20);
    let l = layout(&w, path, harness::sha256(wasm), text_addr);
    let tmp = std::env::temp_dir().join(format!("wrec-seed-{}-{}.wrec", std::process::id(), o.seed));
    let wopts = WriterOptions {
        growth_step: 1 << 20,
        tail_reserve: 4096,
        max_len: 64 << 20,
        ring: o.ring.then_some(RingLayout { ring_offset: 16 << 10, segment_size: 4096, segments: 4 }),
        ..WriterOptions::default()
    };
    let tw = TraceWriter::create(&tmp, Header::for_this_host(), wopts).unwrap();
    tw.write_run_info(&RunInfo {
        interval_ns: 1_000_000,
        clock: if o.seed.is_multiple_of(2) { TimerClock::Wall } else { TimerClock::Cpu },
        recorder: "wrec 0.1.0 (fuzz seed)".into(),
        args: vec![path.into(), "5".into()],
    })
    .unwrap();
    tw.write_record(&Record::Module(l.record.clone())).unwrap();
    let t0 = 1_000_000_000u64;
    let mut encs: Vec<_> = (0..o.threads).map(SampleEncoder::new).collect();
    for t in 0..o.threads {
        tw.write_record(&Record::ThreadStart(ThreadStart {
            thread: t,
            time_ns: t0,
            cpu_ns: 0,
            os_tid: 4000 + u64::from(t),
            name: if t == 0 { "main".into() } else { format!("worker {t}") },
        }))
        .unwrap();
    }
    let mut time = t0;
    let mut prev: Option<Vec<u64>> = None;
    for i in 0..o.samples {
        if i % 16 == 0 {
            tw.grow().unwrap();
        }
        time += 900_000 + rng.below(200_000) as u64;
        let t = (i as u32) % o.threads;
        // Often the same outer frames as the last sample, like a real run.
        let (stack, sflags) = match &prev {
            Some(p) if rng.below(3) == 0 && p.len() > 1 => {
                let mut s = p.clone();
                s[0] = l.text_addr + l.starts[0] + rng.below(8) as u64;
                (s, 0)
            }
            _ => stack(&w, &l, &mut rng, o.max_depth),
        };
        tw.append_sample(
            &mut encs[t as usize],
            &SampleRef {
                time_ns: time,
                cpu_ns: time - t0 - rng.below(1000) as u64,
                flags: sflags,
                stack: &stack,
            },
        )
        .unwrap();
        prev = Some(stack);
        if i == o.samples / 2 {
            // An address in no module.
            tw.append_sample(
                &mut encs[t as usize],
                &SampleRef {
                    time_ns: time + 1,
                    cpu_ns: time - t0,
                    flags: 0,
                    stack: &[0x5555_0000_1234, l.text_addr + l.starts[0] + INST],
                },
            )
            .unwrap();
        }
    }
    tw.write_record(&Record::SamplesLost(SamplesLost {
        thread: 0,
        count: 3,
        reason: LossReason::LogFull,
    }))
    .unwrap();
    if o.finish {
        for t in 0..o.threads {
            tw.write_record(&Record::ThreadEnd(ThreadEnd {
                thread: t,
                time_ns: time + 10,
                cpu_ns: time - t0,
            }))
            .unwrap();
        }
        tw.write_record(&Record::End(End {
            time_ns: time + 20,
            exit_kind: ExitKind::Exited,
            status: 0,
            message: String::new(),
            samples_written: tw.samples_written(),
            samples_lost: 3,
        }))
        .unwrap();
    }
    tw.finish().unwrap();
    let bytes = std::fs::read(&tmp).unwrap();
    let _ = std::fs::remove_file(&tmp);
    bytes
}

/// A request record of a `wrec serve` trace (SPEC.md §2.8), its times
/// relative to the trace's first thread start (`t0`, may be negative).
struct Req {
    thread: u32,
    start: i64,
    end: i64,
    index: u64,
    method: String,
    path: String,
}

fn req(thread: u32, start_ms: f64, end_ms: f64, index: u64, method: &str, path: &str) -> Req {
    Req {
        thread,
        start: (start_ms * 1e6) as i64,
        end: (end_ms * 1e6) as i64,
        index,
        method: method.to_owned(),
        path: path.to_owned(),
    }
}

/// The requests of the `serve` seeds: three sampled threads (0-2, one
/// sample per ms, round robin), thread 3 started but never sampled.
fn serve_requests() -> Vec<Req> {
    let mut r = vec![
        // Thread 0: a long request whose span holds shorter ones (nested
        // two deep), two that overlap without nesting, and zero-length
        // spans, one at a sample's very time (thread 0 is sampled at
        // 1, 4, 7, ... ms).
        req(0, 0.5, 60.5, 0, "GET", "/long"),
        req(0, 3.2, 20.1, 1, "GET", "/a?x=1"),
        req(0, 6.0, 9.9, 2, "GET", "/a?x=1"),
        req(0, 24.5, 40.5, 3, "PUT", "/overlap/1"),
        req(0, 33.5, 50.5, 4, "PUT", "/overlap/2"),
        req(0, 46.0, 46.0, 5, "HEAD", "/zero-at-sample"),
        req(0, 43.3, 43.3, 6, "HEAD", "/zero"),
        // End before start: the writer stores no negative duration, so
        // this is zero-length at its start.
        req(0, 55.0, 52.0, 7, "GET", "/backwards"),
        // The same name on another thread, and the same index twice.
        req(1, 1.0, 30.0, 8, "GET", "/a?x=1"),
        req(1, 31.0, 31.5, 8, "GET", "/a?x=1"),
        // Odd methods and paths: empty, non-ASCII, control characters,
        // 256 bytes exactly, longer (cut by the writer at a character).
        req(1, 32.0, 35.0, 9, "", ""),
        req(1, 36.0, 38.0, 10, "M-SEARCH", "/caf\u{e9}/\u{1f600}?q=\u{fffd}&\u{202e}rtl"),
        req(1, 38.5, 39.5, 11, "GET", "/a\tb\nc\u{1b}[31m\u{0}d \"quoted\" <x>"),
        req(2, 2.0, 20.0, 12, "POST", &format!("/{}", "p".repeat(255))),
        req(2, 20.0, 45.0, 13, "POST", &format!("/{}", "\u{e9}".repeat(200))),
        req(2, 45.0, 46.0, 14, &"X".repeat(40), "/long-method"),
        // Before the trace's start, after the last sample, far beyond it.
        req(2, -5.0, 1.5, 15, "GET", "/early"),
        req(2, 58.0, 500.0, 16, "GET", "/late"),
        req(0, 1e9, 1e9, 17, "GET", "/far"),
        // A thread that started but has no samples, and one never started.
        req(3, 10.0, 20.0, 18, "GET", "/idle-thread"),
        req(9, 10.0, 20.0, 19, "GET", "/no-thread"),
    ];
    // Thread 1: a batch holding more short requests than the analyzer
    // looks back over (64), with samples after them.
    r.push(req(1, 40.0, 59.0, 20, "POST", "/batch"));
    for k in 0..100 {
        let at = 40.01 + k as f64 * 0.1;
        r.push(req(1, at, at + 0.02, 21 + k, "GET", &format!("/batch/item/{}", k % 7)));
    }
    r
}

/// A `wrec serve` trace (format 3.3): samples on three threads with real
/// stacks of `wasm`, and `requests`, each written once its end has passed
/// (in the order they ended, as the server does).
fn synth_serve(wasm: &[u8], path: &str, seed: u64, requests: &[Req], finish: bool) -> Vec<u8> {
    let w = parse(wasm);
    let mut rng = Rng(seed | 1);
    let text_addr = 0x7f3a_0000_0000 + (seed << 20);
    let l = layout(&w, path, harness::sha256(wasm), text_addr);
    let tmp = std::env::temp_dir().join(format!("wrec-seed-{}-serve{seed}.wrec", std::process::id()));
    let wopts = WriterOptions { growth_step: 1 << 20, tail_reserve: 4096, max_len: 64 << 20, ..WriterOptions::default() };
    let tw = TraceWriter::create(&tmp, Header::for_this_host(), wopts).unwrap();
    tw.write_run_info(&RunInfo {
        interval_ns: 1_000_000,
        clock: TimerClock::Wall,
        recorder: "wrec 0.1.0 (fuzz seed)".into(),
        args: vec!["serve".into(), path.into(), "--listen".into(), "127.0.0.1:0".into()],
    })
    .unwrap();
    tw.write_record(&Record::Module(l.record.clone())).unwrap();
    let t0 = 1_000_000_000u64;
    let at = |rel: i64| t0.saturating_add_signed(rel);
    for t in 0..4u32 {
        tw.write_record(&Record::ThreadStart(ThreadStart {
            thread: t,
            time_ns: t0,
            cpu_ns: 0,
            os_tid: 5000 + u64::from(t),
            name: format!("wrec-serve-{t}"),
        }))
        .unwrap();
    }
    let mut order: Vec<&Req> = requests.iter().collect();
    order.sort_by_key(|r| r.end.max(r.start));
    let mut order = order.into_iter().peekable();
    let write_req = |r: &Req| {
        // A struct literal, not `Request::new`: the method and path stay
        // as long as given (the analyzer cuts them), and an end before the
        // start reaches the encoder.
        tw.write_record(&Record::Request(Request {
            thread: r.thread,
            start_ns: at(r.start),
            end_ns: at(r.end),
            index: r.index,
            method: r.method.clone(),
            path: r.path.clone(),
        }))
        .unwrap();
    };
    let mut encs: Vec<_> = (0..3).map(SampleEncoder::new).collect();
    let mut cpu = [0u64; 3];
    let samples = 60;
    for i in 0..samples {
        if i % 16 == 0 {
            tw.grow().unwrap();
        }
        let time = t0 + (i as u64 + 1) * 1_000_000;
        while let Some(r) = order.next_if(|r| at(r.end.max(r.start)) < time) {
            write_req(r);
        }
        let t = i % 3;
        cpu[t] += 200_000 + rng.below(600_000) as u64;
        let (stack, sflags) = stack(&w, &l, &mut rng, 16);
        tw.append_sample(&mut encs[t], &SampleRef { time_ns: time, cpu_ns: cpu[t], flags: sflags, stack: &stack })
            .unwrap();
    }
    let end = t0 + (samples as u64 + 1) * 1_000_000;
    if finish {
        for t in 0..4u32 {
            tw.write_record(&Record::ThreadEnd(ThreadEnd { thread: t, time_ns: end, cpu_ns: cpu.get(t as usize).copied().unwrap_or(0) }))
                .unwrap();
        }
    }
    // The rest, among them requests that end after their thread did.
    for r in order {
        write_req(r);
    }
    if finish {
        tw.write_record(&Record::End(End {
            time_ns: end + 10,
            exit_kind: ExitKind::Exited,
            status: 0,
            message: String::new(),
            samples_written: tw.samples_written(),
            samples_lost: 0,
        }))
        .unwrap();
    }
    tw.finish().unwrap();
    let bytes = std::fs::read(&tmp).unwrap();
    let _ = std::fs::remove_file(&tmp);
    bytes
}

/// Traces recorded by the real recorder: (fixture file, wrec options, guest args).
const RECORDINGS: &[(&str, &[&str], &[&str])] = &[
    ("fib-O2.wasm", &[], &["5"]),
    ("fib-O2.wasm", &["--interval", "100us"], &["2"]),
    ("fib-O0.wasm", &[], &["2", "25"]),
    ("fib-stripped.wasm", &[], &["3"]),
    ("inline.wasm", &["--interval", "200us"], &["5000"]),
    ("hostcalls.wasm", &["--dir", ".::."], &["2", "."]),
    ("hostloop.wasm", &[], &["50"]),
    // Format 3.0: at 100us most samples go without CPU time (NO_CPU), and
    // host samples and the ones after them read it.
    ("hostloop.wasm", &["--interval", "100us"], &["20"]),
    ("trap.wasm", &[], &["20000"]),
    ("exit.wasm", &[], &["20000"]),
    ("stackoverflow.wasm", &[], &["3000"]),
    ("ratio.wasm", &["--clock", "cpu"], &["100"]),
    ("oom.wasm", &[], &[]),
];

fn record_real(out: &Path) -> Vec<(String, Vec<u8>)> {
    let wrec = root().join("target/debug/wrec");
    if !wrec.exists() {
        eprintln!("{} is not built: no recorded traces (only synthesized ones)", wrec.display());
        return Vec::new();
    }
    let mut traces = Vec::new();
    for (i, (fixture, opts, args)) in RECORDINGS.iter().enumerate() {
        let dir = out.join(format!("rec{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let trace = dir.join("t.wrec");
        let status = Command::new(&wrec)
            .args(*opts)
            .arg("-o")
            .arg(&trace)
            .arg(root().join("fixtures").join(fixture))
            .args(*args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        match std::fs::read(&trace) {
            Ok(b) => {
                eprintln!("recorded {fixture} {args:?} ({status}): {} bytes", b.len());
                traces.push((fixture.to_string(), b));
            }
            Err(e) => eprintln!("recording {fixture} failed: {e}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    traces
}

fn fixture_index(name: &str) -> usize {
    FIXTURES.iter().position(|f| f.0 == name).unwrap_or(0)
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let (tr, an, sy) = (
        corpus.join("trace_reader"),
        corpus.join("analyze"),
        corpus.join("symbols"),
    );

    // symbols: every module we have.
    let mut wasms: Vec<PathBuf> = Vec::new();
    for dir in [root().join("fixtures"), root().join("fuzz/wasm")] {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "wasm") {
                wasms.push(e.path());
            }
        }
    }
    wasms.sort();
    for w in &wasms {
        put(&sy, &w.file_name().unwrap().to_string_lossy(), &std::fs::read(w).unwrap());
    }

    // Recorded traces.
    let scratch = std::env::temp_dir().join(format!("wrec-seeds-{}", std::process::id()));
    let mut traces = record_real(&scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    for arg in std::env::args().skip(1) {
        let (path, fixture) = arg.split_once('=').unwrap_or((&arg, "fib-O2.wasm"));
        traces.push((fixture.to_string(), std::fs::read(path).unwrap()));
    }
    for (i, (fixture, bytes)) in traces.iter().enumerate() {
        let name = format!("rec{i:02}-{}", fixture.trim_end_matches(".wasm"));
        put(&tr, &format!("{name}.wrec"), bytes);
        let fi = fixture_index(fixture);
        put(&an, &format!("{name}.dwarf"), &harness::analyze_input_fixture(fi, true, bytes));
        if i % 3 == 0 {
            put(&an, &format!("{name}.nodwarf"), &harness::analyze_input_fixture(fi, false, bytes));
        }
    }

    // Synthesized traces against every module of the fixture mode.
    for (fi, (name, wasm)) in FIXTURES.iter().enumerate() {
        let stem = name.trim_end_matches(".wasm");
        for (k, o) in [
            SynthOpts { seed: 1 + fi as u64, samples: 40, threads: 1, max_depth: 24, finish: true, ring: false },
            SynthOpts { seed: 101 + fi as u64, samples: 60, threads: 2, max_depth: 40, finish: false, ring: false },
        ]
        .iter()
        .enumerate()
        {
            let t = synth(wasm, &format!("/fixtures/{name}"), o);
            put(&tr, &format!("syn-{stem}-{k}.wrec"), &t);
            put(&an, &format!("syn-{stem}-{k}.fixture"), &harness::analyze_input_fixture(fi, k == 0, &t));
        }
    }
    // Ring traces (SPEC.md §5) wrapped several times, finished or not.
    for (k, finish) in [true, false].into_iter().enumerate() {
        let t = synth(FIXTURES[0].1, "/fixtures/fib-O2.wasm", &SynthOpts {
            seed: 500 + k as u64, samples: 1500, threads: 2, max_depth: 20, finish, ring: true,
        });
        put(&tr, &format!("syn-ring-{k}.wrec"), &t);
        put(&an, &format!("syn-ring-{k}.fixture"), &harness::analyze_input_fixture(0, true, &t));
    }
    // A stack at the recorder's limit.
    let deep = synth(FIXTURES[0].1, "/fixtures/fib-O2.wasm", &SynthOpts {
        seed: 7, samples: 6, threads: 1, max_depth: MAX_FRAMES + 10, finish: true, ring: false,
    });
    put(&tr, "syn-deep.wrec", &deep);
    put(&an, "syn-deep.fixture", &harness::analyze_input_fixture(0, true, &deep));

    // Own-wasm mode: small modules with their traces.
    for (k, name) in ["tiny-O2.wasm", "tiny-O0.wasm", "tiny-cpp.wasm", "tiny-dwarf5.wasm"].iter().enumerate() {
        let wasm = std::fs::read(root().join("fuzz/wasm").join(name)).unwrap();
        let t = synth(&wasm, &format!("/w/{name}"), &SynthOpts {
            seed: 300 + k as u64, samples: 30, threads: 1 + (k as u32 % 2), max_depth: 12, finish: k != 1, ring: false,
        });
        put(&an, &format!("own-{}.in", name.trim_end_matches(".wasm")), &harness::analyze_input_own(&wasm, true, &t));
        put(&tr, &format!("own-{}.wrec", name.trim_end_matches(".wasm")), &t);
    }
    let stripped = std::fs::read(root().join("fixtures/fib-stripped.wasm")).unwrap();
    let t = synth(&stripped, "/w/fib-stripped.wasm", &SynthOpts {
        seed: 400, samples: 30, threads: 1, max_depth: 30, finish: true, ring: false,
    });
    put(&an, "own-fib-stripped.in", &harness::analyze_input_own(&stripped, true, &t));

    // wrec serve traces (format 3.3): request records that nest, overlap,
    // share names, have odd paths, lie outside the samples or on threads
    // without samples.
    let requests = serve_requests();
    for (k, (fi, dwarf, finish)) in [(0, true, true), (1, false, true), (5, true, false)].into_iter().enumerate() {
        let (name, wasm) = FIXTURES[fi];
        let t = synth_serve(wasm, &format!("/fixtures/{name}"), 600 + k as u64, &requests, finish);
        put(&tr, &format!("syn-serve-{k}.wrec"), &t);
        put(&an, &format!("syn-serve-{k}.fixture"), &harness::analyze_input_fixture(fi, dwarf, &t));
    }
    // A few requests only, on the first thread: small enough for the
    // fuzzer to rework.
    let few: Vec<Req> = requests.into_iter().filter(|r| r.thread == 0 && r.index < 4).collect();
    let t = synth_serve(FIXTURES[0].1, "/fixtures/fib-O2.wasm", 610, &few, true);
    put(&tr, "syn-serve-few.wrec", &t);
    put(&an, "syn-serve-few.fixture", &harness::analyze_input_fixture(0, true, &t));
    let tiny = std::fs::read(root().join("fuzz/wasm/tiny-O2.wasm")).unwrap();
    let t = synth_serve(&tiny, "/w/tiny-O2.wasm", 611, &few, true);
    put(&an, "own-serve-tiny-O2.in", &harness::analyze_input_own(&tiny, false, &t));

    // Every seed must pass its own target.
    for (dir, f) in [(&tr, harness::trace_reader as fn(&[u8])), (&an, harness::analyze), (&sy, harness::symbols)] {
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            f(&std::fs::read(e.path()).unwrap());
            n += 1;
        }
        eprintln!("{}: {n} seeds", dir.display());
    }
}
