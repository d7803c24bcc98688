//! `segmented`: the seeds' segmented profile. Time is cut into segments — by default 24
//! hourly slots of the (UTC) day × {weekday, weekend} — and each segment keeps its own
//! [`DecayingHistogram`] of the demand seen in it, with a long half-life (7 days) so a
//! segment remembers last week's Tuesday 03:00. The forecast at horizon `h` reads the
//! segment that `now + h` falls in: "batch at night, interactive by day" comes out as
//! different distributions for night and day horizons.
//!
//! **Fallback.** A segment that has seen little (a new workload, the first weekend) is not
//! trusted alone: with `w` its decayed weight and `m` [`SegmentedConfig::min_segment_weight`],
//! the forecast blends quantile by quantile `λ·segment + (1 − λ)·overall`, `λ = min(1, w/m)`,
//! where *overall* is one more histogram over all samples with a shorter half-life
//! (24 h). Blending quantiles keeps them ordered.
//!
//! Cost: an observation adds to two histograms (O(1)); a forecast walks two histograms per
//! distinct segment among its horizons. Memory is the layout's bucket count × 8 bytes per
//! segment that has seen data (about 2 KiB each, 100 KiB per resource with 48 segments);
//! segments are created on first use.

use std::borrow::Cow;

use presage_core::{
    Forecast, QUANTILE_COUNT, QUANTILE_LEVELS, Quantiles, Resource, ResourceMap, Sample, Timestamp,
};
use serde::{Deserialize, Serialize};

use super::histogram_model::{assemble, ordered, resource_layout, sample_weight};
use crate::burst::{BurstClassifiers, BurstConfig};
use crate::demand::observed_demand;
use crate::{
    DecayingHistogram, ForecastError, Forecaster, ForecasterFactory, ModelState, StateView,
};

pub(crate) const NAME: &str = "segmented";
/// Version 2 packs the histograms (`crate::codec`); version 1 wrote them as JSON objects and
/// is still read.
const STATE_VERSION: u32 = 2;
const OLDEST_VERSION: u32 = 1;

/// How days are grouped into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayGrouping {
    /// Every day alike: segments are time-of-day slots only.
    All,
    /// Monday–Friday apart from Saturday–Sunday (UTC).
    WeekdayWeekend,
    /// Each day of the week on its own.
    EachDay,
}

impl DayGrouping {
    fn groups(self) -> u32 {
        match self {
            DayGrouping::All => 1,
            DayGrouping::WeekdayWeekend => 2,
            DayGrouping::EachDay => 7,
        }
    }

    fn group_of(self, t: Timestamp) -> u32 {
        match self {
            DayGrouping::All => 0,
            DayGrouping::WeekdayWeekend => u32::from(t.day_of_week() >= 5),
            DayGrouping::EachDay => t.day_of_week(),
        }
    }
}

/// Settings of the [`Segmented`] model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentedConfig {
    /// Time-of-day slots per day (24: hourly), each `86400 / slots_per_day` s long.
    pub slots_per_day: u32,
    /// How days are grouped (weekday / weekend).
    pub days: DayGrouping,
    /// Half-life of each segment's histogram, in seconds (7 days).
    pub half_life_s: f64,
    /// Half-life of the overall fallback histogram, in seconds (24 h).
    pub fallback_half_life_s: f64,
    /// Decayed weight (in five-minute sample units) at which a segment is trusted alone
    /// (6: half an hour of data).
    pub min_segment_weight: f64,
    /// Bucket growth of the layouts (0.05).
    pub growth: f64,
    /// Samples of a resource before it is forecast (3).
    pub min_samples: u32,
    /// The burst classifier's settings.
    pub burst: BurstConfig,
}

impl Default for SegmentedConfig {
    fn default() -> Self {
        SegmentedConfig {
            slots_per_day: 24,
            days: DayGrouping::WeekdayWeekend,
            half_life_s: 7.0 * 86_400.0,
            fallback_half_life_s: 86_400.0,
            min_segment_weight: 6.0,
            growth: 0.05,
            min_samples: 3,
            burst: BurstConfig::default(),
        }
    }
}

impl SegmentedConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ForecastError> {
        self.burst.validate()?;
        if !(1..=1440).contains(&self.slots_per_day) {
            return Err(ForecastError::InvalidSetting {
                field: "slots_per_day",
                value: self.slots_per_day.to_string(),
                reason: "must be between 1 and 1440",
            });
        }
        if !(self.min_segment_weight.is_finite() && self.min_segment_weight > 0.0) {
            return Err(ForecastError::InvalidSetting {
                field: "min_segment_weight",
                value: self.min_segment_weight.to_string(),
                reason: "must be a positive weight",
            });
        }
        for r in Resource::ALL {
            let layout = resource_layout(r, self.growth)?;
            DecayingHistogram::new(layout, self.half_life_s)?;
            DecayingHistogram::new(layout, self.fallback_half_life_s)?;
        }
        Ok(())
    }

    fn segments(&self) -> usize {
        (self.slots_per_day * self.days.groups()) as usize
    }

    /// The segment `t` falls in.
    fn segment_of(&self, t: Timestamp) -> usize {
        let slot = u64::from(t.second_of_day()) * u64::from(self.slots_per_day) / 86_400;
        (self.days.group_of(t) * self.slots_per_day) as usize + slot as usize
    }
}

/// The segmented-profile model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segmented {
    config: SegmentedConfig,
}

impl Segmented {
    /// The family with `config`, once validated.
    pub fn new(config: SegmentedConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(Segmented { config })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    overall: DecayingHistogram,
    segments: Vec<Option<DecayingHistogram>>,
    samples: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SegmentedState {
    config: SegmentedConfig,
    profiles: ResourceMap<Option<Profile>>,
    bursts: BurstClassifiers,
}

impl SegmentedState {
    fn new_profile(&self, resource: Resource) -> Option<Profile> {
        let layout = resource_layout(resource, self.config.growth).ok()?;
        Some(Profile {
            overall: DecayingHistogram::new(layout, self.config.fallback_half_life_s).ok()?,
            segments: vec![None; self.config.segments()],
            samples: 0,
        })
    }
}

impl Profile {
    fn quantiles(
        &self,
        config: &SegmentedConfig,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<Quantiles> {
        let overall = self.overall.percentiles(QUANTILE_LEVELS);
        let Some(segment) = self
            .segments
            .get(config.segment_of(at))
            .and_then(Option::as_ref)
            .filter(|h| !h.is_empty())
        else {
            return ordered(overall);
        };
        let lambda = (segment.total_weight(now) / config.min_segment_weight).clamp(0.0, 1.0);
        let own = segment.percentiles(QUANTILE_LEVELS);
        let mut blended = [0.0; QUANTILE_COUNT];
        for (b, (s, o)) in blended.iter_mut().zip(own.iter().zip(overall)) {
            *b = lambda * s + (1.0 - lambda) * o;
        }
        ordered(blended)
    }
}

impl Forecaster for SegmentedState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let weight = sample_weight(sample);
        let at = sample.at();
        let segment = self.config.segment_of(at);
        for (resource, _) in sample.usage().iter() {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            if self.profiles.get(resource).is_none() {
                let fresh = self.new_profile(resource);
                self.profiles.set(resource, fresh);
            }
            let Some(profile) = self.profiles.get_mut(resource) else {
                continue;
            };
            profile.overall.add(demand, weight, at);
            let slot = profile.segments.get_mut(segment);
            if let Some(slot) = slot {
                if slot.is_none() {
                    *slot =
                        DecayingHistogram::new(*profile.overall.layout(), self.config.half_life_s)
                            .ok();
                }
                if let Some(h) = slot {
                    h.add(demand, weight, at);
                }
            }
            profile.samples = profile.samples.saturating_add(1);
        }
        self.bursts.observe(sample);
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let config = &self.config;
        // Consecutive horizons in the same segment share one read-out.
        let mut memo: ResourceMap<Option<(usize, Option<Quantiles>)>> = ResourceMap::none();
        assemble(NAME, now, horizons_s, &self.bursts, |h| {
            let at = now.plus_secs(i64::from(h));
            let segment = config.segment_of(at);
            ResourceMap::from_fn(|r| {
                let profile = self.profiles.get(r).as_ref()?;
                if profile.samples < config.min_samples {
                    return None;
                }
                if let Some((s, q)) = memo.get(r)
                    && *s == segment
                {
                    return *q;
                }
                let q = profile.quantiles(config, at, now);
                memo.set(r, Some((segment, q)));
                q
            })
        })
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for Segmented {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(SegmentedState {
            config: self.config,
            profiles: ResourceMap::none(),
            bursts: BurstClassifiers::new(self.config.burst),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let restored: SegmentedState =
            state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
        // The segmentation is the state's shape: a profile saved with other slots cannot
        // be read with these, so that config must match; the rest follows the running one.
        let (saved, running) = (&restored.config, &self.config);
        if saved.slots_per_day != running.slots_per_day || saved.days != running.days {
            return Err(ForecastError::InvalidSetting {
                field: "segmented state segmentation",
                value: format!("{} slots × {:?}", saved.slots_per_day, saved.days),
                reason: "differs from the running model's segmentation",
            });
        }
        for r in Resource::ALL {
            if restored
                .profiles
                .get(r)
                .as_ref()
                .is_some_and(|p| p.segments.len() != running.segments())
            {
                return Err(ForecastError::InvalidSetting {
                    field: "segmented state segments",
                    value: r.to_string(),
                    reason: "has the wrong number of segments",
                });
            }
        }
        Ok(Box::new(SegmentedState {
            config: self.config,
            ..restored
        }))
    }
}

/// [`crate::merge_states`] of segmented states: per resource the overall histogram and
/// each segment's histogram are added (a segment seen on one host only is kept), and the
/// sample counts added — the segmented profile is all histograms, so two hosts' profiles
/// pool like one host that saw both. The segmentations (slots and day grouping) must
/// match, as must the histograms' layouts and half-lives. Burst classifiers: see
/// [`BurstClassifiers`].
pub(crate) fn merge(a: &ModelState, b: &ModelState) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{larger, merge_maps, merged_histogram, unmergeable};
    let decode =
        |s: &ModelState| s.decode_versions::<SegmentedState>(NAME, OLDEST_VERSION..=STATE_VERSION);
    let (x, y) = (decode(a)?, decode(b)?);
    let shape = |c: &SegmentedConfig| (c.slots_per_day, c.days);
    if shape(&x.config) != shape(&y.config) {
        return Err(unmergeable(
            a,
            b,
            "segmentation",
            format!("{:?} and {:?} differ", shape(&x.config), shape(&y.config)),
        ));
    }
    let profiles = merge_maps(&x.profiles, &y.profiles, |r, p, q| {
        if p.segments.len() != q.segments.len() {
            return Err(unmergeable(
                a,
                b,
                "segments",
                format!(
                    "{r}: {} and {} segments",
                    p.segments.len(),
                    q.segments.len()
                ),
            ));
        }
        let segments = p
            .segments
            .iter()
            .zip(&q.segments)
            .map(|pair| match pair {
                (Some(h), Some(g)) => merged_histogram(NAME, h, g).map(Some),
                (h, g) => Ok(h.as_ref().or(g.as_ref()).cloned()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Profile {
            overall: merged_histogram(NAME, &p.overall, &q.overall)?,
            segments,
            samples: p.samples.saturating_add(q.samples),
        })
    })?;
    let merged = SegmentedState {
        config: larger(NAME, x.config, y.config, |_| ())?,
        profiles,
        bursts: x.bursts.merged(&y.bursts, NAME)?,
    };
    ModelState::encode(NAME, STATE_VERSION, &merged)
}

/// The state in this build's layout: one saved before the layout changed is decoded and
/// written anew ([`crate::merge_states`] merges states of one version).
pub(crate) fn upgrade(state: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    crate::profile_ops::upgraded::<SegmentedState>(state, NAME, OLDEST_VERSION..=STATE_VERSION)
}

/// [`crate::decay_state`] of a segmented state: the overall and segment histograms'
/// weights and the sample counts are scaled (a count kept at `min_samples` where it
/// was), and the burst evidence with them. A scaled segment weighs less against
/// `min_segment_weight`, so the blend leans on the overall histogram until the new
/// version has filled it again.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    use crate::profile_ops::{scaled_count, scaled_histogram};
    let mut saved: SegmentedState = state.decode_versions(NAME, OLDEST_VERSION..=STATE_VERSION)?;
    let keep = saved.config.min_samples;
    for resource in Resource::ALL {
        let Some(profile) = saved.profiles.get_mut(resource) else {
            continue;
        };
        profile.overall = scaled_histogram(&profile.overall, factor)?;
        for h in profile.segments.iter_mut().flatten() {
            *h = scaled_histogram(h, factor)?;
        }
        profile.samples = scaled_count(profile.samples, factor, keep);
    }
    saved.bursts = saved.bursts.decayed(factor)?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    /// Monday 2024-01-01T00:00:00Z.
    const MONDAY: i64 = 1_704_067_200;

    fn sample(t: i64, cpu: f64) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .expect("valid usage");
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("valid id"),
            300_000,
            usage,
        )
        .expect("valid sample")
    }

    /// Batch at night (00–06 UTC, 4 cores), interactive by day (1 core), for `days` days.
    fn day_night(days: i64) -> Result<Box<dyn Forecaster>, ForecastError> {
        let mut f = Segmented::new(SegmentedConfig::default())?.create();
        for i in 0..days * 288 {
            let t = MONDAY + 300 * (i + 1);
            let hour = (t % 86_400) / 3600;
            f.observe(&sample(t, if hour < 6 { 4.0 } else { 1.0 }));
        }
        Ok(f)
    }

    fn p50(f: &dyn Forecaster, now: i64, h: u32) -> Option<f64> {
        f.forecast(Timestamp::from_unix_secs(now), &[h])
            .and_then(|fc| fc.at(Resource::Cpu, h).map(|q| q.p50()))
    }

    #[test]
    fn night_and_day_horizons_differ() -> Result<(), ForecastError> {
        let f = day_night(7)?;
        // Issued Monday 20:00 of the second week: +6 h is 02:00 (night), +14 h 10:00.
        let now = MONDAY + 7 * 86_400 + 20 * 3600;
        let night = p50(f.as_ref(), now, 6 * 3600).unwrap_or(0.0);
        let day = p50(f.as_ref(), now, 14 * 3600).unwrap_or(0.0);
        assert!((4.0..4.3).contains(&night), "night p50 {night}");
        assert!((1.0..1.1).contains(&day), "day p50 {day}");
        Ok(())
    }

    #[test]
    fn a_fresh_segment_leans_on_the_overall_histogram() -> Result<(), ForecastError> {
        // Five weekdays only: the weekend segments are empty, so a Saturday forecast is
        // the overall distribution (a quarter night, three quarters day).
        let f = day_night(5)?;
        let now = MONDAY + 5 * 86_400;
        let q = f
            .forecast(Timestamp::from_unix_secs(now), &[3 * 3600])
            .and_then(|fc| fc.at(Resource::Cpu, 3 * 3600).copied());
        let q = q.ok_or(ForecastError::InvalidSetting {
            field: "test",
            value: String::new(),
            reason: "no forecast",
        })?;
        assert!(q.p50() < 1.1 && q.p90() > 3.9, "{q:?}");
        Ok(())
    }

    #[test]
    fn segments_follow_the_calendar() {
        let c = SegmentedConfig::default();
        let t = |s: i64| Timestamp::from_unix_secs(MONDAY + s);
        assert_eq!(c.segment_of(t(0)), 0);
        assert_eq!(c.segment_of(t(3 * 3600 + 59)), 3);
        assert_eq!(c.segment_of(t(5 * 86_400 + 3600)), 25, "Saturday 01:00");
        assert_eq!(c.segments(), 48);
    }

    #[test]
    fn save_and_restore_give_identical_forecasts() -> Result<(), Box<dyn std::error::Error>> {
        let family = Segmented::new(SegmentedConfig::default())?;
        let f = day_night(3)?;
        let json = serde_json::to_string(&f.save()?)?;
        let back = family.restore(&serde_json::from_str(&json)?)?;
        let now = Timestamp::from_unix_secs(MONDAY + 3 * 86_400);
        let horizons = [300, 3600, 6 * 3600, 12 * 3600];
        assert_eq!(back.forecast(now, &horizons), f.forecast(now, &horizons));
        let other = Segmented::new(SegmentedConfig {
            slots_per_day: 12,
            ..SegmentedConfig::default()
        })?;
        assert!(other.restore(&f.save()?).is_err());
        Ok(())
    }
}
