//! Seeing the code: the Firefox profile's sources and native symbols as the
//! profiler's front end reads them, `wanalyze view` answering the
//! profiler's symbol-server requests over loopback, and the pprof output
//! read by the real `go tool pprof`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};
use wrec_testkit::http::{percent_decode, request};
use wrec_testkit::*;

fn arr<'a>(v: &'a Value, k: &str) -> &'a Vec<Value> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("{k} is not an array"))
}

fn len(t: &Value) -> usize {
    t["length"].as_u64().expect("length") as usize
}

/// Records a fixture and writes its `--dwarf` Firefox profile (run from
/// the repository root, where the fixtures' DWARF paths lead).
fn profile_of(fixture_name: &str, args: &[&str], extra: &[&str]) -> (tempfile::TempDir, Value) {
    let (dir, trace) = record_ok(fixture_name, &[], args);
    let out = dir.path().join("p.json");
    let mut a: Vec<&str> = vec![trace.to_str().unwrap(), "--dwarf", "--quiet"];
    a.extend_from_slice(extra);
    a.extend(["--out", out.to_str().unwrap()]);
    let o = Command::new(bin("wanalyze"))
        .current_dir(root())
        .args(&a)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    (dir, v)
}

/// Checks what the profiler's front end needs of a profile (processed
/// format 64): the shared tables' columns and indices, sources with their
/// text, native symbols on every wasm frame, one per physical function,
/// shared by the frames of an inline chain. Returns, per function name,
/// the native symbols its frames name.
fn check_ui_tables(v: &Value) -> HashMap<String, HashSet<u64>> {
    assert_eq!(v["meta"]["preprocessedProfileVersion"], 64);
    let sh = &v["shared"];
    let strings = arr(sh, "stringArray");
    let s = |i: &Value| strings[i.as_u64().unwrap() as usize].as_str().unwrap();
    let (ft, fu, ns, so, st) = (
        &sh["frameTable"],
        &sh["funcTable"],
        &sh["nativeSymbols"],
        &sh["sources"],
        &sh["stackTable"],
    );
    for (name, t) in sh.as_object().unwrap() {
        if name == "stringArray" {
            continue;
        }
        for (k, col) in t.as_object().unwrap() {
            if let Some(a) = col.as_array() {
                assert_eq!(a.len(), len(t), "shared.{name}.{k}");
            }
        }
    }
    // Sources: every file with text on disk carries that text.
    let mut with_text = 0;
    for i in 0..len(so) {
        let file = s(&so["filename"][i]);
        let on_disk = std::fs::read_to_string(root().join(file)).ok();
        assert_eq!(so["content"][i].as_str(), on_disk.as_deref(), "{file}");
        with_text += usize::from(on_disk.is_some());
        assert_eq!(so["startLine"][i], 1);
        assert!(so["id"][i].is_null() && so["sourceMapURL"][i].is_null());
    }
    assert!(with_text >= 1, "no source text embedded");
    for i in 0..len(fu) {
        if let Some(src) = fu["source"][i].as_u64() {
            assert!((src as usize) < len(so));
        }
        assert!(fu["originalLocation"][i].is_null());
    }
    // Native symbols: one per (lib, address), each a function body.
    let libs = arr(v, "libs");
    let mut seen = HashSet::new();
    for i in 0..len(ns) {
        assert!((ns["libIndex"][i].as_u64().unwrap() as usize) < libs.len());
        let key = (ns["libIndex"][i].as_u64(), ns["address"][i].as_u64());
        assert!(seen.insert(key), "two native symbols for {key:?}");
        assert!(ns["functionSize"][i].as_u64().unwrap() > 0);
    }
    let wasm = arr(&v["meta"], "categories")
        .iter()
        .position(|c| c["name"] == "Wasm")
        .unwrap() as u64;
    let mut natives: HashMap<String, HashSet<u64>> = HashMap::new();
    for f in 0..len(ft) {
        let func = s(&fu["name"][ft["func"][f].as_u64().unwrap() as usize]).to_owned();
        let addr = ft["address"][f].as_i64().unwrap();
        match ft["nativeSymbol"][f].as_u64() {
            Some(n) => {
                let n = n as usize;
                assert!(n < len(ns));
                let start = ns["address"][n].as_i64().unwrap();
                let size = ns["functionSize"][n].as_i64().unwrap();
                assert!(
                    (start..start + size).contains(&addr),
                    "{func}: frame address {addr:#x} outside its native symbol"
                );
                if ft["inlineDepth"][f] == 0 {
                    assert_eq!(
                        s(&ns["name"][n]),
                        func,
                        "a depth-0 frame names its function"
                    );
                }
                natives.entry(func).or_default().insert(n as u64);
            }
            None => assert!(
                ft["category"][f] != wasm || addr == -1,
                "wasm frame of {func} at {addr:#x} without a native symbol"
            ),
        }
    }
    // Inline chains: an inlined frame shares its caller's native symbol.
    for i in 0..len(st) {
        let f = st["frame"][i].as_u64().unwrap() as usize;
        if let Some(pre) = st["prefix"][i].as_u64() {
            assert!((pre as usize) < i);
            if ft["inlineDepth"][f].as_u64().unwrap() > 0 {
                let pf = st["frame"][pre as usize].as_u64().unwrap() as usize;
                assert_eq!(ft["nativeSymbol"][f], ft["nativeSymbol"][pf]);
                assert_eq!(
                    ft["inlineDepth"][pf].as_u64().unwrap() + 1,
                    ft["inlineDepth"][f].as_u64().unwrap()
                );
            }
        }
    }
    natives
}

#[test]
fn firefox_profiles_carry_sources_and_native_symbols() {
    let (_d, fib) = profile_of("fib-O2.wasm", &["32"], &[]);
    let natives = check_ui_tables(&fib);
    assert_eq!(natives["fib"].len(), 1, "{natives:?}");
    let sh = &fib["shared"];
    let files: Vec<&str> = arr(&sh["sources"], "filename")
        .iter()
        .map(|i| {
            arr(sh, "stringArray")[i.as_u64().unwrap() as usize]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(files.contains(&"fixtures/src/fib.c"), "{files:?}");

    let (_d, inline) = profile_of("inline.wasm", &["50000"], &[]);
    let natives = check_ui_tables(&inline);
    // mix has no body of its own: its frames name hash_block's.
    assert_eq!(natives["mix"], natives["hash_block"], "{natives:?}");
    assert_eq!(natives["hash_block"].len(), 1);

    // --no-sources: the same tables, no text.
    let (_d, bare) = profile_of("fib-O2.wasm", &["32"], &["--no-sources"]);
    let so = &bare["shared"]["sources"];
    assert!(len(so) > 0);
    assert!(arr(so, "content").iter().all(Value::is_null));
}

/// `wanalyze view ARGS`, killed when dropped; the URL it printed.
struct View {
    child: Child,
    url: String,
}

impl View {
    fn start(args: &[&str]) -> View {
        let mut child = Command::new(bin("wanalyze"))
            .current_dir(root())
            .arg("view")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        View {
            child,
            url: line.trim().to_owned(),
        }
    }

    /// The symbol server's base URL, from the profiler URL.
    fn base(&self) -> String {
        let (_, enc) = self.url.split_once("?symbolServer=").expect("symbolServer");
        percent_decode(enc)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asks the view server for the instructions of `func`, found in its
/// profile's native symbols, as the profiler does; checks the answer.
fn asm_of(base: &str, profile: &Value, func: &str) -> Vec<(u64, String)> {
    let sh = &profile["shared"];
    let strings = arr(sh, "stringArray");
    let ns = &sh["nativeSymbols"];
    let i = (0..len(ns))
        .find(|&i| strings[ns["name"][i].as_u64().unwrap() as usize] == func)
        .unwrap_or_else(|| panic!("no native symbol {func}"));
    let lib = &arr(profile, "libs")[ns["libIndex"][i].as_u64().unwrap() as usize];
    let (start, size) = (
        ns["address"][i].as_u64().unwrap(),
        ns["functionSize"][i].as_u64().unwrap(),
    );
    let req = json!({
        "debugName": lib["debugName"], "debugId": lib["breakpadId"], "name": lib["name"],
        "codeId": lib["codeId"], "startAddress": format!("{start:#x}"), "size": format!("{size:#x}"),
        "continueUntilFunctionEnd": false,
    });
    let a = request("POST", &format!("{base}/asm/v1"), Some(&req.to_string()));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    let r = a.json();
    assert_eq!(r["startAddress"], format!("{start:#x}"));
    assert_eq!(r["size"], format!("{size:#x}"));
    let ins: Vec<(u64, String)> = arr(&r, "instructions")
        .iter()
        .map(|i| (i[0].as_u64().unwrap(), i[1].as_str().unwrap().to_owned()))
        .collect();
    assert!(ins.len() > 3, "{ins:?}");
    assert!(ins.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    assert!(
        ins.iter().all(|(o, _)| *o < size),
        "offsets inside the body"
    );
    assert_eq!(ins.last().unwrap().1, "end");
    ins
}

#[test]
fn view_serves_the_wasm_code_of_a_module_inside_a_component() {
    // The profile's library is the component's core module; its
    // instructions come from that module's bytes inside the component file.
    let (_d, trace) = record_ok("fib-O2.component.wasm", &[], &["32"]);
    let view = View::start(&[trace.to_str().unwrap()]);
    let base = view.base();
    let profile = request("GET", &format!("{base}/profile.json"), None).json();
    let ins = asm_of(&base, &profile, "fib");
    assert!(
        ins.iter().any(|(_, t)| t.ends_with("<fib>")),
        "fib calls itself: {ins:?}"
    );
}

#[test]
fn view_serves_the_profile_sources_and_wasm_code_on_loopback() {
    // From a trace: fib.
    let (_d, trace) = record_ok("fib-O2.wasm", &[], &["32"]);
    let view = View::start(&[trace.to_str().unwrap()]);
    assert!(
        view.url
            .starts_with("https://profiler.firefox.com/from-url/http%3A%2F%2F127.0.0.1%3A"),
        "{}",
        view.url
    );
    let base = view.base();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let profile_url = percent_decode(
        view.url
            .strip_prefix("https://profiler.firefox.com/from-url/")
            .unwrap()
            .split_once("/?")
            .unwrap()
            .0,
    );
    assert_eq!(profile_url, format!("{base}/profile.json"));
    let p = request("GET", &profile_url, None);
    assert_eq!(p.status, 200);
    assert_eq!(p.header("access-control-allow-origin"), Some("*"));
    let profile = p.json();
    check_ui_tables(&profile);

    let src = request(
        "POST",
        &format!("{base}/source/v1"),
        Some(
            r#"{"debugName":"fib-O2.wasm","debugId":"0","moduleOffset":"0x0","file":"fixtures/src/fib.c"}"#,
        ),
    );
    assert_eq!(src.status, 200);
    assert_eq!(src.json()["source"], fixture_source("fib.c"));
    assert_eq!(src.json()["file"], "fixtures/src/fib.c");
    // A file the profile does not name is not served.
    let other = request(
        "POST",
        &format!("{base}/source/v1"),
        Some(
            r#"{"debugName":"fib-O2.wasm","debugId":"0","moduleOffset":"0x0","file":"Cargo.toml"}"#,
        ),
    );
    assert_eq!(other.status, 404);

    let ins = asm_of(&base, &profile, "fib");
    assert!(
        ins.iter()
            .any(|(_, t)| t == "call 8 <fib>" || t.ends_with("<fib>")),
        "fib calls itself: {ins:?}"
    );

    // CORS preflight, and no token, no answer.
    let pre = request("OPTIONS", &format!("{base}/asm/v1"), Some(""));
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let port_root = &base[..base.rfind('/').unwrap()];
    for bad in [
        "/profile.json",
        "/0123456789abcdef0123456789abcdef/profile.json",
        "/",
    ] {
        let a = request("GET", &format!("{port_root}{bad}"), None);
        assert_eq!(a.status, 404, "{bad}");
    }
    let a = request(
        "POST",
        &format!("{port_root}/wrong/source/v1"),
        Some(r#"{"file":"fixtures/src/fib.c"}"#),
    );
    assert_eq!(a.status, 404);
    drop(view);

    // From a profile JSON: inline, mix's lines served from its embedded
    // text. A profile names its module by file name only, so the module
    // is given (or found beside the profile, below).
    let (d, profile) = profile_of("inline.wasm", &["50000"], &[]);
    let json_path = d.path().join("inline.json");
    std::fs::write(&json_path, profile.to_string()).unwrap();
    let inline = fixture("inline.wasm");
    let view = View::start(&[
        json_path.to_str().unwrap(),
        "--module",
        inline.to_str().unwrap(),
    ]);
    let base = view.base();
    let src = request(
        "POST",
        &format!("{base}/source/v1"),
        Some(
            r#"{"debugName":"inline.wasm","debugId":"0","moduleOffset":"0x0","file":"fixtures/src/inline.c"}"#,
        ),
    );
    assert_eq!(src.status, 200);
    assert_eq!(src.json()["source"], fixture_source("inline.c"));
    let ins = asm_of(&base, &profile, "hash_block");
    // mix's arithmetic is inside hash_block's body.
    assert!(ins.iter().any(|(_, t)| t.starts_with("i32.")), "{ins:?}");
    drop(view);

    // The module beside the profile is found without --module.
    std::fs::copy(&inline, d.path().join("inline.wasm")).unwrap();
    let view = View::start(&[json_path.to_str().unwrap()]);
    assert_eq!(asm_of(&view.base(), &profile, "hash_block"), ins);
}

#[test]
fn pprof_output_reads_in_go_tool_pprof() {
    if !have_go() {
        return;
    }
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["32"]);
    let pb = dir.path().join("fib.pb.gz");
    let o = Command::new(bin("wanalyze"))
        .current_dir(root())
        .args([
            trace.to_str().unwrap(),
            "--dwarf",
            "--quiet",
            "--format",
            "pprof",
        ])
        .args(["--out", pb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&pb).unwrap()[..2], &[0x1f, 0x8b], "gzipped");

    let top = go_pprof(&["-top"], &pb).unwrap();
    assert!(top.contains("Type: cpu"), "{top}");
    let first = top
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .nth(1)
        .expect("a first row");
    assert!(first.trim_end().ends_with(" fib"), "{top}");
    let top_samples = go_pprof(&["-top", "-sample_index=samples"], &pb).unwrap();
    assert!(top_samples.contains("Type: samples"), "{top_samples}");

    let list = go_pprof(&["-list", "^fib$"], &pb).unwrap();
    assert!(
        list.contains("ROUTINE ======================== fib in fixtures/src/fib.c"),
        "{list}"
    );
    // The lines of fib's body, with sample counts on some of them.
    let src = fixture_source("fib.c");
    let ret = line_of(&src, "return (fib(n - 1) + fib(n - 2)) % MOD;");
    let row = list
        .lines()
        .find(|l| l.contains(&format!("{ret}:")))
        .unwrap_or_else(|| panic!("line {ret} in {list}"));
    assert!(
        !row.trim_start().starts_with('.'),
        "line {ret} has samples: {row}"
    );

    let (dir, trace) = record_ok("inline.wasm", &[], &["50000"]);
    let pb = dir.path().join("inline.pb.gz");
    let o = Command::new(bin("wanalyze"))
        .current_dir(root())
        .args([
            trace.to_str().unwrap(),
            "--dwarf",
            "--quiet",
            "--format",
            "pprof",
        ])
        .args(["--out", pb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let traces = go_pprof(&["-traces"], &pb).unwrap();
    let lines: Vec<&str> = traces.lines().map(str::trim).collect();
    assert!(
        lines
            .windows(2)
            .any(|w| w[0].ends_with("mix (inline)") && w[1] == "hash_block"),
        "{traces}"
    );
    let raw = go_pprof(&["-raw"], &pb).unwrap();
    // One location: mix's line, then hash_block's call line, same address.
    assert!(
        raw.lines().collect::<Vec<_>>().windows(2).any(|w| w[0]
            .contains(" mix fixtures/src/inline.c:")
            && w[1]
                .trim_start()
                .starts_with("hash_block fixtures/src/inline.c:")),
        "{raw}"
    );
}

#[test]
fn sources_are_found_through_source_root_and_source_map_with_one_warning_otherwise() {
    let (dir, trace) = record_ok("fib-O2.wasm", &[], &["20"]);
    let out = dir.path().join("p.json");
    let run = |extra: &[&str]| {
        // From the trace's directory: the DWARF paths (fixtures/src/...)
        // do not lead anywhere from there.
        let o = Command::new(bin("wanalyze"))
            .current_dir(dir.path())
            .args([
                trace.to_str().unwrap(),
                "--dwarf",
                "--out",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let sh = &v["shared"];
        let i = arr(&sh["sources"], "filename")
            .iter()
            .position(|f| {
                arr(sh, "stringArray")[f.as_u64().unwrap() as usize] == "fixtures/src/fib.c"
            })
            .expect("fib.c in the sources");
        (
            stderr(&o),
            sh["sources"]["content"][i].as_str().map(str::to_owned),
        )
    };
    let (err, text) = run(&[]);
    assert!(text.is_none());
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("source file")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("fixtures/src/fib.c") && warnings[0].contains("--source-root"));

    let root = root();
    let (err, text) = run(&["--source-root", root.to_str().unwrap()]);
    assert_eq!(text.as_deref(), Some(fixture_source("fib.c").as_str()));
    assert!(!err.contains("fixtures/src/fib.c"), "{err}");

    let map = format!("fixtures={}", root.join("fixtures").display());
    let (_, text) = run(&["--source-map", &map]);
    assert_eq!(text.as_deref(), Some(fixture_source("fib.c").as_str()));
}
