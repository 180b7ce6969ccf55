//! The CI gate's thresholds: `--fail-on 'self:+1pp,cpu:+10%'`.
//!
//! A threshold is `METRIC:CHANGE`, several separated by commas (or given
//! as several `--fail-on`):
//!
//! - `METRIC` is `self` or `total` (the self or total share of samples of
//!   a function, and with `--dwarf` of a source line) or `cpu` (the run's
//!   CPU time, per unit of work with `--per`);
//! - `CHANGE` is a signed number and a unit: `+` an increase (the sign may
//!   be left out), `-` a decrease; `pp` share points (`self:+2pp`: the
//!   share grew by 2 points or more, e.g. 40% → 42%; shares only) or `%`
//!   relative (`total:+10%`: the share grew by a tenth of itself or more,
//!   e.g. 40% → 44%; `cpu:+5%`).
//!
//! `none` alone disables the gate. The gate fails when a change that the
//! test finds significant crosses a threshold; an insignificant change
//! never fails it, however large.

use std::fmt;

use super::{Diff, Failure, Subject};

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The self share of samples of a function or line.
    SelfShare,
    /// The total share of samples of a function or line.
    TotalShare,
    /// The run's CPU time.
    Cpu,
}

/// The unit of a threshold's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Share points (percentage points of all samples).
    Points,
    /// Percent of the base value.
    Relative,
}

/// One threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub metric: Metric,
    /// True for a decrease.
    pub decrease: bool,
    /// The size, in the unit's terms: 2.0 for `+2pp`, 10.0 for `+10%`.
    pub size: f64,
    pub unit: Unit,
}

/// The default: a significant increase of a self share by a share point,
/// or of the CPU time by a tenth.
pub const DEFAULT: &str = "self:+1pp,cpu:+10%";

impl Threshold {
    /// Whether a change crosses this threshold: `points` the change of a
    /// share in share points (ignored for CPU), `relative` the relative
    /// change in percent (+∞ for something that was 0).
    pub fn crossed(&self, points: f64, relative: f64) -> bool {
        let v = match self.unit {
            Unit::Points => points,
            Unit::Relative => relative,
        };
        if v.is_nan() {
            return false;
        }
        if self.decrease {
            v <= -self.size
        } else {
            v >= self.size
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metric = match self.metric {
            Metric::SelfShare => "self",
            Metric::TotalShare => "total",
            Metric::Cpu => "cpu",
        };
        let sign = if self.decrease { '-' } else { '+' };
        let unit = match self.unit {
            Unit::Points => "pp",
            Unit::Relative => "%",
        };
        write!(f, "{metric}:{sign}{}{unit}", self.size)
    }
}

/// Parses `--fail-on` values: each a comma-separated list of thresholds,
/// or `none` (no threshold at all, whatever else is given).
pub fn parse(specs: &[String]) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    let mut none = false;
    for spec in specs {
        for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if part.eq_ignore_ascii_case("none") {
                none = true;
            } else {
                out.push(parse_one(part)?);
            }
        }
    }
    if none {
        out.clear();
    }
    Ok(out)
}

/// One `METRIC:CHANGE`.
pub fn parse_one(s: &str) -> Result<Threshold, String> {
    let bad = |why: &str| {
        format!(
            "--fail-on {s:?}: {why} (expected METRIC:CHANGE, e.g. self:+1pp, total:+10%, cpu:+5%; METRIC is self, total or cpu; CHANGE a signed number with pp or %)"
        )
    };
    let (metric, change) = s.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let metric = match metric.trim().to_ascii_lowercase().as_str() {
        "self" => Metric::SelfShare,
        "total" => Metric::TotalShare,
        "cpu" => Metric::Cpu,
        other => return Err(bad(&format!("unknown metric {other:?}"))),
    };
    let change = change.trim();
    let (number, unit) = if let Some(n) = change.strip_suffix("pp") {
        (n, Unit::Points)
    } else if let Some(n) = change.strip_suffix('%') {
        (n, Unit::Relative)
    } else {
        return Err(bad("the change needs a unit, pp or %"));
    };
    if metric == Metric::Cpu && unit == Unit::Points {
        return Err(bad("cpu takes a relative change (%), not share points"));
    }
    let number = number.trim();
    let (decrease, digits) = match number.as_bytes().first() {
        Some(b'+') => (false, &number[1..]),
        Some(b'-') => (true, &number[1..]),
        _ => (false, number),
    };
    let size: f64 = digits
        .trim()
        .parse()
        .map_err(|_| bad(&format!("{digits:?} is not a number")))?;
    if !size.is_finite() || size < 0.0 {
        return Err(bad("the size must be a finite number >= 0"));
    }
    if unit == Unit::Points && size > 100.0 {
        return Err(bad("a share moves by 100 points at most"));
    }
    Ok(Threshold {
        metric,
        decrease,
        size,
        unit,
    })
}

/// The thresholds a diff's significant changes cross.
pub(super) fn failures(d: &Diff) -> Vec<Failure> {
    let mut out = Vec::new();
    for th in &d.thresholds {
        match th.metric {
            Metric::Cpu => {
                if let (true, Some(t)) = (d.cpu.significant, d.cpu.test) {
                    if th.crossed(f64::NAN, t.change * 100.0) {
                        out.push(Failure {
                            threshold: *th,
                            subject: Subject::Cpu,
                        });
                    }
                }
            }
            Metric::SelfShare | Metric::TotalShare => {
                for (items, subject) in [
                    (&d.funcs, Subject::Function as fn(usize) -> Subject),
                    (&d.lines, Subject::Line as fn(usize) -> Subject),
                ] {
                    for (i, it) in items.iter().enumerate() {
                        let c = if th.metric == Metric::SelfShare {
                            &it.self_share
                        } else {
                            &it.total_share
                        };
                        if c.significant && th.crossed(c.points(), c.relative()) {
                            out.push(Failure {
                                threshold: *th,
                                subject: subject(i),
                            });
                        }
                    }
                }
            }
        }
    }
    out
}
