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

use std::borrow::Cow;
use std::sync::Arc;

use presage_core::{Forecast, HorizonForecast, Resource, ResourceMap, Sample, Timestamp};
use serde::{Deserialize, Serialize};

use crate::demand::observed_demand;
use crate::{ForecastError, Forecaster, ForecasterFactory, ModelState};

const NAME: &str = "ensemble";
const STATE_VERSION: u32 = 1;

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
        if !(config.half_life_s.is_finite() && config.half_life_s > 0.0) {
            return Err(ForecastError::InvalidSetting {
                field: "ensemble half_life_s",
                value: config.half_life_s.to_string(),
                reason: "must be a positive number of seconds",
            });
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

#[derive(Debug)]
struct EnsembleState {
    config: EnsembleConfig,
    members: Vec<Box<dyn Forecaster>>,
    scores: Vec<ResourceMap<Score>>,
    chosen: ResourceMap<usize>,
    last_at: Option<Timestamp>,
    /// The label of the current choice, rebuilt only when it changes.
    label: String,
    /// Resources the workload has shown demand for (the rest are not scored).
    seen: ResourceMap<bool>,
}

/// What an ensemble saves: its own scores plus every member's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    scores: Vec<ResourceMap<Score>>,
    chosen: ResourceMap<usize>,
    last_at: Option<Timestamp>,
    members: Vec<ModelState>,
}

impl EnsembleState {
    /// Judges each member's last implied limit against this sample, then decays.
    fn score(&mut self, sample: &Sample) {
        let keep = self.last_at.map_or(1.0, |t| {
            (-sample.at().secs_since(t).max(0.0) / self.config.half_life_s).exp2()
        });
        for resource in Resource::ALL {
            let Some(demand) = observed_demand(sample, resource) else {
                continue;
            };
            let price = *self.config.price.get(resource);
            for scores in &mut self.scores {
                let s = scores.get_mut(resource);
                if let Some(limit) = s.limit {
                    let miss = if demand > limit { price } else { 0.0 };
                    s.cost = s.cost * keep + (limit - demand).max(0.0) + miss;
                }
            }
        }
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
        let mut changed = false;
        for resource in Resource::ALL {
            let current = *self.chosen.get(resource);
            let cost = |i: usize| self.scores[i].get(resource).cost;
            let Some(best) = (0..self.members.len()).min_by(|&a, &b| cost(a).total_cmp(&cost(b)))
            else {
                continue;
            };
            if best != current && cost(best) < cost(current) * (1.0 - self.config.switch_penalty) {
                self.chosen.set(resource, best);
                changed = true;
            }
        }
        if changed || self.label.is_empty() {
            self.label = format!(
                "ensemble[cpu:{},memory:{}]",
                self.members[*self.chosen.get(Resource::Cpu)].name(),
                self.members[*self.chosen.get(Resource::Memory)].name()
            );
        }
    }
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
            self.score(sample);
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
        let mut class = ResourceMap::none();
        for (i, member) in self.members.iter().enumerate() {
            let mine: Vec<Resource> = Resource::ALL
                .into_iter()
                .filter(|r| *self.chosen.get(*r) == i)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let Some(f) = member.forecast(now, horizons_s) else {
                continue;
            };
            for (out, h) in horizons.iter_mut().zip(f.horizons()) {
                for &r in &mine {
                    out.quantiles.set(r, h.quantiles[r]);
                }
            }
            for &r in &mine {
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
        let saved = Saved {
            scores: self.scores.clone(),
            chosen: self.chosen,
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
            members,
            chosen: ResourceMap::from_fn(|_| 0),
            last_at: None,
            label: String::new(),
            seen: ResourceMap::from_fn(|_| false),
        })
    }

    fn restore(&self, state: &ModelState) -> Result<Box<dyn Forecaster>, ForecastError> {
        let saved: Saved = state.decode(NAME, STATE_VERSION)?;
        if saved.members.len() != self.members.len() || saved.scores.len() != self.members.len() {
            return Err(ForecastError::WrongModel {
                expected: format!("{NAME} of {:?}", self.member_names()),
                found: format!("{NAME} of {} members", saved.members.len()),
            });
        }
        let members = self
            .members
            .iter()
            .zip(&saved.members)
            .map(|(family, s)| family.restore(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut restored = EnsembleState {
            config: self.config.clone(),
            members,
            scores: saved.scores,
            chosen: saved.chosen.map(|_, &i| i.min(self.members.len() - 1)),
            last_at: saved.last_at,
            label: String::new(),
            seen: ResourceMap::from_fn(|_| true),
        };
        restored.choose();
        Ok(Box::new(restored))
    }
}

#[cfg(test)]
mod tests;
