use std::fmt::Debug;

use presage_core::{
    Alert, Decision, Fingerprint, Limits, ResourceMap, Sample, Timestamp, Usage, WorkloadId,
    WorkloadKey,
};
use presage_forecast::ModelState;
use presage_policy::{Rung, WorkloadPolicy};

use crate::ResponseEvent;
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

/// Where a workload's starting profile came from (DESIGN.md "Identity and profiles").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PriorSource {
    /// The profile of the same key: this code, version, inputs and user ran before.
    Exact,
    /// The latest profile of an earlier version of the same code (same inputs and user),
    /// taken as a decayed prior.
    PreviousVersion {
        /// The version it was learned on.
        code_version: String,
    },
    /// The profile of the most similar known code by static fingerprint.
    Neighbour {
        /// The neighbour's code id.
        code_id: String,
        /// [`Fingerprint::similarity`] of the two, in [0, 1].
        similarity: f64,
    },
}

/// A starting profile and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    /// The profile (its key is the one it was learned under, not the new workload's).
    pub profile: Profile,
    /// Where it came from.
    pub source: PriorSource,
}

/// One run of a workload, from adoption to its end, for the executions table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// The running instance.
    pub workload: WorkloadId,
    /// What it was.
    pub key: WorkloadKey,
    /// When it was adopted.
    pub started: Timestamp,
    /// When it ended (or was released).
    pub ended: Timestamp,
    /// Its exit status, when known (a `presage run` child; 128+signal when killed).
    pub exit_status: Option<i32>,
    /// Samples observed.
    pub samples: u64,
    /// The largest usage seen, per resource.
    pub peak: ResourceMap<Option<f64>>,
    /// Usage integrated over the run (core-seconds, byte-seconds, bytes…), per resource.
    pub total: ResourceMap<Option<f64>>,
    /// Where its starting profile came from, if it had one.
    pub prior: Option<PriorSource>,
    /// How good that prior turned out: the prior's first forecast of the 90th percentile
    /// against the run's observed 90th percentile, as |predicted − observed| / observed,
    /// averaged over CPU and memory. `None` without a prior.
    pub prior_error: Option<f64>,
}

/// One tick's writes, committed together ("writes are batched per tick").
#[derive(Debug, Clone, Copy, Default)]
pub struct TickWrite<'a> {
    /// The samples the tick accepted (empty unless the engine records samples).
    pub samples: &'a [Sample],
    /// The decisions taken.
    pub decisions: &'a [Decision],
    /// The alerts raised.
    pub alerts: &'a [Alert],
    /// What the responder did about them (the response audit trail).
    pub responses: &'a [ResponseEvent],
}

impl TickWrite<'_> {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
            && self.decisions.is_empty()
            && self.alerts.is_empty()
            && self.responses.is_empty()
    }
}

/// How long samples are kept at each resolution: raw, then 1-minute, then 5-minute
/// means and maxima.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Raw samples, seconds.
    pub raw_s: u64,
    /// 1-minute roll-ups, seconds.
    pub minute_s: u64,
    /// 5-minute roll-ups, seconds.
    pub five_minute_s: u64,
}

impl Default for Retention {
    /// Raw for a day, 1-minute for a week, 5-minute for 90 days (the example).
    fn default() -> Self {
        Retention {
            raw_s: 86_400,
            minute_s: 7 * 86_400,
            five_minute_s: 90 * 86_400,
        }
    }
}

/// What a retention pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw samples rolled up into 1-minute rows and deleted.
    pub raw_rolled: u64,
    /// 1-minute rows rolled up into 5-minute rows and deleted.
    pub minute_rolled: u64,
    /// 5-minute rows past their retention, deleted.
    pub expired: u64,
}

/// Where profiles, executions, samples, decisions and alerts are kept.
pub trait ProfileStore: Send + Debug {
    /// The profile of `key`, if one was saved.
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError>;

    /// The best starting profile for `key`: its own, else the latest of an earlier
    /// version of the same code (same inputs and user), else the nearest known code by
    /// `fingerprint` when one is similar enough. Stores without priors only look up
    /// the key.
    fn load_prior(
        &mut self,
        key: &WorkloadKey,
        _fingerprint: Option<&Fingerprint>,
    ) -> Result<Option<Prior>, StoreError> {
        Ok(self.load(key)?.map(|profile| Prior {
            profile,
            source: PriorSource::Exact,
        }))
    }

    /// Saves profiles (replacing earlier versions of the same keys).
    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError>;

    /// Appends one tick's samples, decisions, alerts and responses in one transaction.
    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError>;

    /// Remembers the static fingerprint of a code id (for cold starts of similar code).
    fn save_fingerprint(
        &mut self,
        _code_id: &str,
        _fingerprint: &Fingerprint,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    /// Appends one finished run.
    fn record_execution(&mut self, _execution: &Execution) -> Result<(), StoreError> {
        Ok(())
    }

    /// Rolls samples up and drops what is past `retention`, as of `now`.
    fn apply_retention(
        &mut self,
        _now: Timestamp,
        _retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        Ok(RetentionReport::default())
    }
}

/// What the responder decided to do about an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Response {
    /// Kept in the audit trail only.
    Record,
    /// POST the alert to the operator's webhook. The engine does no I/O: it reports the
    /// response, and the harness that owns the network (the agent) delivers it after the
    /// tick.
    Webhook,
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

impl Response {
    /// The ladder rung this response belongs to.
    pub fn rung(&self) -> Rung {
        match self {
            Response::Record => Rung::Record,
            Response::Webhook => Rung::Webhook,
            Response::Throttle { .. } => Rung::Throttle,
            Response::Freeze => Rung::Freeze,
            Response::Kill => Rung::Kill,
        }
    }
}

/// What a responder sees of the workload an alert is about.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// The alert.
    pub alert: &'a Alert,
    /// The workload's policy (its `response` settings, whether it is protected).
    pub policy: &'a WorkloadPolicy,
    /// The limits in force.
    pub limits: &'a Limits,
    /// The usage of the latest sample.
    pub usage: &'a Usage,
    /// The behavioural score (0–100, 50 neutral).
    pub behavior_score: f64,
}

/// Decides what to do about alerts (the anomaly ladder lives behind this).
pub trait Responder: Send + Debug {
    /// The responses to one alert. The engine carries them out and never freezes or
    /// kills a protected workload, whatever is returned.
    fn respond(&mut self, input: &ResponseInput<'_>) -> Vec<Response>;

    /// Forgets what the responder remembers about a workload that is no longer managed.
    fn forget(&mut self, _workload: &WorkloadId) {}
}

/// A responder that only records alerts.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordOnly;

impl Responder for RecordOnly {
    fn respond(&mut self, _input: &ResponseInput<'_>) -> Vec<Response> {
        vec![Response::Record]
    }
}
