//! `holt-winters`: online additive Holt-Winters with one detected season, written here.
//!
//! augurs has ETS, but only as a batch fit (`AutoETS` re-estimates everything from a
//! series, ~25 ms for three days of five-minute data) and without a seasonal component
//! (seasonal ETS is not implemented in augurs 0.10; it silently fits a non-seasonal model).
//! A model that runs at every sample of every workload needs an O(1) update, so the
//! recursions are written here; augurs' `PeriodogramDetector` (crate `augurs`, feature
//! `seasons`) supplies the season detection.
//!
//! **State per resource.** A level ℓ, a damped trend `b` (units per second) and, once a
//! period `P` is detected, a seasonal array `s` over `P` cut into up to 288 phase bins,
//! indexed by the absolute time modulo `P` (so irregular sampling and restarts keep the
//! phase). Every rate is time-aware: with `Δt` the seconds since the previous sample,
//! `α = 1 − 2^(−Δt/level_half_life)`, `β = 1 − 2^(−Δt/trend_half_life)`, the trend decays
//! as `e^(−Δt/τ)` and contributes `b·τ·(1 − e^(−h/τ))` over `h` seconds, and a seasonal bin
//! moves by `γ` per period however often it is visited. Error-correction form, with
//! `e = y − (ℓ + b·τ(1 − e^(−Δt/τ)) + s[phase])`:
//! `ℓ ← ℓ + b·τ(1 − e^(−Δt/τ)) + α·e`, `b ← (1 − β)·b·e^(−Δt/τ) + β·Δℓ/Δt`,
//! `s[phase] += γ_obs·(1 − α)·e`. The point forecast at `t + h` is
//! `ℓ + b·τ(1 − e^(−h/τ)) + s[phase(t + h)]`.
//!
//! **Season detection.** The demand is also averaged into 30-minute bins, the last 4 days
//! of them kept. Every 12 h of data (and at most once per 64 samples, so the cost stays
//! O(1) amortised: ~25 µs per detection), the periodogram's strongest peaks between 2 h
//! and 2 days are taken as candidates. The periodogram only resolves periods `N/k` of its
//! FFT length `N` (a daily period of 48 bins reads as 43 or 64), so each candidate is
//! refined to the lag of highest autocorrelation within −20 %/+25 % of it, and snapped to
//! exactly one day or one week when within 10 %. The best lag is adopted if its
//! autocorrelation is at least 0.3; a new period re-initialises `s` from the binned
//! history (mean deviation per phase) and moves the level to stay deseasonalised. Two
//! failed detections in a row drop the season.
//!
//! **Quantiles.** The spread comes from the model's own errors: for a ladder of horizons —
//! the next sample, 15 min, 1 h, 4 h, 1 day — the *signed* residual `actual − forecast`
//! made that long before is added to a [`ResidualDistribution`] (two decaying histograms,
//! of positive and of negative residuals, half-life 2 days). Signed, because demand errors
//! are skewed: bursts overshoot far more than lulls undershoot. The h-step forecasts are
//! rebuilt from snapshots of `(ℓ, b)` kept every `h/8`, with the current season (an
//! approximation: the season moves slowly). A forecast at horizon `h` reads the shortest
//! ladder horizon of at least `h` that has seen ten residuals (else a shorter one):
//! quantile `q` = point + the residuals' `q`-quantile.

use std::borrow::Cow;
use std::collections::VecDeque;

use augurs::seasons::PeriodogramDetector;
use presage_core::{
    Forecast, QUANTILE_COUNT, QUANTILE_LEVELS, Quantiles, Resource, ResourceMap, Sample, Timestamp,
};
use serde::{Deserialize, Serialize};

use super::histogram_model::{assemble, ordered, resource_layout, sample_weight};
use crate::burst::{BurstClassifiers, BurstConfig};
use crate::demand::observed_demand;
use crate::{
    DecayingHistogram, ExponentialBuckets, ForecastError, Forecaster, ForecasterFactory,
    ModelState, StateView,
};

pub(crate) const NAME: &str = "holt-winters";
/// Version 2 packs the season, the detection history and the histograms (`crate::codec`);
/// version 1 wrote them as JSON arrays and objects and is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;
/// Residual horizons: the next sample, then [`HoltWintersConfig::residual_horizons_s`].
const LADDER: usize = 5;
/// Residuals a ladder horizon needs before a forecast reads it.
const MIN_RESIDUALS: u64 = 10;
const DAY_S: f64 = 86_400.0;

/// Signed forecast errors (`actual − forecast`) as a distribution: a
/// [`DecayingHistogram`] of the positive ones and one of the magnitudes of the negative
/// ones, on the resource's layout. A quantile walks the lower side for levels below the
/// share of negative errors and the upper side above it; errors within the layout's first
/// bucket read as 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualDistribution {
    over: DecayingHistogram,
    under: DecayingHistogram,
    count: u64,
    last_at: Timestamp,
}

impl ResidualDistribution {
    /// An empty distribution of `resource`'s errors, decaying with `half_life_s`.
    pub fn new(resource: Resource, half_life_s: f64, growth: f64) -> Result<Self, ForecastError> {
        Self::with_layout(resource_layout(resource, growth)?, half_life_s)
    }

    /// An empty distribution of errors on `layout` (e.g. of unit-free, standardised ones).
    pub fn with_layout(
        layout: ExponentialBuckets,
        half_life_s: f64,
    ) -> Result<Self, ForecastError> {
        Ok(ResidualDistribution {
            over: DecayingHistogram::new(layout, half_life_s)?,
            under: DecayingHistogram::new(layout, half_life_s)?,
            count: 0,
            last_at: Timestamp::default(),
        })
    }

    /// Adds one error `actual − forecast`, with `weight`, observed at `at`.
    pub fn add(&mut self, residual: f64, weight: f64, at: Timestamp) {
        if !residual.is_finite() {
            return;
        }
        if residual >= 0.0 {
            self.over.add(residual, weight, at);
        } else {
            self.under.add(-residual, weight, at);
        }
        self.count = self.count.saturating_add(1);
        self.last_at = self.last_at.max(at);
    }

    /// Errors added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The error at each of [`QUANTILE_LEVELS`] (two histogram walks).
    pub fn offsets(&self) -> [f64; QUANTILE_COUNT] {
        let w_under = self.under.total_weight(self.last_at);
        let w_over = self.over.total_weight(self.last_at);
        let total = w_under + w_over;
        let mut out = [0.0; QUANTILE_COUNT];
        if total.is_nan() || total <= 0.0 {
            return out;
        }
        // Levels on each side, made increasing so each side is one shared walk.
        let mut under_levels = [0.0; QUANTILE_COUNT];
        let mut over_levels = [0.0; QUANTILE_COUNT];
        for (i, p) in QUANTILE_LEVELS.into_iter().enumerate() {
            let target = p * total;
            if target < w_under {
                under_levels[QUANTILE_COUNT - 1 - i] = 1.0 - target / w_under;
            } else if w_over > 0.0 {
                over_levels[i] = ((target - w_under) / w_over).clamp(0.0, 1.0);
            }
        }
        // An error within the layout's first bucket is no error at its resolution: read
        // it as 0, not as the bucket's end (0.001 core would swamp a near-idle workload).
        let resolution = self.over.layout().end(0);
        let read = |v: f64| if v <= resolution { 0.0 } else { v };
        let under = self.under.percentiles(under_levels).map(read);
        let over = self.over.percentiles(over_levels).map(read);
        for (i, p) in QUANTILE_LEVELS.into_iter().enumerate() {
            out[i] = if p * total < w_under {
                -under[QUANTILE_COUNT - 1 - i]
            } else if w_over > 0.0 {
                over[i]
            } else {
                0.0
            };
        }
        out
    }

    /// The distribution of `point + error`, clipped at zero.
    pub fn around(&self, point: f64) -> Option<Quantiles> {
        ordered(self.offsets().map(|o| point + o))
    }
}

/// Settings of the [`HoltWinters`] model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoltWintersConfig {
    /// Seconds after which a level error has half its weight left (150: α = 0.75 at
    /// five-minute steps; demand is persistent, so the level follows it closely — chosen on
    /// the dev traces, where 60–150 s beat 250–600 s on CPU and tied on memory).
    pub level_half_life_s: f64,
    /// The same for the trend (6 h).
    pub trend_half_life_s: f64,
    /// Time constant of the trend's damping, in seconds (1 h): no forecast extrapolates
    /// more than `b·τ`.
    pub trend_damping_s: f64,
    /// Periods after which a seasonal error has half its weight left (3).
    pub season_half_life_periods: f64,
    /// Seconds of data between season detections (12 h).
    pub detect_every_s: f64,
    /// Samples between season detections, at least (64).
    pub detect_min_samples: u32,
    /// History the detection looks at, in seconds (4 days).
    pub detect_window_s: f64,
    /// Width of the detection history's bins, in seconds (1800).
    pub detect_bin_s: f64,
    /// Shortest period considered, in seconds (2 h).
    pub min_period_s: f64,
    /// Longest period considered, in seconds (2 days; at most half the history).
    pub max_period_s: f64,
    /// Autocorrelation a period needs at its lag to be adopted (0.3).
    pub min_autocorrelation: f64,
    /// Most phase bins in the seasonal array (288).
    pub max_season_bins: usize,
    /// Half-life of the residual distributions, in seconds (2 days).
    pub residual_half_life_s: f64,
    /// Half-life of the recent error scale, in seconds (1 h).
    pub volatility_half_life_s: f64,
    /// How far the residuals' unit follows the recent error scale rather than the long-run
    /// one (half-life `residual_half_life_s`): the unit is `long · (recent/long)^κ`; 0 keeps
    /// the spread fixed, 1 makes it fully volatility-scaled (0.5).
    pub volatility_weight: f64,
    /// Horizons, beyond the next sample, whose residuals are tracked (15 min, 1 h, 4 h,
    /// 1 day).
    pub residual_horizons_s: [u32; LADDER - 1],
    /// Bucket growth of the residual layouts (0.05).
    pub growth: f64,
    /// Samples of a resource before it is forecast (6).
    pub min_samples: u32,
    /// The burst classifier's settings.
    pub burst: BurstConfig,
}

impl Default for HoltWintersConfig {
    fn default() -> Self {
        HoltWintersConfig {
            level_half_life_s: 150.0,
            trend_half_life_s: 6.0 * 3600.0,
            trend_damping_s: 3600.0,
            season_half_life_periods: 3.0,
            detect_every_s: 12.0 * 3600.0,
            detect_min_samples: 64,
            detect_window_s: 4.0 * DAY_S,
            detect_bin_s: 1800.0,
            min_period_s: 2.0 * 3600.0,
            max_period_s: 2.0 * DAY_S,
            min_autocorrelation: 0.3,
            max_season_bins: 288,
            residual_half_life_s: 2.0 * DAY_S,
            volatility_half_life_s: 3600.0,
            volatility_weight: 0.5,
            residual_horizons_s: [900, 3600, 4 * 3600, 86_400],
            growth: 0.05,
            min_samples: 6,
            burst: BurstConfig::default(),
        }
    }
}

impl HoltWintersConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ForecastError> {
        self.burst.validate()?;
        let positive = [
            ("level_half_life_s", self.level_half_life_s),
            ("trend_half_life_s", self.trend_half_life_s),
            ("trend_damping_s", self.trend_damping_s),
            ("season_half_life_periods", self.season_half_life_periods),
            ("detect_every_s", self.detect_every_s),
            ("volatility_half_life_s", self.volatility_half_life_s),
            ("detect_bin_s", self.detect_bin_s),
            ("min_period_s", self.min_period_s),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(field, v, "must be a positive number"));
            }
        }
        if !(self.max_period_s.is_finite() && self.max_period_s > self.min_period_s) {
            return Err(invalid(
                "max_period_s",
                self.max_period_s,
                "must exceed min_period_s",
            ));
        }
        if !(self.detect_window_s.is_finite() && self.detect_window_s >= 2.0 * self.detect_bin_s)
            || self.detect_window_s / self.detect_bin_s > 100_000.0
        {
            return Err(invalid(
                "detect_window_s",
                self.detect_window_s,
                "must hold between 2 and 100000 detection bins",
            ));
        }
        if !(0.0..=1.0).contains(&self.volatility_weight) {
            return Err(invalid(
                "volatility_weight",
                self.volatility_weight,
                "must be in [0, 1]",
            ));
        }
        if !(4..=100_000).contains(&self.max_season_bins) {
            return Err(invalid(
                "max_season_bins",
                self.max_season_bins as f64,
                "must be 4 to 100000",
            ));
        }
        if self.residual_horizons_s.windows(2).any(|w| w[0] >= w[1])
            || self.residual_horizons_s[0] == 0
        {
            return Err(ForecastError::InvalidSetting {
                field: "residual_horizons_s",
                value: format!("{:?}", self.residual_horizons_s),
                reason: "must be positive and increasing",
            });
        }
        ResidualDistribution::with_layout(
            standardised_layout(self.growth)?,
            self.residual_half_life_s,
        )?;
        Ok(())
    }
}

/// The layout of standardised errors (error / recent mean absolute error): 0.01 to 1000.
fn standardised_layout(growth: f64) -> Result<ExponentialBuckets, ForecastError> {
    ExponentialBuckets::new(0.01, 1000.0, growth)
}

fn invalid(field: &'static str, value: f64, reason: &'static str) -> ForecastError {
    ForecastError::InvalidSetting {
        field,
        value: value.to_string(),
        reason,
    }
}

/// The online Holt-Winters model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoltWinters {
    config: HoltWintersConfig,
}

impl HoltWinters {
    /// The family with `config`, once validated.
    pub fn new(config: HoltWintersConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(HoltWinters { config })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Season {
    period_ms: i64,
    /// Packed, as are the bins: up to `max_season_bins` (288) values.
    #[serde(with = "crate::codec::f64s")]
    values: Vec<f64>,
}

impl Season {
    fn index(&self, t_ms: i64) -> usize {
        let phase = t_ms.rem_euclid(self.period_ms) as i128;
        (phase * self.values.len() as i128 / i128::from(self.period_ms)) as usize
    }

    fn at(&self, t_ms: i64) -> f64 {
        self.values.get(self.index(t_ms)).copied().unwrap_or(0.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    at_ms: i64,
    level: f64,
    trend: f64,
}

/// The binned history season detection reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Bins {
    /// Closed bins' means, oldest first; the newest closed bin is `open − 1`.
    #[serde(with = "crate::codec::f64s")]
    values: VecDeque<f64>,
    open: Option<i64>,
    sum: f64,
    count: u32,
}

impl Bins {
    fn push(&mut self, bin: i64, y: f64, capacity: usize) {
        match self.open {
            Some(open) if bin == open => {
                self.sum += y;
                self.count += 1;
                return;
            }
            Some(open) if bin > open => {
                let mean = self.sum / f64::from(self.count.max(1));
                // Gaps are filled with the last mean; a gap longer than the history
                // leaves nothing worth keeping.
                let gap = (bin - open).min(capacity as i64 + 1) as usize;
                for _ in 0..gap {
                    self.values.push_back(mean);
                }
                while self.values.len() > capacity {
                    self.values.pop_front();
                }
            }
            Some(_) => return,
            None => {}
        }
        self.open = Some(bin);
        self.sum = y;
        self.count = 1;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Track {
    level: f64,
    trend: f64,
    last_ms: i64,
    samples: u32,
    typical_dt_s: f64,
    season: Option<Season>,
    failed_detections: u32,
    bins: Bins,
    last_detect_ms: Option<i64>,
    since_detect: u32,
    /// Recent and long-run mean absolute one-step error, the residuals' unit.
    scale: f64,
    scale_long: f64,
    /// The least scale: the resource layout's first bucket.
    scale_floor: f64,
    residuals: Vec<ResidualDistribution>,
    snapshots: Vec<VecDeque<Snapshot>>,
}

mod track;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HwState {
    config: HoltWintersConfig,
    tracks: ResourceMap<Option<Track>>,
    bursts: BurstClassifiers,
}

impl Forecaster for HwState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let weight = sample_weight(sample);
        for (resource, _) in sample.usage().iter() {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let slot = self.tracks.get_mut(resource);
            if slot.is_none() {
                *slot = Track::new(&self.config, resource, sample).ok();
            }
            if let Some(track) = slot {
                track.observe(&self.config, sample.at(), demand, weight);
            }
        }
        self.bursts.observe(sample);
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        assemble(NAME, now, horizons_s, &self.bursts, |h| {
            self.tracks.map(|_, track| {
                let track = track.as_ref()?;
                track.forecast(&self.config, now.plus_secs(i64::from(h)))
            })
        })
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for HoltWinters {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(HwState {
            config: self.config,
            tracks: ResourceMap::none(),
            bursts: BurstClassifiers::new(self.config.burst),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let restored: HwState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        for r in Resource::ALL {
            if let Some(t) = restored.tracks.get(r) {
                t.check(r)?;
            }
        }
        // The learned state carries over; the running settings govern from here on.
        Ok(Box::new(HwState {
            config: self.config,
            ..restored
        }))
    }
}

/// The merge key ([`crate::merge_states`] chooses the Holt-Winters state with more of
/// them): the samples behind each resource's recursions, summed. Level, trend and season
/// are one host's smoothing; averaging them would blur two phases into neither.
pub(crate) fn observations(state: &ModelState) -> Result<u64, ForecastError> {
    let saved: HwState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    Ok(saved
        .tracks
        .present()
        .map(|(_, t)| u64::from(t.samples))
        .sum())
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<HwState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a Holt-Winters state: the residual distributions' weights
/// and counts and each resource's sample count are scaled (a residual count kept at the
/// ten a ladder rung needs, a sample count at `min_samples`, where they were), and the
/// burst evidence with them; level, trend, season, error scales and the detection
/// history are kept.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{scaled_count, scaled_histogram};
    let mut saved: HwState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    let keep = saved.config.min_samples;
    for resource in Resource::ALL {
        let Some(track) = saved.tracks.get_mut(resource) else {
            continue;
        };
        track.samples = scaled_count(track.samples, factor, keep);
        for r in &mut track.residuals {
            r.over = scaled_histogram(&r.over, factor)?;
            r.under = scaled_histogram(&r.under, factor)?;
            r.count = scaled_count(r.count, factor, MIN_RESIDUALS);
        }
    }
    saved.bursts = saved.bursts.decayed(factor)?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests;
