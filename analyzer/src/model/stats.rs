//! Samples and CPU time per function and per source line, the numbers the
//! text report and the diff both stand on ([`Stats::of`]).
//!
//! Definitions:
//! - Functions are aggregated by name (every [`Func`](super::Func) with the
//!   same name counts as one), inlined functions included: a function is
//!   the same function in two builds when its name is.
//! - *Self* counts the samples whose leaf frame is in the function; *total*
//!   counts the samples with the function anywhere on the stack, once per
//!   sample even when it recurses.
//! - A line is a frame's source position: its function's file and the
//!   frame's line. A line's *self* samples are those whose leaf frame is at
//!   the line (kept apart per leaf function, [`LineStat`]); its *total*
//!   samples ([`LineTotal`], on request) those with a frame at the line
//!   anywhere on the stack (a call site counts the time of its callees),
//!   once per sample.

use std::collections::HashMap;

use super::{FuncPaths, Profile};

/// Samples and CPU time of one function (by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncStat {
    pub name: String,
    /// Samples whose leaf frame is in this function.
    pub self_samples: u64,
    /// Samples with this function anywhere on the stack (once per sample).
    pub total_samples: u64,
    /// Sum of the CPU deltas of the `self_samples`.
    pub self_cpu_ns: u64,
    /// Sum of the CPU deltas of the `total_samples`.
    pub total_cpu_ns: u64,
}

/// Samples whose leaf frame is at one source line, in one function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineStat {
    pub file: String,
    pub line: u32,
    /// The leaf frame's function.
    pub func: String,
    pub samples: u64,
    pub cpu_ns: u64,
}

/// Samples with a frame at one source line anywhere on the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTotal {
    pub file: String,
    pub line: u32,
    /// The function of the first frame found at this line (a line is in
    /// one function but where inlining puts it in several).
    pub func: String,
    /// Samples with a frame at this line (once per sample).
    pub samples: u64,
    pub cpu_ns: u64,
}

/// What to compute beyond the functions and leaf lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsOptions {
    /// Also [`Stats::line_totals`]: walks every frame of every distinct
    /// stack (the leaf lines need the leaf frame only). Meaningful on a
    /// profile that keeps every frame's line (not `by_function`).
    pub line_totals: bool,
}

/// A profile's numbers per function and per line.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// All samples, over all threads.
    pub samples: u64,
    /// Samples that have no frame at all.
    pub samples_without_stack: u64,
    /// Sum of all samples' CPU deltas.
    pub cpu_ns: u64,
    /// From the first thread's start to the last thread's end (or last
    /// sample, for a thread without an end).
    pub duration_ns: u64,
    /// Every function with at least one sample, by self samples (then total
    /// samples, then name).
    pub funcs: Vec<FuncStat>,
    /// Source lines with at least one leaf sample, by samples (then file,
    /// line, function); empty without line info.
    pub lines: Vec<LineStat>,
    /// With [`StatsOptions::line_totals`]: every line on a sampled stack,
    /// by samples (then file, line); otherwise empty.
    pub line_totals: Vec<LineTotal>,
}

impl Stats {
    /// The stats of a profile, or why its model is invalid.
    pub fn of(profile: &Profile, opts: StatsOptions) -> Result<Stats, String> {
        profile.check()?;
        let p = profile;

        // Weights [samples, CPU ns] per function path (the stack's
        // functions: what the totals need), per leaf frame (what self and
        // lines need) and, for line totals, per stack; over all threads:
        // far fewer of the first two than of stacks.
        let paths = FuncPaths::new(p);
        let mut path_weights = vec![[0u64; 2]; paths.len()];
        let mut leaf_weights = vec![[0u64; 2]; p.frames.len()];
        let mut stack_weights = if opts.line_totals {
            vec![[0u64; 2]; p.stacks.len()]
        } else {
            Vec::new()
        };
        let mut samples = 0u64;
        let mut without_stack = 0u64;
        let mut cpu_ns = 0u64;
        let mut first_ns = u64::MAX;
        let mut last_ns = 0u64;
        for t in &p.threads {
            first_ns = first_ns.min(t.start_ns);
            let mut end = t.end_ns.unwrap_or(t.start_ns);
            for s in &t.samples {
                samples += 1;
                cpu_ns += s.cpu_delta_ns;
                end = end.max(s.time_ns);
                match s.stack {
                    Some(st) => {
                        let w = &mut path_weights[paths.of_stack(st) as usize];
                        w[0] += 1;
                        w[1] += s.cpu_delta_ns;
                        let w = &mut leaf_weights[p.stacks.get(st as usize).frame as usize];
                        w[0] += 1;
                        w[1] += s.cpu_delta_ns;
                        if let Some(w) = stack_weights.get_mut(st as usize) {
                            w[0] += 1;
                            w[1] += s.cpu_delta_ns;
                        }
                    }
                    None => without_stack += 1,
                }
            }
            last_ns = last_ns.max(end);
        }
        let duration_ns = last_ns.saturating_sub(if first_ns == u64::MAX { 0 } else { first_ns });

        // Function names, deduplicated: func id → name id.
        let mut name_ids: HashMap<&str, u32> = HashMap::new();
        let mut names: Vec<&str> = Vec::new();
        let func_name: Vec<u32> = p
            .funcs
            .iter()
            .map(|f| {
                *name_ids.entry(f.name.as_str()).or_insert_with(|| {
                    names.push(&f.name);
                    (names.len() - 1) as u32
                })
            })
            .collect();

        let mut stats = vec![[0u64; 4]; names.len()]; // self, total, self cpu, total cpu
        let mut stamp = vec![u32::MAX; names.len()];
        for (path, &[n, cpu]) in path_weights.iter().enumerate() {
            if n == 0 {
                continue;
            }
            for func in paths.funcs(path as u32) {
                let name = func_name[func as usize] as usize;
                if stamp[name] != path as u32 {
                    stamp[name] = path as u32;
                    stats[name][1] += n;
                    stats[name][3] += cpu;
                }
            }
        }
        let mut line_stats: HashMap<(&str, u32, u32), (u64, u64)> = HashMap::new();
        for (leaf, &[n, cpu]) in p.frames.iter().zip(&leaf_weights) {
            if n == 0 {
                continue;
            }
            let leaf_name = func_name[leaf.func as usize];
            stats[leaf_name as usize][0] += n;
            stats[leaf_name as usize][2] += cpu;
            if let (Some(file), Some(line)) = (&p.funcs[leaf.func as usize].file, leaf.line) {
                let e = line_stats
                    .entry((file.as_str(), line, leaf_name))
                    .or_default();
                e.0 += n;
                e.1 += cpu;
            }
        }

        let mut funcs: Vec<FuncStat> = stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s[1] > 0)
            .map(|(i, s)| FuncStat {
                name: names[i].to_string(),
                self_samples: s[0],
                total_samples: s[1],
                self_cpu_ns: s[2],
                total_cpu_ns: s[3],
            })
            .collect();
        funcs.sort_by(|a, b| {
            b.self_samples
                .cmp(&a.self_samples)
                .then(b.total_samples.cmp(&a.total_samples))
                .then_with(|| a.name.cmp(&b.name))
        });

        let mut lines: Vec<LineStat> = line_stats
            .into_iter()
            .map(|((file, line, func), (samples, cpu_ns))| LineStat {
                file: file.to_string(),
                line,
                func: names[func as usize].to_string(),
                samples,
                cpu_ns,
            })
            .collect();
        lines.sort_by(|a, b| {
            b.samples
                .cmp(&a.samples)
                .then_with(|| a.file.cmp(&b.file))
                .then(a.line.cmp(&b.line))
                .then_with(|| a.func.cmp(&b.func))
        });

        let line_totals = if opts.line_totals {
            line_totals(p, &stack_weights)
        } else {
            Vec::new()
        };

        Ok(Stats {
            samples,
            samples_without_stack: without_stack,
            cpu_ns,
            duration_ns,
            funcs,
            lines,
            line_totals,
        })
    }
}

/// Per line, the weights of the stacks with a frame at it, once per stack.
fn line_totals(p: &Profile, stack_weights: &[[u64; 2]]) -> Vec<LineTotal> {
    let mut ids: HashMap<(&str, u32), u32> = HashMap::new();
    let mut keys: Vec<(&str, u32, &str)> = Vec::new();
    let mut sums: Vec<[u64; 2]> = Vec::new();
    let mut stamp: Vec<u32> = Vec::new();
    for (st, &[n, cpu]) in stack_weights.iter().enumerate() {
        if n == 0 {
            continue;
        }
        for frame in p.stack_frames(Some(st as u32)) {
            let f = &p.frames[frame as usize];
            let (Some(file), Some(line)) = (&p.funcs[f.func as usize].file, f.line) else {
                continue;
            };
            let id = *ids.entry((file.as_str(), line)).or_insert_with(|| {
                keys.push((file.as_str(), line, &p.funcs[f.func as usize].name));
                sums.push([0; 2]);
                stamp.push(u32::MAX);
                (keys.len() - 1) as u32
            }) as usize;
            if stamp[id] != st as u32 {
                stamp[id] = st as u32;
                sums[id][0] += n;
                sums[id][1] += cpu;
            }
        }
    }
    let mut v: Vec<LineTotal> = keys
        .iter()
        .zip(&sums)
        .map(|(&(file, line, func), &[samples, cpu_ns])| LineTotal {
            file: file.to_string(),
            line,
            func: func.to_string(),
            samples,
            cpu_ns,
        })
        .collect();
    v.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    v
}
