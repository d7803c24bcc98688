//! The residual model: the recent peak plus what the workload has historically done on
//! top of it.
//!
//! For each resource it keeps the maximum of the demand seen over the last `window_s`
//! (the *base*), and learns the distribution of the residual *r = max(demand over the next
//! k samples) − base* in decaying histograms, one per horizon of k samples. Its forecast
//! at a horizon is `base + quantiles of r`: calibrated per workload by construction (it
//! is a split-conformal predictor around a peak-hold point forecast), in absolute units,
//! and O(k) per sample. On the dev traces the level held over the last minutes carries
//! most of the signal at 5-minute resolution (docs/EVALUATION.md); what differs between
//! workloads is how far above it they jump, and that is exactly what the residual
//! histograms learn.
//!
//! Until `min_residuals` residuals are known the forecast is a crude prior: the base
//! with a spread up to 2× (a new workload is given room, not starved).

use std::borrow::Cow;
use std::collections::VecDeque;

use presage_core::{
    Forecast, HorizonForecast, QUANTILE_LEVELS, Quantiles, Resource, ResourceMap, Sample, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::demand::observed_demand;
use crate::{
    DecayingHistogram, ExponentialBuckets, ForecastError, Forecaster, ForecasterFactory,
    ModelState, StateView,
};

/// The family name every residual window saves under (its label names the window).
pub(crate) const NAME: &str = "residual";
/// Version 2 packs the histograms, the cached quantiles and the recent and base windows
/// (`crate::codec`); version 1 wrote them as JSON objects and arrays and is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;

/// Settings of the [`Residual`] model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResidualConfig {
    /// Seconds of history the base (the recent peak) is the maximum over.
    pub window_s: u32,
    /// Horizons learned, in samples ahead (increasing). A forecast for a horizon in
    /// seconds uses the smallest of these covering it at the workload's sampling interval.
    pub horizon_steps: Vec<u32>,
    /// Half-life of the residual histograms, in seconds.
    pub half_life_s: f64,
    /// Residuals needed before the learned distribution replaces the prior.
    pub min_residuals: u32,
    /// The resources modelled (the others are not tracked at all).
    pub resources: Vec<Resource>,
}

impl Default for ResidualConfig {
    fn default() -> Self {
        ResidualConfig {
            window_s: 900,
            horizon_steps: vec![1, 3, 12],
            half_life_s: 7.0 * 86_400.0,
            min_residuals: 24,
            resources: Resource::ALL.to_vec(),
        }
    }
}

impl ResidualConfig {
    fn validate(&self) -> Result<(), ForecastError> {
        let bad = |field, value: String, reason| ForecastError::InvalidSetting {
            field,
            value,
            reason,
        };
        if self.window_s == 0 {
            return Err(bad("window_s", "0".into(), "must be at least one second"));
        }
        if self.horizon_steps.is_empty()
            || self.horizon_steps[0] == 0
            || self.horizon_steps.windows(2).any(|w| w[0] >= w[1])
            || self.horizon_steps.iter().any(|&k| k > 1024)
        {
            return Err(bad(
                "horizon_steps",
                format!("{:?}", self.horizon_steps),
                "must be positive, increasing and at most 1024",
            ));
        }
        if !(self.half_life_s.is_finite() && self.half_life_s > 0.0) {
            return Err(bad(
                "half_life_s",
                self.half_life_s.to_string(),
                "must be a positive number of seconds",
            ));
        }
        Ok(())
    }

    /// The model's name, e.g. `residual-15m`.
    fn label(&self) -> &'static str {
        // Names are `&'static str` (they ride on every forecast); the windows the ensemble
        // uses have their own, any other falls back to the family name.
        match self.window_s {
            300 => "residual-5m",
            900 => "residual-15m",
            3_600 => "residual-1h",
            14_400 => "residual-4h",
            86_400 => "residual-1d",
            _ => "residual",
        }
    }
}

/// The residual model family.
#[derive(Debug, Clone, PartialEq)]
pub struct Residual {
    config: ResidualConfig,
}

impl Residual {
    /// The family with `config`, once validated.
    pub fn new(config: ResidualConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(Residual { config })
    }

    /// The family with the default settings, a base window of `window_s` seconds, for
    /// `resources`.
    pub fn with_window(window_s: u32, resources: &[Resource]) -> Result<Self, ForecastError> {
        Residual::new(ResidualConfig {
            window_s,
            resources: resources.to_vec(),
            ..ResidualConfig::default()
        })
    }
}

/// Bucket layouts fine enough for the smallest workloads' residuals in each unit.
fn layout(resource: Resource) -> ExponentialBuckets {
    let (first, max) = match resource {
        Resource::Cpu => (0.001, 4096.0),
        // 1 MiB to 16 TiB for memory; 1 KiB/s up to 1 TB/s for I/O and network.
        Resource::Memory => (1_048_576.0, 1.8e13),
        _ => (1024.0, 1e12),
    };
    // The arguments are constants that validate; fall back to VPA's layout regardless.
    ExponentialBuckets::new(first, max, 0.05).unwrap_or(ExponentialBuckets::vpa_cpu())
}

/// Residuals of one horizon: positive ones and the magnitudes of negative ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Signed {
    above: DecayingHistogram,
    below: DecayingHistogram,
    count: u32,
    /// The residual at each level, refreshed every [`REFRESH_EVERY`] residuals once the
    /// histograms are established: one more sample barely moves a quantile of hundreds,
    /// and walking both histograms at every forecast was most of the model's cost.
    /// Packed, as is `recent`: there are a few dozen of these in an ensemble's state.
    #[serde(with = "crate::codec::f64_array")]
    cached: [f64; QUANTILE_LEVELS.len()],
    stale: u32,
}

/// Residuals between refreshes of the cached quantiles (every residual while fewer than
/// `FRESH_UNTIL` are known).
const REFRESH_EVERY: u32 = 8;
const FRESH_UNTIL: u32 = 256;

impl Signed {
    fn new(resource: Resource, half_life_s: f64) -> Result<Self, ForecastError> {
        Ok(Signed {
            above: DecayingHistogram::new(layout(resource), half_life_s)?,
            below: DecayingHistogram::new(layout(resource), half_life_s)?,
            count: 0,
            cached: [0.0; QUANTILE_LEVELS.len()],
            stale: 0,
        })
    }

    fn add(&mut self, residual: f64, at: Timestamp) {
        if residual >= 0.0 {
            self.above.add(residual, 1.0, at);
        } else {
            self.below.add(-residual, 1.0, at);
        }
        self.count = self.count.saturating_add(1);
        self.stale += 1;
        if self.count < FRESH_UNTIL || self.stale >= REFRESH_EVERY {
            self.cached = self.compute(at);
            self.stale = 0;
        }
    }

    /// The residual at each quantile level (as of the last refresh).
    fn quantiles(&self) -> &[f64; QUANTILE_LEVELS.len()] {
        &self.cached
    }

    fn compute(&self, now: Timestamp) -> [f64; QUANTILE_LEVELS.len()] {
        let up = self.above.total_weight(now);
        let down = self.below.total_weight(now);
        let total = up + down;
        if total <= 0.0 {
            return [0.0; QUANTILE_LEVELS.len()];
        }
        // One walk per histogram: the levels that fall among the negative residuals, read
        // from the largest magnitude down (increasing percentiles of `below` when the
        // levels are reversed), and those among the positive ones.
        let n = QUANTILE_LEVELS.len();
        let in_below = |q: f64| down > 0.0 && q * total <= down;
        let below_ps: [f64; QUANTILE_LEVELS.len()] = std::array::from_fn(|i| {
            let q = QUANTILE_LEVELS[n - 1 - i];
            if in_below(q) {
                (1.0 - q * total / down).clamp(0.0, 1.0)
            } else {
                0.0
            }
        });
        let above_ps = QUANTILE_LEVELS.map(|q| {
            if up > 0.0 && !in_below(q) {
                ((q * total - down) / up).clamp(0.0, 1.0)
            } else {
                0.0
            }
        });
        let below = self.below.percentiles(below_ps);
        let above = self.above.percentiles(above_ps);
        std::array::from_fn(|i| {
            let q = QUANTILE_LEVELS[i];
            if in_below(q) {
                -below[n - 1 - i]
            } else if up > 0.0 {
                above[i]
            } else {
                0.0
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Track {
    /// (time ms, demand) of the base window, values decreasing: the front is the max.
    /// Packed: a falling load keeps up to a whole window of points here.
    #[serde(with = "crate::codec::timed")]
    window: VecDeque<(i64, f64)>,
    /// The last samples' (demand, base at that sample), newest last, for the residuals.
    #[serde(with = "crate::codec::f64_pairs")]
    recent: VecDeque<(f64, f64)>,
    residuals: Vec<Signed>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResidualState {
    config: ResidualConfig,
    tracks: ResourceMap<Option<Track>>,
    last_at: Option<Timestamp>,
    /// Exponentially weighted sampling interval, in seconds.
    interval_s: f64,
}

impl Track {
    fn new(resource: Resource, config: &ResidualConfig) -> Result<Self, ForecastError> {
        let residuals = config
            .horizon_steps
            .iter()
            .map(|_| Signed::new(resource, config.half_life_s))
            .collect::<Result<_, _>>()?;
        Ok(Track {
            window: VecDeque::new(),
            recent: VecDeque::new(),
            residuals,
        })
    }

    fn base(&self) -> Option<f64> {
        self.window.front().map(|&(_, v)| v)
    }

    fn observe(&mut self, at: Timestamp, demand: f64, config: &ResidualConfig) {
        // Score the horizons this sample closes: k samples after `recent[len − k]`.
        self.recent.push_back((demand, f64::NAN));
        let n = self.recent.len();
        for (h, &k) in config.horizon_steps.iter().enumerate() {
            let k = k as usize;
            if n > k {
                let (_, base) = self.recent[n - 1 - k];
                let peak = self
                    .recent
                    .range(n - k..)
                    .map(|&(d, _)| d)
                    .fold(f64::NEG_INFINITY, f64::max);
                if base.is_finite() {
                    self.residuals[h].add(peak - base, at);
                }
            }
        }
        // Slide the peak window (a monotonic deque: amortised O(1)).
        let horizon_ms = i64::from(config.window_s) * 1000;
        while self.window.back().is_some_and(|&(_, v)| v <= demand) {
            self.window.pop_back();
        }
        self.window.push_back((at.unix_ms(), demand));
        while self
            .window
            .front()
            .is_some_and(|&(t, _)| t <= at.unix_ms() - horizon_ms)
        {
            self.window.pop_front();
        }
        let base = self.base();
        if let (Some(last), Some(base)) = (self.recent.back_mut(), base) {
            last.1 = base;
        }
        let keep = config.horizon_steps.last().copied().unwrap_or(1) as usize + 1;
        while self.recent.len() > keep {
            self.recent.pop_front();
        }
    }

    fn quantiles(&self, horizon: usize, config: &ResidualConfig) -> Option<Quantiles> {
        let base = self.base()?;
        let signed = &self.residuals[horizon];
        if signed.count < config.min_residuals {
            // The prior: room up to twice the recent peak, so a new workload is not starved.
            return Quantiles::from_fn(|q| base * (1.0 + q.powi(4))).ok();
        }
        let r = signed.quantiles();
        let mut i = 0;
        Quantiles::from_fn(|_| {
            let v = base + r[i];
            i += 1;
            v
        })
        .ok()
    }
}

impl ResidualState {
    fn horizon_index(&self, horizon_s: u32) -> usize {
        let steps = (f64::from(horizon_s) / self.interval_s.max(1e-3))
            .ceil()
            .max(1.0) as u32;
        self.config
            .horizon_steps
            .iter()
            .position(|&k| k >= steps)
            .unwrap_or(self.config.horizon_steps.len() - 1)
    }
}

impl Forecaster for ResidualState {
    fn name(&self) -> &'static str {
        self.config.label()
    }

    fn observe(&mut self, sample: &Sample) {
        if let Some(last) = self.last_at {
            let dt = sample.at().secs_since(last);
            if dt > 0.0 {
                self.interval_s = 0.9 * self.interval_s + 0.1 * dt;
            }
        } else {
            self.interval_s = f64::from(sample.interval_ms()) / 1000.0;
        }
        self.last_at = Some(sample.at());
        for &resource in &self.config.resources {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let slot = self.tracks.get_mut(resource);
            if slot.is_none() {
                *slot = Track::new(resource, &self.config).ok();
            }
            if let Some(track) = slot.as_mut() {
                track.observe(sample.at(), demand, &self.config);
            }
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let horizons: Vec<HorizonForecast> = horizons_s
            .iter()
            .map(|&horizon_s| {
                let h = self.horizon_index(horizon_s);
                HorizonForecast {
                    horizon_s,
                    quantiles: ResourceMap::from_fn(|r| {
                        self.tracks[r]
                            .as_ref()
                            .and_then(|t| t.quantiles(h, &self.config))
                    }),
                }
            })
            .collect();
        if horizons
            .iter()
            .all(|h| h.quantiles.present().next().is_none())
        {
            return None;
        }
        Forecast::new(now, self.config.label(), horizons).ok()
    }

    fn quantiles(&self, _now: Timestamp, horizon_s: u32, resource: Resource) -> Option<Quantiles> {
        let h = self.horizon_index(horizon_s);
        self.tracks[resource]
            .as_ref()
            .and_then(|t| t.quantiles(h, &self.config))
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for Residual {
    fn name(&self) -> &'static str {
        self.config.label()
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(ResidualState {
            config: self.config.clone(),
            tracks: ResourceMap::none(),
            last_at: None,
            interval_s: 60.0,
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let restored: ResidualState =
            state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        if restored.config != self.config {
            // A different window or horizon layout: the learned histograms do not apply.
            return Err(ForecastError::WrongModel {
                expected: self.config.label().to_owned(),
                found: restored.config.label().to_owned(),
            });
        }
        Ok(Box::new(restored))
    }
}

/// [`crate::merge_states`] of residual states: the one with more residuals is chosen
/// (per resource the largest horizon count — the first horizon's, about the samples seen
/// — summed). Its histograms could be summed, but the base window and the cached
/// quantiles are one host's stream, and a base from one host over residuals from both
/// would be a conformal predictor of neither. The configs must match, as [`Residual`]'s
/// restore requires.
pub(crate) fn merge(a: &ModelState, b: &ModelState) -> Result<ModelState, ForecastError> {
    let decode =
        |s: &ModelState| s.decode_versions::<ResidualState>(NAME, OLDEST_VERSION..=STATE_VERSION);
    let (x, y) = (decode(a)?, decode(b)?);
    if x.config != y.config {
        return Err(crate::profile_ops::unmergeable(
            a,
            b,
            "config",
            format!("{} and {} differ", x.config.label(), y.config.label()),
        ));
    }
    crate::profile_ops::choose(a, b, |s| {
        Ok(decode(s)?
            .tracks
            .present()
            .filter_map(|(_, t)| t.residuals.iter().map(|r| u64::from(r.count)).max())
            .sum())
    })
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<ResidualState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a residual state: every residual histogram's weights and
/// count are scaled (the count kept at least at `min_residuals` where it was, or the
/// forecast would fall back to the prior); the base window is a level and is kept. The
/// cached quantiles stay valid: both sides of a horizon scale alike.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{scaled_count, scaled_histogram};
    let mut saved: ResidualState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    let keep = saved.config.min_residuals;
    for resource in Resource::ALL {
        let Some(track) = saved.tracks.get_mut(resource) else {
            continue;
        };
        for signed in &mut track.residuals {
            signed.above = scaled_histogram(&signed.above, factor)?;
            signed.below = scaled_histogram(&signed.below, factor)?;
            signed.count = scaled_count(signed.count, factor, keep);
        }
    }
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests;
