//! The last word on every limit an allocator proposes.
//!
//! Whatever a model or baseline proposes, the limits that leave this module obey the
//! safety invariants of DESIGN.md: inside the policy's [min, max] and under its budget's
//! memory ceiling (CPU budgets are time-based and applied by [`crate::BudgetTracker`]); a memory
//! hard limit
//! never *set* below current usage plus the policy's margin (unless the operator's max is
//! lower still: the explicit ceiling wins); no change smaller than the hysteresis band,
//! unless it is the raise the memory floor requires. A resource the proposal does not
//! mention keeps its current limit, brought inside [min, max] if a policy change left it
//! outside.
//! The live actuator calls [`enforce`] again at the last step before the kernel.

use presage_core::{Limits, Resource, Usage};

use crate::WorkloadPolicy;

/// The limits to apply, given a proposal, the limits in force, the latest usage and the
/// workload's policy. Resources the proposal leaves unset keep their current limit.
pub fn enforce(
    proposed: &Limits,
    current: &Limits,
    usage: &Usage,
    policy: &WorkloadPolicy,
) -> Limits {
    let mut out = *current;
    for resource in Resource::ALL {
        // A resource the proposal leaves alone keeps its limit (the guard bounds changes,
        // it does not make them), unless that limit is outside the policy's bounds.
        let Some(proposed_value) = proposed.hard(resource) else {
            if let Some(old) = current.hard(resource) {
                let bounded = policy.clamp(resource, old);
                if bounded != old && out.set_hard(resource, bounded).is_err() {
                    out.clear_hard(resource);
                }
            }
            continue;
        };
        let mut value = policy.clamp(resource, proposed_value);
        if let Some(old) = current.hard(resource)
            && (value - old).abs() <= policy.hysteresis * old
            && policy.clamp(resource, old) == old
        {
            value = old;
        }
        if resource == Resource::Memory
            && let Some(used) = usage.memory_bytes()
        {
            value = value.max(policy.memory_floor(used));
            if let Some(hi) = policy.ceiling(resource) {
                value = value.min(hi);
            }
        }
        if out.set_hard(resource, value).is_err() {
            // Only a zero or non-finite value can fail here (a proposal of 0 with no
            // policy minimum); leave the resource unlimited rather than at 0.
            out.clear_hard(resource);
        }
    }
    if let Some(w) = proposed.cpu_weight().or(current.cpu_weight()) {
        // Weights are validated on construction; re-setting a valid weight cannot fail.
        let _ = out.set_cpu_weight(w);
    }
    match proposed.memory_high_bytes() {
        Some(high) => {
            let capped = out.memory_max_bytes().map_or(high, |max| high.min(max));
            if out.set_memory_high_bytes(capped).is_err() {
                out.clear_memory_high();
            }
        }
        None => out.clear_memory_high(),
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits(cpu: Option<f64>, mem: Option<f64>) -> Limits {
        let mut l = Limits::unlimited();
        if let Some(c) = cpu {
            l.set_hard(Resource::Cpu, c).expect("cpu");
        }
        if let Some(m) = mem {
            l.set_hard(Resource::Memory, m).expect("mem");
        }
        l
    }

    #[test]
    fn small_changes_are_not_applied() {
        let policy = WorkloadPolicy::default();
        let current = limits(Some(1.0), None);
        let out = enforce(
            &limits(Some(1.04), None),
            &current,
            &Usage::empty(),
            &policy,
        );
        assert_eq!(out.cpu_quota_cores(), Some(1.0));
        let out = enforce(&limits(Some(1.2), None), &current, &Usage::empty(), &policy);
        assert_eq!(out.cpu_quota_cores(), Some(1.2));
    }

    #[test]
    fn memory_never_below_usage_plus_margin() -> Result<(), presage_core::CoreError> {
        let policy = WorkloadPolicy::default();
        let usage = Usage::empty().with(Resource::Memory, 1e9)?;
        let out = enforce(
            &limits(None, Some(5e8)),
            &limits(None, Some(2e9)),
            &usage,
            &policy,
        );
        assert_eq!(out.memory_max_bytes(), Some(1.1e9));
        Ok(())
    }

    fn policy_strategy() -> impl Strategy<Value = WorkloadPolicy> {
        (
            proptest::option::of(0.01f64..4.0),
            proptest::option::of(0.5f64..64.0),
            proptest::option::of(1e6f64..1e9),
            proptest::option::of(1e9f64..1e11),
            0.0f64..0.5,
            0.0f64..1.0,
        )
            .prop_map(|(cmin, cmax, mmin, mmax, hyst, margin)| {
                let mut p = WorkloadPolicy::default();
                p.min.set(Resource::Cpu, cmin);
                p.max
                    .set(Resource::Cpu, cmax.map(|hi| hi.max(cmin.unwrap_or(0.0))));
                p.min.set(Resource::Memory, mmin);
                p.max.set(Resource::Memory, mmax);
                p.hysteresis = hyst;
                p.memory_margin = margin;
                p
            })
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_proposal(
            policy in policy_strategy(),
            cur_cpu in proptest::option::of(0.001f64..100.0),
            cur_mem in proptest::option::of(1e5f64..1e12),
            prop_cpu in proptest::option::of(0.001f64..100.0),
            prop_mem in proptest::option::of(1e5f64..1e12),
            used_mem in proptest::option::of(0.0f64..5e11),
        ) {
            prop_assert!(policy.validate().is_ok());
            let current = limits(cur_cpu, cur_mem);
            let proposed = limits(prop_cpu, prop_mem);
            let mut usage = Usage::empty();
            if let Some(m) = used_mem { usage.set(Resource::Memory, m).expect("usage"); }
            let out = enforce(&proposed, &current, &usage, &policy);
            for r in [Resource::Cpu, Resource::Memory] {
                if let Some(v) = out.hard(r) {
                    if let Some(hi) = policy.max[r] { prop_assert!(v <= hi, "{r} {v} above max {hi}"); }
                    let floor_ok = r != Resource::Memory || used_mem.is_none();
                    if let Some(lo) = policy.min[r] && floor_ok { prop_assert!(v >= lo, "{r} {v} below min {lo}"); }
                    if let Some(old) = current.hard(r) {
                        let changed = (v - old).abs() > 0.0;
                        let in_bounds = policy.clamp(r, old) == old;
                        let forced = r == Resource::Memory && used_mem.is_some_and(|u| v <= policy.memory_floor(u).min(policy.max[r].unwrap_or(f64::INFINITY)) + 1e-6);
                        if changed && in_bounds && !forced {
                            prop_assert!((v - old).abs() > policy.hysteresis * old, "{r}: change {old}→{v} inside hysteresis");
                        }
                    }
                }
            }
            if let (Some(used), Some(v), Some(_)) = (used_mem, out.memory_max_bytes(), prop_mem) {
                let floor = policy.memory_floor(used);
                let ceiling = policy.max[Resource::Memory].unwrap_or(f64::INFINITY);
                prop_assert!(v >= floor.min(ceiling), "memory {v} below floor {floor}");
            }
        }
    }
}
