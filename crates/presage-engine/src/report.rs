use presage_core::{Alert, Decision, Timestamp, WorkloadId};
use serde::Serialize;

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
    /// What the responder did, per alert (same order as `alerts`).
    pub responses: Vec<(WorkloadId, Response)>,
    /// Problems that did not stop the tick.
    pub issues: Vec<Issue>,
}
