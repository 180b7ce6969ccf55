//! The statistics of the diff: the share test, its noise model, the CPU
//! time test, Holm's correction and the power calculation. Plain `f64`
//! maths, no dependencies; the diff's documentation (`mod.rs`) says why
//! the model is what it is.

/// A side's runs: per run, (samples of the item, samples of the run).
pub type Runs<'a> = &'a [(u64, u64)];

/// What is assumed about the run-to-run noise before the runs are seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoisePrior {
    /// ρ, the intra-run correlation of a share (Dirichlet-multinomial):
    /// a share measured on a run of `n` samples varies from run to run with
    /// variance `p(1-p)(1/n + ρ)` (roughly), so one run is worth at most
    /// `1/ρ` independent samples however long it is.
    pub rho: f64,
    /// How many degrees of freedom the assumption is worth against those
    /// the runs give (k − 1 a side).
    pub df: f64,
}

/// The outcome of testing one share (of an item: a function or line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareTest {
    /// The share on each side (all runs pooled).
    pub base: f64,
    pub new: f64,
    /// The ρ used: the prior's and the runs' combined.
    pub rho: f64,
    /// Degrees of freedom of the runs' own estimate of ρ (0 with one run a
    /// side, or too few samples of the item to measure it).
    pub rho_df: f64,
    /// The test statistic (new − base over its standard error under "no
    /// change") and its two-sided p-value.
    pub t: f64,
    pub p: f64,
}

/// Tests whether an item's share differs between two sides, each a list of
/// runs. `None` when there is nothing to test: the item has no sample, or
/// every sample, on both sides.
///
/// The model: a run's count is beta-binomial, variance
/// `n p(1-p)(1 + (n-1)ρ)`, runs independent. ρ is estimated from the runs
/// of each side by the method of moments (the Pearson sum of the item's
/// per-run counts around its side's share), combined with the prior as a
/// posterior mean of `prior.df` and the runs' `k-1` per side degrees of
/// freedom, and never below 0 (no claim of more precision than
/// independent samples). The statistic uses the pooled share (the null
/// hypothesis) and has Welch–Satterthwaite degrees of freedom for the part
/// of its variance that ρ makes (infinite, a z-test, when ρ is 0).
pub fn share_test(base: Runs, new: Runs, prior: NoisePrior) -> Option<ShareTest> {
    let (xa, na) = sums(base);
    let (xb, nb) = sums(new);
    if na == 0 || nb == 0 {
        return None;
    }
    let p = (xa + xb) as f64 / (na + nb) as f64;
    if p <= 0.0 || p >= 1.0 {
        return None;
    }
    let (num_a, den_a, df_a) = rho_moments(base);
    let (num_b, den_b, df_b) = rho_moments(new);
    let rho_df = df_a + df_b;
    let rho_hat = if den_a + den_b > 0.0 {
        (num_a + num_b) / (den_a + den_b)
    } else {
        0.0
    };
    let post_df = rho_df + prior.df;
    let rho = if post_df > 0.0 {
        ((rho_df * rho_hat + prior.df * prior.rho) / post_df).max(0.0)
    } else {
        prior.rho.max(0.0)
    };
    let (ca, cb) = (concentration(base, na), concentration(new, nb));
    let inv = 1.0 / na as f64 + 1.0 / nb as f64;
    let pq = p * (1.0 - p);
    let v_rho = pq * rho * (ca + cb - inv).max(0.0);
    let v = pq * inv + v_rho;
    let (base_share, new_share) = (xa as f64 / na as f64, xb as f64 / nb as f64);
    let t = (new_share - base_share) / v.sqrt();
    let df = if v_rho > 0.0 && post_df > 0.0 {
        post_df * (v / v_rho).powi(2)
    } else {
        f64::INFINITY
    };
    Some(ShareTest {
        base: base_share,
        new: new_share,
        rho,
        rho_df,
        t,
        p: t_two_sided_p(t, df),
    })
}

fn sums(runs: Runs) -> (u64, u64) {
    runs.iter()
        .fold((0, 0), |(x, n), &(xr, nr)| (x + xr, n + nr))
}

/// `Σ n_r² / N²`: 1 for one run, `1/k` for k runs of equal length.
fn concentration(runs: Runs, n: u64) -> f64 {
    let s: f64 = runs.iter().map(|&(_, nr)| (nr as f64).powi(2)).sum();
    s / (n as f64).powi(2)
}

/// Fewest samples of an item (and of the rest) a run must have on average
/// for its count to say something about ρ.
const MIN_PER_RUN: f64 = 5.0;

/// The method of moments for ρ on one side: with `S = Σ (x_r - n_r p̂)² /
/// p̂(1-p̂)`, `E[S] = A + ρ B` where `A = N - Σn_r²/N` and `B = Σm_r -
/// 2Σn_r m_r/N + (Σn_r²/N²) Σm_r`, `m_r = n_r(n_r - 1)`. Returns
/// (`S - A`, `B`, `k - 1`), or zeros when the side cannot tell: one run,
/// or too few samples in or out of the item.
pub fn rho_moments(runs: Runs) -> (f64, f64, f64) {
    let (x, n) = sums(runs);
    let k = runs.len() as f64;
    if runs.len() < 2 || n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let p = x as f64 / n as f64;
    if (x as f64) < MIN_PER_RUN * k || ((n - x) as f64) < MIN_PER_RUN * k {
        return (0.0, 0.0, 0.0);
    }
    let nf = n as f64;
    let pq = p * (1.0 - p);
    let mut s = 0.0;
    let (mut sn2, mut sm, mut snm) = (0.0, 0.0, 0.0);
    for &(xr, nr) in runs {
        let nr = nr as f64;
        s += (xr as f64 - nr * p).powi(2) / pq;
        let m = nr * (nr - 1.0);
        sn2 += nr * nr;
        sm += m;
        snm += nr * m;
    }
    let a = nf - sn2 / nf;
    let b = sm - 2.0 * snm / nf + sn2 / (nf * nf) * sm;
    if b <= 0.0 {
        return (0.0, 0.0, 0.0);
    }
    (s - a, b, k - 1.0)
}

/// The outcome of comparing the runs' CPU times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTest {
    /// Geometric means of the runs' CPU times (per unit of work if given).
    pub base: f64,
    pub new: f64,
    /// The relative change of the geometric means: `new / base - 1`.
    pub change: f64,
    /// The run-to-run coefficient of variation used (ln scale): measured,
    /// with the runs' degrees of freedom, or assumed (0 degrees); `None`
    /// (and no test) when the runs cannot measure it and none is assumed.
    pub cv: Option<f64>,
    pub cv_df: f64,
    pub t: Option<f64>,
    pub p: Option<f64>,
}

/// Tests whether the CPU time of the runs differs: a test on the
/// logarithms of the runs' CPU times. When the runs give 2 or more degrees
/// of freedom (e.g. 2 runs a side), their variation is measured (the
/// within-side variance pooled over both sides) and the test is Student's
/// t; otherwise the coefficient of variation `assumed_cv`, if given, is
/// taken as known (a z-test), and without it there is no test. `None` if
/// a side has no run or a run no CPU time.
pub fn cpu_test(base: &[f64], new: &[f64], assumed_cv: Option<f64>) -> Option<CpuTest> {
    if base.is_empty() || new.is_empty() || base.iter().chain(new).any(|&c| c.is_nan() || c <= 0.0)
    {
        return None;
    }
    let logs = |v: &[f64]| v.iter().map(|c| c.ln()).collect::<Vec<f64>>();
    let (la, lb) = (logs(base), logs(new));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&la), mean(&lb));
    let ss = |v: &[f64], m: f64| v.iter().map(|x| (x - m).powi(2)).sum::<f64>();
    let df = (la.len() + lb.len() - 2) as f64;
    let d = mb - ma;
    let mut out = CpuTest {
        base: ma.exp(),
        new: mb.exp(),
        change: d.exp() - 1.0,
        cv: None,
        cv_df: 0.0,
        t: None,
        p: None,
    };
    let (var, cv_df) = match (df >= 2.0, assumed_cv) {
        (true, _) => ((ss(&la, ma) + ss(&lb, mb)) / df, df),
        (false, Some(cv)) => (cv * cv, 0.0),
        (false, None) => return Some(out),
    };
    let se = (var * (1.0 / la.len() as f64 + 1.0 / lb.len() as f64)).sqrt();
    let t = if se > 0.0 {
        d / se
    } else if d == 0.0 {
        0.0
    } else {
        d.signum() * f64::INFINITY
    };
    out.cv = Some(var.sqrt());
    out.cv_df = cv_df;
    out.t = Some(t);
    out.p = Some(t_two_sided_p(
        t,
        if cv_df > 0.0 { cv_df } else { f64::INFINITY },
    ));
    Some(out)
}

/// Holm's step-down adjusted p-values, in the input's order: a hypothesis
/// is rejected at family-wise level α when its adjusted p-value is ≤ α.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adj = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let a = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(a);
        adj[i] = running;
    }
    adj
}

/// The two-sided z quantile of a two-sided level α plus the one-sided z
/// of the power: the distance, in standard errors, a change must be from 0
/// to be found with that power.
fn z_sum(alpha: f64, power: f64) -> f64 {
    normal_quantile(1.0 - alpha / 2.0) + normal_quantile(power)
}

/// The smallest change of a share near `p` found with probability `power`
/// by a two-sided test at level `alpha`, with `runs` runs a side of
/// `samples` samples each (normal approximation, both sides alike).
pub fn detectable_change(p: f64, samples: f64, runs: f64, rho: f64, alpha: f64, power: f64) -> f64 {
    let pq = p * (1.0 - p);
    z_sum(alpha, power) * (2.0 * pq * (1.0 / samples + rho) / runs).sqrt()
}

/// Samples each run needs (with `runs` runs a side) for a change `delta`
/// of a share near `p` to be found (see [`detectable_change`]); `None`
/// when no number will do: the run-to-run noise alone (ρ) is too large for
/// so few runs.
pub fn samples_needed(
    p: f64,
    delta: f64,
    runs: f64,
    rho: f64,
    alpha: f64,
    power: f64,
) -> Option<f64> {
    let pq = p * (1.0 - p);
    let per = runs * (delta / z_sum(alpha, power)).powi(2) / (2.0 * pq) - rho;
    (per > 0.0).then(|| (1.0 / per).ceil())
}

/// Runs a side needed, of `samples` samples each, for a change `delta` of a
/// share near `p` to be found (see [`detectable_change`]).
pub fn runs_needed(p: f64, delta: f64, samples: f64, rho: f64, alpha: f64, power: f64) -> f64 {
    let pq = p * (1.0 - p);
    (2.0 * pq * (1.0 / samples + rho) * (z_sum(alpha, power) / delta).powi(2))
        .ceil()
        .max(1.0)
}

/// Two-sided p-value of a t statistic with `df` degrees of freedom
/// (infinite: the normal distribution).
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() {
        return 1.0;
    }
    if t.is_infinite() {
        return 0.0;
    }
    if !df.is_finite() || df > 1e7 {
        return erfc(t.abs() / std::f64::consts::SQRT_2);
    }
    inc_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The complementary error function, to a relative error below 1.2e-7
/// everywhere (Chebyshev fit of Numerical Recipes' `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9); `p` in (0, 1).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.024_25;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b).
pub fn inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let clamp = |v: f64| if v.abs() < TINY { TINY } else { v };
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 / clamp(1.0 - qab * x / qap);
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 / clamp(1.0 + aa * d);
        c = clamp(1.0 + aa / c);
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}
