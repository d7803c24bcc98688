//! Timestamps as traces write them: Unix seconds (whole or fractional) and RFC 3339.

use presage_core::Timestamp;

use super::input::Bad;

/// Parses Unix seconds, whole (`1376314846`) or fractional (`1714564800.25`), to the
/// millisecond. Plain decimals are converted exactly (no float rounding); exponent forms
/// (`1.7e9`) go through `f64`.
pub(crate) fn unix_secs(field: &'static str, text: &str) -> Result<Timestamp, Bad> {
    let text = text.trim();
    if let Some(ms) = exact_decimal_ms(text) {
        return Ok(Timestamp::from_unix_ms(ms));
    }
    let bad = || Bad::new(field, "not a timestamp", format!("{text:?}"));
    if text.is_empty() {
        return Err(Bad::new(field, "empty value", ""));
    }
    let secs: f64 = text.parse().map_err(|_| bad())?;
    let ms = (secs * 1000.0).round();
    // ±2^53 ms keeps every millisecond representable, and is ±285 000 years.
    if !ms.is_finite() || ms.abs() > 9.0e15 {
        return Err(bad());
    }
    Ok(Timestamp::from_unix_ms(ms as i64))
}

/// `[-]digits[.digits]` → milliseconds, rounding beyond the third decimal half away
/// from zero; `None` for anything else (or an overflow).
fn exact_decimal_ms(text: &str) -> Option<i64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, f),
        None => (body, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut ms = whole.checked_mul(1000)?;
    let frac = frac.as_bytes();
    let mut scale = 100;
    for &d in frac.iter().take(3) {
        ms += i64::from(d - b'0') * scale;
        scale /= 10;
    }
    if frac.len() > 3 && frac[3] >= b'5' {
        ms += 1;
    }
    Some(if negative { -ms } else { ms })
}

/// Writes `at` as Unix seconds: whole when it is on a second, else with three decimals,
/// so [`unix_secs`] reads back the same millisecond.
pub(crate) fn format_unix_secs(at: Timestamp) -> String {
    let ms = at.unix_ms();
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    if abs.is_multiple_of(1000) {
        format!("{sign}{}", abs / 1000)
    } else {
        format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
    }
}

/// Parses an RFC 3339 date-time: `2024-05-01T12:00:00Z`, with optional fractional
/// seconds and a `Z` or `±HH:MM` offset (converted to UTC). A space may replace the `T`.
pub(crate) fn rfc3339(field: &'static str, text: &str) -> Result<Timestamp, Bad> {
    let text = text.trim();
    parse_rfc3339(text).ok_or_else(|| {
        Bad::new(
            field,
            "not a timestamp",
            format!("{text:?} (expected Unix seconds or RFC 3339 like 2024-05-01T12:00:00Z)"),
        )
    })
}

fn parse_rfc3339(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let len = frac.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let digits = &frac.as_bytes()[..len];
        let mut scale = 100;
        for &d in digits.iter().take(3) {
            ms += i64::from(d - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[len..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                return None;
            }
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if ob[0] == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(Timestamp::from_unix_ms(secs * 1000 + ms))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Hinnant's algorithm:
/// count in 400-year eras starting each March, so leap days fall at the era's end).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses either form, choosing by shape: a `-` after the first character means a date.
pub(crate) fn any(field: &'static str, text: &str) -> Result<Timestamp, Bad> {
    let trimmed = text.trim();
    if trimmed.len() > 10 && trimmed.as_bytes()[4] == b'-' {
        rfc3339(field, trimmed)
    } else {
        unix_secs(field, trimmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_are_exact_to_the_millisecond() -> Result<(), Bad> {
        assert_eq!(unix_secs("t", "1376314846")?.unix_ms(), 1_376_314_846_000);
        assert_eq!(unix_secs("t", "1.5")?.unix_ms(), 1500);
        assert_eq!(
            unix_secs("t", "1714564800.123")?.unix_ms(),
            1_714_564_800_123
        );
        assert_eq!(unix_secs("t", "0.0005")?.unix_ms(), 1);
        assert_eq!(unix_secs("t", "-1.250")?.unix_ms(), -1250);
        assert_eq!(unix_secs("t", "1.7e9")?.unix_ms(), 1_700_000_000_000);
        assert!(unix_secs("t", "abc").is_err());
        assert!(unix_secs("t", "").is_err());
        assert!(unix_secs("t", "1e300").is_err());
        for ms in [0, 1, 999, 1000, 1_714_564_800_123, -1, -1500] {
            let t = Timestamp::from_unix_ms(ms);
            assert_eq!(unix_secs("t", &format_unix_secs(t))?, t);
        }
        Ok(())
    }

    #[test]
    fn rfc3339_in_utc_and_with_offsets() -> Result<(), Bad> {
        assert_eq!(
            rfc3339("t", "2024-05-01T12:00:00Z")?,
            Timestamp::from_unix_secs(1_714_564_800)
        );
        assert_eq!(
            rfc3339("t", "2024-05-01T14:00:00.250+02:00")?.unix_ms(),
            1_714_564_800_250
        );
        assert_eq!(
            rfc3339("t", "2018-01-01 00:00:00Z")?,
            Timestamp::from_unix_secs(1_514_764_800)
        );
        assert_eq!(rfc3339("t", "1970-01-01T00:00:00Z")?.unix_ms(), 0);
        assert_eq!(
            rfc3339("t", "2000-03-01T00:00:00Z")?,
            Timestamp::from_unix_secs(951_868_800)
        );
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T24:00:00Z",
            "2024-5-1T12:00:00Z",
            "2024-05-01T12:00:00+2",
        ] {
            assert!(rfc3339("t", bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            any("t", "2024-05-01T12:00:00Z")?.unix_ms(),
            1_714_564_800_000
        );
        assert_eq!(any("t", "1714564800")?.unix_ms(), 1_714_564_800_000);
        Ok(())
    }
}
