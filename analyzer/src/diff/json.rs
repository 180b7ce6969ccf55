//! The diff as JSON, for other tools.
//!
//! ```text
//! { "version": 1,
//!   "failed": bool, "any_significant": bool,
//!   "base": SIDE, "new": SIDE,
//!   "cpu": {"base_ns", "new_ns", "change", "p", "alpha", "significant",
//!           "per_unit", "cv", "cv_df"} | null,
//!   "functions": [ITEM], "lines": [ITEM],
//!   "gate": {"thresholds": ["self:+1pp", ...],
//!            "failures": [{"threshold", "kind": "function"|"line"|"cpu",
//!                          "name", "file", "line", "message"}]},
//!   "method": {"alpha", "share_alpha", "tests", "rho", "rho_df",
//!              "rho_prior", "rho_prior_df", "cpu_noise"},
//!   "power": {"level", "power", "runs", "samples_per_run",
//!             "detectable_pp_at_50", "detectable_pp_at_10",
//!             "samples_for_1pp", "runs_for_1pp"},
//!   "warnings": [string] }
//! SIDE: {"traces", "programs", "samples": [per run], "cpu_ns": [per run],
//!        "interval_ns", "clock", "units"}
//! ITEM: {"name" (a line: its function), "file", "line" (lines only),
//!        "status": "both"|"new"|"gone",
//!        "self": SHARE, "total": SHARE}
//! SHARE: {"base": AMOUNT, "new": AMOUNT, "change_pp", "change_relative",
//!         "tested", "p", "p_adjusted", "significant", "rho"}
//! AMOUNT: {"samples", "share", "cpu_ns", "cpu_share"}
//! ```
//!
//! Shares are fractions (0.53), changes in points and relative changes in
//! percent (+6.4, +12.0); a relative change from 0 is null.

use serde_json::{json, Value};

use super::{Amount, Change, Diff, Item, Key, Side, Subject};

/// The diff as a JSON value.
pub fn to_json(d: &Diff) -> Value {
    let failures: Vec<Value> = d
        .failures
        .iter()
        .map(|f| {
            let (kind, item) = match f.subject {
                Subject::Cpu => ("cpu", None),
                Subject::Function(i) => ("function", Some(&d.funcs[i])),
                Subject::Line(i) => ("line", Some(&d.lines[i])),
            };
            let (file, line) = match item.map(|i| &i.key) {
                Some(Key::Line { file, line }) => (Some(file.as_str()), Some(*line)),
                _ => (None, None),
            };
            json!({
                "threshold": f.threshold.to_string(),
                "kind": kind,
                "name": item.map(|i| i.func.as_str()),
                "file": file,
                "line": line,
                "message": super::render::failure_line(d, f),
            })
        })
        .collect();
    let m = &d.method;
    let p = &d.power;
    json!({
        "version": 1,
        "failed": d.failed(),
        "any_significant": d.any_significant(),
        "base": side(&d.base),
        "new": side(&d.new),
        "cpu": d.cpu.test.map(|t| json!({
            "base_ns": t.base,
            "new_ns": t.new,
            "change": finite(t.change * 100.0),
            "p": t.p,
            "alpha": d.cpu.alpha,
            "significant": d.cpu.significant,
            "per_unit": d.cpu.per_unit,
            "cv": t.cv,
            "cv_df": t.cv_df,
        })),
        "functions": d.funcs.iter().map(item).collect::<Vec<_>>(),
        "lines": d.lines.iter().map(item).collect::<Vec<_>>(),
        "gate": {
            "thresholds": d.thresholds.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "failures": failures,
        },
        "method": {
            "alpha": m.alpha,
            "share_alpha": m.share_alpha,
            "tests": m.tests,
            "rho": m.rho,
            "rho_df": m.rho_df,
            "rho_prior": m.prior.rho,
            "rho_prior_df": m.prior.df,
            "cpu_noise": m.cpu_noise,
        },
        "power": {
            "level": p.level,
            "power": p.power,
            "runs": p.runs,
            "samples_per_run": p.samples_per_run,
            "detectable_pp_at_50": p.detectable_at_50,
            "detectable_pp_at_10": p.detectable_at_10,
            "samples_for_1pp": p.samples_for_1pp,
            "runs_for_1pp": p.runs_for_1pp,
        },
        "warnings": d.warnings,
    })
}

fn side(s: &Side) -> Value {
    json!({
        "traces": s.traces,
        "programs": s.programs,
        "samples": s.samples,
        "cpu_ns": s.cpu_ns,
        "interval_ns": s.interval_ns,
        "clock": s.clock.map(crate::model::clock_name),
        "units": s.units,
    })
}

fn item(i: &Item) -> Value {
    let (name, file, line) = match &i.key {
        Key::Function(n) => (n.as_str(), None, None),
        Key::Line { file, line } => (i.func.as_str(), Some(file.as_str()), Some(*line)),
    };
    json!({
        "name": name,
        "file": file,
        "line": line,
        "status": if i.is_new() { "new" } else if i.is_gone() { "gone" } else { "both" },
        "self": change(&i.self_share),
        "total": change(&i.total_share),
    })
}

fn change(c: &Change) -> Value {
    json!({
        "base": amount(&c.base),
        "new": amount(&c.new),
        "change_pp": c.points(),
        "change_relative": finite(c.relative()),
        "tested": c.test.is_some(),
        "p": c.test.map(|t| t.p),
        "p_adjusted": c.p_adjusted,
        "significant": c.significant,
        "rho": c.test.map(|t| t.rho),
    })
}

fn amount(a: &Amount) -> Value {
    json!({
        "samples": a.samples,
        "share": a.share,
        "cpu_ns": a.cpu_ns,
        "cpu_share": a.cpu_share,
    })
}

/// JSON has no infinity: null.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}
