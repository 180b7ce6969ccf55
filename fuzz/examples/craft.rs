//! Writes hand-made hostile inputs (the ones the issue lists that random
//! mutation is unlikely to build) into `regressions/<target>/crafted-*`.
//! `cargo run --example craft`

use std::path::Path;

use wrec_format::*;
use wrec_fuzz::harness;

fn trace(records: &[Vec<u8>]) -> Vec<u8> {
    let mut h = Header::for_this_host();
    h.wall_reference_ns = 1_700_000_000_000_000_000;
    h.monotonic_reference_ns = 1_000;
    let mut t = h.encode().to_vec();
    for r in records {
        t.extend_from_slice(r);
    }
    let len = t.len() as u64;
    t[48..56].copy_from_slice(&len.to_le_bytes());
    t
}

fn module(id: u64, text_addr: u64, text_len: u64) -> Vec<u8> {
    module_at(id, text_addr, text_len, "/nonexistent/m.wasm")
}

fn module_at(id: u64, text_addr: u64, text_len: u64, path: &str) -> Vec<u8> {
    frame(&Record::Module(ModuleRecord {
        id,
        path: path.into(),
        sha256: [0; 32],
        text_addr,
        text_len,
        functions: vec![FunctionEntry { index: 1, offset: 0x10, len: 0x40 }],
        address_map: vec![
            AddressMapEntry { code_offset: 0, wasm_offset: None },
            AddressMapEntry { code_offset: 0x10, wasm_offset: Some(0x1_0000_0000) },
        ],
        addresses: vec![],
        inner: None,
    }))
}

/// A sample of raw time and CPU fields (µs in a keyframe, zigzag deltas
/// otherwise) and literal frames (differences, outermost first).
fn sample(thread: u32, sflags: u8, time: u64, cpu: u64, keep: u64, frames: &[i64]) -> Vec<u8> {
    frame_payload(kind::SAMPLE, &sample_payload(thread, sflags, time, cpu, keep, frames))
}

fn lost(thread: u32, count: u64) -> Vec<u8> {
    frame(&Record::SamplesLost(SamplesLost { thread, count, reason: LossReason::LogFull }))
}

/// A request record (SPEC.md §2.8) as given: its duration is `dur`, the
/// method and path uncut (a writer cuts them to 32 and 256 bytes).
fn request(thread: u32, start: u64, dur: u64, index: u64, method: &str, path: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [u64::from(thread), start, dur, index] {
        varint::push(&mut p, v);
    }
    for s in [method, path] {
        varint::push(&mut p, s.len() as u64);
        p.extend_from_slice(s.as_bytes());
    }
    frame_payload(kind::REQUEST, &p)
}

fn thread_start(thread: u32, time_ns: u64) -> Vec<u8> {
    frame(&Record::ThreadStart(ThreadStart { thread, time_ns, cpu_ns: 0, os_tid: 0, name: String::new() }))
}

/// The requests of a `wrec serve` trace at their extremes (format 3.3).
fn requests_trace(base: i64) -> Vec<u8> {
    let key = flags::KEYFRAME;
    let ms = 1_000_000u64;
    let mut r = vec![
        module(0, base as u64, 0x100),
        // Before any thread: dropped, even though thread 5 is sampled later.
        request(5, 0, 1, 0, "GET", "/before-thread"),
        thread_start(0, ms),
        // Started, never sampled.
        thread_start(2, 0),
        request(2, 0, u64::MAX, 1, "GET", "/idle"),
        sample(0, key, 1000, 1, 0, &[base + 0x20]),
        // Sampled without a thread start record.
        sample(1, key, 1200, 1, 0, &[base + 0x30]),
        request(1, ms, ms, 2, "GET", "/no-thread-start"),
        // Before the trace's start (the first thread start), and the
        // whole time range.
        request(0, 0, 0, 3, "GET", "/at-0"),
        request(0, 0, u64::MAX, 4, "GET", "/everything"),
        // A path of 10 000 bytes whose 256-byte cut falls inside a 2-byte
        // character; likewise a 41-byte method at its 32-byte cut.
        request(0, ms, ms / 2, 5, &format!("G{}", "\u{e9}".repeat(20)), &format!("/{}", "\u{e9}".repeat(5000))),
        // At the end of time: zero-length at u64::MAX, and ending there.
        request(0, u64::MAX, 0, 6, "GET", "/max"),
        request(0, u64::MAX - 1, 1, u64::MAX, "GET", "/max-1"),
        sample(0, key, 1500, 2, 0, &[base + 0x20]),
    ];
    // 2000 zero-length requests at a sample's time, one name, one index,
    // inside `/everything`: more than the analyzer looks back over.
    for _ in 0..2000 {
        r.push(request(0, 1500 * 1000, 0, 7, "POST", "/same"));
    }
    r.push(sample(0, key, 2000, 3, 0, &[base + 0x20]));
    r.push(sample(5, key, 2000, 3, 0, &[base + 0x20]));
    // Last: a duration that overflows u64 when added to the start (the
    // reader refuses this record).
    r.push(request(0, u64::MAX, 1, 8, "GET", "/overflow"));
    trace(&r)
}

fn leb(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    leb(out, payload.len());
    out.extend_from_slice(payload);
}

fn name(out: &mut Vec<u8>, s: &str) {
    leb(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// A module whose names are far longer than any real one (issue 17): an
/// imported function with a 5000-byte module and field name, and a
/// defined one whose name-section name is 100 001 bytes, mostly 2-byte
/// characters so the cut falls inside one.
fn long_names_wasm() -> Vec<u8> {
    let mut w = b"\0asm\x01\0\0\0".to_vec();
    section(&mut w, 1, &[1, 0x60, 0, 0]);
    let mut imports = vec![1];
    name(&mut imports, &"m".repeat(5000));
    name(&mut imports, &"f".repeat(5000));
    imports.extend_from_slice(&[0, 0]);
    section(&mut w, 2, &imports);
    section(&mut w, 3, &[1, 0]);
    let body = [0u8, 0x01, 0x01, 0x01, 0x0b];
    let mut code = vec![1];
    leb(&mut code, body.len());
    code.extend_from_slice(&body);
    section(&mut w, 10, &code);
    let mut names = Vec::new();
    name(&mut names, "name");
    let mut funcs = vec![1];
    leb(&mut funcs, 1);
    name(&mut funcs, &format!("x{}", "é".repeat(50_000)));
    names.push(1);
    leb(&mut names, funcs.len());
    names.extend_from_slice(&funcs);
    section(&mut w, 0, &names);
    w
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let put = |target: &str, name: &str, data: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("crafted-{name}")), data).unwrap();
    };
    let key = flags::KEYFRAME;
    // The largest CPU delta a sample can carry (no run info: the interval
    // is 0, so a time field of 0 is a delta of 0).
    let huge = varint::zigzag(i64::MAX);
    let addresses = |module, entries: &[(u64, Option<u64>)]| {
        frame(&Record::CodeAddresses(CodeAddresses {
            module,
            entries: entries
                .iter()
                .map(|&(code_offset, wasm_offset)| AddressMapEntry { code_offset, wasm_offset })
                .collect(),
        }))
    };
    let base = 0x7f00_0000_0000i64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Lost-sample counts that overflow a u64 when added up.
        ("lost-overflow", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            lost(0, u64::MAX),
            lost(0, u64::MAX),
            lost(7, u64::MAX),
        ])),
        // Lost counts that overflow only when the threads' totals are added.
        ("lost-two-threads", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            sample(1, key, 10, 10, 0, &[base + 0x20]),
            lost(0, u64::MAX),
            lost(1, u64::MAX),
        ])),
        // CPU deltas that overflow when summed over samples, in one thread
        // and over two.
        ("cpu-deltas", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 10, 10, 0, &[base + 0x20]),
            sample(0, 0, 0, huge, 1, &[]),
            sample(0, 0, 0, huge, 1, &[]),
            sample(1, key, 10, 10, 0, &[base + 0x30]),
            sample(1, 0, 0, huge, 1, &[]),
        ])),
        // Times and CPU times at the extremes; a second sample wrapping them.
        ("time-extremes", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, u64::MAX, u64::MAX, 0, &[base + 0x20]),
            sample(0, 0, u64::MAX, u64::MAX, 1, &[]),
            sample(1, key, 0, 0, 0, &[base + 0x20]),
            frame(&Record::ThreadEnd(ThreadEnd { thread: 1, time_ns: 0, cpu_ns: u64::MAX })),
            frame(&Record::End(End {
                time_ns: 0, exit_kind: ExitKind::Signaled, status: i64::MIN,
                message: "\u{0}\u{7}\"<script>".into(), samples_written: u64::MAX, samples_lost: u64::MAX,
            })),
        ])),
        // Module code at the top of the address space; addresses around it
        // and a stack mixing it with addresses in no module.
        ("module-at-top", trace(&[
            module(0, u64::MAX - 0x40, 0x40),
            module(1, 0, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[-1, 0x11 - -1, 1, -0x12]),
            sample(0, key | flags::TRUNCATED | flags::BROKEN, 2, 2, 0, &[]),
            sample(0, key | flags::HOST, 3, 3, 0, &[]),
        ])),
        // A function table and address map that point outside the wasm
        // file (the override is a real module; offsets are beyond it).
        ("map-outside-wasm", trace(&[
            module(0, base as u64, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[base + 0x11, 0]),
            sample(0, key, 2, 2, 0, &[base + 0x30]),
        ])),
        // Code addresses before their module, for a module that does not
        // exist, outside the code, past the wasm file, and listed twice.
        ("code-addresses", trace(&[
            addresses(0, &[(0x20, Some(u64::MAX - 1))]),
            module(0, base as u64, 0x100),
            sample(0, key | flags::HOST, 1, 1, 0, &[base + 0x21, -0x11, 0x10]),
            addresses(0, &[(0x20, Some(5)), (0x2f, None), (u64::MAX, Some(0x1_0000_0000))]),
            addresses(7, &[(0x20, Some(1))]),
            addresses(0, &[(0x20, Some(9)), (0x2f, Some(3))]),
        ])),
        // Host paths and a Rust backtrace in the end message, module paths
        // with U+FFFD (a file name that was not UTF-8), 8 KiB long, or
        // naming a device (never read: the harness gives the module).
        ("host-paths", trace(&[
            module_at(0, base as u64, 0x100, "/home/\u{FFFD}\u{FFFD}/app/m\u{FFFD}.wasm"),
            module_at(1, base as u64 + 0x1000, 0x100, &format!("/{}/m.wasm", "d/".repeat(4096))),
            module_at(2, base as u64 + 0x2000, 0x100, "/dev/zero"),
            sample(0, key, 1, 1, 0, &[base + 0x20]),
            sample(0, key, 2, 2, 0, &[base + 0x1020]),
            frame(&Record::End(End {
                time_ns: 0, exit_kind: ExitKind::Trapped, status: 134,
                message: "failed to run main module `/home/me/my dir/m.wasm`\n\nCaused by:\n    0: wasm backtrace:\n    0:  0x2ab - m.wasm!f\n\nStack backtrace:\n   0: x\n      at /root/.cargo/registry/src/a.rs:1:2\n /é/ \"/a/é b\" `/ `/\u{FFFD}/x".into(),
                samples_written: 2, samples_lost: 0,
            })),
        ])),
        // Request records (format 3.3) at their extremes: before their
        // thread, on threads never sampled or never started, at time 0 and
        // u64::MAX, spanning all time, uncut long method and path, 2000
        // zero-length ones with one name, one whose end overflows.
        ("requests", requests_trace(base)),
    ];
    put("symbols", "long-names", &long_names_wasm());
    put(
        "analyze",
        "long-names",
        &harness::analyze_input_own(&long_names_wasm(), false, &trace(&[
            module(0, base as u64, 0x100),
            sample(0, key, 1, 1, 0, &[base + 0x20]),
            sample(0, key, 2, 2, 0, &[base + 0x20, 0]),
        ])),
    );
    for (name, t) in &cases {
        put("trace_reader", name, t);
        put("analyze", &format!("{name}.fib-O2"), &harness::analyze_input_fixture(0, true, t));
        put("analyze", &format!("{name}.tiny"), &harness::analyze_input_fixture(5, true, t));
    }
}
