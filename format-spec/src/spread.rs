//! Sharing out the CPU time of samples the recorder did not read the CPU
//! clock for (SPEC.md §2.4, "Samples without CPU time").

/// The most samples of a thread in a row that may lack a CPU time
/// (`NO_CPU`); one more is damage. It bounds what a reader must hold back
/// before it can share out their CPU time.
pub const MAX_NO_CPU_RUN: u32 = 255;

/// Shares `total` (the CPU time measured at a sample since the thread's last
/// sample with a CPU time) over that sample and the `NO_CPU` samples before
/// it, in proportion to their time deltas: `spans[j]` is sample `j`'s time
/// since the sample before it, the measured one last. Calls `share` once per
/// span, in order, with that sample's share.
///
/// With `S_j` the sum of the first `j` spans and `S` the sum of all, sample
/// `j` (counting from 1) gets `⌊total·S_j/S⌋ − ⌊total·S_(j−1)/S⌋`: the shares
/// add up to `total` exactly, and no share exceeds its span when `total`
/// does not exceed `S` (a thread cannot run longer than the wall clock).
/// With `S = 0` the last sample gets it all. Units are the caller's (the
/// format's are whole µs).
pub fn spread_cpu(total: u64, spans: &[u64], mut share: impl FnMut(u64)) {
    let sum: u128 = spans.iter().map(|&s| u128::from(s)).sum();
    if sum == 0 {
        for (i, _) in spans.iter().enumerate() {
            share(if i + 1 == spans.len() { total } else { 0 });
        }
        return;
    }
    let total = u128::from(total);
    // total·sum fits 128 bits unless the spans add up past 2^64 (only a
    // damaged trace's can): then both sums lose their low bits alike, which
    // keeps the shares in order and adding up to `total`.
    let bits = |v: u128| 128 - v.leading_zeros();
    let shift = (bits(total) + bits(sum)).saturating_sub(128);
    let (mut acc, mut given) = (0u128, 0u128);
    for &s in spans {
        acc += u128::from(s);
        // acc ≤ sum, so the quotient is at most total: it fits a u64.
        let upto = total * (acc >> shift) / (sum >> shift);
        share((upto - given) as u64);
        given = upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(total: u64, spans: &[u64]) -> Vec<u64> {
        let mut v = Vec::new();
        spread_cpu(total, spans, |s| v.push(s));
        v
    }

    #[test]
    fn shares_follow_the_time_deltas_and_add_up() {
        assert_eq!(shares(1000, &[100; 10]), vec![100; 10]);
        // A thread that ran 900 of 1000 µs: 90 each, exactly.
        assert_eq!(shares(900, &[100; 10]), vec![90; 10]);
        // Uneven spans and a total that does not divide.
        let v = shares(7, &[1, 2, 3]);
        assert_eq!(v, vec![1, 2, 4]);
        assert_eq!(v.iter().sum::<u64>(), 7);
        // Zero spans: all on the measured sample.
        assert_eq!(shares(5, &[0, 0, 0]), vec![0, 0, 5]);
        // One sample: all of it.
        assert_eq!(shares(123, &[0]), vec![123]);
        assert_eq!(shares(123, &[50]), vec![123]);
        // Extremes do not overflow.
        let v = shares(u64::MAX, &[u64::MAX, u64::MAX]);
        assert_eq!(
            v.iter().map(|&s| u128::from(s)).sum::<u128>(),
            u128::from(u64::MAX)
        );
    }

    #[test]
    fn no_share_exceeds_its_span_when_the_total_does_not_exceed_the_time() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let n = (x % 20) as usize + 1;
            let mut spans = Vec::new();
            for _ in 0..n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                spans.push(x % 300);
            }
            let sum: u64 = spans.iter().sum();
            let total = if sum == 0 { 0 } else { x % (sum + 1) };
            let v = shares(total, &spans);
            assert_eq!(v.iter().sum::<u64>(), total);
            for (s, span) in v.iter().zip(&spans) {
                assert!(s <= span, "{v:?} {spans:?} {total}");
            }
        }
    }
}
