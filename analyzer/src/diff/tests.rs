//! The diff's unit tests: the statistics against known values, the
//! threshold parser, and comparisons of small made-up profiles.

use super::gate::{self, Metric, Threshold, Unit};
use super::stats::*;
use super::*;
use crate::model::{Category, Frame, Func, Interner, Meta, Profile, Sample, Stack, Thread};

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

macro_rules! assert_close {
    ($a:expr, $b:expr, $rel:expr) => {{
        let (a, b) = ($a, $b);
        assert!(close(a, b, $rel), "{} = {a}, expected {b}", stringify!($a));
    }};
}

#[test]
fn erfc_and_the_normal_quantile_match_tables() {
    assert_close!(erfc(0.0), 1.0, 1e-7);
    assert_close!(erfc(1.0), 0.157_299_207_050_285_1, 2e-7);
    assert_close!(erfc(2.0), 0.004_677_734_981_047_266, 2e-7);
    assert_close!(erfc(-1.0), 1.842_700_792_949_715, 1e-7);
    assert_close!(erfc(6.0), 2.151_973_671_249_891_3e-17, 2e-7);
    assert_close!(normal_quantile(0.975), 1.959_963_984_540_054, 1e-8);
    assert_close!(normal_quantile(0.001), -3.090_232_306_167_813_5, 1e-8);
    assert_close!(normal_quantile(0.8), 0.841_621_233_572_914_3, 1e-8);
    assert_eq!(normal_quantile(0.5), 0.0);
}

#[test]
fn t_distribution_p_values_match_tables() {
    // R: 2 * pt(-2, 10), 2 * pt(-3, 4), 2 * pt(-2.228139, 10).
    assert_close!(t_two_sided_p(2.0, 10.0), 0.073_388_034_770_740_24, 1e-9);
    assert_close!(t_two_sided_p(-3.0, 4.0), 0.039_941_968_071_718_79, 1e-9);
    assert_close!(t_two_sided_p(2.228_138_851_986_274, 10.0), 0.05, 1e-7);
    // Infinite df: the normal distribution.
    assert_close!(
        t_two_sided_p(1.959_963_984_540_054, f64::INFINITY),
        0.05,
        1e-6
    );
    assert_eq!(t_two_sided_p(f64::INFINITY, 3.0), 0.0);
    assert_eq!(t_two_sided_p(f64::NAN, 3.0), 1.0);
    // I_0.4(2, 3) = 6·0.4²·0.6² + 4·0.4³·0.6 + 0.4⁴.
    assert_close!(inc_beta(2.0, 3.0, 0.4), 0.5248, 1e-12);
}

/// The textbook two-proportion z-test: 50/100 against 70/100.
#[test]
fn share_test_without_run_noise_is_the_two_proportion_z_test() {
    let none = NoisePrior { rho: 0.0, df: 0.0 };
    let t = share_test(&[(50, 100)], &[(70, 100)], none).unwrap();
    // Pooled p 0.6: z = 0.2 / sqrt(0.24 · 0.02).
    assert_close!(t.t, 2.886_751_345_948_129, 1e-12);
    assert_close!(t.p, 0.003_892_417_122_778_627, 1e-6);
    assert_eq!((t.base, t.new), (0.5, 0.7));
    // Symmetric, and nothing to test at 0% or 100%.
    let r = share_test(&[(70, 100)], &[(50, 100)], none).unwrap();
    assert_close!(r.t, -t.t, 1e-12);
    assert!(share_test(&[(0, 100)], &[(0, 50)], none).is_none());
    assert!(share_test(&[(100, 100)], &[(50, 50)], none).is_none());
    assert!(share_test(&[], &[(5, 50)], none).is_none());
}

/// One run a side, assumed ρ: the variance grows by 2ρ p(1-p), and the
/// t statistic has Satterthwaite's degrees of freedom.
#[test]
fn share_test_adds_the_assumed_run_noise() {
    let prior = NoisePrior {
        rho: 0.01,
        df: 16.0,
    };
    let t = share_test(&[(50, 100)], &[(70, 100)], prior).unwrap();
    assert_eq!(t.rho, 0.01);
    assert_eq!(t.rho_df, 0.0);
    assert_close!(t.t, 2.046_363_772_675_145_6, 1e-12);
    // df = 16 · (V / V_rho)² = 64.65; p from the t distribution.
    assert_close!(t.p, 0.044_791_605_676_220_016, 1e-6);
}

/// ρ from runs: two runs of 100 at 10 and 30 (p 0.2) have a Pearson
/// dispersion of 12.5, so ρ = (12.5 - 1) / 99.
#[test]
fn run_noise_is_measured_by_the_method_of_moments() {
    let (num, den, df) = rho_moments(&[(10, 100), (30, 100)]);
    assert_close!(num / den, 11.5 / 99.0, 1e-12);
    assert_eq!(df, 1.0);
    // One run, or too few samples of the item: nothing measured.
    assert_eq!(rho_moments(&[(10, 100)]), (0.0, 0.0, 0.0));
    assert_eq!(rho_moments(&[(1, 100), (2, 100)]), (0.0, 0.0, 0.0));
    // Runs that agree exactly have less than binomial noise: ρ < 0, which
    // the test floors at 0.
    let (num, den, _) = rho_moments(&[(20, 100), (20, 100), (20, 100)]);
    assert!(num / den < 0.0);
    let prior = NoisePrior { rho: 0.0, df: 1.0 };
    let t = share_test(&[(20, 100), (20, 100)], &[(40, 100), (40, 100)], prior).unwrap();
    assert_eq!(t.rho, 0.0);
    assert_eq!(t.rho_df, 2.0);
    // Noisy runs make the same difference less significant.
    let noisy = share_test(&[(10, 100), (30, 100)], &[(30, 100), (50, 100)], prior).unwrap();
    assert!(noisy.rho > 0.05, "{noisy:?}");
    assert!(noisy.p > 10.0 * t.p, "{noisy:?} vs {t:?}");
}

#[test]
fn holm_adjusts_in_step_down_order() {
    let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
    let want = [0.03, 0.06, 0.06, 0.02];
    for (a, w) in adj.iter().zip(want) {
        assert_close!(*a, w, 1e-12);
    }
    assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0], "monotone, at most 1");
    assert!(holm(&[]).is_empty());
}

/// 50% against 60% at α 0.05 with 80% power: n = 2·0.25·(1.96+0.84)²/0.01.
#[test]
fn power_formulas_match_the_normal_approximation() {
    let z: f64 = 1.959_963_984_540_054 + 0.841_621_233_572_914_3;
    assert_close!(
        samples_needed(0.5, 0.1, 1.0, 0.0, 0.05, 0.8).unwrap(),
        (0.5 * z * z / 0.01).ceil(),
        1e-12
    );
    assert_close!(
        detectable_change(0.5, 392.0, 1.0, 0.0, 0.05, 0.8),
        z * (0.5_f64 / 392.0).sqrt(),
        1e-9
    );
    // Three runs need a third of the samples each.
    let one = samples_needed(0.5, 0.1, 1.0, 0.0, 0.05, 0.8).unwrap();
    let three = samples_needed(0.5, 0.1, 3.0, 0.0, 0.05, 0.8).unwrap();
    assert!((three - one / 3.0).abs() <= 1.0, "{one} {three}");
    // Run noise puts a floor under what one run can see: no run length
    // finds 1 point with ρ = 3e-4, enough runs do.
    assert_eq!(samples_needed(0.5, 0.01, 1.0, 3e-4, 0.05, 0.8), None);
    let k = runs_needed(0.5, 0.01, 5000.0, 3e-4, 0.05, 0.8);
    assert!(detectable_change(0.5, 5000.0, k, 3e-4, 0.05, 0.8) <= 0.01);
    assert!(detectable_change(0.5, 5000.0, k - 1.0, 3e-4, 0.05, 0.8) > 0.01);
}

#[test]
fn cpu_test_measures_the_noise_from_runs_or_assumes_what_it_is_given() {
    let t = cpu_test(&[100.0], &[110.0], Some(0.1)).unwrap();
    assert_close!(t.change, 0.1, 1e-12);
    assert_close!(t.cv.unwrap(), 0.1, 1e-12);
    assert_eq!(t.cv_df, 0.0);
    // z = ln 1.1 / (0.1 √2), the variation taken as known.
    assert_close!(t.t.unwrap(), 0.673_944_744_557_471_7, 1e-12);
    assert_close!(t.p.unwrap(), 0.500_346_443_703_287_8, 1e-6);
    // Nothing assumed: compared, not tested.
    let t = cpu_test(&[100.0], &[110.0], None).unwrap();
    assert_close!(t.change, 0.1, 1e-12);
    assert_eq!((t.cv, t.p), (None, None));
    // Steady runs measure a small noise: the same change is significant,
    // with a t test on the runs' 4 degrees of freedom.
    let steady = cpu_test(&[100.0, 100.5, 99.5], &[110.0, 110.4, 109.6], None).unwrap();
    assert_eq!(steady.cv_df, 4.0);
    assert!(steady.cv.unwrap() < 0.01, "{steady:?}");
    assert!(steady.p.unwrap() < 1e-4, "{steady:?}");
    // 1 degree of freedom is not enough to measure: assumed.
    let two = cpu_test(&[100.0, 100.1], &[110.0], Some(0.1)).unwrap();
    assert_eq!((two.cv, two.cv_df), (Some(0.1), 0.0));
    assert!(cpu_test(&[], &[1.0], None).is_none());
    assert!(cpu_test(&[0.0], &[1.0], None).is_none());
}

#[test]
fn thresholds_parse() {
    let t = gate::parse_one("self:+1pp").unwrap();
    assert_eq!(
        t,
        Threshold {
            metric: Metric::SelfShare,
            decrease: false,
            size: 1.0,
            unit: Unit::Points
        }
    );
    assert_eq!(t.to_string(), "self:+1pp");
    let t = gate::parse_one(" total : 10% ").unwrap();
    assert_eq!(
        (t.metric, t.decrease, t.size, t.unit),
        (Metric::TotalShare, false, 10.0, Unit::Relative)
    );
    let t = gate::parse_one("CPU:-2.5%").unwrap();
    assert_eq!((t.metric, t.decrease, t.size), (Metric::Cpu, true, 2.5));
    assert_eq!(t.to_string(), "cpu:-2.5%");
    for bad in [
        "self",
        "self:+1",
        "self:+x%",
        "foo:+1pp",
        "cpu:+1pp",
        "self:+1e999%",
        "self:+101pp",
        "self:--1pp",
        "self:+-1pp",
        ":",
    ] {
        let e = gate::parse_one(bad).unwrap_err();
        assert!(
            e.contains("--fail-on") && e.contains("METRIC:CHANGE"),
            "{bad}: {e}"
        );
    }
    let all = gate::parse(&["self:+1pp, total:+5%".into(), "cpu:+10%".into()]).unwrap();
    assert_eq!(all.len(), 3);
    assert!(gate::parse(&["self:+1pp,none".into()]).unwrap().is_empty());
    assert_eq!(
        gate::parse(&[gate::DEFAULT.into()]).unwrap().len(),
        2,
        "the default parses"
    );
}

#[test]
fn thresholds_are_crossed_in_their_direction() {
    let up = gate::parse_one("self:+1pp").unwrap();
    assert!(up.crossed(1.0, 0.0));
    assert!(up.crossed(3.0, 0.0));
    assert!(!up.crossed(0.99, 50.0));
    assert!(!up.crossed(-5.0, -50.0));
    let down = gate::parse_one("total:-10%").unwrap();
    assert!(down.crossed(0.0, -10.0));
    assert!(!down.crossed(-50.0, -9.0));
    assert!(!down.crossed(0.0, 10.0));
    let rel = gate::parse_one("self:+50%").unwrap();
    assert!(rel.crossed(0.1, f64::INFINITY), "a new function crosses");
    assert!(!rel.crossed(f64::NAN, f64::NAN));
}

/// A one-thread profile from folded-like stacks (root first) and counts,
/// a sample a ms of CPU time; frames in `file` at line `i + 1` for the
/// i-th frame of a stack when `file` is given.
fn profile(product: &str, stacks: &[(&[&str], u64)], file: Option<&str>) -> Profile {
    let mut p = Profile {
        meta: Meta {
            product: product.into(),
            interval_ns: 1_000_000,
            has_lines: file.is_some(),
            ..Meta::default()
        },
        ..Profile::default()
    };
    let mut i = Interner::default();
    let mut samples = Vec::new();
    let mut t = 0;
    for (names, n) in stacks {
        let mut parent = None;
        for (depth, name) in names.iter().enumerate() {
            let func = i.func(
                &mut p,
                Func {
                    name: (*name).into(),
                    file: file.map(Into::into),
                    line: None,
                    category: Category::Wasm,
                    lib: None,
                },
            );
            let frame = i.frame(
                &mut p,
                Frame {
                    func,
                    address: Some(depth as u64),
                    line: file.map(|_| depth as u32 + 1),
                    column: None,
                    inline_depth: 0,
                    native_symbol: None,
                },
            );
            parent = Some(i.stack(&mut p, Stack { parent, frame }));
        }
        for _ in 0..*n {
            t += 1_000_000;
            samples.push(Sample {
                time_ns: t,
                cpu_delta_ns: 1_000_000,
                stack: parent,
            });
        }
    }
    i.finish(&mut p);
    p.threads.push(Thread {
        name: "main".into(),
        samples: samples.into(),
        end_ns: Some(t),
        ..Thread::default()
    });
    p
}

fn run<'a>(name: &str, p: &'a Profile) -> Run<'a> {
    Run {
        name: name.into(),
        profile: p,
    }
}

#[test]
fn the_same_profile_twice_changes_nothing() {
    let p = profile(
        "app.wasm",
        &[
            (&["main", "a"], 5000),
            (&["main", "b"], 3000),
            (&["main"], 2000),
        ],
        None,
    );
    let d = compare(&[run("x", &p)], &[run("y", &p)], &Options::default()).unwrap();
    assert!(!d.failed());
    assert!(!d.any_significant());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let a = d.funcs.iter().find(|i| i.label() == "a").unwrap();
    assert_eq!(a.self_share.base.share, 0.5);
    assert_eq!(a.self_share.points(), 0.0);
    assert_eq!(a.self_share.base.cpu_ns, 5_000_000_000);
    // a's total equals its self: one test; main's total is 100%: none.
    assert!(a.total_share.duplicate);
    assert_eq!(d.method.tests, 3, "a, b and main's self share");
    assert!(text(&d, 20).contains("passed: no significant change"));
}

/// `a` takes 60% instead of 50%: a significant increase crossing the
/// default threshold; `b` loses share, significantly, but a decrease does
/// not fail the default gate.
#[test]
fn a_regression_fails_the_gate_and_names_the_function() {
    let base = profile(
        "app.wasm",
        &[(&["main", "a"], 5000), (&["main", "b"], 5000)],
        None,
    );
    let new = profile(
        "app.wasm",
        &[(&["main", "a"], 6000), (&["main", "b"], 4000)],
        None,
    );
    let d = compare(
        &[run("b.wrec", &base)],
        &[run("n.wrec", &new)],
        &Options::default(),
    )
    .unwrap();
    assert!(d.failed());
    assert_eq!(d.failures.len(), 1, "{:?}", d.failures);
    assert_eq!(d.failures[0].subject, Subject::Function(0));
    assert_eq!(d.funcs[0].label(), "a");
    assert!(d.funcs[0].self_share.significant);
    let b = d.funcs.iter().find(|i| i.label() == "b").unwrap();
    assert!(b.self_share.significant && b.self_share.points() < 0.0);
    let report = text(&d, 20);
    assert!(
        report.contains("FAIL a: self share 50.00% -> 60.00% (+10.00pp"),
        "{report}"
    );
    let md = markdown(&d, 20);
    assert!(md.starts_with("### ❌"), "{md}");
    let j = to_json(&d);
    assert_eq!(j["failed"], true);
    assert_eq!(j["gate"]["failures"][0]["name"], "a");
    assert_eq!(j["functions"][0]["self"]["significant"], true);
    // A decrease threshold fails on b instead.
    let opts = Options {
        thresholds: gate::parse(&["self:-5pp".into()]).unwrap(),
        ..Options::default()
    };
    let d = compare(&[run("b", &base)], &[run("n", &new)], &opts).unwrap();
    assert_eq!(d.failures.len(), 1);
    assert!(text(&d, 20).contains("FAIL b: self share"));
}

/// Lines are matched by file and line, and a line's total counts its
/// callees.
#[test]
fn lines_are_compared_by_file_and_line() {
    let base = profile(
        "app.wasm",
        &[(&["main", "a"], 5000), (&["main", "b"], 5000)],
        Some("app.c"),
    );
    let new = profile(
        "app.wasm",
        &[(&["main", "a"], 7000), (&["main", "b"], 3000)],
        Some("app.c"),
    );
    let opts = Options {
        lines: true,
        ..Options::default()
    };
    let d = compare(&[run("b", &base)], &[run("n", &new)], &opts).unwrap();
    // Line 1 is main's (every sample passes it), line 2 the leaves'.
    let l2 = d.lines.iter().find(|i| i.label() == "app.c:2").unwrap();
    assert_eq!(l2.self_share.base.share, 1.0);
    let l1 = d.lines.iter().find(|i| i.label() == "app.c:1").unwrap();
    assert_eq!(l1.total_share.base.share, 1.0);
    assert_eq!(l1.self_share.base.samples, 0);
    assert_eq!(l2.func, "a");
    // The function a changed; line 2 holds all leaves on both sides.
    let a = d.funcs.iter().position(|i| i.label() == "a").unwrap();
    assert!(
        d.failures.iter().any(|f| f.subject == Subject::Function(a)),
        "{}",
        text(&d, 20)
    );
    assert!(!l2.significant());
}

#[test]
fn new_and_gone_functions_are_listed() {
    let base = profile(
        "app.wasm",
        &[(&["main", "a"], 9000), (&["main", "old"], 1000)],
        None,
    );
    let new = profile(
        "app.wasm",
        &[(&["main", "a"], 9000), (&["main", "fresh"], 1000)],
        None,
    );
    let d = compare(&[run("b", &base)], &[run("n", &new)], &Options::default()).unwrap();
    let fresh = d.funcs.iter().find(|i| i.label() == "fresh").unwrap();
    assert!(fresh.is_new() && fresh.self_share.significant);
    assert!(d
        .funcs
        .iter()
        .find(|i| i.label() == "old")
        .unwrap()
        .is_gone());
    let report = text(&d, 20);
    assert!(
        report.contains("fresh [new]") && report.contains("old [gone]"),
        "{report}"
    );
    assert!(
        d.failed(),
        "a new function with 10% of the samples crosses +1pp"
    );
}

#[test]
fn hostile_inputs_are_errors_or_warnings() {
    let empty = profile("app.wasm", &[], None);
    let full = profile("app.wasm", &[(&["main"], 100)], None);
    let e = compare(
        &[run("empty.wrec", &empty)],
        &[run("n", &full)],
        &Options::default(),
    );
    assert_eq!(
        e.unwrap_err().to_string(),
        "empty.wrec: no samples: nothing to compare"
    );
    let e = compare(&[], &[run("n", &full)], &Options::default()).unwrap_err();
    assert!(e.to_string().contains("base"));
    // Two different programs: compared, with a warning.
    let other = profile("other.wasm", &[(&["start", "z"], 100)], None);
    let d = compare(&[run("b", &full)], &[run("n", &other)], &Options::default()).unwrap();
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("few functions in common")),
        "{:?}",
        d.warnings
    );
    // A side of runs of different programs.
    let d = compare(
        &[run("b", &full), run("c", &other)],
        &[run("n", &full)],
        &Options::default(),
    )
    .unwrap();
    assert!(d.warnings.iter().any(|w| w.contains("different programs")));
    // Lines asked for but missing: a warning, functions still compared.
    let opts = Options {
        lines: true,
        ..Options::default()
    };
    let d = compare(&[run("b", &full)], &[run("n", &full)], &opts).unwrap();
    assert!(d.lines.is_empty());
    assert!(d
        .warnings
        .iter()
        .any(|w| w.contains("source lines are not compared")));
}

#[test]
fn cpu_time_per_unit_of_work() {
    let base = profile("app.wasm", &[(&["main"], 1000)], None);
    let new = profile("app.wasm", &[(&["main"], 2000)], None);
    // One run a side: compared, not tested.
    let d = compare(&[run("b", &base)], &[run("n", &new)], &Options::default()).unwrap();
    let t = d.cpu.test.unwrap();
    assert_close!(t.change, 1.0, 1e-12);
    assert!(!d.cpu.significant && t.p.is_none());
    assert!(text(&d, 5).contains("not tested: one run a side"));
    // With an assumed variation, twice the CPU time is significant.
    let assumed = Options {
        cpu_noise: Some(0.1),
        ..Options::default()
    };
    let d = compare(&[run("b", &base)], &[run("n", &new)], &assumed).unwrap();
    assert!(d.cpu.significant, "{:?}", d.cpu);
    assert!(d.failures.iter().any(|f| f.subject == Subject::Cpu));
    // Twice the work: the same CPU time per unit.
    let opts = Options {
        per: Some((100.0, 200.0)),
        ..assumed
    };
    let d = compare(&[run("b", &base)], &[run("n", &new)], &opts).unwrap();
    assert_close!(d.cpu.test.unwrap().change, 0.0, 1e-12);
    assert!(!d.failed());
    assert!(text(&d, 5).contains("CPU time per unit of work"));
}
