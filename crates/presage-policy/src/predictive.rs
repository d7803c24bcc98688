//! presage's predictive allocator.
//!
//! For every resource it manages it reads the forecast distribution over the decision
//! horizon and sets the limit that minimises *limit + price · P(usage > limit)*
//! ([`Quantiles::priced_limit`]): a unit of resource against a violation, each at its
//! price. Reserving a unit costs the same on every workload, so a workload whose next
//! steps are predictable gets a tight limit, and one that jumps by a core gets the core
//! only if a violation is worth that much. The price is the policy's knob; the risk of
//! the chosen limit is reported with every decision (and capped at `max_risk`).
//!
//! Around that rule: **proactive raise** — a limit is raised as soon as the forecast over
//! the horizon (which covers the actuation delay) asks for more, and, further ahead, as
//! soon as the *median* forecast at any horizon up to `lookahead_s` exceeds the limit the
//! near horizon asks for: a predicted shift of the level itself (a daily batch about to
//! start), not merely a wider tail, is provisioned before it arrives; **release** — it is
//! lowered only after the forecast has stayed below it for the hold period (longer for
//! bursty demand), and by at most `release_rate` per decision; **fast repair** — an OOM
//! kill or throttling raises the limit at once to the de-censored demand × `repair_ratio`,
//! computed from observed usage so repeated repairs never compound.

use presage_core::{BurstClass, Limits, Quantiles, Reason, Resource, ResourceMap, Timestamp};
use presage_forecast::demand::observed_demand;

use crate::{AllocationInput, Allocator, AllocatorFactory, PolicyError, Proposal};

/// Settings of the [`Predictive`] allocator.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictiveConfig {
    /// The resources it sets limits on.
    pub resources: Vec<Resource>,
    /// The price of one violation per resource, in the resource's unit (cores, bytes):
    /// how much more limit it is worth reserving to avoid one.
    pub price: ResourceMap<f64>,
    /// The largest risk a chosen limit may carry, whatever the price says.
    pub max_risk: f64,
    /// Seconds the forecast must stay below a limit before it is lowered (`None`: the
    /// workload policy's `release_hold_s`).
    pub release_hold_s: Option<u32>,
    /// Largest fraction a limit is lowered by in one decision.
    pub release_rate: f64,
    /// The hold is this many times longer for demand classified bursty.
    pub bursty_hold_factor: f64,
    /// After an OOM kill or throttling, the limit goes to at least the de-censored
    /// demand × this.
    pub repair_ratio: f64,
    /// The same for memory after an OOM kill. Memory demand above the limit is never
    /// seen (the kernel kills at the limit), so a larger step finds it in fewer kills.
    pub memory_repair_ratio: f64,
    /// Seconds of history (this run's plus a restored profile's) below which a resource
    /// is neither released nor capped for the first time: unknown code keeps the limits
    /// it came with until the models have seen it (0: decide from the first sample).
    pub warmup_s: u32,
    /// Seconds after a repair during which that resource is not released (so a repair
    /// is not undone by the next forecast that has not yet learned from it).
    pub repair_hold_s: u32,
    /// How far ahead a predicted level shift is provisioned for (0: only the decision
    /// horizon counts).
    pub lookahead_s: u32,
}

impl PredictiveConfig {
    /// CPU and memory priced from one knob: `cpu_price` cores per violation, and
    /// `cpu_price × memory_per_core` bytes for memory.
    pub fn priced(cpu_price: f64, memory_per_core: f64) -> Result<Self, PolicyError> {
        for (field, v) in [
            ("presage price", cpu_price),
            ("memory per core", memory_per_core),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(PolicyError {
                    field: field.into(),
                    value: v.to_string(),
                    reason: "must be a non-negative number",
                });
            }
        }
        let mut price = ResourceMap::from_fn(|_| 0.0);
        price.set(Resource::Cpu, cpu_price);
        price.set(Resource::Memory, cpu_price * memory_per_core);
        Ok(PredictiveConfig {
            resources: vec![Resource::Cpu, Resource::Memory],
            price,
            max_risk: 0.25,
            release_hold_s: Some(0),
            release_rate: 1.0,
            bursty_hold_factor: 2.0,
            repair_ratio: 1.2,
            memory_repair_ratio: 1.2,
            warmup_s: 0,
            repair_hold_s: 3600,
            lookahead_s: 3600,
        })
    }
}

/// The predictive allocator family.
#[derive(Debug, Clone)]
pub struct Predictive {
    config: PredictiveConfig,
}

impl Predictive {
    /// The allocator with `config`.
    pub fn new(config: PredictiveConfig) -> Self {
        Predictive { config }
    }
}

impl AllocatorFactory for Predictive {
    fn name(&self) -> &'static str {
        "presage"
    }

    fn uses_forecast(&self) -> bool {
        true
    }

    fn create(&self, _id: &presage_core::WorkloadId, _initial: &Limits) -> Box<dyn Allocator> {
        Box::new(PredictiveState {
            config: self.config.clone(),
            below_since: ResourceMap::none(),
            repaired_at: ResourceMap::none(),
        })
    }
}

#[derive(Debug)]
struct PredictiveState {
    config: PredictiveConfig,
    /// Since when the wanted limit has been below the current one, per resource.
    below_since: ResourceMap<Option<Timestamp>>,
    /// When each resource was last repaired.
    repaired_at: ResourceMap<Option<Timestamp>>,
}

/// What one resource's rule decided.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Move {
    Keep,
    Repair(f64),
    Raise { to: f64, reactive: bool },
    Release(f64),
}

impl PredictiveState {
    fn want(&self, q: &Quantiles, resource: Resource, headroom: f64) -> f64 {
        let mut want = q.priced_limit(*self.config.price.get(resource));
        if q.exceedance(want) > self.config.max_risk {
            want = q.value_at(1.0 - self.config.max_risk);
        }
        want * (1.0 + headroom)
    }

    fn decide(&mut self, input: &AllocationInput<'_>, resource: Resource) -> Move {
        let Some(forecast) = input.forecast else {
            return Move::Keep;
        };
        let Some(q) = forecast.peak_within(resource, input.horizon_s) else {
            return Move::Keep;
        };
        let mut want = self.want(&q, resource, input.policy.headroom);
        for h in forecast.horizons() {
            if h.horizon_s <= input.horizon_s || h.horizon_s > self.config.lookahead_s {
                continue;
            }
            if let Some(ahead) = h.quantiles.get(resource)
                && ahead.p50() > want
            {
                want = self.want(ahead, resource, input.policy.headroom);
            }
        }
        let demand = observed_demand(input.sample, resource);
        let events = input.sample.events();
        let starved = match resource {
            Resource::Cpu => events.cpu_throttled_s > 0.0,
            Resource::Memory => events.oom_kills > 0,
            _ => false,
        };
        let current = input.current.hard(resource);
        if starved && let Some(d) = demand {
            let ratio = match resource {
                Resource::Memory => self.config.memory_repair_ratio,
                _ => self.config.repair_ratio,
            };
            let repair = d * ratio;
            if current.is_none_or(|c| repair > c) {
                self.below_since.set(resource, None);
                self.repaired_at.set(resource, Some(input.now));
                return Move::Repair(repair.max(want));
            }
        }
        let warming = input.history_s < f64::from(self.config.warmup_s);
        let Some(current) = current else {
            if warming {
                return Move::Keep;
            }
            return Move::Raise {
                to: want,
                reactive: false,
            };
        };
        if want > current {
            self.below_since.set(resource, None);
            let reactive = demand.is_some_and(|d| d >= 0.95 * current);
            return Move::Raise { to: want, reactive };
        }
        if want >= current {
            self.below_since.set(resource, None);
            return Move::Keep;
        }
        let since = *self.below_since.get_mut(resource).get_or_insert(input.now);
        let mut hold = f64::from(
            self.config
                .release_hold_s
                .unwrap_or(input.policy.release_hold_s),
        );
        if forecast.class(resource) == Some(BurstClass::Bursty) {
            hold *= self.config.bursty_hold_factor;
        }
        let recently_repaired = self
            .repaired_at
            .get(resource)
            .is_some_and(|t| input.now.secs_since(t) < f64::from(self.config.repair_hold_s));
        if warming || recently_repaired || input.now.secs_since(since) < hold {
            return Move::Keep;
        }
        want = want.max(current * (1.0 - self.config.release_rate.clamp(0.0, 1.0)));
        Move::Release(want)
    }
}

impl Allocator for PredictiveState {
    fn name(&self) -> &'static str {
        "presage"
    }

    fn allocate(&mut self, input: &AllocationInput<'_>) -> Option<Proposal> {
        let forecast = input.forecast?;
        let mut limits = *input.current;
        let mut reason = None;
        let rank = |r: Reason| match r {
            Reason::OomRepair | Reason::ThrottleRepair => 3,
            Reason::ReactiveRaise => 2,
            Reason::ProactiveRaise => 1,
            _ => 0,
        };
        let resources = self.config.resources.clone();
        for resource in resources {
            let (value, why) = match self.decide(input, resource) {
                Move::Keep => continue,
                Move::Repair(v) if resource == Resource::Memory => (v, Reason::OomRepair),
                Move::Repair(v) => (v, Reason::ThrottleRepair),
                Move::Raise { to, reactive: true } => (to, Reason::ReactiveRaise),
                Move::Raise {
                    to,
                    reactive: false,
                } => (to, Reason::ProactiveRaise),
                Move::Release(v) => (v, Reason::Release),
            };
            // An idle forecast still asks for the smallest limit; the safety rules raise
            // it to the floor.
            if limits
                .set_hard(resource, value.max(f64::MIN_POSITIVE))
                .is_ok()
                && reason.is_none_or(|r| rank(why) > rank(r))
            {
                reason = Some(why);
            }
        }
        let reason = reason?;
        let risk = ResourceMap::from_fn(|r| {
            limits
                .hard(r)
                .and_then(|l| forecast.risk(r, l, input.horizon_s))
        });
        Some(Proposal {
            limits,
            reason,
            risk,
            model: forecast.model_name(),
        })
    }
}

#[cfg(test)]
mod tests;
