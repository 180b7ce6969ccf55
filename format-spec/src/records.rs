//! Record types (SPEC.md §2), their encoding and their decoding.

use crate::error::{Damage, ReadError};
use crate::varint;

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

impl Record {
    pub fn kind(&self) -> u8 {
        match self {
            Record::RunInfo(_) => kind::RUN_INFO,
            Record::Module(_) => kind::MODULE,
            Record::ThreadStart(_) => kind::THREAD_START,
            Record::ThreadEnd(_) => kind::THREAD_END,
            Record::SamplesLost(_) => kind::SAMPLES_LOST,
            Record::End(_) => kind::END,
            Record::CodeAddresses(_) => kind::CODE_ADDRESSES,
            Record::Request(_) => kind::REQUEST,
        }
    }

    /// Appends this record's payload (without framing) to `out`.
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        use varint::push;
        match self {
            Record::RunInfo(r) => {
                push(out, r.interval_ns);
                out.push(match r.clock {
                    TimerClock::Wall => 0,
                    TimerClock::Cpu => 1,
                });
                push_str(out, &r.recorder);
                push(out, r.args.len() as u64);
                for a in &r.args {
                    push_str(out, a);
                }
            }
            Record::Module(m) => {
                push(out, m.id);
                push_str(out, &m.path);
                out.extend_from_slice(&m.sha256);
                push(out, m.text_addr);
                push(out, m.text_len);
                push(out, m.functions.len() as u64);
                // Index as the difference from the previous index + 1, start
                // as the gap after the previous function's end.
                let (mut next_index, mut end) = (0i64, 0u64);
                for f in &m.functions {
                    push(out, varint::zigzag(i64::from(f.index) - next_index));
                    push(out, f.offset.wrapping_sub(end));
                    push(out, f.len);
                    next_index = i64::from(f.index) + 1;
                    end = f.offset.wrapping_add(f.len);
                }
                push_map(out, &m.address_map);
                // Appended in 3.2; absent for a module file of its own.
                if let Some(inner) = &m.inner {
                    push(out, u64::from(inner.index) + 1);
                    push(out, inner.offset);
                    push(out, inner.len);
                }
            }
            Record::ThreadStart(t) => {
                push(out, u64::from(t.thread));
                push(out, t.time_ns);
                push(out, t.cpu_ns);
                push(out, t.os_tid);
                push_str(out, &t.name);
            }
            Record::ThreadEnd(t) => {
                push(out, u64::from(t.thread));
                push(out, t.time_ns);
                push(out, t.cpu_ns);
            }
            Record::SamplesLost(l) => {
                push(out, u64::from(l.thread));
                push(out, l.count);
                out.push(match l.reason {
                    LossReason::LogFull => 1,
                    LossReason::StackWalk => 2,
                    LossReason::Other => 3,
                    LossReason::TimerOverrun => 4,
                });
            }
            Record::End(e) => {
                push(out, e.time_ns);
                out.push(match e.exit_kind {
                    ExitKind::Exited => 0,
                    ExitKind::Trapped => 1,
                    ExitKind::Failed => 2,
                    ExitKind::Signaled => 3,
                });
                push(out, varint::zigzag(e.status));
                push_str(out, &e.message);
                push(out, e.samples_written);
                push(out, e.samples_lost);
            }
            Record::CodeAddresses(a) => {
                push(out, a.module);
                push_map(out, &a.entries);
            }
            Record::Request(r) => {
                push(out, u64::from(r.thread));
                push(out, r.start_ns);
                push(out, r.end_ns.saturating_sub(r.start_ns));
                push(out, r.index);
                push_str(out, &r.method);
                push_str(out, &r.path);
            }
        }
    }

    /// Decodes a payload of a known kind other than samples. `offset` is the
    /// record's offset in the file, for errors.
    pub fn decode(kind: u8, payload: &[u8], offset: u64) -> Result<Option<Record>, ReadError> {
        let mut p = Payload::new(payload, offset);
        let rec = match kind {
            kind::RUN_INFO => {
                let interval_ns = p.varint()?;
                let clock = match p.u8()? {
                    0 => TimerClock::Wall,
                    1 => TimerClock::Cpu,
                    _ => return Err(p.damage(Damage::BadValue("timer clock"))),
                };
                let recorder = p.string()?;
                let n = p.count(1)?;
                let mut args = Vec::with_capacity(n);
                for _ in 0..n {
                    args.push(p.string()?);
                }
                Record::RunInfo(RunInfo {
                    interval_ns,
                    clock,
                    recorder,
                    args,
                })
            }
            kind::MODULE => {
                let id = p.varint()?;
                let path = p.string()?;
                let sha256 = p.array::<32>()?;
                let text_addr = p.varint()?;
                let text_len = p.varint()?;
                let n = p.count(3)?;
                let mut functions = Vec::with_capacity(n);
                let (mut next_index, mut end) = (0i64, 0u64);
                for _ in 0..n {
                    let index = u32::try_from(next_index + varint::unzigzag(p.varint()?))
                        .map_err(|_| p.damage(Damage::BadValue("function index")))?;
                    let offset = end
                        .checked_add(p.varint()?)
                        .ok_or_else(|| p.damage(Damage::BadValue("function offset")))?;
                    let len = p.varint()?;
                    end = offset
                        .checked_add(len)
                        .filter(|&e| e <= text_len)
                        .ok_or_else(|| {
                            p.damage(Damage::BadValue("function outside the module's code"))
                        })?;
                    functions.push(FunctionEntry { index, offset, len });
                    next_index = i64::from(index) + 1;
                }
                let address_map = p.map()?;
                let inner = if p.at_end() {
                    None
                } else {
                    match p.varint()? {
                        0 => None,
                        n => Some(InnerModule {
                            index: u32::try_from(n - 1)
                                .map_err(|_| p.damage(Damage::BadValue("inner module index")))?,
                            offset: p.varint()?,
                            len: p.varint()?,
                        }),
                    }
                };
                Record::Module(ModuleRecord {
                    id,
                    path,
                    sha256,
                    text_addr,
                    text_len,
                    functions,
                    address_map,
                    addresses: Vec::new(),
                    inner,
                })
            }
            kind::THREAD_START => Record::ThreadStart(ThreadStart {
                thread: p.u32()?,
                time_ns: p.varint()?,
                cpu_ns: p.varint()?,
                os_tid: p.varint()?,
                name: p.string()?,
            }),
            kind::THREAD_END => Record::ThreadEnd(ThreadEnd {
                thread: p.u32()?,
                time_ns: p.varint()?,
                cpu_ns: p.varint()?,
            }),
            kind::SAMPLES_LOST => Record::SamplesLost(SamplesLost {
                thread: p.u32()?,
                count: p.varint()?,
                reason: match p.u8()? {
                    1 => LossReason::LogFull,
                    2 => LossReason::StackWalk,
                    4 => LossReason::TimerOverrun,
                    _ => LossReason::Other,
                },
            }),
            kind::END => Record::End(End {
                time_ns: p.varint()?,
                exit_kind: match p.u8()? {
                    0 => ExitKind::Exited,
                    1 => ExitKind::Trapped,
                    2 => ExitKind::Failed,
                    3 => ExitKind::Signaled,
                    _ => return Err(p.damage(Damage::BadValue("exit kind"))),
                },
                status: varint::unzigzag(p.varint()?),
                message: p.string()?,
                samples_written: p.varint()?,
                samples_lost: p.varint()?,
            }),
            kind::CODE_ADDRESSES => Record::CodeAddresses(CodeAddresses {
                module: p.varint()?,
                entries: p.map()?,
            }),
            kind::REQUEST => {
                let thread = p.u32()?;
                let start_ns = p.varint()?;
                let end_ns = start_ns
                    .checked_add(p.varint()?)
                    .ok_or_else(|| p.damage(Damage::BadValue("request duration")))?;
                Record::Request(Request {
                    thread,
                    start_ns,
                    end_ns,
                    index: p.varint()?,
                    method: p.string()?,
                    path: p.string()?,
                })
            }
            _ => return Ok(None),
        };
        Ok(Some(rec))
    }
}

impl<'a> RawSample<'a> {
    /// Decodes a sample payload of the current format. `offset` is the
    /// record's offset, for errors.
    pub fn decode(payload: &'a [u8], offset: u64) -> Result<Self, ReadError> {
        Self::decode_version(payload, offset, crate::VERSION_MAJOR)
    }

    /// How many low bits of a sample's first field are flags in a trace of
    /// format `major`.`x`: five in 2.x, six from 3.0 (any other value is
    /// read as the current format).
    pub fn flag_bits(major: u16) -> u32 {
        if major == 2 {
            5
        } else {
            6
        }
    }

    /// Decodes a sample payload of a trace of format `major`.`x`: 2 has
    /// five flag bits and always a CPU field; any other value is read as
    /// the current format (3).
    pub fn decode_version(payload: &'a [u8], offset: u64, major: u16) -> Result<Self, ReadError> {
        let mut p = Payload::new(payload, offset);
        let tf = p.varint()?;
        let bits = Self::flag_bits(major);
        let mask = (1u8 << bits) - 1;
        let thread = u32::try_from(tf >> bits)
            .map_err(|_| p.damage(Damage::BadValue("32-bit thread id")))?;
        let flags = (tf & u64::from(mask)) as u8;
        let time = p.varint()?;
        let cpu = if flags & flags::NO_CPU != 0 {
            if flags & flags::KEYFRAME != 0 {
                return Err(p.damage(Damage::BadValue("keyframe without CPU time")));
            }
            None
        } else {
            Some(p.varint()?)
        };
        let keep = p.varint()?;
        let frames = p.rest();
        if flags & flags::KEYFRAME != 0 && keep != 0 {
            return Err(p.damage(Damage::BadValue("keyframe keeps frames")));
        }
        Ok(RawSample {
            thread,
            flags,
            time,
            cpu,
            keep,
            frames,
        })
    }
}

/// An address map: count, then (code offset delta, wasm offset + 1) pairs.
fn push_map(out: &mut Vec<u8>, map: &[AddressMapEntry]) {
    varint::push(out, map.len() as u64);
    let mut prev = 0u64;
    for e in map {
        varint::push(out, e.code_offset.wrapping_sub(prev));
        varint::push(out, e.wasm_offset.map_or(0, |w| w + 1));
        prev = e.code_offset;
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    varint::push(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over one record's payload that turns every shortfall into a
/// [`ReadError`] at the record's offset.
pub(crate) struct Payload<'a> {
    buf: &'a [u8],
    pos: usize,
    offset: u64,
}

impl<'a> Payload<'a> {
    pub(crate) fn new(buf: &'a [u8], offset: u64) -> Self {
        Payload {
            buf,
            pos: 0,
            offset,
        }
    }

    pub(crate) fn damage(&self, d: Damage) -> ReadError {
        ReadError::Damaged {
            offset: self.offset,
            damage: d,
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, ReadError> {
        varint::get(self.buf, &mut self.pos).map_err(|e| {
            self.damage(match e {
                varint::VarintError::Truncated => Damage::FieldPastEnd,
                varint::VarintError::Overflow => Damage::VarintOverflow,
            })
        })
    }

    fn u32(&mut self) -> Result<u32, ReadError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.damage(Damage::BadValue("32-bit field")))
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.damage(Damage::FieldPastEnd))?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let s = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| self.damage(Damage::FieldPastEnd))?;
        self.pos += N;
        Ok(s.try_into().expect("slice of length N"))
    }

    fn string(&mut self) -> Result<String, ReadError> {
        let n = self.varint()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.damage(Damage::FieldPastEnd))?;
        let s = std::str::from_utf8(&self.buf[self.pos..end])
            .map_err(|_| self.damage(Damage::BadUtf8))?;
        self.pos = end;
        Ok(s.to_owned())
    }

    /// A count of items that take at least `min_bytes` each: refused if the
    /// rest of the payload could not hold them, so no count makes us allocate
    /// more than the file's size.
    fn count(&mut self, min_bytes: usize) -> Result<usize, ReadError> {
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes as u64) > left {
            return Err(self.damage(Damage::CountTooLarge));
        }
        Ok(n as usize)
    }

    /// An address map (see `push_map`).
    fn map(&mut self) -> Result<Vec<AddressMapEntry>, ReadError> {
        let n = self.count(2)?;
        let mut map = Vec::with_capacity(n);
        let mut prev = 0u64;
        for _ in 0..n {
            let code_offset = prev
                .checked_add(self.varint()?)
                .ok_or_else(|| self.damage(Damage::BadValue("address map offset")))?;
            prev = code_offset;
            let w = self.varint()?;
            map.push(AddressMapEntry {
                code_offset,
                wasm_offset: w.checked_sub(1),
            });
        }
        Ok(map)
    }

    /// Whether every byte of the payload has been read.
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn rest(&mut self) -> &'a [u8] {
        let r = &self.buf[self.pos..];
        self.pos = self.buf.len();
        r
    }
}
