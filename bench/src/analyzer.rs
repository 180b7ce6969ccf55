//! The analyzer benchmark: a synthetic trace of a million samples or more,
//! built from a real recording, symbolized and written by `wanalyze`.
//!
//! The generator replays a real trace's samples in their recorded order
//! (so consecutive samples share outer frames as they do in real traces),
//! cycle after cycle, with variation: the outermost recursive run (a return
//! address repeated in consecutive frames; sortmap's recursive driver) is
//! lengthened or shortened by a shift drawn every 64 samples, which puts the
//! mean depth near a target (30) while neighbouring samples keep sharing
//! their outer frames, and the leaf PC is replaced half the time by another
//! leaf PC seen in the same function. Every address stays a real address of
//! the real module, so the analyzer does its full work on it; the report
//! gives the frames per sample that differ from the previous sample and the
//! number of distinct stacks, for the real and the synthetic trace.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use wrec_format::{
    flags, CodeAddresses, End, Event, ExitKind, Header, ModuleRecord, Record, RunInfo,
    SampleEncoder, SampleRef, ThreadEnd, ThreadStart, Trace, TraceWriter, WriterOptions,
};

use crate::sys;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What the generator wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SynthInfo {
    pub base_samples: u64,
    pub base_mean_depth: f64,
    pub samples: u64,
    pub mean_depth: f64,
    pub max_depth: usize,
    pub distinct_leaf_pcs: usize,
    pub bytes: u64,
    /// Frames per sample that differ from the previous sample's (what the
    /// analyzer's prefix reuse cannot skip), in the base and the synthetic
    /// trace.
    pub base_mean_new_frames: f64,
    pub mean_new_frames: f64,
    /// Distinct whole stacks in the base trace and in the synthetic one.
    pub base_distinct_stacks: usize,
    pub distinct_stacks: usize,
}

/// Frames of `cur` (innermost first) not shared with `prev`'s outer frames.
fn new_frames(prev: &[u64], cur: &[u64]) -> usize {
    let shared = prev
        .iter()
        .rev()
        .zip(cur.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    cur.len() - shared
}

/// Builds a trace of `samples` samples at `path` from the real trace `base`,
/// with stack depths drawn around `target_depth`.
pub fn synthesize(
    base: &Path,
    path: &Path,
    samples: u64,
    target_depth: usize,
) -> Result<SynthInfo> {
    let trace = Trace::open(base).with_context(|| format!("reading {}", base.display()))?;
    let mut run_info: Option<RunInfo> = None;
    let mut modules: Vec<ModuleRecord> = Vec::new();
    let mut thread_start: Option<ThreadStart> = None;
    let mut stacks: Vec<(u8, Vec<u64>)> = Vec::new();
    let mut dec = trace.decoder();
    while let Some(ev) = dec.next() {
        match ev.context("decoding the base trace")? {
            Event::Record(Record::RunInfo(r)) => run_info = Some(r),
            Event::Record(Record::Module(m)) => modules.push(m),
            Event::Record(Record::ThreadStart(t)) if thread_start.is_none() => {
                thread_start = Some(t)
            }
            Event::Sample(s) if s.thread == 0 && !s.stack.is_empty() => {
                stacks.push((s.flags & !flags::KEYFRAME, s.stack.to_vec()))
            }
            _ => {}
        }
    }
    let (Some(run_info), Some(thread_start)) = (run_info, thread_start) else {
        bail!("{}: no run-info or thread-start record", base.display());
    };
    if stacks.len() < 100 || modules.is_empty() {
        bail!(
            "{}: too few samples ({}) to build on",
            base.display(),
            stacks.len()
        );
    }
    let base_mean_depth =
        stacks.iter().map(|(_, s)| s.len()).sum::<usize>() as f64 / stacks.len() as f64;
    let base_mean_new_frames = stacks
        .windows(2)
        .map(|w| new_frames(&w[0].1, &w[1].1))
        .sum::<usize>() as f64
        / (stacks.len() - 1) as f64;
    let base_distinct_stacks = stacks
        .iter()
        .map(|(_, s)| s.as_slice())
        .collect::<std::collections::HashSet<_>>()
        .len();

    // Leaf PCs seen in each function, for varying the leaf.
    let function_of = |pc: u64| -> Option<(usize, u32)> {
        modules.iter().enumerate().find_map(|(i, m)| {
            m.contains(pc)
                .then(|| m.function_at(pc - m.text_addr).map(|f| (i, f.index)))
                .flatten()
        })
    };
    let mut leaves: HashMap<(usize, u32), Vec<u64>> = HashMap::new();
    for (_, s) in &stacks {
        if let Some(k) = function_of(s[0]) {
            let v = leaves.entry(k).or_default();
            if !v.contains(&s[0]) {
                v.push(s[0]);
            }
        }
    }
    let leaf_key: Vec<Option<(usize, u32)>> =
        stacks.iter().map(|(_, s)| function_of(s[0])).collect();

    let header = Header::for_this_host();
    let writer = TraceWriter::create(path, header, WriterOptions::default())
        .with_context(|| format!("creating {}", path.display()))?;
    let interval = run_info.interval_ns.max(1);
    writer.write_run_info(&RunInfo {
        args: vec!["synthetic".into()],
        ..run_info
    })?;
    for m in &modules {
        writer.write_record(&Record::Module(m.clone()))?;
        // The base trace's code addresses (which the decoder attached to
        // the module) cover every address the synthetic stacks reuse.
        if !m.addresses.is_empty() {
            writer.write_record(&Record::CodeAddresses(CodeAddresses {
                module: m.id,
                entries: m.addresses.clone(),
            }))?;
        }
    }
    let start = sys::mono_ns();
    writer.write_record(&Record::ThreadStart(ThreadStart {
        time_ns: start,
        cpu_ns: 0,
        ..thread_start
    }))?;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut enc = SampleEncoder::new(0);
    let mut stack: Vec<u64> = Vec::with_capacity(wrec_format::MAX_FRAMES);
    let mut prev: Vec<u64> = Vec::new();
    let mut new_sum = 0u64;
    let mut distinct: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut time = start;
    let mut cpu = 0u64;
    let mut depth_sum = 0u64;
    let mut max_depth = 0usize;
    // The depth of each recorded sample is shifted by a per-run offset that
    // changes now and then, so neighbours stay alike as in a real trace.
    let mut shift: i64 = 0;
    for n in 0..samples {
        let i = (n % stacks.len() as u64) as usize;
        if n % 64 == 0 {
            let mean_shift = target_depth as i64 - base_mean_depth.round() as i64;
            shift = mean_shift + rng.below(9) as i64 - 4;
        }
        let (fl, base_stack) = &stacks[i];
        stack.clear();
        stack.extend_from_slice(base_stack);
        vary_depth(&mut stack, shift);
        if let Some(pool) = leaf_key[i].and_then(|k| leaves.get(&k)) {
            if rng.below(2) == 0 {
                stack[0] = pool[rng.below(pool.len() as u64) as usize];
            }
        }
        depth_sum += stack.len() as u64;
        new_sum += new_frames(&prev, &stack) as u64;
        prev.clear();
        prev.extend_from_slice(&stack);
        distinct.insert({
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            stack.hash(&mut h);
            h.finish()
        });
        max_depth = max_depth.max(stack.len());
        time += interval + rng.below(interval / 20 + 1);
        cpu += interval - rng.below(interval / 50 + 1);
        let s = SampleRef {
            time_ns: time,
            cpu_ns: cpu,
            flags: *fl,
            stack: &stack,
        };
        if n % 1024 == 0 {
            writer.grow()?;
        }
        if writer.append_sample(&mut enc, &s).is_err() {
            writer.grow()?;
            if writer.append_sample(&mut enc, &s).is_err() {
                bail!("{}: the trace did not grow", path.display());
            }
        }
    }
    writer.write_record(&Record::ThreadEnd(ThreadEnd {
        thread: 0,
        time_ns: time + interval,
        cpu_ns: cpu,
    }))?;
    writer.write_record(&Record::End(End {
        time_ns: time + interval,
        exit_kind: ExitKind::Exited,
        status: 0,
        message: String::new(),
        samples_written: samples,
        samples_lost: 0,
    }))?;
    let bytes = writer.finish()?;
    Ok(SynthInfo {
        base_samples: stacks.len() as u64,
        base_mean_depth,
        samples,
        mean_depth: depth_sum as f64 / samples.max(1) as f64,
        max_depth,
        distinct_leaf_pcs: leaves.values().map(Vec::len).sum(),
        bytes,
        base_mean_new_frames,
        mean_new_frames: new_sum as f64 / samples.max(1) as f64,
        base_distinct_stacks,
        distinct_stacks: distinct.len(),
    })
}

/// Grows (`shift > 0`) or shrinks a stack by repeating or removing frames of
/// its outermost recursive run (a return address equal to the next frame's,
/// counted from the root). Stacks without recursion stay as they are.
/// Working from the root keeps neighbouring samples alike: two samples that
/// shared their outer frames still share them after the same shift.
fn vary_depth(stack: &mut Vec<u64>, shift: i64) {
    let outermost_run = |stack: &[u64]| -> Option<usize> {
        // Frame 0 is the PC; recursion shows as equal return addresses.
        (1..stack.len().saturating_sub(1))
            .rev()
            .find(|&j| stack[j] == stack[j + 1])
    };
    if shift > 0 {
        if let Some(j) = outermost_run(stack) {
            let a = stack[j];
            for _ in 0..shift {
                stack.insert(j, a);
            }
        }
    } else {
        for _ in 0..(-shift) {
            match outermost_run(stack) {
                Some(j) => {
                    stack.remove(j);
                }
                None => break,
            }
        }
    }
    stack.truncate(wrec_format::MAX_FRAMES);
}

/// The analyzer outputs measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AnalyzeOutput {
    /// Firefox Profiler JSON with DWARF lines and inline frames (`--dwarf`).
    Firefox,
    /// Folded stacks with DWARF (`--dwarf --format folded`).
    Folded,
    /// Firefox Profiler JSON, function names only (no `--dwarf`).
    FirefoxNodwarf,
}

impl AnalyzeOutput {
    pub const ALL: [AnalyzeOutput; 3] = [
        AnalyzeOutput::Firefox,
        AnalyzeOutput::Folded,
        AnalyzeOutput::FirefoxNodwarf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AnalyzeOutput::Firefox => "firefox --dwarf",
            AnalyzeOutput::Folded => "folded --dwarf",
            AnalyzeOutput::FirefoxNodwarf => "firefox (no dwarf)",
        }
    }
}

/// Arguments of the hidden `analyze-child` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyzeArgs {
    #[arg(long)]
    pub trace: PathBuf,
    #[arg(long, value_enum)]
    pub format: AnalyzeOutput,
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long)]
    pub result: PathBuf,
}

/// What an analyzer child reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnalyzeResult {
    pub samples: u64,
    /// Rows of the profile's deduplicated tables.
    pub stacks: u64,
    pub frames: u64,
    pub funcs: u64,
    pub analyze_ns: u64,
    pub write_ns: u64,
    pub cpu_ns: u64,
    pub output_bytes: u64,
    pub trace_bytes: u64,
    /// Peak RSS of the child (`VmHWM`, read by the child at the end).
    pub maxrss_kib: u64,
    /// `ru_maxrss` from `wait4` (parent; see `sys::vm_hwm_kib`).
    #[serde(default)]
    pub wait4_maxrss_kib: u64,
}

pub fn child_main(a: &AnalyzeArgs) -> Result<()> {
    let opts = wanalyze::resolve::Options {
        dwarf: a.format != AnalyzeOutput::FirefoxNodwarf,
        modules: Vec::new(),
        // As `wanalyze --format folded` does.
        by_function: a.format == AnalyzeOutput::Folded,
        last: None,
    };
    let cpu0 = sys::process_cpu_ns();
    let t0 = sys::mono_ns();
    let profile = wanalyze::resolve::analyze(&a.trace, &opts, &mut |_, _| {})?;
    let t1 = sys::mono_ns();
    match a.format {
        AnalyzeOutput::Firefox | AnalyzeOutput::FirefoxNodwarf => {
            wanalyze::firefox::write_file(&profile, &a.output)?
        }
        AnalyzeOutput::Folded => {
            let file = File::create(&a.output)
                .with_context(|| format!("creating {}", a.output.display()))?;
            let mut w = BufWriter::new(file);
            wanalyze::folded::write(&profile, &mut w)?;
            w.flush()?;
        }
    }
    let t2 = sys::mono_ns();
    let r = AnalyzeResult {
        samples: profile.sample_count() as u64,
        stacks: profile.stacks.len() as u64,
        frames: profile.frames.len() as u64,
        funcs: profile.funcs.len() as u64,
        analyze_ns: t1 - t0,
        write_ns: t2 - t1,
        cpu_ns: sys::process_cpu_ns() - cpu0,
        output_bytes: sys::file_len(&a.output),
        trace_bytes: sys::file_len(&a.trace),
        maxrss_kib: 0,
        wait4_maxrss_kib: 0,
    };
    let _ = std::fs::remove_file(&a.output);
    let r = AnalyzeResult {
        maxrss_kib: sys::vm_hwm_kib(),
        ..r
    };
    crate::child::write_result(&a.result, &r)
}
