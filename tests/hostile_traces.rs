//! Real traces rearranged and rewritten into hostile ones: records out of
//! order, a module whose address map and functions point outside its code,
//! samples whose addresses are in no module. Each must give a profile of what
//! can be trusted plus a warning, or a clear error; never a panic.
//! (Truncation, flipped bytes, huge counts and deep stacks are in
//! format-spec/tests/damage.rs; fuzzing in fuzz/.)

use std::path::Path;

use wanalyze::model::Profile;
use wanalyze::resolve::{analyze, Options};
use wanalyze::{firefox, folded, text};
use wrec_format::{frame, frame_payload, kind, Event, Header, Record, Trace};
use wrec_testkit::*;

/// The records of a trace, each as (kind, payload).
fn records(trace: &Path) -> (Header, Vec<(u8, Vec<u8>)>) {
    let t = Trace::open(trace).unwrap();
    let recs = t
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r.kind, r.payload.to_vec())
        })
        .collect();
    (*t.header(), recs)
}

/// How many of a trace's samples hold at least one address.
fn samples_with_frames(trace: &Path) -> usize {
    let t = Trace::open(trace).unwrap();
    let mut d = t.decoder();
    let mut n = 0;
    while let Some(e) = d.next() {
        if let Event::Sample(s) = e.unwrap() {
            n += usize::from(!s.stack.is_empty());
        }
    }
    n
}

/// A trace of these records, framed afresh (valid checks) after `header`.
fn build(header: &Header, recs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, p) in recs {
        body.extend(frame_payload(*k, p));
    }
    let mut h = *header;
    h.committed_len = (h.encode().len() + body.len()) as u64;
    let mut out = h.encode().to_vec();
    out.extend(body);
    out
}

/// The payload of `rec` as a writer frames it (kind, length, payload, check).
fn payload(rec: &Record) -> Vec<u8> {
    let framed = frame(rec);
    let mut it = wrec_format::RecordIter::for_tests(&framed);
    it.next().unwrap().unwrap().payload.to_vec()
}

fn analyze_bytes(dir: &Path, name: &str, bytes: &[u8]) -> Result<Profile, String> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let opts = Options {
        dwarf: true,
        modules: vec![fixture("fib-O2.wasm")],
        // Frames: every exporter runs on this profile.
        by_function: false,
        last: None,
    };
    let p = analyze(&path, &opts, &mut |_, _| {}).map_err(|e| e.to_string())?;
    // Every exporter takes whatever the analyzer built.
    let mut json = Vec::new();
    firefox::write(&p, &mut json).unwrap();
    serde_json::from_slice::<serde_json::Value>(&json).expect("valid JSON");
    folded::write(&p, &mut std::io::sink()).unwrap();
    text::write(&p, &text::TextOptions::default(), &mut std::io::sink()).unwrap();
    Ok(p)
}

fn move_kind_to_end(recs: &[(u8, Vec<u8>)], k: u8) -> Vec<(u8, Vec<u8>)> {
    let (mut moved, mut rest): (Vec<_>, Vec<_>) = recs.iter().cloned().partition(|r| r.0 == k);
    rest.append(&mut moved);
    rest
}

#[test]
fn records_out_of_order_give_a_profile_and_a_warning() {
    let (dir, trace) = record_ok("fib-O2.wasm", &["--interval", "2ms"], &["40"]);
    let (header, recs) = records(&trace);
    let good = analyze_bytes(dir.path(), "good.wrec", &build(&header, &recs)).unwrap();
    let n = good.sample_count();
    assert!(n > 50, "{n} samples");
    // Samples with any code address (a sample in the host before wasm
    // started has none: a busy machine makes one likelier).
    let with_code = samples_with_frames(&trace);
    let samples_at = recs.iter().position(|r| r.0 == kind::SAMPLE).unwrap();

    // The module record after the samples that need it: the samples are
    // kept, their code is unknown, and the trace is called out.
    let p = analyze_bytes(
        dir.path(),
        "module-last.wrec",
        &build(&header, &move_kind_to_end(&recs, kind::MODULE)),
    )
    .unwrap();
    assert_eq!(p.sample_count(), n);
    assert!(
        p.meta.warnings.iter().any(|w| w.contains(&format!(
            "{with_code} of {n} samples have code addresses in no module"
        ))),
        "{:?}",
        p.meta.warnings
    );

    // The thread's start after its samples, its end before them, the run's
    // end record in the middle: the samples still count, once each.
    let mut reordered = move_kind_to_end(&recs, kind::THREAD_START);
    let end_at = reordered
        .iter()
        .position(|r| r.0 == kind::THREAD_END)
        .unwrap();
    let thread_end = reordered.remove(end_at);
    reordered.insert(samples_at, thread_end);
    let run_end_at = reordered.iter().position(|r| r.0 == kind::END).unwrap();
    let run_end = reordered.remove(run_end_at);
    reordered.insert(samples_at + 5, run_end);
    let p = analyze_bytes(
        dir.path(),
        "threads-reordered.wrec",
        &build(&header, &reordered),
    )
    .unwrap();
    assert_eq!(p.sample_count(), n);

    // Samples in reverse order: each depends on the one before it, so the
    // first that is not a key frame is damage; what came before is kept.
    let mut reversed = recs.clone();
    let last_sample = recs.iter().rposition(|r| r.0 == kind::SAMPLE).unwrap();
    reversed[samples_at..=last_sample].reverse();
    let p = analyze_bytes(dir.path(), "reversed.wrec", &build(&header, &reversed)).unwrap();
    assert!(p.sample_count() < n);
    assert!(
        p.meta.warnings.iter().any(|w| w.contains("reversed.wrec")),
        "{:?}",
        p.meta.warnings
    );
}

#[test]
fn a_module_pointing_outside_its_code_and_samples_in_no_module() {
    let (dir, trace) = record_ok("fib-O2.wasm", &["--interval", "2ms"], &["40"]);
    let (header, recs) = records(&trace);
    let module_at = recs.iter().position(|r| r.0 == kind::MODULE).unwrap();
    let Some(Record::Module(m)) = Record::decode(kind::MODULE, &recs[module_at].1, 0).unwrap()
    else {
        panic!("not a module record")
    };

    // Function table shifted past the end of the code, address map past the
    // end of the code and of the wasm file: the reader takes the record as
    // damage (its check is fine, its contents impossible), the profile
    // covers what came before it, and the warning says what is wrong.
    let mut bad = m.clone();
    for e in &mut bad.address_map {
        e.code_offset += m.text_len;
        if let Some(w) = &mut e.wasm_offset {
            *w += 1 << 40;
        }
    }
    for f in &mut bad.functions {
        f.offset += m.text_len / 2;
        f.len = u64::MAX / 4;
    }
    let mut recs2 = recs.clone();
    recs2[module_at].1 = payload(&Record::Module(bad));
    let good = analyze_bytes(dir.path(), "good.wrec", &build(&header, &recs)).unwrap();
    let samples_before = recs[..module_at]
        .iter()
        .filter(|r| r.0 == kind::SAMPLE)
        .count();
    let p = analyze_bytes(dir.path(), "outside.wrec", &build(&header, &recs2)).unwrap();
    assert_eq!(p.sample_count(), samples_before);
    assert!(
        p.meta
            .warnings
            .iter()
            .any(|w| w.contains("outside.wrec") && w.contains("outside the module's code")),
        "{:?}",
        p.meta.warnings
    );

    // The module's code moved elsewhere: every sampled address is in no
    // module, and the profile says so instead of naming wrong functions.
    let mut moved = m.clone();
    moved.text_addr = moved.text_addr.wrapping_add(1 << 44);
    let mut recs3 = recs.clone();
    recs3[module_at].1 = payload(&Record::Module(moved));
    let p = analyze_bytes(dir.path(), "nomodule.wrec", &build(&header, &recs3)).unwrap();
    assert_eq!(p.sample_count(), good.sample_count());
    let mut out = Vec::new();
    folded::write(&p, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        !out.contains("fib"),
        "named functions from unmapped code:\n{out}"
    );
    assert!(
        p.meta
            .warnings
            .iter()
            .any(|w| w.contains("nomodule.wrec") && w.contains("in no module")),
        "{:?}",
        p.meta.warnings
    );
}

#[test]
fn a_component_trace_placing_an_inner_module_elsewhere_is_refused_in_one_line() {
    let (dir, trace) = record_ok("fib-O2.component.wasm", &["--interval", "2ms"], &["10"]);
    let (header, recs) = records(&trace);
    // Every inner module record now says its bytes start in the middle of
    // the component's first one.
    let moved: Vec<(u8, Vec<u8>)> = recs
        .iter()
        .map(|(k, p)| {
            if *k != kind::MODULE {
                return (*k, p.clone());
            }
            match Record::decode(*k, p, 0).unwrap() {
                Some(Record::Module(mut m)) => {
                    let inner = m.inner.as_mut().expect("an inner module");
                    inner.offset += 7;
                    (*k, payload(&Record::Module(m)))
                }
                _ => unreachable!(),
            }
        })
        .collect();
    let path = dir.path().join("moved.wrec");
    std::fs::write(&path, build(&header, &moved)).unwrap();
    let opts = Options {
        dwarf: true,
        modules: Vec::new(),
        by_function: false,
        last: None,
    };
    let err = analyze(&path, &opts, &mut |_, _| {})
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("fib-O2.component.wasm") && err.contains("core module 0"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
