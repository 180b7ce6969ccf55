//! Builds the deduplicated tables of a [`Profile`].

use rustc_hash::FxHashMap;

use super::stacks::{FIRST, NEXT, NO_NODE, WIDE};
use super::{Frame, FrameId, Func, FuncId, Profile, Stack, StackId};

/// Builds the deduplicated tables of a [`Profile`].
pub struct Interner {
    /// Funcs come from the module files, Fx-hashed; frames carry wasm
    /// offsets from the trace's address map, which a hostile trace could
    /// choose to collide in Fx: std's keyed hash for them. Neither is on
    /// the per-sample path (they are looked up once per distinct address).
    funcs: FxHashMap<Func, FuncId>,
    frames: std::collections::HashMap<Frame, FrameId>,
    /// The first root of the stack tree, or `WIDE`. A node's children are a
    /// list through [`Stacks`](super::Stacks)' links, the most recently used first: a
    /// sample's frames mostly repeat recent ones, so a walk of a short list
    /// beats a probe into a table of millions of nodes (a cache miss per
    /// frame).
    pub(super) roots: StackId,
    /// The children of parents with so many that a list walk would be slow
    /// (a wide fan-out, or a hostile trace).
    wide: FxHashMap<Stack, StackId>,
    /// With [`Interner::by_function`]: func id → the frame that stands for
    /// all of the function's frames in stacks (`NO_NODE`: none yet).
    func_frames: Option<Vec<FrameId>>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            funcs: FxHashMap::default(),
            frames: Default::default(),
            roots: NO_NODE,
            wide: FxHashMap::default(),
            func_frames: None,
        }
    }
}

/// Children a lookup walks before its parent's children go into a table.
pub(super) const MAX_WALK: usize = 32;

impl Interner {
    /// An interner whose stacks tell functions apart but not frames, but
    /// for samples' leaves: each node's frame from [`Interner::stack`] is
    /// the first frame given for its function, so stacks that differ only
    /// in addresses or lines within the same functions are one node, while
    /// [`Interner::leaf_stack`] keeps the leaf's own frame. What outputs
    /// that name functions and leaf lines only (folded stacks, the text
    /// report) need, and far fewer nodes when stacks are deep and varied
    /// (recursion through several call sites).
    pub fn by_function() -> Self {
        Interner {
            func_frames: Some(Vec::new()),
            ..Interner::default()
        }
    }

    pub fn func(&mut self, p: &mut Profile, f: Func) -> FuncId {
        *self.funcs.entry(f).or_insert_with_key(|f| {
            p.funcs.push(f.clone());
            (p.funcs.len() - 1) as FuncId
        })
    }

    pub fn frame(&mut self, p: &mut Profile, f: Frame) -> FrameId {
        *self.frames.entry(f).or_insert_with_key(|f| {
            p.frames.push(f.clone());
            (p.frames.len() - 1) as FrameId
        })
    }

    pub(super) fn head(&self, p: &Profile, parent: Option<StackId>) -> StackId {
        match parent {
            None => self.roots,
            Some(q) => p.stacks.link(q, FIRST),
        }
    }

    fn set_head(&mut self, p: &mut Profile, parent: Option<StackId>, head: StackId) {
        match parent {
            None => self.roots = head,
            Some(q) => p.stacks.set_link(q, FIRST, head),
        }
    }

    /// The node for `s` as a sample's leaf, for which
    /// [`Interner::by_function`] keeps `s.frame` itself; otherwise as
    /// [`Interner::stack`]. Such a node should not be a parent.
    pub fn leaf_stack(&mut self, p: &mut Profile, s: Stack) -> StackId {
        self.node(p, s)
    }

    /// The node for `s`, added to `p.stacks` if it is new. Every node of
    /// `p.stacks` must come from this interner, `s.parent` too, and (for
    /// [`Interner::by_function`]) `s.frame` must be one of `p.frames`.
    ///
    /// # Panics
    /// If the profile would have 2^31 stack nodes (hundreds of GB of
    /// trace; every exporter refuses far fewer).
    pub fn stack(&mut self, p: &mut Profile, mut s: Stack) -> StackId {
        if let Some(func_frames) = &mut self.func_frames {
            let func = p.frames[s.frame as usize].func as usize;
            if func >= func_frames.len() {
                func_frames.resize(func + 1, NO_NODE);
            }
            if func_frames[func] == NO_NODE {
                func_frames[func] = s.frame;
            }
            s.frame = func_frames[func];
        }
        self.node(p, s)
    }

    /// See [`Interner::stack`]: `s` as it is.
    fn node(&mut self, p: &mut Profile, s: Stack) -> StackId {
        assert!(p.stacks.linked, "stacks already finished");
        let head = self.head(p, s.parent);
        if head == WIDE {
            if let Some(&id) = self.wide.get(&s) {
                return id;
            }
        } else {
            let st = &mut p.stacks;
            let (mut prev, mut cur, mut walked) = (NO_NODE, head, 0);
            while cur != NO_NODE {
                let next = st.link(cur, NEXT);
                if st.frames.get(cur as usize) == s.frame {
                    if prev != NO_NODE {
                        // Move to front.
                        st.set_link(prev, NEXT, next);
                        st.set_link(cur, NEXT, head);
                        self.set_head(p, s.parent, cur);
                    }
                    return cur;
                }
                walked += 1;
                (prev, cur) = (cur, next);
            }
            if walked >= MAX_WALK {
                let mut c = head;
                while c != NO_NODE {
                    let frame = p.stacks.frames.get(c as usize);
                    self.wide.insert(
                        Stack {
                            parent: s.parent,
                            frame,
                        },
                        c,
                    );
                    c = p.stacks.link(c, NEXT);
                }
                self.set_head(p, s.parent, WIDE);
            }
        }
        let id = p.stacks.len() as StackId;
        assert!(id < WIDE, "more than 2^31 stack nodes");
        let next_sibling = if self.head(p, s.parent) == WIDE {
            // Its children are found through the table only.
            self.wide.insert(s, id);
            NO_NODE
        } else {
            let head = self.head(p, s.parent);
            self.set_head(p, s.parent, id);
            head
        };
        p.stacks.frames.push(s.frame);
        p.stacks.links.extend_from_slice(&[next_sibling, NO_NODE]);
        id
    }

    /// Done adding to `p`: gives its stacks their parents and drops what
    /// only the interner needs. Stacks can be read only after this.
    pub fn finish(self, p: &mut Profile) {
        p.stacks.unlink(self.roots, &self.wide);
    }
}
