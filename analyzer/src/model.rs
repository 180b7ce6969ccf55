//! The symbolized profile every exporter reads.
//!
//! The resolver (`resolve.rs`) builds it from a trace and the wasm files;
//! the exporters (`firefox.rs`, `folded.rs`, `text.rs`) only read it. Tables
//! are deduplicated: each distinct function, frame and stack appears once,
//! and samples point at stacks, so a million samples with deep stacks stay
//! small.
//!
//! No host address ever enters this model: frames are identified by wasm
//! file offsets, names and source locations only, so every output can be
//! shared with the people whose code it is.

use rustc_hash::FxHashMap;

/// Index into [`Profile::funcs`].
pub type FuncId = u32;
/// Index into [`Profile::frames`].
pub type FrameId = u32;
/// Index into [`Profile::stacks`].
pub type StackId = u32;

/// What kind of code a function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Compiled WebAssembly.
    Wasm,
    /// A host call: a WASI import or a runtime libcall (`memory.grow`).
    Host,
    /// Synthetic frames: `[truncated]`, `[unknown]`, ...
    Other,
}

/// A function: a wasm function, an inlined function (from DWARF), or a host
/// import / libcall.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Func {
    /// Demangled name, e.g. `fib`, `core::ptr::drop_in_place<T>`,
    /// `wasi_snapshot_preview1::fd_write`, `wasm-function[12]`.
    pub name: String,
    /// Source file from DWARF, as written there (e.g. `fixtures/src/fib.c`).
    pub file: Option<String>,
    /// The line where the function is declared (DWARF `DW_AT_decl_line`), if known.
    pub line: Option<u32>,
    pub category: Category,
    /// Index into [`Profile::libs`] of the module it belongs to.
    pub lib: Option<u32>,
}

/// A frame: one position in a function. Frames of one inlined chain share
/// `address` and differ in `inline_depth` (outermost 0), `func` and `line`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub func: FuncId,
    /// Wasm whole-file offset of the instruction (for a return address: of
    /// the call instruction). `None` for synthetic and host frames.
    pub address: Option<u64>,
    /// Source line and column of this position, from DWARF.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub inline_depth: u32,
}

/// A node of the stack prefix tree: `frame` called from `parent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stack {
    pub parent: Option<StackId>,
    pub frame: FrameId,
}

/// The stack prefix tree: [`Stack`]s by id. While an [`Interner`] builds
/// it, each node is its frame and the links the interner walks to find a
/// node's children (next sibling, first child), so that a look-up reads
/// one place per node it visits and the tree is stored once. A look-up
/// walks down from its own parent, so nodes need no parent link then;
/// [`Interner::finish`] derives the parents from the child lists, in place,
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
    links: Vec<u32>,
    frames: Frames,
    linked: bool,
}

/// Links per node while an interner builds the tree.
const LINKS: usize = 2;
const NEXT: usize = 0;
const FIRST: usize = 1;

/// Frame ids by node: `u16`s until one does not fit.
#[derive(Debug, Clone)]
enum Frames {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl Frames {
    fn len(&self) -> usize {
        match self {
            Frames::Narrow(v) => v.len(),
            Frames::Wide(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> FrameId {
        match self {
            Frames::Narrow(v) => FrameId::from(v[i]),
            Frames::Wide(v) => v[i],
        }
    }

    /// Narrow ids as wide ones, if `frame` needs it (once: 4 bytes a node
    /// next to the 2 of the narrow ids, while they are copied).
    fn fit(&mut self, frame: FrameId) {
        if let Frames::Narrow(v) = self {
            if u16::try_from(frame).is_err() {
                *self = Frames::Wide(v.iter().map(|&f| FrameId::from(f)).collect());
            }
        }
    }

    fn push(&mut self, frame: FrameId) {
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
    fn link(&self, i: StackId, field: usize) -> u32 {
        self.links[i as usize * LINKS + field]
    }

    fn set_link(&mut self, i: StackId, field: usize, value: u32) {
        self.links[i as usize * LINKS + field] = value;
    }

    /// Turns the links into parents and drops them, in place: each node
    /// is in exactly one child list (its parent's; the roots' for a root)
    /// or in `wide`, so walking every list and overwriting each member's
    /// next-sibling word with the list's parent, after reading it, leaves
    /// every node's parent in that word.
    fn unlink(&mut self, roots: StackId, wide: &FxHashMap<Stack, StackId>) {
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

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Nanoseconds since [`Profile::start_ns`] (monotonic).
    pub time_ns: u64,
    /// Thread CPU nanoseconds since the thread's previous sample.
    pub cpu_delta_ns: u64,
    /// The leaf stack node; `None` for a sample with no frames at all.
    /// `Some(StackId::MAX)` is not a valid node (no profile has that many).
    pub stack: Option<StackId>,
}

/// A thread's samples, 3 to 5 bytes each instead of a [`Sample`]'s 24: a
/// million samples is most of a profile's memory.
///
/// They are a byte stream read in order, three varints a sample. The stack:
/// `zigzag(id − previous id)` (none is −1): a sample's leaf was mostly
/// created for it or for a recent sample, so it is near the previous one.
/// Traces carry whole µs (the format's sample records hold µs deltas), so
/// then the change of the time delta from the previous sample's,
/// `zigzag(Δt − Δt_prev)` in µs (a steady interval gives 0), and
/// `zigzag(Δcpu − Δt)` in µs (a busy thread's CPU time follows the wall
/// clock). These two are shifted left by one; a set low bit instead marks
/// an escape followed by the exact ns value, for values that are not whole
/// µs or would not fit, so any [`Sample`] comes back exactly (times in any
/// order, with wrapping arithmetic). Only sequential access is offered:
/// every reader walks the samples in order.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Samples {
    /// Per sample, its stack token, time token and CPU token (see above).
    bytes: Vec<u8>,
    len: usize,
    /// Encoder state: the last sample's stack and time, and the µs time
    /// delta the next one is predicted from.
    last: Cursor,
}

/// Where a decoder (or the encoder) stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Cursor {
    /// The stack id, −1 for none.
    stack: i64,
    time_ns: u64,
    /// The last Δt that was whole µs, in µs (0 at the start).
    dt_us: i64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    (z >> 1) as i64 ^ -((z & 1) as i64)
}

/// Zigzag of a token value, with room for the escape bit; `None` if it
/// does not fit in 63 bits.
fn token(v: i64) -> Option<u64> {
    let z = zigzag(v);
    (z >> 63 == 0).then_some(z << 1)
}

fn untoken(t: u64) -> i64 {
    unzigzag(t >> 1)
}

/// Whole µs of `ns`, if it is.
fn whole_us(ns: i64) -> Option<i64> {
    (ns % 1000 == 0).then_some(ns / 1000)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint the encoder wrote at `*at` (the stream is never foreign).
fn get_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

impl Samples {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, s: Sample) {
        debug_assert_ne!(s.stack, Some(StackId::MAX));
        self.len += 1;
        let stack = s.stack.map_or(-1, i64::from);
        put_varint(&mut self.bytes, zigzag(stack - self.last.stack));
        self.last.stack = stack;
        let dt_ns = s.time_ns.wrapping_sub(self.last.time_ns) as i64;
        // The µs Δt the CPU delta is predicted from: this sample's, or 0
        // when it is not whole µs.
        let mut dt_us = 0;
        match whole_us(dt_ns).and_then(|us| Some((us, token(us.wrapping_sub(self.last.dt_us))?))) {
            Some((us, t)) => {
                put_varint(&mut self.bytes, t);
                self.last.dt_us = us;
                dt_us = us;
            }
            None => {
                put_varint(&mut self.bytes, 1);
                put_varint(&mut self.bytes, dt_ns as u64);
            }
        }
        self.last.time_ns = s.time_ns;
        let cpu = i64::try_from(s.cpu_delta_ns).ok().and_then(whole_us);
        match cpu.and_then(|us| token(us.wrapping_sub(dt_us))) {
            Some(t) => put_varint(&mut self.bytes, t),
            None => {
                put_varint(&mut self.bytes, 1);
                put_varint(&mut self.bytes, s.cpu_delta_ns);
            }
        }
    }

    pub fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(3 * additional);
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The samples in order, by value.
    pub fn iter(&self) -> SampleIter<'_> {
        SampleIter {
            left: self.len,
            bytes: &self.bytes,
            at: 0,
            cur: Cursor::default(),
        }
    }
}

impl std::fmt::Debug for Samples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// See [`Samples::iter`].
pub struct SampleIter<'a> {
    left: usize,
    bytes: &'a [u8],
    at: usize,
    cur: Cursor,
}

impl Iterator for SampleIter<'_> {
    type Item = Sample;
    fn next(&mut self) -> Option<Sample> {
        self.left = self.left.checked_sub(1)?;
        self.cur.stack += unzigzag(get_varint(self.bytes, &mut self.at));
        let mut dt_us = 0;
        let t = get_varint(self.bytes, &mut self.at);
        if t & 1 == 0 {
            dt_us = self.cur.dt_us.wrapping_add(untoken(t));
            self.cur.dt_us = dt_us;
            self.cur.time_ns = self
                .cur
                .time_ns
                .wrapping_add(dt_us.wrapping_mul(1000) as u64);
        } else {
            let dt_ns = get_varint(self.bytes, &mut self.at);
            self.cur.time_ns = self.cur.time_ns.wrapping_add(dt_ns);
        }
        let c = get_varint(self.bytes, &mut self.at);
        let cpu_delta_ns = if c & 1 == 0 {
            untoken(c).wrapping_add(dt_us).wrapping_mul(1000) as u64
        } else {
            get_varint(self.bytes, &mut self.at)
        };
        Some(Sample {
            time_ns: self.cur.time_ns,
            cpu_delta_ns,
            stack: StackId::try_from(self.cur.stack).ok(),
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for SampleIter<'_> {}

impl<'a> IntoIterator for &'a Samples {
    type Item = Sample;
    type IntoIter = SampleIter<'a>;
    fn into_iter(self) -> SampleIter<'a> {
        self.iter()
    }
}

impl FromIterator<Sample> for Samples {
    fn from_iter<I: IntoIterator<Item = Sample>>(iter: I) -> Self {
        let mut s = Samples::new();
        for x in iter {
            s.push(x);
        }
        s
    }
}

impl From<Vec<Sample>> for Samples {
    fn from(v: Vec<Sample>) -> Self {
        v.into_iter().collect()
    }
}

/// One guest thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thread {
    pub name: String,
    /// The thread's id within the trace.
    pub tid: u32,
    /// Nanoseconds since [`Profile::start_ns`].
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub samples: Samples,
    /// Samples the recorder lost on this thread.
    pub lost: u64,
}

/// A wasm module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lib {
    /// File name, e.g. `fib-O2.wasm`.
    pub name: String,
    /// Path as given to the analyzer or recorded in the trace.
    pub path: String,
    /// SHA-256 of the module, lower-case hex.
    pub sha256: String,
}

/// How the run ended, from the trace's end record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// `exited`, `trapped`, `failed`, `signaled`.
    pub kind: String,
    pub status: i64,
    pub message: String,
}

/// Metadata about the whole run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Meta {
    /// The recorded program's name (file name of its main module).
    pub product: String,
    /// Wall-clock time of `start_ns`, in ms since the Unix epoch.
    pub start_unix_ms: f64,
    /// Sampling interval in ns.
    pub interval_ns: u64,
    /// `wall` or `cpu`.
    pub clock: String,
    /// The guest's arguments, `argv[0]` first.
    pub args: Vec<String>,
    /// The recorder's name and version.
    pub recorder: String,
    /// `None` if the trace has no end record (the recorder was killed).
    pub end: Option<RunEnd>,
    /// Problems met while reading and symbolizing, one line each.
    pub warnings: Vec<String>,
    /// Whether frames carry DWARF lines (`--dwarf` and the module had DWARF).
    pub has_lines: bool,
    /// Samples the recorder took without reading the CPU clock (`NO_CPU`):
    /// their CPU deltas are their share of the next reading (SPEC.md §2.4).
    pub samples_without_cpu: u64,
}

/// A whole symbolized profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub meta: Meta,
    /// Monotonic ns of the profile's zero (the first thread's start).
    pub start_ns: u64,
    pub funcs: Vec<Func>,
    pub frames: Vec<Frame>,
    pub stacks: Stacks,
    pub threads: Vec<Thread>,
    pub libs: Vec<Lib>,
}

impl Profile {
    /// The frames of a stack, leaf first.
    pub fn stack_frames(&self, mut stack: Option<StackId>) -> impl Iterator<Item = FrameId> + '_ {
        std::iter::from_fn(move || {
            let s = self.stacks.get(stack? as usize);
            stack = s.parent;
            Some(s.frame)
        })
    }

    /// Total number of samples over all threads.
    pub fn sample_count(&self) -> usize {
        self.threads.iter().map(|t| t.samples.len()).sum()
    }
}

/// Builds the deduplicated tables of a [`Profile`].
pub struct Interner {
    /// Funcs come from the module files, Fx-hashed; frames carry wasm
    /// offsets from the trace's address map, which a hostile trace could
    /// choose to collide in Fx: std's keyed hash for them. Neither is on
    /// the per-sample path (they are looked up once per distinct address).
    funcs: FxHashMap<Func, FuncId>,
    frames: std::collections::HashMap<Frame, FrameId>,
    /// The first root of the stack tree, or `WIDE`. A node's children are a
    /// list through [`Stacks`]' links, the most recently used first: a
    /// sample's frames mostly repeat recent ones, so a walk of a short list
    /// beats a probe into a table of millions of nodes (a cache miss per
    /// frame).
    roots: StackId,
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

/// The end of a child list.
const NO_NODE: StackId = StackId::MAX;
/// The list head of a parent whose children are in [`Interner::wide`];
/// node ids stay below it (see [`Interner::stack`]).
const WIDE: StackId = 1 << 31;
/// Children a lookup walks before its parent's children go into a table.
const MAX_WALK: usize = 32;

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

    fn head(&self, p: &Profile, parent: Option<StackId>) -> StackId {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefix tree gives the same ids as a plain map, whatever the order
    /// of look-ups (move-to-front reorders the lists) and the fan-out (wide
    /// parents move to a table).
    #[test]
    fn stack_interner_matches_a_map() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut rnd = move |n: u64| next() % n;
        for fanout in [2, 5, 40, 300] {
            let mut p = Profile::default();
            let mut i = Interner::default();
            let mut reference: std::collections::HashMap<Stack, StackId> = Default::default();
            for _ in 0..20_000 {
                let parent = match rnd(4) {
                    0 => None,
                    _ if reference.is_empty() => None,
                    _ => Some(rnd(p.stacks.len() as u64) as StackId),
                };
                let s = Stack {
                    parent,
                    frame: rnd(fanout) as FrameId,
                };
                let next = reference.len() as StackId;
                let want = *reference.entry(s).or_insert(next);
                assert_eq!(i.stack(&mut p, s), want, "fanout {fanout}: {s:?}");
            }
            assert_eq!(p.stacks.len(), reference.len());
            i.finish(&mut p);
            assert_eq!(p.stacks.len(), reference.len());
            for (s, id) in reference {
                assert_eq!(p.stacks.get(id as usize), s);
            }
        }
    }

    /// `finish` gives every node its parent, whichever way its parent keeps
    /// its children: a list reordered by look-ups, the wide table (roots
    /// too), a long chain; and a finished tree reads as what was interned.
    #[test]
    fn finish_gives_every_node_its_parent() {
        let mut p = Profile::default();
        let mut i = Interner::default();
        let mut want: Vec<Stack> = Vec::new();
        let mut add = |p: &mut Profile, s: Stack| {
            let id = i.stack(p, s);
            if id as usize == want.len() {
                want.push(s);
            }
            assert_eq!(want[id as usize], s);
            id
        };
        // Wide roots: more than MAX_WALK of them.
        let roots: Vec<StackId> = (0..100)
            .map(|f| {
                add(
                    &mut p,
                    Stack {
                        parent: None,
                        frame: f,
                    },
                )
            })
            .collect();
        // A deep chain under one root, looked up twice (move-to-front does
        // nothing on one-child lists, but the second walk must find them).
        let mut chain_leaf = 0;
        for _ in 0..2 {
            chain_leaf = roots[7];
            for f in 0..10_000 {
                let s = Stack {
                    parent: Some(chain_leaf),
                    frame: f % 3,
                };
                chain_leaf = add(&mut p, s);
            }
        }
        // A wide parent in the middle of the chain, and a narrow one whose
        // list the look-ups below reorder.
        let (wide, narrow) = (roots[7] + 100, roots[42]);
        for k in 0..3 {
            for f in 0..(MAX_WALK as u32 + 10) {
                let f = (f * 5 + k) % (MAX_WALK as u32 + 10);
                add(
                    &mut p,
                    Stack {
                        parent: Some(wide),
                        frame: 1000 + f,
                    },
                );
            }
            for f in (0..5).rev() {
                let child = add(
                    &mut p,
                    Stack {
                        parent: Some(narrow),
                        frame: f + k,
                    },
                );
                add(
                    &mut p,
                    Stack {
                        parent: Some(child),
                        frame: 9,
                    },
                );
            }
        }
        assert_eq!(i.head(&p, Some(wide)), WIDE, "the test needs a wide parent");
        assert_eq!(i.roots, WIDE, "the test needs wide roots");
        i.finish(&mut p);
        assert_eq!(p.stacks.iter().collect::<Vec<_>>(), want);
        // The chain's leaf walks up through 10 000 frames to its root.
        assert_eq!(p.stack_frames(Some(chain_leaf)).count(), 10_001);
    }

    /// Frame ids that do not fit 2 bytes, first met while interning or in
    /// a rewrite of a finished tree, widen the nodes' frames and keep the
    /// ones before.
    #[test]
    fn frame_ids_beyond_u16_widen_the_frames() {
        let big = FrameId::from(u16::MAX) + 1;
        let mut p = Profile::default();
        let mut i = Interner::default();
        let mut want = Vec::new();
        let mut node = None;
        for frame in [1, u16::MAX.into(), 7, big, 3, FrameId::MAX - 1, 7] {
            let s = Stack {
                parent: node,
                frame,
            };
            node = Some(i.stack(&mut p, s));
            want.push(s);
            // Found again, narrow or wide.
            assert_eq!(i.stack(&mut p, s), node.unwrap());
        }
        i.finish(&mut p);
        assert_eq!(p.stacks.iter().collect::<Vec<_>>(), want);

        let mut p = Profile::default();
        let mut i = Interner::default();
        let root = i.stack(
            &mut p,
            Stack {
                parent: None,
                frame: 5,
            },
        );
        i.stack(
            &mut p,
            Stack {
                parent: Some(root),
                frame: 6,
            },
        );
        i.finish(&mut p);
        assert!(matches!(p.stacks.frames, Frames::Narrow(_)));
        p.stacks.set(
            0,
            Stack {
                parent: None,
                frame: big,
            },
        );
        assert_eq!(
            p.stacks.get(0),
            Stack {
                parent: None,
                frame: big
            }
        );
        assert_eq!(
            p.stacks.get(1),
            Stack {
                parent: Some(0),
                frame: 6
            }
        );
    }

    /// By function, a stack node stands for every frame of its function
    /// (the first one given to the interner), under any parent, but a
    /// leaf's keeps its frame; by frame, each frame is its own node.
    #[test]
    fn stacks_by_function_merge_the_frames_of_a_function() {
        for by_function in [false, true] {
            let mut p = Profile::default();
            let mut i = if by_function {
                Interner::by_function()
            } else {
                Interner::default()
            };
            let func = |i: &mut Interner, p: &mut Profile, name: &str| {
                i.func(
                    p,
                    Func {
                        name: name.into(),
                        file: None,
                        line: None,
                        category: Category::Wasm,
                        lib: None,
                    },
                )
            };
            let (fa, fb) = (func(&mut i, &mut p, "a"), func(&mut i, &mut p, "b"));
            let frame = |i: &mut Interner, p: &mut Profile, func, address| {
                i.frame(
                    p,
                    Frame {
                        func,
                        address: Some(address),
                        line: None,
                        column: None,
                        inline_depth: 0,
                    },
                )
            };
            let a1 = frame(&mut i, &mut p, fa, 1);
            let a2 = frame(&mut i, &mut p, fa, 2);
            let b1 = frame(&mut i, &mut p, fb, 3);
            let mut stack = |frames: &[FrameId]| {
                let mut node = None;
                for &frame in frames {
                    node = Some(i.stack(
                        &mut p,
                        Stack {
                            parent: node,
                            frame,
                        },
                    ));
                }
                node.unwrap()
            };
            let x = stack(&[a1, b1]);
            let y = stack(&[a2, b1]);
            let z = stack(&[b1, a2]);
            let w = stack(&[b1, a1]);
            assert_eq!(x == y, by_function);
            assert_eq!(z == w, by_function);
            // A leaf keeps its own frame either way: `b` → `a` at 2.
            let b = stack(&[b1]);
            let leaf = i.leaf_stack(
                &mut p,
                Stack {
                    parent: Some(b),
                    frame: a2,
                },
            );
            assert_ne!(leaf, w);
            assert_eq!(leaf == z, !by_function);
            i.finish(&mut p);
            assert_eq!(p.stacks.len(), if by_function { 5 } else { 7 });
            // `a` at address 2 is `a` at 1, the first frame of `a` seen.
            let frames: Vec<FrameId> = p.stack_frames(Some(z)).collect();
            assert_eq!(frames, vec![if by_function { a1 } else { a2 }, b1]);
            let frames: Vec<FrameId> = p.stack_frames(Some(leaf)).collect();
            assert_eq!(frames, vec![a2, b1]);
        }
    }

    /// Samples come back exactly as pushed: times in any order and at any
    /// distance (wrapping), deltas that are or are not whole µs, at the
    /// ends of the `u64` range, and samples without stacks.
    #[test]
    fn samples_round_trip() {
        let big = u64::from(u32::MAX);
        let cpus = [0, 1, big - 1, big, big + 1, 7, u64::MAX / 4, u64::MAX, big];
        let mut v: Vec<Sample> = cpus
            .iter()
            .enumerate()
            .map(|(i, &cpu_delta_ns)| Sample {
                time_ns: u64::MAX - i as u64,
                cpu_delta_ns,
                stack: (i % 3 != 0).then_some(i as StackId * 1000),
            })
            .collect();
        let mut rnd = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut t = 0u64;
        let edges = [
            0,
            1000,
            i64::MAX as u64 / 1000 * 1000,
            u64::MAX / 1000 * 1000,
        ];
        for i in 0..10_000u64 {
            let r = rnd();
            // Mostly a steady interval with jitter in whole µs, as traces
            // have; now and then a jump, a step back, a non-µs value or an
            // extreme one.
            t = match r % 16 {
                0 => t.wrapping_sub(r >> 40),
                1 => t.wrapping_add(r >> 8),
                2 => edges[(r >> 8) as usize % edges.len()],
                3 => rnd(),
                _ => t.wrapping_add(20_000 + (r >> 60) * 1000),
            };
            let cpu_delta_ns = match (r >> 4) % 8 {
                0 => rnd(),
                1 => (r >> 20) * 1000,
                2 => edges[(r >> 12) as usize % edges.len()],
                _ => 19_000 + (r >> 61) * 1000,
            };
            v.push(Sample {
                time_ns: t,
                cpu_delta_ns,
                stack: (!(r >> 7).is_multiple_of(5)).then_some((i * 7) as StackId),
            });
        }
        let s = Samples::from(v.clone());
        assert_eq!(s.len(), v.len());
        assert_eq!(s.iter().len(), v.len());
        assert_eq!(s.iter().collect::<Vec<_>>(), v);
        assert_eq!((&s).into_iter().count(), v.len());
        // Equal exactly when the samples are.
        assert_eq!(Samples::from(v.clone()), s);
        v[5000].cpu_delta_ns ^= 1;
        assert_ne!(Samples::from(v), s);
    }

    /// A steady trace's samples take 3 bytes each (three 1-byte tokens)
    /// when each stack is near the previous one, the case this type is for.
    #[test]
    fn samples_of_a_steady_trace_are_small() {
        let mut s = Samples::new();
        for i in 0..1000u64 {
            let jitter = [0, 3, 0, 12, 0, 1][i as usize % 6] * 1000;
            s.push(Sample {
                time_ns: i * 20_000 + jitter,
                cpu_delta_ns: 20_000 - (i % 3) * 1000,
                stack: Some((i * 5 % 17) as StackId),
            });
        }
        assert_eq!(s.bytes.len(), 1000 * 3);
    }
}
