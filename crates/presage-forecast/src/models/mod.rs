//! The forecasting models, one module per family. Each is a [`crate::ForecasterFactory`]
//! whose forecasters observe one workload's samples and forecast quantiles per horizon.

pub mod histogram_model;
pub mod holt_winters;
pub mod periodic;
pub mod segmented;
pub mod window;
