//! Cold start, measured: what a workload's first day costs when it comes back with a
//! learned profile, against starting from nothing.
//!
//! Each workload's trace is cut in two ([`split`]). The *first run* replays the part
//! before the cut under a fresh engine and saves the profiles at its end
//! ([`presage_engine::Engine::save_profiles`]). The *second run* replays the rest in
//! arms, each under a fresh engine that adopts the workload with the same
//! [`WorkloadKey`](presage_core::WorkloadKey) the trace gave it:
//!
//! - **warm**: the store holds the profile the first run saved, so
//!   [`presage_engine::Engine::adopt`] restores the forecaster from it;
//! - **cold**: an empty store;
//! - **neighbour**: the store holds the first-run profile of the most similar *other*
//!   workload, by a behavioural signature (mean and p95 of CPU and memory demand over the
//!   first run), saved under this workload's key. Traces carry no executables, so this is
//!   a stand-in for the live agent's ELF fingerprint, not a test of it;
//! - **continuous**: one run over the whole trace, never interrupted.
//!
//! A *day* of the second run is a 24-hour window from the cut (a point belongs to the
//! window its interval ends in). The **steady state** each first day is judged against is
//! the continuous arm over days ≥ 2 of the second run: the engine there has run since the
//! trace began, so it is the workload's steady state whatever the restore did, and it
//! covers the same calendar days as the warm arm after its first day (whose figures are
//! reported too). The continuous arm's own first day shows how much of a first-day ratio
//! is that day being an unusual day rather than a cold start.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use presage_core::{Resource, Timestamp};
use presage_engine::{
    EngineConfig, MemoryStore, Profile, ProfileStore, StoreError, TickWrite, WorkloadSpec,
};
use rayon::prelude::*;
use serde::Serialize;

use crate::metrics::Accumulator;
use crate::run::{
    PolicyRun, Resolver, SimError, SimOptions, build_engine_with_store, deliver, engine_config,
    policy_for, resolve,
};
use crate::trace::{Trace, TracePoint, TraceWorkload};
use crate::world::{Pending, SimActuator, SimWorkload, TimelinePoint, first_interval_ms};

mod summary;
#[cfg(test)]
mod tests;

pub use summary::{
    ArmSummary, ColdStartReport, GOAL_RATIO, Neighbour, POOLED_VIOLATION_FLOOR,
    POOLED_VIOLATION_MIN_STEPS, PolicyReport, ResourceSummary, Window, WorkloadOutcome,
    WorkloadResource, table,
};

const DAY_MS: i64 = 86_400_000;

/// The resources a cold start is judged on, in report order.
pub const RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// The second run must cover at least this many days: a first day and a steady state.
pub const MIN_SECOND_RUN_DAYS: f64 = 2.0;

/// One way of starting the second run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Restored from the workload's own first-run profile.
    Warm,
    /// Restored from the nearest other workload's profile (behavioural stand-in for the
    /// fingerprint).
    Neighbour,
    /// From an empty store.
    Cold,
    /// No second run at all: one run over the whole trace.
    Continuous,
}

impl Arm {
    /// Every arm, in report order.
    pub const ALL: [Arm; 4] = [Arm::Warm, Arm::Neighbour, Arm::Cold, Arm::Continuous];

    /// The name used in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Arm::Warm => "warm",
            Arm::Neighbour => "neighbour",
            Arm::Cold => "cold",
            Arm::Continuous => "continuous",
        }
    }
}

/// How to run the cold-start evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColdStartOptions {
    /// Days of each workload's first run (`None`: half its span, at least one day).
    pub first_run_days: Option<f64>,
    /// Whether to run the neighbour arm.
    pub neighbour: bool,
    /// Days of the second run shown day by day (`by_day` in the report, the plots).
    pub curve_days: usize,
}

impl Default for ColdStartOptions {
    fn default() -> Self {
        ColdStartOptions {
            first_run_days: None,
            neighbour: true,
            curve_days: 14,
        }
    }
}

/// Where a workload's trace is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The cut: points at or before it belong to the first run.
    pub at: Timestamp,
    /// Points of the first run.
    pub first_points: usize,
    /// Days of the first run, from the start of its first interval to the cut.
    pub first_run_days: f64,
    /// Days from the cut to the last point.
    pub second_run_days: f64,
}

/// Why a workload is left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// The first run would hold fewer than two points.
    FirstRunTooShort,
    /// The second run would cover less than [`MIN_SECOND_RUN_DAYS`].
    SecondRunTooShort,
    /// No point falls in the second run's first day (the cut sits in a gap of the trace).
    FirstDayEmpty,
}

/// Cuts `w`: the first run is its first `first_run_days` (default: half its span, at
/// least one day), the second run the rest, which must cover [`MIN_SECOND_RUN_DAYS`].
pub fn split(w: &TraceWorkload, first_run_days: Option<f64>) -> Result<Split, Skip> {
    let (Some(first), Some(last)) = (w.points.first(), w.points.last()) else {
        return Err(Skip::FirstRunTooShort);
    };
    let start = first.at.plus_ms(-i64::from(first_interval_ms(w)));
    let span_days = ms_to_days(last.at.unix_ms() - start.unix_ms());
    let days = first_run_days.unwrap_or((span_days / 2.0).max(1.0));
    let at = start.plus_ms((days * DAY_MS as f64).round() as i64);
    let first_points = w.points.partition_point(|p| p.at <= at);
    if first_points < 2 {
        return Err(Skip::FirstRunTooShort);
    }
    let second_run_days = ms_to_days(last.at.unix_ms() - at.unix_ms());
    if second_run_days < MIN_SECOND_RUN_DAYS {
        return Err(Skip::SecondRunTooShort);
    }
    if w.points.get(first_points).and_then(|p| day_of(p.at, at)) != Some(0) {
        return Err(Skip::FirstDayEmpty);
    }
    Ok(Split {
        at,
        first_points,
        first_run_days: days,
        second_run_days,
    })
}

fn ms_to_days(ms: i64) -> f64 {
    ms as f64 / DAY_MS as f64
}

/// The day of the second run that the interval ending at `at` falls in (`None`: before
/// the cut). An interval ending exactly 24 h after the cut still belongs to day 0.
fn day_of(at: Timestamp, cut: Timestamp) -> Option<usize> {
    let since = at.unix_ms() - cut.unix_ms();
    (since > 0).then(|| ((since - 1) / DAY_MS) as usize)
}

/// A copy of `w` holding only `points[range]`.
fn part(w: &TraceWorkload, range: std::ops::Range<usize>) -> TraceWorkload {
    TraceWorkload {
        id: w.id.clone(),
        key: w.key.clone(),
        provisioned: w.provisioned,
        points: w.points[range].to_vec(),
        origin: w.origin.clone(),
        surges: Vec::new(),
    }
}

/// A memory store the first run's engine writes into while this module keeps a handle on
/// it: the engine owns its store, and the saved profile has to outlive that engine.
#[derive(Debug, Clone, Default)]
struct SharedStore(Arc<Mutex<MemoryStore>>);

impl SharedStore {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut MemoryStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut store = self.0.lock().map_err(|_| StoreError {
            context: "cold-start profile store".into(),
            source: "poisoned by an earlier panic".into(),
        })?;
        f(&mut store)
    }
}

impl ProfileStore for SharedStore {
    fn load(&mut self, key: &presage_core::WorkloadKey) -> Result<Option<Profile>, StoreError> {
        self.with(|s| s.load(key))
    }

    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        self.with(|s| s.save(profiles))
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        self.with(|s| s.record(tick))
    }
}

/// A fresh in-memory store holding `profile`, if any.
fn store_with(profile: Option<Profile>) -> Result<Box<dyn ProfileStore>, SimError> {
    let mut store = MemoryStore::new();
    if let Some(p) = profile {
        store
            .save(&[p])
            .map_err(|e| SimError::Engine(e.to_string()))?;
    }
    Ok(Box::new(store))
}

/// One replay of one workload under a fresh engine.
struct Replay {
    timeline: Vec<TimelinePoint>,
    restored: bool,
}

/// Replays `w` alone under a fresh engine built with `store`, saving the profiles at the
/// end when `save_at_end`. Same world as `simulate` (decisions apply from the next step).
fn replay(
    w: &TraceWorkload,
    run: &PolicyRun,
    config: &EngineConfig,
    resolver: &Resolver<'_>,
    store: Box<dyn ProfileStore>,
    save_at_end: bool,
) -> Result<Replay, SimError> {
    let queue = Arc::new(Mutex::new(Vec::<Pending>::new()));
    let actuator = SimActuator {
        queue: Arc::clone(&queue),
        delay_ms: 0,
    };
    let mut engine = build_engine_with_store(run, config, actuator, resolver, Some(store))?;
    let restored = engine
        .adopt(WorkloadSpec {
            id: w.id.clone(),
            key: w.key.clone(),
            limits: w.provisioned,
            policy: policy_for(run),
            fingerprint: None,
        })
        .map_err(|e| SimError::Engine(format!("adopting {}: {e}", w.id)))?;
    let mut world = [SimWorkload::new(w, true)];
    let mut batch = Vec::with_capacity(1);
    let mut last = None;
    while let Some(now) = world[0].next_at() {
        batch.clear();
        world[0].play(None, &mut batch);
        let report = engine.tick(now, &batch);
        if !report.decisions.is_empty() {
            deliver(&queue, &mut world);
        }
        last = Some(now);
    }
    if save_at_end && let Some(now) = last {
        engine
            .save_profiles(now)
            .map_err(|e| SimError::Engine(format!("saving the profile of {}: {e}", w.id)))?;
    }
    let [w] = world;
    Ok(Replay {
        timeline: w.timeline.unwrap_or_default(),
        restored,
    })
}

/// One arm of one workload over the second run, per resource ([`RESOURCES`] order): its
/// first day, the days after it, and each of the first `curve_days` days.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArmSums {
    pub(crate) first: [Accumulator; 2],
    pub(crate) steady: [Accumulator; 2],
    pub(crate) days: Vec<[Accumulator; 2]>,
    pub(crate) restored: bool,
}

fn sums(replay: &Replay, cut: Timestamp, curve_days: usize) -> ArmSums {
    let mut s = ArmSums {
        days: vec![Default::default(); curve_days],
        restored: replay.restored,
        ..ArmSums::default()
    };
    for p in &replay.timeline {
        let at = Timestamp::from_unix_ms(p.at_ms);
        let Some(day) = day_of(at, cut) else {
            continue;
        };
        for (i, (demand, limit)) in [p.cpu, p.memory].into_iter().enumerate() {
            let window = if day == 0 {
                &mut s.first[i]
            } else {
                &mut s.steady[i]
            };
            window.record(at, demand, limit);
            if let Some(d) = s.days.get_mut(day) {
                d[i].record(at, demand, limit);
            }
        }
    }
    s
}

/// The behavioural signature of a first run: ln of the mean and of the p95 demand, CPU
/// then memory. Logarithms because workloads differ by orders of magnitude and what
/// makes two alike is their ratio; the floors (0.01 core, 16 MiB) keep idle ones apart
/// from nothing.
fn signature(points: &[TracePoint]) -> [f64; 4] {
    let mut sig = [0.0; 4];
    for (k, (resource, floor)) in [(Resource::Cpu, 0.01), (Resource::Memory, 16.0 * 1048576.0)]
        .into_iter()
        .enumerate()
    {
        let mut v: Vec<f64> = points
            .iter()
            .filter_map(|p| p.demand.get(resource))
            .collect();
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let p95 = if v.is_empty() {
            0.0
        } else {
            let rank = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            *v.select_nth_unstable_by(rank, f64::total_cmp).1
        };
        sig[2 * k] = (mean + floor).ln();
        sig[2 * k + 1] = (p95 + floor).ln();
    }
    sig
}

/// For each workload, the nearest *other* workload among `candidates` by Euclidean
/// distance over the signatures standardised feature by feature (so CPU and memory weigh
/// alike), with that distance.
fn nearest(signatures: &[[f64; 4]], candidates: &[bool]) -> Vec<Option<(usize, f64)>> {
    let n = signatures.len().max(1) as f64;
    let mut z = signatures.to_vec();
    for f in 0..4 {
        let mean = signatures.iter().map(|s| s[f]).sum::<f64>() / n;
        let var = signatures
            .iter()
            .map(|s| (s[f] - mean).powi(2))
            .sum::<f64>()
            / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        for s in &mut z {
            s[f] = (s[f] - mean) / sd;
        }
    }
    (0..z.len())
        .map(|i| {
            (0..z.len())
                .filter(|&j| j != i && candidates[j])
                .map(|j| {
                    let d = (0..4).map(|f| (z[i][f] - z[j][f]).powi(2)).sum::<f64>();
                    (j, d.sqrt())
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
        })
        .collect()
}

/// Workload-steps [`coldstart`] will replay for each policy (for a progress bar).
pub fn planned_steps(trace: &Trace, options: &ColdStartOptions) -> u64 {
    let arms = if options.neighbour { 3 } else { 2 };
    trace
        .workloads
        .iter()
        .filter_map(|w| {
            let s = split(w, options.first_run_days).ok()?;
            let first = s.first_points as u64;
            let second = (w.points.len() - s.first_points) as u64;
            Some(first + arms * second + first + second)
        })
        .sum()
}

/// Runs the cold-start evaluation of every policy in `runs` over `trace`. `progress` is
/// called with the workload-steps of each replay as it finishes.
pub fn coldstart(
    trace: &Arc<Trace>,
    runs: &[PolicyRun],
    options: &ColdStartOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ColdStartReport, SimError> {
    let resolver = |run: &PolicyRun| resolve(trace, run, 0);
    coldstart_with(trace, runs, options, progress, &resolver)
}

/// [`coldstart`] with the policies built by `resolver` (tests plug their own in).
pub fn coldstart_with(
    trace: &Trace,
    runs: &[PolicyRun],
    options: &ColdStartOptions,
    progress: &(dyn Fn(u64) + Sync),
    resolver: &Resolver<'_>,
) -> Result<ColdStartReport, SimError> {
    if trace.workloads.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    let config = engine_config(trace, &SimOptions::default());
    let splits: Vec<Result<Split, Skip>> = trace
        .workloads
        .iter()
        .map(|w| split(w, options.first_run_days))
        .collect();
    let policies = runs
        .iter()
        .map(|run| one_policy(trace, run, &config, &splits, options, progress, resolver))
        .collect::<Result<Vec<_>, _>>()?;
    let step_s = config.horizons_s.first().copied().unwrap_or(0);
    Ok(ColdStartReport::new(options.clone(), step_s, policies))
}

/// What the first run left behind for one workload.
struct FirstRun {
    profile: Option<Profile>,
    signature: [f64; 4],
}

/// One measured workload: its cut, its neighbour, and its arms.
pub(crate) struct Measured<'a> {
    pub(crate) workload: &'a TraceWorkload,
    pub(crate) split: Split,
    pub(crate) neighbour: Option<(&'a TraceWorkload, f64)>,
    pub(crate) arms: BTreeMap<Arm, ArmSums>,
}

fn one_policy(
    trace: &Trace,
    run: &PolicyRun,
    config: &EngineConfig,
    splits: &[Result<Split, Skip>],
    options: &ColdStartOptions,
    progress: &(dyn Fn(u64) + Sync),
    resolver: &Resolver<'_>,
) -> Result<PolicyReport, SimError> {
    let mut skipped: BTreeMap<Skip, usize> = BTreeMap::new();
    let mut kept: Vec<(&TraceWorkload, Split)> = Vec::new();
    for (w, s) in trace.workloads.iter().zip(splits) {
        match s {
            Ok(s) => kept.push((w, *s)),
            Err(why) => *skipped.entry(*why).or_default() += 1,
        }
    }
    let firsts = kept
        .par_iter()
        .map(|&(w, s)| {
            let store = SharedStore::default();
            let first = part(w, 0..s.first_points);
            replay(&first, run, config, resolver, Box::new(store.clone()), true)?;
            let profile = store
                .with(|m| m.load(&w.key))
                .map_err(|e| SimError::Engine(format!("{}: {e}", w.id)))?;
            progress(s.first_points as u64);
            Ok(FirstRun {
                profile,
                signature: signature(&first.points),
            })
        })
        .collect::<Result<Vec<FirstRun>, SimError>>()?;
    // Only a profile with model state can start anything; a rule without a forecaster
    // (VPA, Autopilot) has none, and its neighbour arm would just be its cold arm.
    let candidates: Vec<bool> = firsts
        .iter()
        .map(|f| f.profile.as_ref().is_some_and(|p| p.model.is_some()))
        .collect();
    let neighbours = if options.neighbour && candidates.iter().filter(|c| **c).count() >= 2 {
        let sigs: Vec<[f64; 4]> = firsts.iter().map(|f| f.signature).collect();
        nearest(&sigs, &candidates)
    } else {
        vec![None; kept.len()]
    };
    let jobs: Vec<(usize, Arm)> = (0..kept.len())
        .flat_map(|k| Arm::ALL.into_iter().map(move |a| (k, a)))
        .filter(|&(k, a)| a != Arm::Neighbour || neighbours[k].is_some())
        .collect();
    let done = jobs
        .par_iter()
        .map(|&(k, arm)| {
            let (w, s) = kept[k];
            let second;
            let (target, profile) = match arm {
                Arm::Continuous => (w, None),
                Arm::Cold | Arm::Warm | Arm::Neighbour => {
                    second = part(w, s.first_points..w.points.len());
                    let profile = match arm {
                        Arm::Warm => firsts[k].profile.clone(),
                        Arm::Neighbour => neighbours[k]
                            .and_then(|(j, _)| firsts[j].profile.clone())
                            .map(|p| Profile {
                                key: w.key.clone(),
                                ..p
                            }),
                        _ => None,
                    };
                    (&second, profile)
                }
            };
            let r = replay(target, run, config, resolver, store_with(profile)?, false)?;
            progress(target.points.len() as u64);
            Ok((k, arm, sums(&r, s.at, options.curve_days)))
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let mut measured: Vec<Measured<'_>> = kept
        .iter()
        .zip(&neighbours)
        .map(|(&(workload, split), n)| Measured {
            workload,
            split,
            neighbour: n.map(|(j, d)| (kept[j].0, d)),
            arms: BTreeMap::new(),
        })
        .collect();
    for (k, arm, s) in done {
        measured[k].arms.insert(arm, s);
    }
    Ok(summary::policy_report(
        run,
        skipped,
        measured,
        options.curve_days,
    ))
}
