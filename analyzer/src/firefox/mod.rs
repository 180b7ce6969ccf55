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
//! Writing directly keeps memory at the model plus one `u32` remapping
//! entry per model stack/frame/func (none per stack when the stacks keep
//! their model ids, as a single-threaded trace's do) and the list of the
//! strings used; samples are never copied (unless a thread's samples are
//! out of time order: then a sorted copy of that thread's, one thread at a
//! time). The shared tables hold the subset of stacks, frames and funcs the
//! samples use, renumbered so that every stack's prefix comes before it,
//! which the profiler relies on.
//!
//! # Format version
//!
//! The output is processed-profile version [`PROCESSED_PROFILE_VERSION`]
//! (64), the first with everything a wasm profile needs to show code:
//! embedded source texts (`shared.sources.content`, read by the source
//! view before any network fetch), and the shared tables of version 60
//! (one stack, frame, func, resource and native-symbol table and one string
//! array for all threads, under `profile.shared`). The front end upgrades
//! it on load to its current version (70 when this was written). The shapes
//! were checked in the Firefox Profiler's source: the upgraders for 56
//! (shared string array), 58 (`funcTable.fileName` → `funcTable.source`
//! into `shared.sources`), 59 (optional `usedInnerWindowIDs`, not written),
//! 60 (shared tables), 61 (`sources.id/startLine/startColumn/
//! sourceMapURL`), 63 (`sources.content`) in
//! `src/profile-logic/processed-profile-versioning.ts`, and the current
//! empty tables in `src/profile-logic/data-structures.ts` (the
//! `originalLocation` columns and `shared.sourceLocationTable` that 64
//! adds, null and empty here). Since version 53 the stack table has no
//! category columns: a stack's category is its frame's, which every frame
//! here has.
//!
//! The "(inlined)" badge of the call tree needs `frameTable.nativeSymbol`:
//! frames with `inlineDepth > 0` that share their outer frame's native
//! symbol are shown as inlined into it (`src/profile-logic/call-tree.ts`).
//! Every wasm frame names the physical function it is in (one native
//! symbol per function: `libIndex`, `address` = its body's file offset,
//! `functionSize`, `name`), which is also what the assembly view asks the
//! symbol server for (`wanalyze view`).
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
//!   host address; `inlineDepth`, `line`, `column` and `nativeSymbol` come
//!   from the model's frames; `funcTable.source/lineNumber` from its funcs,
//!   one `shared.sources` row per file, with the file's text as `content`
//!   when the model carries it ([`Profile::sources`]).
//! - One library resource per wasm module used; `libs` lists all of
//!   `profile.libs` (`arch` `wasm32`, `codeId` the module's SHA-256,
//!   `breakpadId` derived from it).
//! - `meta.symbolicated` is true: there is nothing for the profiler to look up.
//! - Run metadata (arguments, recorder, clock, lost samples, how the run
//!   ended, warnings) in `meta.extra` (the profile's "more info" panel) and
//!   `meta.arguments`; how the run ended is also an instant marker on the
//!   main thread at the end of the run.
//!
//! # Where things are
//!
//! - this file: [`write()`], [`write_file`] and the document's root;
//! - `meta.rs`: `meta` (categories, units, the "more info" panel) and `libs`;
//! - `tables.rs`: the part of the model the samples use, renumbered;
//! - `stack_order.rs`: the order of the shared stack table;
//! - `shared.rs`: `profile.shared`, table by table;
//! - `thread.rs`: a thread's JSON (samples and markers).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::model::{Category, Profile};

mod meta;
mod shared;
mod stack_order;
mod tables;
#[cfg(test)]
mod tests;
mod thread;

pub use meta::lib_json;
use meta::Meta;
use shared::Shared;
use tables::SharedTables;
use thread::Threads;

/// The processed-profile format version written (`meta.preprocessedProfileVersion`).
pub const PROCESSED_PROFILE_VERSION: u32 = 64;

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

/// No index (in the renumbering maps).
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
        if p.stacks.len() >= NONE as usize
            || p.threads.iter().any(|t| t.samples.len() >= NONE as usize)
        {
            return Err(serde::ser::Error::custom("too many samples or stacks"));
        }
        // Built once for all threads, dropped after.
        let tables = SharedTables::build(p);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("meta", &Meta(p))?;
        map.serialize_entry("libs", &Seq(|| p.libs.iter().map(lib_json)))?;
        map.serialize_entry("shared", &Shared(p, &tables))?;
        map.serialize_entry("threads", &Threads(p, &tables))?;
        map.serialize_entry("pages", &[(); 0])?;
        map.serialize_entry("profilerOverhead", &[(); 0])?;
        map.serialize_entry("counters", &[(); 0])?;
        map.end()
    }
}
