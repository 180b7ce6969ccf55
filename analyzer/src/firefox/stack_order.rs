//! The order of the shared stack table: every prefix before its children.

use super::NONE;
use crate::model::{Profile, StackId, Thread};

/// The stacks the threads' samples use, in output order: walk up from each
/// sample's stack (thread by thread, in the order they are stored) to the
/// first one already numbered, then number the walked path root first, so
/// that every prefix gets a smaller index than its children.
pub(super) enum StackOrder {
    /// Output index = model id, for the model's first `n` stacks. What a
    /// single-threaded trace gives (and one whose threads' stacks were
    /// made thread after thread): the resolver creates each stack node
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
    pub(super) fn build(p: &Profile, threads: &[Thread]) -> Self {
        match Self::identity(p, threads) {
            Some(n) => StackOrder::Identity(n),
            None => Self::mapped(p, threads),
        }
    }

    pub(super) fn mapped(p: &Profile, threads: &[Thread]) -> Self {
        let mut index = vec![NONE; p.stacks.len()];
        let mut stacks = Vec::new();
        let mut path = Vec::new();
        for s in threads.iter().flat_map(|t| t.samples.iter()) {
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
    pub(super) fn identity(p: &Profile, threads: &[Thread]) -> Option<u32> {
        let mut n = 0;
        for s in threads.iter().flat_map(|t| t.samples.iter()) {
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

    pub(super) fn len(&self) -> usize {
        match self {
            StackOrder::Identity(n) => *n as usize,
            StackOrder::Mapped { stacks, .. } => stacks.len(),
        }
    }

    /// The output index of model stack `id`, which the thread uses.
    pub(super) fn index(&self, id: StackId) -> u32 {
        match self {
            StackOrder::Identity(_) => id,
            StackOrder::Mapped { index, .. } => index[id as usize],
        }
    }

    /// Model stack ids in output order.
    pub(super) fn model_ids(&self) -> impl Iterator<Item = StackId> + '_ {
        let (n, stacks) = match self {
            StackOrder::Identity(n) => (*n, &[][..]),
            StackOrder::Mapped { stacks, .. } => (0, &stacks[..]),
        };
        (0..n).chain(stacks.iter().copied())
    }
}
