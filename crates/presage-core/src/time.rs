use std::fmt;

use serde::{Deserialize, Serialize};

/// An instant in UTC, as milliseconds since the Unix epoch.
///
/// Milliseconds rather than seconds because the live agent samples at 1 s and measures
/// actuation latency; an `i64` of milliseconds covers ±292 million years.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_unix_ms(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// The instant `s` whole seconds after the epoch.
    pub const fn from_unix_secs(s: i64) -> Self {
        Timestamp(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, with the fraction.
    pub fn unix_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// This instant moved by `ms` milliseconds (negative moves back).
    pub const fn plus_ms(self, ms: i64) -> Self {
        Timestamp(self.0.saturating_add(ms))
    }

    /// This instant moved by `s` seconds.
    pub const fn plus_secs(self, s: i64) -> Self {
        self.plus_ms(s.saturating_mul(1000))
    }

    /// `self − earlier` in seconds (negative if `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1000.0
    }

    /// Seconds since the most recent UTC midnight, in `[0, 86400)`.
    pub fn second_of_day(self) -> u32 {
        self.0.div_euclid(1000).rem_euclid(86_400) as u32
    }

    /// Day of the week, 0 = Monday … 6 = Sunday (the epoch was a Thursday).
    pub fn day_of_week(self) -> u32 {
        (self.0.div_euclid(86_400_000) + 3).rem_euclid(7) as u32
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s", self.unix_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_fields() {
        // 2013-08-12 00:00:00 UTC was a Monday (Bitbrains fastStorage starts then).
        let t = Timestamp::from_unix_secs(1_376_265_600);
        assert_eq!(t.day_of_week(), 0);
        assert_eq!(t.second_of_day(), 0);
        let later = t.plus_secs(86_400 * 6 + 3_600);
        assert_eq!(later.day_of_week(), 6);
        assert_eq!(later.second_of_day(), 3_600);
        assert_eq!(later.secs_since(t), 86_400.0 * 6.0 + 3_600.0);
        // Before the epoch the fields stay in range.
        let before = Timestamp::from_unix_ms(-1);
        assert_eq!(before.second_of_day(), 86_399);
        assert_eq!(before.day_of_week(), 2);
    }
}
