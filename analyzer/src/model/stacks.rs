//! The stack prefix tree, as compact as the interner that builds it allows.

use rustc_hash::FxHashMap;

use super::{FrameId, Stack, StackId};

/// The stack prefix tree: [`Stack`]s by id. While an [`Interner`](super::Interner) builds
/// it, each node is its frame and the links the interner walks to find a
/// node's children (next sibling, first child), so that a look-up reads
/// one place per node it visits and the tree is stored once. A look-up
/// walks down from its own parent, so nodes need no parent link then;
/// [`Interner::finish`](super::Interner::finish) derives the parents from the child lists, in place,
/// leaving a parent and a frame a node. Frame ids take 2 bytes while they
/// fit (programs rarely have 65 536 distinct frames), so a node is 10 bytes
/// while interning and 6 after. It is most of a profile's memory when
/// stacks are deep and varied.
///
/// Nodes can only be read once the interner is finished: reading before
/// panics, like an index out of bounds, as a bug in the caller.
#[derive(Debug, Clone)]
pub struct Stacks {
    /// While linked, `LINKS` words a node: next sibling, first child.
    /// Finished: a node's parent (`NO_NODE` for a root).
    pub(super) links: Vec<u32>,
    pub(super) frames: Frames,
    pub(super) linked: bool,
}

/// Links per node while an interner builds the tree.
const LINKS: usize = 2;
pub(super) const NEXT: usize = 0;
pub(super) const FIRST: usize = 1;

/// Frame ids by node: `u16`s until one does not fit.
#[derive(Debug, Clone)]
pub(super) enum Frames {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Frames {
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            Frames::Narrow(v) => v.len(),
            Frames::Wide(v) => v.len(),
        }
    }

    #[inline]
    pub(super) fn get(&self, i: usize) -> FrameId {
        match self {
            Frames::Narrow(v) => FrameId::from(v[i]),
            Frames::Wide(v) => v[i],
        }
    }

    /// Narrow ids as wide ones, if `frame` needs it (once: 4 bytes a node
    /// next to the 2 of the narrow ids, while they are copied).
    #[inline]
    fn fit(&mut self, frame: FrameId) {
        if let Frames::Narrow(v) = self {
            if u16::try_from(frame).is_err() {
                *self = Frames::Wide(v.iter().map(|&f| FrameId::from(f)).collect());
            }
        }
    }

    #[inline]
    pub(super) fn push(&mut self, frame: FrameId) {
        self.fit(frame);
        match self {
            // `fit` made it wide if it does not fit.
            Frames::Narrow(v) => v.push(frame as u16),
            Frames::Wide(v) => v.push(frame),
        }
    }

    fn set(&mut self, i: usize, frame: FrameId) {
        self.fit(frame);
        match self {
            Frames::Narrow(v) => v[i] = frame as u16,
            Frames::Wide(v) => v[i] = frame,
        }
    }

    fn shrink_to_fit(&mut self) {
        match self {
            Frames::Narrow(v) => v.shrink_to_fit(),
            Frames::Wide(v) => v.shrink_to_fit(),
        }
    }
}

impl Default for Stacks {
    fn default() -> Self {
        Stacks {
            links: Vec::new(),
            frames: Frames::Narrow(Vec::new()),
            linked: true,
        }
    }
}

impl Stacks {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node `i`; panics if there is none, like indexing, or if the
    /// interner that builds these stacks is not finished.
    pub fn get(&self, i: usize) -> Stack {
        assert!(!self.linked, "stacks read before Interner::finish");
        let parent = self.links[i];
        Stack {
            parent: (parent != NO_NODE).then_some(parent),
            frame: self.frames.get(i),
        }
    }

    /// The nodes in id order, by value.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Stack> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Rewrites node `i` of finished stacks, e.g. to test how exporters
    /// take a damaged model. `Some(StackId::MAX)` is not a valid parent.
    pub fn set(&mut self, i: usize, s: Stack) {
        debug_assert_ne!(s.parent, Some(NO_NODE));
        assert!(!self.linked, "stacks set before Interner::finish");
        self.links[i] = s.parent.unwrap_or(NO_NODE);
        self.frames.set(i, s.frame);
    }

    /// Link `field` of node `i`, which has its links.
    #[inline]
    pub(super) fn link(&self, i: StackId, field: usize) -> u32 {
        self.links[i as usize * LINKS + field]
    }

    #[inline]
    pub(super) fn set_link(&mut self, i: StackId, field: usize, value: u32) {
        self.links[i as usize * LINKS + field] = value;
    }

    /// Turns the links into parents and drops them, in place: each node
    /// is in exactly one child list (its parent's; the roots' for a root)
    /// or in `wide`, so walking every list and overwriting each member's
    /// next-sibling word with the list's parent, after reading it, leaves
    /// every node's parent in that word.
    pub(super) fn unlink(&mut self, roots: StackId, wide: &FxHashMap<Stack, StackId>) {
        if !self.linked {
            return;
        }
        let n = self.len();
        let relink = |links: &mut [u32], head: StackId, parent: StackId| {
            let mut c = head;
            while c != NO_NODE {
                let at = c as usize * LINKS + NEXT;
                c = links[at];
                links[at] = parent;
            }
        };
        if roots != WIDE {
            relink(&mut self.links, roots, NO_NODE);
        }
        for q in 0..n {
            let head = self.links[q * LINKS + FIRST];
            if head != WIDE {
                relink(&mut self.links, head, q as StackId);
            }
        }
        // The children of wide parents (their next-sibling words are stale
        // list links or `NO_NODE`; no list walk above reached them).
        for (s, &id) in wide {
            self.links[id as usize * LINKS + NEXT] = s.parent.unwrap_or(NO_NODE);
        }
        // Node i's parent goes to word i, at or below its own (2i) and
        // below those of every later node.
        for i in 0..n {
            self.links[i] = self.links[LINKS * i + NEXT];
        }
        self.links.truncate(n);
        self.links.shrink_to_fit();
        self.frames.shrink_to_fit();
        self.linked = false;
    }
}

/// Equal when the nodes are, whatever the order of the interner's lists.
impl PartialEq for Stacks {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Stacks {}

/// The end of a child list.
pub(super) const NO_NODE: StackId = StackId::MAX;
/// The list head of a parent whose children are in the interner's wide
/// table; node ids stay below it (see [`Interner::stack`](super::Interner::stack)).
pub(super) const WIDE: StackId = 1 << 31;
