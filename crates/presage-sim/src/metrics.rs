//! The four numbers every report states per resource (DESIGN.md "Meanings that must be
//! exact"), plus Autopilot's relative slack per workload-day:
//!
//! - **slack** = Σ max(limit − demand, 0) / Σ limit over workload-steps;
//! - **violation rate** = fraction of workload-steps with demand > limit (CPU: throttled
//!   demand; memory: an OOM kill);
//! - **unmet** = Σ max(demand − limit, 0) / Σ demand;
//! - **churn** = limit changes per workload-day; **OOM kills** per workload-day;
//! - **relative slack per workload-day** (Autopilot §4.1.1) = (mean limit − P95 demand) /
//!   mean limit over each workload's UTC day, averaged over workload-days.
//!
//! Steps at which a resource has no limit at all are left out of its ratios and counted
//! in `unlimited_steps`: an unlimited resource has no slack to speak of.

use presage_core::{Resource, Timestamp};
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

/// Running sums for one resource of one workload (or of many, once merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    steps: u64,
    unlimited_steps: u64,
    sum_limit: f64,
    sum_slack: f64,
    sum_demand: f64,
    sum_unmet: f64,
    violations: u64,
    changes: u64,
    ooms: u64,
    day_relative_slack_sum: f64,
    days: u64,
    // The day being accumulated: its index, limits and demands.
    day: Option<i64>,
    day_limits: f64,
    day_demands: Vec<f64>,
}

impl Accumulator {
    /// Records one step: the demand, the limit in force (if any).
    pub fn record(&mut self, at: Timestamp, demand: f64, limit: Option<f64>) {
        let Some(limit) = limit else {
            self.unlimited_steps += 1;
            return;
        };
        self.steps += 1;
        self.sum_limit += limit;
        self.sum_slack += (limit - demand).max(0.0);
        self.sum_demand += demand;
        self.sum_unmet += (demand - limit).max(0.0);
        if demand > limit {
            self.violations += 1;
        }
        let day = at.unix_ms().div_euclid(DAY_MS);
        if self.day != Some(day) {
            self.close_day();
            self.day = Some(day);
        }
        self.day_limits += limit;
        self.day_demands.push(demand);
    }

    /// Counts a change of the limit.
    pub fn count_change(&mut self) {
        self.changes += 1;
    }

    /// Counts an OOM kill.
    pub fn count_oom(&mut self) {
        self.ooms += 1;
    }

    fn close_day(&mut self) {
        let n = self.day_demands.len();
        if n > 0 {
            let mean_limit = self.day_limits / n as f64;
            let p95 = percentile_95(&mut self.day_demands);
            if mean_limit > 0.0 {
                self.day_relative_slack_sum += (mean_limit - p95) / mean_limit;
                self.days += 1;
            }
        }
        self.day_limits = 0.0;
        self.day_demands.clear();
    }

    /// Adds another accumulator's totals (its open day is closed first).
    pub fn merge(&mut self, mut other: Accumulator) {
        other.close_day();
        self.steps += other.steps;
        self.unlimited_steps += other.unlimited_steps;
        self.sum_limit += other.sum_limit;
        self.sum_slack += other.sum_slack;
        self.sum_demand += other.sum_demand;
        self.sum_unmet += other.sum_unmet;
        self.violations += other.violations;
        self.changes += other.changes;
        self.ooms += other.ooms;
        self.day_relative_slack_sum += other.day_relative_slack_sum;
        self.days += other.days;
    }

    /// The metrics, given the total workload-days simulated.
    pub fn finish(mut self, workload_days: f64) -> ResourceMetrics {
        self.close_day();
        let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
        let per_day = |count: u64| ratio(count as f64, workload_days);
        ResourceMetrics {
            slack: ratio(self.sum_slack, self.sum_limit),
            violation_rate: ratio(self.violations as f64, self.steps as f64),
            unmet: ratio(self.sum_unmet, self.sum_demand),
            oom_per_workload_day: per_day(self.ooms),
            churn_per_workload_day: per_day(self.changes),
            relative_slack_per_workload_day: ratio(self.day_relative_slack_sum, self.days as f64),
            mean_limit: ratio(self.sum_limit, self.steps as f64),
            mean_demand: ratio(self.sum_demand, self.steps as f64),
            steps: self.steps,
            unlimited_steps: self.unlimited_steps,
            violations: self.violations,
            limit_changes: self.changes,
            oom_kills: self.ooms,
        }
    }
}

/// The 95th percentile by the nearest-rank method; reorders `values`.
fn percentile_95(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let rank = ((0.95 * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable_by(rank, f64::total_cmp);
    *v
}

/// The metrics of one resource under one policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResourceMetrics {
    /// Σ max(limit − demand, 0) / Σ limit.
    pub slack: f64,
    /// Fraction of workload-steps with demand above the limit.
    pub violation_rate: f64,
    /// Σ max(demand − limit, 0) / Σ demand.
    pub unmet: f64,
    /// OOM kills per workload-day (0 for resources other than memory).
    pub oom_per_workload_day: f64,
    /// Limit changes per workload-day.
    pub churn_per_workload_day: f64,
    /// Autopilot's relative slack, (mean limit − P95 demand) / mean limit, per workload-day.
    pub relative_slack_per_workload_day: f64,
    /// Mean limit over limited workload-steps.
    pub mean_limit: f64,
    /// Mean demand over limited workload-steps.
    pub mean_demand: f64,
    /// Workload-steps with a limit.
    pub steps: u64,
    /// Workload-steps without any limit (left out of the ratios).
    pub unlimited_steps: u64,
    /// Workload-steps with demand above the limit.
    pub violations: u64,
    /// Limit changes.
    pub limit_changes: u64,
    /// OOM kills.
    pub oom_kills: u64,
}

/// One accumulator per resource.
pub type Accumulators = [Accumulator; Resource::COUNT];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_worked_metrics() {
        // Two steps on one day: limit 2 with demand 1 (slack 1), limit 2 with demand 3
        // (unmet 1, one violation), plus one change and one OOM over half a workload-day.
        let mut acc = Accumulator::default();
        let t = Timestamp::from_unix_secs(0);
        acc.record(t, 1.0, Some(2.0));
        acc.record(t.plus_secs(300), 3.0, Some(2.0));
        acc.record(t.plus_secs(600), 5.0, None);
        acc.count_change();
        acc.count_oom();
        let m = acc.finish(0.5);
        assert_eq!(m.slack, 1.0 / 4.0);
        assert_eq!(m.violation_rate, 0.5);
        assert_eq!(m.unmet, 1.0 / 4.0);
        assert_eq!(m.churn_per_workload_day, 2.0);
        assert_eq!(m.oom_per_workload_day, 2.0);
        assert_eq!(m.unlimited_steps, 1);
        // Day's mean limit 2, P95 of {1, 3} by nearest rank is 3: (2 − 3) / 2.
        assert_eq!(m.relative_slack_per_workload_day, -0.5);
    }

    #[test]
    fn merging_equals_recording_together() {
        let t = Timestamp::from_unix_secs(0);
        let mut a = Accumulator::default();
        let mut b = Accumulator::default();
        let mut both = Accumulator::default();
        for i in 0..100 {
            let (d, l) = (f64::from(i % 7), 4.0);
            let at = t.plus_secs(i64::from(i) * 3600);
            if i % 2 == 0 {
                a.record(at, d, Some(l));
            } else {
                b.record(at, d, Some(l));
            }
            both.record(at, d, Some(l));
        }
        a.merge(b);
        let (m1, m2) = (a.finish(1.0), both.finish(1.0));
        assert_eq!(m1.slack, m2.slack);
        assert_eq!(m1.violation_rate, m2.violation_rate);
        assert_eq!(m1.unmet, m2.unmet);
    }
}
