//! Time windows of a policy: on which days and at which hours its overrides apply.
//!
//! A window that wraps midnight (`22:00-06:00`) belongs to the day it *opens* on: a
//! Friday window of `22:00-06:00` is open from Friday 22:00 to Saturday 06:00, so listing
//! `days = "mon-fri"` never opens it on Saturday evening.

use presage_core::Timestamp;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: i64 = 24 * 60;

/// When a window is open, in the window's own time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Bit `d` set: the window opens on day `d` (0 = Monday … 6 = Sunday).
    days: u8,
    /// Minutes after local midnight it opens and closes; `None`: the whole day. A close
    /// at or before the open means it wraps midnight.
    hours: Option<(u16, u16)>,
    /// Minutes the window's clock is ahead of UTC.
    offset_min: i32,
}

impl Schedule {
    /// A schedule from `days` (names or ranges such as `mon-fri`; empty: every day),
    /// `hours` (`HH:MM-HH:MM`; `None`: the whole day) and `utc_offset_h` (hours ahead of
    /// UTC, fractions allowed: 5.5 is India). The error is `(key, reason)`: the key
    /// (`days`, `hours` or `utc_offset_h`) and what is wrong with it.
    pub fn new(
        days: &[String],
        hours: Option<&str>,
        utc_offset_h: f64,
    ) -> Result<Schedule, (&'static str, String)> {
        let mut mask = 0u8;
        for item in days {
            mask |= parse_days(item).map_err(|e| ("days", e))?;
        }
        if days.is_empty() {
            mask = 0x7f;
        }
        let hours = hours
            .map(parse_hours)
            .transpose()
            .map_err(|e| ("hours", e))?;
        if !(utc_offset_h.is_finite() && (-14.0..=14.0).contains(&utc_offset_h)) {
            return Err((
                "utc_offset_h",
                format!("{utc_offset_h} is outside -14..=14 hours"),
            ));
        }
        // Offsets are whole minutes (the odd zones are 30 or 45 minutes off the hour).
        let offset_min = (utc_offset_h * 60.0).round() as i32;
        Ok(Schedule {
            days: mask,
            hours,
            offset_min,
        })
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local_min = now.unix_ms().div_euclid(60_000) + i64::from(self.offset_min);
        let day = local_min.div_euclid(MINUTES_PER_DAY);
        let minute = local_min.rem_euclid(MINUTES_PER_DAY);
        // The epoch (day 0) was a Thursday: weekday 3 with Monday = 0.
        let weekday = |d: i64| (d + 3).rem_euclid(7) as u8;
        let on = |d: i64| self.days & (1 << weekday(d)) != 0;
        match self.hours {
            None => on(day),
            Some((open, close)) => {
                let (open, close) = (i64::from(open), i64::from(close));
                if open < close {
                    on(day) && (open..close).contains(&minute)
                } else {
                    // Wraps midnight: the evening part today, or the morning part of a
                    // window that opened yesterday.
                    (on(day) && minute >= open) || (on(day - 1) && minute < close)
                }
            }
        }
    }
}

fn day_index(name: &str) -> Result<u8, String> {
    let lower = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| lower.len() >= 3 && d.starts_with(&lower[..3]) && is_day_word(&lower))
        .map(|i| i as u8)
        .ok_or_else(|| format!("unknown day {name:?} (expected mon, tue, wed, thu, fri, sat, sun)"))
}

/// `mon`, `monday`: a day's three-letter name or its full English name.
fn is_day_word(lower: &str) -> bool {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    lower.len() == 3 || FULL.contains(&lower)
}

/// The days one item names: `mon`, `mon-fri` (a range may wrap: `fri-mon`), `*`/`all`,
/// or a comma-separated list of those.
fn parse_days(item: &str) -> Result<u8, String> {
    let mut mask = 0u8;
    for part in item.split(',').map(str::trim) {
        if part == "*" || part.eq_ignore_ascii_case("all") {
            mask |= 0x7f;
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day_index(part)?,
        }
    }
    Ok(mask)
}

fn parse_clock(text: &str) -> Result<u16, String> {
    let bad = || format!("bad time {text:?} (expected HH:MM, 00:00 to 24:00)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn parse_hours(text: &str) -> Result<(u16, u16), String> {
    let (open, close) = text
        .split_once('-')
        .ok_or_else(|| format!("bad hours {text:?} (expected HH:MM-HH:MM)"))?;
    let (open, close) = (parse_clock(open)?, parse_clock(close)?);
    if open == close {
        return Err(format!(
            "hours {text:?} open and close at the same time (leave `hours` out for all day)"
        ));
    }
    // 24:00 as an opening time is midnight of the next day: no such window.
    if open == 24 * 60 {
        return Err(format!("hours {text:?} open at 24:00"));
    }
    Ok((open, close % (24 * 60)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23 is a Monday.
    fn at(day_of_month: i64, h: i64, m: i64) -> Timestamp {
        const MON_2026_11_23: i64 = 1_795_392_000;
        Timestamp::from_unix_secs(MON_2026_11_23 + (day_of_month - 23) * 86_400 + h * 3600 + m * 60)
    }

    fn s(days: &[&str], hours: Option<&str>, off: f64) -> Schedule {
        let days: Vec<String> = days.iter().map(|d| d.to_string()).collect();
        Schedule::new(&days, hours, off).unwrap()
    }

    #[test]
    fn the_reference_monday_is_a_monday() {
        assert_eq!(at(23, 12, 0).day_of_week(), 0);
    }

    #[test]
    fn office_hours_on_weekdays() {
        let w = s(&["mon-fri"], Some("09:00-18:00"), 0.0);
        assert!(w.is_open(at(23, 9, 0)));
        assert!(w.is_open(at(27, 17, 59)));
        assert!(!w.is_open(at(23, 18, 0)), "the close is exclusive");
        assert!(!w.is_open(at(23, 8, 59)));
        assert!(!w.is_open(at(28, 12, 0)), "Saturday");
    }

    #[test]
    fn a_window_wrapping_midnight_belongs_to_the_day_it_opens() {
        let w = s(&["fri"], Some("22:00-06:00"), 0.0);
        assert!(w.is_open(at(27, 23, 0)), "Friday night");
        assert!(w.is_open(at(28, 5, 59)), "Saturday early morning");
        assert!(!w.is_open(at(28, 6, 0)));
        assert!(!w.is_open(at(28, 23, 0)), "Saturday night is not listed");
        assert!(
            !w.is_open(at(27, 3, 0)),
            "Friday morning belongs to Thursday"
        );
    }

    #[test]
    fn the_offset_moves_the_clock_and_the_day() {
        // 09:00-10:00 at UTC+2 is 07:00-08:00 UTC.
        let w = s(&["mon"], Some("09:00-10:00"), 2.0);
        assert!(w.is_open(at(23, 7, 30)));
        assert!(!w.is_open(at(23, 9, 30)));
        // Monday 00:30 at UTC+2 is Sunday 22:30 UTC.
        let w = s(&["mon"], None, 2.0);
        assert!(w.is_open(at(22, 22, 30)));
        assert!(!w.is_open(at(23, 22, 30)), "Tuesday 00:30 local");
        let w = s(&["mon"], Some("09:00-09:30"), 5.5);
        assert!(w.is_open(at(23, 3, 40)));
    }

    #[test]
    fn day_lists_ranges_and_names() {
        assert_eq!(parse_days("mon-fri").unwrap(), 0b001_1111);
        assert_eq!(parse_days("sat,sun").unwrap(), 0b110_0000);
        assert_eq!(parse_days("fri-mon").unwrap(), 0b111_0001);
        assert_eq!(parse_days("Tuesday").unwrap(), 0b10);
        assert_eq!(parse_days("*").unwrap(), 0x7f);
        assert!(parse_days("funday").unwrap_err().contains("funday"));
        assert!(parse_days("mo").is_err());
        let every = s(&[], Some("00:00-24:00"), 0.0);
        assert!(every.is_open(at(25, 23, 59)));
    }

    #[test]
    fn bad_hours_say_why() {
        for bad in [
            "9-18",
            "09:00",
            "25:00-26:00",
            "09:60-10:00",
            "10:00-10:00",
            "24:00-01:00",
        ] {
            let (key, e) = Schedule::new(&[], Some(bad), 0.0).unwrap_err();
            assert_eq!(key, "hours");
            assert!(e.contains(bad) || e.contains("HH:MM"), "{bad}: {e}");
        }
        assert_eq!(
            Schedule::new(&[], None, 15.0).unwrap_err().0,
            "utc_offset_h"
        );
        let days = vec!["mon-xyz".to_string()];
        assert_eq!(Schedule::new(&days, None, 0.0).unwrap_err().0, "days");
    }
}
