use thiserror::Error;

/// Why a core value could not be built. Every variant names the offending field and value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A quantity was NaN or infinite.
    #[error("{what} must be a finite number, got {value}")]
    NotFinite {
        /// The field.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A quantity that cannot be negative was negative.
    #[error("{what} must not be negative, got {value}")]
    Negative {
        /// The field.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A value was outside its allowed range.
    #[error("{what} must be in {range}, got {value}")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// The allowed range, for the message.
        range: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Quantiles were not non-decreasing.
    #[error("quantiles out of order: {lower_name}={lower} > {upper_name}={upper}")]
    QuantilesOutOfOrder {
        /// The lower quantile's name.
        lower_name: &'static str,
        /// Its value.
        lower: f64,
        /// The upper quantile's name.
        upper_name: &'static str,
        /// Its value.
        upper: f64,
    },
    /// An identity field was empty.
    #[error("{what} must not be empty")]
    Empty {
        /// The field.
        what: &'static str,
    },
    /// An envelope's low bound was above its high bound.
    #[error("envelope low {low} is above high {high}")]
    EnvelopeInverted {
        /// The low bound.
        low: f64,
        /// The high bound.
        high: f64,
    },
    /// A name did not match any known variant.
    #[error("unknown {what} {name:?} (expected one of: {expected})")]
    UnknownName {
        /// What kind of name.
        what: &'static str,
        /// The name given.
        name: String,
        /// The accepted names.
        expected: &'static str,
    },
    /// Two limits contradict each other.
    #[error("{0}")]
    Inconsistent(String),
}
