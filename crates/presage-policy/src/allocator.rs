use std::borrow::Cow;
use std::fmt::Debug;

use presage_core::{Forecast, Limits, Reason, ResourceMap, Sample, Timestamp, WorkloadId};

use crate::WorkloadPolicy;

/// What an allocator sees when asked for limits.
#[derive(Debug, Clone, Copy)]
pub struct AllocationInput<'a> {
    /// The decision time; nothing after it has been observed.
    pub now: Timestamp,
    /// The latest sample of the workload (usage as measured: CPU above a quota shows as
    /// throttling, not as usage).
    pub sample: &'a Sample,
    /// The forecast made at `now`, when the engine runs a forecaster for this workload.
    pub forecast: Option<&'a Forecast>,
    /// The limits in force.
    pub current: &'a Limits,
    /// The workload's policy.
    pub policy: &'a WorkloadPolicy,
    /// How far ahead a decision must look, in seconds: the time until the next decision
    /// plus the actuation delay. A limit set now must hold until then.
    pub horizon_s: u32,
    /// Seconds of this workload's behaviour its profile has seen, counting a profile
    /// restored from earlier runs of the same code (known code needs no warm-up).
    pub history_s: f64,
}

/// Limits an allocator proposes, before the safety rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The proposed limits (resources left unset are left as they are).
    pub limits: Limits,
    /// Why.
    pub reason: Reason,
    /// Per resource, the probability of exceeding the proposed limit within the horizon.
    pub risk: ResourceMap<Option<f64>>,
    /// The model or rule the limits come from.
    pub model: Cow<'static, str>,
}

/// One workload's allocation rule.
pub trait Allocator: Send + Debug {
    /// The rule's name (`vpa`, `presage`, …).
    fn name(&self) -> &'static str;

    /// Sees every sample of the workload, in time order, with the limits that were in
    /// force while it was taken. Rules that keep their own history update it here.
    fn observe(&mut self, _sample: &Sample, _limits: &Limits) {}

    /// Proposes limits, or `None` to keep the current ones.
    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal>;
}

/// An allocation rule with its settings: makes one [`Allocator`] per workload.
pub trait AllocatorFactory: Send + Sync + Debug {
    /// The rule's name.
    fn name(&self) -> &'static str;

    /// Whether the rule reads the forecast (if not, the engine runs no forecaster).
    fn uses_forecast(&self) -> bool;

    /// An allocator for workload `id`, whose limits start at `initial` (the provisioned
    /// allocation of a trace, or what a live workload had when adopted).
    fn create(&self, id: &WorkloadId, initial: &Limits) -> Box<dyn Allocator>;
}
