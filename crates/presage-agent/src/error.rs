//! The one error type of the live harness.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What can stop the agent or a supervised run.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The config file (or the embedded defaults) is invalid.
    #[error("config {file}: {message}")]
    Config {
        /// The file.
        file: PathBuf,
        /// What is wrong, naming the field (and line, where TOML knows it).
        message: String,
    },
    /// The config file has problems, each located (`FILE:LINE:COL: key `k`: reason`).
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigErrors),
    /// A file of the agent's own (ledger, log, registration) could not be used.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file had unexpected content: one of the agent's own, or an executable that
    /// claims a format (ELF) it does not parse as.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// cgroupfs refused.
    #[error(transparent)]
    Linux(#[from] presage_linux::LinuxError),
    /// The engine refused.
    #[error(transparent)]
    Engine(#[from] presage_engine::EngineError),
    /// The allocation rule could not be built.
    #[error("policy {name}: {message}")]
    Policy {
        /// The rule.
        name: String,
        /// Why.
        message: String,
    },
    /// A value presage-core refused (an id, a limit).
    #[error(transparent)]
    Core(#[from] presage_core::CoreError),
}
