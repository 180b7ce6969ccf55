//! From profiles to per-run counts, and the counts of one item compared.

use std::collections::HashMap;

use super::stats::{self, NoisePrior};
use super::{Amount, Change, DiffError, Item, Key, Run, Side, MIN_TEST_SAMPLES};
use crate::model::{clock_name, Stats, StatsOptions, TimerClock};

/// Per run: its samples and CPU time, and [self, total, self CPU, total
/// CPU] per item.
pub(super) struct RunCounts {
    pub(super) samples: u64,
    pub(super) cpu_ns: u64,
    pub(super) items: HashMap<Key, [u64; 4]>,
    /// Per line, its leaf functions' samples.
    pub(super) line_funcs: HashMap<Key, HashMap<String, u64>>,
}

pub(super) fn count(run: &Run, lines: bool) -> Result<RunCounts, DiffError> {
    let st = Stats::of(run.profile, StatsOptions { line_totals: lines }).map_err(|message| {
        DiffError::Invalid {
            trace: run.name.clone(),
            message: format!("invalid profile: {message}"),
        }
    })?;
    if st.samples == 0 {
        return Err(DiffError::Empty {
            trace: run.name.clone(),
        });
    }
    let mut items = HashMap::new();
    for f in st.funcs {
        items.insert(
            Key::Function(f.name),
            [
                f.self_samples,
                f.total_samples,
                f.self_cpu_ns,
                f.total_cpu_ns,
            ],
        );
    }
    let mut line_funcs: HashMap<Key, HashMap<String, u64>> = HashMap::new();
    if lines {
        for l in st.lines {
            let key = Key::Line {
                file: l.file,
                line: l.line,
            };
            let e = items.entry(key.clone()).or_insert([0; 4]);
            e[0] += l.samples;
            e[2] += l.cpu_ns;
            *line_funcs
                .entry(key)
                .or_default()
                .entry(l.func)
                .or_default() += l.samples;
        }
        for l in st.line_totals {
            let key = Key::Line {
                file: l.file,
                line: l.line,
            };
            let e = items.entry(key.clone()).or_insert([0; 4]);
            e[1] += l.samples;
            e[3] += l.cpu_ns;
            // A line that is never a leaf is named by its frames' function.
            line_funcs
                .entry(key)
                .or_default()
                .entry(l.func)
                .or_insert(0);
        }
    }
    Ok(RunCounts {
        samples: st.samples,
        cpu_ns: st.cpu_ns,
        items,
        line_funcs,
    })
}

pub(super) fn side(runs: &[Run], counts: &[RunCounts], units: Option<f64>) -> Side {
    let mut programs: Vec<String> = Vec::new();
    for r in runs {
        if !programs.contains(&r.profile.meta.product) {
            programs.push(r.profile.meta.product.clone());
        }
    }
    Side {
        traces: runs.iter().map(|r| r.name.clone()).collect(),
        programs,
        samples: counts.iter().map(|c| c.samples).collect(),
        cpu_ns: counts.iter().map(|c| c.cpu_ns).collect(),
        interval_ns: runs[0].profile.meta.interval_ns,
        clock: runs[0].profile.meta.clock,
        units,
    }
}

/// The per-run counts of a share, base runs then new runs: two shares
/// with the same counts are one hypothesis.
pub(super) type Signature = Vec<u64>;

/// An item compared (its tests not yet corrected for multiplicity), and
/// the signatures of its self and total share.
pub(super) fn compare_item(
    key: &Key,
    bc: &[RunCounts],
    nc: &[RunCounts],
    prior: NoisePrior,
) -> (Item, [Signature; 2]) {
    let get = |c: &RunCounts| c.items.get(key).copied().unwrap_or([0; 4]);
    let runs = |cs: &[RunCounts], i: usize| -> Vec<(u64, u64)> {
        cs.iter().map(|c| (get(c)[i], c.samples)).collect()
    };
    let amount = |cs: &[RunCounts], i: usize| {
        let samples: u64 = cs.iter().map(|c| get(c)[i]).sum();
        let cpu_ns: u64 = cs.iter().map(|c| get(c)[i + 2]).sum();
        let all: u64 = cs.iter().map(|c| c.samples).sum();
        let all_cpu: u64 = cs.iter().map(|c| c.cpu_ns).sum();
        Amount {
            samples,
            share: ratio(samples, all),
            cpu_ns,
            cpu_share: ratio(cpu_ns, all_cpu),
        }
    };
    let test = |i: usize| {
        let (b, n) = (runs(bc, i), runs(nc, i));
        let x: u64 = b.iter().chain(&n).map(|r| r.0).sum();
        if x < MIN_TEST_SAMPLES {
            return None;
        }
        stats::share_test(&b, &n, prior)
    };
    let signature = |i: usize| -> Signature { bc.iter().chain(nc).map(|c| get(c)[i]).collect() };
    let func = match key {
        Key::Function(name) => name.clone(),
        Key::Line { .. } => {
            let mut by: HashMap<&str, u64> = HashMap::new();
            for c in bc.iter().chain(nc) {
                for (f, n) in c.line_funcs.get(key).into_iter().flatten() {
                    *by.entry(f).or_default() += n;
                }
            }
            by.into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(f, _)| f.to_string())
                .unwrap_or_default()
        }
    };
    let item = Item {
        key: key.clone(),
        func,
        self_share: Change {
            base: amount(bc, 0),
            new: amount(nc, 0),
            test: test(0),
            ..Change::default()
        },
        total_share: Change {
            base: amount(bc, 1),
            new: amount(nc, 1),
            test: test(1),
            ..Change::default()
        },
    };
    (item, [signature(0), signature(1)])
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// ρ over all functions' self shares: the runs' method-of-moments sums,
/// pooled, combined with the prior as each test combines them.
pub(super) fn pooled_rho(
    funcs: &[Item],
    bc: &[RunCounts],
    nc: &[RunCounts],
    prior: NoisePrior,
) -> (f64, f64) {
    let (mut num, mut den, mut df) = (0.0, 0.0, 0.0);
    for it in funcs {
        for cs in [bc, nc] {
            let runs: Vec<(u64, u64)> = cs
                .iter()
                .map(|c| (c.items.get(&it.key).map_or(0, |v| v[0]), c.samples))
                .collect();
            let (a, b, d) = stats::rho_moments(&runs);
            num += a;
            den += b;
            df += d;
        }
    }
    let hat = if den > 0.0 { num / den } else { 0.0 };
    let post = df + prior.df;
    let rho = if post > 0.0 {
        ((df * hat + prior.df * prior.rho) / post).max(0.0)
    } else {
        prior.rho
    };
    (rho, df)
}

/// Warnings about recordings that should not be compared this way.
pub(super) fn sanity_warnings(
    b: &Side,
    n: &Side,
    bc: &[RunCounts],
    nc: &[RunCounts],
    warnings: &mut Vec<String>,
) {
    for (s, name) in [(b, "base"), (n, "new")] {
        if s.programs.len() > 1 {
            warnings.push(format!(
                "the {name} runs are of different programs ({}): they are pooled as one",
                s.programs.join(", ")
            ));
        }
    }
    if b.clock != n.clock {
        let c = |c: Option<TimerClock>| c.map_or("an unknown", clock_name);
        warnings.push(format!(
            "the base was sampled on {} clock, the new side on {}: shares of wall time and of CPU time differ for a program that waits",
            c(b.clock),
            c(n.clock)
        ));
    }
    // Functions of each side, by self samples: how much of each side is in
    // functions the other side has too.
    let (fb, fw) = (self_by_function(bc), self_by_function(nc));
    let common = |a: &HashMap<&str, u64>, other: &HashMap<&str, u64>| {
        let all: u64 = a.values().sum();
        let shared: u64 = a
            .iter()
            .filter(|(k, _)| other.contains_key(*k))
            .map(|(_, v)| v)
            .sum();
        ratio(shared, all)
    };
    let (cb, cn) = (common(&fb, &fw), common(&fw, &fb));
    if cb < 0.5 || cn < 0.5 {
        let both = fb.keys().filter(|k| fw.contains_key(*k)).count();
        warnings.push(format!(
            "few functions in common: {both} of {} base and {} new functions, holding {:.0}% of the base's samples and {:.0}% of the new's: are these recordings of the same program ({} / {})?",
            fb.len(),
            fw.len(),
            cb * 100.0,
            cn * 100.0,
            b.programs.join(", "),
            n.programs.join(", ")
        ));
    }
}

/// Self samples per function name, over a side's runs.
fn self_by_function(cs: &[RunCounts]) -> HashMap<&str, u64> {
    let mut m: HashMap<&str, u64> = HashMap::new();
    for c in cs {
        for (k, v) in &c.items {
            if let Key::Function(name) = k {
                *m.entry(name.as_str()).or_default() += v[0];
            }
        }
    }
    m
}
