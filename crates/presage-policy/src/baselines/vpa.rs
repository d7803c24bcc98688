//! The Kubernetes Vertical Pod Autoscaler, recommender and updater, as of 2026
//! (ANCHORS.md §1; "VPA-2026" in §1.12).
//!
//! **Recommender.** CPU usage goes into a decaying histogram (24 h half-life) with the
//! constant weight 0.1 per sample, dated at the measurement start; duplicate or
//! out-of-order samples are dropped. Memory goes into a second one as *one peak per 24 h
//! aggregation window*: a larger sample inside the window replaces the window's peak by
//! subtract-then-add, all dated at the window's end; the first window ends 24 h after the
//! first memory sample. An OOM kill adds a synthetic memory sample
//! `max(used + 100 MiB, used × 1.2)` with `used = max(memory limit, window peak)`, where the
//! peak excludes earlier OOM samples so bumps do not compound within a window. Then
//!
//! ```text
//! target = P90 × (1 + margin)
//! lower  = P50 × (1 + margin) × (1 + 0.001/c)^−2
//! upper  = P95 × (1 + margin) × (1 + 1/c)
//! c      = min(days between the first and last CPU sample, CPU samples / 1440)
//! ```
//!
//! each raised to the per-container floor (25 mCPU, 250 MiB) and capped by the policy's
//! [min, max]. Recommendations are recomputed at most once a minute (VPA's loop), and at
//! once after an OOM kill.
//!
//! **Confidence with coarse samples.** `samples / 1440` assumes VPA's one sample per
//! minute. With 5-minute trace samples it grows five times slower than the lifespan, so
//! c = lifespan/5: the upper bound is ×6 after one day (not ×2) and the lower bound stays
//! low for longer, so fewer "outside the bounds" updates fire. With 1-second live samples
//! c is the lifespan. That is what real VPA would do fed the same samples, so it is kept.
//!
//! **Updater.** The target is applied (CPU and memory limits both set to it: we model
//! limit = request) only when (a) a limit is unset or outside [lower, upper], or (b) the
//! limits have been in force ≥ 12 h and Σ |limit − target| / limit over CPU and memory is
//! ≥ 10 %, or (c) the last OOM kill came < 10 min after its container (re)started and the
//! target differs from the limits. A change of limits counts as a pod restart; an OOM kill
//! restarts the container. Until the first sample the provisioned limits stay.
//!
//! **What a host shows.** Usage is taken as measured: CPU capped at the quota, memory at
//! the hard limit. Throttling is invisible to VPA (as in Kubernetes); OOM kills are not.
//!
//! **Deviations.** Memory windows hold whatever peak they have even when it is 0 (VPA
//! never replaces a zero first peak). Aggregate states are dropped after 8 days without
//! samples (the retention of §1.5); the 8-day cap on history otherwise only matters for
//! garbage collection in VPA and is left to the decay. Per-pod floors are not split: one
//! workload is one container. The pre-2025 CPU weighting (B1′: weight = max(CPU request,
//! 0.1)) is available as [`VpaConfig::legacy_cpu_weight`], off by default.

use std::sync::Arc;

use presage_core::{Limits, Reason, Resource, ResourceMap, Sample, Timestamp, WorkloadId};
use presage_forecast::{DecayingHistogram, ExponentialBuckets};

use crate::registry::PolicyParts;
use crate::{AllocationInput, Allocator, AllocatorFactory, PolicyError, Proposal};

const NAME: &str = "vpa";
const MIB: f64 = 1024.0 * 1024.0;

/// What the sweep knob means.
pub const KNOB: &str = "safety-margin fraction applied to the P50/P90/P95 estimates (VPA's \
                        --recommendation-margin-fraction; negative values undercut them)";
/// VPA's shipped margin.
pub const DEFAULT_KNOB: f64 = 0.15;
/// Margins `--sweep` runs. On a 47-VM sample of the Bitbrains fastStorage dev traces
/// (capped usage, OOM on overrun, `safety::enforce` between) they took CPU violations
/// from 40 % (−0.5) through 17 % (0), 4 % (0.15) to 0.8 % (2.0), and memory from 10 % to
/// 0.01 %: the slow updater leaves bursts unmet however large the margin, hence the tail.
pub const SWEEP: &[f64] = &[-0.5, -0.2, -0.1, 0.0, 0.05, 0.15, 0.4, 1.0, 2.0];

/// VPA with `knob` as its safety margin and every other setting at its default.
pub fn build(knob: f64) -> Result<PolicyParts, PolicyError> {
    let vpa = Vpa::new(VpaConfig {
        margin: knob,
        ..VpaConfig::default()
    })?;
    Ok(PolicyParts {
        allocator: Arc::new(vpa),
        forecaster: None,
    })
}

/// VPA's settings; the defaults are its flags' defaults (ANCHORS.md §1.7, §1.10).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpaConfig {
    /// Safety margin on every estimate (`--recommendation-margin-fraction`), > −1.
    pub margin: f64,
    /// Percentile of the target.
    pub target_percentile: f64,
    /// Percentile of the lower bound.
    pub lower_percentile: f64,
    /// Percentile of the upper bound.
    pub upper_percentile: f64,
    /// CPU histogram half-life, seconds.
    pub cpu_half_life_s: f64,
    /// Memory histogram half-life, seconds.
    pub memory_half_life_s: f64,
    /// Memory aggregation window (one peak per window), seconds.
    pub memory_window_s: u32,
    /// Windows of history kept: a workload silent for `memory_window_s × this` starts over.
    pub history_windows: u32,
    /// The confidence unit: c counts these intervals of history, and samples per minute of it.
    pub confidence_interval_s: u32,
    /// OOM bump ratio (`--oom-bump-up-ratio`).
    pub oom_bump_ratio: f64,
    /// OOM minimum bump in bytes (`--oom-min-bump-up-bytes`).
    pub oom_min_bump_bytes: f64,
    /// Per-container CPU floor, cores.
    pub min_cpu_cores: f64,
    /// Per-container memory floor, bytes.
    pub min_memory_bytes: f64,
    /// Seconds limits must be in force before an in-bounds update
    /// (`--in-recommendation-bounds-eviction-lifetime-threshold`).
    pub update_after_s: u32,
    /// Summed relative difference that justifies an in-bounds update (`--pod-update-threshold`).
    pub min_change: f64,
    /// An OOM kill this soon after the container started forces an update
    /// (`--evict-after-oom-threshold`), seconds.
    pub quick_oom_s: u32,
    /// Seconds between recomputations of the recommendation (VPA's loop interval).
    pub recommend_every_s: u32,
    /// Pre-2025 CPU weighting: weight = max(CPU limit in cores, 0.1) instead of 0.1.
    pub legacy_cpu_weight: bool,
}

impl Default for VpaConfig {
    fn default() -> Self {
        VpaConfig {
            margin: DEFAULT_KNOB,
            target_percentile: 0.9,
            lower_percentile: 0.5,
            upper_percentile: 0.95,
            cpu_half_life_s: 86_400.0,
            memory_half_life_s: 86_400.0,
            memory_window_s: 86_400,
            history_windows: 8,
            confidence_interval_s: 86_400,
            oom_bump_ratio: 1.2,
            oom_min_bump_bytes: 100.0 * MIB,
            min_cpu_cores: 0.025,
            min_memory_bytes: 250.0 * MIB,
            update_after_s: 12 * 3600,
            min_change: 0.10,
            quick_oom_s: 600,
            recommend_every_s: 60,
            legacy_cpu_weight: false,
        }
    }
}

fn invalid(field: &str, value: impl ToString, reason: &'static str) -> PolicyError {
    PolicyError {
        field: format!("vpa {field}"),
        value: value.to_string(),
        reason,
    }
}

impl VpaConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.margin.is_finite() && self.margin > -1.0) {
            return Err(invalid("margin", self.margin, "must be a number above -1"));
        }
        for (field, p) in [
            ("target_percentile", self.target_percentile),
            ("lower_percentile", self.lower_percentile),
            ("upper_percentile", self.upper_percentile),
        ] {
            if !(p > 0.0 && p <= 1.0) {
                return Err(invalid(field, p, "must be in (0, 1]"));
            }
        }
        for (field, v) in [
            ("cpu_half_life_s", self.cpu_half_life_s),
            ("memory_half_life_s", self.memory_half_life_s),
            ("oom_bump_ratio", self.oom_bump_ratio),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(field, v, "must be a positive number"));
            }
        }
        for (field, v) in [
            ("oom_min_bump_bytes", self.oom_min_bump_bytes),
            ("min_cpu_cores", self.min_cpu_cores),
            ("min_memory_bytes", self.min_memory_bytes),
            ("min_change", self.min_change),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(field, v, "must be a non-negative number"));
            }
        }
        for (field, v) in [
            ("memory_window_s", self.memory_window_s),
            ("history_windows", self.history_windows),
            ("confidence_interval_s", self.confidence_interval_s),
        ] {
            if v == 0 {
                return Err(invalid(field, v, "must be positive"));
            }
        }
        Ok(())
    }
}

/// The VPA rule (recommender + updater); makes one state per workload.
#[derive(Debug, Clone)]
pub struct Vpa {
    config: VpaConfig,
    /// Empty histograms every workload's state starts from.
    cpu: DecayingHistogram,
    memory: DecayingHistogram,
}

impl Vpa {
    /// VPA with `config`, once validated.
    pub fn new(config: VpaConfig) -> Result<Self, PolicyError> {
        config.validate()?;
        let histogram = |field, layout, half_life_s: f64| {
            DecayingHistogram::new(layout, half_life_s)
                .map_err(|_| invalid(field, half_life_s, "must be at least 1 ms"))
        };
        Ok(Vpa {
            config,
            cpu: histogram(
                "cpu_half_life_s",
                ExponentialBuckets::vpa_cpu(),
                config.cpu_half_life_s,
            )?,
            memory: histogram(
                "memory_half_life_s",
                ExponentialBuckets::vpa_memory(),
                config.memory_half_life_s,
            )?,
        })
    }

    /// The settings.
    pub fn config(&self) -> &VpaConfig {
        &self.config
    }
}

impl AllocatorFactory for Vpa {
    fn name(&self) -> &'static str {
        NAME
    }

    fn uses_forecast(&self) -> bool {
        false
    }

    fn create(&self, _id: &WorkloadId, initial: &Limits) -> Box<dyn Allocator> {
        Box::new(VpaState::new(
            self.config,
            self.cpu.clone(),
            self.memory.clone(),
            initial,
        ))
    }
}

/// Target and bounds for one resource, before the policy's caps.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    target: f64,
    lower: f64,
    upper: f64,
}

/// One workload's VPA: its aggregate container state and the updater's memory of it.
#[derive(Debug)]
struct VpaState {
    config: VpaConfig,
    cpu: DecayingHistogram,
    memory: DecayingHistogram,
    first_cpu_start: Option<i64>,
    last_cpu_start: i64,
    cpu_samples: u64,
    /// End (exclusive) of the current memory aggregation window.
    window_end: Option<i64>,
    /// The window's peak from real samples, and from OOM kills.
    memory_peak: f64,
    oom_peak: f64,
    window_has_peak: bool,
    last_memory_start: i64,
    last_sample_start: Option<i64>,
    /// CPU and memory limits seen in force, to notice restarts.
    seen: (Option<f64>, Option<f64>),
    pod_start: Option<i64>,
    container_start: Option<i64>,
    last_oom_quick: bool,
    oom_since_restart: bool,
    /// Memory percentiles, valid until the memory histogram changes.
    memory_quantiles: Option<[f64; 3]>,
    estimate: Option<(ResourceMap<Option<Estimate>>, i64)>,
}

impl VpaState {
    fn new(
        config: VpaConfig,
        cpu: DecayingHistogram,
        memory: DecayingHistogram,
        initial: &Limits,
    ) -> Self {
        VpaState {
            config,
            cpu,
            memory,
            first_cpu_start: None,
            last_cpu_start: i64::MIN,
            cpu_samples: 0,
            window_end: None,
            memory_peak: 0.0,
            oom_peak: 0.0,
            window_has_peak: false,
            last_memory_start: i64::MIN,
            last_sample_start: None,
            seen: (initial.cpu_quota_cores(), initial.memory_max_bytes()),
            pod_start: None,
            container_start: None,
            last_oom_quick: false,
            oom_since_restart: false,
            memory_quantiles: None,
            estimate: None,
        }
    }

    /// Forgets the usage history (VPA garbage-collects a state left without samples).
    fn reset_history(&mut self) {
        self.cpu.reset();
        self.memory.reset();
        self.first_cpu_start = None;
        self.last_cpu_start = i64::MIN;
        self.cpu_samples = 0;
        self.window_end = None;
        self.memory_peak = 0.0;
        self.oom_peak = 0.0;
        self.window_has_peak = false;
        self.last_memory_start = i64::MIN;
        self.memory_quantiles = None;
        self.estimate = None;
    }

    /// VPA's peak-per-window aggregation of one memory sample (real or OOM-derived).
    fn add_memory(&mut self, value: f64, start: i64, is_oom: bool) {
        if !is_oom && start < self.last_memory_start {
            return;
        }
        self.last_memory_start = start;
        let window_ms = i64::from(self.config.memory_window_s) * 1000;
        let end = *self.window_end.get_or_insert(start);
        let add = if start < end {
            let old = self.memory_peak.max(self.oom_peak);
            let replace = !self.window_has_peak || value > old;
            if replace && self.window_has_peak {
                self.memory.subtract(old, 1.0, Timestamp::from_unix_ms(end));
            }
            replace
        } else {
            // Whole windows forward, so the window's phase stays that of the first sample.
            let windows = start.saturating_sub(end) / window_ms + 1;
            let new_end = end.saturating_add(windows.saturating_mul(window_ms));
            self.window_end = Some(new_end);
            self.memory_peak = 0.0;
            self.oom_peak = 0.0;
            true
        };
        if add {
            let end = self.window_end.unwrap_or(end);
            self.memory.add(value, 1.0, Timestamp::from_unix_ms(end));
            self.window_has_peak = true;
            if is_oom {
                self.oom_peak = value;
            } else {
                self.memory_peak = value;
            }
            self.memory_quantiles = None;
        }
    }

    /// c: days of history, or CPU samples per 1440 (one a minute for a day), the smaller.
    fn confidence(&self) -> f64 {
        let Some(first) = self.first_cpu_start else {
            return 0.0;
        };
        let interval_s = f64::from(self.config.confidence_interval_s);
        let lifespan = self.last_cpu_start.saturating_sub(first) as f64 / 1000.0 / interval_s;
        let samples = self.cpu_samples as f64 / (interval_s / 60.0);
        lifespan.min(samples)
    }

    fn compute_estimates(&mut self) -> ResourceMap<Option<Estimate>> {
        let c = &self.config;
        let ps = [c.lower_percentile, c.target_percentile, c.upper_percentile];
        let confidence = self.confidence();
        let mut out = ResourceMap::none();
        if !self.cpu.is_empty() {
            let q = self.cpu.percentiles(ps);
            out.set(
                Resource::Cpu,
                Some(estimate(c, q, confidence, c.min_cpu_cores)),
            );
        }
        if !self.memory.is_empty() {
            let memory = &self.memory;
            let q = *self
                .memory_quantiles
                .get_or_insert_with(|| memory.percentiles(ps));
            out.set(
                Resource::Memory,
                Some(estimate(c, q, confidence, c.min_memory_bytes)),
            );
        }
        out
    }
}

/// Percentile → × (1 + margin) → confidence multiplier → floor (VPA's wrapper order).
fn estimate(config: &VpaConfig, q: [f64; 3], confidence: f64, floor: f64) -> Estimate {
    let m = 1.0 + config.margin;
    let upper = if confidence > 0.0 {
        q[2] * m * (1.0 + 1.0 / confidence)
    } else {
        f64::INFINITY
    };
    let lower = q[0] * m * (1.0 + 0.001 / confidence).powi(-2);
    Estimate {
        target: (q[1] * m).max(floor),
        lower: if lower.is_nan() {
            floor
        } else {
            lower.max(floor)
        },
        upper: upper.max(floor),
    }
}

impl Allocator for VpaState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample, limits: &Limits) {
        let end = sample.at().unix_ms();
        let start = end.saturating_sub(i64::from(sample.interval_ms()));
        let retention_ms =
            i64::from(self.config.memory_window_s) * i64::from(self.config.history_windows) * 1000;
        if self
            .last_sample_start
            .is_some_and(|last| start.saturating_sub(last) > retention_ms)
        {
            self.reset_history();
        }
        self.last_sample_start = Some(start);

        let now_limits = (limits.cpu_quota_cores(), limits.memory_max_bytes());
        if self.pod_start.is_none() || now_limits != self.seen {
            // New limits mean a new pod (VPA evicts to resize): the clocks restart.
            self.pod_start = Some(start);
            self.container_start = Some(start);
            self.last_oom_quick = false;
            self.oom_since_restart = false;
        }
        self.seen = now_limits;

        let usage = sample.usage();
        if let Some(cores) = usage.cpu_cores()
            && start > self.last_cpu_start
        {
            let weight = if self.config.legacy_cpu_weight {
                limits.cpu_quota_cores().unwrap_or(0.0).max(0.1)
            } else {
                0.1
            };
            self.cpu.add(cores, weight, Timestamp::from_unix_ms(start));
            self.last_cpu_start = start;
            self.first_cpu_start.get_or_insert(start);
            self.cpu_samples += 1;
        }
        if let Some(bytes) = usage.memory_bytes() {
            self.add_memory(bytes, start, false);
        }
        if sample.events().oom_kills > 0 {
            let used = limits
                .memory_max_bytes()
                .unwrap_or(0.0)
                .max(self.memory_peak);
            let needed =
                (used + self.config.oom_min_bump_bytes).max(used * self.config.oom_bump_ratio);
            self.add_memory(needed, start, true);
            let quick_ms = i64::from(self.config.quick_oom_s) * 1000;
            self.last_oom_quick = self
                .container_start
                .is_some_and(|s| end.saturating_sub(s) < quick_ms);
            // The kill restarts the container.
            self.container_start = Some(end);
            self.oom_since_restart = true;
            self.estimate = None;
        }
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        if self.cpu.is_empty() && self.memory.is_empty() {
            return None;
        }
        let now = input.now.unix_ms();
        let every_ms = i64::from(self.config.recommend_every_s) * 1000;
        let estimates = match self.estimate {
            Some((e, at)) if now >= at && now.saturating_sub(at) < every_ms => e,
            _ => {
                let e = self.compute_estimates();
                self.estimate = Some((e, now));
                e
            }
        };

        let current = input.current;
        let mut outside = false;
        let mut diff = 0.0;
        let mut limits = *current;
        for resource in [Resource::Cpu, Resource::Memory] {
            let Some(e) = estimates[resource] else {
                continue;
            };
            let policy = input.policy;
            let (target, lower, upper) = (
                policy.clamp(resource, e.target),
                policy.clamp(resource, e.lower),
                policy.clamp(resource, e.upper),
            );
            match current.hard(resource) {
                Some(cur) => {
                    outside |= cur < lower || cur > upper;
                    diff += (cur - target).abs() / cur;
                }
                None => {
                    outside = true;
                    diff += 1.0;
                }
            }
            if limits.set_hard(resource, target).is_err() {
                return None;
            }
        }
        let lived = self
            .pod_start
            .is_some_and(|s| now.saturating_sub(s) >= i64::from(self.config.update_after_s) * 1000);
        let quick_oom = self.last_oom_quick;
        let admitted = outside || quick_oom || (lived && diff >= self.config.min_change);
        if !admitted || diff == 0.0 {
            return None;
        }
        let raises_memory = limits
            .memory_max_bytes()
            .zip(current.memory_max_bytes())
            .is_some_and(|(new, old)| new > old);
        Some(Proposal {
            limits,
            reason: if self.oom_since_restart && raises_memory {
                Reason::OomRepair
            } else {
                Reason::Recommendation
            },
            risk: ResourceMap::none(),
            model: NAME.into(),
        })
    }
}

#[cfg(test)]
mod tests;
