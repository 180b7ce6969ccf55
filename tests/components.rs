//! WASI 0.2 components end to end: wrec runs each component fixture (a
//! committed core module fixture wrapped with the WASI adapter, or two
//! composed components) and wanalyze names its inner modules' frames, with
//! the same checks as the core module versions get.

use wrec_testkit::*;

/// Records a fixture and reads back its Firefox profile (with `--dwarf`).
fn profile(fixture: &str, wrec_opts: &[&str], args: &[&str]) -> (tempfile::TempDir, FxProfile) {
    let (dir, trace) = record_ok(fixture, wrec_opts, args);
    let p = firefox_profile(&trace, dir.path(), &["--dwarf"]);
    (dir, p)
}

/// The libraries of a profile, by name.
fn libs(p: &FxProfile) -> Vec<String> {
    p.json["libs"]
        .as_array()
        .expect("libs")
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_component_is_hottest_in_fib_with_lines_and_its_modules_named() {
    let (_dir, p) = profile("fib-O2.component.wasm", &[], &["30"]);
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
    for f in &in_fib {
        assert_eq!(f.file.as_deref(), Some("fixtures/src/fib.c"));
        let line = f.line.expect("a line for every fib frame");
        assert!((first..=last).contains(&line), "line {line} outside fib");
    }
    // The program's stack runs down through the adapter's `run` export.
    let roots: std::collections::HashSet<&str> = samples
        .iter()
        .filter_map(|s| s.last())
        .map(|f| f.func.as_str())
        .collect();
    assert!(
        roots
            .iter()
            .all(|r| r.starts_with("wasi:cli/run@0.2.") || *r == "[host]"),
        "roots: {roots:?}"
    );
    // One library per inner module with code: the program, the adapter and
    // the shim, each named with the component.
    let libs = libs(&p);
    assert_eq!(
        libs,
        [
            "fib-O2.component.wasm: module 0",
            "fib-O2.component.wasm: module 1 (wit-component:adapter:wasi_snapshot_preview1)",
            "fib-O2.component.wasm: module 2 (wit-component:shim)",
        ],
    );
}

#[test]
fn an_inlined_helper_in_a_component_is_a_frame_of_its_own() {
    let (_dir, p) = profile("inline.component.wasm", &[], &["50000"]);
    let samples = p.samples(0);
    assert_mix_inlined_in_hash_block(&samples);
}

#[test]
fn a_component_waiting_in_wasi_is_hottest_in_a_wasi_02_import() {
    let (_dir, trace) = record_ok("hostcalls.component.wasm", &["--dir", "."], &["5"]);
    let shares = self_shares(&folded(&trace, &[]));
    let (top, share) = shares.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    // It sleeps most of the time: poll, reached through the shim's table.
    assert!(
        top.starts_with("wasi:io/poll@0.2.") && top.ends_with("#poll"),
        "hottest leaf {top} ({share:.2}): {shares:?}"
    );
    let host: f64 = shares
        .iter()
        .filter(|(k, _)| k.starts_with("wasi:") && k.contains('#'))
        .map(|(_, v)| v)
        .sum();
    assert!(host > 0.8, "WASI 0.2 calls take {host:.2} of wall time");
    // Calls the shim forwards through its table are named too.
    assert!(!shares.keys().any(|k| k.contains("[host: indirect call]")));
}

#[test]
fn a_trapping_component_keeps_its_status_message_and_trace() {
    let (dir, trace, out) = record("trap.component.wasm", &[], &["50000"]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("Error: failed to run main module"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_summary_line(&out, "t.wrec");
    let text = analyze_stdout(&trace, &["--format", "text"]);
    assert!(text.contains("trapped, status 134"), "{text}");
    let samples = firefox_profile(&trace, dir.path(), &[]).samples(0);
    let burn: Vec<_> = samples
        .iter()
        .filter(|s| s.first().is_some_and(|f| f.func == "burn"))
        .collect();
    assert!(burn.len() >= 20, "{} burn samples", burn.len());
    for s in burn.iter().take(20) {
        let f: Vec<&str> = s.iter().take(4).map(|f| f.func.as_str()).collect();
        assert_eq!(f, ["burn", "level10", "level9", "level8"]);
    }
}

#[test]
fn a_component_exiting_non_zero_keeps_its_status_and_trace() {
    let (_dir, trace, out) = record("exit.component.wasm", &[], &["50000"]);
    // WASI 0.2's exit carries only success or failure: `exit(3)` is
    // status 1, as with `wasmtime run`.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("exiting with 3"));
    assert_summary_line(&out, "t.wrec");
    let text = analyze_stdout(&trace, &["--format", "text"]);
    assert!(text.contains("exited, status 1"), "{text}");
    let shares = self_shares(&folded(&trace, &[]));
    assert!(shares.get("burn").is_some_and(|&s| s > 0.5), "{shares:?}");
}

#[test]
fn composed_components_show_both_programs_and_their_modules() {
    let (_dir, p) = profile("compose.component.wasm", &[], &[]);
    let samples = p.samples(0);
    let leaf = |name: &str| {
        samples
            .iter()
            .filter(|s| s.first().is_some_and(|f| f.func == name))
            .count()
    };
    let (app, lib) = (leaf("local_work"), leaf("lib_crunch"));
    assert!(
        app > 20 && lib > 20,
        "local_work {app}, lib_crunch {lib} of {} samples",
        samples.len()
    );
    // lib_crunch runs in the library component, called from the app's run.
    let s = samples
        .iter()
        .find(|s| s.first().is_some_and(|f| f.func == "lib_crunch"))
        .unwrap();
    assert!(s.iter().any(|f| f.func == "run"), "{s:?}");
    let libs = libs(&p);
    assert!(
        libs.iter()
            .filter(|l| l.starts_with("compose.component.wasm: module "))
            .count()
            >= 4,
        "{libs:?}"
    );
}

#[test]
fn a_proxy_component_is_refused_in_one_line_without_a_trace_pointing_at_wrec_serve() {
    let (_dir, trace, out) = record("http-handler.component.wasm", &[], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("http-handler.component.wasm"), "{err}");
    assert!(err.contains("wasi:http/proxy"), "{err}");
    assert!(err.contains("`wrec serve "), "{err}");
    assert!(!trace.exists());
}

#[test]
fn a_component_gets_exactly_the_arguments_variables_and_directories_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), "hello\n").unwrap();
    let wasm = fixture("envargs.component.wasm");
    let wasm = wasm.to_str().unwrap();
    let out = wrec_cmd(
        dir.path(),
        &[
            "--dir",
            ".",
            "--env",
            "WREC_FIXTURE_GREETING=hi",
            "-o",
            "t.wrec",
            wasm,
            ".",
            "-q",
            "b c",
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("argv[0]=envargs.component.wasm\n"), "{text}");
    assert!(text.contains("argv[2]=-q\nargv[3]=b c\n"), "{text}");
    assert!(text.contains("WREC_FIXTURE_GREETING=hi"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("output.txt")).unwrap(),
        "HELLO\n"
    );
    // Without --env the guest sees no variable; without --dir no directory:
    // both fail its checks (status 1: WASI 0.2's exit carries no code).
    let out = wrec_cmd(dir.path(), &["-o", "u.wrec", wasm, "."])
        .env("WREC_FIXTURE_GREETING", "from wrec's environment")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("WREC_FIXTURE_GREETING is not set"), "{err}");
    assert!(dir.path().join("u.wrec").exists());
}
