//! Record types (SPEC.md §2); their encoding and decoding are in
//! `codec.rs`.

mod codec;

/// Record kinds (SPEC.md §2).
pub mod kind {
    pub const RUN_INFO: u8 = 1;
    pub const MODULE: u8 = 2;
    pub const THREAD_START: u8 = 3;
    pub const THREAD_END: u8 = 4;
    pub const SAMPLE: u8 = 5;
    pub const SAMPLES_LOST: u8 = 6;
    pub const END: u8 = 7;
    pub const CODE_ADDRESSES: u8 = 8;
    /// Format 3.3: a request a server handled (`wrec serve`).
    pub const REQUEST: u8 = 9;
    /// A kind byte with this bit set is a short sample: its payload length
    /// is the other seven bits, and no length field follows (SPEC.md §1.2).
    pub const SHORT_SAMPLE: u8 = 0x80;
}

/// The longest payload a short sample record holds.
pub const SHORT_SAMPLE_MAX: usize = 0x7f;

/// Sample flags (SPEC.md §2.4).
pub mod flags {
    /// Time and CPU time are absolute and no frames are kept.
    pub const KEYFRAME: u8 = 1 << 0;
    /// The thread was outside wasm code; every stack entry is a return address.
    pub const HOST: u8 = 1 << 1;
    /// The stack was deeper than the recorder's limit.
    pub const TRUNCATED: u8 = 1 << 2;
    /// The walk stopped at an untrusted frame pointer.
    pub const BROKEN: u8 = 1 << 3;
    /// The caller was read from the stack pointer (prologue or epilogue).
    pub const PROLOGUE: u8 = 1 << 4;
    /// The recorder did not read the CPU clock for this sample: its CPU
    /// field is absent (format 3.0 on; SPEC.md §2.4, "Samples without CPU
    /// time").
    pub const NO_CPU: u8 = 1 << 5;
    /// Every flag bit the format has room for (format 3.x: six bits).
    pub const ALL: u8 = 0x3f;
}

/// Which clock drives the sampling timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerClock {
    /// Wall clock (`CLOCK_MONOTONIC`): samples while blocked, too.
    Wall,
    /// Thread CPU time: samples only while the thread runs.
    Cpu,
}

/// Kind 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub interval_ns: u64,
    pub clock: TimerClock,
    pub recorder: String,
    pub args: Vec<String>,
}

/// One function of a compiled module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionEntry {
    /// Index in the module's function index space (imports included).
    pub index: u32,
    /// Start offset within the module's compiled code.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One entry of a module's address map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressMapEntry {
    /// Offset within the compiled code where this entry starts.
    pub code_offset: u64,
    /// Whole-file offset of the wasm instruction the code came from.
    pub wasm_offset: Option<u64>,
}

/// Kind 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRecord {
    pub id: u64,
    pub path: String,
    pub sha256: [u8; 32],
    pub text_addr: u64,
    pub text_len: u64,
    /// Sorted by `offset`.
    pub functions: Vec<FunctionEntry>,
    /// The full address map, sorted by `code_offset`; often empty, since a
    /// writer may give [`CodeAddresses`] instead.
    pub address_map: Vec<AddressMapEntry>,
    /// Exact wasm offsets of sampled code offsets (SPEC.md §2.7), sorted by
    /// `code_offset`, no duplicates. Never written in the module record: a
    /// [`crate::Decoder`] gathers them from every code-addresses record of
    /// the trace for this module.
    pub addresses: Vec<AddressMapEntry>,
    /// Where the module's bytes are when it is a core module inside a
    /// component (SPEC.md §2.2, since 3.2); `None`: the file at `path` is
    /// the module.
    pub inner: Option<InnerModule>,
}

/// A core module inside a component file (SPEC.md §2.2): which one, and
/// where its bytes are. The module record's wasm offsets count from
/// `offset`, the first byte of the inner module's own header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InnerModule {
    /// The component's core modules counted in file order from 0, those of
    /// nested components included (depth first), as Wasmtime numbers its
    /// static modules; modules Wasmtime generates (adapters between
    /// components) come after those of the file.
    pub index: u32,
    /// Offset of the module's bytes in the file.
    pub offset: u64,
    /// Length of the module's bytes; `0` for a module Wasmtime generated,
    /// which has no bytes in the file.
    pub len: u64,
}

impl InnerModule {
    /// The module's bytes within the component file `file`, if it has
    /// some and they lie inside it.
    pub fn slice<'a>(&self, file: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.len).ok().filter(|&n| n > 0)?;
        file.get(start..start.checked_add(len)?)
    }
}

impl ModuleRecord {
    /// Whether `addr` lies inside this module's compiled code.
    pub fn contains(&self, addr: u64) -> bool {
        addr.wrapping_sub(self.text_addr) < self.text_len
    }

    /// The function whose code holds `code_offset`, if any (trampolines have none).
    pub fn function_at(&self, code_offset: u64) -> Option<&FunctionEntry> {
        let i = self.functions.partition_point(|f| f.offset <= code_offset);
        let f = self.functions.get(i.checked_sub(1)?)?;
        (code_offset - f.offset < f.len).then_some(f)
    }

    /// The wasm file offset that `code_offset` came from, if the full map says.
    pub fn wasm_offset(&self, code_offset: u64) -> Option<u64> {
        let i = self
            .address_map
            .partition_point(|e| e.code_offset <= code_offset);
        self.address_map.get(i.checked_sub(1)?)?.wasm_offset
    }

    /// The recorded exact wasm offset of `code_offset` (SPEC.md §2.7):
    /// `None` if the trace has no entry for it, `Some(None)` if the entry
    /// says it has no wasm offset.
    pub fn exact_wasm_offset(&self, code_offset: u64) -> Option<Option<u64>> {
        let i = self
            .addresses
            .binary_search_by_key(&code_offset, |e| e.code_offset)
            .ok()?;
        Some(self.addresses[i].wasm_offset)
    }

    /// The wasm offset the full address map gives code offset `off` of
    /// function `func` (SPEC.md §2.7). Cranelift leaves some instructions
    /// without a wasm offset (code its optimizer moved or merged); those
    /// take the offset of the nearest mapped instruction before them in the
    /// same function, as a line-based profiler attributes unmapped code to
    /// the preceding line. Code before a function's first mapped
    /// instruction (its prologue) takes that instruction's offset.
    ///
    /// `mapped` holds the indices of the entries that have a wasm offset
    /// ([`ModuleRecord::mapped_entries`]): binary searches, so that a map of
    /// long unmapped runs cannot make every look-up scan them (quadratic in
    /// a hostile trace).
    pub fn nearest_wasm_offset(
        &self,
        mapped: &[usize],
        off: u64,
        func: &FunctionEntry,
    ) -> Option<u64> {
        let map = &self.address_map;
        let i = map.partition_point(|e| e.code_offset <= off);
        // The last mapped entry before i, and the first at or after it;
        // entries are sorted by code offset, so each is in the function or
        // none is.
        let j = mapped.partition_point(|&k| k < i);
        let before = j
            .checked_sub(1)
            .map(|j| &map[mapped[j]])
            .filter(|e| e.code_offset >= func.offset);
        let after = mapped
            .get(j)
            .map(|&k| &map[k])
            .filter(|e| e.code_offset < func.offset + func.len);
        before.or(after).and_then(|e| e.wasm_offset)
    }

    /// The indices of the full address map's entries that have a wasm offset.
    pub fn mapped_entries(&self) -> Vec<usize> {
        (0..self.address_map.len())
            .filter(|&k| self.address_map[k].wasm_offset.is_some())
            .collect()
    }
}

/// Kind 8: exact wasm offsets of code offsets that samples look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeAddresses {
    pub module: u64,
    /// Sorted by `code_offset`, no duplicates.
    pub entries: Vec<AddressMapEntry>,
}

/// The longest request path a request record holds, in bytes (SPEC.md §2.8).
pub const MAX_REQUEST_PATH: usize = 256;
/// The longest request method a request record holds, in bytes.
pub const MAX_REQUEST_METHOD: usize = 32;

/// Kind 9 (format 3.3): a request a server handled, from when it arrived
/// until the guest's handler returned, on the thread that ran it last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub thread: u32,
    /// Monotonic ns.
    pub start_ns: u64,
    /// Monotonic ns, at least `start_ns`.
    pub end_ns: u64,
    /// The request's index, from 0 in the order requests arrived.
    pub index: u64,
    /// At most [`MAX_REQUEST_METHOD`] bytes.
    pub method: String,
    /// Path and query, at most [`MAX_REQUEST_PATH`] bytes.
    pub path: String,
}

impl Request {
    /// A request record, its method and path cut to their bounds.
    pub fn new(
        thread: u32,
        start_ns: u64,
        end_ns: u64,
        index: u64,
        method: &str,
        path: &str,
    ) -> Request {
        Request {
            thread,
            start_ns,
            end_ns: end_ns.max(start_ns),
            index,
            method: cut(method, MAX_REQUEST_METHOD).to_owned(),
            path: cut(path, MAX_REQUEST_PATH).to_owned(),
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Kind 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStart {
    pub thread: u32,
    pub time_ns: u64,
    pub cpu_ns: u64,
    pub os_tid: u64,
    pub name: String,
}

/// Kind 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadEnd {
    pub thread: u32,
    pub time_ns: u64,
    pub cpu_ns: u64,
}

/// Why samples were lost (SPEC.md §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// The log was full: the next growth step was not ready or the disk is full.
    LogFull,
    /// The stack could not be walked.
    StackWalk,
    /// Timer expirations merged because the thread was not running when the
    /// timer fired (a busy machine); the next sample's time delta spans them.
    TimerOverrun,
    /// Anything else, including reason codes this reader does not know.
    Other,
}

/// Kind 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplesLost {
    pub thread: u32,
    pub count: u64,
    pub reason: LossReason,
}

/// How the guest's run ended (SPEC.md §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Exited,
    Trapped,
    Failed,
    Signaled,
}

/// Kind 7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub time_ns: u64,
    pub exit_kind: ExitKind,
    pub status: i64,
    pub message: String,
    pub samples_written: u64,
    pub samples_lost: u64,
}

/// A sample as stored: delta-encoded, not yet expanded (see [`crate::Decoder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSample<'a> {
    pub thread: u32,
    pub flags: u8,
    /// The time field: µs if `KEYFRAME`, else zigzag(Δt − interval) in µs.
    pub time: u64,
    /// The CPU field: µs if `KEYFRAME`, else zigzag(Δcpu − Δt) in µs, where
    /// both deltas run from the thread's previous sample that had a CPU
    /// field. `None` with `NO_CPU`.
    pub cpu: Option<u64>,
    pub keep: u64,
    /// The new frames' codes and literals, outermost first (SPEC.md §2.4).
    pub frames: &'a [u8],
}

/// Every record but samples, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    RunInfo(RunInfo),
    Module(ModuleRecord),
    ThreadStart(ThreadStart),
    ThreadEnd(ThreadEnd),
    SamplesLost(SamplesLost),
    End(End),
    CodeAddresses(CodeAddresses),
    Request(Request),
}
