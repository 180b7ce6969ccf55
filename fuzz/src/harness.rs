//! The bodies of the fuzz targets, shared by `fuzz_targets/*.rs` (under
//! libFuzzer) and by the regression tests that replay `fuzz/regressions/`.
//!
//! Self-contained on purpose: it uses only `std`, `wrec_format`, `wanalyze`,
//! `sha2` and `serde_json`, so a test of the main workspace can compile it
//! with `#[path = "../fuzz/src/harness.rs"] mod harness;` without depending
//! on this crate (which pulls in libFuzzer).
//!
//! Every function here panics exactly when the code under test misbehaves:
//! a panic inside the reader, analyzer or exporters, or a broken invariant
//! checked below. Errors returned for bad input are fine.
#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wanalyze::resolve::{self, AnalyzeError, Options};
use wanalyze::symbols::WasmSymbols;
use wanalyze::{firefox, folded, lookup, pprof, text};
use wrec_format::{kind, varint, Event, ModuleRecord, Record, Trace};

/// Real modules the `analyze` target symbolizes against in its fixture mode
/// (mode byte < 0x80): `fixtures/*.wasm` plus the small `fuzz/wasm/*.wasm`.
pub const FIXTURES: &[(&str, &[u8])] = &[
    ("fib-O2.wasm", include_bytes!("../../fixtures/fib-O2.wasm")),
    ("inline.wasm", include_bytes!("../../fixtures/inline.wasm")),
    (
        "hostcalls.wasm",
        include_bytes!("../../fixtures/hostcalls.wasm"),
    ),
    (
        "fib-stripped.wasm",
        include_bytes!("../../fixtures/fib-stripped.wasm"),
    ),
    ("fib-O0.wasm", include_bytes!("../../fixtures/fib-O0.wasm")),
    ("tiny-O2.wasm", include_bytes!("../wasm/tiny-O2.wasm")),
    ("tiny-cpp.wasm", include_bytes!("../wasm/tiny-cpp.wasm")),
];

/// Mode byte bit: analyze without `--dwarf`.
pub const MODE_NO_DWARF: u8 = 0x40;
/// Mode byte bit: leave the records' checks as the input has them (by
/// default they are recomputed, see [`fix_checks`], so that mutations reach
/// the analyzer rather than stopping the reader at a CRC mismatch).
pub const MODE_KEEP_CHECKS: u8 = 0x20;
/// Mode byte bit: the wasm module is part of the input (`u32` LE length, then
/// the module, then the trace) instead of one of [`FIXTURES`].
pub const MODE_OWN_WASM: u8 = 0x80;

// ---------------------------------------------------------------------------
// trace_reader

/// Reads `data` as a trace, then again with every record's check (and the
/// header's) recomputed, so mutations inside payloads reach the decoders
/// instead of stopping at a CRC mismatch.
pub fn trace_reader(data: &[u8]) {
    read_trace(data);
    let fixed = fix_checks(data);
    if fixed != data {
        read_trace(&fixed);
    }
}

/// Recomputes the header check and the check of every record whose framing
/// (kind, length) is intact, up to the first record that is not.
pub fn fix_checks(trace: &[u8]) -> Vec<u8> {
    let mut out = trace.to_vec();
    if out.len() < 64 || out[..8] != wrec_format::MAGIC {
        return out;
    }
    let check = wrec_format::crc16(&out[..48]);
    out[58..60].copy_from_slice(&check.to_le_bytes());
    let mut pos = usize::from(u16::from_le_bytes([out[18], out[19]])).max(64);
    while pos < out.len() && out[pos] != 0 {
        let mut p = pos + 1;
        let len = if out[pos] & kind::SHORT_SAMPLE != 0 {
            u64::from(out[pos] & !kind::SHORT_SAMPLE)
        } else {
            let Ok(len) = varint::get(&out, &mut p) else {
                break;
            };
            len
        };
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| p.checked_add(l))
            .filter(|&e| e.checked_add(2).is_some_and(|e| e <= out.len()))
        else {
            break;
        };
        let check = wrec_format::crc16(&out[pos..end]);
        out[end..end + 2].copy_from_slice(&check.to_le_bytes());
        pos = end + 2;
    }
    out
}

/// Reads `data` as a trace: every framed record, then every decoded event.
pub fn read_trace(data: &[u8]) {
    let Ok(trace) = Trace::from_bytes(data.to_vec()) else {
        return;
    };
    let end = trace.data_end();
    assert!(end <= data.len() as u64, "data_end {end} beyond the input");
    for w in trace.warnings() {
        assert!(!w.is_empty());
    }

    // Framing alone.
    let mut last = None;
    let mut seen = std::collections::HashSet::new();
    let mut framed = 0usize;
    for rec in trace.records() {
        match rec {
            Ok(r) => {
                assert!(r.kind != 0);
                assert!(r.offset < end, "record at {} past data_end {end}", r.offset);
                // A ring trace is read linear part, ring in generation
                // order, end record (SPEC.md §5.4): offsets go back, but
                // no record is read twice.
                if trace.ring().is_some() {
                    assert!(seen.insert(r.offset), "record at {} read twice", r.offset);
                } else {
                    assert!(last.is_none_or(|l| r.offset > l), "records not advancing");
                }
                last = Some(r.offset);
                framed += 1;
            }
            Err(e) => {
                let off = e.offset().expect("record errors carry an offset");
                assert!(off < end, "error offset {off} past data_end {end}");
                let _ = e.to_string();
            }
        }
    }

    // Decoded: the same records, samples expanded.
    let mut modules: Vec<ModuleRecord> = Vec::new();
    let mut events = 0usize;
    let mut frames_total = 0usize;
    let mut d = trace.decoder();
    while let Some(ev) = d.next() {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                assert!(e.offset().is_some_and(|o| o < end));
                let _ = e.to_string();
                break;
            }
        };
        events += 1;
        match ev {
            Event::Sample(s) => {
                assert!(s.offset < end);
                frames_total += s.stack.len();
                // What the resolver does with each entry.
                for &addr in s.stack {
                    if let Some(m) = modules.iter().find(|m| m.contains(addr)) {
                        let off = addr - m.text_addr;
                        if let Some(f) = m.function_at(off.saturating_sub(1)) {
                            assert!(f.offset <= off.saturating_sub(1));
                        }
                        let _ = m.wasm_offset(off);
                        let _ = m.exact_wasm_offset(off.saturating_sub(1));
                    }
                }
            }
            Event::Record(Record::Module(m)) => {
                assert!(m.functions.windows(2).all(|w| w[0].offset <= w[1].offset));
                assert!(m
                    .functions
                    .iter()
                    .all(|f| f.offset.checked_add(f.len).is_some_and(|e| e <= m.text_len)));
                assert!(m
                    .addresses
                    .windows(2)
                    .all(|w| w[0].code_offset < w[1].code_offset));
                for f in &m.functions {
                    if let Some(g) = m.function_at(f.offset) {
                        assert!(g.offset <= f.offset && f.offset - g.offset < g.len);
                    }
                }
                modules.push(m);
            }
            Event::Record(r) => {
                let _ = format!("{r:?}");
            }
            Event::Unknown { offset, kind } => {
                assert!(offset < end);
                assert!(
                    kind > kind::CODE_ADDRESSES,
                    "known kind {kind} reported as unknown"
                );
            }
        }
    }
    // After the end (or an error) the decoder stays finished.
    assert!(d.next().is_none());
    assert!(
        events <= framed,
        "{events} events from {framed} framed records"
    );
    let _ = frames_total;
}

// ---------------------------------------------------------------------------
// analyze

/// The `analyze` target's input: a mode byte, then either a trace (fixture
/// mode) or `u32` LE wasm length, wasm, trace (own-wasm mode).
pub fn analyze(data: &[u8]) {
    if let Some(input) = AnalyzeInput::decode(data) {
        analyze_prepared(&input);
    }
}

/// An `analyze` input taken apart, its trace ready for the analyzer.
pub struct AnalyzeInput<'a> {
    pub wasm: &'a [u8],
    /// Checks recomputed (unless [`MODE_KEEP_CHECKS`]) and module hashes
    /// rewritten to the wasm's.
    pub trace: Vec<u8>,
    pub dwarf: bool,
}

impl<'a> AnalyzeInput<'a> {
    pub fn decode(data: &'a [u8]) -> Option<AnalyzeInput<'a>> {
        let (&mode, rest) = data.split_first()?;
        let (wasm, trace): (&[u8], &[u8]) = if mode & MODE_OWN_WASM == 0 {
            (FIXTURES[usize::from(mode & 0x1f) % FIXTURES.len()].1, rest)
        } else {
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
            rest.split_at(len)
        };
        let trace = if mode & MODE_KEEP_CHECKS == 0 {
            fix_checks(trace)
        } else {
            trace.to_vec()
        };
        Some(AnalyzeInput {
            wasm,
            trace: patch_module_hashes(&trace, &sha256(wasm)),
            dwarf: mode & MODE_NO_DWARF == 0,
        })
    }
}

/// Builds an `analyze` input in fixture mode.
pub fn analyze_input_fixture(fixture: usize, dwarf: bool, trace: &[u8]) -> Vec<u8> {
    assert!(fixture < FIXTURES.len());
    let mut v = vec![fixture as u8 | if dwarf { 0 } else { MODE_NO_DWARF }];
    v.extend_from_slice(trace);
    v
}

/// Builds an `analyze` input in own-wasm mode.
pub fn analyze_input_own(wasm: &[u8], dwarf: bool, trace: &[u8]) -> Vec<u8> {
    let mut v = vec![MODE_OWN_WASM | if dwarf { 0 } else { MODE_NO_DWARF }];
    v.extend_from_slice(&(wasm.len() as u32).to_le_bytes());
    v.extend_from_slice(wasm);
    v.extend_from_slice(trace);
    v
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Rewrites the SHA-256 of every module record that the reader would see
/// (the intact records before any damage) to `sha`, and recomputes those
/// records' checks, so the analyzer matches them to the `--module` file and
/// never goes looking for the recorded path.
///
/// The hash is patched in place (32 bytes for 32 bytes) rather than by
/// decoding and re-framing the record with `wrec_format::frame`: that keeps
/// every other byte the fuzzer chose (non-minimal varints, fields appended
/// after the known ones, records after the first damaged one) and keeps the
/// committed length and all later offsets valid.
pub fn patch_module_hashes(trace: &[u8], sha: &[u8; 32]) -> Vec<u8> {
    let mut out = trace.to_vec();
    let Ok(t) = Trace::from_bytes(trace.to_vec()) else {
        return out;
    };
    let base = t.bytes().as_ptr() as usize;
    for rec in t.records() {
        let Ok(rec) = rec else { break };
        if rec.kind != kind::MODULE {
            continue;
        }
        let p = rec.payload;
        let mut pos = 0;
        if varint::get(p, &mut pos).is_err() {
            continue; // id
        }
        let Ok(path_len) = varint::get(p, &mut pos) else {
            continue;
        };
        let Some(at) = usize::try_from(path_len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|&a| a + 32 <= p.len())
        else {
            continue;
        };
        let payload_start = p.as_ptr() as usize - base;
        let payload_end = payload_start + p.len();
        out[payload_start + at..payload_start + at + 32].copy_from_slice(sha);
        let check = wrec_format::crc16(&out[rec.offset as usize..payload_end]);
        out[payload_end..payload_end + 2].copy_from_slice(&check.to_le_bytes());
    }
    out
}

/// Scratch files for one analysis, removed on drop.
struct Scratch {
    trace: PathBuf,
    wasm: PathBuf,
}

impl Scratch {
    /// Scratch files holding the input's trace and wasm.
    fn with(input: &AnalyzeInput<'_>) -> Scratch {
        let s = Scratch::new();
        std::fs::write(&s.trace, &input.trace).expect("write scratch trace");
        std::fs::write(&s.wasm, input.wasm).expect("write scratch wasm");
        s
    }

    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        // /dev/shm when there is one: the fuzzer writes two files per run.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let stem = format!("wrec-fuzz-{}-{n}", std::process::id());
        Scratch {
            trace: dir.join(format!("{stem}.wrec")),
            wasm: dir.join(format!("{stem}.wasm")),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.trace);
        let _ = std::fs::remove_file(&self.wasm);
    }
}

/// Analyzes the input's trace against its wasm (given as `--module`) and
/// runs the three exporters on the profile. Then analyzes it again with
/// stacks by function (what `wanalyze --format folded|text` does), which
/// must give the same folded stacks and text report.
pub fn analyze_prepared(input: &AnalyzeInput<'_>) {
    let s = Scratch::with(input);
    let profile = match analyze_scratch(&s, input.dwarf, false) {
        Ok(p) => p,
        Err(()) => return,
    };
    export_all(&profile);
    let by_function = analyze_scratch(&s, input.dwarf, true)
        .expect("the analyzer refused by function a trace it took by frame");
    let (folded, report) = folded_and_text(&profile);
    let (folded_f, report_f) = folded_and_text(&by_function);
    assert!(folded == folded_f, "folded stacks differ by function");
    assert!(report == report_f, "text reports differ by function");
}

/// Runs `resolve::analyze` on the input (through scratch files, as it reads
/// from disk). `Err(())` for an error the analyzer may rightly return.
#[allow(clippy::result_unit_err)]
pub fn run_analyzer(input: &AnalyzeInput<'_>) -> Result<wanalyze::model::Profile, ()> {
    analyze_scratch(&Scratch::with(input), input.dwarf, false)
}

fn analyze_scratch(
    s: &Scratch,
    dwarf: bool,
    by_function: bool,
) -> Result<wanalyze::model::Profile, ()> {
    let opts = Options {
        dwarf,
        modules: vec![s.wasm.clone()],
        by_function,
        last: None,
    };
    let profile = match resolve::analyze(&s.trace, &opts, &mut |_, _| {}) {
        Ok(p) => p,
        Err(e) => {
            // Every module record the reader sees carries the --module
            // file's hash: the analyzer must never have looked elsewhere.
            match &e {
                AnalyzeError::ModuleMissing { path } | AnalyzeError::ModuleChanged { path } => {
                    panic!(
                        "the analyzer went looking for {} although --module matches: {e}",
                        path.display()
                    )
                }
                AnalyzeError::Io { path, .. } => {
                    assert!(
                        *path == s.wasm || *path == s.trace,
                        "read {}: {e}",
                        path.display()
                    )
                }
                _ => {}
            }
            if std::env::var_os("WREC_FUZZ_VERBOSE").is_some() {
                eprintln!("analyze: {e}");
            }
            return Err(());
        }
    };
    Ok(profile)
}

/// The folded stacks and the text report of a profile.
fn folded_and_text(profile: &wanalyze::model::Profile) -> (Vec<u8>, Vec<u8>) {
    let mut folded = Vec::new();
    folded::write(profile, &mut folded).expect("folded exporter failed");
    let mut report = Vec::new();
    text::write(profile, &text::TextOptions::default(), &mut report).expect("text exporter failed");
    (folded, report)
}

/// Runs every exporter on a profile the analyzer produced; each must succeed
/// (the pprof one also with a profile whose ids and counts hold up).
pub fn export_all(profile: &wanalyze::model::Profile) {
    let mut json = Vec::new();
    firefox::write(profile, &mut json).expect("firefox exporter refused the analyzer's profile");
    let v: serde_json::Value =
        serde_json::from_slice(&json).expect("the firefox exporter wrote invalid JSON");
    assert!(v.is_object());
    folded::write(profile, &mut io::sink()).expect("folded exporter failed");
    text::write(profile, &text::TextOptions::default(), &mut io::sink())
        .expect("text exporter failed");
    let mut gz = Vec::new();
    pprof::write(profile, &mut gz).expect("pprof exporter refused the analyzer's profile");
    // A gzip member (RFC 1952): magic, deflate, and a trailer.
    assert!(
        gz.len() >= 18 && gz[..3] == [0x1f, 0x8b, 8],
        "the pprof exporter wrote no gzip"
    );
    check_pprof(profile);
}

/// The pprof profile [`pprof::write`] encodes (its `build`), checked
/// against the model: every id and string index it uses exists, each
/// thread's samples are all counted once, and the samples labelled with a
/// request are those the text report's endpoints count.
fn check_pprof(profile: &wanalyze::model::Profile) {
    let pp = pprof::build(profile);
    let strings = &pp.string_table;
    let string = |i: i64| -> &str {
        let i = usize::try_from(i).expect("negative string index");
        assert!(i < strings.len(), "string {i} past the table");
        &strings[i]
    };
    assert_eq!(string(0), "", "pprof string 0 is not empty");
    for (i, f) in pp.function.iter().enumerate() {
        assert_eq!(f.id, i as u64 + 1);
        let _ = (string(f.name), string(f.system_name), string(f.filename));
    }
    for (i, m) in pp.mapping.iter().enumerate() {
        assert_eq!(m.id, i as u64 + 1);
        assert!(m.memory_start < m.memory_limit);
        let _ = (string(m.filename), string(m.build_id));
    }
    for (i, l) in pp.location.iter().enumerate() {
        assert_eq!(l.id, i as u64 + 1);
        assert!(l.mapping_id <= pp.mapping.len() as u64);
        if l.mapping_id != 0 {
            let m = &pp.mapping[l.mapping_id as usize - 1];
            assert!(l.address < m.memory_limit, "location outside its mapping");
        }
        assert!(!l.line.is_empty(), "location without a line");
        for line in &l.line {
            assert!((1..=pp.function.len() as u64).contains(&line.function_id));
        }
    }
    let request = pp.string_table.iter().position(|s| s == "request");
    let mut counted = 0u64;
    let mut in_requests = 0u64;
    for s in &pp.sample {
        assert_eq!(s.value.len(), pp.sample_type.len());
        assert!(s.value.iter().all(|&v| v >= 0), "negative sample value");
        assert!(s.value[0] > 0, "a pprof sample of no samples");
        for &l in &s.location_id {
            assert!((1..=pp.location.len() as u64).contains(&l));
        }
        for label in &s.label {
            let _ = (string(label.key), string(label.str));
            if Some(label.key as usize) == request {
                in_requests += s.value[0] as u64;
            }
        }
        counted += s.value[0] as u64;
    }
    let samples: u64 = profile.threads.iter().map(|t| t.samples.len() as u64).sum();
    assert_eq!(
        counted, samples,
        "pprof samples do not add up to the profile's"
    );

    let endpoints = wanalyze::model::endpoints(profile);
    let requests: u64 = profile
        .threads
        .iter()
        .map(|t| t.requests.len() as u64)
        .sum();
    assert_eq!(endpoints.iter().map(|e| e.requests).sum::<u64>(), requests);
    assert_eq!(
        endpoints.iter().map(|e| e.samples).sum::<u64>(),
        in_requests,
        "the text report and pprof put different samples in requests"
    );
    for e in &endpoints {
        assert!(e.requests > 0 && e.median_ns <= e.max_ns);
    }
}

// ---------------------------------------------------------------------------
// symbols

/// At most this many offsets are looked up per input (DWARF look-ups cost).
const MAX_PROBES: usize = 4096;

/// Loads `data` as a wasm module and asks it everything the analyzer asks.
pub fn symbols(data: &[u8]) {
    let Ok(s) = WasmSymbols::from_bytes(Path::new("fuzz.wasm"), data.to_vec()) else {
        return;
    };
    let _ = format!("{s:?}");
    let len = data.len() as u64;
    let n = s.num_funcs();
    assert!(s.num_imported_funcs() <= n);
    // Names: every index, a few beyond, and the extremes.
    for i in (0..n.saturating_add(2)).chain([u32::MAX - 1, u32::MAX]) {
        let name = s.function_name(i);
        assert!(!name.is_empty() || s.import(i).is_some() || s.defined_name(i).is_some());
        let _ = s.defined_name(i);
        let _ = s.import(i);
        if let Some(b) = s.function_body(i) {
            assert!(
                b.start <= b.end && b.end <= len,
                "body {b:?} outside the {len}-byte file"
            );
            assert!(i >= s.num_imported_funcs());
        }
    }
    if let Some(code) = s.code_section_range() {
        // The end may lie past the file's end: a code section whose declared
        // size runs past it but whose bodies are all there is accepted (with
        // a warning for what follows). Only `contains` and `start` are used.
        assert!(code.start <= code.end && code.start <= len);
        assert_eq!(s.code_section_payload_start(), Some(code.start));
    }

    // Offsets: the first bytes of every body and around its end, the
    // section bounds, then a stride over the whole file.
    let mut probes: Vec<u64> = Vec::new();
    for i in s.num_imported_funcs()..n {
        let Some(b) = s.function_body(i) else {
            continue;
        };
        probes.extend(b.start.saturating_sub(1)..(b.start + 24).min(b.end + 1));
        probes.extend(b.end.saturating_sub(2)..b.end + 2);
        if probes.len() > MAX_PROBES / 2 {
            break;
        }
    }
    if let Some(c) = s.code_section_range() {
        probes.extend([
            c.start.saturating_sub(1),
            c.start,
            c.end.saturating_sub(1),
            c.end,
        ]);
    }
    let stride = (len / 512).max(1);
    probes.extend((0..len + 2).step_by(stride as usize));
    probes.extend([u64::MAX, u64::MAX - 1, 1 << 32]);
    probes.truncate(MAX_PROBES);

    for &off in &probes {
        let f = s.function_containing(off);
        if let Some(f) = f {
            let b = s
                .function_body(f)
                .expect("function_containing gave a function without a body");
            assert!(
                b.contains(&off),
                "{off:#x} not in the body {b:?} of function {f}"
            );
        }
        if s.call_target(off).is_some() {
            assert!(f.is_some(), "call_target at {off:#x} outside every body");
        }
        for sf in s.source_frames(off) {
            let _ = (sf.function, sf.file, sf.line, sf.column, sf.decl_line);
        }
    }
    // The addr2line front end on a few of them.
    for &off in probes.iter().take(64) {
        lookup::write_offset(&s, off, &mut io::sink()).expect("writing to a sink");
    }
    let _ = s.warnings();
    let _ = s.dwarf_warnings();
    let _ = s.has_dwarf();
}

// ---------------------------------------------------------------------------
// replaying regressions

/// The target function of a regression directory name.
pub fn target_fn(target: &str) -> Option<fn(&[u8])> {
    match target {
        "trace_reader" => Some(trace_reader),
        "analyze" => Some(analyze),
        "symbols" => Some(symbols),
        _ => None,
    }
}

/// Replays every file in `dir/<target>/` through its target; returns how many
/// inputs ran. Panics, naming every input that misbehaved, after all ran.
pub fn replay_dir(dir: &Path) -> usize {
    let mut ran = 0;
    let mut failed = Vec::new();
    let Ok(targets) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut targets: Vec<_> = targets.flatten().map(|e| e.path()).collect();
    targets.sort();
    for tdir in targets {
        let name = tdir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(f) = target_fn(&name) else { continue };
        let mut files: Vec<_> = std::fs::read_dir(&tdir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .filter(|p| p.extension().is_none_or(|e| e != "md"))
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            eprintln!("{name}: {}", file.display());
            if std::panic::catch_unwind(|| f(&data)).is_err() {
                failed.push(format!("{name}: {}", file.display()));
            }
            ran += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} inputs misbehave (see the panics above):\n{}",
        failed.len(),
        failed.join("\n")
    );
    ran
}
