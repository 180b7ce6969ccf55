//! The part of the model one thread uses, renumbered for its tables.

use std::collections::HashMap;

use super::meta::run_end_text;
use super::stack_order::StackOrder;
use super::NONE;
use crate::model::{Profile, Sample, Thread};

/// The part of the model one thread uses, renumbered for its tables.
pub(super) struct ThreadTables<'a> {
    /// The stacks the thread uses, in output order.
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
    /// The thread's string array: borrowed strings, then `marker_name`.
    pub(super) strings: Vec<&'a str>,
    pub(super) func_name: Vec<u32>,
    pub(super) func_file: Vec<Option<u32>>,
    pub(super) resource_name: Vec<u32>,
    /// The run-end marker's name, on the main thread; its string index is
    /// `strings.len()`.
    pub(super) marker_name: Option<String>,
    /// The samples sorted by time, when they are not already: a damaged
    /// trace whose keyframes go back in time, or a hand-built profile.
    /// [`Samples`](crate::model::Samples) are read in order only, so this
    /// is a copy.
    pub(super) sorted: Option<Vec<Sample>>,
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

impl<'a> ThreadTables<'a> {
    pub(super) fn build(p: &'a Profile, t: &Thread, main: bool) -> Self {
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
    pub(super) fn samples<'t>(&'t self, t: &'t Thread) -> InOrder<'t> {
        match &self.sorted {
            Some(v) => InOrder::Sorted(v.iter()),
            None => InOrder::AsIs(t.samples.iter()),
        }
    }
}

/// See [`ThreadTables::samples`].
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
