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
    /// With `--sweep`: every run, default or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep_runs: Vec<PolicyReport>,
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
        sweep_runs: Vec::new(),
    };
    if swept {
        report.sweep_runs = results.iter().map(policy_report).collect();
        let (frontiers, headline) = frontiers_and_headline(results);
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
