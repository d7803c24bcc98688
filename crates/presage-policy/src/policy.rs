use presage_core::{Resource, ResourceMap};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::anomaly::AnomalyPolicy;

/// The smallest CPU quota presage sets, in cores: the kernel's minimum quota is 1 ms per
/// 100 ms period.
pub const MIN_CPU_CORES: f64 = 0.01;

/// The smallest memory hard limit presage sets, in bytes: below a few MiB no process
/// starts, so a lower limit is a kill, not an allocation.
pub const MIN_MEMORY_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// A policy setting that cannot be used, naming the field and the value.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("policy field {field} = {value}: {reason}")]
pub struct PolicyError {
    /// The field.
    pub field: String,
    /// The value given.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn bad(field: impl Into<String>, value: impl ToString, reason: &'static str) -> PolicyError {
    PolicyError {
        field: field.into(),
        value: value.to_string(),
        reason,
    }
}

/// What the operator allows for one workload: bounds, risk appetite, and how fast limits
/// may move. Defaults are safe for a workload nobody has configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadPolicy {
    /// Lowest limit per resource, in its unit.
    pub min: ResourceMap<Option<f64>>,
    /// Highest limit per resource, in its unit.
    pub max: ResourceMap<Option<f64>>,
    /// Accepted probability that usage exceeds the limit within the decision horizon.
    pub target_risk: f64,
    /// Extra fraction added on top of the limit the allocator chose (0 by default: the
    /// allocator's price already buys the risk the operator asked for).
    pub headroom: f64,
    /// Relative change below which a limit is left alone (avoids churn).
    pub hysteresis: f64,
    /// Memory hard limit is never set below usage × (1 + this)…
    pub memory_margin: f64,
    /// …nor below usage + this many bytes.
    pub memory_margin_bytes: f64,
    /// Seconds the forecast must stay below the limit before it is lowered.
    pub release_hold_s: u32,
    /// Priority weight when the node's capacity binds.
    pub weight: f64,
    /// Multiplier on the weight for VIP workloads (seed 004).
    pub vip_multiplier: f64,
    /// Never frozen or killed by the anomaly responder.
    pub protected: bool,
    /// A resource budget: a hard ceiling no limit ever exceeds, whatever the forecast.
    pub budget: Option<Budget>,
    /// How the anomaly response ladder treats this workload's alerts.
    pub response: crate::ResponsePolicy,
    /// The anomaly scorer's thresholds (defaults when absent).
    pub anomaly: AnomalyPolicy,
}

/// A workload instance's resource budget (seed 000's "resource budget").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// CPU-seconds the instance may use per window.
    #[serde(default)]
    pub cpu_seconds: Option<f64>,
    /// The window the CPU budget renews over, in seconds.
    #[serde(default = "default_budget_window")]
    pub window_s: u32,
    /// Memory ceiling in bytes.
    #[serde(default)]
    pub memory_bytes: Option<f64>,
}

fn default_budget_window() -> u32 {
    3600
}

impl Default for WorkloadPolicy {
    fn default() -> Self {
        WorkloadPolicy {
            min: ResourceMap::none(),
            max: ResourceMap::none(),
            target_risk: 0.02,
            headroom: 0.0,
            hysteresis: 0.05,
            memory_margin: 0.10,
            memory_margin_bytes: 16.0 * 1024.0 * 1024.0,
            release_hold_s: 900,
            weight: 1.0,
            vip_multiplier: 1.0,
            protected: false,
            budget: None,
            response: crate::ResponsePolicy::default(),
            anomaly: AnomalyPolicy::default(),
        }
    }
}

impl WorkloadPolicy {
    /// Checks every field; the engine refuses a workload whose policy does not validate.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for r in Resource::ALL {
            for (side, v) in [("min", self.min[r]), ("max", self.max[r])] {
                if let Some(v) = v
                    && !(v.is_finite() && v > 0.0)
                {
                    return Err(bad(format!("{side}.{r}"), v, "must be a positive number"));
                }
            }
            if let (Some(lo), Some(hi)) = (self.min[r], self.max[r])
                && lo > hi
            {
                return Err(bad(format!("min.{r}"), lo, "is above max"));
            }
        }
        let fractions = [
            ("target_risk", self.target_risk, 0.0, 1.0),
            ("headroom", self.headroom, 0.0, 10.0),
            ("hysteresis", self.hysteresis, 0.0, 1.0),
            ("memory_margin", self.memory_margin, 0.0, 10.0),
        ];
        for (field, v, lo, hi) in fractions {
            if !(v.is_finite() && (lo..=hi).contains(&v)) {
                return Err(bad(field, v, "is outside its allowed range"));
            }
        }
        if !(self.target_risk > 0.0 && self.target_risk < 1.0) {
            return Err(bad("target_risk", self.target_risk, "must be in (0, 1)"));
        }
        if !(self.memory_margin_bytes.is_finite() && self.memory_margin_bytes >= 0.0) {
            return Err(bad(
                "memory_margin_bytes",
                self.memory_margin_bytes,
                "must be a non-negative number of bytes",
            ));
        }
        for (field, v) in [
            ("weight", self.weight),
            ("vip_multiplier", self.vip_multiplier),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(field, v, "must be a positive number"));
            }
        }
        self.response.validate()?;
        self.anomaly.validate()
    }

    /// The weight used when capacity binds: weight × VIP multiplier.
    pub fn effective_weight(&self) -> f64 {
        self.weight * self.vip_multiplier
    }

    /// Clamps `value` into this policy's [min, max] for `resource`; CPU and memory never go
    /// below [`MIN_CPU_CORES`] and [`MIN_MEMORY_BYTES`] whatever the policy says.
    pub fn clamp(&self, resource: Resource, value: f64) -> f64 {
        let floor = match resource {
            Resource::Cpu => MIN_CPU_CORES,
            Resource::Memory => MIN_MEMORY_BYTES,
            _ => 0.0,
        };
        let mut v = value.max(floor);
        if let Some(lo) = self.min[resource] {
            v = v.max(lo);
        }
        if let Some(hi) = self.ceiling(resource) {
            v = v.min(hi);
        }
        v
    }

    /// The highest limit allowed for `resource`: the policy's max, or the memory budget
    /// when lower.
    pub fn ceiling(&self, resource: Resource) -> Option<f64> {
        let budget = match (resource, &self.budget) {
            (Resource::Memory, Some(b)) => b.memory_bytes,
            _ => None,
        };
        match (self.max[resource], budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The lowest memory hard limit allowed while the workload uses `usage_bytes`.
    pub fn memory_floor(&self, usage_bytes: f64) -> f64 {
        usage_bytes + (usage_bytes * self.memory_margin).max(self.memory_margin_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(WorkloadPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Mutation = Box<dyn Fn(&mut WorkloadPolicy)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("target_risk", Box::new(|p| p.target_risk = 0.0)),
            ("target_risk", Box::new(|p| p.target_risk = f64::NAN)),
            ("headroom", Box::new(|p| p.headroom = -0.1)),
            ("hysteresis", Box::new(|p| p.hysteresis = 2.0)),
            ("weight", Box::new(|p| p.weight = 0.0)),
            ("vip_multiplier", Box::new(|p| p.vip_multiplier = -1.0)),
            (
                "memory_margin_bytes",
                Box::new(|p| p.memory_margin_bytes = -1.0),
            ),
            (
                "min.cpu",
                Box::new(|p| p.min.set(Resource::Cpu, Some(-1.0))),
            ),
            (
                "min.memory",
                Box::new(|p| {
                    p.min.set(Resource::Memory, Some(10.0));
                    p.max.set(Resource::Memory, Some(5.0));
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut p = WorkloadPolicy::default();
            mutate(&mut p);
            let err = p.validate().expect_err(field);
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<WorkloadPolicy>(r#"{"headrom":0.2}"#);
        assert!(err.is_err_and(|e| e.to_string().contains("headrom")));
    }
}
