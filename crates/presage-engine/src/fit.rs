//! Fitting a tick's plans into the node (when the engine knows its capacity): the limits
//! every workload is planned to have — or has, when it made no plan this tick — are its
//! claims, and `presage_policy::capacity::fit` decides what each is granted. Cuts become
//! decisions with reason `Capacity`; a shortfall becomes a capacity-request alert.

use presage_core::{
    Alert, AlertKind, Limits, Reason, Resource, ResourceMap, Severity, Timestamp, WorkloadId,
};
use presage_policy::capacity::{Claim, NodeCapacity, fit};
use presage_policy::{MIN_CPU_CORES, safety};

use crate::TickReport;
use crate::step::{Plan, Planned};
use crate::workload::Managed;

/// Cuts plans (creating them for workloads without one) so the guaranteed allocations fit
/// `capacity`; raises a capacity-request alert per resource that does not fit.
pub(crate) fn fit_node(
    workloads: &[Managed],
    plans: &mut [Option<Plan>],
    capacity: &NodeCapacity,
    now: Timestamp,
    report: &mut TickReport,
) {
    for resource in [Resource::Cpu, Resource::Memory] {
        let Some(cap) = capacity.of(resource) else {
            continue;
        };
        let planned: Vec<Limits> = workloads
            .iter()
            .zip(plans.iter())
            .map(|(w, p)| {
                p.as_ref()
                    .and_then(|p| p.change.as_ref())
                    .map_or(w.limits, |c| c.new)
            })
            .collect();
        let claims: Vec<Claim> = workloads
            .iter()
            .zip(&planned)
            .map(|(w, p)| claim(w, p, resource))
            .collect();
        let outcome = fit(cap, &claims);
        for (i, (granted, c)) in outcome.granted.iter().zip(&claims).enumerate() {
            if *granted >= c.want - 1e-9 * c.want.max(1.0) {
                continue;
            }
            let mut new = planned[i];
            if new
                .set_hard(resource, granted.max(f64::MIN_POSITIVE))
                .is_err()
            {
                continue;
            }
            let usage = workloads[i]
                .last_sample
                .as_ref()
                .map(|s| *s.usage())
                .unwrap_or_default();
            let new = safety::enforce(
                &new,
                &workloads[i].limits,
                &usage,
                &workloads[i].spec.policy,
            );
            let plan = plans[i].get_or_insert(Plan {
                change: None,
                previous: None,
            });
            plan.change = Some(Planned {
                new,
                reason: Reason::Capacity,
                model: "capacity".into(),
                risk: ResourceMap::none(),
            });
        }
        if outcome.shortfall > 0.0 {
            report
                .alerts
                .push(shortfall_alert(resource, outcome.shortfall, cap, now));
        }
    }
}

/// A workload's claim: its planned limit (or, unlimited, what it uses), kept above what it
/// cannot lose, weighted by its policy.
fn claim(w: &Managed, planned: &Limits, resource: Resource) -> Claim {
    let usage = w
        .last_sample
        .as_ref()
        .and_then(|s| s.usage().get(resource))
        .unwrap_or(0.0);
    let want = planned.hard(resource).unwrap_or(usage);
    let floor = match resource {
        Resource::Memory => w.spec.policy.memory_floor(usage),
        Resource::Cpu => MIN_CPU_CORES,
        _ => 0.0,
    }
    .min(want);
    Claim {
        want,
        floor,
        weight: w.spec.policy.effective_weight(),
    }
}

fn shortfall_alert(resource: Resource, shortfall: f64, capacity: f64, now: Timestamp) -> Alert {
    let unit = resource.unit();
    Alert {
        // A node-level event: the id names the node, not a workload.
        workload: WorkloadId::new("node").expect("a non-empty constant id"),
        at: now,
        kind: AlertKind::CapacityShortfall,
        severity: Severity::Warning,
        score: shortfall,
        message: format!(
            "the node's {resource} ({capacity:.3} {unit}) is {shortfall:.3} {unit} short of what its workloads are forecast to need: request more capacity"
        ),
    }
}
