//! Damaged wasm files end to end: a program whose name section or DWARF is
//! broken still runs under `wrec` (Wasmtime ignores custom sections), and
//! `wanalyze --dwarf` writes a profile of every sample, with names and lines
//! degraded where the data is bad and a warning naming the file. Not-wasm
//! and truncated files given to `wanalyze` get one clear error line.

use std::path::Path;

use wrec_testkit::*;

/// Deterministic garbage.
fn scramble(b: &mut [u8], seed: u32) {
    let mut x = seed;
    for byte in b {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        *byte = (x >> 16) as u8;
    }
}

/// fib-O2 with the names in its name section turned to bad UTF-8 and every
/// function index in the name map pushed out of range.
fn bad_names(bytes: &mut [u8]) {
    let names = custom_section(bytes, "name");
    let mut at = names.start;
    while at < names.end {
        let id = bytes[at];
        let (size, n) = leb(&bytes[at + 1..]);
        let sub = at + 1 + n..at + 1 + n + size as usize;
        if id == 1 {
            let (count, n) = leb(&bytes[sub.start..]);
            let mut e = sub.start + n;
            for i in 0..count {
                let (_, n1) = leb(&bytes[e..]);
                let (len, n2) = leb(&bytes[e + n1..]);
                if i % 2 == 0 && bytes[e] & 0x80 == 0 {
                    bytes[e] = 0x7f; // index 127: no such function
                }
                if len > 0 {
                    bytes[e + n1 + n2] = 0xff; // not UTF-8
                }
                e += n1 + n2 + len as usize;
            }
        }
        at = sub.end;
    }
}

fn variant(dir: &Path, name: &str, damage: impl Fn(&mut Vec<u8>)) -> std::path::PathBuf {
    let mut bytes = std::fs::read(fixture("fib-O2.wasm")).unwrap();
    damage(&mut bytes);
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn damaged_names_and_dwarf_still_give_a_profile_of_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        variant(dir.path(), "bad-names", |b| bad_names(b)),
        variant(dir.path(), "bad-debug-info", |b| {
            let r = custom_section(b, ".debug_info");
            let third = r.len() / 3;
            scramble(&mut b[r.start + third..r.end - third], 1);
        }),
        variant(dir.path(), "bad-debug-line", |b| {
            // Line programs with garbage opcodes and addresses far outside
            // the code section.
            let r = custom_section(b, ".debug_line");
            scramble(&mut b[r.start + 40..r.end], 2);
        }),
        variant(dir.path(), "bad-everything", |b| {
            bad_names(b);
            for (s, seed) in [
                (".debug_info", 3),
                (".debug_line", 4),
                (".debug_str", 5),
                (".debug_abbrev", 6),
            ] {
                let r = custom_section(b, s);
                scramble(&mut b[r.start + r.len() / 4..r.end], seed);
            }
        }),
    ];
    for wasm in &variants {
        let name = wasm.file_name().unwrap().to_str().unwrap();
        let trace = dir.path().join(format!("{name}.wrec"));
        let out = run(std::process::Command::new(bin("wrec"))
            .args(["--interval", "500us", "-o"])
            .arg(&trace)
            .arg(wasm)
            .arg("40"));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stdout(&out).starts_with("fib"), "{name}: {}", stdout(&out));

        let profile = dir.path().join(format!("{name}.json"));
        let out = wanalyze(&[
            trace.as_os_str(),
            "--dwarf".as_ref(),
            "--out".as_ref(),
            profile.as_os_str(),
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.lines()
                .any(|l| l.contains("warning") && l.contains(name)),
            "{name}: no warning naming the file:\n{err}"
        );

        let folded_total: u64 = folded(&trace, &["--dwarf"]).iter().map(|(_, n)| n).sum();
        let fx = FxProfile::load(&profile);
        let samples = fx.samples(0);
        assert_eq!(samples.len() as u64, folded_total, "{name}");
        assert!(samples.len() > 100, "{name}: {} samples", samples.len());
        for s in &samples {
            assert!(!s.is_empty(), "{name}: an empty stack");
            for f in s {
                assert!(!f.func.is_empty(), "{name}: a nameless frame");
                // Lines come only from DWARF rows that fall in this code;
                // garbage addresses must not attach lines past any source.
                if let Some(line) = f.line {
                    assert!(line < 100_000, "{name}: line {line} in {}", f.func);
                }
            }
        }
        // Where names are bad, functions fall back to index names or to
        // the lossily decoded name; the leaf is still one function for most
        // samples (fib), whatever it is called.
        let mut leaves = std::collections::HashMap::<&str, usize>::new();
        for s in &samples {
            *leaves.entry(s[0].func.as_str()).or_default() += 1;
        }
        let top = leaves.values().max().unwrap();
        assert!(*top * 10 > samples.len() * 8, "{name}: {leaves:?}");
        if name == "bad-debug-info.wasm" || name == "bad-debug-line.wasm" {
            assert!(leaves.contains_key("fib"), "{name}: names lost: {leaves:?}");
        }
    }
}

#[test]
fn not_wasm_and_truncated_modules_get_one_clear_line() {
    let (dir, trace) = record_ok("fib-O2.wasm", &["--interval", "2ms"], &["30"]);
    let bytes = std::fs::read(fixture("fib-O2.wasm")).unwrap();
    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hello\n").unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    for bad in [&not_wasm, &truncated] {
        let out = wanalyze(&[trace.as_os_str(), "--module".as_ref(), bad.as_os_str()]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        let file = bad.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(file), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
