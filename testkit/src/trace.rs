//! A trace read back completely, with a minimal address-to-function lookup
//! built from its module records and the wasm's name section: independent
//! of the analyzer, so recorder tests check the recorder alone.

use std::collections::HashMap;
use std::path::Path;

use wrec_format::{
    flags, End, Event, ModuleRecord, Record, Request, RunInfo, SamplesLost, ThreadEnd, ThreadStart,
    Trace,
};

/// A sample with its stack copied out of the decoder.
#[derive(Debug, Clone)]
pub struct OwnedSample {
    pub thread: u32,
    pub flags: u8,
    pub time_ns: u64,
    pub cpu_ns: u64,
    /// Innermost first.
    pub stack: Vec<u64>,
}

impl OwnedSample {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// A trace read back completely (it must read cleanly to its end record).
pub struct Loaded {
    pub run_info: RunInfo,
    pub modules: Vec<ModuleRecord>,
    pub starts: Vec<ThreadStart>,
    pub ends: Vec<ThreadEnd>,
    pub lost: Vec<SamplesLost>,
    pub end: End,
    pub samples: Vec<OwnedSample>,
    /// Request records (`wrec serve`).
    pub requests: Vec<Request>,
    /// Function index → name, from the first module's name section.
    pub names: HashMap<u32, String>,
}

impl Loaded {
    pub fn load(trace: &Path, wasm: &Path) -> Loaded {
        let t = Trace::open(trace).unwrap_or_else(|e| panic!("open {}: {e}", trace.display()));
        assert!(t.warnings().is_empty(), "warnings: {:?}", t.warnings());
        assert_eq!(
            t.data_end(),
            std::fs::metadata(trace).unwrap().len(),
            "file not truncated to its committed length"
        );
        let mut d = t.decoder();
        let mut run_info = None;
        let mut modules = Vec::new();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut lost = Vec::new();
        let mut end = None;
        let mut samples = Vec::new();
        let mut requests = Vec::new();
        while let Some(ev) = d.next() {
            let ev = ev.unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
            assert!(end.is_none(), "records after the end record");
            match ev {
                Event::Record(Record::RunInfo(r)) => {
                    assert!(
                        run_info.is_none() && modules.is_empty() && samples.is_empty(),
                        "run info not first"
                    );
                    run_info = Some(r)
                }
                Event::Record(Record::Module(m)) => modules.push(m),
                Event::Record(Record::ThreadStart(s)) => starts.push(s),
                Event::Record(Record::ThreadEnd(e)) => ends.push(e),
                Event::Record(Record::SamplesLost(l)) => lost.push(l),
                Event::Record(Record::End(e)) => end = Some(e),
                // The decoder attaches them to their module records.
                Event::Record(Record::CodeAddresses(_)) => {}
                Event::Record(Record::Request(r)) => {
                    assert!(
                        starts.iter().any(|t| t.thread == r.thread)
                            && !ends.iter().any(|t| t.thread == r.thread),
                        "request outside its thread's start/end"
                    );
                    requests.push(r)
                }
                Event::Sample(s) => {
                    assert!(!modules.is_empty(), "sample before any module record");
                    assert!(
                        starts.iter().any(|t| t.thread == s.thread)
                            && !ends.iter().any(|t| t.thread == s.thread),
                        "sample outside its thread's start/end"
                    );
                    samples.push(OwnedSample {
                        thread: s.thread,
                        flags: s.flags,
                        time_ns: s.time_ns,
                        cpu_ns: s.cpu_ns,
                        stack: s.stack.to_vec(),
                    })
                }
                Event::Unknown { kind, .. } => panic!("unknown record kind {kind}"),
            }
        }
        let end = end.expect("no end record");
        assert_eq!(
            end.samples_written,
            samples.len() as u64,
            "end record's sample count"
        );
        let lost_total: u64 = lost.iter().map(|l| l.count).sum();
        assert_eq!(
            end.samples_lost, lost_total,
            "end record's loss count vs loss records"
        );
        Loaded {
            run_info: run_info.expect("no run info"),
            modules,
            starts,
            ends,
            lost,
            end,
            samples,
            requests,
            names: function_names(&std::fs::read(wasm).unwrap()),
        }
    }

    /// The function index holding `addr` (`ret`: a return address, looked up
    /// at addr - 1); `None` for trampolines and addresses outside modules.
    pub fn func_at(&self, addr: u64, ret: bool) -> Option<u32> {
        let a = if ret { addr - 1 } else { addr };
        let m = self.modules.iter().find(|m| m.contains(a))?;
        m.function_at(a - m.text_addr).map(|f| f.index)
    }

    pub fn in_text(&self, addr: u64) -> bool {
        self.modules.iter().any(|m| m.contains(addr))
    }

    pub fn name(&self, index: u32) -> String {
        self.names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| format!("wasm-function[{index}]"))
    }

    /// Function names of a sample's frames, innermost first; trampolines
    /// are left out.
    pub fn frames(&self, s: &OwnedSample) -> Vec<String> {
        s.stack
            .iter()
            .enumerate()
            .filter_map(|(i, &a)| self.func_at(a, i > 0 || s.has(flags::HOST)))
            .map(|f| self.name(f))
            .collect()
    }

    /// The leaf function's name (None for a HOST sample or a trampoline).
    pub fn leaf(&self, s: &OwnedSample) -> Option<String> {
        if s.has(flags::HOST) {
            return None;
        }
        self.func_at(*s.stack.first()?, false).map(|f| self.name(f))
    }

    /// The samples taken while the guest ran: from the first sample with a
    /// wasm frame to the last, in file order (one thread). Those before and
    /// after are the host setting up (instantiating, starting WASI's
    /// runtime) and tearing down: how many there are depends on the
    /// machine's load, not on the recorder, so attribution checks leave
    /// them out. Samples without wasm frames in between stay in.
    pub fn guest_samples(&self) -> &[OwnedSample] {
        let has_wasm = |s: &OwnedSample| !self.frames(s).is_empty();
        let Some(first) = self.samples.iter().position(has_wasm) else {
            return &[];
        };
        let last = self.samples.iter().rposition(has_wasm).unwrap_or(first);
        &self.samples[first..=last]
    }

    /// Wall-clock duration of the (single) thread, from its start to its end record.
    pub fn thread_duration_ns(&self) -> u64 {
        assert_eq!(self.starts.len(), 1);
        assert_eq!(self.ends.len(), 1);
        self.ends[0].time_ns - self.starts[0].time_ns
    }
}

/// Function index → name from a wasm file's name section.
pub fn function_names(wasm: &[u8]) -> HashMap<u32, String> {
    use wasmparser::{KnownCustom, Name, Parser, Payload};
    let mut names = HashMap::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(Payload::CustomSection(c)) = payload else {
            continue;
        };
        let KnownCustom::Name(reader) = c.as_known() else {
            continue;
        };
        for name in reader.into_iter().flatten() {
            if let Name::Function(map) = name {
                for n in map.into_iter().flatten() {
                    names.insert(n.index, n.name.to_string());
                }
            }
        }
    }
    names
}

/// Writes a copy of the trace at `from` to `to` with every module, run-info
/// and end record passed through `edit` (samples and other records as they
/// are), each framed afresh with a valid check, and the header's committed
/// length set: a real trace made hostile in one field (a module path, a
/// trap message).
pub fn rewrite_trace(from: &Path, to: &Path, mut edit: impl FnMut(&mut Record)) {
    use wrec_format::{frame, frame_payload, kind};
    let t = Trace::open(from).unwrap_or_else(|e| panic!("open {}: {e}", from.display()));
    let mut body = Vec::new();
    for r in t.records() {
        let r = r.unwrap_or_else(|e| panic!("{}: {e}", from.display()));
        match r.kind {
            kind::MODULE | kind::RUN_INFO | kind::END => {
                let mut rec = Record::decode(r.kind, r.payload, r.offset)
                    .unwrap()
                    .expect("a known record");
                edit(&mut rec);
                body.extend(frame(&rec));
            }
            k => body.extend(frame_payload(k, r.payload)),
        }
    }
    let mut h = *t.header();
    h.committed_len = (h.encode().len() + body.len()) as u64;
    let mut out = h.encode().to_vec();
    out.extend(body);
    std::fs::write(to, out).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
}
