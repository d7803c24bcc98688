//! The simplest predictive rule: the forecast quantile that meets the policy's target risk,
//! plus the policy's headroom. It is what the engine runs until the forecasting work brings
//! the real allocator, and a floor any cleverer rule must beat.

use presage_core::{Limits, Reason, Resource, ResourceMap, WorkloadId};

use crate::{AllocationInput, Allocator, AllocatorFactory, Proposal};

/// Settings of [`MarginAllocator`].
#[derive(Debug, Clone, PartialEq)]
pub struct MarginConfig {
    /// The resources it sets limits on.
    pub resources: Vec<Resource>,
    /// On an OOM kill, memory is raised to at least the observed usage × this.
    pub oom_bump: f64,
    /// Headroom over the forecast quantile; `None` uses the workload policy's.
    pub headroom: Option<f64>,
}

impl Default for MarginConfig {
    fn default() -> Self {
        MarginConfig {
            resources: vec![Resource::Cpu, Resource::Memory],
            oom_bump: 1.2,
            headroom: Some(0.10),
        }
    }
}

/// Forecast quantile at the target risk, plus headroom.
#[derive(Debug, Clone, Default)]
pub struct MarginAllocator {
    config: MarginConfig,
}

impl MarginAllocator {
    /// The rule with `config`.
    pub fn new(config: MarginConfig) -> Self {
        MarginAllocator { config }
    }
}

impl AllocatorFactory for MarginAllocator {
    fn name(&self) -> &'static str {
        "margin"
    }

    fn uses_forecast(&self) -> bool {
        true
    }

    fn create(&self, _id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        Box::new(self.clone())
    }
}

impl Allocator for MarginAllocator {
    fn name(&self) -> &'static str {
        "margin"
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        let forecast = input.forecast?;
        let mut limits = *input.current;
        let mut risk = ResourceMap::none();
        let mut raised = false;
        let mut lowered = false;
        for &resource in &self.config.resources {
            let Some(q) = forecast.peak_within(resource, input.horizon_s) else {
                continue;
            };
            let headroom = self.config.headroom.unwrap_or(input.policy.headroom);
            let mut want = q.value_at(1.0 - input.policy.target_risk) * (1.0 + headroom);
            if resource == Resource::Memory
                && input.sample.events().oom_kills > 0
                && let Some(used) = input.sample.usage().memory_bytes()
            {
                want = want.max(used * self.config.oom_bump);
            }
            // An idle forecast still asks for the smallest limit; the safety rules raise it
            // to the floor.
            if limits
                .set_hard(resource, want.max(f64::MIN_POSITIVE))
                .is_err()
            {
                continue;
            }
            match input.current.hard(resource) {
                Some(old) if want > old => raised = true,
                Some(old) if want < old => lowered = true,
                _ => {}
            }
            risk.set(resource, forecast.risk(resource, want, input.horizon_s));
        }
        let reason = if input.sample.events().oom_kills > 0 {
            Reason::OomRepair
        } else if raised {
            Reason::ProactiveRaise
        } else if lowered {
            Reason::Release
        } else {
            Reason::Initial
        };
        Some(Proposal {
            limits,
            reason,
            risk,
            model: forecast.model().to_owned().into(),
        })
    }
}
