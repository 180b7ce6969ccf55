//! A plain-text report for a CI log, and the numbers behind it as data
//! ([`summarize`] → [`Summary`]).
//!
//! The report has the run's facts (program, samples, duration, CPU time,
//! interval and clock, lost samples, how the run ended, warnings), then the
//! top functions by self time and by total time, then (with DWARF lines) the
//! hottest source lines.
//!
//! Definitions: those of [`crate::model::Stats`], which counts the samples
//! (functions by name, self and total, leaf lines). Percentages are of all
//! samples, including those without a stack. A hot line is the leaf
//! frame's source position (its function's file and the frame's line), with
//! the leaf function's name.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::model::redact::without_host_paths;
use crate::model::{
    clock_name, endpoints, exit_kind_name, Endpoint, Profile, RunEnd, Stats, StatsOptions,
    TimerClock,
};
pub use crate::model::{FuncStat, LineStat};

/// Options for [`write()`].
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// How many functions (and lines) each table lists.
    pub top: usize,
    /// Whether to list the hottest source lines (only when the profile has lines).
    pub lines: bool,
    /// How many warnings to print before summarizing the rest.
    pub max_warnings: usize,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            top: 20,
            lines: true,
            max_warnings: 20,
        }
    }
}

/// The numbers of a profile, as [`write()`] reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub program: String,
    pub args: Vec<String>,
    pub recorder: String,
    pub threads: usize,
    /// All samples, over all threads.
    pub samples: u64,
    /// Samples that have no frame at all.
    pub samples_without_stack: u64,
    /// From the first thread's start to the last thread's end (or last
    /// sample, for a thread without an end).
    pub duration_ns: u64,
    /// Sum of all samples' CPU deltas.
    pub cpu_ns: u64,
    /// Samples whose CPU delta is a share of a later reading (`NO_CPU`).
    pub samples_without_cpu: u64,
    pub interval_ns: u64,
    pub clock: Option<TimerClock>,
    pub lost: u64,
    pub end: Option<RunEnd>,
    pub warnings: Vec<String>,
    pub has_lines: bool,
    /// Every function with at least one sample, by self samples (then total
    /// samples, then name).
    pub funcs: Vec<FuncStat>,
    /// Source lines with at least one leaf sample, by samples (then file,
    /// line); empty without line info.
    pub lines: Vec<LineStat>,
    /// Requests a server handled (`wrec serve`), over all threads.
    pub requests: u64,
    /// The slowest of them: its index, `METHOD PATH` and duration in ns.
    pub slowest_request: Option<(u64, String, u64)>,
    /// Their endpoints, by CPU time.
    pub endpoints: Vec<Endpoint>,
}

impl Summary {
    /// The function with this name.
    pub fn func(&self, name: &str) -> Option<&FuncStat> {
        self.funcs.iter().find(|f| f.name == name)
    }

    /// The `n` functions with the most self samples.
    pub fn top_self(&self, n: usize) -> Vec<&FuncStat> {
        self.funcs
            .iter()
            .filter(|f| f.self_samples > 0)
            .take(n)
            .collect()
    }

    /// The `n` functions with the most total samples.
    pub fn top_total(&self, n: usize) -> Vec<&FuncStat> {
        let mut v: Vec<&FuncStat> = self.funcs.iter().collect();
        v.sort_by(|a, b| {
            b.total_samples
                .cmp(&a.total_samples)
                .then(b.self_samples.cmp(&a.self_samples))
                .then_with(|| a.name.cmp(&b.name))
        });
        v.truncate(n);
        v
    }

    /// `n` as a percentage of all samples (0 when there are none).
    pub fn percent(&self, n: u64) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            n as f64 * 100.0 / self.samples as f64
        }
    }
}

/// Computes the [`Summary`] of a profile.
///
/// # Panics
/// If the model's indices are out of range or its stacks form a cycle (see
/// [`try_summarize`]).
pub fn summarize(profile: &Profile) -> Summary {
    try_summarize(profile).unwrap_or_else(|e| panic!("invalid profile model: {e}"))
}

/// Computes the [`Summary`] of a profile, or says why the model is invalid.
pub fn try_summarize(profile: &Profile) -> Result<Summary, String> {
    let st = Stats::of(profile, StatsOptions::default())?;
    let p = profile;
    let m = &p.meta;
    Ok(Summary {
        program: m.product.clone(),
        args: m.args.clone(),
        recorder: m.recorder.clone(),
        threads: p.threads.len(),
        samples: st.samples,
        samples_without_stack: st.samples_without_stack,
        duration_ns: st.duration_ns,
        cpu_ns: st.cpu_ns,
        samples_without_cpu: m.samples_without_cpu,
        interval_ns: m.interval_ns,
        clock: m.clock,
        lost: p.threads.iter().map(|t| t.lost).sum(),
        end: m.end.clone(),
        // The paths in them are this machine's: file names only.
        warnings: m.warnings.iter().map(|w| without_host_paths(w)).collect(),
        has_lines: m.has_lines,
        funcs: st.funcs,
        lines: st.lines,
        requests: p.threads.iter().map(|t| t.requests.len() as u64).sum(),
        slowest_request: p
            .threads
            .iter()
            .flat_map(|t| &t.requests)
            .map(|r| (r.end_ns.saturating_sub(r.start_ns), r))
            // The slowest; the first of equals.
            .fold(
                None::<(u64, &crate::model::Request)>,
                |best, (d, r)| match best {
                    Some((bd, _)) if bd >= d => best,
                    _ => Some((d, r)),
                },
            )
            .map(|(d, r)| (r.index, r.name.clone(), d)),
        endpoints: endpoints(p),
    })
}

/// Writes the text report.
pub fn write(profile: &Profile, opts: &TextOptions, out: &mut dyn Write) -> io::Result<()> {
    let s = try_summarize(profile).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    out.write_all(render(&s, opts).as_bytes())?;
    out.flush()
}

/// The text report of a summary.
pub fn render(s: &Summary, opts: &TextOptions) -> String {
    let mut o = String::new();
    let _ = render_into(&mut o, s, opts);
    o
}

fn render_into(o: &mut String, s: &Summary, opts: &TextOptions) -> std::fmt::Result {
    writeln!(o, "wrec profile of {}", clean(&s.program))?;
    let mut facts: Vec<(&str, String)> = Vec::new();
    if !s.args.is_empty() {
        facts.push(("arguments", clean(&s.args.join(" "))));
    }
    if !s.recorder.is_empty() {
        facts.push(("recorder", clean(&s.recorder)));
    }
    let mut samples = format!(
        "{} on {} thread{}",
        s.samples,
        s.threads,
        if s.threads == 1 { "" } else { "s" }
    );
    if s.samples_without_stack > 0 {
        let _ = write!(samples, " ({} without a stack)", s.samples_without_stack);
    }
    facts.push(("samples", samples));
    facts.push(("duration", fmt_ns(s.duration_ns)));
    let mut cpu = fmt_ns(s.cpu_ns);
    if s.samples_without_cpu > 0 {
        // Below 1 ms intervals wrec reads the CPU clock only where the
        // thread may not have run the whole time (SPEC.md §3).
        let _ = write!(
            cpu,
            " ({:.0}% of samples were not timed alone: each has its share of the next CPU reading)",
            100.0 * s.samples_without_cpu as f64 / s.samples.max(1) as f64
        );
    }
    facts.push(("CPU time", cpu));
    let clock = match s.clock {
        None => String::new(),
        Some(c) => format!(", {} clock", clock_name(c)),
    };
    facts.push(("interval", format!("{}{clock}", fmt_ns(s.interval_ns))));
    facts.push(("lost samples", s.lost.to_string()));
    if let Some((index, name, ns)) = &s.slowest_request {
        facts.push((
            "requests",
            clean(&format!(
                "{}; slowest: request {index}, {name}, {}",
                s.requests,
                fmt_ns(*ns)
            )),
        ));
    }
    let end = match &s.end {
        None => "unknown: no end record (the recorder was killed?)".to_string(),
        Some(e) if e.message.is_empty() => {
            format!("{}, status {}", exit_kind_name(e.kind), e.status)
        }
        Some(e) => clean(&format!(
            "{}, status {}: {}",
            exit_kind_name(e.kind),
            e.status,
            e.message
        )),
    };
    facts.push(("run ended", end));
    facts.push((
        "source lines",
        if s.has_lines { "yes" } else { "no" }.into(),
    ));
    facts.push(("warnings", s.warnings.len().to_string()));
    let w = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &facts {
        writeln!(o, "  {k:<w$}  {v}")?;
    }
    for warning in s.warnings.iter().take(opts.max_warnings) {
        writeln!(o, "    - {}", clean(warning))?;
    }
    if s.warnings.len() > opts.max_warnings {
        writeln!(
            o,
            "    ... and {} more",
            s.warnings.len() - opts.max_warnings
        )?;
    }

    if opts.top == 0 {
        return Ok(());
    }
    let top_self = s.top_self(opts.top);
    writeln!(o)?;
    writeln!(o, "Top {} functions by self time", top_self.len())?;
    func_table(o, s, &top_self)?;
    let top_total = s.top_total(opts.top);
    writeln!(o)?;
    writeln!(o, "Top {} functions by total time", top_total.len())?;
    func_table(o, s, &top_total)?;
    endpoint_table(o, s, opts.top)?;

    if opts.lines && s.has_lines {
        let lines: Vec<&LineStat> = s.lines.iter().take(opts.top).collect();
        writeln!(o)?;
        writeln!(o, "Hottest {} source lines", lines.len())?;
        let locs: Vec<String> = lines
            .iter()
            .map(|l| format!("{}:{}", clean(&l.file), l.line))
            .collect();
        let rows: Vec<[String; 3]> = lines
            .iter()
            .zip(&locs)
            .map(|(l, loc)| {
                [
                    l.samples.to_string(),
                    pct(s.percent(l.samples)),
                    loc.clone(),
                ]
            })
            .collect();
        let wn = col_width(&rows, 0, "Samples");
        let wp = col_width(&rows, 1, "%");
        let wl = col_width(&rows, 2, "Location");
        writeln!(
            o,
            "  {:>wn$}  {:>wp$}  {:<wl$}  Function",
            "Samples", "%", "Location"
        )?;
        for (row, l) in rows.iter().zip(&lines) {
            writeln!(
                o,
                "  {:>wn$}  {:>wp$}  {:<wl$}  {}",
                row[0],
                row[1],
                row[2],
                clean(&l.func)
            )?;
        }
    }
    Ok(())
}

/// The requests by endpoint (`wrec serve`), the `top` with the most CPU
/// time: how many, the samples and CPU time taken in them (in all and a
/// request), and their median and longest durations.
fn endpoint_table(o: &mut String, s: &Summary, top: usize) -> std::fmt::Result {
    if s.endpoints.is_empty() {
        return Ok(());
    }
    let shown = &s.endpoints[..s.endpoints.len().min(top)];
    writeln!(o)?;
    writeln!(
        o,
        "Requests by endpoint: {} of {}, by CPU time",
        shown.len(),
        s.endpoints.len()
    )?;
    let heads = ["Requests", "Samples", "CPU", "CPU/req", "Median", "Max"];
    let rows: Vec<[String; 6]> = shown
        .iter()
        .map(|e| {
            [
                e.requests.to_string(),
                e.samples.to_string(),
                fmt_ns(e.cpu_ns),
                fmt_ns(e.cpu_ns / e.requests.max(1)),
                fmt_ns(e.median_ns),
                fmt_ns(e.max_ns),
            ]
        })
        .collect();
    let w: Vec<usize> = (0..6).map(|i| col_width(&rows, i, heads[i])).collect();
    for (i, h) in heads.iter().enumerate() {
        write!(o, "  {h:>0$}", w[i])?;
    }
    writeln!(o, "  Endpoint")?;
    for (row, e) in rows.iter().zip(shown) {
        for (i, cell) in row.iter().enumerate() {
            write!(o, "  {cell:>0$}", w[i])?;
        }
        writeln!(o, "  {}", clean(&e.name))?;
    }
    Ok(())
}

fn func_table(o: &mut String, s: &Summary, funcs: &[&FuncStat]) -> std::fmt::Result {
    let rows: Vec<[String; 4]> = funcs
        .iter()
        .map(|f| {
            [
                f.self_samples.to_string(),
                pct(s.percent(f.self_samples)),
                f.total_samples.to_string(),
                pct(s.percent(f.total_samples)),
            ]
        })
        .collect();
    let w0 = col_width(&rows, 0, "Self");
    let w1 = col_width(&rows, 1, "Self%");
    let w2 = col_width(&rows, 2, "Total");
    let w3 = col_width(&rows, 3, "Total%");
    writeln!(
        o,
        "  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}  Function",
        "Self", "Self%", "Total", "Total%"
    )?;
    for (row, f) in rows.iter().zip(funcs) {
        writeln!(
            o,
            "  {:>w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            clean(&f.name)
        )?;
    }
    Ok(())
}

fn col_width<const N: usize>(rows: &[[String; N]], col: usize, header: &str) -> usize {
    rows.iter()
        .map(|r| r[col].chars().count())
        .chain([header.len()])
        .max()
        .unwrap_or(0)
}

fn pct(p: f64) -> String {
    format!("{p:.2}%")
}

/// Control characters (line breaks, tabs) would break the layout.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A duration with a unit: `1.5 s`, `250 ms`, `100 us`, `12 ns`.
pub fn fmt_ns(ns: u64) -> String {
    let (v, unit) = if ns >= 1_000_000_000 {
        (ns as f64 / 1e9, "s")
    } else if ns >= 1_000_000 {
        (ns as f64 / 1e6, "ms")
    } else if ns >= 1_000 {
        (ns as f64 / 1e3, "us")
    } else {
        return format!("{ns} ns");
    };
    let mut s = format!("{v:.3}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    format!("{s} {unit}")
}
