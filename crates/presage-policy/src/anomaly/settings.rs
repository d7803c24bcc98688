//! `AnomalyPolicy`: the anomaly scorer's thresholds, per workload policy. Spans are in
//! seconds here and converted to samples at the workload's own sampling interval, so the
//! same policy reads the same on a host sampled every second and on a 5-minute trace.

use serde::{Deserialize, Serialize};

use crate::policy::PolicyError;

/// The anomaly scorer's settings (`[policy.anomaly]`). Every field has a default, so a
/// policy written before the scorer existed still parses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyPolicy {
    /// Score anomalies at all.
    pub enabled: bool,
    /// The combined score (0–1, see `AnomalyReading::score`) at or above which an alert
    /// is raised; 0.5 is "one component at its own threshold".
    pub alert_score: f64,
    /// Seconds of history before any anomaly alert (the profile must first be learnt).
    pub warmup_s: f64,
    /// While an anomaly persists, the same kind of alert is raised again at most once per
    /// this many seconds (so the responder can escalate without an alert every tick).
    pub realert_s: f64,
    /// Envelope: mean normalised excess above the forecast p99, in forecast spreads
    /// (p99 − p50), over `envelope_window_s`, at which the component reaches its
    /// threshold.
    pub envelope_threshold: f64,
    /// Envelope: the seconds the excess is averaged over (a single late sample on a busy
    /// host is not an anomaly; a sustained excess is).
    pub envelope_window_s: f64,
    /// Level shift / change of pattern: the streaming detector's likelihood z-score at
    /// which a resource's component reaches its threshold.
    pub shift_z: f64,
    /// Streaming detector: half-life of its level predictor, seconds.
    pub level_half_life_s: f64,
    /// Streaming detector: longest period searched for, seconds.
    pub max_period_s: f64,
    /// Streaming detector: span of the robust (median) residual scale, seconds.
    pub scale_window_s: f64,
    /// Streaming detector: raw scores averaged into the short mean, seconds.
    pub short_window_s: f64,
    /// Streaming detector: span of the short means' reference distribution, seconds.
    pub long_window_s: f64,
    /// Leak: the window the memory trend is tested over, seconds.
    pub leak_window_s: f64,
    /// Leak: the lowest Theil–Sen growth rate that counts, bytes per second.
    pub leak_min_rate_bytes_per_s: f64,
    /// Leak: the lowest Mann–Kendall τ (−1 falling … 1 rising at every step) that counts.
    pub leak_min_tau: f64,
    /// Leak: memory must also exceed the highest memory seen before the window by this
    /// fraction (a workload's normal breathing is not a leak).
    pub leak_above_peak: f64,
    /// Process explosion: processes at least this many times the most seen before…
    pub fork_ratio: f64,
    /// …and at least this many more than it.
    pub fork_min_extra: f64,
    /// Sustained CPU: a busy run (CPU at ≥ half its peak) counts once it lasts this many
    /// times the longest busy run seen before…
    pub busy_run_factor: f64,
    /// …and at least this many seconds longer.
    pub busy_run_min_extra_s: f64,
    /// Joint pattern: CPU pinned at ≥ 90 % of its highest level for `joint_window_s`
    /// while a network stream scores at least this fraction of `shift_z`.
    pub joint_fraction: f64,
    /// Joint pattern: the seconds CPU must stay pinned.
    pub joint_window_s: f64,
}

impl Default for AnomalyPolicy {
    fn default() -> Self {
        AnomalyPolicy {
            enabled: true,
            alert_score: 0.5,
            warmup_s: 120.0,
            realert_s: 30.0,
            envelope_threshold: 2.0,
            envelope_window_s: 10.0,
            shift_z: 5.0,
            level_half_life_s: 10.0,
            max_period_s: 120.0,
            scale_window_s: 120.0,
            short_window_s: 5.0,
            long_window_s: 600.0,
            leak_window_s: 20.0,
            leak_min_rate_bytes_per_s: 1024.0 * 1024.0,
            leak_min_tau: 0.6,
            leak_above_peak: 0.05,
            fork_ratio: 3.0,
            fork_min_extra: 32.0,
            busy_run_factor: 1.5,
            busy_run_min_extra_s: 10.0,
            joint_fraction: 0.6,
            joint_window_s: 20.0,
        }
    }
}

impl AnomalyPolicy {
    /// Checks every field, naming the first bad one (`anomaly.<field>`).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field: &str, value: f64, reason: &'static str| PolicyError {
            field: format!("anomaly.{field}"),
            value: value.to_string(),
            reason,
        };
        if !(self.alert_score > 0.0 && self.alert_score < 1.0) {
            return Err(bad("alert_score", self.alert_score, "must be in (0, 1)"));
        }
        if !(-1.0..=1.0).contains(&self.leak_min_tau) {
            return Err(bad("leak_min_tau", self.leak_min_tau, "must be in [-1, 1]"));
        }
        let non_negative = [
            ("warmup_s", self.warmup_s),
            ("realert_s", self.realert_s),
            ("max_period_s", self.max_period_s),
            ("leak_above_peak", self.leak_above_peak),
            ("fork_min_extra", self.fork_min_extra),
        ];
        for (field, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, v, "must be a non-negative number"));
            }
        }
        let positive = [
            ("envelope_threshold", self.envelope_threshold),
            ("envelope_window_s", self.envelope_window_s),
            ("shift_z", self.shift_z),
            ("level_half_life_s", self.level_half_life_s),
            ("scale_window_s", self.scale_window_s),
            ("short_window_s", self.short_window_s),
            ("long_window_s", self.long_window_s),
            ("leak_window_s", self.leak_window_s),
            ("leak_min_rate_bytes_per_s", self.leak_min_rate_bytes_per_s),
            ("fork_ratio", self.fork_ratio),
            ("busy_run_factor", self.busy_run_factor),
            ("busy_run_min_extra_s", self.busy_run_min_extra_s),
            ("joint_fraction", self.joint_fraction),
            ("joint_window_s", self.joint_window_s),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(field, v, "must be a positive number"));
            }
        }
        Ok(())
    }
}
