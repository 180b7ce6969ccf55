//! Firefox Profiler output: a *processed* profile (the format
//! profiler.firefox.com loads from a file), gzipped when the file name ends
//! in `.gz`.
//!
//! # Approach: serialize the model directly, with serde
//!
//! The processed format is a set of column tables (stack, frame, func,
//! resource, string) that the [`Profile`] model already has in the same
//! shape: deduplicated funcs, frames and a stack prefix tree. So this module
//! writes the format itself, streaming every column straight from the model
//! through small [`Serialize`] adapters. It does not go through
//! `fxprof-processed-profile` 0.8.1, because that crate cannot express what a
//! symbolized wasm profile needs, and working around it costs more than it
//! saves:
//!
//! - it keys frames by address, so the frames of one inlined chain (same
//!   address, different `inlineDepth`, func and line) collapse into one;
//!   giving each `(address, depth)` a fake address keeps them apart but then
//!   writes fake addresses that would have to be rewritten afterwards;
//! - it writes `frameTable.line/column/inlineDepth` and
//!   `funcTable.fileName/lineNumber/columnNumber` as constant null/zero
//!   columns, and names address frames only through a per-library symbol
//!   table (one name per address, so no inlined functions). Patching those
//!   columns means re-parsing and rewriting the JSON it produced, keyed on
//!   its internal frame/func order, and a second copy of all tables in
//!   memory (its own hash maps and vectors next to the model's).
//!
//! Writing directly keeps memory at the model plus, for the thread being
//! written, one `u32` remapping entry per model stack/frame/func (none per
//! stack when the thread's stacks keep their model ids, as a
//! single-threaded trace's do) and the list of the strings it uses; samples are never copied (unless a thread's
//! samples are out of time order: then a sorted copy of that thread's). Each thread gets
//! the subset of stacks, frames and funcs its samples use, renumbered so that
//! every stack's prefix comes before it, which the profiler relies on.
//!
//! # Format version
//!
//! The output is processed-profile version [`PROCESSED_PROFILE_VERSION`]
//! (55), the version `fxprof-processed-profile` 0.8 and samply write and
//! the current profiler upgrades on load (its upgraders move the
//! per-thread string arrays and tables into `profile.shared`, turn
//! `funcTable.fileName` into a sources table, and carry `line`, `column`
//! and `inlineDepth` over unchanged). Targeting an older version the
//! front-end upgrades, rather than its newest, keeps the file loadable by
//! any deployed front-end from the last years; the newest versions changed
//! every few months. Since version 53 the stack table has no category
//! columns: a stack's category is its frame's, which every frame here has.
//!
//! # What goes where
//!
//! - One process (named after `meta.product`), one thread per guest thread;
//!   the first thread is the process's main thread.
//! - Samples: `timeDeltas` in ms, `weight` null (each sample weighs 1),
//!   `threadCPUDelta` in µs (declared in `meta.sampleUnits`), rounded so that
//!   the µs sum of a thread equals its rounded ns total; `stack` null for a
//!   sample without frames.
//! - Categories `Other` (grey, the default), `Wasm` and `Host`, from
//!   [`Category`].
//! - `frameTable.address` is the frame's wasm file offset (or -1), never a
//!   host address; `inlineDepth`, `line` and `column` come from the model's
//!   frames; `funcTable.fileName/lineNumber` from its funcs.
//! - One library resource per wasm module used; `libs` lists all of
//!   `profile.libs` (`arch` `wasm32`, `codeId` the module's SHA-256,
//!   `breakpadId` derived from it).
//! - `meta.symbolicated` is true: there is nothing for the profiler to look up.
//! - Run metadata (arguments, recorder, clock, lost samples, how the run
//!   ended, warnings) in `meta.extra` (the profile's "more info" panel) and
//!   `meta.arguments`; how the run ended is also an instant marker on the
//!   main thread at the end of the run.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use serde_json::json;

use crate::model::{clock_name, exit_kind_name, Category, Profile, Sample, StackId, Thread};

/// The processed-profile format version written (`meta.preprocessedProfileVersion`).
pub const PROCESSED_PROFILE_VERSION: u32 = 55;

/// `meta.version`: the Gecko profile format version a processed profile was
/// made from. Not used by the front-end for processed profiles; 24 is what
/// `fxprof-processed-profile` writes.
pub const GECKO_PROFILE_VERSION: u32 = 24;

/// Index of each [`Category`] in `meta.categories`.
pub fn category_index(c: Category) -> u32 {
    match c {
        Category::Other => 0,
        Category::Wasm => 1,
        Category::Host => 2,
    }
}

/// How many warnings go into `meta.extra` before the rest are summarized.
const MAX_EXTRA_WARNINGS: usize = 200;

const NONE: u32 = u32::MAX;

/// Writes `profile` as Firefox Profiler processed-profile JSON.
pub fn write(profile: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    profile
        .check()
        .map_err(|e| anyhow::anyhow!("invalid profile model: {e}"))?;
    let mut w = BufWriter::with_capacity(1 << 16, out);
    serde_json::to_writer(&mut w, &Root(profile)).context("writing Firefox profile JSON")?;
    w.flush().context("writing Firefox profile JSON")?;
    Ok(())
}

/// Writes `profile` to `path`, gzip-compressed when the file name ends in
/// `.gz` (the profiler opens both).
pub fn write_file(profile: &Profile, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let file = BufWriter::with_capacity(1 << 16, file);
    let gz = path.extension().is_some_and(|e| e == "gz");
    let result = if gz {
        // Level 3: as small as the default (6) on this JSON, three times faster.
        let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::new(3));
        write(profile, &mut enc).and_then(|()| {
            enc.finish()?.flush()?;
            Ok(())
        })
    } else {
        let mut file = file;
        write(profile, &mut file).and_then(|()| Ok(file.flush()?))
    };
    result.with_context(|| format!("writing {}", path.display()))
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1_000_000.0
}

/// A JSON array produced by calling the closure for a fresh iterator.
struct Seq<F>(F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

/// A JSON array of `len` copies of `value`.
struct Repeat<T>(T, usize);

impl<T: Serialize> Serialize for Repeat<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(std::iter::repeat_n(&self.0, self.1))
    }
}

struct Root<'a>(&'a Profile);

impl Serialize for Root<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("meta", &Meta(p))?;
        map.serialize_entry("libs", &Seq(|| p.libs.iter().map(lib_json)))?;
        map.serialize_entry("threads", &Threads(p))?;
        map.serialize_entry("pages", &[(); 0])?;
        map.serialize_entry("profilerOverhead", &[(); 0])?;
        map.serialize_entry("counters", &[(); 0])?;
        map.end()
    }
}

fn lib_json(lib: &crate::model::Lib) -> serde_json::Value {
    let sha = lib.sha256.to_ascii_uppercase();
    let is_hex = sha.len() >= 32 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    // A breakpad id is a 32-hex-digit id plus an age; nothing looks it up
    // here (the profile is symbolicated), it only has to be well-formed.
    let breakpad_id = if is_hex {
        format!("{}0", &sha[..32])
    } else {
        "0".repeat(33)
    };
    json!({
        "name": lib.name,
        "path": lib.path,
        "debugName": lib.name,
        "debugPath": lib.path,
        "breakpadId": breakpad_id,
        "codeId": if lib.sha256.is_empty() { None } else { Some(&lib.sha256) },
        "arch": "wasm32",
    })
}

/// The end of the run: the latest thread end or sample, in ns since zero.
fn run_end_ns(p: &Profile) -> u64 {
    p.threads
        .iter()
        .map(|t| {
            let last = t
                .samples
                .iter()
                .map(|s| s.time_ns)
                .max()
                .unwrap_or(t.start_ns);
            t.end_ns.unwrap_or(0).max(last)
        })
        .max()
        .unwrap_or(0)
}

fn run_end_text(p: &Profile) -> String {
    match &p.meta.end {
        None => "no end record (the recorder was killed?)".to_string(),
        Some(e) => {
            let mut s = format!("{}, status {}", exit_kind_name(e.kind), e.status);
            if !e.message.is_empty() {
                s.push_str(": ");
                s.push_str(&e.message);
            }
            s
        }
    }
}

struct Meta<'a>(&'a Profile);

impl Serialize for Meta<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let m = &p.meta;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry(
            "categories",
            &json!([
                { "name": "Other", "color": "grey", "subcategories": ["Other"] },
                { "name": "Wasm", "color": "blue", "subcategories": ["Other"] },
                { "name": "Host", "color": "orange", "subcategories": ["Other"] },
            ]),
        )?;
        map.serialize_entry("debug", &false)?;
        map.serialize_entry(
            "extensions",
            &json!({ "length": 0, "baseURL": [], "id": [], "name": [] }),
        )?;
        // The front-end divides by the interval: never write 0.
        let interval = if m.interval_ns == 0 {
            1.0
        } else {
            ns_to_ms(m.interval_ns)
        };
        map.serialize_entry("interval", &interval)?;
        map.serialize_entry("preprocessedProfileVersion", &PROCESSED_PROFILE_VERSION)?;
        map.serialize_entry("processType", &0)?;
        map.serialize_entry("product", &m.product)?;
        map.serialize_entry(
            "sampleUnits",
            &json!({ "time": "ms", "eventDelay": "ms", "threadCPUDelta": "µs" }),
        )?;
        map.serialize_entry("startTime", &m.start_unix_ms)?;
        map.serialize_entry("symbolicated", &true)?;
        map.serialize_entry("pausedRanges", &[(); 0])?;
        map.serialize_entry("version", &GECKO_PROFILE_VERSION)?;
        map.serialize_entry("stackwalk", &1)?;
        map.serialize_entry("usesOnlyOneStackType", &true)?;
        map.serialize_entry("sourceCodeIsNotOnSearchfox", &true)?;
        map.serialize_entry("markerSchema", &[(); 0])?;
        if !m.args.is_empty() {
            map.serialize_entry("arguments", &m.args.join(" "))?;
        }
        map.serialize_entry("extra", &extra_json(p))?;
        map.end()
    }
}

fn extra_json(p: &Profile) -> serde_json::Value {
    let m = &p.meta;
    let entry = |label: &str, value: serde_json::Value, format: &str| json!({ "label": label, "format": format, "value": value });
    let lost: u64 = p.threads.iter().map(|t| t.lost).sum();
    let entries = vec![
        entry("Program", json!(m.product), "string"),
        entry("Arguments", json!(m.args.join(" ")), "string"),
        entry("Recorder", json!(m.recorder), "string"),
        entry("Clock", json!(m.clock.map_or("", clock_name)), "string"),
        entry("Interval", json!(ns_to_ms(m.interval_ns)), "milliseconds"),
        entry("Samples", json!(p.sample_count()), "integer"),
        entry("Lost samples", json!(lost), "integer"),
        // Their CPU delta is a share of a later reading (SPEC.md §2.4).
        entry(
            "Samples without their own CPU reading",
            json!(m.samples_without_cpu),
            "integer",
        ),
        entry("Run ended", json!(run_end_text(p)), "string"),
        entry(
            "Source lines",
            json!(if m.has_lines { "yes (DWARF)" } else { "no" }),
            "string",
        ),
        entry("Warnings", json!(m.warnings.len()), "integer"),
    ];
    let mut sections = vec![json!({ "label": "wrec", "entries": entries })];
    if !m.warnings.is_empty() {
        let mut w: Vec<_> = m
            .warnings
            .iter()
            .take(MAX_EXTRA_WARNINGS)
            .enumerate()
            .map(|(i, w)| entry(&format!("{}", i + 1), json!(w), "string"))
            .collect();
        if m.warnings.len() > MAX_EXTRA_WARNINGS {
            let more = m.warnings.len() - MAX_EXTRA_WARNINGS;
            w.push(entry("…", json!(format!("{more} more")), "string"));
        }
        sections.push(json!({ "label": "Warnings", "entries": w }));
    }
    serde_json::Value::Array(sections)
}

struct Threads<'a>(&'a Profile);

impl Serialize for Threads<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let p = self.0;
        let end_ns = run_end_ns(p);
        let mut seq = s.serialize_seq(Some(p.threads.len()))?;
        for (i, t) in p.threads.iter().enumerate() {
            // Tables are built one thread at a time and dropped after.
            let tables = ThreadTables::build(p, t, i == 0);
            seq.serialize_element(&ThreadJson {
                p,
                t,
                main: i == 0,
                tt: &tables,
                end_ns,
            })?;
        }
        seq.end()
    }
}

/// The part of the model one thread uses, renumbered for its tables.
struct ThreadTables<'a> {
    /// The stacks the thread uses, in output order.
    stacks: StackOrder,
    /// Model frame ids in output order, and the reverse map.
    frames: Vec<u32>,
    frame_index: Vec<u32>,
    /// Model func ids in output order, and the reverse map.
    funcs: Vec<u32>,
    func_index: Vec<u32>,
    /// Model lib ids, one library resource each, and the reverse map.
    resources: Vec<u32>,
    resource_index: Vec<u32>,
    /// The thread's string array: borrowed strings, then `marker_name`.
    strings: Vec<&'a str>,
    func_name: Vec<u32>,
    func_file: Vec<Option<u32>>,
    resource_name: Vec<u32>,
    /// The run-end marker's name, on the main thread; its string index is
    /// `strings.len()`.
    marker_name: Option<String>,
    /// The samples sorted by time, when they are not already: a damaged
    /// trace whose keyframes go back in time, or a hand-built profile.
    /// [`Samples`](crate::model::Samples) are read in order only, so this
    /// is a copy.
    sorted: Option<Vec<Sample>>,
}

struct Strings<'a> {
    list: Vec<&'a str>,
    map: HashMap<&'a str, u32>,
}

impl<'a> Strings<'a> {
    fn intern(&mut self, s: &'a str) -> u32 {
        *self.map.entry(s).or_insert_with(|| {
            self.list.push(s);
            (self.list.len() - 1) as u32
        })
    }
}

/// Gives `id` the next index in `order` unless it has one.
fn assign(index: &mut [u32], order: &mut Vec<u32>, id: u32) -> u32 {
    let slot = &mut index[id as usize];
    if *slot == NONE {
        *slot = order.len() as u32;
        order.push(id);
    }
    *slot
}

/// A thread's stacks in output order: walk up from each sample's stack (in
/// the order they are stored) to the first one already numbered, then
/// number the walked path root first, so that every prefix gets a smaller
/// index than its children.
enum StackOrder {
    /// Output index = model id, for the model's first `n` stacks. What a
    /// single-threaded trace gives: the resolver creates each stack node
    /// when the first sample that has it is read, root first. It saves the
    /// two maps below, 8 bytes per stack node.
    Identity(u32),
    Mapped {
        /// Model stack ids in output order.
        stacks: Vec<u32>,
        /// Model stack id → output index, or `NONE`.
        index: Vec<u32>,
    },
}

impl StackOrder {
    fn build(p: &Profile, t: &Thread) -> Self {
        match Self::identity(p, t) {
            Some(n) => StackOrder::Identity(n),
            None => Self::mapped(p, t),
        }
    }

    fn mapped(p: &Profile, t: &Thread) -> Self {
        let mut index = vec![NONE; p.stacks.len()];
        let mut stacks = Vec::new();
        let mut path = Vec::new();
        for s in &t.samples {
            let Some(mut cur) = s.stack else { continue };
            path.clear();
            while index[cur as usize] == NONE {
                path.push(cur);
                match p.stacks.get(cur as usize).parent {
                    Some(parent) => cur = parent,
                    None => break,
                }
            }
            for &id in path.iter().rev() {
                index[id as usize] = stacks.len() as u32;
                stacks.push(id);
            }
        }
        StackOrder::Mapped { stacks, index }
    }

    /// `Some(n)` if the numbering above gives every stack its model id:
    /// then stacks `0..n` are numbered, and each sample's path of stacks not
    /// numbered yet is exactly the ids from `n` up to its stack, each the
    /// parent of the next.
    fn identity(p: &Profile, t: &Thread) -> Option<u32> {
        let mut n = 0;
        for s in &t.samples {
            let Some(leaf) = s.stack else { continue };
            if leaf < n {
                continue;
            }
            let mut cur = leaf;
            loop {
                let parent = p.stacks.get(cur as usize).parent;
                if cur == n {
                    if parent.is_some_and(|q| q >= n) {
                        return None;
                    }
                    break;
                }
                if parent != Some(cur - 1) {
                    return None;
                }
                cur -= 1;
            }
            n = leaf + 1;
        }
        Some(n)
    }

    fn len(&self) -> usize {
        match self {
            StackOrder::Identity(n) => *n as usize,
            StackOrder::Mapped { stacks, .. } => stacks.len(),
        }
    }

    /// The output index of model stack `id`, which the thread uses.
    fn index(&self, id: StackId) -> u32 {
        match self {
            StackOrder::Identity(_) => id,
            StackOrder::Mapped { index, .. } => index[id as usize],
        }
    }

    /// Model stack ids in output order.
    fn model_ids(&self) -> impl Iterator<Item = StackId> + '_ {
        let (n, stacks) = match self {
            StackOrder::Identity(n) => (*n, &[][..]),
            StackOrder::Mapped { stacks, .. } => (0, &stacks[..]),
        };
        (0..n).chain(stacks.iter().copied())
    }
}

impl<'a> ThreadTables<'a> {
    fn build(p: &'a Profile, t: &Thread, main: bool) -> Self {
        let stacks = StackOrder::build(p, t);

        let mut frame_index = vec![NONE; p.frames.len()];
        let mut frames = Vec::new();
        for s in stacks.model_ids() {
            assign(
                &mut frame_index,
                &mut frames,
                p.stacks.get(s as usize).frame,
            );
        }

        let mut func_index = vec![NONE; p.funcs.len()];
        let mut funcs = Vec::new();
        for &f in &frames {
            assign(&mut func_index, &mut funcs, p.frames[f as usize].func);
        }

        let mut strings = Strings {
            list: Vec::new(),
            map: HashMap::new(),
        };
        let mut resource_index = vec![NONE; p.libs.len()];
        let mut resources = Vec::new();
        let mut resource_name = Vec::new();
        let mut func_name = Vec::with_capacity(funcs.len());
        let mut func_file = Vec::with_capacity(funcs.len());
        for &func in &funcs {
            let f = &p.funcs[func as usize];
            func_name.push(strings.intern(&f.name));
            func_file.push(f.file.as_deref().map(|file| strings.intern(file)));
            if let Some(lib) = f.lib {
                let before = resources.len();
                assign(&mut resource_index, &mut resources, lib);
                if resources.len() > before {
                    resource_name.push(strings.intern(&p.libs[lib as usize].name));
                }
            }
        }

        let mut last = 0;
        let in_order = t.samples.iter().all(|s| {
            let ok = last <= s.time_ns;
            last = s.time_ns;
            ok
        });
        let sorted = (!in_order).then(|| {
            let mut v: Vec<Sample> = t.samples.iter().collect();
            // Stable: samples at the same time keep their order.
            v.sort_by_key(|s| s.time_ns);
            v
        });

        ThreadTables {
            stacks,
            frames,
            frame_index,
            funcs,
            func_index,
            resources,
            resource_index,
            strings: strings.list,
            func_name,
            func_file,
            resource_name,
            marker_name: main.then(|| format!("Run ended: {}", run_end_text(p))),
            sorted,
        }
    }

    /// The thread's samples in time order.
    fn samples<'t>(&'t self, t: &'t Thread) -> InOrder<'t> {
        match &self.sorted {
            Some(v) => InOrder::Sorted(v.iter()),
            None => InOrder::AsIs(t.samples.iter()),
        }
    }
}

/// See [`ThreadTables::samples`].
enum InOrder<'a> {
    AsIs(crate::model::SampleIter<'a>),
    Sorted(std::slice::Iter<'a, Sample>),
}

impl Iterator for InOrder<'_> {
    type Item = Sample;
    fn next(&mut self) -> Option<Sample> {
        match self {
            InOrder::AsIs(i) => i.next(),
            InOrder::Sorted(i) => i.next().copied(),
        }
    }
}

struct ThreadJson<'a, 'b> {
    p: &'a Profile,
    t: &'a Thread,
    main: bool,
    tt: &'b ThreadTables<'a>,
    end_ns: u64,
}

impl Serialize for ThreadJson<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ThreadJson {
            p,
            t,
            main,
            tt,
            end_ns,
        } = *self;
        if t.samples.len() >= NONE as usize || p.stacks.len() >= NONE as usize {
            return Err(S::Error::custom("too many samples or stacks"));
        }
        let name = if t.name.is_empty() {
            format!("Thread {}", t.tid)
        } else {
            t.name.clone()
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("frameTable", &FrameTable(p, tt))?;
        map.serialize_entry("funcTable", &FuncTable(p, tt))?;
        map.serialize_entry("markers", &Markers(tt, ns_to_ms(end_ns)))?;
        map.serialize_entry("name", &name)?;
        map.serialize_entry("isMainThread", &main)?;
        map.serialize_entry(
            "nativeSymbols",
            &json!({ "length": 0, "address": [], "functionSize": [], "libIndex": [], "name": [] }),
        )?;
        map.serialize_entry("pausedRanges", &[(); 0])?;
        map.serialize_entry("pid", "1")?;
        map.serialize_entry("processName", &p.meta.product)?;
        let shutdown = p.meta.end.is_some().then(|| ns_to_ms(end_ns));
        map.serialize_entry("processShutdownTime", &shutdown)?;
        map.serialize_entry("processStartupTime", &0.0)?;
        map.serialize_entry("processType", "default")?;
        map.serialize_entry("registerTime", &ns_to_ms(t.start_ns))?;
        map.serialize_entry("resourceTable", &ResourceTable(tt))?;
        map.serialize_entry("samples", &Samples(t, tt))?;
        map.serialize_entry("stackTable", &StackTable(p, tt))?;
        map.serialize_entry(
            "stringArray",
            &Seq(|| tt.strings.iter().copied().chain(tt.marker_name.as_deref())),
        )?;
        map.serialize_entry("tid", &t.tid)?;
        map.serialize_entry("unregisterTime", &t.end_ns.map(ns_to_ms))?;
        map.end()
    }
}

struct FrameTable<'a, 'b>(&'a Profile, &'b ThreadTables<'a>);

impl Serialize for FrameTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let FrameTable(p, tt) = *self;
        let n = tt.frames.len();
        let frames = || tt.frames.iter().map(|&f| &p.frames[f as usize]);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        // A wasm file offset: never a host address.
        map.serialize_entry(
            "address",
            &Seq(|| frames().map(|f| f.address.map_or(-1i64, |a| a as i64))),
        )?;
        map.serialize_entry("inlineDepth", &Seq(|| frames().map(|f| f.inline_depth)))?;
        map.serialize_entry(
            "category",
            &Seq(|| frames().map(|f| category_index(p.funcs[f.func as usize].category))),
        )?;
        map.serialize_entry("subcategory", &Repeat(0u32, n))?;
        map.serialize_entry(
            "func",
            &Seq(|| frames().map(|f| tt.func_index[f.func as usize])),
        )?;
        map.serialize_entry("nativeSymbol", &Repeat((), n))?;
        map.serialize_entry("innerWindowID", &Repeat(0u32, n))?;
        map.serialize_entry("line", &Seq(|| frames().map(|f| f.line)))?;
        map.serialize_entry("column", &Seq(|| frames().map(|f| f.column)))?;
        map.end()
    }
}

struct FuncTable<'a, 'b>(&'a Profile, &'b ThreadTables<'a>);

impl Serialize for FuncTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let FuncTable(p, tt) = *self;
        let n = tt.funcs.len();
        let funcs = || tt.funcs.iter().map(|&f| &p.funcs[f as usize]);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("name", &tt.func_name)?;
        map.serialize_entry("isJS", &Repeat(false, n))?;
        map.serialize_entry("relevantForJS", &Repeat(false, n))?;
        map.serialize_entry(
            "resource",
            &Seq(|| {
                funcs().map(|f| {
                    f.lib
                        .map_or(-1i64, |l| i64::from(tt.resource_index[l as usize]))
                })
            }),
        )?;
        map.serialize_entry("fileName", &tt.func_file)?;
        map.serialize_entry("lineNumber", &Seq(|| funcs().map(|f| f.line)))?;
        map.serialize_entry("columnNumber", &Repeat((), n))?;
        map.end()
    }
}

struct ResourceTable<'a, 'b>(&'b ThreadTables<'a>);

impl Serialize for ResourceTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tt = self.0;
        let n = tt.resources.len();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        // `libs` lists all of `profile.libs`, so a model lib id is a lib index.
        map.serialize_entry("lib", &tt.resources)?;
        map.serialize_entry("name", &tt.resource_name)?;
        map.serialize_entry("host", &Repeat((), n))?;
        // 1 = library.
        map.serialize_entry("type", &Repeat(1u32, n))?;
        map.end()
    }
}

struct Markers<'a, 'b>(&'b ThreadTables<'a>, f64);

impl Serialize for Markers<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Markers(tt, time) = *self;
        let n = usize::from(tt.marker_name.is_some());
        let name = tt.strings.len() as u32;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("category", &Repeat(category_index(Category::Other), n))?;
        map.serialize_entry("data", &Repeat((), n))?;
        map.serialize_entry("endTime", &Repeat((), n))?;
        map.serialize_entry("name", &Repeat(name, n))?;
        // 0 = instant.
        map.serialize_entry("phase", &Repeat(0u32, n))?;
        map.serialize_entry("startTime", &Repeat(time, n))?;
        map.end()
    }
}

struct Samples<'a, 'b>(&'a Thread, &'b ThreadTables<'a>);

impl Serialize for Samples<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Samples(t, tt) = *self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &t.samples.len())?;
        map.serialize_entry("weightType", "samples")?;
        // null: every sample weighs 1.
        map.serialize_entry("weight", &())?;
        map.serialize_entry(
            "stack",
            &Seq(|| tt.samples(t).map(|s| s.stack.map(|st| tt.stacks.index(st)))),
        )?;
        map.serialize_entry(
            "timeDeltas",
            &Seq(|| {
                let mut prev = 0u64;
                tt.samples(t).map(move |s| {
                    // In time order, so never negative; the first is from zero.
                    let d = s.time_ns.saturating_sub(prev);
                    prev = s.time_ns;
                    ns_to_ms(d)
                })
            }),
        )?;
        map.serialize_entry(
            "threadCPUDelta",
            &Seq(|| {
                // Round the running total rather than each delta, so that
                // rounding errors do not add up over many samples.
                let mut total_ns = 0u64;
                let mut total_us = 0u64;
                tt.samples(t).map(move |s| {
                    // Saturating: a damaged trace may claim absurd CPU times.
                    total_ns = total_ns.saturating_add(s.cpu_delta_ns);
                    let us = total_ns.saturating_add(500) / 1000;
                    let d = us.saturating_sub(total_us);
                    total_us = us;
                    d
                })
            }),
        )?;
        map.end()
    }
}

struct StackTable<'a, 'b>(&'a Profile, &'b ThreadTables<'a>);

impl Serialize for StackTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let StackTable(p, tt) = *self;
        let stacks = || tt.stacks.model_ids().map(|st| p.stacks.get(st as usize));
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &tt.stacks.len())?;
        map.serialize_entry(
            "prefix",
            &Seq(|| stacks().map(|st| st.parent.map(|pa| tt.stacks.index(pa)))),
        )?;
        map.serialize_entry(
            "frame",
            &Seq(|| stacks().map(|st| tt.frame_index[st.frame as usize])),
        )?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interner, Stack};

    /// The identity shortcut is taken exactly when the general numbering
    /// gives every stack its model id, and both give the same order: on
    /// stacks interned in sample order (as the resolver does), on samples
    /// reordered, with a sample without stack, with stacks interned before
    /// any sample uses them.
    #[test]
    fn stack_order_identity_iff_general_numbering_is() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut rnd = move |n: u64| next() % n;
        let (mut identities, mut mapped) = (0, 0);
        for case in 0..200 {
            let mut p = Profile::default();
            let mut i = Interner::default();
            let mut leaves = Vec::new();
            for _ in 0..rnd(50) + 1 {
                // A path of 1 to 6 frames from few, so paths share prefixes.
                let mut node = None;
                for _ in 0..rnd(6) + 1 {
                    node = Some(i.stack(
                        &mut p,
                        Stack {
                            parent: node,
                            frame: rnd(3) as u32,
                        },
                    ));
                }
                if rnd(20) == 0 {
                    // Interned ahead of use.
                    i.stack(
                        &mut p,
                        Stack {
                            parent: node,
                            frame: 7,
                        },
                    );
                }
                leaves.push(node);
            }
            i.finish(&mut p);
            match case % 4 {
                0 => {}
                1 => {
                    let k = rnd(leaves.len() as u64) as usize;
                    leaves.swap(k, 0)
                }
                2 => leaves.insert(0, None),
                _ => leaves.reverse(),
            }
            let t = Thread {
                samples: leaves
                    .iter()
                    .enumerate()
                    .map(|(k, &stack)| Sample {
                        time_ns: k as u64,
                        cpu_delta_ns: 0,
                        stack,
                    })
                    .collect(),
                ..Thread::default()
            };
            let StackOrder::Mapped { stacks, index } = StackOrder::mapped(&p, &t) else {
                unreachable!()
            };
            let is_identity = stacks.iter().enumerate().all(|(k, &id)| id as usize == k);
            match StackOrder::identity(&p, &t) {
                Some(n) => {
                    assert!(is_identity, "case {case}");
                    assert_eq!(n as usize, stacks.len(), "case {case}");
                    identities += 1;
                }
                None => {
                    assert!(!is_identity, "case {case}: {stacks:?}");
                    mapped += 1;
                }
            }
            let order = StackOrder::build(&p, &t);
            assert_eq!(order.model_ids().collect::<Vec<_>>(), stacks);
            for &id in &stacks {
                assert_eq!(order.index(id), index[id as usize]);
            }
        }
        assert!(identities > 20 && mapped > 20, "{identities} {mapped}");
    }
}
