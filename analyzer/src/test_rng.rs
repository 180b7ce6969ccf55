//! The unit tests' source of random cases: xorshift64, deterministic and
//! without a dependency.

/// xorshift64 from a non-zero seed.
pub(crate) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
