//! The reactive threshold rule the seeds set out to replace: a limit steps up when usage
//! is above a high-water fraction of it, steps down when usage is below a low-water
//! fraction, and holds in between. It never looks ahead, so it is always one step late.
//!
//! Per resource (CPU quota, memory hard limit), at most once per evaluation period
//! (60 s; every sample of a 1-minute or 5-minute trace), with `peak` the highest usage
//! seen since the previous evaluation:
//!
//! - **above**: `peak > upper × limit`, or the resource was starved since the last
//!   evaluation (CPU throttled, an OOM kill) → limit × 1.5;
//! - **below**: `peak < lower × limit` → limit × 0.8 (never under a floor of 1 millicore
//!   or 16 MiB; the engine's safety rules keep memory above usage as well);
//! - otherwise the limit holds.
//!
//! The knob scales the band: it is the upper threshold (`upper`, default 0.8), and the
//! lower one follows it (`lower = 0.375 × upper`, i.e. 0.3 at the default). The factors
//! are fixed. Up to `upper` = 1 the band is wider than both steps (upper/lower = 2.67 >
//! 1.5 and > 1/0.8), so one step never lands past the other threshold and steady usage
//! settles. Above 1 the "above" test can only fire through starvation (usage never reads
//! above the limit), and the lower threshold closes in on the limit: the rule then cuts
//! until the workload is throttled or killed and backs off ×1.5 — the aggressive end of
//! the sweep, where violations reach tens of percent. The knob stops at 2.5, where the
//! lower threshold would reach the limit and the rule would cut without end.
//!
//! A resource with no limit in force gets one at `peak / ((upper + lower)/2)`, the
//! middle of the band. A throttle counts as "above" only when usage was at ≥ 90 % of the
//! quota — throttling further below it is the node's contention, which a larger quota
//! does not cure.
//!
//! The rule has no cooldown beyond its evaluation period: each evaluation can move the
//! limit by one step, so a workload far below its limit walks down ×0.8 per step.

use std::sync::Arc;

use presage_core::{Limits, Reason, Resource, ResourceMap, Sample, Timestamp, WorkloadId};

use crate::registry::PolicyParts;
use crate::{AllocationInput, Allocator, AllocatorFactory, PolicyError, Proposal};

/// What the sweep knob means.
pub const KNOB: &str = "upper utilisation threshold, in (0, 2.5]: usage above this fraction of the limit steps it up ×1.5, below 0.375 × this steps it down ×0.8 (lower: more slack, fewer violations; above 1 only throttling or an OOM raises)";

/// The knob's default: step up above 80 % (and down below 30 %).
pub const DEFAULT_KNOB: f64 = 0.8;

/// Knob values a sweep runs.
pub const SWEEP: &[f64] = &[0.2, 0.4, 0.6, 0.8, 1.0, 1.4, 1.8, 2.4];

const NAME: &str = "threshold";

/// Settings of the threshold rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdConfig {
    /// Fraction of the limit above which the limit steps up (above 1, only starvation
    /// does).
    pub upper: f64,
    /// Lower threshold as a fraction of `upper`.
    pub lower_ratio: f64,
    /// Factor applied when stepping up (> 1).
    pub up: f64,
    /// Factor applied when stepping down (in (0, 1)).
    pub down: f64,
    /// Seconds between evaluations.
    pub every_s: u32,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            upper: DEFAULT_KNOB,
            lower_ratio: 0.375,
            up: 1.5,
            down: 0.8,
            every_s: 60,
        }
    }
}

fn bad(field: &str, value: f64, reason: &'static str) -> PolicyError {
    PolicyError {
        field: format!("threshold {field}"),
        value: value.to_string(),
        reason,
    }
}

impl ThresholdConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.upper > 0.0 && self.upper.is_finite()) {
            return Err(bad("upper", self.upper, "must be a positive number"));
        }
        if !(self.lower_ratio > 0.0 && self.lower_ratio < 1.0) {
            return Err(bad("lower_ratio", self.lower_ratio, "must be in (0, 1)"));
        }
        if self.upper * self.lower_ratio >= 1.0 {
            return Err(bad(
                "upper",
                self.upper,
                "puts the lower threshold at or above the limit",
            ));
        }
        if !(self.up.is_finite() && self.up > 1.0) {
            return Err(bad("up", self.up, "must be a number above 1"));
        }
        if !(self.down > 0.0 && self.down < 1.0) {
            return Err(bad("down", self.down, "must be in (0, 1)"));
        }
        Ok(())
    }
}

/// The threshold rule; one [`Allocator`] per workload.
#[derive(Debug, Clone, Copy)]
pub struct Threshold {
    config: ThresholdConfig,
}

impl Threshold {
    /// The rule with `config`.
    pub fn new(config: ThresholdConfig) -> Result<Self, PolicyError> {
        config.validate()?;
        Ok(Threshold { config })
    }
}

/// The rule with upper threshold `knob` (see [`KNOB`]) and default factors.
pub fn build(knob: f64) -> Result<PolicyParts, PolicyError> {
    if !(knob > 0.0 && knob <= 2.5) {
        return Err(bad("upper threshold knob", knob, "must be in (0, 2.5]"));
    }
    let rule = Threshold::new(ThresholdConfig {
        upper: knob,
        ..ThresholdConfig::default()
    })?;
    Ok(PolicyParts {
        allocator: Arc::new(rule),
        forecaster: None,
    })
}

impl AllocatorFactory for Threshold {
    fn name(&self) -> &'static str {
        NAME
    }

    fn uses_forecast(&self) -> bool {
        false
    }

    fn create(&self, _id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        Box::new(ThresholdAllocator {
            config: self.config,
            cpu: Watch::default(),
            memory: Watch::default(),
            last_eval: None,
        })
    }
}

/// What one resource did since the last evaluation.
#[derive(Debug, Default, Clone, Copy)]
struct Watch {
    peak: Option<f64>,
    starved: bool,
}

impl Watch {
    fn see(&mut self, used: f64, starved: bool) {
        self.peak = Some(self.peak.map_or(used, |p| p.max(used)));
        self.starved |= starved;
    }
}

#[derive(Debug)]
struct ThresholdAllocator {
    config: ThresholdConfig,
    cpu: Watch,
    memory: Watch,
    last_eval: Option<Timestamp>,
}

/// Smallest limits the rule sets: one millicore, 16 MiB.
fn floor(resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => 0.001,
        _ => 16.0 * 1024.0 * 1024.0,
    }
}

enum Step {
    Up,
    Down,
    Set,
}

impl ThresholdAllocator {
    fn step(&self, watch: Watch, limit: Option<f64>) -> Option<(f64, Step)> {
        let c = &self.config;
        let lower = c.upper * c.lower_ratio;
        let peak = watch.peak?;
        let Some(limit) = limit else {
            let mid = (c.upper + lower) / 2.0;
            return (peak > 0.0).then_some((peak / mid, Step::Set));
        };
        if watch.starved || peak > c.upper * limit {
            Some((limit * c.up, Step::Up))
        } else if peak < lower * limit {
            Some((limit * c.down, Step::Down))
        } else {
            None
        }
    }
}

impl Allocator for ThresholdAllocator {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample, limits: &Limits) {
        let events = sample.events();
        if let Some(used) = sample.usage().cpu_cores() {
            let throttled = events.cpu_throttled_periods > 0 || events.cpu_throttled_s > 0.0;
            let at_quota = limits.cpu_quota_cores().is_some_and(|q| used >= 0.9 * q);
            self.cpu.see(used, throttled && at_quota);
        }
        if let Some(used) = sample.usage().memory_bytes() {
            self.memory.see(used, events.oom_kills > 0);
        }
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        let starved = self.cpu.starved || self.memory.starved;
        let due = self
            .last_eval
            .is_none_or(|t| input.now.secs_since(t) >= f64::from(self.config.every_s));
        if !due && !starved {
            return None;
        }
        self.last_eval = Some(input.now);
        let cpu = std::mem::take(&mut self.cpu);
        let memory = std::mem::take(&mut self.memory);
        let mut limits = *input.current;
        let mut reason = None;
        for (resource, watch) in [(Resource::Cpu, cpu), (Resource::Memory, memory)] {
            let Some((want, step)) = self.step(watch, input.current.hard(resource)) else {
                continue;
            };
            if limits
                .set_hard(resource, want.max(floor(resource)))
                .is_err()
            {
                continue;
            }
            let why = match step {
                Step::Up if watch.starved && resource == Resource::Memory => Reason::OomRepair,
                Step::Up if watch.starved => Reason::ThrottleRepair,
                Step::Up => Reason::ReactiveRaise,
                Step::Down | Step::Set => Reason::Recommendation,
            };
            // A repair outranks a routine raise, which outranks a cut.
            let rank = |r: Reason| match r {
                Reason::OomRepair => 3,
                Reason::ThrottleRepair => 2,
                Reason::ReactiveRaise => 1,
                _ => 0,
            };
            if reason.is_none_or(|r| rank(why) > rank(r)) {
                reason = Some(why);
            }
        }
        Some(Proposal {
            limits,
            reason: reason?,
            risk: ResourceMap::none(),
            model: NAME.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use presage_core::{Events, Usage};

    use super::*;
    use crate::{WorkloadPolicy, safety};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn id() -> WorkloadId {
        WorkloadId::new("vm").expect("valid id")
    }

    fn limits(cpu: f64, mem: f64) -> Limits {
        Limits::unlimited()
            .with_hard(Resource::Cpu, cpu)
            .and_then(|l| l.with_hard(Resource::Memory, mem))
            .expect("valid limits")
    }

    fn sample(t: i64, cpu: f64, mem: f64, events: Events) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, cpu)
            .and_then(|u| u.with(Resource::Memory, mem))
            .expect("valid usage");
        Sample::new(Timestamp::from_unix_secs(t), id(), 300_000, usage)
            .and_then(|s| s.with_events(events))
            .expect("valid sample")
    }

    /// One observe + allocate at time `t` with `current` in force.
    fn decide(
        alloc: &mut dyn Allocator,
        t: i64,
        current: &Limits,
        cpu: f64,
        mem: f64,
        events: Events,
    ) -> Option<Proposal> {
        let s = sample(t, cpu, mem, events);
        alloc.observe(&s, current);
        let policy = WorkloadPolicy::default();
        alloc.allocate(&AllocationInput {
            now: s.at(),
            sample: &s,
            forecast: None,
            current,
            policy: &policy,
            horizon_s: 300,
            history_s: f64::INFINITY,
        })
    }

    fn rule() -> Box<dyn Allocator> {
        Threshold::new(ThresholdConfig::default())
            .expect("default config")
            .create(&id(), &limits(2.0, 4.0 * GIB))
    }

    #[test]
    fn steps_up_above_80_percent_down_below_30_and_holds_between() -> TestResult {
        let current = limits(2.0, 4.0 * GIB);
        let quiet = Events::default();
        // CPU 1.7/2 = 85 % → ×1.5 = 3.0; memory 2/4 = 50 % holds.
        let mut a = rule();
        let p = decide(a.as_mut(), 300, &current, 1.7, 2.0 * GIB, quiet).ok_or("a proposal")?;
        assert_eq!(p.limits.cpu_quota_cores(), Some(3.0));
        assert_eq!(p.limits.memory_max_bytes(), Some(4.0 * GIB));
        assert_eq!(p.reason, Reason::ReactiveRaise);
        // CPU 0.5/2 = 25 % → ×0.8 = 1.6; memory 1/4 = 25 % → 3.2 GiB.
        let mut a = rule();
        let p = decide(a.as_mut(), 300, &current, 0.5, GIB, quiet).ok_or("a proposal")?;
        assert_eq!(p.limits.cpu_quota_cores(), Some(1.6));
        assert_eq!(p.limits.memory_max_bytes(), Some(3.2 * GIB));
        assert_eq!(p.reason, Reason::Recommendation);
        // 1.0/2 = 50 % and 2/4 = 50 %: inside the band, nothing to do.
        let mut a = rule();
        assert!(decide(a.as_mut(), 300, &current, 1.0, 2.0 * GIB, quiet).is_none());
        // Exactly on the upper threshold (1.6/2) and just above the lower one (1.25/4 =
        // 31 %) holds too.
        let mut a = rule();
        assert!(decide(a.as_mut(), 300, &current, 1.6, 1.25 * GIB, quiet).is_none());
        Ok(())
    }

    #[test]
    fn an_oom_or_a_throttle_counts_as_above() -> TestResult {
        let current = limits(2.0, 4.0 * GIB);
        let oom = Events {
            oom_kills: 1,
            ..Events::default()
        };
        let mut a = rule();
        let p = decide(a.as_mut(), 300, &current, 1.0, 2.0 * GIB, oom).ok_or("a proposal")?;
        assert_eq!(p.limits.memory_max_bytes(), Some(6.0 * GIB));
        assert_eq!(p.reason, Reason::OomRepair);
        // Throttled at the quota: usage reads 2.0 = 100 %, and starved.
        let throttled = Events {
            cpu_throttled_s: 30.0,
            cpu_throttled_periods: 300,
            ..Events::default()
        };
        let mut a = rule();
        let p = decide(a.as_mut(), 300, &current, 2.0, 2.0 * GIB, throttled).ok_or("a proposal")?;
        assert_eq!(p.limits.cpu_quota_cores(), Some(3.0));
        assert_eq!(p.reason, Reason::ThrottleRepair);
        // Throttled well below the quota (node contention) is not "above" by itself.
        let mut a = rule();
        assert!(decide(a.as_mut(), 300, &current, 1.0, 2.0 * GIB, throttled).is_none());
        Ok(())
    }

    #[test]
    fn evaluates_once_a_minute_on_the_peak_seen_since() -> TestResult {
        let current = limits(2.0, 4.0 * GIB);
        let quiet = Events::default();
        let mut a = rule();
        assert!(decide(a.as_mut(), 0, &current, 1.0, 2.0 * GIB, quiet).is_none());
        // A 1-second spike to 1.9 inside the minute is remembered until the next
        // evaluation, even though the latest sample is back at 1.0.
        assert!(decide(a.as_mut(), 10, &current, 1.9, 2.0 * GIB, quiet).is_none());
        assert!(decide(a.as_mut(), 30, &current, 1.0, 2.0 * GIB, quiet).is_none());
        let p = decide(a.as_mut(), 60, &current, 1.0, 2.0 * GIB, quiet).ok_or("a proposal")?;
        assert_eq!(p.limits.cpu_quota_cores(), Some(3.0));
        Ok(())
    }

    #[test]
    fn sets_a_limit_in_the_middle_of_the_band_when_none_is_in_force() -> TestResult {
        let mut a = rule();
        let p = decide(
            a.as_mut(),
            300,
            &Limits::unlimited(),
            1.1,
            GIB,
            Events::default(),
        )
        .ok_or("a proposal")?;
        // The middle of [0.3, 0.8] is 0.55: 1.1 / 0.55 = 2.0.
        let cpu = p.limits.cpu_quota_cores().ok_or("cpu limit")?;
        assert!((cpu - 2.0).abs() < 1e-12, "{cpu}");
        Ok(())
    }

    #[test]
    fn the_band_does_not_oscillate_on_steady_usage() -> TestResult {
        let mut current = limits(8.0, 16.0 * GIB);
        let mut a = rule();
        let policy = WorkloadPolicy::default();
        let mut changes = Vec::new();
        for i in 0..200 {
            let s = sample(300 * (i + 1), 1.0, 2.0 * GIB, Events::default());
            a.observe(&s, &current);
            let input = AllocationInput {
                now: s.at(),
                sample: &s,
                forecast: None,
                current: &current,
                policy: &policy,
                horizon_s: 300,
                history_s: f64::INFINITY,
            };
            if let Some(p) = a.allocate(&input) {
                let new = safety::enforce(&p.limits, &current, s.usage(), &policy);
                if new != current {
                    changes.push(i);
                    current = new;
                }
            }
        }
        // 8 → 6.4 → 5.12 → 4.1 → 3.28 (1/3.28 = 30.5 %: inside the band), then nothing.
        let cpu = current.cpu_quota_cores().ok_or("cpu")?;
        assert!(cpu > 1.0 / 0.8 && cpu < 1.0 / 0.3, "{cpu}");
        assert!(changes.iter().all(|&i| i < 20), "late changes: {changes:?}");
        Ok(())
    }

    /// Three days of a 0.5–2.5-core daily wave at 5-minute steps, CPU capped at the
    /// quota as a host shows it. Returns (violation rate, slack, final limits).
    fn daily(upper: f64) -> Result<(f64, f64, Limits), Box<dyn std::error::Error>> {
        let mut current = limits(1.0, 16.0 * GIB);
        let mut a = Threshold::new(ThresholdConfig {
            upper,
            ..ThresholdConfig::default()
        })?
        .create(&id(), &current);
        let policy = WorkloadPolicy::default();
        let (mut over, mut slack, mut total) = (0u32, 0.0, 0.0);
        let steps = 3 * 288;
        for i in 0..steps {
            let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let demand = 1.5 + phase.sin();
            let quota = current.cpu_quota_cores().ok_or("cpu")?;
            let mut events = Events::default();
            if demand > quota {
                over += 1;
                events.cpu_throttled_s = (demand - quota) / demand * 300.0;
                events.cpu_throttled_periods = 1;
            }
            slack += (quota - demand).max(0.0);
            total += quota;
            let s = sample(300 * (i + 1), demand.min(quota), 2.0 * GIB, events);
            a.observe(&s, &current);
            let input = AllocationInput {
                now: s.at(),
                sample: &s,
                forecast: None,
                current: &current,
                policy: &policy,
                horizon_s: 300,
                history_s: f64::INFINITY,
            };
            if let Some(p) = a.allocate(&input) {
                current = safety::enforce(&p.limits, &current, s.usage(), &policy);
            }
        }
        Ok((
            f64::from(over) / f64::from(steps as u32),
            slack / total,
            current,
        ))
    }

    #[test]
    fn follows_a_daily_cycle_reactively() -> TestResult {
        let (rate, slack, last) = daily(DEFAULT_KNOB)?;
        // Reactive: it keeps demand inside the band most of the time, but every rise past
        // 80 % of the limit is a step late, and the band leaves a lot unused.
        assert!(rate < 0.05, "violations {rate}");
        assert!(slack > 0.2 && slack < 0.7, "slack {slack}");
        let mem = last.memory_max_bytes().ok_or("memory")?;
        assert!(
            (2.0 * GIB..8.0 * GIB).contains(&mem),
            "memory shrank toward use: {mem}"
        );
        Ok(())
    }

    #[test]
    fn the_knob_trades_violations_for_slack() -> TestResult {
        let (safe_rate, safe_slack, _) = daily(0.4)?;
        let (tight_rate, tight_slack, _) = daily(1.8)?;
        assert!(safe_rate < tight_rate, "{safe_rate} vs {tight_rate}");
        assert!(safe_slack > tight_slack, "{safe_slack} vs {tight_slack}");
        Ok(())
    }

    #[test]
    fn build_checks_its_knob_and_every_sweep_value_builds() {
        for bad in [0.0, -0.5, 3.0, f64::NAN] {
            let err = build(bad).expect_err("bad knob");
            assert!(err.field.contains("upper threshold"), "{err}");
        }
        for &k in SWEEP {
            let parts = build(k).expect("sweep value builds");
            assert_eq!(parts.allocator.name(), "threshold");
            assert!(!parts.allocator.uses_forecast());
        }
        assert!(build(DEFAULT_KNOB).is_ok());
    }
}
