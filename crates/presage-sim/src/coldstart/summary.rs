//! The cold-start report: per workload and pooled over workloads, the first day of each
//! arm against the steady state, and the Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Arm, ArmSums, ColdStartOptions, Measured, RESOURCES, Skip};
use crate::metrics::Accumulator;
use crate::run::PolicyRun;

/// The goal: a warm first day within this factor of the steady state, on slack
/// and on violations.
pub const GOAL_RATIO: f64 = 1.2;

/// The least floor under pooled violation rates before they are divided (0.01 % of
/// steps): it keeps a ratio finite when the steady state has no violation at all.
pub const POOLED_VIOLATION_FLOOR: f64 = 1e-4;

/// Below this many violating steps in the pooled first day, a rate is noise (a Poisson
/// count of 10 is ±30 %): the pooled floor is at least this many steps of the first day.
pub const POOLED_VIOLATION_MIN_STEPS: f64 = 10.0;

/// The floor under pooled violation rates for a first day of `steps` workload-steps.
fn pooled_floor(steps: u64) -> f64 {
    POOLED_VIOLATION_FLOOR.max(POOLED_VIOLATION_MIN_STEPS / steps.max(1) as f64)
}

/// Slack and violations of one window (a first day, a steady state, one day).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Window {
    /// Σ max(limit − demand, 0) / Σ limit.
    pub slack: f64,
    /// Fraction of workload-steps with demand above the limit.
    pub violation_rate: f64,
    /// Σ max(demand − limit, 0) / Σ demand.
    pub unmet: f64,
    /// Workload-steps with a limit.
    pub steps: u64,
    /// Workload-steps with demand above the limit.
    pub violations: u64,
}

impl Window {
    fn of(acc: &Accumulator) -> Self {
        let m = acc.clone().finish(0.0);
        Window {
            slack: m.slack,
            violation_rate: m.violation_rate,
            unmet: m.unmet,
            steps: m.steps,
            violations: m.violations,
        }
    }
}

/// `first ÷ steady` slack (`None` when the steady state has no slack to divide by).
fn slack_ratio(first: &Window, steady: &Window) -> Option<f64> {
    (steady.slack > 0.0 && first.steps > 0).then(|| first.slack / steady.slack)
}

/// `max(first, floor) ÷ max(steady, floor)` violation rates: both at or under the floor
/// count as equal (1×).
pub(super) fn violation_ratio(first: f64, steady: f64, floor: f64) -> f64 {
    first.max(floor) / steady.max(floor)
}

/// A workload's violation floor: one violating step of its first day, the finest a single
/// day's rate can resolve (so one unlucky step against a clean steady state reads 1×,
/// not infinity).
fn workload_floor(first: &Window) -> f64 {
    1.0 / first.steps.max(1) as f64
}

pub(super) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One arm's first day against the steady state, pooled and per workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    /// The first day, pooled over workloads.
    pub first_day: Window,
    /// Pooled first-day slack ÷ pooled steady-state slack.
    pub slack_ratio: Option<f64>,
    /// Pooled violation rates, first day ÷ steady state, both floored at
    /// `violation_floor`.
    pub violation_ratio: f64,
    /// The floor: the larger of [`POOLED_VIOLATION_FLOOR`] and
    /// [`POOLED_VIOLATION_MIN_STEPS`] steps of the pooled first day.
    pub violation_floor: f64,
    /// Median over workloads of each workload's slack ratio.
    pub median_slack_ratio: Option<f64>,
    /// Median over workloads of each workload's violation ratio (floored at one step of
    /// its first day).
    pub median_violation_ratio: Option<f64>,
    /// Share of workloads whose slack and violation ratios are both ≤ [`GOAL_RATIO`].
    pub within_goal: f64,
    /// Workloads this arm ran for.
    pub workloads: usize,
    /// Workloads whose forecaster was restored from a stored profile.
    pub restored: usize,
}

/// One resource of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceSummary {
    /// The reference: the continuous arm over days ≥ 2 of the second run, pooled.
    pub steady: Window,
    /// The warm arm's own days ≥ 2, pooled (for comparison with the reference).
    pub warm_steady: Window,
    /// Each arm's first day against the reference.
    pub arms: BTreeMap<Arm, ArmSummary>,
    /// Each arm, day by day of the second run (day 1 first), pooled.
    pub by_day: BTreeMap<Arm, Vec<Window>>,
}

/// The nearest other workload whose profile the neighbour arm started from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Neighbour {
    /// Its id.
    pub workload: String,
    /// Distance between the standardised signatures.
    pub distance: f64,
}

/// One resource of one workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadResource {
    /// The continuous arm over days ≥ 2 of the second run.
    pub steady: Window,
    /// Each arm's first day.
    pub first_day: BTreeMap<Arm, Window>,
    /// Each arm's first-day slack ÷ the steady state's.
    pub slack_ratio: BTreeMap<Arm, Option<f64>>,
    /// Each arm's first-day violation rate ÷ the steady state's, floored.
    pub violation_ratio: BTreeMap<Arm, f64>,
}

/// One workload's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadOutcome {
    /// Its id.
    pub workload: String,
    /// The cut, ms since the epoch.
    pub cut_ms: i64,
    /// Days of the first run.
    pub first_run_days: f64,
    /// Days of the second run.
    pub second_run_days: f64,
    /// Whether the warm arm restored a forecaster.
    pub restored: bool,
    /// The neighbour arm's source.
    pub neighbour: Option<Neighbour>,
    /// Per resource (`cpu`, `memory`).
    pub resources: BTreeMap<String, WorkloadResource>,
}

/// One policy's cold-start evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The policy.
    pub policy: String,
    /// Its knob.
    pub knob: f64,
    /// Workloads measured.
    pub workloads: usize,
    /// Workloads left out, by reason.
    pub skipped: BTreeMap<Skip, usize>,
    /// Per resource (`cpu`, `memory`).
    pub resources: BTreeMap<String, ResourceSummary>,
    /// Per workload.
    pub per_workload: Vec<WorkloadOutcome>,
}

/// The whole evaluation (`coldstart.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColdStartReport {
    /// The traces, as given.
    pub sources: Vec<String>,
    /// How it was run.
    pub options: ColdStartOptions,
    /// The trace's step (the median first interval), seconds.
    pub step_s: u32,
    /// What each figure means.
    pub definitions: BTreeMap<&'static str, &'static str>,
    /// One entry per policy.
    pub policies: Vec<PolicyReport>,
}

impl ColdStartReport {
    pub(crate) fn new(options: ColdStartOptions, step_s: u32, policies: Vec<PolicyReport>) -> Self {
        ColdStartReport {
            sources: Vec::new(),
            options,
            step_s,
            definitions: definitions(),
            policies,
        }
    }
}

fn definitions() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "first run",
            "each workload's first first_run_days (default half its span, at least 1 day), replayed under a fresh engine whose profiles are saved at its end",
        ),
        (
            "second run",
            "the rest of the workload's trace, at least 2 days, replayed under a fresh engine per arm, adopting the workload with the same key",
        ),
        (
            "day",
            "24-hour windows from the cut; a step belongs to the window its interval ends in; the first day is day 1",
        ),
        (
            "warm",
            "the second run's store holds the workload's own first-run profile",
        ),
        (
            "neighbour",
            "the store holds the first-run profile of the nearest other workload by ln mean and ln p95 of CPU and memory demand over the first run (standardised, Euclidean), saved under this workload's key: a stand-in for the ELF fingerprint, which traces lack",
        ),
        ("cold", "the second run's store is empty"),
        (
            "continuous",
            "one run over the whole trace, never interrupted; its first day is the same calendar day as the other arms'",
        ),
        (
            "steady",
            "the continuous arm over days >= 2 of the second run: the reference every first day is divided by",
        ),
        (
            "slack_ratio",
            "first-day slack / steady slack (null when steady slack is 0)",
        ),
        (
            "violation_ratio",
            "max(first-day rate, floor) / max(steady rate, floor); floor pooled = max(0.01 %, 10 steps of the pooled first day); per workload = one step of its first day",
        ),
        (
            "within_goal",
            "share of workloads whose slack and violation ratios are both <= 1.2",
        ),
    ])
}

/// Pools `measured` into one policy's report.
pub(crate) fn policy_report(
    run: &PolicyRun,
    skipped: BTreeMap<Skip, usize>,
    measured: Vec<Measured<'_>>,
    curve_days: usize,
) -> PolicyReport {
    let per_workload: Vec<WorkloadOutcome> = measured.iter().map(outcome).collect();
    let mut resources = BTreeMap::new();
    for (i, resource) in RESOURCES.into_iter().enumerate() {
        let name = resource.name().to_owned();
        let pool = |arm: Arm, pick: &dyn Fn(&ArmSums) -> Vec<&Accumulator>| {
            let mut acc: Vec<Accumulator> = Vec::new();
            for s in measured.iter().filter_map(|m| m.arms.get(&arm)) {
                for (j, a) in pick(s).into_iter().enumerate() {
                    if acc.len() <= j {
                        acc.push(Accumulator::default());
                    }
                    acc[j].merge(a.clone());
                }
            }
            acc.iter().map(Window::of).collect::<Vec<_>>()
        };
        let steady = pool(Arm::Continuous, &|s| vec![&s.steady[i]])
            .first()
            .copied()
            .unwrap_or_default();
        let warm_steady = pool(Arm::Warm, &|s| vec![&s.steady[i]])
            .first()
            .copied()
            .unwrap_or_default();
        let mut arms = BTreeMap::new();
        let mut by_day = BTreeMap::new();
        for arm in Arm::ALL {
            let ran: Vec<&Measured<'_>> = measured
                .iter()
                .filter(|m| m.arms.contains_key(&arm))
                .collect();
            if ran.is_empty() {
                continue;
            }
            let first_day = pool(arm, &|s| vec![&s.first[i]])
                .first()
                .copied()
                .unwrap_or_default();
            let mine: Vec<&WorkloadResource> = per_workload
                .iter()
                .filter_map(|o| o.resources.get(&name))
                .filter(|r| r.first_day.contains_key(&arm))
                .collect();
            let slack: Vec<Option<f64>> = mine
                .iter()
                .map(|r| r.slack_ratio.get(&arm).copied().flatten())
                .collect();
            let viol: Vec<f64> = mine
                .iter()
                .filter_map(|r| r.violation_ratio.get(&arm).copied())
                .collect();
            let within = slack
                .iter()
                .zip(&viol)
                .filter(|(s, v)| s.is_some_and(|s| s <= GOAL_RATIO) && **v <= GOAL_RATIO)
                .count();
            arms.insert(
                arm,
                ArmSummary {
                    first_day,
                    slack_ratio: slack_ratio(&first_day, &steady),
                    violation_ratio: violation_ratio(
                        first_day.violation_rate,
                        steady.violation_rate,
                        pooled_floor(first_day.steps),
                    ),
                    violation_floor: pooled_floor(first_day.steps),
                    median_slack_ratio: median(slack.iter().flatten().copied().collect()),
                    median_violation_ratio: median(viol.clone()),
                    within_goal: within as f64 / mine.len().max(1) as f64,
                    workloads: ran.len(),
                    restored: ran
                        .iter()
                        .filter(|m| m.arms.get(&arm).is_some_and(|s| s.restored))
                        .count(),
                },
            );
            let days = pool(arm, &|s| s.days.iter().map(|d| &d[i]).collect());
            by_day.insert(arm, days.into_iter().take(curve_days).collect());
        }
        resources.insert(
            name,
            ResourceSummary {
                steady,
                warm_steady,
                arms,
                by_day,
            },
        );
    }
    PolicyReport {
        policy: run.name.clone(),
        knob: run.knob,
        workloads: measured.len(),
        skipped,
        resources,
        per_workload,
    }
}

fn outcome(m: &Measured<'_>) -> WorkloadOutcome {
    let mut resources = BTreeMap::new();
    for (i, resource) in RESOURCES.into_iter().enumerate() {
        let steady = m
            .arms
            .get(&Arm::Continuous)
            .map(|s| Window::of(&s.steady[i]))
            .unwrap_or_default();
        let mut r = WorkloadResource {
            steady,
            first_day: BTreeMap::new(),
            slack_ratio: BTreeMap::new(),
            violation_ratio: BTreeMap::new(),
        };
        for (arm, s) in &m.arms {
            let first = Window::of(&s.first[i]);
            r.first_day.insert(*arm, first);
            r.slack_ratio.insert(*arm, slack_ratio(&first, &steady));
            r.violation_ratio.insert(
                *arm,
                violation_ratio(
                    first.violation_rate,
                    steady.violation_rate,
                    workload_floor(&first),
                ),
            );
        }
        resources.insert(resource.name().to_owned(), r);
    }
    WorkloadOutcome {
        workload: m.workload.id.to_string(),
        cut_ms: m.split.at.unix_ms(),
        first_run_days: m.split.first_run_days,
        second_run_days: m.split.second_run_days,
        restored: m.arms.get(&Arm::Warm).is_some_and(|s| s.restored),
        neighbour: m.neighbour.map(|(w, d)| Neighbour {
            workload: w.id.to_string(),
            distance: d,
        }),
        resources,
    }
}

fn pct(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}×"))
}

/// The report as Markdown: per policy and resource, each arm's first day against the
/// steady state, then whether the warm arm meets the goal.
pub fn table(report: &ColdStartReport) -> String {
    let mut out = String::new();
    for p in &report.policies {
        let skipped: usize = p.skipped.values().sum();
        let _ = writeln!(
            out,
            "### {} (knob {}): {} workloads measured, {} skipped {:?}\n",
            p.policy, p.knob, p.workloads, skipped, p.skipped
        );
        for (name, r) in &p.resources {
            let _ = writeln!(out, "**{name}**\n");
            let _ = writeln!(
                out,
                "| arm | restored | first-day slack | first-day violations | slack ÷ steady | violations ÷ steady | median slack ÷ | median violations ÷ | workloads within {GOAL_RATIO}× on both |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                out,
                "| steady state (continuous, days ≥ 2) | | {} | {} | 1× | 1× | | | |",
                pct(r.steady.slack),
                pct(r.steady.violation_rate)
            );
            for (arm, a) in &r.arms {
                let label = match arm {
                    Arm::Continuous => "continuous, day 1 (no restart)",
                    other => other.name(),
                };
                let _ = writeln!(
                    out,
                    "| {label} | {}/{} | {} | {} | {} | {} | {} | {} | {:.0} % |",
                    a.restored,
                    a.workloads,
                    pct(a.first_day.slack),
                    pct(a.first_day.violation_rate),
                    times(a.slack_ratio),
                    times(Some(a.violation_ratio)),
                    times(a.median_slack_ratio),
                    times(a.median_violation_ratio),
                    a.within_goal * 100.0
                );
            }
            let _ = writeln!(
                out,
                "\nwarm arm's own days ≥ 2: slack {}, violations {}",
                pct(r.warm_steady.slack),
                pct(r.warm_steady.violation_rate)
            );
            if let Some(w) = r.arms.get(&Arm::Warm) {
                let _ = writeln!(
                    out,
                    "violation ratios floor both rates at {} pooled (10 steps of the first day, at least 0.01 %), at one step of its first day per workload",
                    pct(w.violation_floor)
                );
                let met = w.slack_ratio.is_some_and(|s| s <= GOAL_RATIO)
                    && w.violation_ratio <= GOAL_RATIO;
                let _ = writeln!(
                    out,
                    "goal (warm first day ≤ {GOAL_RATIO}× steady, pooled, slack and violations): {}\n",
                    if met { "met" } else { "NOT met" }
                );
            }
        }
    }
    out
}
