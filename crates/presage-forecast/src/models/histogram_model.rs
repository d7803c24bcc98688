//! `decaying-histogram`: per resource, a [`DecayingHistogram`] of the demand (VPA's
//! estimator), read out as quantiles. It has no notion of time of day or trend, so its
//! forecast is the same at every horizon: "what this workload has needed lately".
//!
//! **Bucket layouts.** One exponential layout cannot serve cores and bytes: VPA's CPU
//! layout starts at 0.01 core, too coarse for the many near-idle VMs of the Bitbrains
//! traces (a VM at 0.003 cores would be forecast at 0.01, three times its demand), and a
//! byte layout must span kilobytes to terabytes. [`resource_layout`] therefore gives each
//! unit its own: CPU from 0.001 core to 1024 cores, memory from 1 MiB to 16 TiB, rates from
//! 1 KiB/s to 64 GiB/s, all growing by `growth` per bucket (5 % by default, VPA's: a
//! reported percentile, a bucket's end, is at most 5 % above the true value). That is
//! 220–310 buckets each; a percentile walk only visits the occupied range.
//!
//! **Weights.** A sample weighs its interval (time-aware: with irregular sampling each
//! sample counts for the time it covers), in units of five minutes and capped at an hour
//! so that one sample after a long gap cannot dominate ([`interval_weight`]).

use std::borrow::Cow;

use presage_core::{
    Forecast, HorizonForecast, QUANTILE_COUNT, QUANTILE_LEVELS, Quantiles, Resource, ResourceMap,
    Sample, Timestamp, Unit,
};
use serde::{Deserialize, Serialize};

use crate::burst::{BurstClassifiers, BurstConfig};
use crate::demand::observed_demand;
use crate::{
    DecayingHistogram, ExponentialBuckets, ForecastError, Forecaster, ForecasterFactory,
    ModelState, StateView,
};

pub(crate) const NAME: &str = "decaying-histogram";
/// Version 2 packs the histograms (`crate::codec`); version 1 wrote them as JSON objects and
/// is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;

/// The bucket layout of `resource`'s unit (see the module docs), growing by `growth`.
pub fn resource_layout(
    resource: Resource,
    growth: f64,
) -> Result<ExponentialBuckets, ForecastError> {
    match resource.unit() {
        Unit::Cores => ExponentialBuckets::new(0.001, 1024.0, growth),
        Unit::Bytes => ExponentialBuckets::new(1024.0 * 1024.0, 16.0 * 1024f64.powi(4), growth),
        Unit::BytesPerSecond => ExponentialBuckets::new(1024.0, 64.0 * 1024f64.powi(3), growth),
    }
}

/// The histogram weight of a sample covering `interval_s` seconds: the interval in units
/// of five minutes, clamped to [1 s, 1 h].
pub fn interval_weight(interval_s: f64) -> f64 {
    if interval_s.is_nan() {
        return 1.0;
    }
    interval_s.clamp(1.0, 3_600.0) / 300.0
}

/// The histogram weight of `sample` ([`interval_weight`] of its interval).
pub fn sample_weight(sample: &Sample) -> f64 {
    interval_weight(f64::from(sample.interval_ms()) / 1000.0)
}

/// Quantiles from values at [`QUANTILE_LEVELS`], repaired into order; `None` if any is not
/// finite.
pub(crate) fn ordered(values: [f64; QUANTILE_COUNT]) -> Option<Quantiles> {
    let mut i = 0;
    Quantiles::from_fn(|_| {
        let v = values[i];
        i += 1;
        v
    })
    .ok()
}

/// A forecast at `horizons_s` from a per-horizon reader, with the burst classes attached;
/// `None` when no resource has a distribution or the horizons are invalid.
pub(crate) fn assemble(
    model: &'static str,
    now: Timestamp,
    horizons_s: &[u32],
    bursts: &BurstClassifiers,
    at: impl FnMut(u32) -> ResourceMap<Option<Quantiles>>,
) -> Option<Forecast> {
    forecast_from(model, now, horizons_s, at).map(|f| bursts.attach(f))
}

/// A forecast at `horizons_s` from a per-horizon reader; `None` when no resource has a
/// distribution at any horizon or the horizons are invalid.
pub fn forecast_from(
    model: &'static str,
    now: Timestamp,
    horizons_s: &[u32],
    mut at: impl FnMut(u32) -> ResourceMap<Option<Quantiles>>,
) -> Option<Forecast> {
    let horizons: Vec<HorizonForecast> = horizons_s
        .iter()
        .map(|&horizon_s| HorizonForecast {
            horizon_s,
            quantiles: at(horizon_s),
        })
        .collect();
    if horizons
        .iter()
        .all(|h| h.quantiles.present().next().is_none())
    {
        return None;
    }
    Forecast::new(now, model, horizons).ok()
}

/// Settings of the [`HistogramModel`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistogramModelConfig {
    /// Age at which a sample's weight has halved, in seconds (24 h).
    pub half_life_s: f64,
    /// Bucket growth of the layouts (0.05).
    pub growth: f64,
    /// Samples of a resource before it is forecast (3).
    pub min_samples: u32,
    /// The burst classifier's settings.
    pub burst: BurstConfig,
}

impl Default for HistogramModelConfig {
    fn default() -> Self {
        HistogramModelConfig {
            half_life_s: 86_400.0,
            growth: 0.05,
            min_samples: 3,
            burst: BurstConfig::default(),
        }
    }
}

impl HistogramModelConfig {
    /// Checks the settings (by building what they describe).
    pub fn validate(&self) -> Result<(), ForecastError> {
        self.burst.validate()?;
        for r in Resource::ALL {
            DecayingHistogram::new(resource_layout(r, self.growth)?, self.half_life_s)?;
        }
        Ok(())
    }
}

/// The decaying-histogram model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramModel {
    config: HistogramModelConfig,
}

impl HistogramModel {
    /// The family with `config`, once validated.
    pub fn new(config: HistogramModelConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(HistogramModel { config })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Track {
    histogram: DecayingHistogram,
    samples: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HistogramState {
    config: HistogramModelConfig,
    tracks: ResourceMap<Option<Track>>,
    bursts: BurstClassifiers,
}

impl Forecaster for HistogramState {
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
                // Validated at construction, so this cannot fail; if it did, the resource
                // would simply go unforecast.
                *slot = resource_layout(resource, self.config.growth)
                    .and_then(|l| DecayingHistogram::new(l, self.config.half_life_s))
                    .ok()
                    .map(|histogram| Track {
                        histogram,
                        samples: 0,
                    });
            }
            if let Some(track) = slot {
                track.histogram.add(demand, weight, sample.at());
                track.samples = track.samples.saturating_add(1);
            }
        }
        self.bursts.observe(sample);
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let per_resource = self.tracks.map(|_, track| {
            let track = track.as_ref()?;
            if track.samples < self.config.min_samples {
                return None;
            }
            ordered(track.histogram.percentiles(QUANTILE_LEVELS))
        });
        assemble(NAME, now, horizons_s, &self.bursts, |_| per_resource)
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for HistogramModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(HistogramState {
            config: self.config,
            tracks: ResourceMap::none(),
            bursts: BurstClassifiers::new(self.config.burst),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let mut restored: HistogramState =
            state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        // The running settings win; the histograms keep the layout and half-life they
        // were learned with (changing those needs a fresh profile).
        restored.config = self.config;
        Ok(Box::new(restored))
    }
}

/// [`crate::merge_states`] of decaying-histogram states: per resource the histograms are
/// added (aligned to the younger reference time, as if every sample had been seen on one
/// host) and the sample counts added; a resource seen on one host only is kept. Burst
/// classifiers: see [`BurstClassifiers`]. Histograms with different layouts or half-lives
/// cannot be added and fail the merge.
pub(crate) fn merge(a: &ModelState, b: &ModelState) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{larger, merge_maps, merged_histogram};
    let decode =
        |s: &ModelState| s.decode_versions::<HistogramState>(NAME, OLDEST_VERSION..=STATE_VERSION);
    let (x, y) = (decode(a)?, decode(b)?);
    let merged = HistogramState {
        config: larger(NAME, x.config, y.config, |_| ())?,
        tracks: merge_maps(&x.tracks, &y.tracks, |_, p, q| {
            Ok(Track {
                histogram: merged_histogram(NAME, &p.histogram, &q.histogram)?,
                samples: p.samples.saturating_add(q.samples),
            })
        })?,
        bursts: x.bursts.merged(&y.bursts, NAME)?,
    };
    ModelState::encode(NAME, STATE_VERSION, &merged)
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<HistogramState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a decaying-histogram state: every histogram weight and every
/// sample count is scaled (a count kept at `min_samples` where it was, so the resource is
/// still forecast), and the burst evidence with them.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{scaled_count, scaled_histogram};
    let mut saved: HistogramState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    let keep = saved.config.min_samples;
    for resource in Resource::ALL {
        if let Some(track) = saved.tracks.get_mut(resource) {
            track.histogram = scaled_histogram(&track.histogram, factor)?;
            track.samples = scaled_count(track.samples, factor, keep);
        }
    }
    saved.bursts = saved.bursts.decayed(factor)?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    pub(crate) fn sample(t: i64, cpu: f64, mem: f64) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .and_then(|u| u.with(Resource::Memory, mem))
            .expect("valid usage");
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("valid id"),
            300_000,
            usage,
        )
        .expect("valid sample")
    }

    #[test]
    fn quantiles_are_the_bucket_ends_of_hand_counted_ranks() -> Result<(), ForecastError> {
        let model = HistogramModel::new(HistogramModelConfig {
            half_life_s: f64::INFINITY,
            ..HistogramModelConfig::default()
        });
        // An infinite half-life is valid for the histogram; the burst config is separate.
        let model = model?;
        let mut f = model.create();
        for (i, v) in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
            .into_iter()
            .enumerate()
        {
            f.observe(&sample(300 * (i as i64 + 1), v, 1e9));
        }
        let fc = f
            .forecast(Timestamp::from_unix_secs(3000), &[300, 3600])
            .ok_or(ForecastError::InvalidSetting {
                field: "test",
                value: String::new(),
                reason: "no forecast",
            })?;
        let q = fc
            .at(Resource::Cpu, 300)
            .copied()
            .ok_or(ForecastError::InvalidSetting {
                field: "test",
                value: String::new(),
                reason: "no cpu",
            })?;
        let layout = resource_layout(Resource::Cpu, 0.05)?;
        let end = |v: f64| layout.end(layout.index_of(v));
        // Ten equal weights: p50 is reached at the 5th value, p90 at the 9th, p5 at the
        // 1st, p95 and above at the 10th; each reports its bucket's end.
        assert_eq!(q.p5(), end(1.0));
        assert_eq!(q.p50(), end(5.0));
        assert_eq!(q.p90(), end(9.0));
        assert_eq!(q.p95(), end(10.0));
        assert_eq!(q.max(), end(10.0));
        assert!(q.p50() >= 5.0 && q.p50() < 5.0 * 1.06);
        // Horizon-independent, and memory is forecast on its own layout.
        assert_eq!(fc.at(Resource::Cpu, 3600), Some(&q));
        let mem = fc.at(Resource::Memory, 300).map(|m| m.p50()).unwrap_or(0.0);
        assert!((1e9..1.06e9).contains(&mem), "{mem}");
        Ok(())
    }

    #[test]
    fn layouts_cover_each_unit() -> Result<(), ForecastError> {
        for r in Resource::ALL {
            let l = resource_layout(r, 0.05)?;
            assert!(l.len() > 200 && l.len() < 320, "{r}: {}", l.len());
        }
        let cpu = resource_layout(Resource::Cpu, 0.05)?;
        assert!(cpu.index_of(0.003) > cpu.index_of(0.001));
        Ok(())
    }

    #[test]
    fn learns_from_demand_not_capped_usage() -> Result<(), Box<dyn std::error::Error>> {
        let mut f = HistogramModel::new(HistogramModelConfig::default())?.create();
        for i in 0..10 {
            let s = sample(300 * (i + 1), 2.0, 1e9).with_events(presage_core::Events {
                cpu_throttled_s: 150.0,
                cpu_throttled_periods: 10,
                ..presage_core::Events::default()
            })?;
            f.observe(&s);
        }
        let p50 = f
            .forecast(Timestamp::from_unix_secs(3000), &[300])
            .and_then(|fc| fc.at(Resource::Cpu, 300).map(|q| q.p50()))
            .ok_or("no forecast")?;
        assert!(
            p50 >= 4.0,
            "throttled half the time at 2 cores: demand 4, got {p50}"
        );
        Ok(())
    }

    #[test]
    fn save_and_restore_give_identical_forecasts() -> Result<(), Box<dyn std::error::Error>> {
        let model = HistogramModel::new(HistogramModelConfig::default())?;
        let mut f = model.create();
        for i in 0..500 {
            f.observe(&sample(
                300 * (i + 1),
                0.5 + (i % 13) as f64 * 0.1,
                1e9 + i as f64 * 1e6,
            ));
        }
        let json = serde_json::to_string(&f.save()?)?;
        let back = model.restore(&serde_json::from_str(&json)?)?;
        let now = Timestamp::from_unix_secs(150_000);
        assert_eq!(
            back.forecast(now, &[300, 900]),
            f.forecast(now, &[300, 900])
        );
        assert!(
            f.forecast(now, &[300])
                .is_some_and(|fc| fc.class(Resource::Cpu).is_some())
        );
        Ok(())
    }
}
