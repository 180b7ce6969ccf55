//! A Firefox processed profile read back, as the profiler would show it.

use std::path::Path;

/// One frame of a Firefox profile sample, as the profiler would show it.
#[derive(Debug, Clone)]
pub struct FxFrame {
    pub func: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub inline_depth: u64,
    pub address: i64,
    pub category: u64,
}

/// A Firefox processed profile, read back.
pub struct FxProfile {
    pub json: serde_json::Value,
}

impl FxProfile {
    pub fn load(path: &Path) -> FxProfile {
        let bytes = std::fs::read(path).unwrap();
        FxProfile {
            json: serde_json::from_slice(&bytes).expect("valid JSON"),
        }
    }

    pub fn threads(&self) -> &Vec<serde_json::Value> {
        self.json["threads"].as_array().expect("threads")
    }

    /// The tables samples point into: `profile.shared` (processed format
    /// 56 and later share the string array, 60 and later every table) or,
    /// in older profiles, the thread's own.
    pub fn tables(&self, t: usize) -> &serde_json::Value {
        match self.json.get("shared") {
            Some(shared) if shared.get("stackTable").is_some() => shared,
            _ => &self.threads()[t],
        }
    }

    /// The name of each function of `tables(t).funcTable`'s source files:
    /// `funcTable.source` through `sources.filename` (version 58 and
    /// later), or `funcTable.fileName`.
    fn func_files(&self, t: usize) -> Vec<Option<String>> {
        let tables = self.tables(t);
        let strings = &tables["stringArray"];
        let funcs = &tables["funcTable"];
        let string = |i: &serde_json::Value| {
            i.as_u64()
                .map(|i| strings[i as usize].as_str().unwrap().to_owned())
        };
        match funcs.get("source") {
            Some(src) => src
                .as_array()
                .expect("funcTable.source")
                .iter()
                .map(|s| {
                    s.as_u64().and_then(|s| {
                        string(&self.json["shared"]["sources"]["filename"][s as usize])
                    })
                })
                .collect(),
            None => funcs["fileName"]
                .as_array()
                .expect("funcTable.fileName")
                .iter()
                .map(string)
                .collect(),
        }
    }

    /// Every sample of thread `t` as its frames, leaf first.
    pub fn samples(&self, t: usize) -> Vec<Vec<FxFrame>> {
        let th = self.tables(t);
        let samples = &self.threads()[t]["samples"]["stack"];
        let files = self.func_files(t);
        let strings: Vec<&str> = th["stringArray"]
            .as_array()
            .expect("stringArray")
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let col = |table: &str, c: &str| -> Vec<serde_json::Value> {
            th[table][c]
                .as_array()
                .unwrap_or_else(|| panic!("{table}.{c}"))
                .clone()
        };
        let (st_frame, st_prefix) = (col("stackTable", "frame"), col("stackTable", "prefix"));
        let (fr_func, fr_line, fr_col, fr_depth, fr_addr, fr_cat) = (
            col("frameTable", "func"),
            col("frameTable", "line"),
            col("frameTable", "column"),
            col("frameTable", "inlineDepth"),
            col("frameTable", "address"),
            col("frameTable", "category"),
        );
        let fn_name = col("funcTable", "name");
        let frame = |f: usize| {
            let func = fr_func[f].as_u64().unwrap() as usize;
            FxFrame {
                func: strings[fn_name[func].as_u64().unwrap() as usize].to_owned(),
                file: files[func].clone(),
                line: fr_line[f].as_u64(),
                column: fr_col[f].as_u64(),
                inline_depth: fr_depth[f].as_u64().unwrap(),
                address: fr_addr[f].as_i64().unwrap(),
                category: fr_cat[f].as_u64().unwrap_or(0),
            }
        };
        samples
            .as_array()
            .expect("samples.stack")
            .iter()
            .map(|s| {
                let mut frames = Vec::new();
                let mut cur = s.as_u64();
                while let Some(st) = cur {
                    frames.push(frame(st_frame[st as usize].as_u64().unwrap() as usize));
                    cur = st_prefix[st as usize].as_u64();
                }
                frames
            })
            .collect()
    }
}

/// Checks the inline fixture's profile (`fixtures/src/inline.c`): `mix`, inlined into `hash_block`, is the leaf of most
/// samples, a frame of its own one inline level deeper at its caller's
/// address, with its own lines, and the call site has a line in
/// `hash_block`.
pub fn assert_mix_inlined_in_hash_block(samples: &[Vec<FxFrame>]) {
    let (mix_first, mix_last) = crate::function_lines("fixtures/src/inline.c", "mix");
    let (hb_first, hb_last) = crate::function_lines("fixtures/src/inline.c", "hash_block");
    let inlined: Vec<&Vec<FxFrame>> = samples
        .iter()
        .filter(|s| s.first().is_some_and(|f| f.func == "mix"))
        .collect();
    assert!(
        inlined.len() * 2 > samples.len(),
        "mix is the leaf of {} of {} samples",
        inlined.len(),
        samples.len()
    );
    for s in &inlined {
        let (mix, caller) = (&s[0], &s[1]);
        assert_eq!(caller.func, "hash_block");
        assert_eq!(mix.inline_depth, caller.inline_depth + 1);
        assert_eq!(
            mix.address, caller.address,
            "an inlined chain shares its address"
        );
        assert_eq!(mix.file.as_deref(), Some("fixtures/src/inline.c"));
        if let Some(l) = mix.line.filter(|&l| l != 0) {
            assert!((mix_first..=mix_last).contains(&l), "mix line {l}");
        }
        let cl = caller.line.expect("the call site has a line");
        assert!(
            (hb_first..=hb_last).contains(&cl),
            "call line {cl} outside hash_block"
        );
    }
    assert!(inlined
        .iter()
        .any(|s| s[0].line.is_some_and(|l| l >= mix_first)));
}
