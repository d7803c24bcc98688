//! The simulated world: nothing reaches a policy before its time, decisions take effect
//! from the next step (plus the delay), and starvation shows as it would on a host.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use presage_core::{
    Limits, Reason, Resource, ResourceMap, Sample, Timestamp, Usage, WorkloadId, WorkloadKey,
};
use presage_policy::registry::PolicyParts;
use presage_policy::{AllocationInput, Allocator, AllocatorFactory, Proposal};
use presage_sim::trace::{Trace, TracePoint, TraceWorkload};
use presage_sim::{PolicyRun, SimError, SimOptions, simulate, simulate_with};
use proptest::prelude::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What a spy saw at one decision.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    workload: WorkloadId,
    now: Timestamp,
    observed: Vec<Timestamp>,
    last: Option<Sample>,
}

#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn entries(&self) -> Vec<Seen> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A rule that records everything it is shown and, once, sets the CPU quota to `cpu`.
#[derive(Debug)]
struct Spy {
    id: WorkloadId,
    observed: Vec<Timestamp>,
    log: Log,
    cpu: Option<f64>,
}

impl Allocator for Spy {
    fn name(&self) -> &'static str {
        "spy"
    }
    fn observe(&mut self, sample: &Sample, _limits: &Limits) {
        self.observed.push(sample.at());
    }
    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        if let Ok(mut log) = self.log.0.lock() {
            log.push(Seen {
                workload: self.id.clone(),
                now: input.now,
                observed: self.observed.clone(),
                last: Some(input.sample.clone()),
            });
        }
        let cpu = self.cpu.take()?;
        let limits = input.current.with_hard(Resource::Cpu, cpu).ok()?;
        Some(Proposal {
            limits,
            reason: Reason::Recommendation,
            risk: ResourceMap::none(),
            model: "spy".into(),
        })
    }
}

#[derive(Debug)]
struct SpyFactory {
    log: Log,
    cpu: Option<f64>,
}

impl AllocatorFactory for SpyFactory {
    fn name(&self) -> &'static str {
        "spy"
    }
    fn uses_forecast(&self) -> bool {
        false
    }
    fn create(&self, id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        Box::new(Spy {
            id: id.clone(),
            observed: Vec::new(),
            log: self.log.clone(),
            cpu: self.cpu,
        })
    }
}

fn workload(
    id: &str,
    times_s: &[i64],
    cpu: &[f64],
    mem: &[f64],
) -> Result<TraceWorkload, Box<dyn std::error::Error>> {
    let mut points = Vec::new();
    for (i, &t) in times_s.iter().enumerate() {
        let demand = Usage::empty()
            .with(Resource::Cpu, cpu[i % cpu.len()])?
            .with(Resource::Memory, mem[i % mem.len()])?;
        points.push(TracePoint {
            at: Timestamp::from_unix_secs(t),
            demand,
        });
    }
    Ok(TraceWorkload {
        id: WorkloadId::new(id)?,
        key: WorkloadKey::for_code(id)?,
        provisioned: Limits::unlimited()
            .with_hard(Resource::Cpu, 4.0)?
            .with_hard(Resource::Memory, 1e9)?,
        points,
        origin: PathBuf::from("test"),
        surges: Vec::new(),
    })
}

fn run_spy(
    trace: Trace,
    options: &SimOptions,
    cpu: Option<f64>,
) -> Result<(Log, Vec<presage_sim::RunResult>), SimError> {
    let log = Log::default();
    let factory = Arc::new(SpyFactory {
        log: log.clone(),
        cpu,
    });
    let resolver = move |_: &PolicyRun| {
        Ok(PolicyParts {
            allocator: factory.clone(),
            forecaster: None,
        })
    };
    let run = PolicyRun {
        name: "spy".into(),
        knob: 0.0,
        is_default: true,
    };
    let results = simulate_with(&Arc::new(trace), &[run], options, &|_| {}, &resolver)?;
    Ok((log, results))
}

fn traces() -> impl Strategy<Value = Vec<(Vec<i64>, Vec<f64>)>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(1i64..900, 1..60),
            proptest::collection::vec(0.0f64..8.0, 1..10),
        ),
        1..4,
    )
    .prop_map(|ws| {
        ws.into_iter()
            .map(|(gaps, cpu)| {
                let mut t = 1_700_000_000;
                let times = gaps
                    .into_iter()
                    .map(|g| {
                        t += g;
                        t
                    })
                    .collect();
                (times, cpu)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// At every decision, a policy has seen exactly the workload's points up to `now`:
    /// nothing ahead of its time, nothing skipped — whatever the sampling, the delay or
    /// the packing.
    #[test]
    fn no_policy_sees_the_future(
        ws in traces(),
        delay in 0u32..1200,
        pack in 1usize..4,
    ) {
        let mut trace = Trace::default();
        for (i, (times, cpu)) in ws.iter().enumerate() {
            trace.workloads.push(workload(&format!("w{i}"), times, cpu, &[1e8]).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        let options = SimOptions { actuation_delay_s: delay, pack, ..SimOptions::default() };
        let (log, _) = run_spy(trace.clone(), &options, Some(1.0)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let entries = log.entries();
        let total: usize = trace.workloads.iter().map(|w| w.points.len()).sum();
        prop_assert_eq!(entries.len(), total, "one decision per sample");
        for seen in entries {
            let w = trace.workloads.iter().find(|w| w.id == seen.workload).ok_or_else(|| TestCaseError::fail("unknown workload"))?;
            let expected: Vec<Timestamp> = w.points.iter().map(|p| p.at).filter(|at| *at <= seen.now).collect();
            prop_assert_eq!(&seen.observed, &expected);
            prop_assert!(seen.observed.iter().all(|at| *at <= seen.now));
        }
    }
}

#[test]
fn decisions_take_effect_from_the_next_step_plus_the_delay() -> TestResult {
    let times: Vec<i64> = (0..10).map(|i| 1_700_000_000 + i * 60).collect();
    for (delay, first_new) in [(0u32, 1usize), (60, 2), (120, 3), (150, 4)] {
        let mut trace = Trace::default();
        trace.workloads.push(workload("w", &times, &[1.0], &[1e8])?);
        let id = trace.workloads[0].id.clone();
        let options = SimOptions {
            actuation_delay_s: delay,
            timeline_workloads: vec![id],
            ..SimOptions::default()
        };
        let (_, results) = run_spy(trace, &options, Some(2.0))?;
        let points = &results[0].timelines[0].points;
        let limits: Vec<Option<f64>> = points.iter().map(|p| p.cpu.1).collect();
        for (k, limit) in limits.iter().enumerate() {
            let want = if k < first_new { 4.0 } else { 2.0 };
            assert_eq!(*limit, Some(want), "delay {delay}: step {k} of {limits:?}");
        }
        let cpu = results[0].metrics[Resource::Cpu].ok_or("cpu metrics")?;
        assert_eq!(cpu.limit_changes, 1);
    }
    Ok(())
}

#[test]
fn throttling_and_oom_show_as_a_host_shows_them() -> TestResult {
    // Demand 6 cores against a 4-core quota; memory 1.5e9 against a 1e9 limit on odd steps.
    let times: Vec<i64> = (0..6).map(|i| 1_700_000_000 + i * 300).collect();
    let mut trace = Trace::default();
    trace
        .workloads
        .push(workload("w", &times, &[6.0], &[5e8, 1.5e9])?);
    let (log, results) = run_spy(trace, &SimOptions::default(), None)?;
    let entries = log.entries();
    for (i, seen) in entries.iter().enumerate() {
        let s = seen.last.as_ref().ok_or("sample")?;
        assert_eq!(s.usage().cpu_cores(), Some(4.0), "CPU shows at the quota");
        let throttled = s.events().cpu_throttled_s;
        assert!(
            (throttled - 100.0).abs() < 1e-9,
            "a third of 300 s throttled: {throttled}"
        );
        let oom = i % 2 == 1;
        assert_eq!(s.events().oom_kills, u32::from(oom));
        assert_eq!(s.usage().memory_bytes(), Some(if oom { 1e9 } else { 5e8 }));
    }
    let cpu = results[0].metrics[Resource::Cpu].ok_or("cpu")?;
    let mem = results[0].metrics[Resource::Memory].ok_or("memory")?;
    assert_eq!((cpu.violation_rate, cpu.unmet), (1.0, 2.0 / 6.0));
    assert_eq!((mem.violation_rate, mem.oom_kills), (0.5, 3));
    Ok(())
}

#[test]
fn the_oracle_is_the_floor() -> TestResult {
    let times: Vec<i64> = (0..500).map(|i| 1_700_000_000 + i * 300).collect();
    let cpu: Vec<f64> = (0..37).map(|i| 0.5 + f64::from(i % 9) * 0.3).collect();
    let mem: Vec<f64> = (0..23).map(|i| 2e8 + f64::from(i) * 1e7).collect();
    let mut trace = Trace::default();
    trace.workloads.push(workload("w", &times, &cpu, &mem)?);
    let runs = ["oracle", "static", "vpa"].map(|n| PolicyRun {
        name: n.into(),
        knob: if n == "vpa" { 0.15 } else { 1.0 },
        is_default: true,
    });
    for delay in [0, 600] {
        let options = SimOptions {
            actuation_delay_s: delay,
            ..SimOptions::default()
        };
        let results = simulate(&Arc::new(trace.clone()), &runs, &options, &|_| {})?;
        let oracle = results[0].metrics[Resource::Cpu].ok_or("cpu")?;
        assert_eq!(oracle.violation_rate, 0.0, "delay {delay}");
        for other in &results[1..] {
            let m = other.metrics[Resource::Cpu].ok_or("cpu")?;
            assert!(
                oracle.slack < m.slack,
                "delay {delay}: oracle {} vs {} {}",
                oracle.slack,
                other.run.name,
                m.slack
            );
        }
    }
    Ok(())
}

#[test]
fn a_packed_node_shares_its_cpu_and_kills_in_the_biggest() -> TestResult {
    // Two workloads on a 2-core, 1.5e9-byte node: each wants 1.5 cores under a 4-core
    // quota, so max-min fairness gives each 1 core; together they hold 1.6e9 bytes, so
    // the node OOM-kills in the bigger one.
    let times: Vec<i64> = (0..4).map(|i| 1_700_000_000 + i * 300).collect();
    let mut trace = Trace::default();
    trace.workloads.push(workload("a", &times, &[1.5], &[1e9])?);
    trace.workloads.push(workload("b", &times, &[1.5], &[6e8])?);
    let options = SimOptions {
        pack: 2,
        node_capacity: presage_sim::NodeCapacity {
            cpu_cores: Some(2.0),
            memory_bytes: Some(1.5e9),
        },
        ..SimOptions::default()
    };
    let (log, results) = run_spy(trace.clone(), &options, None)?;
    let entries = log.entries();
    assert_eq!(entries.len(), 8);
    for seen in &entries {
        let s = seen.last.as_ref().ok_or("sample")?;
        assert_eq!(
            s.usage().cpu_cores(),
            Some(1.0),
            "{}: the fair share",
            seen.workload
        );
        assert!((s.events().cpu_throttled_s - 100.0).abs() < 1e-9);
    }
    // The node kill is told with the next sample, to the bigger workload only.
    let kills = |id: &str| {
        entries
            .iter()
            .filter(|e| e.workload.as_str() == id)
            .filter_map(|e| e.last.as_ref())
            .map(|s| s.events().oom_kills)
            .sum::<u32>()
    };
    assert_eq!((kills("a"), kills("b")), (3, 0));
    let mem = results[0].metrics[Resource::Memory].ok_or("memory")?;
    assert_eq!(mem.oom_kills, 3);
    // Without the node's limits, nothing is shared and nothing is killed.
    let (log, _) = run_spy(
        trace,
        &SimOptions {
            pack: 2,
            ..SimOptions::default()
        },
        None,
    )?;
    assert!(
        log.entries()
            .iter()
            .filter_map(|e| e.last.as_ref())
            .all(|s| { s.usage().cpu_cores() == Some(1.5) && s.events().oom_kills == 0 })
    );
    Ok(())
}
