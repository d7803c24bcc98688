use presage_core::{Fingerprint, Forecast, Limits, Sample, Timestamp, WorkloadId, WorkloadKey};

use presage_forecast::Forecaster;
use presage_policy::{Allocator, BehaviorScore, BudgetTracker, WorkloadPolicy};
use serde::Serialize;

use crate::anomaly::AnomalyState;
use crate::execution::RunTally;
use crate::respond::Frozen;
use crate::respond::ResponseCap;

/// A workload to manage: its instance id, what it is, the limits it has now, its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// The running instance.
    pub id: WorkloadId,
    /// What it is (its profile's key).
    pub key: WorkloadKey,
    /// The limits it runs under when adopted (restored when the agent stops).
    pub limits: Limits,
    /// The operator's policy for it.
    pub policy: WorkloadPolicy,
    /// Its executable's static fingerprint, when known: unknown code starts from the
    /// profile of the most similar known code.
    pub fingerprint: Option<Fingerprint>,
}

/// The engine's state for one managed workload.
#[derive(Debug)]
pub(crate) struct Managed {
    pub(crate) spec: WorkloadSpec,
    pub(crate) limits: Limits,
    pub(crate) forecaster: Option<Box<dyn Forecaster>>,
    pub(crate) allocator: Box<dyn Allocator>,
    pub(crate) forecast: Option<Forecast>,
    pub(crate) score: BehaviorScore,
    pub(crate) anomaly: AnomalyState,
    pub(crate) last_sample: Option<Sample>,
    pub(crate) last_decision_at: Option<Timestamp>,
    pub(crate) samples: u64,
    pub(crate) profile_version: u64,
    pub(crate) profile_samples: u64,
    pub(crate) touched: bool,
    pub(crate) budget: Option<BudgetTracker>,
    pub(crate) run: RunTally,
    /// A CPU ceiling set by the responder's throttle, while it holds.
    pub(crate) response_cap: Option<ResponseCap>,
    /// Set while the responder holds the workload frozen.
    pub(crate) frozen: Option<Frozen>,
    /// An operator's limits and when they expire, held against the allocator.
    pub(crate) override_hold: Option<(Limits, Timestamp)>,
}

/// A read-only view of one managed workload, for reports and the API.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadView<'a> {
    /// The instance.
    pub id: &'a WorkloadId,
    /// What it is.
    pub key: &'a WorkloadKey,
    /// The limits in force.
    pub limits: &'a Limits,
    /// The limits it had when adopted.
    pub adopted_limits: &'a Limits,
    /// The latest forecast.
    pub forecast: Option<&'a Forecast>,
    /// The behavioural score (0–100, 50 neutral).
    pub score: f64,
    /// The latest anomaly score (0–1; 0.5 is a component at its threshold).
    pub anomaly_score: f64,
    /// The latest sample.
    pub last_sample: Option<&'a Sample>,
    /// Samples seen by this instance.
    pub samples: u64,
    /// Its policy.
    pub policy: &'a WorkloadPolicy,
    /// An operator's override in force: its limits and expiry.
    pub override_hold: Option<(Limits, Timestamp)>,
}

impl Managed {
    pub(crate) fn view(&self) -> WorkloadView<'_> {
        WorkloadView {
            id: &self.spec.id,
            key: &self.spec.key,
            limits: &self.limits,
            adopted_limits: &self.spec.limits,
            forecast: self.forecast.as_ref(),
            score: self.score.value(),
            anomaly_score: self.anomaly.score,
            last_sample: self.last_sample.as_ref(),
            samples: self.samples,
            policy: &self.spec.policy,
            override_hold: self.override_hold,
        }
    }
}
