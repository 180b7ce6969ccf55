//! pprof output: a gzipped `profile.proto`, as `go tool pprof` and the
//! tools built on it read.
//!
//! - Sample types: `samples`/`count`, `cpu`/`nanoseconds` (the thread CPU
//!   time each sample carries) and `wall`/`nanoseconds` (the time since the
//!   thread's previous sample, or its start); `cpu` is the default, the
//!   period is the sampling interval. Samples with the same stack on the
//!   same thread (and in the same request) are one `Sample` with summed
//!   values, labelled with the thread's name (`thread`) and, for a `wrec
//!   serve` trace, the request they were taken in (`request`: its method
//!   and path, `GET /a?b=1`), so that `pprof -tagfocus request=…` shows one
//!   endpoint's profile.
//! - One `Location` per code position: a wasm file offset (`address`) and
//!   its inline chain as `Line`s, innermost first and the physical
//!   function last (pprof's order), in the `Mapping` of its module. Host
//!   and synthetic frames are locations without address or mapping.
//! - One `Function` per model function, with its file and declaration line.
//! - One `Mapping` per module: its path as `filename`, its SHA-256 as
//!   `build_id`, addresses from 0 to the largest offset seen (file offsets
//!   are the module's own address space).
//!
//! The messages are declared here with `prost`'s derive (no `protoc`, no
//! build script): the fields and tags of `profile.proto` from
//! github.com/google/pprof, the subset this writer uses.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Context;
use prost::Message;

use crate::model::{Profile, RequestSpans, StackId};

#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<PprofSample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct PprofSample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The string table: index 0 is the empty string, as pprof requires.
struct Strings {
    list: Vec<String>,
    map: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut s = Strings {
            list: Vec::new(),
            map: HashMap::new(),
        };
        s.get("");
        s
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        self.list.push(s.to_owned());
        let i = (self.list.len() - 1) as i64;
        self.map.insert(s.to_owned(), i);
        i
    }
}

fn ns(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds the pprof profile of `p` (which [`Profile::check`] accepted).
pub fn build(p: &Profile) -> PprofProfile {
    let mut strings = Strings::new();
    let sample_type = ["samples:count", "cpu:nanoseconds", "wall:nanoseconds"]
        .iter()
        .map(|t| {
            let (ty, unit) = t.split_once(':').unwrap();
            ValueType {
                r#type: strings.get(ty),
                unit: strings.get(unit),
            }
        })
        .collect();

    // Functions: one per model func, ids from 1.
    let function: Vec<Function> = p
        .funcs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = strings.get(&f.name);
            Function {
                id: i as u64 + 1,
                name,
                system_name: name,
                filename: f.file.as_deref().map_or(0, |file| strings.get(file)),
                start_line: f.line.map_or(0, i64::from),
            }
        })
        .collect();

    // Mappings: one per lib, ids from 1; the limit grows with the
    // addresses seen.
    let mut mapping: Vec<Mapping> = p
        .libs
        .iter()
        .enumerate()
        .map(|(i, lib)| Mapping {
            id: i as u64 + 1,
            memory_start: 0,
            memory_limit: 1,
            file_offset: 0,
            // The file name only: the directories are the host's.
            filename: strings.get(&lib.name),
            build_id: strings.get(&lib.sha256),
            has_functions: true,
            has_filenames: p.meta.has_lines,
            has_line_numbers: p.meta.has_lines,
            has_inline_frames: p.meta.has_lines,
        })
        .collect();

    // Locations: the stack tree cut into inline chains, walking from each
    // sample's leaf. `start[node]`: the location of the chain starting at
    // `node` and the node the chain's outermost frame is called from.
    let mut location: Vec<Location> = Vec::new();
    let mut by_chain: HashMap<Vec<u32>, u64> = HashMap::new();
    let mut start: Vec<Option<(u64, Option<StackId>)>> = vec![None; p.stacks.len()];
    let mut chain_of = |node: StackId, location: &mut Vec<Location>| {
        if let Some(hit) = start[node as usize] {
            return hit;
        }
        let mut frames = Vec::new();
        let mut cur = Some(node);
        while let Some(n) = cur {
            let s = p.stacks.get(n as usize);
            frames.push(s.frame);
            cur = s.parent;
            if p.frames[s.frame as usize].inline_depth == 0 {
                break;
            }
        }
        let id = *by_chain.entry(frames.clone()).or_insert_with(|| {
            let first = &p.frames[frames[0] as usize];
            let lib = first
                .native_symbol
                .map(|n| p.native_symbols[n as usize].lib)
                .or(p.funcs[first.func as usize].lib);
            let (mapping_id, address) = match (first.address, lib) {
                (Some(a), Some(lib)) => {
                    let m = &mut mapping[lib as usize];
                    m.memory_limit = m.memory_limit.max(a + 1);
                    (m.id, a)
                }
                _ => (0, 0),
            };
            location.push(Location {
                id: location.len() as u64 + 1,
                mapping_id,
                address,
                line: frames
                    .iter()
                    .map(|&f| {
                        let f = &p.frames[f as usize];
                        Line {
                            function_id: f.func as u64 + 1,
                            line: f.line.map_or(0, i64::from),
                            column: f.column.map_or(0, i64::from),
                        }
                    })
                    .collect(),
            });
            location.len() as u64
        });
        let hit = (id, cur);
        start[node as usize] = Some(hit);
        hit
    };

    // Samples, summed per (thread, stack, request).
    let thread_key = strings.get("thread");
    let request_key = strings.get("request");
    let mut sample = Vec::new();
    for t in &p.threads {
        let name = if t.name.is_empty() {
            format!("Thread {}", t.tid)
        } else {
            t.name.clone()
        };
        let thread_label = Label {
            key: thread_key,
            str: strings.get(&name),
        };
        let mut requests = RequestSpans::of(t);
        let mut sorted: Vec<_> = t.samples.iter().collect();
        sorted.sort_by_key(|s| s.time_ns);
        let mut sums: HashMap<(Option<StackId>, Option<usize>), [u64; 3]> = HashMap::new();
        let mut order = Vec::new();
        let mut prev = t.start_ns;
        for s in sorted {
            let wall = s.time_ns.saturating_sub(prev);
            prev = prev.max(s.time_ns);
            let key = (s.stack, requests.containing(s.time_ns));
            let e = sums.entry(key).or_insert_with(|| {
                order.push(key);
                [0; 3]
            });
            e[0] += 1;
            e[1] = e[1].saturating_add(s.cpu_delta_ns);
            e[2] = e[2].saturating_add(wall);
        }
        for key @ (stack, request) in order {
            let v = sums[&key];
            let mut label = vec![thread_label.clone()];
            if let Some(r) = request {
                label.push(Label {
                    key: request_key,
                    str: strings.get(&t.requests[r].name),
                });
            }
            let mut location_id = Vec::new();
            let mut node = stack;
            while let Some(n) = node {
                let (loc, next) = chain_of(n, &mut location);
                location_id.push(loc);
                node = next;
            }
            sample.push(PprofSample {
                location_id,
                value: vec![ns(v[0]), ns(v[1]), ns(v[2])],
                label,
            });
        }
    }

    let duration = p
        .threads
        .iter()
        .flat_map(|t| t.samples.iter().map(|s| s.time_ns).chain(t.end_ns))
        .max()
        .unwrap_or(0);
    let comment = vec![strings.get(&format!(
        "recorded by {}: {}",
        p.meta.recorder,
        p.meta.args.join(" ")
    ))];
    let period_type = Some(ValueType {
        r#type: strings.get("cpu"),
        unit: strings.get("nanoseconds"),
    });
    let default_sample_type = strings.get("cpu");
    PprofProfile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: strings.list,
        time_nanos: (p.meta.start_unix_ms * 1e6) as i64,
        duration_nanos: ns(duration),
        period_type,
        period: ns(p.meta.interval_ns),
        comment,
        default_sample_type,
    }
}

/// Writes `p` as a gzipped pprof `profile.proto`.
pub fn write(p: &Profile, out: &mut dyn Write) -> anyhow::Result<()> {
    p.check()
        .map_err(|e| anyhow::anyhow!("invalid profile model: {e}"))?;
    let bytes = build(p).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&bytes).context("writing pprof profile")?;
    gz.finish()?.flush().context("writing pprof profile")?;
    Ok(())
}
