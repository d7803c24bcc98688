use std::fmt;

use presage_core::{Alert, AlertKind, Decision, Timestamp, WorkloadId};
use presage_policy::Rung;
use serde::{Deserialize, Serialize};

use crate::Response;

/// Something that went wrong during a tick without stopping it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// The workload concerned, if one.
    pub workload: Option<WorkloadId>,
    /// What happened, for logs and the API.
    pub message: String,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TickReport {
    /// The tick's time.
    pub now: Timestamp,
    /// Samples taken into the profiles.
    pub samples_used: usize,
    /// Samples dated after `now`, refused: a decision may use only what was observed up
    /// to its time.
    pub samples_from_future: usize,
    /// Samples not newer than the workload's previous sample, refused.
    pub samples_out_of_order: usize,
    /// Workloads seen for the first time in this tick (adopted with default settings).
    pub adopted: Vec<WorkloadId>,
    /// Limit changes applied.
    pub decisions: Vec<Decision>,
    /// Alerts raised.
    pub alerts: Vec<Alert>,
    /// What the responder did, per alert (in the order of `alerts`), with the outcome.
    pub responses: Vec<ResponseEvent>,
    /// Problems that did not stop the tick.
    pub issues: Vec<Issue>,
}

/// How carrying out a response went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Left to the harness after the tick (a webhook: the engine does no I/O).
    Deferred,
    /// Not done on purpose (a protected workload, the policy's bounds).
    Refused,
    /// Tried and failed (the actuator's error is in the message).
    Failed,
}

impl Outcome {
    /// The name in the audit table.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Deferred => "deferred",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One response to one alert, as audited: what was done, at which rung, because of which
/// alert and scores, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEvent {
    /// The workload.
    pub workload: WorkloadId,
    /// When (the tick's time).
    pub at: Timestamp,
    /// The action.
    pub response: Response,
    /// Its rung on the ladder.
    pub rung: Rung,
    /// The alert that caused it.
    pub alert: Alert,
    /// The workload's behavioural score then (0–100, 50 neutral).
    pub behavior_score: f64,
    /// The anomaly detector's score, when the alert came from it.
    pub anomaly_score: Option<f64>,
    /// How it went.
    pub outcome: Outcome,
    /// What happened, for humans (the error when it failed, why when refused).
    pub message: String,
}

/// The anomaly score carried by an alert: its `score` for every kind except the
/// envelope alert (whose score is the behavioural score) and the operational kinds, so a
/// new kind of anomaly alert carries its score into the audit without a change here.
pub fn anomaly_score_of(alert: &Alert) -> Option<f64> {
    match alert.kind {
        AlertKind::OutsideEnvelope
        | AlertKind::OomKill
        | AlertKind::CapacityShortfall
        | AlertKind::ActuationFailed => None,
        _ => Some(alert.score),
    }
}
