//! The simulation report: per policy and resource the metrics of [`crate::metrics`], the
//! slack-vs-violation frontier of each policy's sweep, and the headline: each policy's
//! slack at the VPA baseline's violation rate, as a ratio to VPA's slack.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use presage_core::Resource;
use serde::Serialize;

use crate::metrics::ResourceMetrics;
use crate::run::{RunResult, SimOptions};
use crate::trace::Skipped;

/// The reference policy of the headline.
pub const REFERENCE: &str = "vpa";

/// Where the trace came from and what reading it skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TraceSummary {
    /// The `FORMAT:PATH` arguments.
    pub sources: Vec<String>,
    /// Files read.
    pub files: usize,
    /// Duplicate rows dropped.
    pub duplicates: u64,
    /// Lines skipped by `--lenient`.
    pub skipped: Skipped,
}

/// One policy at one knob value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    /// The policy.
    pub name: String,
    /// The knob value.
    pub knob: f64,
    /// Metrics per limited resource (`cpu`, `memory`, …).
    pub resources: BTreeMap<String, ResourceMetrics>,
    /// Decisions applied.
    pub decisions: u64,
    /// CPU seconds spent simulating it.
    pub cpu_seconds: f64,
    /// Lead time on known surges (present when the trace knows its surges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surges: Option<SurgeReport>,
}

/// How a policy met the trace's known surges.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SurgeReport {
    /// Surges scored.
    pub surges: u64,
    /// Fraction anticipated and met without throttling in the hour after the onset.
    pub met: f64,
    /// Fraction whose limit was raised ahead of the onset (see `presage_sim::surges`).
    pub anticipated: f64,
    /// Surges after each workload's first (no causal model can see a first one coming).
    pub repeats: u64,
    /// Fraction of the repeats anticipated.
    pub anticipated_repeats: f64,
    /// Mean lead of the anticipated ones, in seconds.
    pub mean_lead_s: f64,
}

/// The whole report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Workloads simulated.
    pub workloads: usize,
    /// Workload-steps in the trace.
    pub samples: u64,
    /// Workload-days in the trace.
    pub workload_days: f64,
    /// The trace.
    pub trace: TraceSummary,
    /// The simulation settings.
    pub options: SimOptions,
    /// Each policy at its default knob.
    pub policies: Vec<PolicyReport>,
    /// With `--sweep`: per resource, per policy, the Pareto frontier as
    /// `[violation_rate, slack]` pairs in increasing violation rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontiers: Option<Frontiers>,
    /// With `--sweep`: per resource, per policy, its slack at VPA's violation rate divided
    /// by VPA's slack (`null` where the policy's frontier does not reach that rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headline: Option<Headline>,
    /// With `--sweep`: every policy's frontier against each reference baseline's (VPA and
    /// both Autopilots): reference → resource → policy → comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparisons: Option<Comparisons>,
    /// With `--sweep`: every run, default or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep_runs: Vec<PolicyReport>,
}

/// Reference → resource → policy → comparison.
pub type Comparisons = BTreeMap<String, BTreeMap<String, BTreeMap<String, Comparison>>>;

/// The baselines every policy is compared against.
pub const REFERENCES: [&str; 3] = ["vpa", "autopilot-ml", "autopilot-mw"];

/// One policy's frontier against a reference baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Slack at the reference's default violation rate, over the reference's slack there
    /// (`None`: the policy never starves as rarely).
    pub at_reference: Option<f64>,
    /// Over the violation rates both frontiers cover, the largest ratio of the policy's
    /// slack to the reference's (≤ 1: on or below it everywhere they overlap).
    pub worst_over_overlap: Option<f64>,
    /// The violation-rate range both frontiers cover.
    pub overlap: Option<[f64; 2]>,
}

fn policy_report(r: &RunResult) -> PolicyReport {
    PolicyReport {
        name: r.run.name.clone(),
        knob: r.run.knob,
        resources: r
            .metrics
            .present()
            .filter(|(_, m)| m.steps > 0)
            .map(|(res, m)| (res.name().to_owned(), *m))
            .collect(),
        decisions: r.decisions,
        cpu_seconds: r.cpu_seconds,
        surges: (r.surges.surges > 0).then(|| SurgeReport {
            surges: r.surges.surges,
            met: r.surges.met as f64 / r.surges.surges as f64,
            anticipated: r.surges.anticipated_fraction(),
            repeats: r.surges.repeats,
            anticipated_repeats: r.surges.repeats_fraction(),
            mean_lead_s: if r.surges.anticipated > 0 {
                r.surges.lead_s_total / r.surges.anticipated as f64
            } else {
                0.0
            },
        }),
    }
}

/// The report of `results` (all runs of one simulation).
pub fn build(
    results: &[RunResult],
    trace: TraceSummary,
    options: SimOptions,
    workloads: usize,
    samples: u64,
    swept: bool,
) -> Report {
    let defaults: Vec<&RunResult> = results.iter().filter(|r| r.run.is_default).collect();
    let workload_days = defaults.first().map_or(0.0, |r| r.workload_days);
    let mut report = Report {
        workloads,
        samples,
        workload_days,
        trace,
        options,
        policies: defaults.iter().map(|r| policy_report(r)).collect(),
        frontiers: None,
        headline: None,
        comparisons: None,
        sweep_runs: Vec::new(),
    };
    if swept {
        report.sweep_runs = results.iter().map(policy_report).collect();
        let (frontiers, headline) = frontiers_and_headline(results);
        report.comparisons = Some(comparisons(results, &frontiers));
        report.frontiers = Some(frontiers);
        report.headline = Some(headline);
    }
    report
}

/// Per resource, per policy, `[violation_rate, slack]` points.
pub type Frontiers = BTreeMap<String, BTreeMap<String, Vec<[f64; 2]>>>;
/// Per resource, per policy, a slack ratio against the reference.
pub type Headline = BTreeMap<String, BTreeMap<String, Option<f64>>>;

fn frontiers_and_headline(results: &[RunResult]) -> (Frontiers, Headline) {
    let mut frontiers = Frontiers::new();
    let mut headline = Headline::new();
    for resource in [Resource::Cpu, Resource::Memory] {
        let mut points: BTreeMap<String, Vec<[f64; 2]>> = BTreeMap::new();
        for r in results {
            if let Some(m) = r.metrics[resource].filter(|m| m.steps > 0) {
                points
                    .entry(r.run.name.clone())
                    .or_default()
                    .push([m.violation_rate, m.slack]);
            }
        }
        if points.is_empty() {
            continue;
        }
        let per_policy: BTreeMap<String, Vec<[f64; 2]>> = points
            .into_iter()
            .map(|(name, pts)| (name, pareto(pts)))
            .collect();
        let reference = results
            .iter()
            .find(|r| r.run.name == REFERENCE && r.run.is_default)
            .and_then(|r| r.metrics[resource])
            .filter(|m| m.steps > 0 && m.slack > 0.0);
        if let Some(vpa) = reference {
            let ratios = per_policy
                .iter()
                .map(|(name, frontier)| {
                    let at = slack_at(frontier, vpa.violation_rate).map(|s| s / vpa.slack);
                    (name.clone(), at)
                })
                .collect();
            headline.insert(resource.name().to_owned(), ratios);
        }
        frontiers.insert(resource.name().to_owned(), per_policy);
    }
    (frontiers, headline)
}

fn comparisons(results: &[RunResult], frontiers: &Frontiers) -> Comparisons {
    let mut out = BTreeMap::new();
    for reference in REFERENCES {
        let mut per_resource = BTreeMap::new();
        for (resource_name, per_policy) in frontiers {
            let Ok(resource) = resource_name.parse::<Resource>() else {
                continue;
            };
            let Some(ref_frontier) = per_policy.get(reference) else {
                continue;
            };
            let ref_default = results
                .iter()
                .find(|r| r.run.name == reference && r.run.is_default)
                .and_then(|r| r.metrics[resource])
                .filter(|m| m.steps > 0 && m.slack > 0.0);
            let rows = per_policy
                .iter()
                .map(|(name, frontier)| {
                    let at_reference = ref_default
                        .and_then(|m| slack_at(frontier, m.violation_rate).map(|s| s / m.slack));
                    let (worst, overlap) = worst_ratio(frontier, ref_frontier);
                    (
                        name.clone(),
                        Comparison {
                            at_reference,
                            worst_over_overlap: worst,
                            overlap,
                        },
                    )
                })
                .collect();
            per_resource.insert(resource_name.clone(), rows);
        }
        out.insert(reference.to_owned(), per_resource);
    }
    out
}

/// The largest slack ratio of `frontier` to `reference` over the violation rates both
/// cover, sampled at every point of either inside the overlap.
fn worst_ratio(frontier: &[[f64; 2]], reference: &[[f64; 2]]) -> (Option<f64>, Option<[f64; 2]>) {
    let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
        frontier.first(),
        frontier.last(),
        reference.first(),
        reference.last(),
    ) else {
        return (None, None);
    };
    let (lo, hi) = (a0[0].max(b0[0]), a1[0].min(b1[0]));
    if lo > hi {
        return (None, None);
    }
    let worst = frontier
        .iter()
        .chain(reference)
        .map(|p| p[0])
        .chain([lo, hi])
        .filter(|v| (lo..=hi).contains(v))
        .filter_map(|v| match (slack_at(frontier, v), slack_at(reference, v)) {
            (Some(s), Some(r)) if r > 0.0 => Some(s / r),
            _ => None,
        })
        .fold(None, |acc: Option<f64>, r| {
            Some(acc.map_or(r, |a| a.max(r)))
        });
    (worst, Some([lo, hi]))
}

/// The non-dominated points (no other point has both lower violation and lower slack),
/// in increasing violation rate (and so decreasing slack).
pub fn pareto(mut points: Vec<[f64; 2]>) -> Vec<[f64; 2]> {
    points.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    let mut out: Vec<[f64; 2]> = Vec::new();
    for p in points {
        if out.last().is_none_or(|last| p[1] < last[1]) {
            out.push(p);
        }
    }
    out
}

/// A frontier's slack at violation rate `v`: linear between the points that bracket `v`;
/// past its most violating point, that point's slack (allowing more violations cannot
/// cost slack); `None` if every point violates more than `v`.
pub fn slack_at(frontier: &[[f64; 2]], v: f64) -> Option<f64> {
    let first = frontier.first()?;
    if v < first[0] {
        return None;
    }
    for pair in frontier.windows(2) {
        let ([v0, s0], [v1, s1]) = (pair[0], pair[1]);
        if v == v1 {
            return Some(s1);
        }
        if v >= v0 && v < v1 {
            return Some(s0 + (s1 - s0) * (v - v0) / (v1 - v0));
        }
    }
    frontier.last().map(|p| p[1])
}

/// The report as a terminal table.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} workloads, {} workload-steps, {:.1} workload-days",
        report.workloads, report.samples, report.workload_days
    );
    for resource in ["cpu", "memory"] {
        let rows: Vec<(&PolicyReport, &ResourceMetrics)> = report
            .policies
            .iter()
            .filter_map(|p| p.resources.get(resource).map(|m| (p, m)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{resource}");
        let _ = writeln!(
            out,
            "  {:<14} {:>7} {:>8} {:>9} {:>8} {:>9} {:>10} {:>9}",
            "policy", "knob", "slack", "violation", "unmet", "OOM/wd", "churn/wd", "rel.slack"
        );
        for (p, m) in rows {
            let _ = writeln!(
                out,
                "  {:<14} {:>7.3} {:>7.1}% {:>8.2}% {:>7.2}% {:>9.3} {:>10.2} {:>8.1}%",
                p.name,
                p.knob,
                m.slack * 100.0,
                m.violation_rate * 100.0,
                m.unmet * 100.0,
                m.oom_per_workload_day,
                m.churn_per_workload_day,
                m.relative_slack_per_workload_day * 100.0
            );
        }
        if resource == "cpu" {
            let surges: Vec<String> = report
                .policies
                .iter()
                .filter_map(|p| {
                    p.surges.map(|s| {
                        format!(
                            "{} {:.0}% ahead ({:.0}% of repeats, {:.0}% met)",
                            p.name,
                            s.anticipated * 100.0,
                            s.anticipated_repeats * 100.0,
                            s.met * 100.0
                        )
                    })
                })
                .collect();
            if !surges.is_empty() {
                let _ = writeln!(
                    out,
                    "  known surges raised for ahead of time: {}",
                    surges.join(", ")
                );
            }
        }
        if let Some(h) = report.headline.as_ref().and_then(|h| h.get(resource)) {
            let cells: Vec<String> = h
                .iter()
                .map(|(name, ratio)| match ratio {
                    Some(r) => format!("{name} {r:.2}×"),
                    None => format!("{name} n/a"),
                })
                .collect();
            let _ = writeln!(
                out,
                "  slack at VPA's violation rate, vs VPA: {}",
                cells.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_keeps_only_non_dominated_points() {
        let f = pareto(vec![
            [0.1, 0.5],
            [0.0, 0.9],
            [0.2, 0.6],
            [0.3, 0.2],
            [0.0, 0.95],
        ]);
        assert_eq!(f, vec![[0.0, 0.9], [0.1, 0.5], [0.3, 0.2]]);
    }

    #[test]
    fn slack_at_interpolates_and_refuses_to_extrapolate_down() {
        let f = vec![[0.0, 0.9], [0.1, 0.5], [0.3, 0.2]];
        assert!(slack_at(&f, 0.05).is_some_and(|s| (s - 0.7).abs() < 1e-12));
        assert_eq!(slack_at(&f, 0.1), Some(0.5));
        assert_eq!(slack_at(&f, 0.5), Some(0.2));
        let g = vec![[0.02, 0.4]];
        assert_eq!(slack_at(&g, 0.01), None);
        assert_eq!(slack_at(&g, 0.03), Some(0.4));
    }
}
