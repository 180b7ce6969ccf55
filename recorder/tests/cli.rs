//! The command line: options, errors, output-file policy, and the guest's
//! view of arguments, environment and directories.

use std::os::unix::fs::symlink;
use std::path::Path;

use wrec_format::{flags, ExitKind};
use wrec_testkit::*;

fn write(dir: &Path, name: &str, content: &str) -> String {
    std::fs::write(dir.join(name), content).unwrap();
    dir.join(name).to_str().unwrap().to_owned()
}

/// A WASI command that exits with 40 + the value of an import WASI lacks.
const UNKNOWN_IMPORT_WAT: &str = r#"(module
  (import "env" "missing" (func $m (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.add (i32.const 40) (call $m)))))"#;

#[test]
fn help_and_version() {
    let d = tempfile::tempdir().unwrap();
    let out = wrec(d.path(), &["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--interval",
        "--clock",
        "--env",
        "--dir",
        "--force",
        "--no-cache",
        "Examples:",
        "134",
        "wanalyze",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let out = wrec(d.path(), &["--version"]);
    assert!(text(&out.stdout).starts_with("wrec "));
}

#[test]
fn bad_intervals_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let wasm = fixture("exit.wasm");
    for (bad, why) in [
        ("0", "no unit"),
        ("0ms", "too short"),
        ("5us", "too short"),
        ("11s", "too long"),
        ("fast", ""),
    ] {
        let out = wrec(d.path(), &["--interval", bad, wasm.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = text(&out.stderr);
        assert!(
            err.contains("--interval") && err.contains(why),
            "{bad}: {err}"
        );
    }
    assert!(
        std::fs::read_dir(d.path()).unwrap().next().is_none(),
        "a trace was written"
    );
}

#[test]
fn missing_and_malformed_modules() {
    let d = tempfile::tempdir().unwrap();
    let out = wrec(d.path(), &["nope.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("wrec: error: cannot read nope.wasm"),
        "{err}"
    );

    let bad = write(d.path(), "bad.wasm", "\0asm\x01\0\0\0garbage");
    let out = wrec(d.path(), &[&bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.wasm: not a valid WebAssembly module"),
        "{err}"
    );

    let reactor = write(d.path(), "lib.wat", "(module (func (export \"f\")))");
    let out = wrec(d.path(), &[&reactor]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a WASI command"),
        "{}",
        text(&out.stderr)
    );

    let dir_arg = wrec(
        d.path(),
        &[
            "--dir",
            "/nonexistent-dir-for-wrec",
            fixture("exit.wasm").to_str().unwrap(),
        ],
    );
    assert_eq!(dir_arg.status.code(), Some(1));
    assert!(text(&dir_arg.stderr).contains("/nonexistent-dir-for-wrec"));

    // No trace is left behind by a run that never started.
    let traces: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "wrec"))
        .collect();
    assert!(traces.is_empty(), "{traces:?}");
}

#[test]
fn unknown_imports() {
    let d = tempfile::tempdir().unwrap();
    let wat = write(d.path(), "imp.wat", UNKNOWN_IMPORT_WAT);
    let out = wrec(d.path(), &[&wat]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("env::missing"),
        "{}",
        text(&out.stderr)
    );
    assert!(!d.path().join("imp.wrec").exists());

    let out = wrec(d.path(), &["--default-values-unknown-imports", &wat]);
    assert_eq!(out.status.code(), Some(40), "{}", text(&out.stderr));
    assert!(d.path().join("imp.wrec").exists());

    // Calling it fails the run with a host error: exit 1, as `wasmtime run`
    // (the error is not a wasm trap).
    let out = wrec(d.path(), &["--trap-unknown-imports", &wat]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("Error: failed to run main module") && err.contains("env::missing"),
        "{err}"
    );
    assert_summary_line(&out, "imp.wrec");
    let l = Loaded::load(&d.path().join("imp.wrec"), &d.path().join("imp.wat"));
    assert_eq!(l.end.exit_kind, ExitKind::Failed);
    assert_eq!(l.end.status, 1);
    assert!(l.end.message.contains("env::missing"), "{}", l.end.message);
}

#[test]
fn output_file_policy() {
    let d = tempfile::tempdir().unwrap();
    let wasm = fixture("exit.wasm");
    let w = wasm.to_str().unwrap();

    // Default name: <stem>.wrec in the current directory.
    let out = wrec(d.path(), &[w, "1"]);
    assert_eq!(out.status.code(), Some(3));
    assert_summary_line(&out, "exit.wrec");
    assert!(d.path().join("exit.wrec").exists());
    // An existing trace is overwritten.
    let out = wrec(d.path(), &["-o", "exit.wrec", w, "1"]);
    assert_eq!(out.status.code(), Some(3));
    Loaded::load(&d.path().join("exit.wrec"), &wasm);

    // A file that is not a trace is not overwritten without --force.
    let precious = write(d.path(), "precious.txt", "keep me");
    let out = wrec(d.path(), &["-o", &precious, w, "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a wrec trace"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    let out = wrec(d.path(), &["--force", "-o", &precious, w, "1"]);
    assert_eq!(out.status.code(), Some(3));
    Loaded::load(Path::new(&precious), &wasm);

    // A symlink at the output path is refused without --force.
    let target = d.path().join("target.wrec");
    symlink(&target, d.path().join("link.wrec")).unwrap();
    let out = wrec(d.path(), &["-o", "link.wrec", w, "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("symbolic link"),
        "{}",
        text(&out.stderr)
    );
    assert!(!target.exists());
    let out = wrec(d.path(), &["--force", "-o", "link.wrec", w, "1"]);
    assert_eq!(out.status.code(), Some(3));
    Loaded::load(&target, &wasm);

    // A directory is refused.
    std::fs::create_dir(d.path().join("adir")).unwrap();
    let out = wrec(d.path(), &["-o", "adir", w, "1"]);
    assert_eq!(out.status.code(), Some(1));

    // --quiet drops the summary line.
    let out = wrec(d.path(), &["-q", "-o", "q.wrec", w, "1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !text(&out.stderr).contains("wrec: trace"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn guest_sees_only_what_it_is_given() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("input.txt"), "hello wasm\n").unwrap();
    let wasm = fixture("envargs.wasm");
    let w = wasm.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["-o", "t.wrec"];
        args.extend(extra);
        let out = wrec_cmd(d.path(), &args)
            .env("WREC_FIXTURE_GREETING", "from-wrec-env")
            .output()
            .unwrap();
        // Every run leaves a complete trace.
        Loaded::load(&d.path().join("t.wrec"), &wasm);
        out
    };

    // No --env, no --dir: the guest sees neither wrec's environment nor any
    // directory (exit 3: variable missing; it still tries the file and fails).
    let out = run(&[w, "/data"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("WREC_FIXTURE_GREETING is not set"), "{err}");
    assert!(err.contains("cannot open /data/input.txt"), "{err}");

    // --env without --dir: exit 4 (no capability for /data).
    let out = run(&["--env", "WREC_FIXTURE_GREETING=hi", w, "/data"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("WREC_FIXTURE_GREETING=hi"));

    // Both, with the inherit form of --env and trailing guest arguments that
    // look like options: they belong to the guest.
    let dir = format!("{}::/data", data.display());
    let out = run(&[
        "--env",
        "WREC_FIXTURE_GREETING",
        "--dir",
        &dir,
        w,
        "/data",
        "-o",
        "--help",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in [
        "argc=4",
        "argv[0]=envargs.wasm",
        "argv[1]=/data",
        "argv[2]=-o",
        "argv[3]=--help",
        "WREC_FIXTURE_GREETING=from-wrec-env",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line} in:\n{stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(data.join("output.txt")).unwrap(),
        "HELLO WASM\n"
    );
    let l = Loaded::load(&d.path().join("t.wrec"), &wasm);
    assert_eq!(
        l.run_info.args,
        vec!["envargs.wasm", "/data", "-o", "--help"]
    );
    assert!(!d.path().join("envargs.wrec").exists());
}

#[test]
fn module_record_describes_the_module() {
    let d = tempfile::tempdir().unwrap();
    let wasm = fixture("fib-O2.wasm");
    let out = wrec(d.path(), &["-o", "t.wrec", wasm.to_str().unwrap(), "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let l = Loaded::load(&d.path().join("t.wrec"), &wasm);
    assert_eq!(l.modules.len(), 1);
    let m = &l.modules[0];
    assert_eq!(Path::new(&m.path), std::fs::canonicalize(&wasm).unwrap());
    use sha2::Digest;
    let want: [u8; 32] = sha2::Sha256::digest(std::fs::read(&wasm).unwrap()).into();
    assert_eq!(m.sha256, want);
    assert!(m.text_len > 0);
    // Functions: sorted, inside the code, indices in the function index
    // space (imports first: fib-O2 imports 6 WASI functions... whatever it
    // imports, every defined function index has a name).
    assert!(m
        .functions
        .windows(2)
        .all(|w| w[0].offset + w[0].len <= w[1].offset));
    assert!(m.functions.iter().all(|f| f.offset + f.len <= m.text_len));
    let fib = m
        .functions
        .iter()
        .find(|f| l.name(f.index) == "fib")
        .expect("fib in the module record");
    assert!(fib.len > 16);
    assert!(l.names.contains_key(&fib.index));
    // No full address map: the code addresses the samples look up instead,
    // every one of them, pointing into the wasm file.
    let size = std::fs::metadata(&wasm).unwrap().len();
    assert!(m.address_map.is_empty());
    assert!(m
        .addresses
        .windows(2)
        .all(|w| w[0].code_offset < w[1].code_offset));
    assert!(m
        .addresses
        .iter()
        .filter_map(|e| e.wasm_offset)
        .all(|o| o < size));
    assert!(m.addresses.iter().any(|e| fib.offset <= e.code_offset
        && e.code_offset < fib.offset + fib.len
        && e.wasm_offset.is_some()));
    let mut looked_up = 0;
    for s in &l.samples {
        for (j, &a) in s.stack.iter().enumerate() {
            let ret = j > 0 || s.has(flags::HOST);
            if l.func_at(a, ret).is_some() {
                let off = a - m.text_addr - u64::from(ret);
                assert!(m.exact_wasm_offset(off).is_some(), "no entry for {off:#x}");
                looked_up += 1;
            }
        }
    }
    assert!(looked_up > 0);
}

/// The guest's argv lines envargs prints.
fn argv_lines(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("argv[") || l.starts_with("argc="))
        .map(str::to_owned)
        .collect()
}

/// What envargs prints for `argv`.
fn expected_argv(argv: &[&str]) -> Vec<String> {
    std::iter::once(format!("argc={}", argv.len()))
        .chain(
            argv.iter()
                .enumerate()
                .map(|(i, a)| format!("argv[{i}]={a}")),
        )
        .collect()
}

/// `wrec [OPTS] envargs.wasm ARGS...` in a directory with `io/input.txt`,
/// with `--dir io` and the greeting set (`WASM` in `args` stands for the
/// module).
fn envargs_run(d: &Path, args: &[&str]) -> std::process::Output {
    std::fs::create_dir_all(d.join("io")).unwrap();
    std::fs::write(d.join("io/input.txt"), "x").unwrap();
    let wasm = fixture("envargs.wasm");
    let mut a = vec!["--dir", "io", "--env", "WREC_FIXTURE_GREETING=hi"];
    let at = args
        .iter()
        .position(|&x| x == "WASM")
        .expect("WASM placeholder");
    a.extend(&args[..at]);
    a.push(wasm.to_str().unwrap());
    a.extend(&args[at + 1..]);
    wrec(d, &a)
}

/// Everything after the module is the guest's, exactly as typed, even
/// options wrec has too (`yosys.wasm -q -p 'synth ...'`: `-q` is not wrec's
/// `--quiet`).
#[test]
fn arguments_after_the_module_reach_the_guest_exactly_as_typed() {
    let d = tempfile::tempdir().unwrap();
    let out = envargs_run(
        d.path(),
        &[
            "-o",
            "t.wrec",
            "WASM",
            "io",
            "-q",
            "-p",
            "synth -top x",
            "--interval",
            "--help",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = [
        "envargs.wasm",
        "io",
        "-q",
        "-p",
        "synth -top x",
        "--interval",
        "--help",
    ];
    assert_eq!(argv_lines(&text(&out.stdout)), expected_argv(&want));
    let err = text(&out.stderr);
    // wrec stayed loud: -q was the program's.
    assert_summary_line(&out, "t.wrec");
    assert!(!err.contains("note:"), "{err}");
    let l = Loaded::load(&d.path().join("t.wrec"), &fixture("envargs.wasm"));
    assert_eq!(l.run_info.args, want);
}

/// `wrec app.wasm -o t.wrec` (the order some write by habit): when every
/// argument after the module is one of wrec's options, they are wrec's,
/// and wrec says so and how to give them to the program instead.
#[test]
fn only_wrec_options_after_the_module_are_wrecs_with_a_note() {
    let d = tempfile::tempdir().unwrap();
    let out = envargs_run(d.path(), &["WASM", "-o", "mine.wrec", "--interval", "2ms"]);
    // envargs without its DIR argument exits 2.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        argv_lines(&text(&out.stdout)),
        expected_argv(&["envargs.wasm"])
    );
    assert!(d.path().join("mine.wrec").exists());
    assert!(!d.path().join("envargs.wrec").exists());
    let err = text(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("note:")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    let w = fixture("envargs.wasm");
    assert_eq!(
        notes[0],
        format!(
            "wrec: note: took '-o mine.wrec --interval 2ms' as wrec's options; write 'wrec {} -- -o mine.wrec --interval 2ms' to pass them to the program",
            w.display()
        )
    );
    let l = Loaded::load(&d.path().join("mine.wrec"), &w);
    assert_eq!(l.run_info.interval_ns, 2_000_000);
    // The program's --help is never taken for wrec's.
    let out = envargs_run(d.path(), &["-o", "t.wrec", "WASM", "--help"]);
    assert_eq!(
        argv_lines(&text(&out.stdout)),
        expected_argv(&["envargs.wasm", "--help"])
    );
}

/// `--` ends wrec's options, right after the module or before it.
#[test]
fn a_double_dash_ends_wrecs_options() {
    let d = tempfile::tempdir().unwrap();
    for (args, want) in [
        (
            &["WASM", "--", "-o", "x.wrec"][..],
            &["envargs.wasm", "-o", "x.wrec"][..],
        ),
        (
            &["-o", "t.wrec", "--", "WASM", "-o", "x.wrec"],
            &["envargs.wasm", "-o", "x.wrec"],
        ),
        (
            &["-o", "t.wrec", "WASM", "--", "--"],
            &["envargs.wasm", "--"],
        ),
        (
            &["-o", "t.wrec", "WASM", "io", "--", "-q"],
            &["envargs.wasm", "io", "--", "-q"],
        ),
    ] {
        let out = envargs_run(d.path(), args);
        assert_eq!(
            argv_lines(&text(&out.stdout)),
            expected_argv(want),
            "{args:?}"
        );
        assert!(!d.path().join("x.wrec").exists());
        assert!(!text(&out.stderr).contains("took"), "{}", text(&out.stderr));
    }
    // Without -o, the trace has its default name.
    assert!(d.path().join("envargs.wrec").exists());
}

/// `wrec app.wasm ARGS -o t.wrec` hands `-o t.wrec` to the guest with its
/// other arguments, as `wasmtime run` would; wrec says where the trace went
/// instead and how to put the option first.
#[test]
fn an_output_option_among_the_guests_arguments_goes_to_the_guest_with_a_note() {
    let d = tempfile::tempdir().unwrap();
    let out = envargs_run(d.path(), &["WASM", "io", "-o", "mine.wrec"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The guest got it...
    assert_eq!(
        argv_lines(&text(&out.stdout)),
        expected_argv(&["envargs.wasm", "io", "-o", "mine.wrec"])
    );
    // ...the trace went to the default place, and wrec said so.
    assert!(d.path().join("envargs.wrec").exists());
    assert!(!d.path().join("mine.wrec").exists());
    let err = text(&out.stderr);
    assert!(
        err.contains("'-o' after the module goes to the program") && err.contains("envargs.wrec"),
        "{err}"
    );
    // With wrec's own -o first, no note.
    let out = envargs_run(d.path(), &["-o", "t.wrec", "WASM", "io", "-o"]);
    assert!(
        !text(&out.stderr).contains("note:"),
        "{}",
        text(&out.stderr)
    );
}

/// CPU-time timers fire on the scheduler tick: an interval below it gets a
/// warning that says what to use instead; the default clock gets none.
#[test]
fn a_cpu_clock_finer_than_the_tick_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let wasm = fixture("exit.wasm");
    let out = wrec(
        d.path(),
        &[
            "--clock",
            "cpu",
            "--interval",
            "100us",
            wasm.to_str().unwrap(),
            "1000",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("scheduler tick") && err.contains("--clock wall"),
        "{err}"
    );
    for ok in [
        ["--clock", "cpu", "--interval", "10ms"],
        ["--clock", "wall", "--interval", "100us"],
    ] {
        let mut args = ok.to_vec();
        args.extend([wasm.to_str().unwrap(), "1000"]);
        let out = wrec(d.path(), &args);
        assert!(!text(&out.stderr).contains("scheduler tick"), "{ok:?}");
    }
}

/// An interval near the timer signal's own cost gets a warning that says
/// what it costs, or, under 3 times the cost measured here, is raised with
/// a warning; 100us and up get no "slower" warning.
#[test]
fn an_interval_near_the_signal_cost_is_warned_about() {
    let d = tempfile::tempdir().unwrap();
    let wasm = fixture("exit.wasm");
    let out = wrec(
        d.path(),
        &["--interval", "20us", wasm.to_str().unwrap(), "1000"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("at 20us the guest may run several times slower")
            || err.contains("at 20us the guest would hardly run; sampling every "),
        "{err}"
    );
    for ok in ["50us", "100us"] {
        let out = wrec(
            d.path(),
            &["--interval", ok, wasm.to_str().unwrap(), "1000"],
        );
        assert!(!text(&out.stderr).contains("times slower"), "{ok}");
    }
}
