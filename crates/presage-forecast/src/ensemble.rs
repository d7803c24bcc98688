//! The online ensemble: every candidate model runs on every workload; per workload and
//! resource the forecast handed to the allocator is the member with the lowest recent
//! decayed cost.
//!
//! A member's cost is what following it would have cost, judged one step later against
//! the de-censored demand: the limit its forecast implied ([`Quantiles::priced_limit`] at
//! the allocator's violation price) costs its unused part, `max(limit − demand, 0)`, plus
//! the price if demand exceeded it — under-prediction is punished far more than
//! over-prediction (Crane's asymmetric error, Autopilot's overrun/underrun costs) — plus a
//! change cost when its limit moved by more than `change_band` (Autopilot's w_ΔL). Costs
//! decay with a half-life, and switching away from the member in use must beat it by
//! `switch_penalty` times the current member's cost (Autopilot's w_Δm), so the choice does
//! not flap. The chosen member and its cost ride on every forecast's model name.
//!
//! **Two choices per resource.** The member best at the next step is rarely the one that
//! sees a daily batch coming an hour ahead (a recent-residual model is tight on the next
//! step and blind to the schedule; a seasonal one is the reverse). So each member is also
//! judged on its median forecast `ahead_s` ahead, checked against the
//! demand when that time comes (issued every `ahead_s / 4` at most, so the pending
//! checks stay few whatever the sampling rate) — and requested horizons nearer (on a log
//! scale) to `ahead_s` than to the sampling step are served by that choice. The far
//! judgement is the absolute error of the member's median, not the priced cost: what the
//! far forecast is for is telling *where the level will be* (the allocator provisions a
//! predicted shift of the median), and a priced cost there rewards the blind model that
//! stays near the current level for the hours it is right and forgets the hour it is
//! badly wrong.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use presage_core::{Forecast, HorizonForecast, Resource, ResourceMap, Sample, Timestamp};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::demand::observed_demand;
use crate::{ForecastError, Forecaster, ForecasterFactory, ModelState, StateView};

pub(crate) const NAME: &str = "ensemble";
const STATE_VERSION: u32 = 2;
/// Forecasts judged per `ahead_s`, at most.
const AHEAD_CHECKS: u32 = 4;

/// Settings of the [`Ensemble`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// The price of one violation per resource, in the resource's unit (the allocator's).
    pub price: ResourceMap<f64>,
    /// Half-life of the members' costs, in seconds.
    pub half_life_s: f64,
    /// A challenger must cost less than the current member × (1 − this) to take over.
    pub switch_penalty: f64,
    /// Relative move of a member's limit counted as a change.
    pub change_band: f64,
    /// Cost of one change, as a fraction of the member's limit.
    pub change_cost: f64,
    /// The far horizon members are also judged at, in seconds (0: only the next step).
    pub ahead_s: u32,
    /// Half-life of the far costs, in seconds: long enough to remember yesterday's
    /// batch when today's comes (a daily miss decayed by a 6-hour half-life is 1/16 of
    /// itself a day later, and the blind model wins again).
    pub ahead_half_life_s: f64,
    /// Seconds of data before far forecasts are judged (1 day): the seasonal members'
    /// first day, before they have seen one season, would otherwise weigh against them
    /// for days.
    pub ahead_warmup_s: u32,
}

impl EnsembleConfig {
    /// Defaults around the given violation prices.
    pub fn with_price(price: ResourceMap<f64>) -> Self {
        EnsembleConfig {
            price,
            half_life_s: 6.0 * 3600.0,
            switch_penalty: 0.1,
            change_band: 0.05,
            change_cost: 0.02,
            ahead_s: 3600,
            ahead_half_life_s: 2.0 * 86_400.0,
            ahead_warmup_s: 86_400,
        }
    }
}

/// The ensemble family: a list of member families.
#[derive(Debug, Clone)]
pub struct Ensemble {
    members: Vec<Arc<dyn ForecasterFactory>>,
    config: EnsembleConfig,
}

impl Ensemble {
    /// An ensemble of `members` (at least one).
    pub fn new(
        members: Vec<Arc<dyn ForecasterFactory>>,
        config: EnsembleConfig,
    ) -> Result<Self, ForecastError> {
        if members.is_empty() {
            return Err(ForecastError::InvalidSetting {
                field: "ensemble members",
                value: "[]".into(),
                reason: "an ensemble needs at least one model",
            });
        }
        for (field, v) in [
            ("ensemble half_life_s", config.half_life_s),
            ("ensemble ahead_half_life_s", config.ahead_half_life_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(ForecastError::InvalidSetting {
                    field,
                    value: v.to_string(),
                    reason: "must be a positive number of seconds",
                });
            }
        }
        Ok(Ensemble { members, config })
    }

    /// The member families' names, in order.
    pub fn member_names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.name()).collect()
    }
}

/// One member's running cost of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Score {
    cost: f64,
    /// The limit its last forecast implied, judged against the next sample.
    limit: Option<f64>,
}

impl presage_core::MapEntry for Score {}

/// One member's running cost of one resource at the far horizon.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct AheadScore {
    cost: f64,
    /// Median forecasts waiting for their time: (due, median).
    pending: VecDeque<(Timestamp, f64)>,
}

impl presage_core::MapEntry for AheadScore {}

#[derive(Debug)]
struct EnsembleState {
    config: EnsembleConfig,
    members: Vec<Box<dyn Forecaster>>,
    scores: Vec<ResourceMap<Score>>,
    chosen: ResourceMap<usize>,
    ahead: Vec<ResourceMap<AheadScore>>,
    chosen_ahead: ResourceMap<usize>,
    last_issued: Option<Timestamp>,
    first_at: Option<Timestamp>,
    /// The sampling step, for telling near horizons from far ones.
    step_s: u32,
    last_at: Option<Timestamp>,
    /// The label of the current choice, rebuilt only when it changes.
    label: String,
    /// Resources the workload has shown demand for (the rest are not scored).
    seen: ResourceMap<bool>,
}

/// What an ensemble saves: its own scores plus every member's state. `M` is
/// [`IgnoredAny`] when restoring, which reads the members in place instead
/// ([`member_views`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved<M = Vec<ModelState>> {
    scores: Vec<ResourceMap<Score>>,
    chosen: ResourceMap<usize>,
    ahead: Vec<ResourceMap<AheadScore>>,
    chosen_ahead: ResourceMap<usize>,
    last_issued: Option<Timestamp>,
    first_at: Option<Timestamp>,
    step_s: u32,
    last_at: Option<Timestamp>,
    members: M,
}

/// The members' saved states inside an ensemble's, borrowed: decoding them as
/// `Vec<ModelState>` would copy every member's tree before each member decodes it again.
fn member_views(state: StateView<'_>) -> Result<Vec<StateView<'_>>, ForecastError> {
    let malformed = |what: String| ForecastError::Malformed {
        model: NAME.to_owned(),
        source: serde::de::Error::custom(what),
    };
    let members = state
        .state
        .get("members")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("members: not a list of saved states".into()))?;
    members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let model = m.get("model").and_then(Value::as_str);
            let version = m
                .get("version")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok());
            match (model, version, m.get("state")) {
                (Some(model), Some(version), Some(state)) => Ok(StateView {
                    model,
                    version,
                    state,
                }),
                _ => Err(malformed(format!(
                    "members[{i}]: not a saved state (model, version and state)"
                ))),
            }
        })
        .collect()
}

impl EnsembleState {
    /// Judges each member's last implied limit against this sample, then decays.
    fn score(&mut self, sample: &Sample) {
        let elapsed_s = self
            .last_at
            .map_or(0.0, |t| sample.at().secs_since(t).max(0.0));
        let keep = (-elapsed_s / self.config.half_life_s).exp2();
        let keep_ahead = (-elapsed_s / self.config.ahead_half_life_s).exp2();
        for resource in Resource::ALL {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let price = *self.config.price.get(resource);
            let cost =
                |limit: f64| (limit - demand).max(0.0) + if demand > limit { price } else { 0.0 };
            for scores in &mut self.scores {
                let s = scores.get_mut(resource);
                if let Some(limit) = s.limit {
                    s.cost = s.cost * keep + cost(limit);
                }
            }
            for ahead in &mut self.ahead {
                let a = ahead.get_mut(resource);
                a.cost *= keep_ahead;
                while let Some(&(due, limit)) = a.pending.front() {
                    if due > sample.at() {
                        break;
                    }
                    a.pending.pop_front();
                    a.cost += (limit - demand).abs();
                }
            }
        }
    }

    /// Records each member's median `ahead_s` from now, at most every
    /// `ahead_s / AHEAD_CHECKS`.
    fn predict_ahead(&mut self, now: Timestamp) {
        let ahead_s = self.config.ahead_s;
        let every_s = f64::from(ahead_s / AHEAD_CHECKS);
        let first = *self.first_at.get_or_insert(now);
        if ahead_s == 0
            || now.secs_since(first) < f64::from(self.config.ahead_warmup_s)
            || self
                .last_issued
                .is_some_and(|t| now.secs_since(t) < every_s)
        {
            return;
        }
        self.last_issued = Some(now);
        let due = now.plus_ms(i64::from(ahead_s) * 1000);
        for (member, ahead) in self.members.iter().zip(&mut self.ahead) {
            for resource in Resource::ALL {
                let price = *self.config.price.get(resource);
                if price <= 0.0 || !self.seen.get(resource) {
                    continue;
                }
                if let Some(q) = member.quantiles(now, ahead_s, resource) {
                    ahead.get_mut(resource).pending.push_back((due, q.p50()));
                }
            }
        }
    }

    /// Whether `horizon_s` is served by the far choice.
    fn is_far(&self, horizon_s: u32) -> bool {
        let ahead = f64::from(self.config.ahead_s);
        let step = f64::from(self.step_s.max(1));
        let h = f64::from(horizon_s.max(1));
        self.config.ahead_s > self.step_s && (ahead / h).ln() < (h / step).ln()
    }

    /// Records each member's implied limit for the next sample (its forecast made now,
    /// before it sees that sample), counting a change cost when it moved.
    fn predict(&mut self, now: Timestamp, step_s: u32) {
        for (member, scores) in self.members.iter().zip(&mut self.scores) {
            for resource in Resource::ALL {
                let s = scores.get_mut(resource);
                // Only resources with a price are judged (the rest have no limit to imply).
                if *self.config.price.get(resource) <= 0.0
                    || (s.limit.is_none() && !self.seen.get(resource))
                {
                    continue;
                }
                let q = member.quantiles(now, step_s.max(1), resource);
                let next = q.map(|q| q.priced_limit(*self.config.price.get(resource)));
                if let (Some(old), Some(new)) = (s.limit, next)
                    && (new - old).abs() > self.config.change_band * old
                {
                    s.cost += self.config.change_cost * new;
                }
                s.limit = next;
            }
        }
    }

    fn choose(&mut self) {
        let n = self.members.len();
        let penalty = self.config.switch_penalty;
        let mut changed = false;
        for resource in Resource::ALL {
            // A member that cannot forecast now (still learning, or — for the periodic
            // model — no period in sight) accrues no cost; it must not win for that.
            let able = |i: usize| self.scores[i].get(resource).limit.is_some();
            let near = |i: usize| {
                if able(i) {
                    self.scores[i].get(resource).cost
                } else {
                    f64::INFINITY
                }
            };
            changed |= switch(self.chosen.get_mut(resource), n, penalty, near);
            let far = |i: usize| {
                if able(i) {
                    self.ahead[i].get(resource).cost
                } else {
                    f64::INFINITY
                }
            };
            changed |= switch(self.chosen_ahead.get_mut(resource), n, penalty, far);
        }
        if changed || self.label.is_empty() {
            let name = |r: Resource| {
                let near = self.members[*self.chosen.get(r)].name();
                let far = self.members[*self.chosen_ahead.get(r)].name();
                if near == far {
                    near.to_owned()
                } else {
                    format!("{near}>{far}")
                }
            };
            self.label = format!(
                "ensemble[cpu:{},memory:{}]",
                name(Resource::Cpu),
                name(Resource::Memory)
            );
        }
    }
}

/// Moves `current` to the cheapest of `n` members when it beats the current one by the
/// switch penalty; whether it moved.
fn switch(current: &mut usize, n: usize, penalty: f64, cost: impl Fn(usize) -> f64) -> bool {
    let Some(best) = (0..n).min_by(|&a, &b| cost(a).total_cmp(&cost(b))) else {
        return false;
    };
    if best != *current && cost(best) < cost(*current) * (1.0 - penalty) {
        *current = best;
        return true;
    }
    false
}

impl Forecaster for EnsembleState {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(&mut self, sample: &Sample) {
        let step_s = self.last_at.map_or(sample.interval_ms() / 1000, |t| {
            sample.at().secs_since(t).max(1.0) as u32
        });
        if let Some(t) = self.last_at {
            // Each member's forecast as of the previous sample, judged now.
            self.predict(t, step_s);
            self.predict_ahead(t);
            self.score(sample);
            self.step_s = step_s;
        }
        for (resource, _) in sample.usage().iter() {
            self.seen.set(resource, true);
        }
        for member in &mut self.members {
            member.observe(sample);
        }
        self.last_at = Some(sample.at());
        self.choose();
    }

    fn forecast(&self, now: Timestamp, horizons_s: &[u32]) -> Option<Forecast> {
        // Each resource from its chosen member; members chosen by no resource are skipped.
        let mut horizons: Vec<HorizonForecast> = horizons_s
            .iter()
            .map(|&horizon_s| HorizonForecast {
                horizon_s,
                quantiles: ResourceMap::none(),
            })
            .collect();
        let far: Vec<bool> = horizons_s.iter().map(|&h| self.is_far(h)).collect();
        let mut class = ResourceMap::none();
        for (i, member) in self.members.iter().enumerate() {
            let near_of = |r: &Resource| *self.chosen.get(*r) == i;
            let far_of = |r: &Resource| *self.chosen_ahead.get(*r) == i;
            if !Resource::ALL.iter().any(|r| near_of(r) || far_of(r)) {
                continue;
            }
            let Some(f) = member.forecast(now, horizons_s) else {
                continue;
            };
            for ((out, h), &far) in horizons.iter_mut().zip(f.horizons()).zip(&far) {
                for r in Resource::ALL {
                    if (far && far_of(&r)) || (!far && near_of(&r)) {
                        out.quantiles.set(r, h.quantiles[r]);
                    }
                }
            }
            for r in Resource::ALL.into_iter().filter(near_of) {
                class.set(r, f.class(r));
            }
        }
        if horizons
            .iter()
            .all(|h| h.quantiles.present().next().is_none())
        {
            return None;
        }
        let mut forecast = Forecast::new(now, Cow::Owned(self.label.clone()), horizons).ok()?;
        for (r, c) in class.present() {
            forecast = forecast.with_class(r, *c);
        }
        Some(forecast)
    }

    fn save(&self) -> Result<ModelState, ForecastError> {
        let saved: Saved = Saved {
            scores: self.scores.clone(),
            chosen: self.chosen,
            ahead: self.ahead.clone(),
            chosen_ahead: self.chosen_ahead,
            last_issued: self.last_issued,
            first_at: self.first_at,
            step_s: self.step_s,
            last_at: self.last_at,
            members: self
                .members
                .iter()
                .map(|m| m.save())
                .collect::<Result<_, _>>()?,
        };
        ModelState::encode(NAME, STATE_VERSION, &saved)
    }
}

impl ForecasterFactory for Ensemble {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self) -> Box<dyn Forecaster> {
        let members: Vec<Box<dyn Forecaster>> = self.members.iter().map(|m| m.create()).collect();
        Box::new(EnsembleState {
            config: self.config.clone(),
            scores: vec![ResourceMap::from_fn(|_| Score::default()); members.len()],
            ahead: vec![ResourceMap::from_fn(|_| AheadScore::default()); members.len()],
            members,
            chosen: ResourceMap::from_fn(|_| 0),
            chosen_ahead: ResourceMap::from_fn(|_| 0),
            last_issued: None,
            first_at: None,
            step_s: 60,
            last_at: None,
            label: String::new(),
            seen: ResourceMap::from_fn(|_| false),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        self.restore_view(state.view())
    }

    fn restore_view(&self, state: StateView<'_>) -> Result<Box<dyn Forecaster>, ForecastError> {
        let saved: Saved<IgnoredAny> = state.decode(NAME, STATE_VERSION)?;
        let views = member_views(state)?;
        let n = self.members.len();
        if views.len() != n || saved.scores.len() != n || saved.ahead.len() != n {
            return Err(ForecastError::WrongModel {
                expected: format!("{NAME} of {:?}", self.member_names()),
                found: format!("{NAME} of {} members", views.len()),
            });
        }
        let members = self
            .members
            .iter()
            .zip(views)
            .map(|(family, s)| family.restore_view(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut restored = EnsembleState {
            config: self.config.clone(),
            members,
            scores: saved.scores,
            chosen: saved.chosen.map(|_, &i| i.min(n - 1)),
            ahead: saved.ahead,
            chosen_ahead: saved.chosen_ahead.map(|_, &i| i.min(n - 1)),
            last_issued: saved.last_issued,
            first_at: saved.first_at,
            step_s: saved.step_s,
            last_at: saved.last_at,
            label: String::new(),
            seen: ResourceMap::from_fn(|_| true),
        };
        restored.choose();
        Ok(Box::new(restored))
    }
}

mod profile;
pub(crate) use profile::{decay, merge};

#[cfg(test)]
mod tests;
