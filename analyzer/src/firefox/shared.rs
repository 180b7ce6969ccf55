//! `profile.shared`: the tables every thread's samples point into, table
//! by table, streamed from the model.
//!
//! The columns are those of processed-format version 64 (see the module
//! doc of `firefox/` for where they were checked): `stackTable`,
//! `frameTable` (with `nativeSymbol` and the `originalLocation` column of
//! version 64, null here), `funcTable` (with `source` into `sources`),
//! `resourceTable`, `nativeSymbols`, `sources` (with `content`),
//! `sourceLocationTable` (empty: no source maps) and `stringArray`.

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::tables::SharedTables;
use super::{category_index, Repeat, Seq};
use crate::model::Profile;

pub(super) struct Shared<'a, 'b>(pub(super) &'a Profile, pub(super) &'b SharedTables<'a>);

impl Serialize for Shared<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Shared(p, st) = *self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("stackTable", &StackTable(p, st))?;
        map.serialize_entry("frameTable", &FrameTable(p, st))?;
        map.serialize_entry("funcTable", &FuncTable(p, st))?;
        map.serialize_entry("resourceTable", &ResourceTable(st))?;
        map.serialize_entry("nativeSymbols", &NativeSymbols(p, st))?;
        map.serialize_entry("sources", &Sources(p, st))?;
        map.serialize_entry(
            "sourceLocationTable",
            &serde_json::json!({ "length": 0, "source": [], "line": [], "column": [] }),
        )?;
        map.serialize_entry(
            "stringArray",
            &Seq(|| {
                st.strings
                    .iter()
                    .copied()
                    .chain(std::iter::once(st.marker_name.as_str()))
            }),
        )?;
        map.end()
    }
}

struct StackTable<'a, 'b>(&'a Profile, &'b SharedTables<'a>);

impl Serialize for StackTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let StackTable(p, st) = *self;
        let stacks = || st.stacks.model_ids().map(|id| p.stacks.get(id as usize));
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &st.stacks.len())?;
        map.serialize_entry(
            "prefix",
            &Seq(|| stacks().map(|s| s.parent.map(|pa| st.stacks.index(pa)))),
        )?;
        map.serialize_entry(
            "frame",
            &Seq(|| stacks().map(|s| st.frame_index[s.frame as usize])),
        )?;
        map.end()
    }
}

struct FrameTable<'a, 'b>(&'a Profile, &'b SharedTables<'a>);

impl Serialize for FrameTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let FrameTable(p, st) = *self;
        let n = st.frames.len();
        let frames = || st.frames.iter().map(|&f| &p.frames[f as usize]);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        // A wasm file offset (lib-relative, as the native symbols' and
        // the symbol server's addresses): never a host address.
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
            &Seq(|| frames().map(|f| st.func_index[f.func as usize])),
        )?;
        // Every frame of an inline chain names the same native symbol:
        // that is what makes the profiler show the inner ones as inlined.
        map.serialize_entry(
            "nativeSymbol",
            &Seq(|| frames().map(|f| f.native_symbol.map(|n| st.native_symbol_index[n as usize]))),
        )?;
        map.serialize_entry("innerWindowID", &Repeat(0u32, n))?;
        map.serialize_entry("line", &Seq(|| frames().map(|f| f.line)))?;
        map.serialize_entry("column", &Seq(|| frames().map(|f| f.column)))?;
        map.serialize_entry("originalLocation", &Repeat((), n))?;
        map.end()
    }
}

struct FuncTable<'a, 'b>(&'a Profile, &'b SharedTables<'a>);

impl Serialize for FuncTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let FuncTable(p, st) = *self;
        let n = st.funcs.len();
        let funcs = || st.funcs.iter().map(|&f| &p.funcs[f as usize]);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("name", &st.func_name)?;
        map.serialize_entry("isJS", &Repeat(false, n))?;
        map.serialize_entry("relevantForJS", &Repeat(false, n))?;
        map.serialize_entry(
            "resource",
            &Seq(|| {
                funcs().map(|f| {
                    f.lib
                        .map_or(-1i64, |l| i64::from(st.resource_index[l as usize]))
                })
            }),
        )?;
        map.serialize_entry("source", &st.func_source)?;
        map.serialize_entry("lineNumber", &Seq(|| funcs().map(|f| f.line)))?;
        map.serialize_entry("columnNumber", &Repeat((), n))?;
        map.serialize_entry("originalLocation", &Repeat((), n))?;
        map.end()
    }
}

struct ResourceTable<'a, 'b>(&'b SharedTables<'a>);

impl Serialize for ResourceTable<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let st = self.0;
        let n = st.resources.len();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        // `libs` lists all of `profile.libs`, so a model lib id is a lib index.
        map.serialize_entry("lib", &st.resources)?;
        map.serialize_entry("name", &st.resource_name)?;
        map.serialize_entry("host", &Repeat((), n))?;
        // 1 = library.
        map.serialize_entry("type", &Repeat(1u32, n))?;
        map.end()
    }
}

struct NativeSymbols<'a, 'b>(&'a Profile, &'b SharedTables<'a>);

impl Serialize for NativeSymbols<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let NativeSymbols(p, st) = *self;
        let syms = || {
            st.native_symbols
                .iter()
                .map(|&n| &p.native_symbols[n as usize])
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &st.native_symbols.len())?;
        map.serialize_entry("libIndex", &Seq(|| syms().map(|n| n.lib)))?;
        map.serialize_entry("address", &Seq(|| syms().map(|n| n.address)))?;
        map.serialize_entry("name", &st.native_symbol_name)?;
        map.serialize_entry("functionSize", &Seq(|| syms().map(|n| n.size)))?;
        map.end()
    }
}

struct Sources<'a, 'b>(&'a Profile, &'b SharedTables<'a>);

impl Serialize for Sources<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Sources(p, st) = *self;
        let n = st.sources.len();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("length", &n)?;
        map.serialize_entry("id", &Repeat((), n))?;
        map.serialize_entry("filename", &Seq(|| st.sources.iter().map(|s| s.0)))?;
        // 1-based: the file starts at its first line and column.
        map.serialize_entry("startLine", &Repeat(1u32, n))?;
        map.serialize_entry("startColumn", &Repeat(1u32, n))?;
        map.serialize_entry("sourceMapURL", &Repeat((), n))?;
        // The whole text, which the source view shows without any server.
        map.serialize_entry(
            "content",
            &Seq(|| st.sources.iter().map(|s| p.source_text(s.1))),
        )?;
        map.end()
    }
}
