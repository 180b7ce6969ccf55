//! Parsing and printing sampling intervals (`100us`, `0.5ms`, `10ms`, `1s`).

use std::time::Duration;

/// The shortest interval accepted: below this the timer interrupt alone
/// (about 20 µs a sample on typical VMs) would take most of the CPU.
pub const MIN_INTERVAL: Duration = Duration::from_micros(10);
/// The longest interval accepted.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);

/// Parses an interval: a positive decimal number and a unit, one of `ns`,
/// `us` (or `µs`), `ms`, `s`. Between [`MIN_INTERVAL`] and [`MAX_INTERVAL`].
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{s}` has no unit: write e.g. 1ms, 250us or 0.5ms"))?;
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        u => return Err(format!("`{s}`: unknown unit `{u}` (use ns, us, ms or s)")),
    };
    if num.is_empty() || num.chars().filter(|&c| c == '.').count() > 1 || num == "." {
        return Err(format!("`{s}` is not a number with a unit, e.g. 1ms"));
    }
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a number with a unit, e.g. 1ms"))?;
    let ns = v * scale;
    let range = || {
        format!(
            "between {} and {}",
            format_interval(MIN_INTERVAL),
            format_interval(MAX_INTERVAL)
        )
    };
    if !ns.is_finite() || ns < MIN_INTERVAL.as_nanos() as f64 {
        return Err(format!(
            "`{s}` is too short: the interval must be {}",
            range()
        ));
    }
    if ns > MAX_INTERVAL.as_nanos() as f64 {
        return Err(format!(
            "`{s}` is too long: the interval must be {}",
            range()
        ));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// Prints an interval in the largest unit that keeps it whole (`100us`, `1ms`,
/// `1.5ms` when needed).
pub fn format_interval(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, scale) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if ns >= scale {
            return if ns.is_multiple_of(scale) {
                format!("{}{unit}", ns / scale)
            } else {
                format!("{}{unit}", ns as f64 / scale as f64)
            };
        }
    }
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        assert_eq!(parse_interval("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_interval("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_interval("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_interval("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_interval("0.5ms"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_interval("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_interval("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_interval("20000ns"), Ok(Duration::from_micros(20)));
        assert_eq!(parse_interval("50µs"), Ok(Duration::from_micros(50)));
    }

    #[test]
    fn refuses() {
        for bad in [
            "0", "0ms", "1", "ms", "5us", "9.9us", "11s", "1h", "-1ms", "1..2ms", "abc", "",
            "1e3us", "nanms",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_interval("5us").unwrap_err().contains("too short"));
        assert!(parse_interval("11s").unwrap_err().contains("too long"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_interval(Duration::from_micros(100)), "100us");
        assert_eq!(format_interval(Duration::from_millis(1)), "1ms");
        assert_eq!(format_interval(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_interval(Duration::from_secs(10)), "10s");
    }
}
