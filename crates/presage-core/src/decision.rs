use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Limits, ResourceMap, Timestamp, WorkloadId};

/// Why the allocator moved a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First limits for a newly adopted workload.
    Initial,
    /// Raised ahead of forecast demand.
    ProactiveRaise,
    /// Raised because current demand is at or near the limit.
    ReactiveRaise,
    /// Lowered after the forecast demand stayed below for the hold period.
    Release,
    /// Raised at once after an OOM kill.
    OomRepair,
    /// Raised at once after sustained CPU throttling.
    ThrottleRepair,
    /// Cut to fit the node's capacity (weighted max-min fair share).
    Capacity,
    /// Cut to fit the workload's budget.
    Budget,
    /// Recomputed by a baseline recommender's own rule.
    Recommendation,
    /// Set by an operator's override.
    Override,
    /// Restored to the limits the workload had before presage adopted it.
    Restore,
    /// Lowered by the anomaly responder.
    AnomalyResponse,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Initial => "initial",
            Reason::ProactiveRaise => "proactive_raise",
            Reason::ReactiveRaise => "reactive_raise",
            Reason::Release => "release",
            Reason::OomRepair => "oom_repair",
            Reason::ThrottleRepair => "throttle_repair",
            Reason::Capacity => "capacity",
            Reason::Budget => "budget",
            Reason::Recommendation => "recommendation",
            Reason::Override => "override",
            Reason::Restore => "restore",
            Reason::AnomalyResponse => "anomaly_response",
        })
    }
}

/// A change of a workload's limits, with why, at what risk, and by which model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The workload.
    pub workload: WorkloadId,
    /// When the decision was made (the tick's `now`).
    pub at: Timestamp,
    /// Limits before.
    pub old: Limits,
    /// Limits decided.
    pub new: Limits,
    /// Why.
    pub reason: Reason,
    /// Per resource, the estimated probability that usage exceeds the *new* limit within
    /// the decision horizon (absent when the policy has no forecast).
    pub risk: ResourceMap<Option<f64>>,
    /// The model (or baseline) whose output the limits come from.
    pub model: Cow<'static, str>,
    /// The workload's behavioural score (0–100, 50 neutral) when the decision was made,
    /// so every decision shows how the workload was behaving. Absent in decisions
    /// recorded before it was kept, and where no score is known (a restore on shutdown).
    #[serde(default)]
    pub behavior_score: Option<f64>,
}

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording.
    Info,
    /// Worth a look.
    Warning,
    /// Worth acting on.
    Critical,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Usage left the forecast envelope.
    OutsideEnvelope,
    /// The anomaly score crossed its threshold.
    Anomaly,
    /// Memory grows steadily (a leak).
    MemoryLeak,
    /// The workload runs far more processes than ever before (a fork bomb).
    ProcessExplosion,
    /// The workload was OOM-killed.
    OomKill,
    /// The node cannot hold the predicted demand; more capacity is needed.
    CapacityShortfall,
    /// The actuator could not apply a decision.
    ActuationFailed,
}

/// Something about a workload that an operator or the responder should know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The workload.
    pub workload: WorkloadId,
    /// When it was raised.
    pub at: Timestamp,
    /// What it is about.
    pub kind: AlertKind,
    /// How serious.
    pub severity: Severity,
    /// The score that triggered it (its meaning depends on `kind`).
    pub score: f64,
    /// A sentence for humans.
    pub message: String,
}
