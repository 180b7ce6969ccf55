//! The text report (for a CI log) and the Markdown report (for a pull
//! request's comment) of a [`Diff`].
//!
//! Both: the two sides, the CPU time, the gate's verdict with one line per
//! threshold crossed, then the functions and lines (significant changes
//! first, biggest first, then the largest shares up to `top` rows), then
//! how the changes were judged and what size of change the recordings can
//! see.

use std::fmt::Write as _;

use super::{Change, CpuChange, Diff, Failure, Item, Side, Subject};

/// Text for a terminal or a CI log; `top` rows of unchanged items a table.
pub fn text(d: &Diff, top: usize) -> String {
    let mut o = String::new();
    let _ = text_into(&mut o, d, top);
    o
}

fn text_into(o: &mut String, d: &Diff, top: usize) -> std::fmt::Result {
    writeln!(o, "wanalyze diff")?;
    writeln!(o, "  base  {}", side_line(&d.base))?;
    writeln!(o, "  new   {}", side_line(&d.new))?;
    for w in &d.warnings {
        writeln!(o, "  warning: {}", clean(w))?;
    }
    writeln!(o)?;
    writeln!(o, "{}", cpu_line(d, &d.cpu))?;
    writeln!(o)?;
    writeln!(o, "{}", verdict(d))?;
    for f in &d.failures {
        writeln!(o, "  FAIL {}", failure_line(d, f))?;
    }
    for (title, items) in [("Functions", &d.funcs), ("Source lines", &d.lines)] {
        if items.is_empty() {
            continue;
        }
        writeln!(o)?;
        let sig = items.iter().filter(|i| i.significant()).count();
        let shown = rows(items, top);
        writeln!(
            o,
            "{title}: {sig} with a significant change (* significant, . not tested: too few samples); shares of samples, self CPU time"
        )?;
        let mut table = vec![[
            "self: base".to_string(),
            "new".into(),
            "change".into(),
            "total: base".into(),
            "new".into(),
            "change".into(),
            "CPU: base".into(),
            "new".into(),
        ]];
        for it in &shown {
            let s = &it.self_share;
            let t = &it.total_share;
            table.push([
                pct(s.base.share),
                pct(s.new.share),
                change_cell(s),
                pct(t.base.share),
                pct(t.new.share),
                change_cell(t),
                ms(s.base.cpu_ns),
                ms(s.new.cpu_ns),
            ]);
        }
        let widths: Vec<usize> = (0..8)
            .map(|c| {
                table
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in table.iter().enumerate() {
            let mut line = String::from(" ");
            for (c, cell) in row.iter().enumerate() {
                let gap = if c == 3 || c == 6 { "   " } else { " " };
                let _ = write!(line, "{gap}{cell:>w$}", w = widths[c]);
            }
            let label = if i == 0 {
                if title == "Functions" {
                    "function".to_string()
                } else {
                    "line (function)".to_string()
                }
            } else {
                item_label(shown[i - 1])
            };
            writeln!(o, "{line}   {}", clean(&label))?;
        }
        if shown.len() < items.len() {
            writeln!(
                o,
                "  ... and {} more without a significant change (--top)",
                items.len() - shown.len()
            )?;
        }
    }
    writeln!(o)?;
    for para in [method_text(d), power_text(d)] {
        writeln!(o, "{}", wrap(&para, 100))?;
    }
    Ok(())
}

/// Markdown for a pull request's comment.
pub fn markdown(d: &Diff, top: usize) -> String {
    let mut o = String::new();
    let _ = markdown_into(&mut o, d, top);
    o
}

fn markdown_into(o: &mut String, d: &Diff, top: usize) -> std::fmt::Result {
    let icon = if d.failed() { "❌" } else { "✅" };
    writeln!(o, "### {icon} wrec profile diff: {}", verdict(d))?;
    writeln!(o)?;
    writeln!(o, "- **base**: {}", md(&side_line(&d.base)))?;
    writeln!(o, "- **new**: {}", md(&side_line(&d.new)))?;
    writeln!(o, "- {}", md(&cpu_line(d, &d.cpu)))?;
    for w in &d.warnings {
        writeln!(o, "- ⚠️ {}", md(w))?;
    }
    if !d.failures.is_empty() {
        writeln!(o)?;
        for f in &d.failures {
            writeln!(o, "- ❌ {}", md(&failure_line(d, f)))?;
        }
    }
    for (title, items) in [("Function", &d.funcs), ("Line (function)", &d.lines)] {
        if items.is_empty() {
            continue;
        }
        let shown = rows(items, top);
        writeln!(o)?;
        writeln!(
            o,
            "| {title} | self base | self new | Δ self | total base | total new | Δ total | self CPU base | self CPU new |"
        )?;
        writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for it in &shown {
            let cell = |c: &Change| {
                if c.base.samples == 0 && c.new.samples == 0 {
                    return "-".to_string();
                }
                let p = points(c.points());
                if c.significant {
                    format!("**{p}**")
                } else {
                    p
                }
            };
            let s = &it.self_share;
            let t = &it.total_share;
            writeln!(
                o,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
                md_code(&item_label(it)),
                pct(s.base.share),
                pct(s.new.share),
                cell(s),
                pct(t.base.share),
                pct(t.new.share),
                cell(t),
                ms(s.base.cpu_ns),
                ms(s.new.cpu_ns)
            )?;
        }
        if shown.len() < items.len() {
            writeln!(
                o,
                "\n{} more without a significant change.",
                items.len() - shown.len()
            )?;
        }
    }
    writeln!(o)?;
    writeln!(
        o,
        "Bold: significant. <details><summary>How changes are judged</summary>\n\n{}\n\n{}\n</details>",
        md(&method_text(d)),
        md(&power_text(d))
    )?;
    Ok(())
}

/// The significant items, then the largest others, `top` of those at most.
fn rows(items: &[Item], top: usize) -> Vec<&Item> {
    let mut v: Vec<&Item> = items.iter().filter(|i| i.significant()).collect();
    let mut rest: Vec<&Item> = items.iter().filter(|i| !i.significant()).collect();
    let max = |c: &Change| c.base.share.max(c.new.share);
    rest.sort_by(|a, b| {
        max(&b.self_share)
            .total_cmp(&max(&a.self_share))
            .then(max(&b.total_share).total_cmp(&max(&a.total_share)))
            .then_with(|| a.key.cmp(&b.key))
    });
    v.extend(rest.into_iter().take(top));
    v
}

/// The change and its mark; `-` for no samples on either side.
fn change_cell(c: &Change) -> String {
    if c.base.samples == 0 && c.new.samples == 0 {
        "-  ".into()
    } else {
        format!("{}{}", points(c.points()), mark(c))
    }
}

fn mark(c: &Change) -> &'static str {
    if c.significant {
        " *"
    } else if c.test.is_none() {
        " ."
    } else {
        "  "
    }
}

fn item_label(it: &Item) -> String {
    let mut s = it.label();
    if matches!(it.key, super::Key::Line { .. }) && !it.func.is_empty() {
        let _ = write!(s, " ({})", it.func);
    }
    if it.is_new() {
        s.push_str(" [new]");
    } else if it.is_gone() {
        s.push_str(" [gone]");
    }
    s
}

fn side_line(s: &Side) -> String {
    let runs = s.runs();
    let cpu: u64 = s.cpu_ns.iter().sum();
    let mut l = format!(
        "{} ({} run{}, {} samples, CPU {}, {} interval{})",
        s.programs.join(" + "),
        runs,
        if runs == 1 { "" } else { "s" },
        s.total_samples(),
        ms(cpu / runs.max(1) as u64) + if runs > 1 { " a run" } else { "" },
        ms(s.interval_ns),
        s.clock
            .map(|c| format!(", {} clock", crate::model::clock_name(c)))
            .unwrap_or_default()
    );
    let _ = write!(l, ": {}", s.traces.join(" "));
    l
}

fn cpu_line(d: &Diff, c: &CpuChange) -> String {
    let what = if c.per_unit {
        "CPU time per unit of work"
    } else {
        "CPU time"
    };
    let Some(t) = c.test else {
        return format!("{what}: not compared (a run without CPU time)");
    };
    let change = format!(
        "{what}: {} -> {} ({:+.1}%)",
        ms(t.base as u64),
        ms(t.new as u64),
        t.change * 100.0
    );
    let (Some(cv), Some(p)) = (t.cv, t.p) else {
        return format!(
            "{change}, not tested: one run a side cannot tell how much CPU time varies from run to run; give 2+ runs a side (or --cpu-noise PCT)"
        );
    };
    let noise = if t.cv_df > 0.0 {
        format!(
            "run-to-run variation {:.1}%, measured from {}+{} runs",
            cv * 100.0,
            d.base.runs(),
            d.new.runs(),
        )
    } else {
        format!(
            "run-to-run variation {:.1}% assumed (--cpu-noise)",
            cv * 100.0
        )
    };
    format!(
        "{change}, {} (p={} {} {}; {noise})",
        if c.significant {
            "significant"
        } else {
            "not significant"
        },
        pval(p),
        if c.significant { "<=" } else { ">" },
        c.alpha
    )
}

fn verdict(d: &Diff) -> String {
    let list: Vec<String> = d.thresholds.iter().map(|t| t.to_string()).collect();
    let gate = if list.is_empty() {
        "no thresholds (--fail-on none)".to_string()
    } else {
        list.join(", ")
    };
    if d.failed() {
        format!(
            "FAILED: {} significant change{} cross{} the thresholds ({gate})",
            d.failures.len(),
            if d.failures.len() == 1 { "" } else { "s" },
            if d.failures.len() == 1 { "es" } else { "" }
        )
    } else if d.any_significant() {
        format!("passed: no significant change crosses the thresholds ({gate})")
    } else {
        format!("passed: no significant change ({gate})")
    }
}

/// One line for a threshold crossed.
pub(super) fn failure_line(d: &Diff, f: &Failure) -> String {
    match f.subject {
        Subject::Cpu => {
            let t = d.cpu.test.expect("a CPU failure has a test");
            format!(
                "CPU time: {} -> {} ({:+.1}%, p={}) crosses {}",
                ms(t.base as u64),
                ms(t.new as u64),
                t.change * 100.0,
                t.p.map_or("-".into(), pval),
                f.threshold
            )
        }
        Subject::Function(i) | Subject::Line(i) => {
            let it = if matches!(f.subject, Subject::Function(_)) {
                &d.funcs[i]
            } else {
                &d.lines[i]
            };
            let (what, c) = match f.threshold.metric {
                super::Metric::TotalShare => ("total", &it.total_share),
                _ => ("self", &it.self_share),
            };
            let rel = c.relative();
            let rel = if rel.is_finite() {
                format!(", {rel:+.0}%")
            } else {
                String::new()
            };
            format!(
                "{}: {what} share {} -> {} ({}{rel}, p={}) crosses {}",
                item_label(it),
                pct(c.base.share),
                pct(c.new.share),
                points(c.points()),
                c.p_adjusted.map_or("-".into(), pval),
                f.threshold
            )
        }
    }
}

fn method_text(d: &Diff) -> String {
    let m = &d.method;
    let noise = if m.rho_df > 0.0 {
        format!(
            "run-to-run noise rho={:.2e} measured from {}+{} runs ({:.0} degrees of freedom over all functions; {:.0e} assumed, worth {:.0}), per function from its own runs",
            m.rho, d.base.runs(), d.new.runs(), m.rho_df, m.prior.rho, m.prior.df
        )
    } else {
        format!(
            "run-to-run noise rho={:.0e} assumed (a run counts as at most ~{:.0} independent samples; give 2+ runs a side to measure it)",
            m.rho,
            1.0 / m.rho.max(1e-12)
        )
    };
    format!(
        "Method: each share is compared with a two-proportion test whose variance adds {noise}. \
         Family-wise false-positive rate alpha={}: alpha/2 for the CPU time, alpha/2 for the {} share tests with Holm's correction; p-values shown are Holm-adjusted. \
         The gate fails only on a significant change that crosses a threshold.",
        m.alpha, m.tests
    )
}

fn power_text(d: &Diff) -> String {
    let p = &d.power;
    let runs = if p.runs == 1 {
        "1 run a side".to_string()
    } else {
        format!("{} runs a side", p.runs)
    };
    let need = match p.samples_for_1pp {
        Some(n) => format!("~{n:.0} samples a run with {runs}"),
        None => format!(
            "more than {runs} (no run length will do: the run-to-run noise alone is larger)"
        ),
    };
    format!(
        "Power: with {runs} of ~{:.0} samples, a change of {:.1} share points in a 50% share ({:.1} in a 10% share) is found with {:.0}% probability (level {:.1e}, the first Holm step). \
         A change of 1 point in a 50% share needs {need}, or {:.0} runs a side of this length.",
        p.samples_per_run,
        p.detectable_at_50,
        p.detectable_at_10,
        p.power * 100.0,
        p.level,
        p.runs_for_1pp
    )
}

fn pct(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

fn points(pp: f64) -> String {
    format!("{pp:+.2}pp")
}

/// A p-value: 2 significant digits, `<1e-15` below that.
fn pval(p: f64) -> String {
    if p < 1e-15 {
        "<1e-15".into()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// ns as ms (or s) with 1 decimal.
fn ms(ns: u64) -> String {
    if ns >= 10_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

/// Control characters would break the layout.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text for a Markdown paragraph or cell: no line breaks, no table pipes,
/// no HTML.
fn md(s: &str) -> String {
    clean(s)
        .replace("->", "→")
        .replace("<=", "≤")
        .replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('*', "\\*")
        .replace('_', "\\_")
        .replace('`', "\\`")
}

/// Text for a code span in a table cell.
fn md_code(s: &str) -> String {
    clean(s).replace('`', "'").replace('|', "\\|")
}

/// Words wrapped at `width` columns.
fn wrap(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut col = 0;
    for word in s.split_whitespace() {
        if col > 0 && col + 1 + word.len() > width {
            out.push('\n');
            col = 0;
        } else if col > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}
