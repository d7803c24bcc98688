//! The node's capacity binds: guaranteed allocations are fitted by weighted max-min, and
//! a shortfall raises a capacity request.

use std::sync::Arc;

use presage_core::{
    AlertKind, Decision, Limits, Reason, Resource, ResourceMap, Sample, Timestamp, Usage,
    WorkloadId, WorkloadKey,
};
use presage_engine::{ActuationError, Actuator, Engine, EngineConfig, WorkloadSpec};
use presage_policy::capacity::NodeCapacity;
use presage_policy::{AllocationInput, Allocator, AllocatorFactory, Proposal, WorkloadPolicy};
use proptest::prelude::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Debug)]
struct Accepting;
impl Actuator for Accepting {
    fn apply(&mut self, d: &Decision) -> Result<Limits, ActuationError> {
        Ok(d.new)
    }
}

/// Wants a fixed CPU quota, whatever happens.
#[derive(Debug, Clone, Copy)]
struct Wants(f64);

impl Allocator for Wants {
    fn name(&self) -> &'static str {
        "wants"
    }
    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        Some(Proposal {
            limits: input.current.with_hard(Resource::Cpu, self.0).ok()?,
            reason: Reason::Recommendation,
            risk: ResourceMap::none(),
            model: "wants".into(),
        })
    }
}

/// Each workload wants the quota its name ends with: "w-3" wants 3 cores.
#[derive(Debug)]
struct ByName;
impl AllocatorFactory for ByName {
    fn name(&self) -> &'static str {
        "by-name"
    }
    fn uses_forecast(&self) -> bool {
        false
    }
    fn create(&self, id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        let want = id
            .as_str()
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1.0);
        Box::new(Wants(want))
    }
}

fn engine(cores: f64) -> Result<Engine, Box<dyn std::error::Error>> {
    Ok(Engine::builder(Arc::new(ByName))
        .actuator(Box::new(Accepting))
        .config(EngineConfig {
            node_capacity: NodeCapacity {
                cpu_cores: Some(cores),
                memory_bytes: None,
            },
            ..EngineConfig::default()
        })
        .build()?)
}

fn adopt(e: &mut Engine, name: &str, weight: f64) -> TestResult {
    e.adopt(WorkloadSpec {
        id: WorkloadId::new(name)?,
        key: WorkloadKey::for_code(name)?,
        limits: Limits::unlimited().with_hard(Resource::Cpu, 1.0)?,
        policy: WorkloadPolicy {
            weight,
            hysteresis: 0.0,
            ..WorkloadPolicy::default()
        },
        fingerprint: None,
    })?;
    Ok(())
}

fn sample(name: &str, t: i64) -> Result<Sample, Box<dyn std::error::Error>> {
    Ok(Sample::new(
        Timestamp::from_unix_secs(t),
        WorkloadId::new(name)?,
        1000,
        Usage::empty().with(Resource::Cpu, 0.5)?,
    )?)
}

fn cpu(e: &Engine, name: &str) -> Option<f64> {
    WorkloadId::new(name)
        .ok()
        .and_then(|id| e.workload(&id).and_then(|w| w.limits.cpu_quota_cores()))
}

#[test]
fn weights_divide_a_bound_node_and_the_shortfall_is_requested() -> TestResult {
    // Both want 3 cores of a 4-core node; weights 1 and 3 share what is above the
    // 0.01-core floors 1:3.
    let mut e = engine(4.0)?;
    adopt(&mut e, "a-3", 1.0)?;
    adopt(&mut e, "b-3", 3.0)?;
    let report = e.tick(
        Timestamp::from_unix_secs(1),
        &[sample("a-3", 1)?, sample("b-3", 1)?],
    );
    let (a, b) = (cpu(&e, "a-3").ok_or("a")?, cpu(&e, "b-3").ok_or("b")?);
    assert!(
        (a + b - 4.0).abs() < 1e-9,
        "the node is used in full: {a} + {b}"
    );
    assert!(
        (b - 0.01 - 3.0 * (a - 0.01)).abs() < 1e-9,
        "1:3 above the floors: {a}, {b}"
    );
    let shortfall = report
        .alerts
        .iter()
        .find(|a| a.kind == AlertKind::CapacityShortfall)
        .ok_or("a capacity request")?;
    assert!(
        (shortfall.score - 2.0).abs() < 1e-9,
        "6 wanted on 4: {}",
        shortfall.score
    );
    assert!(
        report
            .decisions
            .iter()
            .any(|d| d.reason == Reason::Capacity)
    );
    Ok(())
}

#[test]
fn a_node_with_room_grants_everything_and_requests_nothing() -> TestResult {
    let mut e = engine(16.0)?;
    adopt(&mut e, "a-3", 1.0)?;
    adopt(&mut e, "b-3", 3.0)?;
    let report = e.tick(
        Timestamp::from_unix_secs(1),
        &[sample("a-3", 1)?, sample("b-3", 1)?],
    );
    assert_eq!((cpu(&e, "a-3"), cpu(&e, "b-3")), (Some(3.0), Some(3.0)));
    assert!(
        report
            .alerts
            .iter()
            .all(|a| a.kind != AlertKind::CapacityShortfall)
    );
    Ok(())
}

proptest! {
    /// Whatever the wants, weights and node size: the guaranteed CPU never adds up to more
    /// than the node (above the floors every workload keeps).
    #[test]
    fn guaranteed_cpu_never_exceeds_the_node(
        wants in proptest::collection::vec((1u32..16, 1u32..5), 1..8),
        cores in 1.0f64..32.0,
        ticks in 1i64..4,
    ) {
        let mut e = engine(cores).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut names = Vec::new();
        for (i, (want, weight)) in wants.iter().enumerate() {
            let name = format!("w{i}-{want}");
            adopt(&mut e, &name, f64::from(*weight)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            names.push(name);
        }
        for t in 1..=ticks {
            // Only some workloads report each tick; the others' limits still count.
            let samples: Vec<Sample> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as i64 + t) % 2 == 0 || t == 1)
                .filter_map(|(_, n)| sample(n, t).ok())
                .collect();
            e.tick(Timestamp::from_unix_secs(t), &samples);
            let total: f64 = names.iter().filter_map(|n| cpu(&e, n)).sum();
            let floors = 0.01 * names.len() as f64;
            prop_assert!(total <= cores.max(floors) + 1e-6, "tick {t}: {total} on {cores}");
        }
    }
}

#[test]
fn a_cpu_budget_is_a_hard_ceiling_spread_over_its_window() -> TestResult {
    // Wants 4 cores, demands 2; budget 1800 CPU-seconds per hour. Usage follows the
    // quota (a host cannot use more than it), and over the hour it stays in the budget.
    let mut e = Engine::builder(Arc::new(ByName))
        .actuator(Box::new(Accepting))
        .build()?;
    let name = "job-4";
    e.adopt(WorkloadSpec {
        id: WorkloadId::new(name)?,
        key: WorkloadKey::for_code(name)?,
        limits: Limits::unlimited(),
        policy: WorkloadPolicy {
            budget: Some(presage_policy::Budget {
                cpu_seconds: Some(1800.0),
                window_s: 3600,
                memory_bytes: None,
            }),
            ..WorkloadPolicy::default()
        },
        fingerprint: None,
    })?;
    let mut used = 0.0;
    let mut quota = f64::INFINITY;
    for minute in 1..=59 {
        let cores = 2.0f64.min(quota);
        used += cores * 60.0;
        let s = Sample::new(
            Timestamp::from_unix_secs(minute * 60),
            WorkloadId::new(name)?,
            60_000,
            Usage::empty().with(Resource::Cpu, cores)?,
        )?;
        let report = e.tick(Timestamp::from_unix_secs(minute * 60), &[s]);
        quota = cpu(&e, name).ok_or("a quota")?;
        assert!(
            quota < 4.0,
            "minute {minute}: the 4 cores wanted are never granted"
        );
        if minute > 1 {
            assert!(
                report
                    .decisions
                    .iter()
                    .all(|d| d.reason == Reason::Budget || d.new.cpu_quota_cores() <= Some(quota))
            );
        }
    }
    assert!(
        used <= 1800.0 + 60.0 * 2.0,
        "used {used} of 1800 (one interval's slack for the first sample)"
    );
    assert!(used > 1500.0, "the budget is used, not starved: {used}");
    Ok(())
}
