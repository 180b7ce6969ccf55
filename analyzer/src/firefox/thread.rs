//! A thread's JSON, table by table, streamed from the model.

use serde::ser::{Error as _, Serialize, SerializeMap, Serializer};
use serde_json::json;

use super::meta::run_end_ns;
use super::tables::ThreadTables;
use super::{category_index, ns_to_ms, Repeat, Seq, NONE};
use crate::model::{Category, Profile, Thread};

pub(super) struct Threads<'a>(pub(super) &'a Profile);

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
