//! Comparing two sets of recordings — a base and a change, one run or
//! several a side — for a CI gate that fails on a real regression and not
//! on noise ([`compare`] → [`Diff`]; `wanalyze diff`).
//!
//! What is compared:
//! - per function (by name: addresses move between builds) and, with lines,
//!   per source line (by file and line), the self and total share of
//!   samples on each side (all runs of a side pooled), with CPU time beside
//!   them; something on one side only is *new* or *gone*;
//! - the run's CPU time (the geometric mean over a side's runs, per unit of
//!   work when the user gives the units): a change that slows everything
//!   down by 10% moves no share.
//!
//! How a change is judged significant, and why (the measurements are in
//! BENCHMARKS.md, "Diffing two recordings: false positives"):
//! - **Shares**: a two-proportion test whose variance allows for run-to-run
//!   noise ([`stats::share_test`]). Consecutive samples of one run are
//!   correlated, but on the fixtures this does not make a run's counts more
//!   variable than binomial: a timer samples a deterministic program
//!   *more* regularly than independent draws would (Pearson dispersion over
//!   30 batches of a run: 0.1–1.2; over repeated runs of `regress-base`:
//!   0.04–1). What does exceed the binomial is the noise *between* runs, as
//!   the machine's load speeds up or slows down some functions more than
//!   others (repeated runs of `sortmap` on a busy machine: 3–12 for its
//!   memory-bound `merge`). That noise does not shrink with more samples,
//!   so it is modelled as a Dirichlet-multinomial: a share measured on a
//!   run of n samples varies with variance `p(1-p)(1/n + ρ)`. ρ is measured
//!   per function from the runs when a side has several, and otherwise
//!   assumed ([`NoisePrior`], default [`DEFAULT_RUN_NOISE`], worth
//!   [`RUN_NOISE_PRIOR_DF`] degrees of freedom against the runs' own).
//! - **CPU time**: a t-test on the logarithms of the runs' CPU times, the
//!   run-to-run variation measured from the runs when they give 2 degrees
//!   of freedom or more (2 runs a side); with one run a side it is only
//!   compared, unless the user gives the variation to assume
//!   ([`Options::cpu_noise`]): how much CPU time varies from run to run
//!   depends on the machine and the program far more than shares do.
//! - **Many tests at once**: the family-wise error rate is held at α
//!   (default [`DEFAULT_ALPHA`]): α/2 for the CPU test, α/2 for all the
//!   share tests together with Holm's step-down correction. So, where the
//!   noise model holds, a comparison of two recordings of the same program
//!   reports any significant change at most α of the time.
//! - **The gate** ([`gate`]) fails only on significant changes that cross
//!   a threshold, by default a self share up by a point or the CPU time up
//!   by 10% ([`gate::DEFAULT`]).
//!
//! - this file: the comparison, step by step;
//! - `count.rs`: a profile's counts per run, one item compared, warnings;
//! - `types.rs`: the outcome ([`Diff`]) the reports read;
//! - `stats.rs`: the tests, Holm, the power calculation;
//! - `gate.rs`: the thresholds and which changes cross them;
//! - `render.rs`: the text and Markdown reports; `json.rs`: the JSON.

use std::collections::HashMap;

use crate::model::Profile;

mod count;
pub mod gate;
mod json;
mod render;
pub mod stats;
#[cfg(test)]
mod tests;
mod types;

use count::{compare_item, count, pooled_rho, sanity_warnings, side, Signature};
pub use gate::{Metric, Threshold, Unit};
pub use json::to_json;
pub use render::{markdown, text};
use stats::NoisePrior;
pub use types::*;

/// The default family-wise error rate of all the tests of one comparison.
pub const DEFAULT_ALPHA: f64 = 0.01;
/// The default ρ assumed for a side of one run (see [`NoisePrior`]): the
/// run-to-run noise of a share as if each run were worth at most ~3300
/// independent samples. Measured on a shared 2-core machine: 0 for
/// `regress-base`, 0.0001–0.0004 over all of `sortmap`'s functions (up to
/// 0.003 for its most variable one, `merge`).
pub const DEFAULT_RUN_NOISE: f64 = 3e-4;
/// What the assumed ρ weighs against ρ measured from runs (k − 1 degrees
/// of freedom a side): with 9 runs a side the runs count as much.
pub const RUN_NOISE_PRIOR_DF: f64 = 16.0;
/// The power the footer's sample sizes are computed for.
pub const POWER: f64 = 0.8;
/// Fewest samples of an item (both sides together) to test it at all.
pub const MIN_TEST_SAMPLES: u64 = 10;

/// How to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// Family-wise error rate of the comparison.
    pub alpha: f64,
    /// The run-to-run noise of shares assumed before the runs are seen.
    pub noise: NoisePrior,
    /// The run-to-run coefficient of variation of CPU time assumed when
    /// the runs cannot measure it (fewer than 2 runs on both sides); `None`:
    /// the CPU time is then compared but not tested. Measured on a shared
    /// 2-core machine: 1% at 1 ms sampling, 5% at 100 µs, 15% for a
    /// memory-bound program: no default fits all.
    pub cpu_noise: Option<f64>,
    /// Compare source lines too (the profiles need DWARF lines).
    pub lines: bool,
    /// Units of work each run of the base and of the new side did: CPU
    /// time is compared per unit.
    pub per: Option<(f64, f64)>,
    /// The gate's thresholds; empty: the gate never fails.
    pub thresholds: Vec<Threshold>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: DEFAULT_ALPHA,
            noise: NoisePrior {
                rho: DEFAULT_RUN_NOISE,
                df: RUN_NOISE_PRIOR_DF,
            },
            cpu_noise: None,
            lines: false,
            per: None,
            thresholds: gate::parse(&[gate::DEFAULT.to_string()]).expect("the default parses"),
        }
    }
}

/// One recording, as the comparison takes it.
#[derive(Clone)]
pub struct Run<'a> {
    /// How the outputs name it (the trace's path).
    pub name: String,
    pub profile: &'a Profile,
}

/// Compares the base runs with the new runs.
pub fn compare(base: &[Run], new: &[Run], opts: &Options) -> Result<Diff, DiffError> {
    if base.is_empty() {
        return Err(DiffError::NoRuns { side: "base" });
    }
    if new.is_empty() {
        return Err(DiffError::NoRuns { side: "new" });
    }
    let mut warnings = Vec::new();
    let has_lines = |runs: &[Run]| runs.iter().all(|r| r.profile.meta.has_lines);
    let lines = opts.lines
        && {
            let (b, n) = (has_lines(base), has_lines(new));
            if !(b && n) {
                warnings.push(format!(
                "source lines are not compared: {} no DWARF lines (record with a build that has them, and pass --dwarf)",
                match (b, n) {
                    (false, false) => "neither side has",
                    (false, true) => "the base has",
                    _ => "the new side has",
                }
            ));
            }
            b && n
        };
    let count_all = |runs: &[Run]| {
        runs.iter()
            .map(|r| count(r, lines))
            .collect::<Result<Vec<_>, _>>()
    };
    let (bc, nc) = (count_all(base)?, count_all(new)?);
    let (bu, nu) = match opts.per {
        Some((b, n)) => (Some(b), Some(n)),
        None => (None, None),
    };
    let (bs, ns) = (side(base, &bc, bu), side(new, &nc, nu));
    sanity_warnings(&bs, &ns, &bc, &nc, &mut warnings);

    // Every item of either side, with its per-run counts.
    let mut keys: Vec<&Key> = bc.iter().chain(&nc).flat_map(|c| c.items.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut funcs = Vec::new();
    let mut line_items = Vec::new();
    let mut signatures = Vec::new();
    for key in keys {
        let (item, sig) = compare_item(key, &bc, &nc, opts.noise);
        signatures.push(sig);
        match key {
            Key::Function(_) => funcs.push(item),
            Key::Line { .. } => line_items.push(item),
        }
    }
    // Functions then lines, as `signatures` are.
    let (nf, mut items) = (funcs.len(), funcs);
    items.append(&mut line_items);

    // Holm over every distinct share test, at half the family's α.
    let share_alpha = opts.alpha / 2.0;
    let mut ps = Vec::new();
    let mut slot_of: HashMap<&Signature, usize> = HashMap::new();
    let mut slots = Vec::new();
    for (it, sig) in items.iter_mut().zip(&signatures) {
        for (c, s) in [
            (&mut it.self_share, &sig[0]),
            (&mut it.total_share, &sig[1]),
        ] {
            let Some(t) = &c.test else {
                slots.push(None);
                continue;
            };
            let slot = match slot_of.get(s) {
                Some(&slot) => {
                    c.duplicate = true;
                    slot
                }
                None => {
                    ps.push(t.p);
                    slot_of.insert(s, ps.len() - 1);
                    ps.len() - 1
                }
            };
            slots.push(Some(slot));
        }
    }
    let adjusted = stats::holm(&ps);
    let mut next = slots.into_iter();
    for it in &mut items {
        for c in [&mut it.self_share, &mut it.total_share] {
            if let Some(slot) = next.next().flatten() {
                c.p_adjusted = Some(adjusted[slot]);
                c.significant = adjusted[slot] <= share_alpha;
            }
        }
    }
    let mut line_items = items.split_off(nf);
    let mut funcs = items;
    let by_change = |a: &Item, b: &Item| {
        let size = |i: &Item| {
            i.self_share
                .points()
                .abs()
                .max(i.total_share.points().abs())
        };
        let share = |i: &Item| {
            i.total_share
                .base
                .share
                .max(i.total_share.new.share)
                .max(i.self_share.base.share.max(i.self_share.new.share))
        };
        b.significant()
            .cmp(&a.significant())
            .then(size(b).total_cmp(&size(a)))
            .then(share(b).total_cmp(&share(a)))
            .then_with(|| a.key.cmp(&b.key))
    };
    funcs.sort_by(by_change);
    line_items.sort_by(by_change);

    let cpu = compare_cpu(&bs, &ns, opts);
    let (rho, rho_df) = pooled_rho(&funcs, &bc, &nc, opts.noise);
    let method = Method {
        alpha: opts.alpha,
        share_alpha,
        tests: ps.len(),
        prior: opts.noise,
        rho,
        rho_df,
        cpu_noise: opts.cpu_noise,
    };
    let power = power(&bs, &ns, &method);
    let mut diff = Diff {
        base: bs,
        new: ns,
        funcs,
        lines: line_items,
        cpu,
        method,
        power,
        thresholds: opts.thresholds.clone(),
        failures: Vec::new(),
        warnings,
    };
    diff.failures = gate::failures(&diff);
    Ok(diff)
}

fn compare_cpu(b: &Side, n: &Side, opts: &Options) -> CpuChange {
    let per = |s: &Side| -> Vec<f64> {
        let units = s.units.unwrap_or(1.0);
        s.cpu_ns.iter().map(|&c| c as f64 / units).collect()
    };
    let alpha = opts.alpha / 2.0;
    let test = stats::cpu_test(&per(b), &per(n), opts.cpu_noise);
    CpuChange {
        significant: test.and_then(|t| t.p).is_some_and(|p| p <= alpha),
        test,
        alpha,
        per_unit: opts.per.is_some(),
    }
}

fn power(b: &Side, n: &Side, m: &Method) -> Power {
    let mean = |s: &Side| s.total_samples() as f64 / s.runs().max(1) as f64;
    let (runs, samples) = if b.runs() < n.runs() || (b.runs() == n.runs() && mean(b) <= mean(n)) {
        (b.runs(), mean(b))
    } else {
        (n.runs(), mean(n))
    };
    let level = m.share_alpha / m.tests.max(1) as f64;
    let k = runs as f64;
    Power {
        level,
        power: POWER,
        runs,
        samples_per_run: samples,
        detectable_at_50: 100.0 * stats::detectable_change(0.5, samples, k, m.rho, level, POWER),
        detectable_at_10: 100.0 * stats::detectable_change(0.1, samples, k, m.rho, level, POWER),
        samples_for_1pp: stats::samples_needed(0.5, 0.01, k, m.rho, level, POWER),
        runs_for_1pp: stats::runs_needed(0.5, 0.01, samples, m.rho, level, POWER),
    }
}
