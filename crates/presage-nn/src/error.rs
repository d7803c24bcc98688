use std::path::PathBuf;

use thiserror::Error;

/// Why a model could not be trained, saved or loaded. Every variant names what it was
/// working on: the weights file (or the label given for in-memory bytes), the setting or
/// the tensor.
#[derive(Debug, Error)]
pub enum NnError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The weights are not a readable presage model (not safetensors, no header, a
    /// tensor of the wrong type or size).
    #[error("{origin}: not a usable presage model: {message}")]
    Corrupt {
        /// The file, or the label of the bytes.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The weights are a presage model this build cannot run (another format version,
    /// feature layout or quantile levels).
    #[error("{origin}: incompatible model: {field} is {found}, this build needs {expected}")]
    Incompatible {
        /// The file, or the label of the bytes.
        origin: String,
        /// The header field that differs.
        field: &'static str,
        /// Its value in the file.
        found: String,
        /// What this build supports.
        expected: String,
    },
    /// A training setting is out of range.
    #[error("invalid training setting {field} = {value}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// Its value, as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The traces hold too little usable history to train on.
    #[error("not enough data to train: {0}")]
    NoData(String),
    /// A tensor operation failed during training.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: &'static str,
        /// The cause.
        source: candle_core::Error,
    },
}

/// Attaches a context to candle's errors.
pub(crate) trait CandleContext<T> {
    /// Wraps the error with `context`.
    fn during(self, context: &'static str) -> Result<T, NnError>;
}

impl<T> CandleContext<T> for Result<T, candle_core::Error> {
    fn during(self, context: &'static str) -> Result<T, NnError> {
        self.map_err(|source| NnError::Candle { context, source })
    }
}
