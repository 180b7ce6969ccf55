//! Records to and from their payload bytes (SPEC.md §2).

use super::*;
use crate::error::{Damage, ReadError};
use crate::varint;

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
