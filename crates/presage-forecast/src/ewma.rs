//! The simplest real forecaster: an exponentially weighted mean and variance per resource,
//! read as a normal distribution. It has no notion of trend or season, so its forecast is
//! the same at every horizon; the better models come from the forecasting work.

use presage_core::{
    Forecast, HorizonForecast, QUANTILE_COUNT, Quantiles, Resource, ResourceMap, Sample, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{ForecastError, Forecaster, ForecasterFactory, ModelState, StateView};

pub(crate) const NAME: &str = "ewma";
const STATE_VERSION: u32 = 1;

/// Standard-normal quantiles for [`presage_core::QUANTILE_LEVELS`]; "max" is read as four deviations.
pub const NORMAL_Z: [f64; QUANTILE_COUNT] = [
    -1.644_853_6,
    0.0,
    0.674_489_8,
    1.281_551_6,
    1.644_853_6,
    2.053_748_9,
    2.326_347_9,
    2.575_829_3,
    3.090_232_3,
    4.0,
];

/// The quantiles of a normal distribution with `mean` and standard deviation `sd` (at
/// [`NORMAL_Z`]); `None` when they are not finite.
pub fn normal_quantiles(mean: f64, sd: f64) -> Option<Quantiles> {
    let mut z = NORMAL_Z.iter();
    Quantiles::from_fn(|_| mean + z.next().copied().unwrap_or(0.0) * sd).ok()
}

/// Settings of the [`Ewma`] model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EwmaConfig {
    /// Age, in seconds, at which a sample's weight has halved.
    pub half_life_s: f64,
    /// Samples needed before the model forecasts.
    pub min_samples: u32,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            half_life_s: 1800.0,
            min_samples: 3,
        }
    }
}

impl EwmaConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ForecastError> {
        if !(self.half_life_s.is_finite() && self.half_life_s > 0.0) {
            return Err(ForecastError::InvalidSetting {
                field: "half_life_s",
                value: self.half_life_s.to_string(),
                reason: "must be a positive number of seconds",
            });
        }
        Ok(())
    }
}

/// The EWMA model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    config: EwmaConfig,
}

impl Ewma {
    /// The family with `config`, once validated.
    pub fn new(config: EwmaConfig) -> Result<Self, ForecastError> {
        config.validate()?;
        Ok(Ewma { config })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Moments {
    mean: f64,
    var: f64,
    count: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EwmaState {
    config: EwmaConfig,
    last_at: Option<Timestamp>,
    moments: ResourceMap<Option<Moments>>,
}

impl Forecaster for EwmaState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let dt = self
            .last_at
            .map_or(f64::from(sample.interval_ms()) / 1000.0, |t| {
                sample.at().secs_since(t).max(0.0)
            });
        self.last_at = Some(sample.at());
        // Weight by elapsed time, so irregular sampling (Alibaba's traces) decays correctly.
        let alpha = 1.0 - (-dt / self.config.half_life_s).exp2();
        for (resource, value) in sample.usage().iter() {
            let m = self.moments.get_mut(resource);
            match m {
                None => {
                    *m = Some(Moments {
                        mean: value,
                        var: 0.0,
                        count: 1,
                    })
                }
                Some(m) => {
                    let delta = value - m.mean;
                    m.mean += alpha * delta;
                    m.var = (1.0 - alpha) * (m.var + alpha * delta * delta);
                    m.count = m.count.saturating_add(1);
                }
            }
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let mut per_resource = ResourceMap::<Option<Quantiles>>::none();
        for resource in Resource::ALL {
            let Some(m) = self.moments.get(resource) else {
                continue;
            };
            if m.count < self.config.min_samples {
                continue;
            }
            per_resource.set(resource, normal_quantiles(m.mean, m.var.max(0.0).sqrt()));
        }
        per_resource.present().next()?;
        let horizons = horizons_s
            .iter()
            .map(|&horizon_s| HorizonForecast {
                horizon_s,
                quantiles: per_resource,
            })
            .collect();
        Forecast::new(now, NAME, horizons).ok()
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        ModelState::encode(NAME, STATE_VERSION, self)
    }
}

impl ForecasterFactory for Ewma {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(EwmaState {
            config: self.config,
            last_at: None,
            moments: ResourceMap::none(),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let mut restored: EwmaState = state.decode(NAME, STATE_VERSION)?;
        // The running settings win over the saved ones; the learned moments carry over.
        restored.config = self.config;
        Ok(Box::new(restored))
    }
}

/// The merge key ([`crate::merge_states`] chooses the EWMA state with more of them): the
/// samples behind each resource's moments, summed. Moments are levels, not sums, so two
/// hosts' moments cannot be added.
pub(crate) fn observations(state: &ModelState) -> Result<u64, ForecastError> {
    let saved: EwmaState = state.decode(NAME, STATE_VERSION)?;
    Ok(saved
        .moments
        .present()
        .map(|(_, m)| u64::from(m.count))
        .sum())
}

/// [`crate::decay_state`] of an EWMA state: each resource's sample count is scaled (it is
/// the model's only evidence of confidence, gating `min_samples`); means and variances
/// are kept.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    let mut saved: EwmaState = state.decode(NAME, STATE_VERSION)?;
    // At least one: a present resource with a zero count would read as unseen.
    let keep = saved.config.min_samples.max(1);
    for resource in Resource::ALL {
        if let Some(m) = saved.moments.get_mut(resource) {
            m.count = crate::profile_ops::scaled_count(m.count, factor, keep);
        }
    }
    ModelState::encode(NAME, STATE_VERSION, &saved)
}

#[cfg(test)]
mod tests {
    use presage_core::{Usage, WorkloadId};

    use super::*;

    fn sample(t: i64, cpu: f64) -> Sample {
        let id = WorkloadId::new("w").expect("id");
        let usage = Usage::empty().with(Resource::Cpu, cpu).expect("usage");
        Sample::new(Timestamp::from_unix_secs(t), id, 60_000, usage).expect("sample")
    }

    fn model() -> Ewma {
        Ewma::new(EwmaConfig {
            half_life_s: 600.0,
            min_samples: 3,
        })
        .expect("config")
    }

    #[test]
    fn silent_until_enough_samples() {
        let mut f = model().create();
        f.observe(&sample(60, 1.0));
        f.observe(&sample(120, 1.0));
        assert!(f.forecast(Timestamp::from_unix_secs(120), &[60]).is_none());
        f.observe(&sample(180, 1.0));
        let fc = f.forecast(Timestamp::from_unix_secs(180), &[60, 300]);
        let q = fc.as_ref().and_then(|fc| fc.at(Resource::Cpu, 60));
        assert_eq!(q.map(|q| q.p50()), Some(1.0));
        assert!(fc.is_some_and(|fc| fc.at(Resource::Memory, 60).is_none()));
    }

    #[test]
    fn mean_halves_its_distance_after_one_half_life() {
        let mut f = model().create();
        f.observe(&sample(0, 0.0));
        f.observe(&sample(600, 2.0));
        f.observe(&sample(600, 2.0));
        // One half-life after a step from 0 to 2, the mean is halfway (the second sample at
        // the same instant carries no weight: dt = 0).
        let q = f
            .forecast(Timestamp::from_unix_secs(600), &[60])
            .and_then(|fc| fc.at(Resource::Cpu, 60).copied());
        assert!(q.is_some_and(|q| (q.p50() - 1.0).abs() < 1e-9), "{q:?}");
        assert!(q.is_some_and(|q| q.p95() > q.p50()), "spread from the step");
    }

    #[test]
    fn save_and_restore_continue_the_same_forecast() -> Result<(), ForecastError> {
        let family = model();
        let mut f = family.create();
        for t in 0..20 {
            f.observe(&sample(t * 60, 0.5 + (t % 3) as f64 * 0.1));
        }
        let saved = f.save()?;
        let back = family.restore(&saved)?;
        let now = Timestamp::from_unix_secs(1200);
        assert_eq!(back.forecast(now, &[60]), f.forecast(now, &[60]));
        let wrong = ModelState {
            model: "other".into(),
            ..saved.clone()
        };
        assert!(matches!(
            family.restore(&wrong),
            Err(ForecastError::WrongModel { .. })
        ));
        let newer = ModelState {
            version: 99,
            ..saved
        };
        assert!(matches!(
            family.restore(&newer),
            Err(ForecastError::UnsupportedVersion { .. })
        ));
        Ok(())
    }

    #[test]
    fn bad_half_life_is_rejected() {
        for h in [0.0, -1.0, f64::NAN] {
            assert!(
                Ewma::new(EwmaConfig {
                    half_life_s: h,
                    min_samples: 1
                })
                .is_err()
            );
        }
    }
}
