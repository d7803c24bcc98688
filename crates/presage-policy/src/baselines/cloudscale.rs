//! Baseline B7, "CloudScale-lite": predict, pad, and correct fast (Shen, Subbiah, Gu and
//! Wilkes, SoCC 2011, with the PRESS predictor of Gong, Gu and Wilkes, CNSM 2010;
//! ANCHORS.md §3.7).
//!
//! Per resource (CPU quota, memory hard limit):
//!
//! 1. **Demand prediction (PRESS).** Usage is gathered into 5-minute steps, each the peak
//!    of its samples (the limit must hold through the whole step). Every 12 hours the last
//!    1024 steps (3.6 days) are searched for a repeating pattern: the three strongest
//!    peaks of their spectrum each give a period, refined to the lag within ±20 % at which
//!    the series best correlates with its own shift; the best must correlate at 0.5 or
//!    more. With a pattern, the next step is predicted by its *signature*: the mean of the
//!    values at the same phase in every past cycle. Without one, a discrete-time Markov
//!    chain over 32 equal-width usage bins, learnt from the last day's transitions,
//!    predicts the expected next value from the current bin (each bin standing for the
//!    mean of the values that fell in it).
//! 2. **Adaptive padding** = max(burst padding, remedial padding), scaled by the knob.
//!    Burst padding is the largest upward excursion of the high-frequency half of the
//!    spectrum (periods under 20 minutes) of the last 64 steps, refreshed hourly; remedial
//!    padding is the mean of the last 10 under-estimation errors max(actual − predicted, 0),
//!    weighted 1…10 from oldest to newest.
//! 3. **Fast under-estimation correction.** When usage hits the cap (CPU throttled at
//!    ≥ 90 % of its quota; memory OOM-killed), the limit is raised to
//!    max(limit, usage) × α (α = 1.5) at once, and again at most once a minute while the
//!    saturation lasts; the first step that closes without saturation returns the limit to
//!    prediction + padding.
//!
//! A saturated sample hides the demand, and a predictor fed only what the host showed
//! would learn the capped values: the first step of every recurring surge would be
//! recorded at the old limit, and the signature would never announce it. So the history
//! records an estimate instead: a throttled CPU sample as usage/(1 − f), f being the
//! throttled fraction of its interval (a quota of q cores throttled for a fraction f of
//! the time ran when it could, so the threads wanted about q/(1 − f)); an OOM-killed
//! memory sample as α × the limit, the least the kill says was wanted.
//!
//! Until a resource has [`CloudScaleConfig::min_steps`] steps (an hour), its limit stays as
//! provisioned (the α correction still acts). The limit is proposed when a step closes or
//! a correction fires; `None` otherwise.
//!
//! # Departures from the published system, and why
//!
//! - The paper's details come from memory (ANCHORS marks them unverified): the burst cut-off
//!   (periods < 20 min), the 10-error remedial window, its linear weights and α = 1.5 are
//!   choices, not the authors' constants. The knob scales the padding, which is what moves
//!   CloudScale's slack-vs-violation trade-off.
//! - Steps are fixed at 5 minutes whatever the sampling (1 s live, ~1 min Alibaba), so
//!   periods are counted in steps and one predictor serves every source; a step's value is
//!   its peak rather than its mean, because the limit is judged against every sample.
//! - The period search runs every 12 hours rather than every step: patterns change
//!   slowly, and two 2048-point real transforms every 144 steps keep the per-sample cost
//!   small. A period within 2 % of a day is taken to be exactly a day (see
//!   `snap_to_day`), and the series is detrended before the search so a trend does not
//!   pass for a long period.
//! - The paper's scaling-conflict handling (migration) and DVFS are out of scope: presage's
//!   node-capacity arbitration is the engine's job.

use std::sync::Arc;

use presage_core::{Limits, Reason, Resource, ResourceMap, Sample, Timestamp, WorkloadId};

use crate::registry::PolicyParts;
use crate::{AllocationInput, Allocator, AllocatorFactory, PolicyError, Proposal};

mod fft;
mod predictor;
#[cfg(test)]
mod tests;

use fft::Fft;
use predictor::{Predictor, Tuning};

/// What the sweep knob means.
pub const KNOB: &str = "padding scale: multiple of CloudScale's adaptive padding max(burst, remedial) added to the predicted demand (0: prediction only; higher: fewer violations, more slack)";

/// The knob's default: the padding as CloudScale computes it.
pub const DEFAULT_KNOB: f64 = 1.0;

/// Knob values a sweep runs.
pub const SWEEP: &[f64] = &[0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0];

const NAME: &str = "cloudscale";

/// Settings of CloudScale-lite.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudScaleConfig {
    /// Multiple of the adaptive padding added to the prediction (≥ 0).
    pub padding_scale: f64,
    /// Factor the limit is raised by per correction step while usage saturates (> 1).
    pub alpha: f64,
    /// Minimum seconds between two correction steps of one resource.
    pub correction_every_s: u32,
    /// Step length in seconds.
    pub step_s: u32,
    /// Steps a resource needs before its limit follows the prediction.
    pub min_steps: u32,
    /// Steps of history searched for a repeating pattern.
    pub history_steps: usize,
    /// Steps between pattern searches.
    pub period_every_steps: u32,
    /// Steps between refreshes of the burst padding and the Markov chain's bins.
    pub refresh_every_steps: u32,
    /// Shortest period worth detecting, in steps.
    pub min_period_steps: usize,
    /// Autocorrelation a period must reach to be used.
    pub min_autocorrelation: f64,
    /// Transitions the Markov chain learns from.
    pub markov_window_steps: usize,
    /// Usage bins of the Markov chain.
    pub markov_bins: usize,
    /// Steps the burst padding looks at.
    pub burst_window_steps: usize,
    /// Under-estimation errors the remedial padding averages.
    pub remedial_errors: usize,
}

impl Default for CloudScaleConfig {
    fn default() -> Self {
        CloudScaleConfig {
            padding_scale: DEFAULT_KNOB,
            alpha: 1.5,
            correction_every_s: 60,
            step_s: 300,
            min_steps: 12,
            history_steps: 1024,
            period_every_steps: 144,
            refresh_every_steps: 12,
            min_period_steps: 12,
            min_autocorrelation: 0.5,
            markov_window_steps: 288,
            markov_bins: 32,
            burst_window_steps: 64,
            remedial_errors: 10,
        }
    }
}

fn bad(field: &str, value: f64, reason: &'static str) -> PolicyError {
    PolicyError {
        field: format!("cloudscale {field}"),
        value: value.to_string(),
        reason,
    }
}

impl CloudScaleConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.padding_scale.is_finite() && self.padding_scale >= 0.0) {
            return Err(bad(
                "padding_scale",
                self.padding_scale,
                "must be a non-negative number",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 1.0) {
            return Err(bad("alpha", self.alpha, "must be a number above 1"));
        }
        if !(self.min_autocorrelation > 0.0 && self.min_autocorrelation <= 1.0) {
            return Err(bad(
                "min_autocorrelation",
                self.min_autocorrelation,
                "must be in (0, 1]",
            ));
        }
        let counts = [
            ("step_s", self.step_s as usize),
            ("history_steps", self.history_steps),
            ("period_every_steps", self.period_every_steps as usize),
            ("refresh_every_steps", self.refresh_every_steps as usize),
            ("min_period_steps", self.min_period_steps),
            ("markov_window_steps", self.markov_window_steps),
            ("markov_bins", self.markov_bins),
            ("burst_window_steps", self.burst_window_steps),
            ("remedial_errors", self.remedial_errors),
        ];
        for (field, v) in counts {
            if v == 0 {
                return Err(bad(field, 0.0, "must be positive"));
            }
        }
        if self.history_steps > 1 << 16 {
            return Err(bad(
                "history_steps",
                self.history_steps as f64,
                "must be at most 65536",
            ));
        }
        if self.markov_window_steps + 2 > self.history_steps.max(3) {
            return Err(bad(
                "markov_window_steps",
                self.markov_window_steps as f64,
                "must be at least 2 below history_steps",
            ));
        }
        if self.markov_window_steps > usize::from(u16::MAX) {
            return Err(bad(
                "markov_window_steps",
                self.markov_window_steps as f64,
                "must be at most 65535",
            ));
        }
        Ok(())
    }

    fn tuning(&self) -> Tuning {
        Tuning {
            step_ms: i64::from(self.step_s) * 1000,
            history: self.history_steps,
            period_every: u64::from(self.period_every_steps),
            refresh_every: u64::from(self.refresh_every_steps),
            min_period: self.min_period_steps,
            min_acf: self.min_autocorrelation,
            markov_window: self.markov_window_steps,
            markov_bins: self.markov_bins,
            burst_window: self.burst_window_steps,
            remedial: self.remedial_errors,
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: CloudScaleConfig,
    fft: Arc<Fft>,
}

/// CloudScale-lite; one [`Allocator`] per workload.
#[derive(Debug, Clone)]
pub struct CloudScale {
    shared: Arc<Shared>,
}

impl CloudScale {
    /// The rule with `config`.
    pub fn new(config: CloudScaleConfig) -> Result<Self, PolicyError> {
        config.validate()?;
        // Zero-padding for a linear autocorrelation needs twice the history.
        let fft = Arc::new(Fft::new(
            (2 * config.history_steps).max(config.burst_window_steps),
        ));
        Ok(CloudScale {
            shared: Arc::new(Shared { config, fft }),
        })
    }
}

/// CloudScale-lite with padding scale `knob` (see [`KNOB`]) and default settings.
pub fn build(knob: f64) -> Result<PolicyParts, PolicyError> {
    if !(knob.is_finite() && knob >= 0.0) {
        return Err(bad(
            "padding scale knob",
            knob,
            "must be a non-negative number",
        ));
    }
    let rule = CloudScale::new(CloudScaleConfig {
        padding_scale: knob,
        ..CloudScaleConfig::default()
    })?;
    Ok(PolicyParts {
        allocator: Arc::new(rule),
        forecaster: None,
    })
}

impl AllocatorFactory for CloudScale {
    fn name(&self) -> &'static str {
        NAME
    }

    fn uses_forecast(&self) -> bool {
        false
    }

    fn create(&self, _id: &WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        let track = || {
            Track::new(Predictor::new(
                self.shared.config.tuning(),
                Arc::clone(&self.shared.fft),
            ))
        };
        Box::new(CloudScaleAllocator {
            shared: Arc::clone(&self.shared),
            cpu: track(),
            memory: track(),
        })
    }
}

/// One resource's predictor and correction state.
#[derive(Debug)]
struct Track {
    predictor: Predictor,
    /// A step closed since the last proposal.
    fresh: bool,
    /// Usage hit the cap since the last proposal; the highest usage seen then.
    saturated: Option<f64>,
    last_raise: Option<Timestamp>,
}

impl Track {
    fn new(predictor: Predictor) -> Self {
        Track {
            predictor,
            fresh: false,
            saturated: None,
            last_raise: None,
        }
    }

    /// Records a sample: `used` is what the host showed, `demand` the estimate of what
    /// was wanted (the same unless the resource saturated).
    fn see(&mut self, sample: &Sample, used: f64, demand: f64, saturated: bool) {
        let at = sample.at().unix_ms();
        self.fresh |= self.predictor.push(at, sample.interval_ms(), demand);
        if saturated {
            self.saturated = Some(self.saturated.map_or(used, |u| u.max(used)));
        }
    }

    /// The limit this resource wants now, and why; `None` to leave it.
    fn want(
        &mut self,
        config: &CloudScaleConfig,
        now: Timestamp,
        current: Option<f64>,
    ) -> Option<(f64, Reason)> {
        let fresh = std::mem::take(&mut self.fresh);
        if let Some(used) = self.saturated.take() {
            let due = self
                .last_raise
                .is_none_or(|t| now.secs_since(t) >= f64::from(config.correction_every_s));
            let base = current?.max(used);
            if !due {
                // Still saturated, but the last raise has not had time to act: keep it
                // (the step's prediction would undo the correction).
                return None;
            }
            self.last_raise = Some(now);
            return Some((base * config.alpha, Reason::ReactiveRaise));
        }
        if !fresh || self.predictor.steps() < u64::from(config.min_steps) {
            return None;
        }
        self.last_raise = None;
        let forecast = self.predictor.forecast()?;
        let want = forecast + config.padding_scale * self.predictor.padding();
        (want > 0.0).then_some((want, Reason::Recommendation))
    }
}

/// Smallest limits the rule sets: one millicore, 16 MiB.
fn floor(resource: Resource) -> f64 {
    match resource {
        Resource::Cpu => 0.001,
        _ => 16.0 * 1024.0 * 1024.0,
    }
}

#[derive(Debug)]
struct CloudScaleAllocator {
    shared: Arc<Shared>,
    cpu: Track,
    memory: Track,
}

impl Allocator for CloudScaleAllocator {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample, limits: &Limits) {
        let events = sample.events();
        if let Some(used) = sample.usage().cpu_cores() {
            let throttled = events.cpu_throttled_periods > 0 || events.cpu_throttled_s > 0.0;
            match limits.cpu_quota_cores() {
                Some(quota) if throttled && used >= 0.9 * quota => {
                    // Throttled for a fraction f of the interval, the work wanted was
                    // about usage/(1 − f); capped at ×5 for a nearly fully throttled one.
                    let interval_s = f64::from(sample.interval_ms()) / 1000.0;
                    let f = (events.cpu_throttled_s / interval_s).clamp(0.0, 0.8);
                    let demand = used.max(quota) / (1.0 - f);
                    self.cpu.see(sample, used, demand, true);
                }
                _ => self.cpu.see(sample, used, used, false),
            }
        }
        if let Some(used) = sample.usage().memory_bytes() {
            if events.oom_kills > 0 {
                // An OOM kill hides how much was wanted; the least it says is "more than
                // the limit", and α × that is what the correction will grant.
                let limit = limits.memory_max_bytes().map_or(used, |l| l.max(used));
                let demand = limit * self.shared.config.alpha;
                self.memory.see(sample, used, demand, true);
            } else {
                self.memory.see(sample, used, used, false);
            }
        }
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        let config = &self.shared.config;
        let mut limits = *input.current;
        let mut reason = None;
        for (resource, track) in [
            (Resource::Cpu, &mut self.cpu),
            (Resource::Memory, &mut self.memory),
        ] {
            let current = input.current.hard(resource);
            let Some((want, why)) = track.want(config, input.now, current) else {
                continue;
            };
            let want = want.max(floor(resource));
            if current.is_some_and(|c| (c - want).abs() <= 1e-9 * c)
                || limits.set_hard(resource, want).is_err()
            {
                continue;
            }
            let why = match (why, resource) {
                (Reason::ReactiveRaise, Resource::Cpu) => Reason::ThrottleRepair,
                (Reason::ReactiveRaise, _) => Reason::OomRepair,
                (other, _) => other,
            };
            // A repair names the decision even if the other resource only followed its
            // prediction.
            if reason.is_none_or(|r| r == Reason::Recommendation) {
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
