//! Merging and decaying saved ensemble states (the rules of every family are tabled in
//! [`crate::profile_ops`]).

use std::collections::VecDeque;

use presage_core::{Resource, ResourceMap, Timestamp};
use serde::Serialize;

use super::{AheadScore, NAME, STATE_VERSION, Saved, Score};
use crate::profile_ops::{larger, unmergeable};
use crate::{ForecastError, ModelState, decay_state, merge_states};

/// The ensemble's own state that is chosen rather than added: which member serves each
/// resource, and the clocks of its judgements. `last_at` first: it is the key.
#[derive(Serialize)]
struct Choice {
    last_at: Option<Timestamp>,
    last_issued: Option<Timestamp>,
    step_s: u32,
    chosen: ResourceMap<usize>,
    chosen_ahead: ResourceMap<usize>,
}

fn decode(state: &ModelState) -> Result<Saved, ForecastError> {
    let saved: Saved = state.decode(NAME, STATE_VERSION)?;
    let n = saved.members.len();
    if saved.scores.len() != n || saved.ahead.len() != n {
        // Restore refuses this too; say so before merging rows that do not line up.
        return Err(ForecastError::WrongModel {
            expected: format!("{NAME} with one score row per member"),
            found: format!(
                "{NAME} of {n} members, {} near and {} far score rows",
                saved.scores.len(),
                saved.ahead.len()
            ),
        });
    }
    Ok(saved)
}

/// [`crate::merge_states`] of ensemble states.
///
/// - **Members** are paired by position, and the family names must agree there (four
///   residual members share the name `residual`, so a name alone does not identify one).
///   Each pair is merged by its own family's rule. One list may extend the other — a
///   member appended in a newer build, present on one host only — and the extra members
///   are kept as they are; lists that differ otherwise fail, as no factory could restore
///   the result. (Extensions of one list form a chain, so this stays associative.)
/// - **Costs**, near and far, are decayed sums of what following each member would have
///   cost: the two hosts' costs are added.
/// - **The choice** of member per resource and the judgement clocks come from the state
///   whose last sample is later (ties: the larger JSON text); the data's start is the
///   earlier of the two.
/// - **In-flight judgements** — each member's last implied limit and the far medians not
///   yet due — belong to one host's sample stream and are dropped; the next sample makes
///   new ones (a restored ensemble keeps its choice until then).
pub(crate) fn merge(a: &ModelState, b: &ModelState) -> Result<ModelState, ForecastError> {
    let (x, y) = (decode(a)?, decode(b)?);
    let names = |s: &Saved| -> Vec<String> { s.members.iter().map(|m| m.model.clone()).collect() };
    let (long, short) = if x.members.len() >= y.members.len() {
        (&x, &y)
    } else {
        (&y, &x)
    };
    if !names(long).starts_with(&names(short)) {
        return Err(unmergeable(
            a,
            b,
            "members",
            format!(
                "{:?} and {:?}: neither list extends the other",
                names(&x),
                names(&y)
            ),
        ));
    }
    let members = long
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| match short.members.get(i) {
            Some(other) => merge_states(m, other),
            None => Ok(m.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scores = long
        .scores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let other = short.scores.get(i);
            ResourceMap::from_fn(|r: Resource| Score {
                cost: s[r].cost + other.map_or(0.0, |o| o[r].cost),
                limit: None,
            })
        })
        .collect();
    let ahead = long
        .ahead
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let other = short.ahead.get(i);
            ResourceMap::from_fn(|r: Resource| AheadScore {
                cost: s[r].cost + other.map_or(0.0, |o| o[r].cost),
                pending: VecDeque::new(),
            })
        })
        .collect();
    let choice = |s: &Saved| Choice {
        last_at: s.last_at,
        last_issued: s.last_issued,
        step_s: s.step_s,
        chosen: s.chosen,
        chosen_ahead: s.chosen_ahead,
    };
    let c = larger(NAME, choice(&x), choice(&y), |c| c.last_at)?;
    let first_at = match (x.first_at, y.first_at) {
        (Some(p), Some(q)) => Some(p.min(q)),
        (p, q) => p.or(q),
    };
    let merged = Saved {
        scores,
        chosen: c.chosen,
        ahead,
        chosen_ahead: c.chosen_ahead,
        last_issued: c.last_issued,
        first_at,
        step_s: c.step_s,
        last_at: c.last_at,
        members,
    };
    ModelState::encode(NAME, STATE_VERSION, &merged)
}

/// [`crate::decay_state`] of an ensemble state: every member is decayed by its own
/// family's rule and every cost scaled, so a new version's costs outweigh the old ones
/// sooner; the choice and the in-flight judgements are kept.
pub(crate) fn decay(state: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    let mut saved = decode(state)?;
    for row in &mut saved.scores {
        for r in Resource::ALL {
            row.get_mut(r).cost *= factor;
        }
    }
    for row in &mut saved.ahead {
        for r in Resource::ALL {
            row.get_mut(r).cost *= factor;
        }
    }
    saved.members = saved
        .members
        .iter()
        .map(|m| decay_state(m, factor))
        .collect::<Result<_, _>>()?;
    ModelState::encode(NAME, STATE_VERSION, &saved)
}
