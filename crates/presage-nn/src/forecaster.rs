//! The trained network as a [`Forecaster`]: one recurrent state per workload and
//! resource, advanced once per observed sample.

use std::path::Path;
use std::sync::Arc;

use presage_core::{
    Forecast, HorizonForecast, QUANTILE_COUNT, Quantiles, Resource, ResourceMap, Sample, Timestamp,
};
use presage_forecast::demand::observed_demand;
use presage_forecast::{ForecastError, Forecaster, ForecasterFactory, ModelState};
use serde::{Deserialize, Serialize};

use crate::NnError;
use crate::features::{MODEL_RESOURCES, SeriesFeatures};
use crate::model::{LoadedModel, ModelHeader};

/// The model shipped with presage, trained on the built-in synthetic traces (see the
/// crate documentation for the command that made it).
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../assets/default-gru.safetensors");

/// The saved-state layout version.
const STATE_VERSION: u32 = 1;

/// A neural model family: the loaded weights, shared by every workload's forecaster.
#[derive(Debug, Clone)]
pub struct NeuralFactory {
    model: Arc<LoadedModel>,
    min_samples: u32,
}

impl NeuralFactory {
    /// Samples a resource must have been seen for before it is forecast: the training
    /// burn-in, below which the recurrent state has not warmed up.
    pub const DEFAULT_MIN_SAMPLES: u32 = 16;

    /// Loads the weights file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, NnError> {
        Ok(Self::with_model(LoadedModel::from_file(path)?))
    }

    /// Loads a weights file held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, NnError> {
        Ok(Self::with_model(LoadedModel::from_bytes(bytes, origin)?))
    }

    /// The model shipped in [`DEFAULT_MODEL`].
    pub fn default_model() -> Result<Self, NnError> {
        Self::from_bytes(DEFAULT_MODEL, "embedded default model")
    }

    fn with_model(model: LoadedModel) -> Self {
        NeuralFactory {
            model: Arc::new(model),
            min_samples: Self::DEFAULT_MIN_SAMPLES,
        }
    }

    /// The same family, forecasting after `min_samples` samples (at least 1).
    pub fn with_min_samples(mut self, min_samples: u32) -> Self {
        self.min_samples = min_samples.max(1);
        self
    }

    /// The weights file's header.
    pub fn header(&self) -> &ModelHeader {
        &self.model.header
    }

    /// A hash of the weights; saved states record it.
    pub fn fingerprint(&self) -> &str {
        &self.model.fingerprint
    }
}

impl ForecasterFactory for NeuralFactory {
    fn name(&self) -> &'static str {
        self.model.header.cell.name()
    }

    fn create(&self) -> Box<dyn Forecaster> {
        Box::new(NeuralForecaster {
            model: Arc::clone(&self.model),
            min_samples: self.min_samples,
            tracks: Default::default(),
        })
    }

    /// Restores a saved state. A state saved under other weights keeps its feature state
    /// (scale, yesterday's demand: facts about the workload) but restarts the recurrent
    /// state, which only means something to the weights that made it.
    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        let name = self.name();
        let saved: Saved = state.decode(name, STATE_VERSION)?;
        let model = &self.model;
        let same_weights = saved.fingerprint == model.fingerprint;
        let state_len = model.weights.state_len();
        let input = model.weights.input;
        let mut tracks: [Option<Track>; MODEL_RESOURCES.len()] = Default::default();
        for (slot, track) in tracks.iter_mut().zip(saved.tracks) {
            let Some(mut track) = track else { continue };
            if !track.features.is_well_formed()
                || track.input.len() != input
                || track.input.iter().any(|v| !v.is_finite())
                || track.state.iter().any(|v| !v.is_finite())
            {
                return Err(ForecastError::Malformed {
                    model: name.to_owned(),
                    source: serde::de::Error::custom(
                        "a resource's feature state, input or recurrent state is not finite or has the wrong size",
                    ),
                });
            }
            if !same_weights || track.state.len() != state_len {
                track.state = vec![0.0; state_len];
                track.seen = 0;
            }
            *slot = Some(track);
        }
        Ok(Box::new(NeuralForecaster {
            model: Arc::clone(model),
            min_samples: self.min_samples,
            tracks,
        }))
    }
}

/// One resource's running state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Track {
    features: SeriesFeatures,
    /// The recurrent state after the last sample (`h`, then `c` for an LSTM).
    state: Vec<f32>,
    /// The last input, which the quantile head reads beside `state`.
    input: Vec<f32>,
    /// Samples seen since the state (re)started.
    seen: u32,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    fingerprint: String,
    tracks: Vec<Option<Track>>,
}

/// One workload's forecaster.
#[derive(Debug)]
struct NeuralForecaster {
    model: Arc<LoadedModel>,
    min_samples: u32,
    tracks: [Option<Track>; MODEL_RESOURCES.len()],
}

impl Forecaster for NeuralForecaster {
    fn name(&self) -> &'static str {
        self.model.header.cell.name()
    }

    fn observe(&mut self, sample: &Sample) {
        let model = &*self.model;
        let interval_s = f64::from(sample.interval_ms()) / 1000.0;
        for (slot, resource) in self.tracks.iter_mut().zip(MODEL_RESOURCES) {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let track = slot.get_or_insert_with(|| Track {
                features: SeriesFeatures::new(resource),
                state: vec![0.0; model.weights.state_len()],
                input: vec![0.0; model.weights.input],
                seen: 0,
            });
            track.features.observe(
                sample.at(),
                interval_s,
                demand,
                model.header.scale_half_life_s,
                &model.header.horizon_steps,
                &mut track.input,
            );
            model.weights.step(&track.input, &mut track.state);
            track.seen = track.seen.saturating_add(1);
        }
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        let model = &*self.model;
        let mut per_resource: Vec<(Resource, Vec<Quantiles>)> = Vec::new();
        for (track, resource) in self.tracks.iter().zip(MODEL_RESOURCES) {
            let Some(track) = track else { continue };
            if track.seen < self.min_samples {
                continue;
            }
            let heads = model.weights.head(&track.state, &track.input);
            let scale = track.features.scale();
            let step_s = track.features.step_s().max(1.0);
            let at_horizons: Option<Vec<Quantiles>> = horizons_s
                .iter()
                .map(|h| {
                    let steps = f64::from(*h) / step_s;
                    let normalised = interpolate(&heads, &model.header.horizon_steps, steps);
                    denormalise(&normalised, scale)
                })
                .collect();
            if let Some(q) = at_horizons {
                per_resource.push((resource, q));
            }
        }
        if per_resource.is_empty() {
            return None;
        }
        let horizons = horizons_s
            .iter()
            .enumerate()
            .map(|(i, &horizon_s)| {
                let mut quantiles = ResourceMap::none();
                for (resource, q) in &per_resource {
                    quantiles.set(*resource, Some(q[i]));
                }
                HorizonForecast {
                    horizon_s,
                    quantiles,
                }
            })
            .collect();
        Forecast::new(now, self.name(), horizons).ok()
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        let saved = Saved {
            fingerprint: self.model.fingerprint.clone(),
            tracks: self.tracks.to_vec(),
        };
        ModelState::encode(self.name(), STATE_VERSION, &saved)
    }
}

/// The normalised quantiles `steps` steps ahead: the heads' own horizons exactly, linear
/// between neighbouring heads (which keeps the levels in order), the first head below it
/// and the last head beyond it.
fn interpolate(
    heads: &[[f32; QUANTILE_COUNT]],
    horizon_steps: &[u32],
    steps: f64,
) -> [f32; QUANTILE_COUNT] {
    let mut below = 0;
    for (i, k) in horizon_steps.iter().enumerate() {
        let k = f64::from(*k);
        if steps <= k {
            if i == 0 {
                return heads[0];
            }
            let lo = f64::from(horizon_steps[below]);
            let w = ((steps - lo) / (k - lo)) as f32;
            let (a, b) = (heads[below], heads[i]);
            return std::array::from_fn(|j| a[j] + w * (b[j] - a[j]));
        }
        below = i;
    }
    heads[heads.len() - 1]
}

/// Quantiles in the resource's unit; the lowest level may come out slightly negative in
/// normalised units and is floored at zero.
fn denormalise(normalised: &[f32; QUANTILE_COUNT], scale: f64) -> Option<Quantiles> {
    let mut values = [0.0f64; QUANTILE_COUNT];
    let mut floor = 0.0f64;
    for (v, n) in values.iter_mut().zip(normalised) {
        floor = floor.max(f64::from(*n) * scale);
        *v = floor;
    }
    Quantiles::new(values).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_between_heads_is_linear_and_clamped() {
        let heads = [[1.0; QUANTILE_COUNT], [3.0; QUANTILE_COUNT]];
        let steps = [1, 3];
        assert_eq!(interpolate(&heads, &steps, 0.2)[0], 1.0);
        assert_eq!(interpolate(&heads, &steps, 2.0)[5], 2.0);
        assert_eq!(interpolate(&heads, &steps, 3.0)[9], 3.0);
        assert_eq!(interpolate(&heads, &steps, 40.0)[0], 3.0);
        let q = denormalise(&[-0.1, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2], 2.0);
        assert_eq!(q.map(|q| q.p5()), Some(0.0), "floored at zero");
        assert!(q.is_some_and(|q| (q.max() - 2.4).abs() < 1e-6));
    }
}
