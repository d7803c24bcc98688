//! Forecasting for presage.
//!
//! A [`Forecaster`] is one model's state for one workload: it observes that workload's
//! samples one at a time (O(1) each for the online models) and, when asked, forecasts
//! every resource it models as quantiles per horizon. A [`ForecasterFactory`] is a model
//! family with its settings; it makes a fresh forecaster per workload or restores one from
//! a saved [`ModelState`] (which is how profiles outlive a process); [`merge_states`]
//! joins two hosts' states of a family and [`decay_state`] weakens one into a prior.

mod buckets;
pub mod burst;
mod codec;
pub mod demand;
mod ensemble;
mod ewma;
mod histogram;
pub mod models;
pub mod profile_ops;
mod residual;
mod traits;

pub use buckets::ExponentialBuckets;
pub use burst::{BurstClassifier, BurstClassifiers, BurstConfig, BurstFeatures};
pub use ensemble::{Ensemble, EnsembleConfig};
pub use ewma::{Ewma, EwmaConfig, NORMAL_Z, normal_quantiles};
pub use histogram::{DecayingHistogram, EPSILON as HISTOGRAM_EPSILON, HistogramCheckpoint};
pub use models::histogram_model::{
    HistogramModel, HistogramModelConfig, forecast_from, resource_layout,
};
pub use models::holt_winters::{HoltWinters, HoltWintersConfig, ResidualDistribution};
pub use models::periodic::{Periodic, PeriodicConfig};
pub use models::segmented::{DayGrouping, Segmented, SegmentedConfig};
pub use models::window::{MovingWindow, WindowConfig};
pub use profile_ops::{decay_state, merge_states};
pub use residual::{Residual, ResidualConfig};
pub use traits::{ForecastError, Forecaster, ForecasterFactory, ModelState, StateView};
