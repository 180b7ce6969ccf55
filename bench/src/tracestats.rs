//! `wrec-bench trace-stats TRACE...`: where a trace's bytes go, field by
//! field, and what a few encoding changes would save. Used to explain the
//! bytes-per-sample figure of the benchmark.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wrec_format::{kind, varint, Event, RawSample, Record, Trace};

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

fn zz_len(v: i64) -> u64 {
    varint::len(varint::zigzag(v)) as u64
}

#[derive(Default)]
struct Parts {
    samples: u64,
    framing: u64,
    thread_flags: u64,
    time: u64,
    cpu: u64,
    counts: u64,
    frames: u64,
    new_frames: u64,
    // Alternatives.
    alt_time: u64,
    alt_cpu: u64,
    alt_frames: u64,
    alt_time_us: u64,
    alt_cpu_us: u64,
    alt_dict_frames: u64,
}

/// A direct-mapped table of recently seen addresses, as an encoder and its
/// decoder could both keep it: a hit costs one byte (the slot), a miss one
/// byte more than the delta.
struct Dict {
    slots: [u64; 128],
}

impl Dict {
    fn slot(addr: u64) -> usize {
        (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 57) as usize
    }

    /// Bytes to encode `addr` (given the delta reference), updating the table.
    fn cost(&mut self, addr: u64, reference: u64) -> u64 {
        let i = Self::slot(addr);
        if self.slots[i] == addr {
            1
        } else {
            self.slots[i] = addr;
            1 + zz_len(addr.wrapping_sub(reference) as i64)
        }
    }
}

fn stats(path: &Path, o: &mut String) -> Result<()> {
    let trace = Trace::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut p = Parts::default();
    let mut other: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut interval = 0u64;
    for rec in trace.records() {
        let rec = rec?;
        let len = rec.payload.len() as u64;
        let framed = 1 + varint::len(len) as u64 + len + 2;
        if rec.kind == kind::SAMPLE {
            let s = RawSample::decode(rec.payload, rec.offset)?;
            p.samples += 1;
            p.framing += framed - len;
            p.thread_flags += varint::len(u64::from(s.thread)) as u64 + 1;
            p.time += varint::len(s.time) as u64;
            p.cpu += varint::len(s.cpu) as u64;
            p.counts += (varint::len(s.keep) + varint::len(s.new)) as u64;
            p.frames += s.frames.len() as u64;
            p.new_frames += s.new;
            continue;
        }
        let name = match rec.kind {
            kind::RUN_INFO => "run info",
            kind::MODULE => "module (functions + address map)",
            kind::THREAD_START => "thread start",
            kind::THREAD_END => "thread end",
            kind::SAMPLES_LOST => "samples lost",
            kind::END => "end",
            _ => "other",
        };
        let e = other.entry(name).or_default();
        e.0 += 1;
        e.1 += framed;
    }
    // Alternatives need the expanded stacks and times.
    let mut dec = trace.decoder();
    let mut prev_stack: Vec<u64> = Vec::new();
    let mut prev_time = None;
    let mut prev_us: Option<(u64, u64)> = None;
    let mut dict = Dict { slots: [0; 128] };
    while let Some(ev) = dec.next() {
        match ev? {
            Event::Record(Record::RunInfo(r)) => interval = r.interval_ns,
            Event::Sample(s) => {
                let dt = prev_time.map_or(s.time_ns, |t| s.time_ns.saturating_sub(t));
                prev_time = Some(s.time_ns);
                // Time against the nominal interval; CPU against wall.
                p.alt_time += zz_len(dt as i64 - interval as i64);
                p.alt_cpu += zz_len(s.cpu_delta_ns as i64 - dt as i64);
                // The same in whole microseconds (from truncated absolute
                // times, so no drift).
                let (t_us, c_us) = (s.time_ns / 1000, s.cpu_ns / 1000);
                let (dt_us, dc_us) =
                    prev_us.map_or((t_us, c_us), |(t, c)| (t_us - t, c_us.saturating_sub(c)));
                prev_us = Some((t_us, c_us));
                p.alt_time_us += zz_len(dt_us as i64 - (interval / 1000) as i64);
                p.alt_cpu_us += zz_len(dc_us as i64 - dt_us as i64);
                // New frames against the previous sample's frame at the same
                // depth from the root (else against the next-outer frame).
                let st = s.stack;
                let shared = prev_stack
                    .iter()
                    .rev()
                    .zip(st.iter().rev())
                    .take_while(|(a, b)| a == b)
                    .count();
                let n = st.len() - shared;
                for j in (0..n).rev() {
                    let depth = st.len() - 1 - j;
                    let reference = if depth < prev_stack.len() {
                        prev_stack[prev_stack.len() - 1 - depth]
                    } else if j + 1 < st.len() {
                        st[j + 1]
                    } else {
                        0
                    };
                    p.alt_frames += zz_len(st[j].wrapping_sub(reference) as i64);
                    let outer = if j + 1 < st.len() { st[j + 1] } else { 0 };
                    p.alt_dict_frames += dict.cost(st[j], outer);
                }
                prev_stack.clear();
                prev_stack.extend_from_slice(st);
            }
            _ => {}
        }
    }
    let n = p.samples.max(1) as f64;
    let per = |b: u64| b as f64 / n;
    let sample_total = p.framing + p.thread_flags + p.time + p.cpu + p.counts + p.frames;
    let other_total: u64 =
        other.values().map(|v| v.1).sum::<u64>() + wrec_format::HEADER_SIZE as u64;
    let _ = writeln!(
        o,
        "### {}\n\n{} samples at {} interval, {} bytes in all ({:.1} bytes/sample); {:.1} new frames per sample\n",
        path.display(),
        p.samples,
        wrec::format_interval(std::time::Duration::from_nanos(interval.max(1))),
        sample_total + other_total,
        per(sample_total + other_total),
        per(p.new_frames)
    );
    let _ = writeln!(o, "| part | bytes | bytes / sample |\n|---|---|---|");
    let row = |o: &mut String, name: &str, b: u64| {
        let _ = writeln!(o, "| {name} | {b} | {:.2} |", per(b));
    };
    row(o, "sample framing (kind, length, CRC-16)", p.framing);
    row(o, "sample thread + flags", p.thread_flags);
    row(o, "sample time delta (ns)", p.time);
    row(o, "sample CPU delta (ns)", p.cpu);
    row(o, "sample keep + new counts", p.counts);
    row(o, "sample frames (svarint deltas)", p.frames);
    row(o, "**all sample records**", sample_total);
    row(o, "header", wrec_format::HEADER_SIZE as u64);
    for (name, (count, b)) in &other {
        row(o, &format!("{name} ×{count}"), *b);
    }
    row(o, "**everything else**", other_total);
    let _ = writeln!(o);
    let alt = sample_total - p.time - p.cpu - p.frames - 2 * p.samples
        + p.alt_time_us
        + p.alt_cpu_us
        + p.alt_dict_frames;
    let _ = writeln!(
        o,
        "Alternatives, sample records only (bytes/sample, now → then):\n\n\
         - time as zigzag(Δt − interval): {:.2} → {:.2} in ns, → {:.2} in whole µs\n\
         - CPU as zigzag(Δcpu − Δt): {:.2} → {:.2} in ns, → {:.2} in whole µs\n\
         - new frames against the previous sample's frame at the same depth: {:.2} → {:.2}\n\
         - new frames through a 128-slot table of recent addresses (hit: 1 byte; miss: 1 + delta): {:.2} → {:.2}\n\
         - no per-sample CRC-16: −2.00\n\
         - µs times, µs CPU, address table and no CRC together: {:.2} → {:.2}\n",
        per(p.time),
        per(p.alt_time),
        per(p.alt_time_us),
        per(p.cpu),
        per(p.alt_cpu),
        per(p.alt_cpu_us),
        per(p.frames),
        per(p.alt_frames),
        per(p.frames),
        per(p.alt_dict_frames),
        per(sample_total),
        per(alt)
    );
    Ok(())
}
