use std::fmt::Debug;

use presage_core::{Alert, Decision, Limits, Sample, Timestamp, WorkloadId, WorkloadKey};
use presage_forecast::ModelState;
use presage_policy::WorkloadPolicy;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Samples observed up to `now`, handed to [`crate::Engine::tick`] together.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The time of the tick.
    pub now: Timestamp,
    /// What was observed since the previous batch.
    pub samples: Vec<Sample>,
}

/// Why a source could not produce its next batch.
#[derive(Debug, Error)]
#[error("{context}: {source}")]
pub struct SourceError {
    /// Where (a file and line, a cgroup path).
    pub context: String,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where samples come from: cgroups on a live host, or a recorded trace.
pub trait Source {
    /// The next batch, or `None` when the source is exhausted.
    fn next_batch(&mut self) -> Option<Result<Batch, SourceError>>;
}

/// Why an actuator could not apply a decision.
#[derive(Debug, Error)]
pub enum ActuationError {
    /// The workload is gone (a cgroup that vanished is an absence, not a crash).
    #[error("workload {0} no longer exists")]
    Gone(WorkloadId),
    /// The actuator cannot do this kind of action.
    #[error("{action} is not supported by this actuator")]
    Unsupported {
        /// The action.
        action: &'static str,
    },
    /// Writing the limit failed; the message names the path and value.
    #[error("applying limits to {workload}: {message}")]
    Failed {
        /// The workload.
        workload: WorkloadId,
        /// What failed, with the path and value.
        message: String,
    },
}

/// Applies decisions to workloads.
pub trait Actuator: Send + Debug {
    /// Applies `decision.new` to `decision.workload` and returns the limits actually in
    /// effect afterwards (the kernel may round, a simulator may defer).
    fn apply(&mut self, decision: &Decision) -> Result<Limits, ActuationError>;

    /// Freezes (`true`) or thaws (`false`) the workload.
    fn freeze(&mut self, _workload: &WorkloadId, _frozen: bool) -> Result<(), ActuationError> {
        Err(ActuationError::Unsupported { action: "freeze" })
    }

    /// Kills every process of the workload.
    fn kill(&mut self, _workload: &WorkloadId) -> Result<(), ActuationError> {
        Err(ActuationError::Unsupported { action: "kill" })
    }
}

/// A workload's learned behaviour, stored under what the workload *is*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The identity.
    pub key: WorkloadKey,
    /// Bumped on every save.
    pub version: u64,
    /// Samples learned from, over the profile's whole life.
    pub samples: u64,
    /// When it was last saved.
    pub updated_at: Timestamp,
    /// The forecaster's state, when the policy runs one.
    pub model: Option<ModelState>,
}

/// Why the profile store failed.
#[derive(Debug, Error)]
#[error("profile store: {context}: {source}")]
pub struct StoreError {
    /// What the store was doing (and on which key or file).
    pub context: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where profiles, decisions and alerts are kept.
pub trait ProfileStore: Send + Debug {
    /// The profile of `key`, if one was saved.
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError>;

    /// Saves profiles (replacing earlier versions of the same keys).
    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError>;

    /// Appends one tick's decisions and alerts to the audit trail.
    fn record(&mut self, decisions: &[Decision], alerts: &[Alert]) -> Result<(), StoreError>;
}

/// What the responder decided to do about an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Response {
    /// Kept in the audit trail only.
    Record,
    /// Lower the CPU quota to this many cores.
    Throttle {
        /// The new quota.
        cpu_cores: f64,
    },
    /// Freeze the workload.
    Freeze,
    /// Kill the workload.
    Kill,
}

/// Decides what to do about alerts (the anomaly ladder lives behind this).
pub trait Responder: Send + Debug {
    /// The responses to `alert` on a workload with `policy`. The engine carries them out
    /// and never freezes or kills a protected workload, whatever is returned.
    fn respond(&mut self, alert: &Alert, policy: &WorkloadPolicy) -> Vec<Response>;
}

/// A responder that only records alerts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordOnly;

impl Responder for RecordOnly {
    fn respond(&mut self, _alert: &Alert, _policy: &WorkloadPolicy) -> Vec<Response> {
        vec![Response::Record]
    }
}
