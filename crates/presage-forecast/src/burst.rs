//! Bursty vs sustained demand (seed 000), classified online per resource.
//!
//! A [`BurstClassifier`] is fed one resource's [`observed_demand`](crate::demand) values
//! and keeps three features, each O(1) per observation:
//!
//! - **peak ratio**: p99 / p50 of the demand in a [`DecayingHistogram`] (half-life
//!   [`BurstConfig::half_life_s`]), the p50 floored at a per-unit idle level so that noise
//!   around nothing is not called bursty;
//! - **high fraction**: the time-weighted share of time the demand spends above the *high
//!   line* `p50 + ½ (p99 − p50)`, decayed with the same half-life;
//! - **episode length**: how long a stay above the high line lasts, an exponentially
//!   weighted mean over completed episodes (an episode still running counts once it is
//!   longer than the mean).
//!
//! Demand is *bursty* when its peaks stand far above its base (high ratio), the peaks are
//! rare (small high fraction) and short (short episodes); otherwise it is *sustained* — a
//! flat load, or a long daily surge (a batch job that runs all night is sustained).
//!
//! The percentiles need a walk over the histogram, so the features are re-evaluated only
//! every [`BurstConfig::evaluate_every_s`] of data (amortised O(1)). The class has
//! hysteresis twice over: entering *bursty* needs all three conditions, leaving it needs
//! one of them to fail by a margin (the ratio below [`BurstConfig::exit_ratio`], the
//! fraction or episode length 1.5× / 2× over the entry bound), and a class once set stays
//! for at least [`BurstConfig::min_dwell_s`].

use presage_core::{BurstClass, Forecast, Resource, ResourceMap, Sample, Timestamp, Unit};
use serde::{Deserialize, Serialize};

use crate::demand::observed_demand;
use crate::models::histogram_model::{interval_weight, resource_layout};
use crate::{DecayingHistogram, ForecastError};

/// Settings of a [`BurstClassifier`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BurstConfig {
    /// Half-life of the demand histogram and of the high fraction, in seconds (1 day).
    pub half_life_s: f64,
    /// Seconds of data between two re-evaluations of the class (10 minutes).
    pub evaluate_every_s: f64,
    /// Seconds of data before the first class is given (1 hour).
    pub min_history_s: f64,
    /// p99 / p50 at or above which demand may become bursty (2.0).
    pub enter_ratio: f64,
    /// p99 / p50 under which bursty demand becomes sustained again (1.6).
    pub exit_ratio: f64,
    /// Largest share of time above the high line for bursty demand (0.25).
    pub max_high_fraction: f64,
    /// Longest mean high episode for bursty demand, in seconds (1 hour).
    pub max_episode_s: f64,
    /// Least time a class holds before it may change, in seconds (1 hour).
    pub min_dwell_s: f64,
}

impl Default for BurstConfig {
    fn default() -> Self {
        BurstConfig {
            half_life_s: 86_400.0,
            evaluate_every_s: 600.0,
            min_history_s: 3_600.0,
            enter_ratio: 2.0,
            exit_ratio: 1.6,
            max_high_fraction: 0.25,
            max_episode_s: 3_600.0,
            min_dwell_s: 3_600.0,
        }
    }
}

impl BurstConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ForecastError> {
        let positive = [
            ("burst half_life_s", self.half_life_s),
            ("burst evaluate_every_s", self.evaluate_every_s),
            ("burst enter_ratio", self.enter_ratio),
            ("burst exit_ratio", self.exit_ratio),
            ("burst max_high_fraction", self.max_high_fraction),
            ("burst max_episode_s", self.max_episode_s),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(ForecastError::InvalidSetting {
                    field,
                    value: v.to_string(),
                    reason: "must be a positive number",
                });
            }
        }
        for (field, v) in [
            ("burst min_history_s", self.min_history_s),
            ("burst min_dwell_s", self.min_dwell_s),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ForecastError::InvalidSetting {
                    field,
                    value: v.to_string(),
                    reason: "must be a non-negative number of seconds",
                });
            }
        }
        if self.exit_ratio > self.enter_ratio {
            return Err(ForecastError::InvalidSetting {
                field: "burst exit_ratio",
                value: self.exit_ratio.to_string(),
                reason: "must not exceed enter_ratio (the hysteresis band would be inverted)",
            });
        }
        Ok(())
    }
}

/// What the classifier last measured, for reports and debugging.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BurstFeatures {
    /// p99 / p50 of the demand (p50 floored at the resource's idle level).
    pub peak_ratio: f64,
    /// Decayed share of time above the high line.
    pub high_fraction: f64,
    /// Mean length of a high episode, in seconds (0 before the first one).
    pub episode_s: f64,
    /// The high line, in the resource's unit.
    pub high_line: f64,
}

/// Online bursty/sustained classification of one resource's demand (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstClassifier {
    config: BurstConfig,
    idle_level: f64,
    histogram: DecayingHistogram,
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    last_eval: Option<Timestamp>,
    /// Decayed time spent above the high line, and in all (seconds, decayed).
    high_time: f64,
    total_time: f64,
    episode_start: Option<Timestamp>,
    episode_mean_s: f64,
    episodes: u32,
    features: BurstFeatures,
    class: Option<BurstClass>,
    changed_at: Option<Timestamp>,
}

/// Below this, demand of a resource counts as idle: a p50 under it is taken as it.
fn idle_level(resource: Resource) -> f64 {
    match resource.unit() {
        Unit::Cores => 0.01,
        Unit::Bytes => 16.0 * 1024.0 * 1024.0,
        Unit::BytesPerSecond => 4096.0,
    }
}

/// Weight of the mean over completed episodes given to the newest one.
const EPISODE_WEIGHT: f64 = 0.2;

impl BurstClassifier {
    /// A classifier for `resource` that has seen nothing.
    pub fn new(resource: Resource, config: BurstConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        let histogram =
            DecayingHistogram::new(resource_layout(resource, 0.05)?, config.half_life_s)?;
        Ok(BurstClassifier {
            config,
            idle_level: idle_level(resource),
            histogram,
            first_at: None,
            last_at: None,
            last_eval: None,
            high_time: 0.0,
            total_time: 0.0,
            episode_start: None,
            episode_mean_s: 0.0,
            episodes: 0,
            features: BurstFeatures::default(),
            class: None,
            changed_at: None,
        })
    }

    /// Learns from one demand value over the `interval_s` seconds ending at `at`.
    /// Values out of time order, negative or not finite are ignored.
    pub fn observe(&mut self, at: Timestamp, interval_s: f64, demand: f64) {
        if !(demand.is_finite() && demand >= 0.0) || self.last_at.is_some_and(|t| at <= t) {
            return;
        }
        let dt = self
            .last_at
            .map_or(interval_s, |t| at.secs_since(t))
            .clamp(0.0, 3_600.0);
        self.first_at
            .get_or_insert(at.plus_ms(-(interval_s * 1000.0) as i64));
        self.last_at = Some(at);
        self.histogram.add(demand, interval_weight(dt), at);

        let keep = (-dt / self.config.half_life_s).exp2();
        let high = demand > self.features.high_line && self.features.high_line > 0.0;
        self.high_time = self.high_time * keep + if high { dt } else { 0.0 };
        self.total_time = self.total_time * keep + dt;
        match (high, self.episode_start) {
            (true, None) => self.episode_start = Some(at.plus_ms(-(dt * 1000.0) as i64)),
            (false, Some(start)) => {
                let length = at.plus_ms(-(dt * 1000.0) as i64).secs_since(start).max(dt);
                self.episode_mean_s = if self.episodes == 0 {
                    length
                } else {
                    self.episode_mean_s + EPISODE_WEIGHT * (length - self.episode_mean_s)
                };
                self.episodes = self.episodes.saturating_add(1);
                self.episode_start = None;
            }
            _ => {}
        }

        let due = self
            .last_eval
            .is_none_or(|t| at.secs_since(t) >= self.config.evaluate_every_s);
        if due {
            self.evaluate(at);
        }
    }

    /// The class, once [`BurstConfig::min_history_s`] of data has been seen.
    pub fn class(&self) -> Option<BurstClass> {
        self.class
    }

    /// The features as of the last re-evaluation.
    pub fn features(&self) -> BurstFeatures {
        self.features
    }

    fn evaluate(&mut self, at: Timestamp) {
        self.last_eval = Some(at);
        let [p50, p99] = self.histogram.percentiles([0.5, 0.99]);
        let base = p50.max(self.idle_level);
        let ongoing = self.episode_start.map_or(0.0, |s| at.secs_since(s));
        self.features = BurstFeatures {
            peak_ratio: p99 / base,
            high_fraction: if self.total_time > 0.0 {
                self.high_time / self.total_time
            } else {
                0.0
            },
            episode_s: self.episode_mean_s.max(ongoing),
            high_line: p50 + 0.5 * (p99 - p50),
        };
        let warm = self
            .first_at
            .is_some_and(|t| at.secs_since(t) >= self.config.min_history_s);
        if !warm {
            return;
        }
        let f = self.features;
        let c = &self.config;
        let idle = p99 <= self.idle_level;
        let next = match self.class {
            Some(BurstClass::Bursty) => {
                let leave = idle
                    || f.peak_ratio < c.exit_ratio
                    || f.high_fraction > 1.5 * c.max_high_fraction
                    || f.episode_s > 2.0 * c.max_episode_s;
                if leave {
                    BurstClass::Sustained
                } else {
                    BurstClass::Bursty
                }
            }
            _ => {
                let enter = !idle
                    && f.peak_ratio >= c.enter_ratio
                    && f.high_fraction <= c.max_high_fraction
                    && f.episode_s <= c.max_episode_s;
                if enter {
                    BurstClass::Bursty
                } else {
                    BurstClass::Sustained
                }
            }
        };
        let may_change = self
            .changed_at
            .is_none_or(|t| at.secs_since(t) >= c.min_dwell_s);
        if self.class != Some(next) && (self.class.is_none() || may_change) {
            self.class = Some(next);
            self.changed_at = Some(at);
        }
    }
}

/// One [`BurstClassifier`] per resource a workload reports: what the models carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstClassifiers {
    config: BurstConfig,
    per_resource: ResourceMap<Option<BurstClassifier>>,
}

impl BurstClassifiers {
    /// Classifiers with `config`, created as resources first appear. The config is
    /// checked then: with an invalid one (see [`BurstConfig::validate`], which the models
    /// call on their own configs) no resource is ever classified.
    pub fn new(config: BurstConfig) -> Self {
        BurstClassifiers {
            config,
            per_resource: ResourceMap::none(),
        }
    }

    /// Feeds every resource of `sample`, de-censored by
    /// [`observed_demand`](crate::demand::observed_demand).
    pub fn observe(&mut self, sample: &Sample) {
        let interval_s = f64::from(sample.interval_ms()) / 1000.0;
        for (resource, _) in sample.usage().iter() {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let slot = self.per_resource.get_mut(resource);
            if slot.is_none() {
                // Only an invalid config fails here; it leaves the resource unclassified.
                *slot = BurstClassifier::new(resource, self.config).ok();
            }
            if let Some(c) = slot {
                c.observe(sample.at(), interval_s, demand);
            }
        }
    }

    /// The class of `resource`, once known.
    pub fn class(&self, resource: Resource) -> Option<BurstClass> {
        self.per_resource.get(resource).as_ref()?.class()
    }

    /// The classifier of `resource`, if the resource has been seen.
    pub fn get(&self, resource: Resource) -> Option<&BurstClassifier> {
        self.per_resource.get(resource).as_ref()
    }

    /// `forecast` with the class of every classified resource attached.
    pub fn attach(&self, mut forecast: Forecast) -> Forecast {
        for resource in Resource::ALL {
            if let Some(class) = self.class(resource) {
                forecast = forecast.with_class(resource, class);
            }
        }
        forecast
    }
}

/// Merging and decaying saved classifiers ([`crate::profile_ops`]).
impl BurstClassifiers {
    /// Per resource, the classifier with the longer observed span (ties: the larger JSON
    /// text) is chosen: its class carries hysteresis and dwell times that do not add up
    /// across hosts. The settings are chosen by JSON text where they differ.
    pub(crate) fn merged(&self, other: &Self, model: &str) -> Result<Self, ForecastError> {
        use crate::profile_ops::{larger, merge_maps};
        let span = |c: &&BurstClassifier| match (c.first_at, c.last_at) {
            (Some(first), Some(last)) => last.unix_ms().saturating_sub(first.unix_ms()),
            _ => i64::MIN,
        };
        Ok(BurstClassifiers {
            config: larger(model, self.config, other.config, |_| ())?,
            per_resource: merge_maps(&self.per_resource, &other.per_resource, |_, x, y| {
                larger(model, x, y, span).cloned()
            })?,
        })
    }

    /// Each classifier's evidence scaled by `factor`: its histogram's weights and its
    /// decayed times (so the high fraction, their ratio, is kept), and the episode count
    /// (kept at one or more once an episode has ended, as the mean is then a real one).
    /// The class and the features stay until the next evaluation.
    pub(crate) fn decayed(&self, factor: f64) -> Result<Self, ForecastError> {
        let mut out = self.clone();
        for resource in Resource::ALL {
            if let Some(c) = out.per_resource.get_mut(resource) {
                c.histogram = crate::profile_ops::scaled_histogram(&c.histogram, factor)?;
                c.high_time *= factor;
                c.total_time *= factor;
                c.episodes = crate::profile_ops::scaled_count(c.episodes, factor, 1);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(series: impl Iterator<Item = f64>) -> Result<BurstClassifier, ForecastError> {
        let mut c = BurstClassifier::new(Resource::Cpu, BurstConfig::default())?;
        for (i, v) in series.enumerate() {
            c.observe(Timestamp::from_unix_secs(300 * (i as i64 + 1)), 300.0, v);
        }
        Ok(c)
    }

    #[test]
    fn spikes_over_a_low_base_are_bursty() -> Result<(), ForecastError> {
        // One 5-minute spike to 4 cores each hour over a 0.3-core base, for two days.
        let c = feed((0..576).map(|i| if i % 12 == 5 { 4.0 } else { 0.3 }))?;
        assert_eq!(c.class(), Some(BurstClass::Bursty), "{:?}", c.features());
        let f = c.features();
        assert!(f.peak_ratio > 5.0 && f.high_fraction < 0.15 && f.episode_s <= 600.0);
        Ok(())
    }

    #[test]
    fn flat_and_long_surges_are_sustained() -> Result<(), ForecastError> {
        let flat = feed((0..576).map(|i| 2.0 + 0.05 * ((i % 7) as f64 - 3.0)))?;
        assert_eq!(
            flat.class(),
            Some(BurstClass::Sustained),
            "{:?}",
            flat.features()
        );
        // Ten hours a day at 3 cores over a 0.5 base: high, but neither rare nor short.
        let daily = feed((0..864).map(|i| if (i % 288) < 120 { 3.0 } else { 0.5 }))?;
        assert_eq!(
            daily.class(),
            Some(BurstClass::Sustained),
            "{:?}",
            daily.features()
        );
        let idle = feed((0..576).map(|i| if i % 12 == 5 { 0.004 } else { 0.0005 }))?;
        assert_eq!(
            idle.class(),
            Some(BurstClass::Sustained),
            "idle noise is not bursty"
        );
        Ok(())
    }

    #[test]
    fn class_waits_for_history_and_does_not_flicker() -> Result<(), ForecastError> {
        let mut c = BurstClassifier::new(Resource::Cpu, BurstConfig::default())?;
        let mut changes = 0;
        let mut last = None;
        for i in 0..2_000i64 {
            // Bursty, with a lone sustained-looking hour every few hours.
            let v = if i % 12 == 5 || (i % 100 > 90) {
                4.0
            } else {
                0.3
            };
            c.observe(Timestamp::from_unix_secs(300 * (i + 1)), 300.0, v);
            if i < 10 {
                assert_eq!(c.class(), None, "not before an hour of data");
            }
            if c.class() != last {
                changes += 1;
                last = c.class();
            }
        }
        assert!(changes <= 3, "{changes} class changes");
        Ok(())
    }

    #[test]
    fn bad_settings_are_refused() {
        let c = BurstConfig {
            exit_ratio: 3.0,
            ..BurstConfig::default()
        };
        assert!(c.validate().is_err());
        let c = BurstConfig {
            half_life_s: f64::NAN,
            ..BurstConfig::default()
        };
        assert!(BurstClassifier::new(Resource::Cpu, c).is_err());
    }
}
