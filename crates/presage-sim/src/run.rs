//! Runs policies over a trace: one engine per node (a pack of workloads), packs and
//! policies in parallel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use presage_core::{Resource, ResourceMap, Timestamp, WorkloadId};
use presage_engine::{Engine, EngineConfig, ProfileStore, WorkloadSpec};
use presage_policy::capacity::{NodeCapacity, weighted_max_min};
use presage_policy::registry::{self, PolicyParts};
use presage_policy::{PolicyError, WorkloadPolicy};
use rayon::prelude::*;
use serde::Serialize;
use thiserror::Error;

use crate::metrics::{Accumulators, ResourceMetrics};
use crate::oracle::OracleFactory;
use crate::surges::SurgeTally;
use crate::trace::Trace;
pub use crate::world::TimelinePoint;
use crate::world::{Pending, SimActuator, SimWorkload, first_interval_ms};

/// A policy at one knob value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyRun {
    /// Registry name, or `oracle`.
    pub name: String,
    /// The knob value.
    pub knob: f64,
    /// Whether this is the policy's default knob (timelines are recorded for those).
    pub is_default: bool,
}

/// How to simulate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimOptions {
    /// Seconds between a decision and the moment it takes effect (0: from the next step).
    pub actuation_delay_s: u32,
    /// Workloads per node; with `node_capacity`, they contend for it.
    pub pack: usize,
    /// The node's capacity (contention is modelled only when set).
    pub node_capacity: NodeCapacity,
    /// Workloads whose usage-vs-limit timelines are recorded (default-knob runs only).
    pub timeline_workloads: Vec<WorkloadId>,
    /// Seconds between allocation decisions (0: every sample).
    pub decide_every_s: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            actuation_delay_s: 0,
            pack: 1,
            node_capacity: NodeCapacity::default(),
            timeline_workloads: Vec::new(),
            decide_every_s: 0,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Error)]
pub enum SimError {
    /// No such policy.
    #[error("unknown policy {name:?} (known: {known})")]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// The names known.
        known: String,
    },
    /// A policy rejected its knob.
    #[error("policy {name}: {source}")]
    Policy {
        /// The policy.
        name: String,
        /// Why.
        source: PolicyError,
    },
    /// The engine refused its settings or a workload.
    #[error("engine: {0}")]
    Engine(String),
    /// The trace holds no workloads.
    #[error("the trace holds no workloads")]
    EmptyTrace,
}

/// A usage-vs-limit timeline of one workload under one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    /// The workload.
    pub workload: WorkloadId,
    /// The policy.
    pub policy: String,
    /// The points.
    pub points: Vec<TimelinePoint>,
}

/// What one policy run produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunResult {
    /// The policy and knob.
    pub run: PolicyRun,
    /// Metrics per resource that had demand in the trace.
    pub metrics: ResourceMap<Option<ResourceMetrics>>,
    /// Decisions the engine applied.
    pub decisions: u64,
    /// Workload-steps simulated.
    pub samples: u64,
    /// Workload-days simulated.
    pub workload_days: f64,
    /// Problems the engine reported (actuation, adoption).
    pub issues: u64,
    /// Recorded timelines.
    pub timelines: Vec<Timeline>,
    /// CPU seconds spent, summed over the threads that ran it.
    pub cpu_seconds: f64,
    /// Lead time on the trace's known surges (synthetic periodic workloads).
    pub surges: SurgeTally,
}

/// The policy names `simulate` accepts: the registry's and `oracle`.
pub fn known_policies() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = registry::all().iter().map(|p| p.name).collect();
    names.push("oracle");
    names
}

/// The oracle's default knob and sweep grid (a scale on the known future peak).
pub const ORACLE_DEFAULT: f64 = 1.0;
/// See [`ORACLE_DEFAULT`].
pub const ORACLE_SWEEP: &[f64] = &[0.7, 0.8, 0.9, 0.95, 1.0, 1.05];

/// The default run of each named policy, or the runs of its sweep grid.
pub fn runs_for(names: &[String], sweep: bool) -> Result<Vec<PolicyRun>, SimError> {
    let mut runs = Vec::new();
    for name in names {
        let (default, grid): (f64, Vec<f64>) = if name == "oracle" {
            (ORACLE_DEFAULT, ORACLE_SWEEP.to_vec())
        } else {
            let info = registry::find(name).ok_or_else(|| SimError::UnknownPolicy {
                name: name.clone(),
                known: known_policies().join(", "),
            })?;
            (info.default_knob, info.sweep.to_vec())
        };
        runs.push(PolicyRun {
            name: name.clone(),
            knob: default,
            is_default: true,
        });
        if sweep {
            runs.extend(
                grid.into_iter()
                    .filter(|k| *k != default)
                    .map(|knob| PolicyRun {
                        name: name.clone(),
                        knob,
                        is_default: false,
                    }),
            );
        }
    }
    Ok(runs)
}

struct PackResult {
    surges: SurgeTally,
    acc: Accumulators,
    decisions: u64,
    samples: u64,
    days: f64,
    issues: u64,
    timelines: Vec<Timeline>,
}

/// Turns a run into the policy parts the engine runs.
pub type Resolver<'a> = dyn Fn(&PolicyRun) -> Result<PolicyParts, SimError> + Sync + 'a;

/// The parts of a named policy: the registry's rules, and the oracle (which reads `trace`
/// ahead, knowing decisions apply `delay_s` after they are made).
pub fn resolve(trace: &Arc<Trace>, run: &PolicyRun, delay_s: u32) -> Result<PolicyParts, SimError> {
    if run.name == "oracle" {
        return Ok(PolicyParts {
            allocator: Arc::new(OracleFactory::new(
                Arc::clone(trace),
                run.knob,
                i64::from(delay_s) * 1000,
            )),
            forecaster: None,
        });
    }
    let info = registry::find(&run.name).ok_or_else(|| SimError::UnknownPolicy {
        name: run.name.clone(),
        known: known_policies().join(", "),
    })?;
    (info.build)(run.knob).map_err(|source| SimError::Policy {
        name: run.name.clone(),
        source,
    })
}

/// Simulates every run over `trace`. `progress` is called with the number of
/// workload-steps each finished pack simulated.
pub fn simulate(
    trace: &Arc<Trace>,
    runs: &[PolicyRun],
    options: &SimOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<RunResult>, SimError> {
    let resolver = |run: &PolicyRun| resolve(trace, run, options.actuation_delay_s);
    simulate_with(trace, runs, options, progress, &resolver)
}

/// [`simulate`] with the policies built by `resolver` (tests plug their own rules in).
pub fn simulate_with(
    trace: &Arc<Trace>,
    runs: &[PolicyRun],
    options: &SimOptions,
    progress: &(dyn Fn(u64) + Sync),
    resolver: &Resolver<'_>,
) -> Result<Vec<RunResult>, SimError> {
    if trace.workloads.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    let pack = options.pack.max(1);
    let packs: Vec<std::ops::Range<usize>> = (0..trace.workloads.len())
        .step_by(pack)
        .map(|s| s.min(trace.workloads.len())..(s + pack).min(trace.workloads.len()))
        .collect();
    let config = engine_config(trace, options);
    let jobs: Vec<(usize, usize)> = (0..runs.len())
        .flat_map(|r| (0..packs.len()).map(move |p| (r, p)))
        .collect();
    let cpu_time: Vec<AtomicU64> = runs.iter().map(|_| AtomicU64::new(0)).collect();
    let results: Vec<Result<(usize, PackResult), SimError>> = jobs
        .par_iter()
        .map(|&(r, p)| {
            let started = Instant::now();
            let out = simulate_pack(
                trace,
                &runs[r],
                packs[p].clone(),
                &config,
                options,
                resolver,
            )?;
            cpu_time[r].fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            progress(out.samples);
            Ok((r, out))
        })
        .collect();
    let mut merged: Vec<Option<PackResult>> = runs.iter().map(|_| None).collect();
    for result in results {
        let (r, out) = result?;
        match &mut merged[r] {
            None => merged[r] = Some(out),
            Some(m) => {
                for (a, b) in m.acc.iter_mut().zip(out.acc) {
                    a.merge(b);
                }
                m.decisions += out.decisions;
                m.samples += out.samples;
                m.days += out.days;
                m.issues += out.issues;
                m.timelines.extend(out.timelines);
                m.surges.merge(out.surges);
            }
        }
    }
    Ok(runs
        .iter()
        .zip(merged)
        .zip(cpu_time)
        .filter_map(|((run, m), cpu)| {
            let m = m?;
            let days = m.days;
            let [a0, a1, a2, a3, a4, a5] = m.acc;
            let accs = [a0, a1, a2, a3, a4, a5];
            let mut metrics = ResourceMap::none();
            for (r, acc) in Resource::ALL.into_iter().zip(accs) {
                let fin = acc.finish(days);
                if fin.steps + fin.unlimited_steps > 0 {
                    metrics.set(r, Some(fin));
                }
            }
            Some(RunResult {
                run: run.clone(),
                metrics,
                decisions: m.decisions,
                samples: m.samples,
                workload_days: days,
                issues: m.issues,
                timelines: m.timelines,
                cpu_seconds: cpu.into_inner() as f64 / 1e6,
                surges: m.surges,
            })
        })
        .collect())
}

/// Horizons scaled to the trace's step (the median over workloads of their first step):
/// one step, three, twelve.
pub(crate) fn engine_config(trace: &Trace, options: &SimOptions) -> EngineConfig {
    let mut steps: Vec<u32> = trace.workloads.iter().map(first_interval_ms).collect();
    let mid = steps.len() / 2;
    let step_s = steps.select_nth_unstable(mid).1.div_ceil(1000).max(1);
    let mut horizons = vec![step_s, step_s * 3, step_s * 12];
    horizons.dedup();
    EngineConfig {
        horizons_s: horizons,
        decide_every_s: options.decide_every_s,
        actuation_delay_s: options.actuation_delay_s,
        save_every_s: None,
        ..EngineConfig::default()
    }
}

pub(crate) fn policy_for(run: &PolicyRun) -> WorkloadPolicy {
    let mut policy = WorkloadPolicy::default();
    // A replay measures allocation (slack, violations, churn); anomaly detection is
    // measured on labelled data by `presage evaluate-anomaly`. Scoring every
    // workload-step of every policy cost 2.5× the whole fastStorage run (63 s → 162 s).
    policy.anomaly.enabled = false;
    if run.name == "oracle" {
        // The oracle knows the future exactly; damping would only make it worse.
        policy.hysteresis = 0.0;
        policy.memory_margin = 0.0;
        policy.memory_margin_bytes = 0.0;
    }
    policy
}

fn build_engine(
    run: &PolicyRun,
    config: &EngineConfig,
    actuator: SimActuator,
    resolver: &Resolver<'_>,
) -> Result<Engine, SimError> {
    build_engine_with_store(run, config, actuator, resolver, None)
}

/// [`build_engine`] with a given profile store (`None`: the engine's default, an empty
/// in-memory one). The cold-start evaluation hands in stores holding learned profiles.
pub(crate) fn build_engine_with_store(
    run: &PolicyRun,
    config: &EngineConfig,
    actuator: SimActuator,
    resolver: &Resolver<'_>,
    store: Option<Box<dyn ProfileStore>>,
) -> Result<Engine, SimError> {
    let parts = resolver(run)?;
    let builder = Engine::builder(parts.allocator);
    let builder = match parts.forecaster {
        Some(f) => builder.forecaster(f),
        None => builder,
    };
    let builder = match store {
        Some(s) => builder.store(s),
        None => builder,
    };
    builder
        .config(config.clone())
        .actuator(Box::new(actuator))
        // The same ladder as on a host: a policy that opts in to throttle, freeze or kill
        // has it done to the simulated workload too.
        .responder(Box::new(presage_engine::LadderResponder::new()))
        .build()
        .map_err(|e| SimError::Engine(e.to_string()))
}

fn simulate_pack(
    trace: &Arc<Trace>,
    run: &PolicyRun,
    range: std::ops::Range<usize>,
    config: &EngineConfig,
    options: &SimOptions,
    resolver: &Resolver<'_>,
) -> Result<PackResult, SimError> {
    let queue = Arc::new(Mutex::new(Vec::<Pending>::new()));
    let actuator = SimActuator {
        queue: Arc::clone(&queue),
        delay_ms: i64::from(options.actuation_delay_s) * 1000,
    };
    let mut engine = build_engine(run, config, actuator, resolver)?;
    let policy = policy_for(run);
    let mut world: Vec<SimWorkload<'_>> = Vec::with_capacity(range.len());
    for w in &trace.workloads[range] {
        let record = run.is_default && options.timeline_workloads.contains(&w.id);
        engine
            .adopt(WorkloadSpec {
                id: w.id.clone(),
                key: w.key.clone(),
                limits: w.provisioned,
                policy: policy.clone(),
                fingerprint: None,
            })
            .map_err(|e| SimError::Engine(e.to_string()))?;
        world.push(SimWorkload::new(w, record));
    }
    let contended = world.len() > 1
        && (options.node_capacity.cpu_cores.is_some()
            || options.node_capacity.memory_bytes.is_some());
    let mut decisions = 0;
    let mut samples = 0;
    let mut issues = 0;
    let mut batch = Vec::with_capacity(world.len());
    let mut members = Vec::with_capacity(world.len());
    while let Some(now) = world.iter().filter_map(SimWorkload::next_at).min() {
        members.clear();
        members.extend((0..world.len()).filter(|&i| world[i].next_at() == Some(now)));
        let shares = if contended {
            node_shares(&world, options.node_capacity)
        } else {
            None
        };
        batch.clear();
        for &i in &members {
            let available = shares.as_ref().map(|s: &Vec<f64>| s[i]);
            world[i].play(available, &mut batch);
        }
        samples += batch.len() as u64;
        let report = engine.tick(now, &batch);
        decisions += report.decisions.len() as u64;
        issues += report.issues.len() as u64;
        if !report.decisions.is_empty() {
            deliver(&queue, &mut world);
        }
        if contended && let Some(memory) = options.node_capacity.memory_bytes {
            node_oom(&mut world, memory);
        }
    }
    let mut acc: Accumulators = Default::default();
    let mut days = 0.0;
    let mut timelines = Vec::new();
    let mut surges = SurgeTally::default();
    for w in world {
        days += w.days();
        if let Some(trail) = &w.trail {
            surges.merge(crate::surges::tally(trail, &w.trace.surges));
        }
        for (a, b) in acc.iter_mut().zip(w.acc) {
            a.merge(b);
        }
        if let Some(points) = w.timeline {
            timelines.push(Timeline {
                workload: w.trace.id.clone(),
                policy: run.name.clone(),
                points,
            });
        }
    }
    Ok(PackResult {
        surges,
        acc,
        decisions,
        samples,
        days,
        issues,
        timelines,
    })
}

/// Moves the actuator's queued changes to their workloads.
pub(crate) fn deliver(queue: &Mutex<Vec<Pending>>, world: &mut [SimWorkload<'_>]) {
    let Ok(mut queue) = queue.lock() else {
        return;
    };
    for p in queue.drain(..) {
        if let Some(w) = world.iter_mut().find(|w| w.trace.id == p.workload) {
            w.enqueue(p.apply_at, p.change);
        }
    }
}

/// Each workload's CPU share of a contended node: weighted max-min over what each would
/// use under its own quota.
fn node_shares(world: &[SimWorkload<'_>], capacity: NodeCapacity) -> Option<Vec<f64>> {
    let cores = capacity.cpu_cores?;
    let wants: Vec<f64> = world
        .iter()
        .map(|w| {
            let demand = w.current_demand(Resource::Cpu);
            w.limits.cpu_quota_cores().map_or(demand, |q| demand.min(q))
        })
        .collect();
    if wants.iter().sum::<f64>() <= cores {
        return None;
    }
    let weights = vec![1.0; world.len()];
    Some(weighted_max_min(cores, &wants, &weights))
}

/// When the workloads' memory together exceeds the node's, the kernel kills in the
/// biggest: that workload is told of an OOM with its next sample.
fn node_oom(world: &mut [SimWorkload<'_>], memory: f64) {
    let used: Vec<f64> = world
        .iter()
        .map(|w| {
            let d = w.current_demand(Resource::Memory);
            w.limits.memory_max_bytes().map_or(d, |m| d.min(m))
        })
        .collect();
    if used.iter().sum::<f64>() <= memory {
        return;
    }
    if let Some((i, _)) = used.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
        world[i].node_oom = true;
    }
}

/// When each workload was first seen, for reports.
pub fn trace_span(trace: &Trace) -> Option<(Timestamp, Timestamp)> {
    let first = trace
        .workloads
        .iter()
        .filter_map(|w| w.points.first())
        .map(|p| p.at)
        .min()?;
    let last = trace
        .workloads
        .iter()
        .filter_map(|w| w.points.last())
        .map(|p| p.at)
        .max()?;
    Some((first, last))
}
