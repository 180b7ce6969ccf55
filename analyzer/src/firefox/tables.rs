//! The part of the model the threads' samples use, renumbered for the
//! profile's shared tables (`profile.shared`, one set for all threads).

use std::collections::HashMap;

use super::meta::run_end_text;
use super::stack_order::StackOrder;
use super::NONE;
use crate::model::{Profile, Sample, Thread};

/// The part of the model the samples use, renumbered for the shared tables.
pub(super) struct SharedTables<'a> {
    /// The stacks the samples use, in output order.
    pub(super) stacks: StackOrder,
    /// Model frame ids in output order, and the reverse map.
    pub(super) frames: Vec<u32>,
    pub(super) frame_index: Vec<u32>,
    /// Model func ids in output order, and the reverse map.
    pub(super) funcs: Vec<u32>,
    pub(super) func_index: Vec<u32>,
    /// Model lib ids, one library resource each, and the reverse map.
    pub(super) resources: Vec<u32>,
    pub(super) resource_index: Vec<u32>,
    /// Model native symbol ids in output order, and the reverse map.
    pub(super) native_symbols: Vec<u32>,
    pub(super) native_symbol_index: Vec<u32>,
    /// The source files the funcs name, one row of `shared.sources` each:
    /// the file's string index and the file.
    pub(super) sources: Vec<(u32, &'a str)>,
    /// Per output func: its row in `sources`.
    pub(super) func_source: Vec<Option<u32>>,
    /// The string array: borrowed strings, then the run-end marker's name.
    pub(super) strings: Vec<&'a str>,
    pub(super) func_name: Vec<u32>,
    pub(super) resource_name: Vec<u32>,
    pub(super) native_symbol_name: Vec<u32>,
    /// Per thread, per request marker: its name's string index.
    pub(super) request_name: Vec<Vec<u32>>,
    /// The run-end marker's name (on the main thread); its string index is
    /// `strings.len()`.
    pub(super) marker_name: String,
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
pub(super) fn assign(index: &mut [u32], order: &mut Vec<u32>, id: u32) -> u32 {
    let slot = &mut index[id as usize];
    if *slot == NONE {
        *slot = order.len() as u32;
        order.push(id);
    }
    *slot
}

impl<'a> SharedTables<'a> {
    pub(super) fn build(p: &'a Profile) -> Self {
        let stacks = StackOrder::build(p, &p.threads);

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
        let mut native_symbol_index = vec![NONE; p.native_symbols.len()];
        let mut native_symbols = Vec::new();
        for &f in &frames {
            let frame = &p.frames[f as usize];
            assign(&mut func_index, &mut funcs, frame.func);
            if let Some(n) = frame.native_symbol {
                assign(&mut native_symbol_index, &mut native_symbols, n);
            }
        }

        let mut strings = Strings {
            list: Vec::new(),
            map: HashMap::new(),
        };
        let mut resource_index = vec![NONE; p.libs.len()];
        let mut resources = Vec::new();
        let mut resource_name = Vec::new();
        let mut func_name = Vec::with_capacity(funcs.len());
        let mut func_source = Vec::with_capacity(funcs.len());
        let mut sources = Vec::new();
        let mut source_of_file: HashMap<&str, u32> = HashMap::new();
        for &func in &funcs {
            let f = &p.funcs[func as usize];
            func_name.push(strings.intern(&f.name));
            func_source.push(f.file.as_deref().map(|file| {
                let name = strings.intern(file);
                *source_of_file.entry(file).or_insert_with(|| {
                    sources.push((name, file));
                    (sources.len() - 1) as u32
                })
            }));
            if let Some(lib) = f.lib {
                let before = resources.len();
                assign(&mut resource_index, &mut resources, lib);
                if resources.len() > before {
                    resource_name.push(strings.intern(&p.libs[lib as usize].name));
                }
            }
        }
        let native_symbol_name = native_symbols
            .iter()
            .map(|&n| strings.intern(&p.native_symbols[n as usize].name))
            .collect();
        let request_name = p
            .threads
            .iter()
            .map(|t| t.requests.iter().map(|r| strings.intern(&r.name)).collect())
            .collect();

        SharedTables {
            stacks,
            frames,
            frame_index,
            funcs,
            func_index,
            resources,
            resource_index,
            native_symbols,
            native_symbol_index,
            sources,
            func_source,
            strings: strings.list,
            func_name,
            resource_name,
            native_symbol_name,
            request_name,
            marker_name: format!("Run ended: {}", run_end_text(p)),
        }
    }
}

/// A thread's samples in time order: as they are stored, or sorted (a
/// damaged trace whose keyframes go back in time, or a hand-built profile;
/// [`Samples`](crate::model::Samples) are read in order only, so that is a
/// copy).
pub(super) struct ThreadSamples<'a> {
    t: &'a Thread,
    sorted: Option<Vec<Sample>>,
}

impl<'a> ThreadSamples<'a> {
    pub(super) fn new(t: &'a Thread) -> Self {
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
        ThreadSamples { t, sorted }
    }

    /// The thread's samples in time order.
    pub(super) fn iter(&self) -> InOrder<'_> {
        match &self.sorted {
            Some(v) => InOrder::Sorted(v.iter()),
            None => InOrder::AsIs(self.t.samples.iter()),
        }
    }
}

/// See [`ThreadSamples::iter`].
pub(super) enum InOrder<'a> {
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
