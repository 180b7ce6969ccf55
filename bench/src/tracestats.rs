//! `wrec-bench trace-stats TRACE...`: where a trace's bytes go, field by
//! field, and what a few encoding changes would save. Used to explain the
//! bytes-per-sample figure of the benchmark.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wrec_format::{kind, varint, RawSample, Record, Trace};

#[derive(Debug, Clone, clap::Args)]
pub struct TraceStatsArgs {
    /// Traces written by wrec.
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
}

pub fn main(a: &TraceStatsArgs) -> Result<()> {
    let mut out = String::new();
    for t in &a.traces {
        stats(t, &mut out)?;
    }
    print!("{out}");
    Ok(())
}

#[derive(Default)]
struct Parts {
    samples: u64,
    short: u64,
    framing: u64,
    thread_flags: u64,
    time: u64,
    cpu: u64,
    keep: u64,
    codes: u64,
    literals: u64,
    new_frames: u64,
    hits: u64,
}

/// Walks a sample's frame codes (SPEC.md §2.4): (code bytes, literal
/// bytes, frames, hits in the recent-address table).
fn frame_parts(frames: &[u8]) -> (u64, u64, u64, u64) {
    let (mut codes, mut literals, mut n, mut hits) = (0, 0, 0, 0);
    let mut pos = 0;
    while pos < frames.len() {
        let b = frames[pos];
        pos += 1;
        codes += 1;
        for code in [b & 0xf, b >> 4] {
            match code {
                15 => {}
                14 => {
                    let start = pos;
                    if varint::get(frames, &mut pos).is_err() {
                        pos = frames.len();
                    }
                    literals += (pos - start) as u64;
                    n += 1;
                }
                _ => {
                    hits += 1;
                    n += 1;
                }
            }
        }
    }
    (codes, literals, n, hits)
}

fn stats(path: &Path, o: &mut String) -> Result<()> {
    let trace = Trace::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut p = Parts::default();
    let mut other: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut interval = 0u64;
    for rec in trace.records() {
        let rec = rec?;
        let len = rec.payload.len() as u64;
        if rec.kind == kind::SAMPLE {
            let major = trace.header().version_major;
            let s = RawSample::decode_version(rec.payload, rec.offset, major)?;
            p.samples += 1;
            if rec.size == len + 3 {
                p.short += 1;
            }
            p.framing += rec.size - len;
            let bits = RawSample::flag_bits(major);
            p.thread_flags +=
                varint::len((u64::from(s.thread) << bits) | u64::from(s.flags)) as u64;
            p.time += varint::len(s.time) as u64;
            p.cpu += s.cpu.map_or(0, |c| varint::len(c) as u64);
            p.keep += varint::len(s.keep) as u64;
            let (codes, literals, n, hits) = frame_parts(s.frames);
            p.codes += codes;
            p.literals += literals;
            p.new_frames += n;
            p.hits += hits;
            continue;
        }
        let name = match rec.kind {
            kind::RUN_INFO => "run info",
            kind::MODULE => "module (function table, full address map)",
            kind::CODE_ADDRESSES => "code addresses",
            kind::THREAD_START => "thread start",
            kind::THREAD_END => "thread end",
            kind::SAMPLES_LOST => "samples lost",
            kind::END => "end",
            _ => "other",
        };
        let e = other.entry(name).or_default();
        e.0 += 1;
        e.1 += rec.size;
        if let Some(Record::RunInfo(r)) = Record::decode(rec.kind, rec.payload, rec.offset)? {
            interval = r.interval_ns;
        }
    }
    let n = p.samples.max(1) as f64;
    let per = |b: u64| b as f64 / n;
    let sample_total = p.framing + p.thread_flags + p.time + p.cpu + p.keep + p.codes + p.literals;
    let other_total: u64 =
        other.values().map(|v| v.1).sum::<u64>() + wrec_format::HEADER_SIZE as u64;
    let _ = writeln!(
        o,
        "### {}\n\n{} samples at {} interval, {} bytes in all ({:.1} bytes/sample); {:.1} new frames per sample, {:.0}% of them from the recent-address table; {:.0}% short sample records\n",
        path.display(),
        p.samples,
        wrec::format_interval(std::time::Duration::from_nanos(interval.max(1))),
        sample_total + other_total,
        per(sample_total + other_total),
        per(p.new_frames),
        100.0 * p.hits as f64 / p.new_frames.max(1) as f64,
        100.0 * p.short as f64 / n,
    );
    let _ = writeln!(o, "| part | bytes | bytes / sample |\n|---|---|---|");
    let row = |o: &mut String, name: &str, b: u64| {
        let _ = writeln!(o, "| {name} | {b} | {:.2} |", per(b));
    };
    row(o, "sample framing (kind, [length], CRC-16)", p.framing);
    row(o, "sample thread + flags", p.thread_flags);
    row(o, "sample time (µs, against the interval)", p.time);
    row(o, "sample CPU time (µs, against Δt)", p.cpu);
    row(o, "sample keep", p.keep);
    row(o, "sample frame code bytes", p.codes);
    row(o, "sample frame literals (svarint deltas)", p.literals);
    row(o, "**all sample records**", sample_total);
    row(o, "header", wrec_format::HEADER_SIZE as u64);
    for (name, (count, b)) in &other {
        row(o, &format!("{name} ×{count}"), *b);
    }
    row(o, "**everything else**", other_total);
    let _ = writeln!(o);
    Ok(())
}
