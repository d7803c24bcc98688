//! The two reference forecasters the models are judged against.
//!
//! - [`SeasonalNaive`]: the demand one season (a day) ago, as the median; its spread is
//!   its own signed errors, kept in a [`ResidualDistribution`], so its pinball loss and
//!   coverage are defined like everyone else's.
//! - [`EtsBaseline`]: augurs' `AutoETS` (non-seasonal — augurs has no seasonal ETS —
//!   with no trend or a damped one), refitted on a rolling window. A fit is a batch job (~25 ms for three days of
//!   five-minute data), so it is refitted only every [`EtsOptions::refit_every_s`] and, in
//!   between, the forecast for the `k`-th sample after a fit is the fit's `k`-step-ahead
//!   forecast: augurs' fitted models expose neither their parameters nor a way to feed
//!   them new observations, so the state cannot be rolled forward without refitting. p50
//!   is the point forecast, p95 the upper bound of its 90 % prediction interval, the other
//!   levels a normal distribution through those two.

use std::collections::VecDeque;

use augurs::ets::AutoETS;
use augurs::{Fit, Predict};
use presage_core::{Forecast, Quantiles, ResourceMap, Sample, Timestamp};
use presage_forecast::demand::observed_demand;
use presage_forecast::{
    ForecastError, Forecaster, ForecasterFactory, ModelState, NORMAL_Z, ResidualDistribution,
    forecast_from, normal_quantiles,
};
use serde::{Deserialize, Serialize};

const NAIVE: &str = "seasonal-naive";
const ETS: &str = "ets";
const STATE_VERSION: u32 = 1;
/// How many widths of the fitted window an ETS path may stray beyond it.
const PLAUSIBLE_RANGES: f64 = 4.0;

/// The seasonal-naive baseline: the demand one season before the target time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalNaive {
    /// The season, in seconds (a day).
    pub season_s: f64,
    /// Half-life of its residual distribution, in seconds (2 days, as Holt-Winters').
    pub residual_half_life_s: f64,
    /// Farthest a past sample may be from "one season ago" and still stand for it, in
    /// seconds (15 min).
    pub tolerance_s: f64,
}

impl Default for SeasonalNaive {
    fn default() -> Self {
        SeasonalNaive {
            season_s: 86_400.0,
            residual_half_life_s: 2.0 * 86_400.0,
            tolerance_s: 900.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NaiveSeries {
    history: VecDeque<(i64, f64)>,
    residuals: ResidualDistribution,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NaiveState {
    season_ms: i64,
    tolerance_ms: i64,
    residual_half_life_s: f64,
    series: ResourceMap<Option<NaiveSeries>>,
}

impl NaiveSeries {
    /// The value nearest to `target`, if one lies within `tolerance_ms` of it.
    fn value_near(&self, target: i64, tolerance_ms: i64) -> Option<f64> {
        let i = self.history.partition_point(|&(t, _)| t < target);
        [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|j| self.history.get(j))
            .filter(|(t, _)| (t - target).abs() <= tolerance_ms)
            .min_by_key(|(t, _)| (t - target).abs())
            .map(|&(_, v)| v)
    }
}

impl Forecaster for NaiveState {
    fn name(&self) -> &'static str {
        NAIVE
    }

    fn observe(&mut self, sample: &Sample) {
        let t = sample.at().unix_ms();
        let weight = (f64::from(sample.interval_ms()) / 1000.0).clamp(1.0, 3600.0) / 300.0;
        for (resource, _) in sample.usage().iter() {
            let Some(y) = observed_demand(sample, resource) else {
                continue;
            };
            let slot = self.series.get_mut(resource);
            if slot.is_none() {
                *slot = ResidualDistribution::new(resource, self.residual_half_life_s, 0.05)
                    .ok()
                    .map(|residuals| NaiveSeries {
                        history: VecDeque::new(),
                        residuals,
                    });
            }
            let Some(s) = slot else { continue };
            if s.history.back().is_some_and(|&(last, _)| last >= t) {
                continue;
            }
            if let Some(past) = s.value_near(t - self.season_ms, self.tolerance_ms) {
                s.residuals.add(y - past, weight, sample.at());
            }
            s.history.push_back((t, y));
            let keep_from = t - self.season_ms - 2 * self.tolerance_ms;
            while s.history.front().is_some_and(|&(t0, _)| t0 < keep_from) {
                s.history.pop_front();
            }
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        forecast_from(NAIVE, now, horizons_s, |h| {
            let target = now.plus_secs(i64::from(h)).unix_ms() - self.season_ms;
            self.series.map(|_, s| {
                let s = s.as_ref()?;
                let point = s.value_near(target, self.tolerance_ms)?;
                if s.residuals.count() < 3 {
                    return None;
                }
                // The median is the seasonal value itself; the other levels add the
                // errors' quantiles (and are lifted to stay ordered around it).
                let mut values = s.residuals.offsets().map(|o| point + o);
                values[1] = point;
                Quantiles::from_fn({
                    let mut i = 0;
                    move |_| {
                        i += 1;
                        values[i - 1]
                    }
                })
                .ok()
            })
        })
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAIVE, STATE_VERSION, self)
    }
}

impl ForecasterFactory for SeasonalNaive {
    fn name(&self) -> &'static str {
        NAIVE
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(NaiveState {
            season_ms: (self.season_s * 1000.0).round() as i64,
            tolerance_ms: (self.tolerance_s * 1000.0).round() as i64,
            residual_half_life_s: self.residual_half_life_s,
            series: ResourceMap::none(),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        Ok(Box::new(state.decode::<NaiveState>(NAIVE, STATE_VERSION)?))
    }
}

/// Settings of the [`EtsBaseline`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EtsOptions {
    /// The rolling window a fit sees, in seconds (3 days).
    pub window_s: f64,
    /// Seconds of data between refits (1 day).
    pub refit_every_s: f64,
    /// Data needed before the first fit, in seconds (1 day).
    pub min_history_s: f64,
    /// Two-sided level of the prediction interval whose upper bound is p95 (0.90).
    pub level: f64,
}

impl Default for EtsOptions {
    fn default() -> Self {
        EtsOptions {
            window_s: 3.0 * 86_400.0,
            refit_every_s: 86_400.0,
            min_history_s: 86_400.0,
            level: 0.90,
        }
    }
}

/// The ETS baseline (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EtsBaseline {
    /// Its settings.
    pub options: EtsOptions,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EtsSeries {
    history: VecDeque<(i64, f64)>,
    first_ms: Option<i64>,
    fitted_ms: Option<i64>,
    /// Samples observed since the fit: the next one is `point[since_fit]`.
    since_fit: usize,
    point: Vec<f64>,
    upper: Vec<f64>,
    typical_dt_s: f64,
    failures: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EtsState {
    #[serde(skip, default)]
    options: Option<EtsOptions>,
    series: ResourceMap<Option<EtsSeries>>,
}

impl EtsSeries {
    fn refit(&mut self, options: &EtsOptions) {
        let values: Vec<f64> = self.history.iter().map(|&(_, v)| v).collect();
        // Fit on a unit scale: byte-sized memory values upset the optimiser's tolerances.
        let scale = values.iter().map(|v| v.abs()).sum::<f64>() / values.len().max(1) as f64;
        let scale = if scale > 0.0 { scale } else { 1.0 };
        let scaled: Vec<f64> = values.iter().map(|v| v / scale).collect();
        let steps = (options.refit_every_s / self.typical_dt_s.max(1.0) * 1.5).ceil() as usize + 16;
        // No trend, or a damped one: an undamped trend extrapolated a day of samples ahead
        // runs off to absurd values (the path between refits is that long). Two searches,
        // as augurs cannot exclude only the undamped trend; the lower AICc wins.
        let flat = AutoETS::new(1, "ZNN")
            .ok()
            .and_then(|m| m.fit(&scaled).ok());
        let damped = AutoETS::new(1, "ZAN")
            .and_then(|m| m.damped(true))
            .ok()
            .and_then(|m| m.fit(&scaled).ok());
        // A path leaving the window's range by many times its width is a diverged fit
        // (multiplicative errors or a slow damping extrapolated a day ahead), not a
        // forecast: such a model is passed over, and the plausible one with the lower
        // AICc wins.
        let (lo, hi) = scaled
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let reach = PLAUSIBLE_RANGES * (hi - lo).max(1e-9);
        let plausible = |v: &f64| v.is_finite() && *v >= lo - reach && *v <= hi + reach;
        let best = [flat, damped]
            .into_iter()
            .flatten()
            .filter(|m| m.model().aicc().is_finite())
            .filter_map(|m| {
                let aicc = m.model().aicc();
                let f = m.predict(steps.min(100_000), options.level).ok()?;
                let upper = f.intervals.map(|i| i.upper).unwrap_or_default();
                f.point
                    .iter()
                    .chain(&upper)
                    .all(plausible)
                    .then_some((aicc, f.point, upper))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, point, upper)) => {
                self.point = point.iter().map(|v| v * scale).collect();
                self.upper = upper.iter().map(|v| v * scale).collect();
            }
            None => self.failures += 1,
        }
        if self.point.is_empty() {
            // Nothing ever fitted (a constant series has no likelihood to optimise): the
            // last value, with no spread, until a fit succeeds.
            let last = values.last().copied().unwrap_or(0.0);
            self.point = vec![last];
            self.upper = vec![last];
        }
        self.since_fit = 0;
    }
}

impl Forecaster for EtsState {
    fn name(&self) -> &'static str {
        ETS
    }

    fn observe(&mut self, sample: &Sample) {
        let options = self.options.unwrap_or_default();
        let t = sample.at().unix_ms();
        for (resource, _) in sample.usage().iter() {
            let Some(y) = observed_demand(sample, resource) else {
                continue;
            };
            let s = self
                .series
                .get_mut(resource)
                .get_or_insert_with(|| EtsSeries {
                    typical_dt_s: f64::from(sample.interval_ms()) / 1000.0,
                    ..EtsSeries::default()
                });
            if let Some(&(last, _)) = s.history.back() {
                if last >= t {
                    continue;
                }
                s.typical_dt_s += 0.1 * ((t - last) as f64 / 1000.0 - s.typical_dt_s);
            }
            s.history.push_back((t, y));
            s.first_ms.get_or_insert(t);
            s.since_fit += 1;
            let window_ms = (options.window_s * 1000.0) as i64;
            while s
                .history
                .front()
                .is_some_and(|&(t0, _)| t0 <= t - window_ms)
            {
                s.history.pop_front();
            }
            let due = match s.fitted_ms {
                None => s
                    .first_ms
                    .is_some_and(|f| (t - f) as f64 >= options.min_history_s * 1000.0),
                Some(f) => (t - f) as f64 >= options.refit_every_s * 1000.0,
            };
            if due {
                s.fitted_ms = Some(t);
                s.refit(&options);
            }
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        forecast_from(ETS, now, horizons_s, |h| {
            self.series.map(|_, s| {
                let s = s.as_ref()?;
                s.fitted_ms?;
                let ahead = (f64::from(h) / s.typical_dt_s.max(1.0)).round().max(1.0) as usize;
                let i = (s.since_fit + ahead - 1).min(s.point.len().checked_sub(1)?);
                let point = s.point[i];
                let sigma =
                    ((s.upper.get(i).copied().unwrap_or(point) - point) / NORMAL_Z[4]).max(0.0);
                normal_quantiles(point, sigma)
            })
        })
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(ETS, STATE_VERSION, self)
    }
}

impl ForecasterFactory for EtsBaseline {
    fn name(&self) -> &'static str {
        ETS
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(EtsState {
            options: Some(self.options),
            series: ResourceMap::none(),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        let mut restored: EtsState = state.decode(ETS, STATE_VERSION)?;
        restored.options = Some(self.options);
        Ok(Box::new(restored))
    }
}
