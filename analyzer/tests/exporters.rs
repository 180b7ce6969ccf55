//! Exporter tests on hand-built profiles: Firefox processed JSON (consistency
//! and content), gzip, folded stacks, and the text report.

use std::io::Read;

use serde_json::Value;
use wanalyze::model::*;
use wanalyze::{firefox, folded, text};

/// Builds a [`Profile`] through the model's [`Interner`].
struct Builder {
    p: Profile,
    i: Interner,
}

impl Builder {
    fn new() -> Self {
        let p = Profile {
            meta: Meta {
                product: "app.wasm".into(),
                start_unix_ms: 1_700_000_000_000.5,
                interval_ns: 1_000_000,
                clock: Some(TimerClock::Wall),
                args: vec!["app.wasm".into(), "30".into()],
                recorder: "wrec 0.1.0".into(),
                end: Some(RunEnd {
                    kind: ExitKind::Exited,
                    status: 0,
                    message: String::new(),
                }),
                warnings: vec!["1 sample had an unknown address".into()],
                notes: Vec::new(),
                has_lines: true,
                samples_without_cpu: 0,
            },
            start_ns: 5_000,
            libs: vec![Lib {
                name: "app.wasm".into(),
                local_path: "/tmp/app.wasm".into(),
                sha256: "ab".repeat(32),
                inner: None,
            }],
            ..Default::default()
        };
        Builder {
            p,
            i: Interner::default(),
        }
    }

    fn func(&mut self, name: &str, file: Option<&str>, line: Option<u32>, cat: Category) -> FuncId {
        let lib = (cat == Category::Wasm).then_some(0);
        self.i.func(
            &mut self.p,
            Func {
                name: name.into(),
                file: file.map(Into::into),
                line,
                category: cat,
                lib,
            },
        )
    }

    fn frame(
        &mut self,
        func: FuncId,
        address: Option<u64>,
        line: Option<u32>,
        depth: u32,
    ) -> FrameId {
        self.i.frame(
            &mut self.p,
            Frame {
                func,
                address,
                line,
                column: line.map(|l| l + 100),
                inline_depth: depth,
                native_symbol: None,
            },
        )
    }

    /// Interns a stack given root first.
    fn stack(&mut self, frames: &[FrameId]) -> StackId {
        let mut parent = None;
        for &frame in frames {
            parent = Some(self.i.stack(&mut self.p, Stack { parent, frame }));
        }
        parent.expect("non-empty stack")
    }

    /// The profile, its stacks finished (given their parents).
    fn finish(self) -> Profile {
        let mut p = self.p;
        self.i.finish(&mut p);
        p
    }
}

fn sample(time_ns: u64, cpu_delta_ns: u64, stack: Option<StackId>) -> Sample {
    Sample {
        time_ns,
        cpu_delta_ns,
        stack,
    }
}

/// Two threads; recursion; an inlined chain `compute` > `square` > `mul` at
/// one address; a host call; a synthetic frame; a sample without a stack; a
/// thread whose samples are out of time order.
fn fixture() -> Profile {
    let mut b = Builder::new();
    let start = b.func("_start", Some("src/main.c"), Some(10), Category::Wasm);
    let fib = b.func("fib", Some("src/fib.c"), Some(3), Category::Wasm);
    let compute = b.func("compute", Some("src/math.c"), Some(20), Category::Wasm);
    let square = b.func("square", Some("src/math.h"), Some(2), Category::Wasm);
    let mul = b.func("mul", Some("src/math.h"), Some(7), Category::Wasm);
    let write = b.func(
        "wasi_snapshot_preview1::fd_write",
        None,
        None,
        Category::Host,
    );
    let trunc = b.func("[truncated]", None, None, Category::Other);

    let f_start = b.frame(start, Some(0x100), Some(12), 0);
    let f_fib_call = b.frame(fib, Some(0x150), Some(5), 0);
    let f_fib_leaf = b.frame(fib, Some(0x140), Some(4), 0);
    let f_compute = b.frame(compute, Some(0x200), Some(22), 0);
    let f_square = b.frame(square, Some(0x200), Some(3), 1);
    let f_mul = b.frame(mul, Some(0x200), Some(8), 2);
    let f_write = b.frame(write, None, None, 0);
    let f_trunc = b.frame(trunc, None, None, 0);

    let recursive = b.stack(&[f_start, f_fib_call, f_fib_call, f_fib_leaf]);
    let inlined = b.stack(&[f_start, f_compute, f_square, f_mul]);
    let host = b.stack(&[f_start, f_write]);
    let shallow = b.stack(&[f_start, f_fib_leaf]);
    let truncated = b.stack(&[f_trunc, f_fib_leaf]);

    let mut main_samples = Vec::new();
    let mut t = 1_000_000;
    let mut push = |n: usize, stack: Option<StackId>, cpu: u64| {
        for _ in 0..n {
            main_samples.push(sample(t, cpu, stack));
            t += 1_000_000;
        }
    };
    push(5, Some(recursive), 1_000_400);
    push(3, Some(inlined), 999_700);
    push(2, Some(host), 10_000);
    push(1, None, 1_000_000);

    let worker_samples = vec![
        sample(2_500_000, 900_000, Some(shallow)),
        sample(3_500_000, 900_000, Some(shallow)),
        sample(1_500_000, 900_000, Some(truncated)), // out of order
        sample(4_500_000, 900_000, Some(shallow)),
        sample(5_500_000, 900_000, Some(shallow)),
    ];

    let mut p = b.finish();
    p.threads = vec![
        Thread {
            name: "main".into(),
            tid: 1,
            start_ns: 0,
            end_ns: Some(12_000_000),
            samples: main_samples.into(),
            lost: 2,
            requests: Vec::new(),
        },
        Thread {
            name: "worker".into(),
            tid: 2,
            start_ns: 1_000_000,
            end_ns: Some(6_000_000),
            samples: worker_samples.into(),
            lost: 0,
            requests: Vec::new(),
        },
    ];
    p
}

fn firefox_json(p: &Profile) -> (Vec<u8>, Value) {
    let mut out = Vec::new();
    firefox::write(p, &mut out).expect("firefox export");
    let v: Value = serde_json::from_slice(&out).expect("valid JSON");
    (out, v)
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array: {:?}", v[key]))
}

fn len(table: &Value) -> usize {
    table["length"].as_u64().expect("length") as usize
}

fn opt_u(v: &Value) -> Option<u64> {
    if v.is_null() {
        None
    } else {
        Some(v.as_u64().unwrap_or_else(|| panic!("not an index: {v}")))
    }
}

/// Every array column of `table` has `length` entries.
fn check_columns(name: &str, table: &Value) {
    let n = len(table);
    for (k, col) in table.as_object().unwrap() {
        if let Some(a) = col.as_array() {
            assert_eq!(
                a.len(),
                n,
                "{name}.{k} has {} entries, length is {n}",
                a.len()
            );
        }
    }
}

/// Per thread, samples (in output order) as `(index, stack)`, the stack
/// as `(func name, address, inline depth, line)` root first, `None` for a
/// null stack.
type Decoded = Vec<(usize, Option<Vec<DecodedFrame>>)>;
type DecodedFrame = (String, i64, u64, Option<u64>);

/// Checks the internal consistency of a processed profile and decodes every
/// `every`th sample of each thread.
fn check_firefox(v: &Value, every: usize) -> Vec<Decoded> {
    let meta = &v["meta"];
    assert_eq!(meta["preprocessedProfileVersion"], 64);
    assert!(meta["version"].is_u64(), "meta.version");
    assert!(meta["interval"].is_f64() || meta["interval"].is_u64());
    assert!(meta["startTime"].is_number());
    assert_eq!(meta["sampleUnits"]["threadCPUDelta"], "µs");
    assert_eq!(meta["sampleUnits"]["time"], "ms");
    let cats = arr(meta, "categories");
    assert!(
        cats.iter().any(|c| c["color"] == "grey"),
        "a grey default category"
    );
    for c in cats {
        assert_eq!(c["subcategories"][0], "Other");
    }
    let libs = arr(v, "libs");
    for lib in libs {
        for k in ["name", "path", "debugName", "debugPath", "breakpadId"] {
            assert!(lib[k].is_string(), "lib.{k}");
        }
        assert_eq!(lib["breakpadId"].as_str().unwrap().len(), 33);
    }

    // The shared tables (processed format 60 and later).
    let sh = &v["shared"];
    let strings = arr(sh, "stringArray");
    let s = |i: u64| strings[i as usize].as_str().expect("string").to_string();
    for k in [
        "frameTable",
        "funcTable",
        "stackTable",
        "resourceTable",
        "nativeSymbols",
        "sources",
        "sourceLocationTable",
    ] {
        check_columns(k, &sh[k]);
    }
    let ft = &sh["frameTable"];
    let fu = &sh["funcTable"];
    let st = &sh["stackTable"];
    let rt = &sh["resourceTable"];
    let ns = &sh["nativeSymbols"];
    let so = &sh["sources"];
    for k in [
        "address",
        "inlineDepth",
        "category",
        "subcategory",
        "func",
        "nativeSymbol",
        "innerWindowID",
        "line",
        "column",
        "originalLocation",
    ] {
        assert!(ft[k].is_array(), "frameTable.{k}");
    }
    for k in [
        "name",
        "isJS",
        "relevantForJS",
        "resource",
        "source",
        "lineNumber",
        "columnNumber",
        "originalLocation",
    ] {
        assert!(fu[k].is_array(), "funcTable.{k}");
    }
    for k in ["prefix", "frame"] {
        assert!(st[k].is_array(), "stackTable.{k}");
    }
    for k in ["libIndex", "address", "name", "functionSize"] {
        assert!(ns[k].is_array(), "nativeSymbols.{k}");
    }
    for k in [
        "id",
        "filename",
        "startLine",
        "startColumn",
        "sourceMapURL",
        "content",
    ] {
        assert!(so[k].is_array(), "sources.{k}");
    }
    // Resources, sources, native symbols and funcs.
    for i in 0..len(rt) {
        assert!((rt["lib"][i].as_u64().unwrap() as usize) < libs.len());
        s(rt["name"][i].as_u64().unwrap());
        assert_eq!(rt["type"][i], 1);
    }
    for i in 0..len(so) {
        s(so["filename"][i].as_u64().unwrap());
        assert!(so["content"][i].is_null() || so["content"][i].is_string());
    }
    for i in 0..len(ns) {
        assert!((ns["libIndex"][i].as_u64().unwrap() as usize) < libs.len());
        s(ns["name"][i].as_u64().unwrap());
        ns["address"][i].as_u64().unwrap();
    }
    for i in 0..len(fu) {
        s(fu["name"][i].as_u64().unwrap());
        if let Some(f) = opt_u(&fu["source"][i]) {
            assert!((f as usize) < len(so));
        }
        let r = fu["resource"][i].as_i64().unwrap();
        assert!(r == -1 || (0..len(rt) as i64).contains(&r));
    }
    // Frames.
    for i in 0..len(ft) {
        assert!((ft["func"][i].as_u64().unwrap() as usize) < len(fu));
        let c = ft["category"][i].as_u64().unwrap() as usize;
        assert!(c < cats.len());
        let sc = ft["subcategory"][i].as_u64().unwrap() as usize;
        assert!(sc < arr(&cats[c], "subcategories").len());
        assert!(ft["address"][i].as_i64().unwrap() >= -1);
        ft["inlineDepth"][i].as_u64().unwrap();
        if let Some(n) = opt_u(&ft["nativeSymbol"][i]) {
            assert!((n as usize) < len(ns));
        }
    }
    // Stacks: prefix before the stack, frames in range; an inline frame
    // (depth > 0) sits on its caller at the same address, one depth less,
    // with the same native symbol.
    for i in 0..len(st) {
        let f = st["frame"][i].as_u64().unwrap() as usize;
        assert!(f < len(ft));
        let depth = ft["inlineDepth"][f].as_u64().unwrap();
        match opt_u(&st["prefix"][i]) {
            Some(pre) => {
                assert!((pre as usize) < i, "stack {i} has prefix {pre}");
                if depth > 0 {
                    let pf = st["frame"][pre as usize].as_u64().unwrap() as usize;
                    assert_eq!(ft["address"][pf], ft["address"][f]);
                    assert_eq!(ft["inlineDepth"][pf].as_u64().unwrap(), depth - 1);
                    assert_eq!(ft["nativeSymbol"][pf], ft["nativeSymbol"][f]);
                }
            }
            None => assert_eq!(depth, 0),
        }
    }

    let mut all = Vec::new();
    for t in arr(v, "threads") {
        for k in ["name", "processName", "processType", "pid"] {
            assert!(t[k].is_string(), "thread.{k}");
        }
        assert!(t["isMainThread"].is_boolean());
        assert!(t["registerTime"].is_number());
        for k in ["frameTable", "funcTable", "stackTable", "stringArray"] {
            assert!(t.get(k).is_none(), "thread.{k} is shared since version 60");
        }
        for k in ["samples", "markers"] {
            check_columns(k, &t[k]);
        }
        let sa = &t["samples"];
        let mk = &t["markers"];
        for k in ["stack", "timeDeltas", "threadCPUDelta"] {
            assert!(sa[k].is_array(), "samples.{k}");
        }
        assert!(sa["weight"].is_null() || sa["weight"].is_array());
        assert_eq!(sa["weightType"], "samples");

        // Markers.
        for i in 0..len(mk) {
            s(mk["name"][i].as_u64().unwrap());
            assert!((mk["category"][i].as_u64().unwrap() as usize) < cats.len());
        }
        // Samples.
        let mut decoded = Vec::new();
        for i in 0..len(sa) {
            assert!(sa["timeDeltas"][i].as_f64().unwrap() >= 0.0);
            sa["threadCPUDelta"][i].as_u64().unwrap();
            let stack = opt_u(&sa["stack"][i]);
            if let Some(stack) = stack {
                assert!((stack as usize) < len(st));
            }
            if i % every != 0 {
                continue;
            }
            let Some(mut stack) = stack else {
                decoded.push((i, None));
                continue;
            };
            let mut frames = Vec::new();
            loop {
                assert!((stack as usize) < len(st));
                let f = st["frame"][stack as usize].as_u64().unwrap() as usize;
                let func = ft["func"][f].as_u64().unwrap() as usize;
                frames.push((
                    s(fu["name"][func].as_u64().unwrap()),
                    ft["address"][f].as_i64().unwrap(),
                    ft["inlineDepth"][f].as_u64().unwrap(),
                    opt_u(&ft["line"][f]),
                ));
                match opt_u(&st["prefix"][stack as usize]) {
                    Some(pre) => stack = pre,
                    None => break,
                }
            }
            frames.reverse();
            decoded.push((i, Some(frames)));
        }
        all.push(decoded);
    }
    all
}

/// What `check_firefox` should decode for a thread: samples in time order.
fn expected(p: &Profile, t: &Thread, every: usize) -> Decoded {
    let mut samples: Vec<Sample> = t.samples.iter().collect();
    samples.sort_by_key(|s| s.time_ns);
    samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, s)| (i, decode_model(p, s)))
        .collect()
}

fn decode_model(p: &Profile, s: &Sample) -> Option<Vec<DecodedFrame>> {
    s.stack?;
    let mut v: Vec<_> = p
        .stack_frames(s.stack)
        .map(|f| {
            let f = &p.frames[f as usize];
            (
                p.funcs[f.func as usize].name.clone(),
                f.address.map_or(-1, |a| a as i64),
                u64::from(f.inline_depth),
                f.line.map(u64::from),
            )
        })
        .collect();
    v.reverse();
    Some(v)
}

#[test]
fn firefox_is_consistent_and_matches_the_model() {
    let p = fixture();
    let (_, v) = firefox_json(&p);
    let decoded = check_firefox(&v, 1);
    assert_eq!(decoded.len(), 2);
    for (t, d) in p.threads.iter().zip(&decoded) {
        assert_eq!(d.len(), t.samples.len());
        assert_eq!(d, &expected(&p, t, 1), "thread {}", t.name);
    }

    let meta = &v["meta"];
    assert_eq!(meta["product"], "app.wasm");
    assert_eq!(meta["interval"].as_f64().unwrap(), 1.0);
    assert_eq!(meta["startTime"].as_f64().unwrap(), 1_700_000_000_000.5);
    assert_eq!(meta["symbolicated"], true);
    let cats: Vec<&str> = arr(meta, "categories")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for c in ["Wasm", "Host", "Other"] {
        assert!(cats.contains(&c), "category {c}");
    }
    let extra = serde_json::to_string(&meta["extra"]).unwrap();
    for needle in [
        "app.wasm 30",
        "wrec 0.1.0",
        "exited, status 0",
        "unknown address",
    ] {
        assert!(extra.contains(needle), "meta.extra lacks {needle}: {extra}");
    }
    assert_eq!(arr(&v, "libs").len(), 1);
    assert_eq!(v["libs"][0]["codeId"], "ab".repeat(32));

    let threads = arr(&v, "threads");
    let main = &threads[0];
    assert_eq!(main["name"], "main");
    assert_eq!(main["isMainThread"], true);
    assert_eq!(main["processName"], "app.wasm");
    assert_eq!(main["tid"], 1);
    assert_eq!(threads[1]["name"], "worker");
    assert_eq!(threads[1]["isMainThread"], false);
    assert_eq!(threads[1]["registerTime"].as_f64().unwrap(), 1.0);
    assert_eq!(threads[1]["unregisterTime"].as_f64().unwrap(), 6.0);
    assert_eq!(main["markers"]["length"], 1);

    // The sample without a stack is null.
    assert!(main["samples"]["stack"][10].is_null());

    // Times: deltas add up to the sample times; the worker's are sorted.
    for (t, tj) in p.threads.iter().zip(threads) {
        let mut times: Vec<u64> = t.samples.iter().map(|s| s.time_ns).collect();
        times.sort();
        let mut acc = 0.0;
        for (i, d) in arr(&tj["samples"], "timeDeltas").iter().enumerate() {
            acc += d.as_f64().unwrap();
            assert!((acc - times[i] as f64 / 1e6).abs() < 1e-9);
        }
        // CPU deltas in µs add up to the rounded total.
        let cpu_us: u64 = arr(&tj["samples"], "threadCPUDelta")
            .iter()
            .map(|d| d.as_u64().unwrap())
            .sum();
        let cpu_ns: u64 = t.samples.iter().map(|s| s.cpu_delta_ns).sum();
        assert_eq!(cpu_us, (cpu_ns + 500) / 1000);
    }
    // Rounded per sample 1_000_400 ns would be 1000 µs each; with a running
    // total the fifth sample carries the extra 2 µs.
    let main_cpu: Vec<u64> = arr(&main["samples"], "threadCPUDelta")
        .iter()
        .map(|d| d.as_u64().unwrap())
        .collect();
    assert_eq!(&main_cpu[..5], &[1000, 1001, 1000, 1001, 1000]);

    // Func and frame source info, inline frames.
    let sh = &v["shared"];
    let ft = &sh["frameTable"];
    let fu = &sh["funcTable"];
    let strings = arr(sh, "stringArray");
    let file_of = |func: usize| {
        opt_u(&fu["source"][func])
            .map(|src| &strings[sh["sources"]["filename"][src as usize].as_u64().unwrap() as usize])
    };
    let func_named = |name: &str| {
        (0..len(fu))
            .find(|&i| strings[fu["name"][i].as_u64().unwrap() as usize] == name)
            .unwrap_or_else(|| panic!("no func {name}"))
    };
    let frame_of = |func: usize| {
        (0..len(ft))
            .find(|&i| ft["func"][i].as_u64().unwrap() as usize == func)
            .unwrap()
    };
    let fib = func_named("fib");
    assert_eq!(file_of(fib).unwrap(), "src/fib.c");
    assert_eq!(fu["lineNumber"][fib], 3);
    let write = func_named("wasi_snapshot_preview1::fd_write");
    assert!(fu["source"][write].is_null());
    assert!(fu["lineNumber"][write].is_null());
    assert_eq!(fu["resource"][write], -1);
    assert_eq!(fu["resource"][fib], 0);

    let (c, s, m) = (
        frame_of(func_named("compute")),
        frame_of(func_named("square")),
        frame_of(func_named("mul")),
    );
    for (f, depth, line) in [(c, 0, 22), (s, 1, 3), (m, 2, 8)] {
        assert_eq!(ft["address"][f], 0x200);
        assert_eq!(ft["inlineDepth"][f], depth);
        assert_eq!(ft["line"][f], line);
        assert_eq!(ft["column"][f], line + 100);
    }
    let wf = frame_of(write);
    assert_eq!(ft["address"][wf], -1);
    // Categories: Wasm, Host, Other by name.
    let cat_name = |f: usize| cats[ft["category"][f].as_u64().unwrap() as usize];
    assert_eq!(cat_name(c), "Wasm");
    assert_eq!(cat_name(wf), "Host");
    let trunc_frame = frame_of(func_named("[truncated]"));
    assert_eq!(
        cats[ft["category"][trunc_frame].as_u64().unwrap() as usize],
        "Other"
    );

    // Addresses are the model's wasm offsets (or -1), nothing else.
    let model_addrs: Vec<i64> = p
        .frames
        .iter()
        .map(|f| f.address.map_or(-1, |a| a as i64))
        .collect();
    for a in arr(ft, "address") {
        assert!(model_addrs.contains(&a.as_i64().unwrap()));
    }
}

#[test]
fn firefox_gzip_and_plain_files() {
    let p = fixture();
    let (plain, _) = firefox_json(&p);
    let dir = tempfile::tempdir().unwrap();

    let gz = dir.path().join("profile.json.gz");
    firefox::write_file(&p, &gz).unwrap();
    let bytes = std::fs::read(&gz).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain);

    let json = dir.path().join("profile.json");
    firefox::write_file(&p, &json).unwrap();
    assert_eq!(std::fs::read(&json).unwrap(), plain);
}

#[test]
fn firefox_rejects_an_invalid_model() {
    let mut p = fixture();
    let s0 = p.stacks.get(0);
    p.stacks.set(0, Stack { frame: 999, ..s0 });
    assert!(firefox::write(&p, &mut Vec::new()).is_err());
    let mut p = fixture();
    let (s0, s3) = (p.stacks.get(0), p.stacks.get(3));
    p.stacks.set(
        0,
        Stack {
            parent: Some(3),
            ..s0
        },
    );
    p.stacks.set(
        3,
        Stack {
            parent: Some(0),
            ..s3
        },
    );
    assert!(firefox::write(&p, &mut Vec::new()).is_err());
    assert!(folded::write(&p, &mut Vec::new()).is_err());
    assert!(text::try_summarize(&p).is_err());
}

#[test]
fn firefox_empty_profile() {
    let p = Builder::new().finish();
    let (_, v) = firefox_json(&p);
    check_firefox(&v, 1);
    let mut p = p;
    p.threads.push(Thread {
        name: String::new(),
        tid: 7,
        ..Default::default()
    });
    p.meta.end = None;
    let (_, v) = firefox_json(&p);
    check_firefox(&v, 1);
    assert_eq!(v["threads"][0]["name"], "Thread 7");
    assert!(v["threads"][0]["processShutdownTime"].is_null());
}

fn folded_lines(p: &Profile, opts: &folded::FoldedOptions) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    folded::write_with(p, opts, &mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, n) = l.rsplit_once(' ').expect("stack count");
            (stack.to_string(), n.parse().expect("count"))
        })
        .collect()
}

#[test]
fn folded_counts_and_order() {
    let p = fixture();
    let lines = folded_lines(&p, &Default::default());
    let total: u64 = lines.iter().map(|l| l.1).sum();
    assert_eq!(total as usize, p.sample_count());
    let expected: Vec<(String, u64)> = [
        ("main;[no stack]", 1),
        ("main;_start;compute;square;mul", 3),
        ("main;_start;fib;fib;fib", 5),
        ("main;_start;wasi_snapshot_preview1::fd_write", 2),
        ("worker;[truncated];fib", 1),
        ("worker;_start;fib", 4),
    ]
    .iter()
    .map(|(s, n)| (s.to_string(), *n))
    .collect();
    assert_eq!(lines, expected);

    // Without thread roots, equal stacks of different threads merge.
    let opts = folded::FoldedOptions {
        thread_roots: folded::ThreadRoots::Never,
        ..Default::default()
    };
    let lines = folded_lines(&p, &opts);
    assert_eq!(lines.iter().map(|l| l.1).sum::<u64>(), 16);
    assert!(lines.contains(&("_start;fib".to_string(), 4)));
    assert!(lines.contains(&("[no stack]".to_string(), 1)));
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);

    // CPU weights in µs.
    let opts = folded::FoldedOptions {
        weight: folded::Weight::CpuMicros,
        ..Default::default()
    };
    let lines = folded_lines(&p, &opts);
    assert!(lines.contains(&("main;_start;fib;fib;fib".to_string(), 5002)));
    assert!(lines.contains(&("worker;_start;fib".to_string(), 3600)));
}

/// Folded lines follow each stack's parent wherever it is in the table: a
/// model need not list parents first (the interner does, a rewrite may not).
#[test]
fn folded_with_a_parent_after_its_child() {
    let mut b = Builder::new();
    let fa = b.func("a", None, None, Category::Wasm);
    let fb = b.func("b", None, None, Category::Wasm);
    let (fa, fb) = (b.frame(fa, Some(1), None, 0), b.frame(fb, Some(2), None, 0));
    assert_eq!(b.stack(&[fa, fb]), 1);
    let mut p = b.finish();
    // Swapped: node 0 is now `a;b`, under the root `a` at 1.
    p.stacks.set(
        0,
        Stack {
            parent: Some(1),
            frame: fb,
        },
    );
    p.stacks.set(
        1,
        Stack {
            parent: None,
            frame: fa,
        },
    );
    p.threads.push(Thread {
        name: "only".into(),
        tid: 1,
        samples: vec![
            sample(1, 1, Some(0)),
            sample(2, 1, Some(1)),
            sample(3, 1, Some(0)),
        ]
        .into(),
        ..Default::default()
    });
    let mut out = Vec::new();
    folded::write(&p, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "a 1\na;b 2\n");
}

#[test]
fn folded_single_thread_and_sanitizing() {
    let mut b = Builder::new();
    let bad = b.func("a;b\nc\t", None, None, Category::Wasm);
    let empty = b.func("", None, None, Category::Other);
    let fb = b.frame(bad, Some(1), None, 0);
    let fe = b.frame(empty, None, None, 0);
    let st = b.stack(&[fe, fb]);
    let mut p = b.finish();
    p.threads.push(Thread {
        name: "only".into(),
        tid: 1,
        samples: vec![sample(1, 1, Some(st)), sample(2, 1, Some(st))].into(),
        ..Default::default()
    });
    let mut out = Vec::new();
    folded::write(&p, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "[unknown];a:b c 2\n");
    assert_eq!(folded::sanitize("ok::name<T>"), "ok::name<T>");
}

#[test]
fn text_summary_and_report() {
    let p = fixture();
    let s = text::summarize(&p);
    assert_eq!(s.samples, 16);
    assert_eq!(s.samples_without_stack, 1);
    assert_eq!(s.threads, 2);
    assert_eq!(s.lost, 2);
    assert_eq!(s.duration_ns, 12_000_000);
    let cpu: u64 = p
        .threads
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| s.cpu_delta_ns)
        .sum();
    assert_eq!(s.cpu_ns, cpu);

    let fib = s.func("fib").unwrap();
    assert_eq!(
        (fib.self_samples, fib.total_samples),
        (10, 10),
        "recursion counts once"
    );
    let start = s.func("_start").unwrap();
    assert_eq!((start.self_samples, start.total_samples), (0, 14));
    assert_eq!(s.func("mul").unwrap().self_samples, 3);
    assert_eq!(s.func("square").unwrap().total_samples, 3);
    assert_eq!(
        s.func("wasi_snapshot_preview1::fd_write")
            .unwrap()
            .self_samples,
        2
    );
    assert_eq!(s.top_self(1)[0].name, "fib");
    assert_eq!(s.top_total(1)[0].name, "_start");
    assert_eq!(s.percent(10), 62.5);
    // Self samples add up to the samples with a stack.
    assert_eq!(s.funcs.iter().map(|f| f.self_samples).sum::<u64>(), 15);

    // Hot lines: fib's leaf at line 4 (5 + 4 + 1 samples).
    assert_eq!(
        (
            s.lines[0].file.as_str(),
            s.lines[0].line,
            s.lines[0].func.as_str()
        ),
        ("src/fib.c", 4, "fib")
    );
    assert_eq!(s.lines[0].samples, 10);
    assert_eq!(s.lines[1].file, "src/math.h");
    assert_eq!(s.lines[1].line, 8);

    let mut out = Vec::new();
    text::write(&p, &text::TextOptions::default(), &mut out).unwrap();
    let report = String::from_utf8(out).unwrap();
    println!("{report}");
    assert!(report.contains("wrec profile of app.wasm"));
    assert!(report.contains("16 on 2 threads (1 without a stack)"));
    assert!(report.contains("exited, status 0"));
    assert!(report.contains("1 sample had an unknown address"));
    assert!(report.contains("1 ms, wall clock"));

    // The first row of the self table is fib at 62.50%; of the total table,
    // _start at 87.50%.
    let after = |header: &str| {
        let mut it = report
            .lines()
            .skip_while(|l| !l.starts_with(header))
            .skip(1);
        let head = it.next().unwrap().to_string();
        let first = it.next().unwrap().to_string();
        (head, first)
    };
    let (head, first) = after("Top 3 functions by self time");
    assert!(first.trim_end().ends_with("fib"), "{first}");
    assert!(first.contains("62.50%"), "{first}");
    // Columns aligned: the header's "Function" starts where names start.
    assert_eq!(head.find("Function"), first.find("fib"));
    let (_, first) = after("Top 7 functions by total time");
    assert!(
        first.trim_end().ends_with("_start") && first.contains("87.50%"),
        "{first}"
    );
    let (head, first) = after("Hottest");
    assert!(
        first.contains("src/fib.c:4") && first.trim_end().ends_with("fib"),
        "{first}"
    );
    assert_eq!(head.find("Function"), first.rfind("fib"));

    // Without lines, no line table.
    let mut p2 = p.clone();
    p2.meta.has_lines = false;
    let mut out = Vec::new();
    text::write(&p2, &text::TextOptions::default(), &mut out).unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("Hottest"));
    assert_eq!(text::fmt_ns(1_500_000_000), "1.5 s");
    assert_eq!(text::fmt_ns(100_000), "100 us");
}

/// A deterministic pseudo-random generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// ~200k samples with 30-deep stacks over thousands of frames, some inlined:
/// every exporter must stay correct (timing is not asserted, but the test
/// would time out if an exporter were quadratic).
#[test]
fn large_profile_exports() {
    let mut b = Builder::new();
    let mut rng = Lcg(42);
    let funcs: Vec<FuncId> = (0..3000)
        .map(|i| {
            let cat = if i % 50 == 0 {
                Category::Host
            } else {
                Category::Wasm
            };
            b.func(
                &format!("func_{i}"),
                Some(&format!("src/f{}.c", i % 40)),
                Some(i),
                cat,
            )
        })
        .collect();
    // 20k frames: (func, address) pairs, every tenth with an inlined callee.
    let mut chains: Vec<Vec<FrameId>> = Vec::new();
    for i in 0..20_000u64 {
        let func = funcs[rng.next(funcs.len() as u64) as usize];
        let addr = 0x1000 + i * 4;
        let outer = b.frame(func, Some(addr), Some(i as u32 % 500 + 1), 0);
        let mut chain = vec![outer];
        if i % 10 == 0 {
            let inl = funcs[rng.next(funcs.len() as u64) as usize];
            chain.push(b.frame(inl, Some(addr), Some(7), 1));
        }
        chains.push(chain);
    }
    // Stacks: paths down a tree with limited branching, so stacks share prefixes.
    let mut samples = Vec::with_capacity(200_000);
    let mut t = 0u64;
    for n in 0..200_000u64 {
        t += 1_000_000;
        if n % 997 == 0 {
            samples.push(sample(t, 1_000_000, None));
            continue;
        }
        // One of 20k leaves; levels 0..15 form a binary tree over the
        // leaves' ids, deeper levels are the leaf's own.
        let leaf = rng.next(20_000);
        let mut frames = Vec::with_capacity(34);
        for depth in 0..30u64 {
            let key = leaf >> 15u64.saturating_sub(depth);
            let h = (key ^ (depth << 20)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            frames.extend(&chains[(h % chains.len() as u64) as usize]);
        }
        let st = b.stack(&frames);
        samples.push(sample(t, 999_999, Some(st)));
    }
    let mut p = b.finish();
    let half = samples.split_off(100_000);
    p.threads = vec![
        Thread {
            name: "main".into(),
            tid: 1,
            samples: samples.into(),
            end_ns: Some(t + 1),
            ..Default::default()
        },
        Thread {
            name: "other".into(),
            tid: 2,
            samples: half.into(),
            ..Default::default()
        },
    ];
    let with_stack = p
        .threads
        .iter()
        .flat_map(|t| &t.samples)
        .filter(|s| s.stack.is_some())
        .count() as u64;
    assert!(p.stacks.len() > 100_000, "{} stacks", p.stacks.len());

    let clock = std::time::Instant::now();
    let (json, v) = {
        let mut out = Vec::new();
        firefox::write(&p, &mut out).expect("firefox export");
        let elapsed = clock.elapsed();
        eprintln!("firefox: {} bytes in {elapsed:?}", out.len());
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        (out, v)
    };
    assert!(!json.is_empty());
    // Check every table; compare one sample in 97 with the model.
    let decoded = check_firefox(&v, 97);
    for (t, d) in p.threads.iter().zip(&decoded) {
        assert_eq!(d, &expected(&p, t, 97));
    }

    let clock = std::time::Instant::now();
    let mut out = Vec::new();
    folded::write(&p, &mut out).unwrap();
    eprintln!("folded: {} bytes in {:?}", out.len(), clock.elapsed());
    let total: u64 = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert_eq!(total as usize, p.sample_count());

    let clock = std::time::Instant::now();
    let s = text::summarize(&p);
    let mut out = Vec::new();
    text::write(&p, &Default::default(), &mut out).unwrap();
    eprintln!("text: {:?} (summary twice)", clock.elapsed());
    assert_eq!(s.samples as usize, p.sample_count());
    assert_eq!(
        s.funcs.iter().map(|f| f.self_samples).sum::<u64>(),
        with_stack
    );
    assert!(s.funcs[0].total_samples >= s.funcs[0].self_samples);
    assert!(!out.is_empty());
}

/// pprof: one location per code position with its inline chain innermost
/// first, functions with files, one mapping per module, the three sample
/// types summed per (thread, stack), gzipped.
#[test]
fn pprof_has_locations_with_inline_lines_and_summed_samples() {
    use prost::Message;
    use wanalyze::pprof::{self, PprofProfile};

    let p = fixture();
    let mut gz = Vec::new();
    pprof::write(&p, &mut gz).unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    let pp = PprofProfile::decode(&raw[..]).unwrap();
    assert_eq!(pp, pprof::build(&p));
    let s = |i: i64| pp.string_table[i as usize].as_str();
    assert_eq!(s(0), "");
    let types: Vec<(&str, &str)> = pp
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        [
            ("samples", "count"),
            ("cpu", "nanoseconds"),
            ("wall", "nanoseconds")
        ]
    );
    assert_eq!(s(pp.default_sample_type), "cpu");
    assert_eq!(pp.period, 1_000_000);
    assert_eq!(pp.mapping.len(), p.libs.len());

    let func = |id: u64| &pp.function[id as usize - 1];
    let names = |l: &wanalyze::pprof::Location| -> Vec<&str> {
        l.line.iter().map(|x| s(func(x.function_id).name)).collect()
    };
    // The inline chain at 0x200: mul in square in compute, one location.
    let at = |a: u64| -> Vec<_> { pp.location.iter().filter(|l| l.address == a).collect() };
    let chain = at(0x200);
    assert_eq!(chain.len(), 1);
    assert_eq!(names(chain[0]), ["mul", "square", "compute"]);
    assert_eq!(
        chain[0].line.iter().map(|l| l.line).collect::<Vec<_>>(),
        [8, 3, 22]
    );
    assert_eq!(s(func(chain[0].line[0].function_id).filename), "src/math.h");
    assert_eq!(func(chain[0].line[2].function_id).start_line, 20);
    // Each address once, whatever the number of stacks through it.
    let mut addrs: Vec<u64> = pp.location.iter().map(|l| l.address).collect();
    addrs.sort_unstable();
    let n = addrs.len();
    addrs.dedup();
    // Host and synthetic frames have no address (0), one location each.
    assert_eq!(
        n - addrs.len() + 1,
        pp.location.iter().filter(|l| l.address == 0).count()
    );
    for l in &pp.location {
        assert!(l.id as usize <= pp.location.len());
        assert!(l.mapping_id as usize <= pp.mapping.len());
        assert_eq!(l.mapping_id == 0, l.address == 0);
    }

    // Samples: counts, CPU and wall time add up per thread.
    for t in &p.threads {
        let mine: Vec<_> = pp
            .sample
            .iter()
            .filter(|x| s(x.label[0].str) == t.name)
            .collect();
        let count: i64 = mine.iter().map(|x| x.value[0]).sum();
        let cpu: i64 = mine.iter().map(|x| x.value[1]).sum();
        let wall: i64 = mine.iter().map(|x| x.value[2]).sum();
        assert_eq!(count as usize, t.samples.len(), "{}", t.name);
        assert_eq!(
            cpu as u64,
            t.samples.iter().map(|x| x.cpu_delta_ns).sum::<u64>()
        );
        let last = t.samples.iter().map(|x| x.time_ns).max().unwrap();
        assert_eq!(wall as u64, last - t.start_ns);
    }
    // The recursive stack, leaf first: fib (0x140), fib (0x150) twice, _start.
    let rec = pp
        .sample
        .iter()
        .find(|x| x.value[0] == 5)
        .expect("the 5 recursive samples, summed");
    let addrs: Vec<u64> = rec
        .location_id
        .iter()
        .map(|&id| pp.location[id as usize - 1].address)
        .collect();
    assert_eq!(addrs, [0x140, 0x150, 0x150, 0x100]);
}
