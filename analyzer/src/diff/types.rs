//! The comparison's outcome, as the reports read it.

use super::stats::{CpuTest, NoisePrior, ShareTest};
use super::Threshold;
use crate::model::TimerClock;

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// The traces' names, one a run.
    pub traces: Vec<String>,
    /// The programs recorded, distinct, in order.
    pub programs: Vec<String>,
    /// Per run: samples, and CPU time in ns.
    pub samples: Vec<u64>,
    pub cpu_ns: Vec<u64>,
    pub interval_ns: u64,
    pub clock: Option<TimerClock>,
    /// Units of work per run (`--per`).
    pub units: Option<f64>,
}

impl Side {
    pub fn runs(&self) -> usize {
        self.samples.len()
    }
    pub fn total_samples(&self) -> u64 {
        self.samples.iter().sum()
    }
}

/// What a row of the comparison is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Function(String),
    Line { file: String, line: u32 },
}

/// Samples and CPU time of an item on one side, all runs pooled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Amount {
    pub samples: u64,
    /// Of all the side's samples.
    pub share: f64,
    pub cpu_ns: u64,
    /// Of all the side's CPU time.
    pub cpu_share: f64,
}

/// One share (self or total) of an item, compared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Change {
    pub base: Amount,
    pub new: Amount,
    /// `None`: not tested (too few samples, or on every sample of both
    /// sides).
    pub test: Option<ShareTest>,
    /// The counts equal, run by run, those of a share tested before (the
    /// total of a function that is only ever a leaf, the callers every
    /// sample passes through): one hypothesis, counted once in the
    /// correction for many tests.
    pub duplicate: bool,
    /// Holm-adjusted p-value.
    pub p_adjusted: Option<f64>,
    pub significant: bool,
}

impl Change {
    /// The change in share points (percentage points).
    pub fn points(&self) -> f64 {
        (self.new.share - self.base.share) * 100.0
    }
    /// The relative change in percent; +∞ for something new.
    pub fn relative(&self) -> f64 {
        if self.base.share == 0.0 {
            if self.new.share == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (self.new.share / self.base.share - 1.0) * 100.0
        }
    }
}

/// A function or line, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    /// The function's name; for a line, the function most of its leaf
    /// samples are in (a line never a leaf: the function of its frames).
    pub func: String,
    pub self_share: Change,
    pub total_share: Change,
}

impl Item {
    /// Only on the new side / only on the base side.
    pub fn is_new(&self) -> bool {
        self.total_share.base.samples == 0 && self.total_share.new.samples > 0
    }
    pub fn is_gone(&self) -> bool {
        self.total_share.new.samples == 0 && self.total_share.base.samples > 0
    }
    pub fn significant(&self) -> bool {
        self.self_share.significant || self.total_share.significant
    }
    /// How the outputs name it: `transform`, `src/a.c:79`.
    pub fn label(&self) -> String {
        match &self.key {
            Key::Function(name) => name.clone(),
            Key::Line { file, line } => format!("{file}:{line}"),
        }
    }
}

/// The CPU time, compared.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuChange {
    pub test: Option<CpuTest>,
    /// The level the CPU test is held to (α/2).
    pub alpha: f64,
    pub significant: bool,
    /// Whether the CPU times are per unit of work.
    pub per_unit: bool,
}

/// A threshold crossed by a significant change.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub threshold: Threshold,
    pub subject: Subject,
}

/// What crossed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// [`Diff::funcs`]`[i]`.
    Function(usize),
    /// [`Diff::lines`]`[i]`.
    Line(usize),
    Cpu,
}

/// The noise model and the tests' levels, as used.
#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    pub alpha: f64,
    /// Level of the share tests as a family (α/2), and how many there are.
    pub share_alpha: f64,
    pub tests: usize,
    pub prior: NoisePrior,
    /// ρ over all functions (the prior and the runs), and the runs' degrees
    /// of freedom behind it (0: assumed only).
    pub rho: f64,
    pub rho_df: f64,
    pub cpu_noise: Option<f64>,
}

/// How large a change these recordings can see
/// ([`detectable_change`](super::stats::detectable_change)).
#[derive(Debug, Clone, PartialEq)]
pub struct Power {
    /// The level of the first Holm step (share α / tests) and the power.
    pub level: f64,
    pub power: f64,
    /// The runs a side and their mean samples (of the smaller side).
    pub runs: usize,
    pub samples_per_run: f64,
    /// Share points detectable near a 50% and a 10% share.
    pub detectable_at_50: f64,
    pub detectable_at_10: f64,
    /// For a 1-point change near 50%: samples a run needs with this many
    /// runs (`None`: no number of samples will do), and runs needed with
    /// runs this long.
    pub samples_for_1pp: Option<f64>,
    pub runs_for_1pp: f64,
}

/// The outcome of [`compare`](super::compare).
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub base: Side,
    pub new: Side,
    /// Significant changes first, then by size.
    pub funcs: Vec<Item>,
    pub lines: Vec<Item>,
    pub cpu: CpuChange,
    pub method: Method,
    pub power: Power,
    pub thresholds: Vec<Threshold>,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
}

impl Diff {
    /// Whether the gate fails.
    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
    }
    /// Whether any change at all is significant.
    pub fn any_significant(&self) -> bool {
        self.cpu.significant
            || self.funcs.iter().any(Item::significant)
            || self.lines.iter().any(Item::significant)
    }
}

/// Why two sides cannot be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{side}: no recording given")]
    NoRuns { side: &'static str },
    #[error("{trace}: no samples: nothing to compare")]
    Empty { trace: String },
    #[error("{trace}: {message}")]
    Invalid { trace: String, message: String },
}
