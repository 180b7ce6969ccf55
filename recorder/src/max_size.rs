//! `--max-size`: the bound of a flight-recorder trace (SPEC.md §5).

use wrec_format::RingLayout;

/// Parses a trace size bound (`64MiB`, `1GiB`, `500MB`, `1048576`) into
/// the ring layout a trace of at most that many bytes uses. Sizes use the
/// `parse-size` crate's syntax: units `KiB`, `MiB`, `GiB` (and `KB`,
/// `MB`, `GB`, read as the same binary multiples), case-insensitive, or
/// plain bytes.
pub fn parse_max_size(s: &str) -> Result<RingLayout, String> {
    let bytes = parse_size(s)?;
    RingLayout::for_max_size(bytes).ok_or_else(|| {
        format!(
            "`{s}` is too small for a flight-recorder trace: give at least {} MiB",
            RingLayout::MIN_MAX_SIZE >> 20
        )
    })
}

/// Parses a size in bytes (`64MiB`, `8KiB`, `1048576`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("`{s}` is not a size like 64MiB or 1GiB ({e})"))
}

/// The layout of a trace of at most `max_size` bytes cut into segments of
/// `segment_size` bytes (`wrec --trace-segment-size`, for tests: small
/// segments wrap the ring within a short run): the linear part as
/// [`RingLayout::for_max_size`] makes it, at least four segments after it.
pub fn layout_with_segments(max_size: u64, segment_size: u64) -> Result<RingLayout, String> {
    let linear = (max_size / 8).clamp(256 << 10, 16 << 20) / 4096 * 4096;
    let segment_size = segment_size.max(4096) / 4096 * 4096;
    let segments = max_size.saturating_sub(linear) / segment_size;
    if segments < 4 || segment_size >= 1 << 32 {
        return Err(format!(
            "--max-size {max_size} leaves room for {segments} segments of {segment_size} bytes after the linear part ({linear} bytes): at least 4 are needed"
        ));
    }
    Ok(RingLayout {
        ring_offset: linear,
        segment_size,
        segments: segments as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_into_layouts_that_fit() {
        for (s, bytes) in [
            ("64MiB", 64u64 << 20),
            ("2MiB", 2 << 20),
            ("1GiB", 1 << 30),
            // parse-size reads MB as MiB too (binary multiples).
            ("10MB", 10 << 20),
        ] {
            let l = parse_max_size(s).unwrap();
            assert!(l.file_len() <= bytes, "{s}: {l:?}");
            assert!(l.segments >= 4, "{s}: {l:?}");
            // Little is left unused: less than one segment.
            assert!(bytes - l.file_len() < l.segment_size, "{s}: {l:?}");
        }
        assert!(parse_max_size("1MiB").unwrap_err().contains("too small"));
        assert!(parse_max_size("lots").unwrap_err().contains("not a size"));
    }
}
