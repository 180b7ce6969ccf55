//! Names and paths are untrusted input, and profiles are shared:
//!
//! - a function name far longer than any real one (here 1 MiB, in the
//!   name section of a module recorded 40 frames deep in it) is shortened,
//!   with a marker, in every output format, with one warning naming the
//!   function's index; before, every frame of every stack repeated it whole
//!   (a 20 MB name gave an 820 MB folded file);
//! - the run-end message a trace stored (a trap with wrec's own Rust
//!   backtrace under it, as older wrec versions wrote with RUST_BACKTRACE=1)
//!   reaches no profile with its host backtrace or host directories, while
//!   the guest's wasm backtrace stays; the module is named by its file name.

use std::ffi::OsStr;
use wrec_format::Record;
use wrec_testkit::*;

/// Bytes in the long name.
const LONG: usize = 1 << 20;

/// `_start` → `$deep` 40 times (recursion) → a spin loop in the innermost
/// call; `$deep` has a LONG-byte name.
fn long_name_wat(name: &str) -> String {
    format!(
        r#"(module
  (func ${name} (param $depth i32) (param $n i32) (result i32)
    (local $acc i32)
    (if (local.get $depth)
      (then (return (i32.add (i32.const 1)
        (call ${name} (i32.sub (local.get $depth) (i32.const 1)) (local.get $n))))))
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))
    (local.get $acc))
  (func $_start (export "_start")
    (drop (call ${name} (i32.const 40) (i32.const 100000000)))))
"#
    )
}

#[test]
fn a_huge_function_name_is_shortened_in_every_output_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let name = "n".repeat(LONG);
    std::fs::write(dir.path().join("long.wat"), long_name_wat(&name)).unwrap();
    let out = wrec(dir.path(), &["-o", "t.wrec", "long.wat"]);
    assert!(out.status.success(), "wrec: {}", stderr(&out));
    let trace = dir.path().join("t.wrec");
    let t = |p: &str| dir.path().join(p);

    let mut total_samples = 0;
    for (format, file) in [
        ("folded", "p.folded"),
        ("text", "p.txt"),
        ("firefox", "p.json"),
        ("pprof", "p.pb.gz"),
    ] {
        let out = wanalyze(&[
            trace.as_os_str(),
            OsStr::new("--format"),
            OsStr::new(format),
            OsStr::new("--out"),
            t(file).as_os_str(),
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let err = stderr(&out);
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("shortened")).collect();
        assert_eq!(warnings.len(), 1, "{format}: {err}");
        assert!(
            warnings[0].contains("function 0 (1048576 bytes)"),
            "{format}: {}",
            warnings[0]
        );
        let size = std::fs::metadata(t(file)).unwrap().len();
        // 41 frames of the name whole would be 41 MiB in one stack.
        assert!(size < 2 << 20, "{format}: {size} bytes");
        if format == "folded" {
            let text = std::fs::read_to_string(t(file)).unwrap();
            let marker = format!("…[+{} bytes]", LONG - wanalyze::symbols::MAX_NAME_BYTES);
            for line in text.lines() {
                let (stack, n) = line.rsplit_once(' ').unwrap();
                total_samples += n.parse::<u64>().unwrap();
                for frame in stack.split(';').skip(1) {
                    assert!(frame.ends_with(&marker), "{}", &frame[frame.len() - 40..]);
                    assert!(frame.starts_with("nnnn"));
                }
            }
        }
        if format == "text" || format == "firefox" {
            let text = std::fs::read_to_string(t(file)).unwrap();
            assert!(text.contains("…[+"), "{format}: no marker");
        }
    }
    assert!(total_samples > 0);
}

/// What an older wrec stored for a trap with RUST_BACKTRACE=1: the wasm
/// backtrace, then wrec's Rust backtrace with host paths.
const LEAKY_MESSAGE: &str = "failed to run main module `/home/alice/secret-project/trap.wasm`

Caused by:
    0: error while executing at wasm backtrace:
           0:  0x2ab - trap.wasm!level3
           1:  0x2c0 - trap.wasm!main
    1: wasm trap: wasm `unreachable` instruction executed

Stack backtrace:
   0: anyhow::error::<impl anyhow::Error>::msg
             at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/anyhow-1.0.100/src/error.rs:83:36
   1: wrec::run::run
             at /home/alice/src/wrec/recorder/src/run.rs:301:18
";

#[test]
fn no_host_path_or_rust_backtrace_reaches_a_profile() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["25"]);
    let leaky = dir.path().join("leaky.wrec");
    rewrite_trace(&trace, &leaky, |r| {
        if let Record::End(e) = r {
            e.message = LEAKY_MESSAGE.to_owned();
        }
    });
    let fixture_dir = fixture("fib-O2.wasm")
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (format, file) in [
        ("text", "p.txt"),
        ("firefox", "p.json"),
        ("folded", "p.folded"),
    ] {
        let out_path = dir.path().join(file);
        let out = wanalyze(&[
            leaky.as_os_str(),
            OsStr::new("--format"),
            OsStr::new(format),
            OsStr::new("--dwarf"),
            OsStr::new("--out"),
            out_path.as_os_str(),
        ]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        let text = std::fs::read_to_string(&out_path).unwrap();
        for leak in [
            "/home/alice",
            ".cargo/registry",
            "Stack backtrace",
            "wrec::run::run",
            fixture_dir.as_str(),
            dir.path().to_str().unwrap(),
        ] {
            assert!(!text.contains(leak), "{format} holds {leak:?}");
        }
        if format != "folded" {
            for kept in ["0x2ab - trap.wasm!level3", "unreachable", "`trap.wasm`"] {
                assert!(text.contains(kept), "{format} lacks {kept:?}");
            }
        }
        if format == "firefox" {
            let p = FxProfile::load(&out_path);
            let libs = p.json["libs"].as_array().unwrap();
            assert_eq!(libs.len(), 1);
            assert_eq!(libs[0]["path"], "fib-O2.wasm");
        }
    }
}
