//! A median with a distribution-free confidence interval.
//!
//! On a shared VM the per-round ratios have heavy, one-sided tails
//! (contention only ever adds CPU time), so no normal approximation: the
//! interval for the median comes from the order statistics alone. If the
//! `n` values are independent draws from one continuous distribution, the
//! number of them below its true median is binomial(n, ½), so the interval
//! `[x_(j), x_(k)]` between the j-th and k-th smallest values covers the
//! median with probability `P(j ≤ B < k)`, B ~ binomial(n, ½), whatever the
//! distribution.

use serde::Serialize;

/// The 1-based ranks `(j, k)` of the narrowest symmetric interval of order
/// statistics `[x_(j), x_(k)]`, `k = n + 1 − j`, that covers the median of
/// `n` values with probability at least `level`, and that probability.
/// `None` when even `[x_(1), x_(n)]` covers it with less (`n < 6` at 95%:
/// `1 − 2·½ⁿ` is 0.9375 for n = 5).
pub fn median_ci_ranks(n: usize, level: f64) -> Option<(usize, usize, f64)> {
    if n < 2 {
        return None;
    }
    // ln C(n, i) − n ln 2, term by term; terms too small for an f64 become
    // 0, which only matters far out in the tails.
    let ln2n = n as f64 * std::f64::consts::LN_2;
    let mut ln_c = 0.0f64;
    // P(B < j) = P(B > n − j) by symmetry: coverage(j) = 1 − 2 P(B < j).
    let mut below = 0.0f64;
    let mut best = None;
    let mut j = 1;
    while j < n + 1 - j {
        // Add P(B = j − 1).
        below += (ln_c - ln2n).exp();
        let coverage = 1.0 - 2.0 * below;
        if coverage < level {
            break;
        }
        best = Some((j, n + 1 - j, coverage));
        ln_c += ((n - (j - 1)) as f64).ln() - (j as f64).ln();
        j += 1;
    }
    best
}

/// The median of some values and, when there are enough of them, its 95%
/// confidence interval from the order statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MedianCi {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// None when `n` is too small for a 95% interval (`n < 6`).
    pub ci95: Option<Ci>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ci {
    pub lo: f64,
    pub hi: f64,
    /// 1-based ranks of `lo` and `hi` among the sorted values.
    pub lo_rank: usize,
    pub hi_rank: usize,
    /// P(lo ≤ median ≤ hi) for continuous data: P(lo_rank ≤ B < hi_rank).
    pub coverage: f64,
}

/// The finite values of `v`, sorted, and their median; `None` if there is
/// none.
pub fn sorted_with_median(mut v: Vec<f64>) -> Option<(Vec<f64>, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((v, median))
}

impl MedianCi {
    /// Non-finite values are dropped; `None` if none is left.
    pub fn of(v: Vec<f64>) -> Option<MedianCi> {
        let (v, median) = sorted_with_median(v)?;
        let n = v.len();
        let ci95 = median_ci_ranks(n, 0.95).map(|(j, k, coverage)| Ci {
            lo: v[j - 1],
            hi: v[k - 1],
            lo_rank: j,
            hi_rank: k,
            coverage,
        });
        Some(MedianCi {
            n,
            median,
            min: v[0],
            max: v[n - 1],
            ci95,
        })
    }

    /// `median (lo–hi)`, or `median (n/a)` without an interval.
    pub fn fmt(&self, prec: usize) -> String {
        match &self.ci95 {
            Some(ci) => format!("{:.prec$} ({:.prec$}–{:.prec$})", self.median, ci.lo, ci.hi),
            None => format!("{:.prec$} (n/a)", self.median),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P(j ≤ B < k), B ~ binomial(n, ½), exactly (n ≤ 120 fits in u128).
    fn exact_coverage(n: usize, j: usize, k: usize) -> f64 {
        let mut c: u128 = 1; // C(n, i)
        let mut inside: u128 = 0;
        for i in 0..=n {
            if i >= j && i < k {
                inside += c;
            }
            c = c * (n - i) as u128 / (i + 1) as u128;
        }
        inside as f64 / 2f64.powi(n as i32)
    }

    #[test]
    fn known_ranks() {
        assert_eq!(median_ci_ranks(0, 0.95), None);
        assert_eq!(median_ci_ranks(1, 0.95), None);
        assert_eq!(median_ci_ranks(5, 0.95), None);
        let (j, k, c) = median_ci_ranks(6, 0.95).unwrap();
        assert_eq!((j, k), (1, 6));
        assert!((c - 0.96875).abs() < 1e-12, "{c}");
        assert_eq!(median_ci_ranks(10, 0.95).unwrap().0, 2);
        assert_eq!(median_ci_ranks(21, 0.95).unwrap().0, 6);
        let (j, k, c) = median_ci_ranks(61, 0.95).unwrap();
        assert_eq!((j, k), (23, 39));
        assert!((c - 0.960_382_985).abs() < 1e-8, "{c}");
        assert!(c >= 0.95);
        // One rank narrower would fall short.
        assert!(exact_coverage(61, 24, 38) < 0.95);
    }

    #[test]
    fn ranks_match_exact_binomial() {
        for n in 0..=120 {
            let got = median_ci_ranks(n, 0.95);
            // The largest j with P(j ≤ B < n + 1 − j) ≥ 0.95, by brute force.
            let want = (1..=n / 2 + 1)
                .filter(|&j| j < n + 1 - j)
                .filter(|&j| exact_coverage(n, j, n + 1 - j) >= 0.95)
                .max();
            assert_eq!(got.map(|g| g.0), want, "n = {n}");
            if let Some((j, k, c)) = got {
                assert_eq!(k, n + 1 - j);
                assert!(c >= 0.95, "n = {n}: {c}");
                assert!((c - exact_coverage(n, j, k)).abs() < 1e-9, "n = {n}");
            }
        }
        // Large n stays sane (no overflow; about n/2 ± 0.98 √n).
        let (j, k, c) = median_ci_ranks(10_000, 0.95).unwrap();
        assert!((4_890..=4_910).contains(&j), "{j}");
        assert_eq!(k, 10_001 - j);
        assert!((0.95..0.96).contains(&c), "{c}");
    }

    #[test]
    fn median_ci_of_values() {
        // 61 values 1..=61, out of order: ranks are the values.
        let v: Vec<f64> = (0..61).map(|i| ((i * 17) % 61 + 1) as f64).collect();
        let m = MedianCi::of(v).unwrap();
        assert_eq!((m.n, m.median, m.min, m.max), (61, 31.0, 1.0, 61.0));
        let ci = m.ci95.unwrap();
        assert_eq!((ci.lo, ci.hi, ci.lo_rank, ci.hi_rank), (23.0, 39.0, 23, 39));
        assert_eq!(m.fmt(1), "31.0 (23.0–39.0)");

        let m = MedianCi::of(vec![1.0, f64::NAN, 3.0, f64::INFINITY]).unwrap();
        assert_eq!((m.n, m.median, m.ci95), (2, 2.0, None));
        assert_eq!(m.fmt(3), "2.000 (n/a)");
        assert_eq!(MedianCi::of(vec![f64::NAN]), None);
    }
}
