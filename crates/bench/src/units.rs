//! Parsers for command-line quantities: durations (`10s`, `500ms`, `2m`),
//! counts (`100k`, `2M`) and byte sizes (`64M`, `1MiB`), and clock helpers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses `250ms`, `10s`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("bad duration '{s}' (e.g. 500ms, 10s, 2m)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in '{s}' (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration '{s}'"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a count with an optional decimal suffix: `100000`, `100k`, `2M`, `1G`.
pub(crate) fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim().replace('_', "");
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1e3),
        Some('m' | 'M') => (&s[..s.len() - 1], 1e6),
        Some('g' | 'G') => (&s[..s.len() - 1], 1e9),
        _ => (s.as_str(), 1.0),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad count '{s}' (e.g. 100000, 100k, 2M)"))?;
    if !n.is_finite() || n < 0.0 {
        return Err(format!("bad count '{s}'"));
    }
    Ok((n * mult).round() as u64)
}

/// Parses a byte size with an optional binary suffix: `1048576`, `512K`, `64M`, `1G` (`MiB` etc. too).
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 1 << 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size '{s}' (e.g. 1048576, 512K, 64M)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size '{s}' too large"))
}

/// Parses `key=value`.
pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got '{s}'"))
}

/// Wall-clock time in microseconds since the Unix epoch. Producers embed it
/// in messages and consumers subtract it from their own reading; both run
/// in this process, so the clocks agree.
pub(crate) fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn counts_and_sizes() {
        assert_eq!(parse_count("100k"), Ok(100_000));
        assert_eq!(parse_count("1.5M"), Ok(1_500_000));
        assert_eq!(parse_count("0"), Ok(0));
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_kv("a.b=c"), Ok(("a.b".into(), "c".into())));
        assert!(parse_kv("=c").is_err());
    }
}
