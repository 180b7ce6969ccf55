//! wanalyze end to end: record a fixture with wrec, analyze it, and check the
//! profile says what the fixture's source says a correct profile shows.

use std::ffi::OsStr;
use std::process::Command;
use wrec_testkit::*;

#[test]
fn fib_at_o0_is_hottest_in_fib_and_its_hottest_lines_are_in_its_body() {
    let (dir, trace) = record_ok("fib-O0.wasm", &[], &["30"]);
    let p = firefox_profile(&trace, dir.path(), &["--dwarf"]);
    let samples = p.samples(0);
    assert!(samples.len() > 50, "{} samples", samples.len());
    let in_fib: Vec<&FxFrame> = samples
        .iter()
        .filter_map(|s| s.first())
        .filter(|f| f.func == "fib")
        .collect();
    assert!(
        in_fib.len() * 10 > samples.len() * 9,
        "fib is the leaf of only {} of {} samples",
        in_fib.len(),
        samples.len()
    );
    let (first, last) = function_lines("fixtures/src/fib.c", "fib");
    let mut lines = std::collections::HashMap::new();
    for f in &in_fib {
        assert_eq!(f.file.as_deref(), Some("fixtures/src/fib.c"));
        *lines
            .entry(f.line.expect("a line for every fib frame"))
            .or_insert(0) += 1;
    }
    let mut hot: Vec<(u64, i32)> = lines.into_iter().collect();
    hot.sort_by_key(|&(l, n)| (-n, l));
    for &(line, _) in hot.iter().take(3) {
        assert!(
            (first..=last).contains(&line),
            "hot line {line} outside fib ({first}-{last}): {hot:?}"
        );
    }
    // Deep recursion shows as deep stacks of fib under the entry point.
    let deepest = samples
        .iter()
        .map(|s| s.iter().filter(|f| f.func == "fib").count())
        .max()
        .unwrap();
    assert!(deepest >= 20, "deepest fib recursion seen: {deepest}");
    let roots: std::collections::HashSet<&str> = samples
        .iter()
        .filter_map(|s| s.last())
        .map(|f| f.func.as_str())
        .collect();
    // Under the entry point, or (samples in the runtime outside any wasm
    // call) a lone [host] frame, a tiny share.
    assert!(
        roots
            .iter()
            .all(|r| r.starts_with("_start") || *r == "[host]"),
        "roots: {roots:?}"
    );
    let outside = samples
        .iter()
        .filter(|s| s.len() == 1 && s[0].func == "[host]")
        .count();
    assert!(
        outside * 50 <= samples.len(),
        "{outside} samples outside wasm"
    );
}

#[test]
fn an_inlined_helper_is_a_frame_of_its_own_with_its_own_lines() {
    let (dir, trace) = record_ok("inline.wasm", &[], &["50000"]);
    let p = firefox_profile(&trace, dir.path(), &["--dwarf"]);
    let samples = p.samples(0);
    assert_mix_inlined_in_hash_block(&samples);
}

#[test]
fn a_stripped_module_falls_back_to_index_names() {
    let (_dir, trace) = record_ok("fib-stripped.wasm", &[], &["30"]);
    let f = folded(&trace, &[]);
    let shares = self_shares(&f);
    let (top, share) = shares.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    assert!(top.starts_with("wasm-function["), "hottest: {top}");
    assert!(*share > 0.9);
}

#[test]
fn a_module_without_dwarf_has_names_and_dwarf_says_there_is_none() {
    let (_dir, trace) = record_ok("fib-nodebug.wasm", &[], &["30"]);
    let out = wanalyze(&[
        trace.as_os_str(),
        OsStr::new("--dwarf"),
        OsStr::new("--format"),
        OsStr::new("text"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no DWARF"),
        "stderr: {}",
        stderr(&out)
    );
    let shares = self_shares(&folded(&trace, &["--dwarf"]));
    assert!(shares["fib"] > 0.9, "{shares:?}");
}

#[test]
fn the_host_call_fixture_is_hottest_in_an_import() {
    let (_dir, trace) = record_ok("hostcalls.wasm", &["--dir", "."], &["5"]);
    let shares = self_shares(&folded(&trace, &[]));
    let (top, share) = shares.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    assert!(
        top.starts_with("wasi_snapshot_preview1::"),
        "hottest leaf {top} ({share:.2}): {shares:?}"
    );
    let host: f64 = shares
        .iter()
        .filter(|(k, _)| k.starts_with("wasi_snapshot_preview1::"))
        .map(|(_, v)| v)
        .sum();
    assert!(host > 0.8, "host calls take {host:.2} of wall time");
}

/// At 137us, not a round number: ratio's rounds (3 calls of work_a, 1 of
/// work_b) take ~0.3 ms, and a fixed timer whose interval is near a small
/// multiple of that aliases with them. At 500us (5 intervals ~ 3 rounds on
/// an idle machine) work_a's share read 0.67-0.79 from run to run; at
/// 137us and 100us 0.744-0.755.
#[test]
fn the_ratio_fixture_splits_self_time_75_25() {
    let (_dir, trace) = record_ok("ratio.wasm", &["--interval", "137us"], &["2000"]);
    let shares = self_shares(&folded(&trace, &[]));
    let (a, b) = (shares["work_a"], shares["work_b"]);
    let a_share = a / (a + b);
    assert!(
        (a_share - 0.75).abs() < 0.05,
        "work_a {a:.3} work_b {b:.3}: {a_share:.3} of the two"
    );
}

#[test]
fn folded_counts_add_up_to_the_samples_in_the_trace() {
    let (_dir, trace) = record_ok("sortmap.wasm", &[], &["500"]);
    let t = wrec_format::Trace::open(&trace).unwrap();
    let mut d = t.decoder();
    let mut n = 0u64;
    while let Some(e) = d.next() {
        if let wrec_format::Event::Sample(_) = e.unwrap() {
            n += 1;
        }
    }
    let f = folded(&trace, &["--dwarf"]);
    assert!(n > 20);
    assert_eq!(f.iter().map(|(_, c)| c).sum::<u64>(), n);
    // Root first: every stack starts at the entry point, except samples
    // taken in the runtime outside any wasm call (instantiation, exit),
    // which are a lone `[host]` frame and a tiny share of the run.
    let outside: u64 = f
        .iter()
        .filter(|(s, _)| s.len() == 1 && s[0] == "[host]")
        .map(|(_, c)| c)
        .sum();
    assert!(outside * 50 <= n, "{outside} of {n} samples outside wasm");
    assert!(
        f.iter()
            .all(|(s, _)| s[0].starts_with("_start") || (s.len() == 1 && s[0] == "[host]")),
        "{:?}",
        &f[..3]
    );
}

#[test]
fn the_firefox_profile_is_consistent_and_carries_lines() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["40"]);
    let out = dir.path().join("p.json.gz");
    analyze_stdout(
        &trace,
        &["--dwarf", "--quiet", "--out", out.to_str().unwrap()],
    );
    let gz = std::fs::read(&out).unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(v["meta"]["version"].is_number());
    assert!(v["meta"]["preprocessedProfileVersion"].is_number());
    // Processed format 60 and later: one set of tables for all threads.
    let sh = &v["shared"];
    for table in [
        "stackTable",
        "frameTable",
        "funcTable",
        "resourceTable",
        "nativeSymbols",
        "sources",
    ] {
        let t = sh[table].as_object().unwrap();
        let len = t["length"].as_u64().unwrap();
        for (k, col) in t {
            if let Some(a) = col.as_array() {
                assert_eq!(a.len() as u64, len, "{table}.{k}");
            }
        }
    }
    let len = |t: &str| sh[t]["length"].as_u64().unwrap();
    let idx_ok = |col: &serde_json::Value, what: &str, target: u64| {
        for x in col.as_array().unwrap() {
            if let Some(i) = x.as_u64() {
                assert!(i < target, "{what} = {i} >= {target}");
            }
        }
    };
    for th in v["threads"].as_array().unwrap() {
        let t = th["samples"].as_object().unwrap();
        let n = t["length"].as_u64().unwrap();
        for (k, col) in t {
            if let Some(a) = col.as_array() {
                assert_eq!(a.len() as u64, n, "samples.{k}");
            }
        }
        idx_ok(&th["samples"]["stack"], "samples.stack", len("stackTable"));
    }
    idx_ok(
        &sh["stackTable"]["prefix"],
        "stackTable.prefix",
        len("stackTable"),
    );
    idx_ok(
        &sh["stackTable"]["frame"],
        "stackTable.frame",
        len("frameTable"),
    );
    idx_ok(
        &sh["frameTable"]["func"],
        "frameTable.func",
        len("funcTable"),
    );
    let nstr = sh["stringArray"].as_array().unwrap().len() as u64;
    idx_ok(&sh["funcTable"]["name"], "funcTable.name", nstr);
    idx_ok(
        &sh["funcTable"]["source"],
        "funcTable.source",
        len("sources"),
    );
    idx_ok(&sh["sources"]["filename"], "sources.filename", nstr);
    // fib has DWARF: every one of its frames carries a line, and the
    // function its file.
    let strings = sh["stringArray"].as_array().unwrap();
    let fib = (0..len("funcTable") as usize)
        .find(|&i| strings[sh["funcTable"]["name"][i].as_u64().unwrap() as usize] == "fib")
        .expect("a fib function");
    let source = sh["funcTable"]["source"][fib]
        .as_u64()
        .expect("fib has a file");
    let file = sh["sources"]["filename"][source as usize].as_u64().unwrap();
    assert_eq!(strings[file as usize], "fixtures/src/fib.c");
    let frames: Vec<usize> = (0..len("frameTable") as usize)
        .filter(|&i| sh["frameTable"]["func"][i].as_u64() == Some(fib as u64))
        .collect();
    assert!(!frames.is_empty());
    for f in frames {
        assert!(
            sh["frameTable"]["line"][f].is_u64(),
            "fib frame {f} without a line"
        );
    }
}

#[test]
fn a_truncated_trace_is_analyzed_up_to_its_last_complete_record_with_a_warning() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["40"]);
    let bytes = std::fs::read(&trace).unwrap();
    let cut = dir.path().join("cut.wrec");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let out = wanalyze(&[
        cut.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("folded"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning") && err.contains("cut short"),
        "{err}"
    );
    let n: u64 = stdout(&out)
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    let full: u64 = folded(&trace, &[]).iter().map(|(_, c)| c).sum();
    assert!(n > 0 && n < full, "{n} of {full}");
}

#[test]
fn a_wrong_module_is_refused_with_a_clear_error() {
    let (_dir, trace) = record_ok("fib-O2.wasm", &[], &["1", "20"]);
    let out = wanalyze(&[
        trace.as_os_str(),
        OsStr::new("--module"),
        fixture("fib-O0.wasm").as_os_str(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("fib-O0.wasm") && err.contains("does not match"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_moved_module_is_found_with_module_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("moved.wasm");
    std::fs::copy(fixture("fib-O2.wasm"), &wasm).unwrap();
    let trace = dir.path().join("t.wrec");
    let o = run(Command::new(bin("wrec"))
        .arg("-o")
        .arg(&trace)
        .arg(&wasm)
        .args(["20"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let elsewhere = dir.path().join("elsewhere.wasm");
    std::fs::rename(&wasm, &elsewhere).unwrap();
    let out = wanalyze(&[
        trace.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("text"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("moved.wasm") && stderr(&out).contains("--module"),
        "{}",
        stderr(&out)
    );
    let out = wanalyze(&[
        trace.as_os_str(),
        OsStr::new("--format"),
        OsStr::new("text"),
        OsStr::new("--module"),
        elsewhere.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("fib"));
}

#[test]
fn no_output_format_reveals_a_host_address() {
    let (dir, trace) = record_ok("hostcalls.wasm", &["--dir", "."], &["2"]);
    // Every native address the trace holds.
    let t = wrec_format::Trace::open(&trace).unwrap();
    let mut d = t.decoder();
    let mut addrs = std::collections::BTreeSet::new();
    while let Some(e) = d.next() {
        match e.unwrap() {
            wrec_format::Event::Sample(s) => addrs.extend(s.stack.iter().copied()),
            wrec_format::Event::Record(wrec_format::Record::Module(m)) => {
                addrs.insert(m.text_addr);
            }
            _ => {}
        }
    }
    assert!(!addrs.is_empty());
    let json = dir.path().join("p.json");
    analyze_stdout(
        &trace,
        &["--dwarf", "--quiet", "--out", json.to_str().unwrap()],
    );
    let outputs = [
        std::fs::read_to_string(&json).unwrap(),
        analyze_stdout(&trace, &["--dwarf", "--format", "folded"]),
        analyze_stdout(&trace, &["--dwarf", "--format", "text"]),
    ];
    for out in &outputs {
        for a in &addrs {
            for needle in [a.to_string(), format!("{a:x}"), format!("{a:X}")] {
                assert!(!out.contains(&needle), "host address {needle} in an output");
            }
        }
    }
}

/// The README's quick start, run as written but for the build: its first
/// two commands (a module and a component), with `target/release/` read
/// as this build's directory and the `cargo build --release` step left
/// out, in a fresh directory beside the fixtures. Each records and prints
/// a text report whose hottest function is `fib`, with its source file.
#[test]
fn the_readme_quick_start_records_and_analyzes() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README: no Quick start");
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|s| s.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "{section}");
    let bin_dir = bin("wrec").parent().unwrap().display().to_string();
    for block in &blocks[..2] {
        let cmd = block
            .trim()
            .trim_start_matches("cargo build --release && ")
            .replace("target/release/", &format!("{bin_dir}/"));
        assert!(
            cmd.contains("wrec ") && cmd.contains("wanalyze "),
            "{block}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root().join("fixtures"), dir.path().join("fixtures")).unwrap();
        let out = run(Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(dir.path()));
        let report = stdout(&out);
        assert!(out.status.success(), "{cmd}\n{report}\n{}", stderr(&out));
        let top = report
            .lines()
            .skip_while(|l| !l.starts_with("Top ") || !l.contains("by self time"))
            .nth(2)
            .unwrap_or_default();
        assert!(top.trim_end().ends_with(" fib"), "{cmd}\n{report}");
        assert!(report.contains("fib.c"), "{cmd}\n{report}");
    }
}
