//! The stack tree by function, shared by the folded and text outputs.

use std::collections::HashMap;

use super::{FuncId, Profile, StackId};

/// The stack tree with frames replaced by their functions, merged: one
/// node per distinct path of functions (as a folded line shows it, with
/// inlined functions as their own frames). Samples are counted per path,
/// which takes a `u32` per stack node and a counter per path (far fewer
/// than stacks when recursion or many call sites give many stacks) instead
/// of a counter per distinct leaf stack in a hash map.
pub(crate) struct FuncPaths {
    /// Stack id → its path.
    of_stack: Vec<u32>,
    /// Path → (parent path or `NO_PATH`, func).
    nodes: Vec<(u32, FuncId)>,
}

const NO_PATH: u32 = u32::MAX;

impl FuncPaths {
    /// Needs a model [`Profile::check`] accepted (parents in range, no cycles).
    pub(crate) fn new(p: &Profile) -> Self {
        let mut of_stack = vec![NO_PATH; p.stacks.len()];
        let mut nodes: Vec<(u32, FuncId)> = Vec::new();
        // Keyed (parent path, func): its size is the number of paths.
        let mut ids: HashMap<(u32, FuncId), u32> = HashMap::new();
        let mut walk = Vec::new();
        for start in 0..p.stacks.len() as StackId {
            // Parents mostly come first, but a model need not say so: walk
            // up to the first stack with a path, then give paths down.
            let mut cur = Some(start);
            walk.clear();
            let mut parent = NO_PATH;
            while let Some(s) = cur {
                if of_stack[s as usize] != NO_PATH {
                    parent = of_stack[s as usize];
                    break;
                }
                walk.push(s);
                cur = p.stacks.get(s as usize).parent;
            }
            for &s in walk.iter().rev() {
                let func = p.frames[p.stacks.get(s as usize).frame as usize].func;
                parent = *ids.entry((parent, func)).or_insert_with(|| {
                    nodes.push((parent, func));
                    (nodes.len() - 1) as u32
                });
                of_stack[s as usize] = parent;
            }
        }
        FuncPaths { of_stack, nodes }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The path of stack `st`.
    pub(crate) fn of_stack(&self, st: StackId) -> u32 {
        self.of_stack[st as usize]
    }

    /// The functions of `path`, leaf first.
    pub(crate) fn funcs(&self, mut path: u32) -> impl Iterator<Item = FuncId> + '_ {
        std::iter::from_fn(move || {
            let (parent, func) = *self.nodes.get(path as usize)?;
            path = parent;
            Some(func)
        })
    }
}
