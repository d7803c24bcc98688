//! The oracle: knows the demand of the intervals its decision will govern. No real policy
//! can beat it; it is the floor of the slack-vs-violation chart.

use std::collections::HashMap;
use std::sync::Arc;

use presage_core::{Limits, Reason, Resource, ResourceMap, WorkloadId};
use presage_policy::{AllocationInput, Allocator, AllocatorFactory, Proposal};

use crate::trace::{Trace, TraceWorkload};

/// Makes oracles for the workloads of a trace.
#[derive(Debug, Clone)]
pub(crate) struct OracleFactory {
    trace: Arc<Trace>,
    index: Arc<HashMap<WorkloadId, usize>>,
    scale: f64,
    delay_ms: i64,
}

impl OracleFactory {
    pub(crate) fn new(trace: Arc<Trace>, scale: f64, delay_ms: i64) -> Self {
        let index = trace
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        OracleFactory {
            trace,
            index: Arc::new(index),
            scale,
            delay_ms,
        }
    }
}

#[derive(Debug)]
struct Oracle {
    trace: Arc<Trace>,
    workload: Option<usize>,
    scale: f64,
    delay_ms: i64,
}

impl AllocatorFactory for OracleFactory {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn uses_forecast(&self) -> bool {
        false
    }

    fn create(&self, id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        Box::new(Oracle {
            trace: Arc::clone(&self.trace),
            workload: self.index.get(id).copied(),
            scale: self.scale,
            delay_ms: self.delay_ms,
        })
    }
}

/// The first point whose interval starts at or after `t` (its predecessor is at ≥ `t`).
fn first_governed(w: &TraceWorkload, t_ms: i64) -> usize {
    w.points.partition_point(|p| p.at.unix_ms() < t_ms) + 1
}

impl Allocator for Oracle {
    fn name(&self) -> &'static str {
        "oracle"
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        let w = self.trace.workloads.get(self.workload?)?;
        let now_ms = input.now.unix_ms();
        // This decision governs the points from when it applies until the next decision
        // (made at the next point) applies.
        let from = first_governed(w, now_ms + self.delay_ms);
        let next_decision = w.points.partition_point(|p| p.at.unix_ms() <= now_ms);
        let next_at = w.points.get(next_decision)?.at.unix_ms();
        let to = first_governed(w, next_at + self.delay_ms).min(w.points.len());
        let governed = w.points.get(from..to)?;
        if governed.is_empty() {
            return None;
        }
        let mut limits = *input.current;
        for resource in [Resource::Cpu, Resource::Memory] {
            let peak = governed
                .iter()
                .filter_map(|p| p.demand.get(resource))
                .fold(None, |acc: Option<f64>, d| {
                    Some(acc.map_or(d, |a| a.max(d)))
                });
            if let Some(peak) = peak {
                // A zero peak still asks for the smallest limit; the safety rules raise it
                // to the floor. Finite and positive, so the set cannot fail.
                let _ = limits.set_hard(resource, (peak * self.scale).max(f64::MIN_POSITIVE));
            }
        }
        Some(Proposal {
            limits,
            reason: Reason::Recommendation,
            risk: ResourceMap::none(),
            model: "oracle".into(),
        })
    }
}
