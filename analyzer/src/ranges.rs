//! Which module's code holds an address, in logarithmic time.
//!
//! A trace may hold any number of module records (a hostile one, thousands),
//! and their code ranges may overlap. The first record whose range holds an
//! address owns it, as a linear search in record order would say; this keeps
//! that answer for each address, without the search (fuzzing finding F4:
//! 16 000 records took 0.46 s, and the cost grew with their square).

use std::collections::BTreeMap;

/// Code ranges, each owned by the first range added that covers it.
#[derive(Debug, Default)]
pub(crate) struct FirstOwner {
    /// Disjoint segments: start → (end, exclusive, up to 2^64; owner).
    segments: BTreeMap<u64, (u128, usize)>,
}

impl FirstOwner {
    /// Adds `len` bytes from `start` (wrapping past the top of the address
    /// space like [`wrec_format::ModuleRecord::contains`]), owned by `owner`
    /// where no earlier range is.
    pub(crate) fn add(&mut self, start: u64, len: u64, owner: usize) {
        let end = u128::from(start) + u128::from(len);
        let top = 1u128 << 64;
        if end > top {
            self.add_piece(start, top, owner);
            self.add_piece(0, end - top, owner);
        } else {
            self.add_piece(start, end, owner);
        }
    }

    /// Adds the parts of `[start, end)` no segment covers yet.
    fn add_piece(&mut self, start: u64, end: u128, owner: usize) {
        let mut cur = u128::from(start);
        if let Some((_, &(e, _))) = self.segments.range(..=start).next_back() {
            cur = cur.max(e);
        }
        let mut gaps = Vec::new();
        for (&s, &(e, _)) in self.segments.range(start..) {
            if u128::from(s) >= end {
                break;
            }
            if u128::from(s) > cur {
                gaps.push((cur, u128::from(s)));
            }
            cur = cur.max(e);
        }
        if cur < end {
            gaps.push((cur, end));
        }
        for (s, e) in gaps {
            // s < end <= 2^64: it fits.
            self.segments.insert(s as u64, (e, owner));
        }
    }

    /// The owner of `addr`, if any range covers it.
    pub(crate) fn find(&self, addr: u64) -> Option<usize> {
        let (_, &(end, owner)) = self.segments.range(..=addr).next_back()?;
        (u128::from(addr) < end).then_some(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The linear search it replaces: the first range holding `addr`.
    fn linear(ranges: &[(u64, u64)], addr: u64) -> Option<usize> {
        ranges
            .iter()
            .position(|&(s, len)| addr.wrapping_sub(s) < len)
    }

    #[test]
    fn agrees_with_a_linear_search_over_overlapping_ranges() {
        // xorshift: deterministic, no dependency.
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
        for round in 0..200 {
            let mut ranges = Vec::new();
            let mut owner = FirstOwner::default();
            for i in 0..(round % 40 + 1) {
                // Small addresses so that ranges overlap often; some wrap.
                let start = if next().is_multiple_of(8) {
                    u64::MAX - next() % 64
                } else {
                    next() % 1024
                };
                let len = next() % 256;
                ranges.push((start, len));
                owner.add(start, len, i);
            }
            for _ in 0..500 {
                let addr = match next() % 3 {
                    0 => u64::MAX - next() % 128,
                    _ => next() % 1400,
                };
                assert_eq!(
                    owner.find(addr),
                    linear(&ranges, addr),
                    "round {round}, addr {addr:#x}, ranges {ranges:?}"
                );
            }
            // Every range's edges, where off-by-ones live.
            for &(s, len) in &ranges {
                for addr in [
                    s.wrapping_sub(1),
                    s,
                    s.wrapping_add(len).wrapping_sub(1),
                    s.wrapping_add(len),
                ] {
                    assert_eq!(owner.find(addr), linear(&ranges, addr));
                }
            }
        }
    }

    #[test]
    fn the_whole_address_space_and_empty_ranges() {
        let mut owner = FirstOwner::default();
        owner.add(10, 0, 0);
        assert_eq!(owner.find(10), None);
        owner.add(5, u64::MAX, 1);
        // [5, 2^64) and [0, 4): everything but 4.
        assert_eq!(owner.find(4), None);
        assert_eq!(owner.find(3), Some(1));
        assert_eq!(owner.find(u64::MAX), Some(1));
        owner.add(0, 10, 2);
        assert_eq!(owner.find(4), Some(2));
        assert_eq!(owner.find(3), Some(1));
    }
}
