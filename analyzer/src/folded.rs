//! Collapsed ("folded") stacks, as `inferno-flamegraph`, `flamegraph.pl`
//! and speedscope read them: one line per distinct stack, frames root first
//! joined by `;`, a space, then the count.
//!
//! ```text
//! main;fib;fib;fib 120
//! main;run;core::slice::sort::insertion_sort 12
//! [no stack] 3
//! ```
//!
//! - Each frame is its function's name; inlined functions appear as their
//!   own frames, after (to the right of) the function they were inlined into.
//!   Stacks whose names are equal (e.g. the same functions at different
//!   addresses) are merged into one line.
//! - Samples without any frame are counted on a `[no stack]` line, so the
//!   counts add up to the number of samples.
//! - With more than one thread (by default), each line starts with the
//!   thread's name as a root frame; threads with the same name are told
//!   apart by their tid.
//! - Lines are sorted (byte order), so the output is deterministic.
//! - Names are sanitized ([`sanitize`]): `;` becomes `:`, line breaks and
//!   other control characters become spaces, surrounding blanks are trimmed;
//!   an empty name becomes `[unknown]`.
//!
//! [`write_diff`] writes the differential form of two sets of profiles
//! (`stack count_base count_new`) for inferno's differential flame graph.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Write};

use crate::model::{FuncPaths, Profile, Thread};

/// The frame that counts samples without a stack.
pub const NO_STACK: &str = "[no stack]";

/// Whether lines start with the thread's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadRoots {
    /// Only when the profile has more than one thread.
    #[default]
    Auto,
    Always,
    Never,
}

/// What a line's count measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Weight {
    /// Number of samples.
    #[default]
    Samples,
    /// Thread CPU time in µs (the samples' CPU deltas); useful for a wall
    /// clock profile of a program that blocks. Lines that round to 0 are
    /// left out.
    CpuMicros,
}

/// Options for [`write_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldedOptions {
    pub thread_roots: ThreadRoots,
    pub weight: Weight,
}

/// Writes collapsed stacks with the default options: sample counts, a
/// thread root frame when there is more than one thread.
pub fn write(profile: &Profile, out: &mut dyn Write) -> io::Result<()> {
    write_with(profile, &FoldedOptions::default(), out)
}

/// Writes collapsed stacks.
pub fn write_with(profile: &Profile, opts: &FoldedOptions, out: &mut dyn Write) -> io::Result<()> {
    let lines = collapse(profile, opts)?;
    let mut w = BufWriter::with_capacity(1 << 16, out);
    for (line, count) in &lines {
        writeln!(w, "{line} {count}")?;
    }
    w.flush()
}

/// The collapsed lines (without counts) and their counts, sorted.
pub fn collapse(profile: &Profile, opts: &FoldedOptions) -> io::Result<BTreeMap<String, u64>> {
    profile
        .check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let p = profile;
    let roots = match opts.thread_roots {
        ThreadRoots::Auto => p.threads.len() > 1,
        ThreadRoots::Always => true,
        ThreadRoots::Never => false,
    };
    let root_names = if roots {
        thread_root_names(&p.threads)
    } else {
        Vec::new()
    };
    // Sanitized once per function.
    let mut func_names: Vec<Option<String>> = vec![None; p.funcs.len()];
    let paths = FuncPaths::new(p);

    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    // Per-path weights for one thread at a time.
    let mut per_path = vec![0u64; paths.len()];
    let mut names: Vec<u32> = Vec::new();
    for (ti, t) in p.threads.iter().enumerate() {
        per_path.fill(0);
        let mut no_stack = 0u64;
        for s in &t.samples {
            let w = match opts.weight {
                Weight::Samples => 1,
                Weight::CpuMicros => s.cpu_delta_ns,
            };
            match s.stack {
                Some(st) => per_path[paths.of_stack(st) as usize] += w,
                None => no_stack += w,
            }
        }
        let root = root_names.get(ti).map(String::as_str);
        let mut emit = |line: String, w: u64| {
            *lines.entry(line).or_default() += w;
        };
        if no_stack > 0 {
            let line = match root {
                Some(r) => format!("{r};{NO_STACK}"),
                None => NO_STACK.to_string(),
            };
            emit(line, no_stack);
        }
        for (path, &w) in per_path.iter().enumerate() {
            if w == 0 {
                continue;
            }
            names.clear();
            names.extend(paths.funcs(path as u32));
            let mut line = String::new();
            if let Some(r) = root {
                line.push_str(r);
                line.push(';');
            }
            for (i, &func) in names.iter().rev().enumerate() {
                if i > 0 {
                    line.push(';');
                }
                let name = func_names[func as usize]
                    .get_or_insert_with(|| sanitize(&p.funcs[func as usize].name).into_owned());
                line.push_str(name);
            }
            emit(line, w);
        }
    }
    if opts.weight == Weight::CpuMicros {
        lines.retain(|_, ns| {
            *ns = (*ns + 500) / 1000;
            *ns > 0
        });
    }
    Ok(lines)
}

/// Writes differential folded stacks, `stack count_base count_new` a line,
/// as inferno's `inferno-diff-folded` writes them and its flame graph
/// (`inferno-flamegraph`, which colours each frame by the change) reads
/// them. Each side may be several runs, whose counts are added. The base's
/// counts are scaled to the new side's total (as `inferno-diff-folded
/// --normalize` does), so that the colours show shares that changed, not
/// how many samples each side took. Stacks are collapsed as [`write()`]
/// does, with a thread root frame on every side when any profile has more
/// than one thread.
pub fn write_diff(base: &[&Profile], new: &[&Profile], out: &mut dyn Write) -> io::Result<()> {
    let roots = if base.iter().chain(new).any(|p| p.threads.len() > 1) {
        ThreadRoots::Always
    } else {
        ThreadRoots::Never
    };
    let opts = FoldedOptions {
        thread_roots: roots,
        weight: Weight::Samples,
    };
    let side = |ps: &[&Profile]| -> io::Result<BTreeMap<String, u64>> {
        let mut all = BTreeMap::new();
        for p in ps {
            for (line, n) in collapse(p, &opts)? {
                *all.entry(line).or_default() += n;
            }
        }
        Ok(all)
    };
    let (b, n) = (side(base)?, side(new)?);
    let (tb, tn) = (b.values().sum::<u64>(), n.values().sum::<u64>());
    let scale = if tb == 0 { 1.0 } else { tn as f64 / tb as f64 };
    let mut lines: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (line, &c) in &b {
        lines.entry(line).or_default().0 = (c as f64 * scale).round() as u64;
    }
    for (line, &c) in &n {
        lines.entry(line).or_default().1 = c;
    }
    let mut w = BufWriter::with_capacity(1 << 16, out);
    // A base stack scaled down to 0 that the new side lacks says nothing.
    for (line, (cb, cn)) in lines.into_iter().filter(|&(_, c)| c != (0, 0)) {
        writeln!(w, "{line} {cb} {cn}")?;
    }
    w.flush()
}

/// Root frame names for threads: the thread's name, with its tid when
/// another thread has the same name (or it has none).
fn thread_root_names(threads: &[Thread]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for t in threads {
        *seen.entry(t.name.as_str()).or_default() += 1;
    }
    threads
        .iter()
        .map(|t| {
            let name = sanitize(&t.name);
            if t.name.is_empty() {
                format!("thread {}", t.tid)
            } else if seen[t.name.as_str()] > 1 {
                format!("{name} (tid {})", t.tid)
            } else {
                name.into_owned()
            }
        })
        .collect()
}

/// Makes a name safe for one frame of a folded line: `;` becomes `:`,
/// control characters (line breaks, tabs) become spaces, surrounding blanks
/// are trimmed, and an empty (or all-blank) name becomes `[unknown]`.
pub fn sanitize(name: &str) -> Cow<'_, str> {
    if name.trim().is_empty() {
        return Cow::Borrowed("[unknown]");
    }
    if !name.chars().any(|c| c == ';' || c.is_control()) && name.trim() == name {
        return Cow::Borrowed(name);
    }
    let clean: String = name
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    match clean.trim() {
        "" => Cow::Borrowed("[unknown]"),
        t => Cow::Owned(t.to_string()),
    }
}
