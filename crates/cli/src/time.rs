//! Times on the command line and in tables: RFC 3339 (`2024-05-01T12:00:00Z`,
//! `2024-05-01T14:00:00+02:00`, `2024-05-01`), relative to now (`-1h`,
//! `-1h30m`, `-2d`), or `now`; all become milliseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Parses a time given on the command line, relative ones against `now_ms`.
pub(crate) fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ms);
    }
    if let Some(rel) = t.strip_prefix('-') {
        return parse_relative(rel).map(|d| now_ms.saturating_sub(d));
    }
    parse_rfc3339(t).map_err(|e| {
        format!("invalid time '{s}': {e} (use RFC 3339 like 2024-05-01T12:00:00Z, or -1h, -30m, -2d, or now)")
    })
}

/// clap value parser for time options.
pub(crate) fn time_arg(s: &str) -> Result<i64, String> {
    parse_time(s, now_ms())
}

/// `1h30m`, `15m`, `2d`, `500ms` → milliseconds.
fn parse_relative(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid relative time '-{s}' (use e.g. -90s, -15m, -1h30m, -2d, -1w)");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => MS_PER_DAY,
            "w" => 7 * MS_PER_DAY,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
    }
    Ok(total)
}

fn num(s: &str, what: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what}"));
    }
    s.parse().map_err(|_| format!("bad {what}"))
}

/// RFC 3339 date-time with a zone (`Z` or `±HH:MM`), or a plain date (UTC
/// midnight); `T`, `t` or a space between date and time; fractional
/// seconds are kept to the millisecond.
fn parse_rfc3339(s: &str) -> Result<i64, String> {
    let date = s.get(..10).ok_or("too short")?;
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("expected YYYY-MM-DD".into());
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err("expected YYYY-MM-DD".into());
    }
    let (y, m, d) = (i64::from(num(y, "year")?), num(m, "month")?, num(d, "day")?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err("no such date".into());
    }
    let days = days_from_civil(y, m, d);
    let rest = &s[10..];
    if rest.is_empty() {
        return Ok(days * MS_PER_DAY);
    }
    let rest = rest.strip_prefix(['T', 't', ' ']).ok_or("expected T between date and time")?;
    // The zone starts at the first Z, + or - after the time.
    let zone_at = rest.find(['Z', 'z', '+', '-']).ok_or("missing time zone (add Z for UTC, or +HH:MM)")?;
    let (time, zone) = rest.split_at(zone_at);
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut f = hms.split(':');
    let (h, mi, sec) = match (f.next(), f.next(), f.next(), f.next()) {
        (Some(h), Some(mi), sec, None) => {
            (num(h, "hour")?, num(mi, "minute")?, sec.map(|s| num(s, "second")).transpose()?)
        }
        _ => return Err("expected HH:MM[:SS]".into()),
    };
    if h > 23 || mi > 59 || sec.unwrap_or(0) > 60 {
        return Err("no such time of day".into());
    }
    let millis = match frac {
        Some(fr) => {
            if fr.is_empty() || !fr.bytes().all(|b| b.is_ascii_digit()) {
                return Err("bad fraction of a second".into());
            }
            let padded: String = fr.chars().chain("000".chars()).take(3).collect();
            i64::from(num(&padded, "fraction of a second")?)
        }
        None => 0,
    };
    let offset_min = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let z = &zone[1..];
            let (zh, zm) = z.split_once(':').unwrap_or((z.get(..2).unwrap_or(z), z.get(2..).unwrap_or("")));
            let (zh, zm) = (num(zh, "zone hour")?, num(zm, "zone minute")?);
            if zh > 23 || zm > 59 {
                return Err("bad time zone".into());
            }
            sign * i64::from(zh * 60 + zm)
        }
    };
    let secs = i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec.unwrap_or(0).min(59));
    Ok(days * MS_PER_DAY + secs * 1000 + millis - offset_min * 60_000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2024-05-01T12:00:00.123Z`,
/// the fraction only when non-zero).
pub(crate) fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    if milli == 0 {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// A duration for people: `250ms`, `42s`, `5m 3s`, `2h 10m`, `3d 4h`.
pub(crate) fn format_duration_ms(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_time("2024-05-01T12:00:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2024-05-01t12:00:00z", 0), Ok(NOW));
        assert_eq!(parse_time("2024-05-01 14:00:00+02:00", 0), Ok(NOW));
        assert_eq!(parse_time("2024-05-01T07:30:00-04:30", 0), Ok(NOW));
        assert_eq!(parse_time("2024-05-01T12:00Z", 0), Ok(NOW));
        assert_eq!(parse_time("2024-05-01T12:00:00.5Z", 0), Ok(NOW + 500));
        assert_eq!(parse_time("2024-05-01T12:00:00.123456Z", 0), Ok(NOW + 123));
        assert_eq!(parse_time("2024-05-01", 0), Ok(NOW - 12 * 3_600_000));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 0), Ok(0));
        assert_eq!(parse_time("1969-12-31T23:59:59Z", 0), Ok(-1000));
        assert_eq!(parse_time("2000-02-29T00:00:00Z", 0), Ok(951_782_400_000));
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2024-05-01T12:00:00",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-5-1T12:00:00Z",
            "-",
            "-1",
            "-h",
            "-1y",
            "1h",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("-1h", NOW), Ok(NOW - 3_600_000));
        assert_eq!(parse_time("-30m", NOW), Ok(NOW - 1_800_000));
        assert_eq!(parse_time("-1h30m", NOW), Ok(NOW - 5_400_000));
        assert_eq!(parse_time("-2d", NOW), Ok(NOW - 2 * MS_PER_DAY));
        assert_eq!(parse_time("-1w", NOW), Ok(NOW - 7 * MS_PER_DAY));
        assert_eq!(parse_time("-90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_time("-250ms", NOW), Ok(NOW - 250));
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_ms(NOW), "2024-05-01T12:00:00Z");
        assert_eq!(format_ms(NOW + 7), "2024-05-01T12:00:00.007Z");
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(-1000), "1969-12-31T23:59:59Z");
        for t in [0, 1, NOW, 951_782_400_000, 4_102_444_800_123, -86_400_001] {
            assert_eq!(parse_time(&format_ms(t), 0), Ok(t));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(42_000), "42s");
        assert_eq!(format_duration_ms(303_000), "5m 3s");
        assert_eq!(format_duration_ms(7_800_000), "2h 10m");
        assert_eq!(format_duration_ms(273_600_000), "3d 4h");
    }
}
