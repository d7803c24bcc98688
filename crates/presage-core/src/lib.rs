//! presage's vocabulary.
//!
//! Every other crate speaks in these types. They are pure data: no I/O, no clocks, no
//! threads. Units live in the type or in the name (DESIGN.md "Meanings that must be exact"):
//! CPU in cores, memory in bytes, I/O and network in bytes per second, time in UTC
//! milliseconds since the Unix epoch.
//!
//! Constructors that can receive bad input (a negative quantity, a NaN, quantiles out of
//! order, an empty identity) return [`CoreError`] instead of building a value that would
//! poison a model or a limit later; deserialisation goes through the same checks.

mod decision;
mod error;
mod fingerprint;
mod forecast;
mod identity;
mod limits;
mod resource;
mod sample;
mod time;

pub use decision::{Alert, AlertKind, Decision, Reason, Severity};
pub use error::CoreError;
pub use fingerprint::Fingerprint;
pub use forecast::{
    BurstClass, Envelope, Forecast, HorizonForecast, QUANTILE_COUNT, QUANTILE_LEVELS, Quantiles,
};
pub use identity::{WorkloadId, WorkloadKey};
pub use limits::Limits;
pub use resource::{MapEntry, Resource, ResourceMap, Unit};
pub use sample::{Events, Pressure, PressureStall, Sample, Usage};
pub use time::Timestamp;

/// Checks that `value` is a finite, non-negative quantity; `what` names it in the error.
pub fn check_quantity(what: &'static str, value: f64) -> Result<f64, CoreError> {
    if !value.is_finite() {
        return Err(CoreError::NotFinite { what, value });
    }
    if value < 0.0 {
        return Err(CoreError::Negative { what, value });
    }
    Ok(value)
}
