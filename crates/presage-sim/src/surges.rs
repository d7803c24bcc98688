//! Lead time on known surges: whether a policy raised a workload's limit *before* a surge
//! arrived (the seeds' proactive allocation), measured on traces that know their surges
//! (the synthetic periodic ones record each onset).
//!
//! A surge at onset *s* reaches its plateau *D* (the CPU demand's maximum over the hour
//! after *s*) through a ramp. It was **anticipated** when the limit in force at *s* had
//! been raised within the `LOOKBACK` before *s* to at least `LEVEL` × *D* from something
//! lower — the limit moved up ahead of the demand rather than sitting high all along or
//! chasing the ramp — and **met** when, besides, no step of that hour was throttled (the
//! plateau's noise can still poke through a limit raised in time).
//!
//! A workload's first surge is anticipated by no causal model (nothing has shown the
//! schedule yet), so the tally also counts the **repeats** — every surge after the
//! workload's first — on their own.

use presage_core::Timestamp;
use serde::Serialize;

/// How long before the onset a raise counts as ahead of the surge.
pub const LOOKBACK_MS: i64 = 2 * 3_600_000;
/// The fraction of the plateau the limit must reach before the onset.
pub const LEVEL: f64 = 0.9;
const HOUR_MS: i64 = 3_600_000;

/// A workload's CPU limit and demand at every step, kept only for workloads with surges.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CpuTrail {
    pub(crate) at_ms: Vec<i64>,
    pub(crate) demand: Vec<f64>,
    pub(crate) limit: Vec<f64>,
}

/// The tally over every surge of a run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SurgeTally {
    /// Surges in the trace (with a full hour after the onset).
    pub surges: u64,
    /// Anticipated surges with no throttled step in the hour after the onset.
    pub met: u64,
    /// Surges whose limit was raised to ≥ 90 % of the plateau in the two hours before.
    pub anticipated: u64,
    /// Surges after each workload's first.
    pub repeats: u64,
    /// Anticipated repeats.
    pub repeats_anticipated: u64,
    /// Sum of the lead times of anticipated surges (onset − the raise), in seconds.
    pub lead_s_total: f64,
}

impl SurgeTally {
    /// Adds another tally.
    pub fn merge(&mut self, other: SurgeTally) {
        self.surges += other.surges;
        self.met += other.met;
        self.anticipated += other.anticipated;
        self.repeats += other.repeats;
        self.repeats_anticipated += other.repeats_anticipated;
        self.lead_s_total += other.lead_s_total;
    }

    /// Anticipated surges as a fraction of all (0 when there were none).
    pub fn anticipated_fraction(&self) -> f64 {
        if self.surges == 0 {
            0.0
        } else {
            self.anticipated as f64 / self.surges as f64
        }
    }

    /// Anticipated repeats as a fraction of all repeats (0 when there were none).
    pub fn repeats_fraction(&self) -> f64 {
        if self.repeats == 0 {
            0.0
        } else {
            self.repeats_anticipated as f64 / self.repeats as f64
        }
    }
}

/// Scores each surge of `onsets` against a workload's trail.
pub(crate) fn tally(trail: &CpuTrail, onsets: &[Timestamp]) -> SurgeTally {
    let mut out = SurgeTally::default();
    let end = trail.at_ms.last().copied().unwrap_or(i64::MIN);
    for (k, onset) in onsets.iter().enumerate() {
        let s = onset.unix_ms();
        if s + HOUR_MS > end {
            continue;
        }
        let hour = trail.at_ms.partition_point(|&t| t <= s)
            ..trail.at_ms.partition_point(|&t| t <= s + HOUR_MS);
        let Some(at_onset) = hour.start.checked_sub(1).or(Some(hour.start)) else {
            continue;
        };
        out.surges += 1;
        let repeat = k > 0;
        out.repeats += u64::from(repeat);
        let plateau = trail.demand[hour.clone()]
            .iter()
            .copied()
            .fold(0.0, f64::max);
        let met = hour.clone().all(|i| trail.demand[i] <= trail.limit[i]);
        // Walk back from the onset to where the limit was last below the level.
        let target = LEVEL * plateau;
        if trail.limit[at_onset.min(trail.limit.len() - 1)] < target {
            continue;
        }
        let mut i = at_onset.min(trail.limit.len() - 1);
        while i > 0 && trail.limit[i - 1] >= target {
            i -= 1;
        }
        let raised_at = trail.at_ms[i];
        if i > 0 && s - raised_at <= LOOKBACK_MS {
            out.anticipated += 1;
            out.repeats_anticipated += u64::from(repeat);
            out.met += u64::from(met);
            out.lead_s_total += (s - raised_at) as f64 / 1000.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Steps every 5 minutes from 0; demand 1 until the onset at 3 h, then 4.
    fn trail(limit: impl Fn(i64) -> f64) -> CpuTrail {
        let mut t = CpuTrail::default();
        for k in 0..72 {
            let at = k * 300_000;
            t.at_ms.push(at);
            t.demand.push(if at > 3 * HOUR_MS { 4.0 } else { 1.0 });
            t.limit.push(limit(at));
        }
        t
    }

    #[test]
    fn a_raise_an_hour_ahead_is_anticipated_with_its_lead() {
        let t = trail(|at| if at >= 2 * HOUR_MS { 5.0 } else { 1.5 });
        let r = tally(&t, &[Timestamp::from_unix_ms(3 * HOUR_MS)]);
        assert_eq!((r.surges, r.met, r.anticipated), (1, 1, 1));
        assert_eq!(r.lead_s_total, 3600.0);
    }

    #[test]
    fn always_high_is_not_anticipated_and_chasing_is_neither() {
        let high = tally(&trail(|_| 5.0), &[Timestamp::from_unix_ms(3 * HOUR_MS)]);
        assert_eq!((high.met, high.anticipated), (0, 0));
        let chasing = trail(|at| if at > 3 * HOUR_MS + 300_000 { 5.0 } else { 1.5 });
        let r = tally(&chasing, &[Timestamp::from_unix_ms(3 * HOUR_MS)]);
        assert_eq!((r.surges, r.met, r.anticipated), (1, 0, 0));
    }

    #[test]
    fn a_raise_in_time_that_the_noise_pokes_through_is_anticipated_not_met() {
        let mut t = trail(|at| if at >= 2 * HOUR_MS { 5.0 } else { 1.5 });
        let spike = t.at_ms.partition_point(|&at| at <= 3 * HOUR_MS + 1_800_000);
        t.demand[spike] = 5.2;
        let r = tally(&t, &[Timestamp::from_unix_ms(3 * HOUR_MS)]);
        assert_eq!((r.surges, r.met, r.anticipated), (1, 0, 1));
    }

    #[test]
    fn only_surges_after_the_first_are_repeats() {
        let t = trail(|at| if at >= 2 * HOUR_MS { 5.0 } else { 1.5 });
        let onsets = [
            Timestamp::from_unix_ms(HOUR_MS / 2),
            Timestamp::from_unix_ms(3 * HOUR_MS),
        ];
        let r = tally(&t, &onsets);
        assert_eq!((r.surges, r.repeats, r.repeats_anticipated), (2, 1, 1));
        assert_eq!(r.repeats_fraction(), 1.0);
    }
}
