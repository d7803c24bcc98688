use std::fmt::Debug;
use std::ops::RangeInclusive;

use presage_core::{Forecast, Quantiles, Resource, Sample, Timestamp};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a model could not be saved, restored or configured.
#[derive(Debug, Error)]
pub enum ForecastError {
    /// A saved state belongs to another model.
    #[error("saved state is for model {found:?}, not {expected:?}")]
    WrongModel {
        /// The model asked to restore.
        expected: String,
        /// The model the state was saved by.
        found: String,
    },
    /// A saved state has a format version this build cannot read.
    #[error(
        "saved state of model {model:?} has version {found}; this build reads up to {supported}"
    )]
    UnsupportedVersion {
        /// The model.
        model: String,
        /// The state's version.
        found: u32,
        /// The version this build writes (it may read some older ones too).
        supported: u32,
    },
    /// A saved state did not parse.
    #[error("saved state of model {model:?} is malformed: {source}")]
    Malformed {
        /// The model.
        model: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A setting was out of range.
    #[error("invalid setting {field} = {value}: {reason}")]
    InvalidSetting {
        /// The setting.
        field: &'static str,
        /// Its value, as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two saved states cannot be merged into one ([`crate::merge_states`]).
    #[error("cannot merge {left} with {right}: {field} {reason}")]
    Unmergeable {
        /// The first state's family and version, e.g. `ewma v1`.
        left: String,
        /// The second state's family and version.
        right: String,
        /// What stands in the way: `model`, `version`, a setting or a member list.
        field: &'static str,
        /// How the two differ there.
        reason: String,
    },
    /// A saved state belongs to a family whose merge and decay rules this build does not
    /// know (a model from another crate).
    #[error("no {operation} rule for saved states of model {model:?}")]
    UnknownModel {
        /// The state's family.
        model: String,
        /// `merge` or `decay`.
        operation: &'static str,
    },
}

/// A model's learned state, serialised for the profile store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    /// The model family ([`ForecasterFactory::name`]).
    pub model: String,
    /// The state's format version, bumped whenever the layout changes.
    pub version: u32,
    /// The state itself.
    pub state: serde_json::Value,
}

impl ModelState {
    /// The state borrowed, for [`ForecasterFactory::restore_view`].
    pub fn view(&self) -> StateView<'_> {
        StateView {
            model: &self.model,
            version: self.version,
            state: &self.state,
        }
    }

    /// Decodes `state` as `T` after checking it was written by `model` at `version`.
    pub fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        model: &str,
        version: u32,
    ) -> Result<T, ForecastError> {
        self.view().decode_versions(model, version..=version)
    }

    /// Decodes `state` as `T` after checking it was written by `model` at one of
    /// `versions` (see [`StateView::decode_versions`]).
    pub fn decode_versions<T: for<'de> Deserialize<'de>>(
        &self,
        model: &str,
        versions: RangeInclusive<u32>,
    ) -> Result<T, ForecastError> {
        self.view().decode_versions(model, versions)
    }

    /// Encodes `state` as written by `model` at `version`.
    pub fn encode<T: Serialize>(
        model: &str,
        version: u32,
        state: &T,
    ) -> Result<Self, ForecastError> {
        Ok(ModelState {
            model: model.to_owned(),
            version,
            state: serde_json::to_value(state).map_err(|source| ForecastError::Malformed {
                model: model.to_owned(),
                source,
            })?,
        })
    }
}

/// A saved state borrowed from wherever it is held: an ensemble's members are restored
/// from inside its own state's tree this way, without copying them out
/// ([`ForecasterFactory::restore_view`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateView<'a> {
    /// The model family ([`ModelState::model`]).
    pub model: &'a str,
    /// The state's format version ([`ModelState::version`]).
    pub version: u32,
    /// The state itself ([`ModelState::state`]).
    pub state: &'a serde_json::Value,
}

impl StateView<'_> {
    /// The state as an owned [`ModelState`] (a copy of the tree).
    pub fn to_model_state(&self) -> ModelState {
        ModelState {
            model: self.model.to_owned(),
            version: self.version,
            state: self.state.clone(),
        }
    }

    /// Decodes `state` as `T` after checking it was written by `model` at `version`.
    pub fn decode<T: for<'de> Deserialize<'de>>(
        &self,
        model: &str,
        version: u32,
    ) -> Result<T, ForecastError> {
        self.decode_versions(model, version..=version)
    }

    /// Decodes `state` as `T` after checking it was written by `model` at one of
    /// `versions` (the last being the one this build writes): a family whose layout
    /// changed keeps reading its older states, through a `T` that accepts both layouts.
    /// A malformed state's error names the field that failed, e.g. `series.cpu.value`.
    pub fn decode_versions<T: for<'de> Deserialize<'de>>(
        &self,
        model: &str,
        versions: RangeInclusive<u32>,
    ) -> Result<T, ForecastError> {
        if self.model != model {
            return Err(ForecastError::WrongModel {
                expected: model.to_owned(),
                found: self.model.to_owned(),
            });
        }
        if !versions.contains(&self.version) {
            return Err(ForecastError::UnsupportedVersion {
                model: model.to_owned(),
                found: self.version,
                supported: *versions.end(),
            });
        }
        // Read in place, not from a copy: copying a large state's tree cost as much as
        // parsing its text.
        T::deserialize(self.state).map_err(|first| {
            // Decoded again to find where it failed: tracking the path costs time every
            // decode would pay, and only a failed one needs it.
            let source = match serde_path_to_error::deserialize::<_, T>(self.state) {
                Err(e) => match e.path().to_string() {
                    path if path.is_empty() || path == "." => first,
                    path => <serde_json::Error as serde::de::Error>::custom(format!(
                        "{path}: {}",
                        e.inner()
                    )),
                },
                Ok(_) => first,
            };
            ForecastError::Malformed {
                model: model.to_owned(),
                source,
            }
        })
    }
}

/// One model's state for one workload.
pub trait Forecaster: Send + Debug {
    /// The model family's name (shown on every decision it drives).
    fn name(&self) -> &'static str;

    /// Learns from one sample. Samples arrive in time order; each is seen once.
    fn observe(&mut self, sample: &Sample);

    /// Forecasts every modelled resource at each of `horizons_s` (seconds after `now`,
    /// positive and increasing). `None` until the model has seen enough to say anything.
    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast>;

    /// The distribution of one resource at one horizon: what [`Forecaster::forecast`]
    /// would say for it. The ensemble asks every member this at every sample, so models
    /// that can answer without building a whole forecast should override it.
    fn quantiles(&self, now: Timestamp, horizon_s: u32, resource: Resource) -> Option<Quantiles> {
        self.forecast(now, &[horizon_s])?
            .at(resource, horizon_s)
            .copied()
    }

    /// The learned state, for the profile store.
    fn save(&self) -> Result<ModelState, ForecastError>;
}

/// A model family with its settings: makes and restores per-workload forecasters.
pub trait ForecasterFactory: Send + Sync + Debug {
    /// The family's name.
    fn name(&self) -> &'static str;

    /// A forecaster that has seen nothing.
    fn create(&self) -> Box<dyn Forecaster>;

    /// A forecaster continuing from a saved state.
    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError>;

    /// [`ForecasterFactory::restore`] from a borrowed state. The default copies it into a
    /// [`ModelState`]; this crate's families read it in place, so restoring an ensemble
    /// (whose members' states sit inside its own) copies nothing.
    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore(&state.to_model_state())
    }
}
