//! `wanalyze diff`: the command line over [`wanalyze::diff`].
//!
//! Exit status: 0 when no significant change crosses a threshold, 3 when
//! one does (the gate fails), 1 on an error, 2 when clap rejects the
//! command line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use wanalyze::diff::{self, stats::NoisePrior, Run};
use wanalyze::model::Profile;
use wanalyze::{firefox, folded, resolve};

/// The exit status of a failed gate.
const GATE_FAILED: u8 = 3;

/// Compare a base recording with a new one (or several runs of each) and
/// say which functions and lines changed significantly; exit with status 3
/// when a significant change crosses a --fail-on threshold (a CI gate).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
    wanalyze diff base.wrec new.wrec                       # text report; exit 3 on a regression\n  \
    wanalyze diff --base b1.wrec b2.wrec b3.wrec --new n1.wrec n2.wrec n3.wrec --dwarf\n  \
    wanalyze diff base.wrec new.wrec --fail-on 'self:+2pp,total:+5pp,cpu:+5%'\n  \
    wanalyze diff base.wrec new.wrec --format markdown -o comment.md\n  \
    wanalyze diff base.wrec new.wrec --format folded | inferno-flamegraph > diff.svg\n\n\
Thresholds (--fail-on, comma-separated or repeated): METRIC:CHANGE, METRIC one of\n\
self, total (share of samples of a function, or with --dwarf of a line) or cpu\n\
(the run's CPU time); CHANGE a signed size with a unit: pp share points\n\
(self:+2pp: 40% -> 42%) or % relative (total:+10%: 40% -> 44%; cpu:+5%). '-' is a\n\
decrease. 'none' disables the gate. Default: self:+1pp,cpu:+10%.\n\n\
Exit status: 0 no significant change crosses a threshold, 3 one does, 1 error.")]
pub struct DiffArgs {
    /// The base trace and the new trace (one run a side); or use --base and
    /// --new.
    #[arg(value_name = "TRACE", num_args = 0..=2)]
    traces: Vec<PathBuf>,
    /// The base side's traces: repeated runs of the same program and input.
    #[arg(long, value_name = "TRACE", num_args = 1.., conflicts_with = "traces")]
    base: Vec<PathBuf>,
    /// The new side's traces.
    #[arg(long, value_name = "TRACE", num_args = 1.., conflicts_with = "traces")]
    new: Vec<PathBuf>,
    /// Compare source lines too (file and line, from the modules' DWARF).
    #[arg(long)]
    dwarf: bool,
    /// A wasm file that was profiled, for both sides (matched to each
    /// trace's modules by SHA-256); repeatable.
    #[arg(long = "module", value_name = "PATH")]
    modules: Vec<PathBuf>,
    /// A wasm file for the base side's traces only; repeatable.
    #[arg(long = "base-module", value_name = "PATH")]
    base_modules: Vec<PathBuf>,
    /// A wasm file for the new side's traces only; repeatable.
    #[arg(long = "new-module", value_name = "PATH")]
    new_modules: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    format: DiffFormat,
    /// Where to write it (default stdout); for firefox, the files' prefix
    /// (default `diff`: diff.base.profile.json and diff.new.profile.json).
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Thresholds that fail the gate (see below).
    #[arg(long = "fail-on", value_name = "SPEC", default_value = diff::gate::DEFAULT)]
    fail_on: Vec<String>,
    /// Family-wise false-positive rate of all the tests together.
    #[arg(long, default_value_t = diff::DEFAULT_ALPHA, value_name = "A")]
    alpha: f64,
    /// Run-to-run noise of a share assumed when a side has one run (rho:
    /// a run counts as at most 1/rho independent samples); with several
    /// runs a side it is measured, and this weighs as 16 degrees of freedom.
    #[arg(long, default_value_t = diff::DEFAULT_RUN_NOISE, value_name = "RHO")]
    run_noise: f64,
    /// Run-to-run variation of CPU time to assume, in percent, when the
    /// runs cannot measure it (one run a side); without it the CPU time of
    /// single runs is compared but not tested.
    #[arg(long, value_name = "PCT")]
    cpu_noise: Option<f64>,
    /// Compare CPU time per unit of work: N units in every run, or
    /// BASE:NEW when the sides did different amounts.
    #[arg(long, value_name = "N|BASE:NEW")]
    per: Option<String>,
    /// Rows of unchanged functions (and lines) in the tables.
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,
    /// For firefox: the URL the written profiles will be served from (a
    /// directory URL), to print a complete compare-view link.
    #[arg(long, value_name = "URL")]
    hosted_at: Option<String>,
    /// No summary lines on stderr (warnings and errors still appear).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiffFormat {
    /// A report for a terminal or CI log.
    Text,
    /// A report for a pull request's comment.
    Markdown,
    /// Everything, for other tools.
    Json,
    /// Differential folded stacks for inferno-flamegraph.
    Folded,
    /// The two sides' Firefox profiles, for the profiler's compare view.
    Firefox,
}

/// Runs `wanalyze diff`.
pub fn main(args: DiffArgs) -> ExitCode {
    match run(args) {
        Ok(failed) if failed => ExitCode::from(GATE_FAILED),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => crate::report_error(&e),
    }
}

fn run(a: DiffArgs) -> anyhow::Result<bool> {
    let (base, new) = match (a.traces.len(), a.base.is_empty(), a.new.is_empty()) {
        (2, true, true) => (vec![a.traces[0].clone()], vec![a.traces[1].clone()]),
        (0, false, false) => (a.base.clone(), a.new.clone()),
        _ => bail!(
            "give the base and the new trace (wanalyze diff BASE NEW), or --base TRACE... --new TRACE..."
        ),
    };
    let thresholds = diff::gate::parse(&a.fail_on).map_err(anyhow::Error::msg)?;
    if !(a.alpha > 0.0 && a.alpha < 1.0) {
        bail!("--alpha {}: must be between 0 and 1", a.alpha);
    }
    if !(a.run_noise >= 0.0 && a.run_noise < 1.0) {
        bail!(
            "--run-noise {}: must be at least 0 and below 1",
            a.run_noise
        );
    }
    if let Some(c) = a.cpu_noise.filter(|c| !(*c > 0.0 && c.is_finite())) {
        bail!("--cpu-noise {c}: must be a percentage above 0");
    }
    let per = a.per.as_deref().map(parse_per).transpose()?;
    let firefox = a.format == DiffFormat::Firefox;
    let load = |paths: &[PathBuf], side_modules: &[PathBuf]| -> anyhow::Result<Vec<Profile>> {
        let opts = resolve::Options {
            dwarf: a.dwarf,
            modules: a.modules.iter().chain(side_modules).cloned().collect(),
            // Line totals need every frame's line; Firefox every frame.
            by_function: !(a.dwarf || firefox),
            last: None,
        };
        paths
            .iter()
            .map(|p| {
                let profile = resolve::analyze(p, &opts, &mut |_, _| {}).map_err(|e| {
                    let msg = e.to_string();
                    let name = p.display().to_string();
                    if msg.contains(&name) {
                        anyhow::anyhow!(msg)
                    } else {
                        anyhow::anyhow!("{name}: {msg}")
                    }
                })?;
                for w in &profile.meta.warnings {
                    eprintln!("wanalyze: warning: {}: {w}", p.display());
                }
                Ok(profile)
            })
            .collect()
    };
    let (bp, np) = (load(&base, &a.base_modules)?, load(&new, &a.new_modules)?);
    let opts = diff::Options {
        alpha: a.alpha,
        noise: NoisePrior {
            rho: a.run_noise,
            df: diff::RUN_NOISE_PRIOR_DF,
        },
        cpu_noise: a.cpu_noise.map(|c| c / 100.0),
        lines: a.dwarf,
        per,
        thresholds,
    };
    let d = diff::compare(&runs(&base, &bp), &runs(&new, &np), &opts)?;
    // The reports carry the warnings; on stderr too unless it is the
    // terminal or log the report goes to.
    let report_on_stdout = matches!(a.format, DiffFormat::Text | DiffFormat::Markdown)
        && a.out.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if !report_on_stdout {
        for w in &d.warnings {
            eprintln!("wanalyze: warning: {w}");
        }
    }

    match a.format {
        DiffFormat::Firefox => {
            let prefix = a.out.clone().unwrap_or_else(|| PathBuf::from("diff"));
            let name = |side: &str| {
                let mut s = prefix.clone().into_os_string();
                s.push(format!(".{side}.profile.json"));
                PathBuf::from(s)
            };
            let (bf, nf) = (name("base"), name("new"));
            firefox::write_file(&bp[0], &bf)?;
            firefox::write_file(&np[0], &nf)?;
            let several = if base.len() > 1 || new.len() > 1 {
                " (the first run of each side)"
            } else {
                ""
            };
            println!("wrote {} and {}{several}", bf.display(), nf.display());
            println!("{}", compare_url_text(&bf, &nf, a.hosted_at.as_deref()));
        }
        f => {
            let text = match f {
                DiffFormat::Text => diff::text(&d, a.top),
                DiffFormat::Markdown => diff::markdown(&d, a.top),
                DiffFormat::Json => {
                    let mut s = serde_json::to_string_pretty(&diff::to_json(&d))?;
                    s.push('\n');
                    s
                }
                _ => {
                    let mut v = Vec::new();
                    let (br, nr): (Vec<&Profile>, Vec<&Profile>) =
                        (bp.iter().collect(), np.iter().collect());
                    folded::write_diff(&br, &nr, &mut v)?;
                    String::from_utf8(v).context("folded output")?
                }
            };
            write_out(a.out.as_deref(), text.as_bytes())?;
        }
    }
    // The verdict on stderr too when stdout is not the text report, so
    // that a CI log says why the job failed.
    if a.format != DiffFormat::Text || a.out.is_some() {
        let verdict = diff::text(&d, 0);
        for line in verdict.lines().filter(|l| l.starts_with("  FAIL ")) {
            eprintln!("wanalyze: {}", line.trim_start());
        }
        if !a.quiet {
            let status = if d.failed() {
                "the gate FAILED"
            } else {
                "the gate passed"
            };
            eprintln!("wanalyze: diff: {status}");
        }
    }
    Ok(d.failed())
}

/// The runs of a side, named by their traces' paths.
fn runs<'a>(paths: &[PathBuf], profiles: &'a [Profile]) -> Vec<Run<'a>> {
    paths
        .iter()
        .zip(profiles)
        .map(|(path, profile)| Run {
            name: path.display().to_string(),
            profile,
        })
        .collect()
}

/// `N` or `BASE:NEW`, positive numbers.
fn parse_per(s: &str) -> anyhow::Result<(f64, f64)> {
    let num = |t: &str| -> anyhow::Result<f64> {
        match t.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
            _ => bail!("--per {s:?}: expected N or BASE:NEW, positive numbers of units of work"),
        }
    };
    match s.split_once(':') {
        Some((b, n)) => Ok((num(b)?, num(n)?)),
        None => {
            let v = num(s)?;
            Ok((v, v))
        }
    }
}

fn write_out(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            Ok(out.flush()?)
        }
    }
}

/// The Firefox Profiler's compare view (`/compare/`) takes the two profiles
/// as `profiles[]` query values, each the profiler's own URL of a profile
/// it can fetch (`/from-url/<URL>/` or `/public/<hash>/`): it cannot open
/// local files. With the URL the files will be served from, the complete
/// link; without, its form.
fn compare_url_text(base: &Path, new: &Path, hosted_at: Option<&str>) -> String {
    const PROFILER: &str = "https://profiler.firefox.com";
    let view = |url: &str| format!("{PROFILER}/from-url/{}/calltree/", encode(url));
    let link = |b: &str, n: &str| {
        format!(
            "{PROFILER}/compare/calltree/?profiles[]={}&profiles[]={}&v=14",
            encode(&view(b)),
            encode(&view(n))
        )
    };
    let file = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    match hosted_at {
        Some(dir) => {
            let dir = dir.trim_end_matches('/');
            format!(
                "Firefox Profiler compare view (once both files are served from {dir}, with CORS):\n{}",
                link(&format!("{dir}/{}", file(base)), &format!("{dir}/{}", file(new)))
            )
        }
        None => format!(
            "Firefox Profiler compare view: it loads profiles from URLs only, not local files. Serve both files \
             (with CORS, e.g. as CI artifacts) and open\n  \
             {PROFILER}/compare/calltree/?profiles[]=ENC({PROFILER}/from-url/ENC(BASE_URL)/calltree/)&profiles[]=ENC({PROFILER}/from-url/ENC(NEW_URL)/calltree/)&v=14\n\
             where ENC is URL encoding; --hosted-at URL prints the complete link. Or load each file on its own \
             at {PROFILER} (Load a profile from file)."
        ),
    }
}

/// Percent-encoding of everything but the unreserved characters, as
/// `encodeURIComponent` (and then some: `!'()*` too).
fn encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}
