//! LEB128 varints and zigzag, as SPEC.md §0 defines them.
//!
//! The encoders write into a caller-provided slice and never allocate, so the
//! sampler's signal handler can use them.

/// The longest varint this format allows (a `u64`).
pub const MAX_VARINT_LEN: usize = 10;

/// Writes `v` at `out[pos..]` and returns the position after it.
///
/// # Panics
/// If `out` has fewer than [`MAX_VARINT_LEN`] bytes left; callers size their
/// buffers for the worst case.
#[inline]
pub fn put(out: &mut [u8], mut pos: usize, mut v: u64) -> usize {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out[pos] = byte;
            return pos + 1;
        }
        out[pos] = byte | 0x80;
        pos += 1;
    }
}

/// Appends `v` to a vector (normal context only).
pub fn push(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; MAX_VARINT_LEN];
    let n = put(&mut buf, 0, v);
    out.extend_from_slice(&buf[..n]);
}

/// The number of bytes `v` takes.
#[inline]
pub fn len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More than 64 bits, or an 11th byte.
    Overflow,
}

/// Reads a varint at `buf[*pos..]`, advancing `pos`.
#[inline]
pub fn get(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = buf.get(*pos) else {
            return Err(VarintError::Truncated);
        };
        *pos += 1;
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(VarintError::Overflow);
        }
        v |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 63 {
            return Err(VarintError::Overflow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edge_values() {
        for v in [0, 1, 127, 128, 300, 1 << 32, u64::MAX - 1, u64::MAX] {
            let mut buf = [0u8; MAX_VARINT_LEN];
            let n = put(&mut buf, 0, v);
            assert_eq!(n, len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(get(&buf[..n], &mut pos), Ok(v));
            assert_eq!(pos, n);
        }
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn rejects_overlong_and_truncated() {
        let mut pos = 0;
        assert_eq!(get(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        let eleven = [0xff; 11];
        pos = 0;
        assert_eq!(get(&eleven, &mut pos), Err(VarintError::Overflow));
        // 10th byte may only carry the top bit of a u64.
        let mut too_big = [0xffu8; 10];
        too_big[9] = 0x02;
        pos = 0;
        assert_eq!(get(&too_big, &mut pos), Err(VarintError::Overflow));
    }
}
