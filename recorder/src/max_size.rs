//! `--max-size`: the bound of a flight-recorder trace (SPEC.md §5).

use wrec_format::RingLayout;

/// Parses a trace size bound (`64MiB`, `1GiB`, `500MB`, `1048576`) into
/// the ring layout a trace of at most that many bytes uses. Sizes use the
/// `parse-size` crate's syntax: binary (`KiB`, `MiB`, `GiB`) and decimal
/// (`KB`, `MB`, `GB`) units, case-insensitive, or plain bytes.
pub fn parse_max_size(s: &str) -> Result<RingLayout, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("`{s}` is not a size like 64MiB or 1GiB ({e})"))?;
    RingLayout::for_max_size(bytes).ok_or_else(|| {
        format!(
            "`{s}` is too small for a flight-recorder trace: give at least {} MiB",
            RingLayout::MIN_MAX_SIZE >> 20
        )
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
            ("10MB", 10_000_000),
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
