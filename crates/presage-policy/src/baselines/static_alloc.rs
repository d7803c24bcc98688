//! The baseline users have today: the provisioned allocation, never changed.

use presage_core::{Limits, Reason, Resource, ResourceMap, WorkloadId};

use crate::{AllocationInput, Allocator, AllocatorFactory, PolicyError, Proposal};

/// Keeps the provisioned limits, scaled by a constant (1.0 = as provisioned).
#[derive(Debug, Clone, Copy)]
pub struct StaticAllocator {
    scale: f64,
}

impl StaticAllocator {
    /// The provisioned allocation × `scale` (positive).
    pub fn new(scale: f64) -> Result<Self, PolicyError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(PolicyError {
                field: "static scale".into(),
                value: scale.to_string(),
                reason: "must be a positive number",
            });
        }
        Ok(StaticAllocator { scale })
    }
}

#[derive(Debug)]
struct Fixed {
    limits: Limits,
    // At scale 1 the workload already runs under its allocation: proposing it again
    // would only invite the safety rules to adjust it, which a static limit never is.
    proposed: bool,
}

impl AllocatorFactory for StaticAllocator {
    fn name(&self) -> &'static str {
        "static"
    }

    fn uses_forecast(&self) -> bool {
        false
    }

    fn create(&self, _id: &WorkloadId, initial: &Limits) -> Box<dyn Allocator> {
        let mut limits = *initial;
        for resource in Resource::ALL {
            if let Some(v) = initial.hard(resource) {
                // A positive value times a positive scale stays valid.
                let _ = limits.set_hard(resource, v * self.scale);
            }
        }
        Box::new(Fixed {
            limits,
            proposed: self.scale == 1.0,
        })
    }
}

impl Allocator for Fixed {
    fn name(&self) -> &'static str {
        "static"
    }

    fn allocate(&mut self, _input: &AllocationInput<'_>) -> Option<Proposal> {
        if self.proposed {
            return None;
        }
        self.proposed = true;
        Some(Proposal {
            limits: self.limits,
            reason: Reason::Initial,
            risk: ResourceMap::none(),
            model: "static".into(),
        })
    }
}
