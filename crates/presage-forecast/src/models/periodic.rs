//! `periodic`: demand that repeats with a period nobody configured — a batch every two
//! minutes, a cron job every quarter hour. The model finds the period in the recent
//! history by autocorrelation and forecasts each horizon from the same phase of the past
//! cycles.
//!
//! The seasonal members of the trace ensemble (Holt-Winters, the segmented profile) know
//! only the calendar's periods (the day, the week); on a live host sampled every second,
//! workloads repeat on periods of seconds to minutes, which this model learns instead.
//!
//! **Detection** (every `redetect_every` samples): the history (the last `history_s`
//! seconds) is put on a coarse grid of at most `grid_points` steps, de-meaned, and the
//! normalised autocorrelation is computed for every lag up to half the history. The
//! smallest lag whose autocorrelation is a local maximum within `0.05` of the best one,
//! and at least `min_acf`, is the period — the smallest, because a period's multiples
//! correlate as well. It is then refined at the sampling resolution around that lag.
//!
//! **Forecast** at horizon `h`: for each of the last `cycles` cycles `k`, the highest
//! demand in the window that the next `h` seconds occupied `k` periods ago (widened by a
//! step either side for phase jitter). A limit must hold for the whole window until the
//! next decision, so the peak within the window is the figure that matters. The quantiles
//! are a normal fitted to those per-cycle peaks, its spread floored at 2 % of their mean,
//! and the maximum never below the highest of them. Without a period (or before two
//! cycles are seen) the model says nothing, and the ensemble leans on its other members.

use std::borrow::Cow;
use std::collections::VecDeque;

use presage_core::{Forecast, Quantiles, Resource, ResourceMap, Sample, Timestamp};
use serde::{Deserialize, Serialize};

use crate::demand::observed_demand;
use crate::models::histogram_model::forecast_from;
use crate::{
    ForecastError, Forecaster, ForecasterFactory, ModelState, StateView, normal_quantiles,
};

pub(crate) const NAME: &str = "periodic";
/// Version 2 packs the histories (`crate::codec`); version 1 wrote them as JSON arrays
/// and is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;
const RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// Settings of the [`Periodic`] model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeriodicConfig {
    /// Seconds of history kept and searched (30 min).
    pub history_s: f64,
    /// Shortest period considered, seconds.
    pub min_period_s: f64,
    /// Coarse grid size for detection (bounds its cost).
    pub grid_points: usize,
    /// Samples between detections.
    pub redetect_every: u32,
    /// Autocorrelation a period needs.
    pub min_acf: f64,
    /// Past cycles a forecast reads.
    pub cycles: usize,
}

impl Default for PeriodicConfig {
    fn default() -> Self {
        PeriodicConfig {
            history_s: 1800.0,
            min_period_s: 10.0,
            grid_points: 360,
            redetect_every: 30,
            min_acf: 0.5,
            cycles: 6,
        }
    }
}

impl PeriodicConfig {
    fn validate(&self) -> Result<(), ForecastError> {
        let bad = |field, value: String, reason| {
            Err(ForecastError::InvalidSetting {
                field,
                value,
                reason,
            })
        };
        if !(self.history_s.is_finite() && self.history_s > 0.0) {
            return bad("history_s", self.history_s.to_string(), "must be positive");
        }
        if !(self.min_period_s.is_finite()
            && self.min_period_s > 0.0
            && self.min_period_s * 2.0 <= self.history_s)
        {
            return bad(
                "min_period_s",
                self.min_period_s.to_string(),
                "must be positive and fit twice in the history",
            );
        }
        if self.grid_points < 16 || self.redetect_every == 0 || self.cycles == 0 {
            return bad(
                "grid_points/redetect_every/cycles",
                format!(
                    "{}/{}/{}",
                    self.grid_points, self.redetect_every, self.cycles
                ),
                "need at least 16 grid points, 1 sample between detections and 1 cycle",
            );
        }
        if !(0.0..1.0).contains(&self.min_acf) {
            return bad("min_acf", self.min_acf.to_string(), "must be in [0, 1)");
        }
        Ok(())
    }
}

/// The factory.
#[derive(Debug, Clone)]
pub struct Periodic {
    config: PeriodicConfig,
}

impl Periodic {
    /// The model with `config`.
    pub fn new(config: PeriodicConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(Periodic { config })
    }
}

/// One resource's recent demand.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Series {
    /// Packed: the history is most of a saved profile (half an hour of one-second points).
    #[serde(with = "crate::codec::i64s")]
    at_ms: VecDeque<i64>,
    #[serde(with = "crate::codec::f64s")]
    value: VecDeque<f64>,
    period_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeriodicState {
    config: PeriodicConfig,
    series: ResourceMap<Option<Series>>,
    since_detect: u32,
}

impl Series {
    fn push(&mut self, at_ms: i64, v: f64, keep_ms: i64) {
        self.at_ms.push_back(at_ms);
        self.value.push_back(v);
        while self.at_ms.front().is_some_and(|&t| at_ms - t > keep_ms) {
            self.at_ms.pop_front();
            self.value.pop_front();
        }
    }

    fn step_ms(&self) -> i64 {
        let n = self.at_ms.len();
        if n < 2 {
            return 1000;
        }
        ((self.at_ms[n - 1] - self.at_ms[0]) / (n as i64 - 1)).max(1)
    }

    /// The series on a uniform grid of `step` ms (last value carried forward).
    fn resampled(&self, step: i64) -> Vec<f64> {
        let (Some(&first), Some(&last)) = (self.at_ms.front(), self.at_ms.back()) else {
            return Vec::new();
        };
        let n = usize::try_from((last - first) / step + 1).unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        let mut j = 0;
        for i in 0..n {
            let t = first + i as i64 * step;
            while j + 1 < self.at_ms.len() && self.at_ms[j + 1] <= t {
                j += 1;
            }
            out.push(self.value[j]);
        }
        out
    }

    fn detect(&mut self, config: &PeriodicConfig) {
        self.period_ms = None;
        let span = match (self.at_ms.front(), self.at_ms.back()) {
            (Some(a), Some(b)) => b - a,
            _ => return,
        };
        let fine = self.step_ms();
        let coarse = fine.max(span / config.grid_points as i64).max(1);
        let min_lag = ((config.min_period_s * 1000.0) as i64 / coarse).max(2) as usize;
        let x = demeaned(&self.resampled(coarse));
        let Some(lag) = best_lag(&x, min_lag, x.len() / 2, config.min_acf) else {
            return;
        };
        // Refine at the sampling resolution: the coarse step can be several seconds.
        let xf = demeaned(&self.resampled(fine));
        let centre = lag as i64 * coarse / fine;
        let reach = (coarse / fine).max(1);
        let refined = (centre - reach..=centre + reach)
            .filter(|&l| l >= 1 && (l as usize) < xf.len())
            .max_by(|&a, &b| acf(&xf, a as usize).total_cmp(&acf(&xf, b as usize)));
        self.period_ms = refined.map(|l| l * fine);
    }

    /// Highest demand within `[from, to]` ms, if the history covers it.
    fn peak_between(&self, from: i64, to: i64) -> Option<f64> {
        let start = self.at_ms.partition_point(|&t| t < from);
        let end = self.at_ms.partition_point(|&t| t <= to);
        (start < end).then(|| {
            self.value
                .range(start..end)
                .copied()
                .fold(f64::MIN, f64::max)
        })
    }

    fn quantiles(&self, now_ms: i64, horizon_s: u32, cycles: usize) -> Option<Quantiles> {
        let period = self.period_ms?;
        let first = *self.at_ms.front()?;
        let jitter = self.step_ms();
        let h = i64::from(horizon_s) * 1000;
        let peaks: Vec<f64> = (1..=cycles as i64)
            .map(|k| {
                (
                    now_ms - k * period - jitter,
                    now_ms + h - k * period + jitter,
                )
            })
            .take_while(|&(from, _)| from >= first)
            .filter_map(|(from, to)| self.peak_between(from, to))
            .collect();
        if peaks.len() < 2 {
            return None;
        }
        let n = peaks.len() as f64;
        let mean = peaks.iter().sum::<f64>() / n;
        let sd = (peaks.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let highest = peaks.iter().copied().fold(f64::MIN, f64::max);
        let q = normal_quantiles(mean, sd.max(0.02 * mean.abs()))?;
        let mut values = q.values();
        if let Some(max) = values.last_mut() {
            *max = max.max(highest);
        }
        Quantiles::from_fn({
            let mut it = values.into_iter();
            move |_| it.next().unwrap_or(highest)
        })
        .ok()
    }
}

fn demeaned(x: &[f64]) -> Vec<f64> {
    let mean = x.iter().sum::<f64>() / x.len().max(1) as f64;
    x.iter().map(|v| v - mean).collect()
}

/// Normalised autocorrelation of `x` at `lag` over the overlapping part.
fn acf(x: &[f64], lag: usize) -> f64 {
    if lag >= x.len() {
        return 0.0;
    }
    let (a, b) = (&x[..x.len() - lag], &x[lag..]);
    let dot: f64 = a.iter().zip(b).map(|(p, q)| p * q).sum();
    let na: f64 = a.iter().map(|p| p * p).sum();
    let nb: f64 = b.iter().map(|q| q * q).sum();
    if na <= 0.0 || nb <= 0.0 {
        0.0
    } else {
        dot / (na * nb).sqrt()
    }
}

fn best_lag(x: &[f64], min_lag: usize, max_lag: usize, min_acf: f64) -> Option<usize> {
    if max_lag < min_lag + 2 {
        return None;
    }
    let r: Vec<f64> = (0..=max_lag + 1).map(|l| acf(x, l)).collect();
    let peaks: Vec<usize> = (min_lag..=max_lag)
        .filter(|&l| r[l] >= r[l - 1] && r[l] >= r[l + 1] && r[l] >= min_acf)
        .collect();
    let best = peaks.iter().map(|&l| r[l]).fold(f64::MIN, f64::max);
    peaks.into_iter().find(|&l| r[l] >= best - 0.05)
}

impl Forecaster for PeriodicState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let keep_ms = (self.config.history_s * 1000.0) as i64;
        let at = sample.at().unix_ms();
        for r in RESOURCES {
            if let Some(d) = observed_demand(sample, r) {
                self.series
                    .get_mut(r)
                    .get_or_insert_with(Series::default)
                    .push(at, d, keep_ms);
            }
        }
        self.since_detect += 1;
        if self.since_detect >= self.config.redetect_every {
            self.since_detect = 0;
            let config = self.config;
            for r in RESOURCES {
                if let Some(s) = self.series.get_mut(r).as_mut() {
                    s.detect(&config);
                }
            }
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        forecast_from(NAME, now, horizons_s, |h| {
            ResourceMap::from_fn(|r| {
                self.series
                    .get(r)
                    .as_ref()?
                    .quantiles(now.unix_ms(), h, self.config.cycles)
            })
        })
    }

    fn quantiles(&self, now: Timestamp, horizon_s: u32, resource: Resource) -> Option<Quantiles> {
        self.series
            .get(resource)
            .as_ref()?
            .quantiles(now.unix_ms(), horizon_s, self.config.cycles)
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for Periodic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(PeriodicState {
            config: self.config,
            series: ResourceMap::none(),
            since_detect: 0,
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let restored: PeriodicState =
            state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        Ok(Box::new(PeriodicState {
            config: self.config,
            ..restored
        }))
    }
}

/// The merge key ([`crate::merge_states`] chooses the periodic state with more of them):
/// the points held in the histories, summed over resources. The history and the period
/// found in it are one host's stream; they cannot be added.
pub(crate) fn observations(state: &ModelState) -> Result<u64, ForecastError> {
    let saved: PeriodicState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    Ok(saved
        .series
        .present()
        .map(|(_, s)| s.at_ms.len() as u64)
        .sum())
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<PeriodicState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a periodic state: the state is only a raw history (and the
/// period detected in it), unweighted and gone within `history_s` of new data, so there
/// is no evidence to scale and it is returned as it was (decoded and written anew, so in
/// this build's layout).
pub(crate) fn decay(state: &ModelState, _factor: f64) -> Result<ModelState, ForecastError> {
    let saved: PeriodicState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    /// A 120-s cycle: 0.1 cores for 84 s, 0.5 cores for 36 s.
    fn demand(t: i64) -> f64 {
        if t.rem_euclid(120) >= 84 { 0.5 } else { 0.1 }
    }

    fn fed(seconds: i64) -> Box<dyn Forecaster> {
        let mut f = Periodic::new(PeriodicConfig::default()).unwrap().create();
        for t in 1..=seconds {
            let usage = Usage::empty().with(Resource::Cpu, demand(t)).unwrap();
            let s = Sample::new(
                Timestamp::from_unix_secs(t),
                WorkloadId::new("w").unwrap(),
                1000,
                usage,
            )
            .unwrap();
            f.observe(&s);
        }
        f
    }

    #[test]
    fn finds_the_period_and_sees_the_next_peak_coming() {
        let f = fed(600);
        // At t = 605 (phase 5) the peak starts in 79 s: a 10-s horizon sees the low
        // phase, a 90-s one the peak.
        let now = Timestamp::from_unix_secs(605);
        let low = f.quantiles(now, 10, Resource::Cpu).unwrap();
        assert!((low.p50() - 0.1).abs() < 0.02, "{low:?}");
        let high = f.quantiles(now, 90, Resource::Cpu).unwrap();
        assert!((high.p50() - 0.5).abs() < 0.02, "{high:?}");
        // Just before a rise (phase 80), the 10-s window covers it.
        let before = Timestamp::from_unix_secs(560);
        let q = f.quantiles(before, 10, Resource::Cpu).unwrap();
        assert!(q.p50() > 0.45, "{q:?}");
    }

    #[test]
    fn says_nothing_without_a_period() {
        let f = fed(100);
        assert!(
            f.quantiles(Timestamp::from_unix_secs(100), 10, Resource::Cpu)
                .is_none()
        );
        let mut flat = Periodic::new(PeriodicConfig::default()).unwrap().create();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for t in 1..=600 {
            // xorshift noise: no period at all.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let usage = Usage::empty()
                .with(Resource::Cpu, 0.3 + 0.1 * (x % 1000) as f64 / 1000.0)
                .unwrap();
            flat.observe(
                &Sample::new(
                    Timestamp::from_unix_secs(t),
                    WorkloadId::new("w").unwrap(),
                    1000,
                    usage,
                )
                .unwrap(),
            );
        }
        assert!(
            flat.quantiles(Timestamp::from_unix_secs(600), 10, Resource::Cpu)
                .is_none()
        );
    }

    #[test]
    fn save_and_restore_keep_the_period() {
        let f = fed(600);
        let state = f.save().unwrap();
        let g = Periodic::new(PeriodicConfig::default())
            .unwrap()
            .restore(&state)
            .unwrap();
        let now = Timestamp::from_unix_secs(600);
        assert_eq!(
            f.quantiles(now, 90, Resource::Cpu),
            g.quantiles(now, 90, Resource::Cpu)
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let c = PeriodicConfig {
            min_period_s: 1000.0,
            ..PeriodicConfig::default()
        };
        assert!(Periodic::new(c).is_err());
    }
}
