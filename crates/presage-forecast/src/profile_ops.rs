//! Merging and decaying saved forecaster states ([`ModelState`]).
//!
//! [`merge_states`] joins two states of one family learned on two hosts into one profile;
//! [`decay_state`] turns a profile into a weaker prior for a new code version. Both work
//! on the saved form and give a state the family's
//! [`restore`](crate::ForecasterFactory::restore) accepts.
//!
//! **Merge rules per family.** Evidence that is a sum (histogram weights, sample counts,
//! the ensemble's running costs) is added. Model state that cannot be summed (levels,
//! trends, seasons, raw windows) is *chosen*: the state with more observations wins, ties
//! going to the larger serialised JSON text. That is a maximum over a total order, so
//! choosing is associative and commutative, and the chosen state restores as it did on
//! its own host.
//!
//! | family               | merge                                                              | decay by `f`                                     |
//! |----------------------|--------------------------------------------------------------------|--------------------------------------------------|
//! | `decaying-histogram` | per resource: histograms added, sample counts added; bursts¹       | weights × f; counts × f²; bursts¹                |
//! | `segmented`          | per resource: overall and per-segment histograms added, counts added (segmentations must match); bursts¹ | weights × f; counts × f²; bursts¹ |
//! | `ensemble`           | members merged pairwise by position³; costs added; choices from the later state; in-flight checks dropped | members decayed; costs × f |
//! | `ewma`               | chosen: Σ per-resource sample counts                               | counts × f²; means and variances kept            |
//! | `residual`           | chosen: Σ per-resource residual counts (configs must match)        | residual histograms × f, counts × f²; bases kept |
//! | `holt-winters`       | chosen: Σ per-resource sample counts                               | residual histograms × f, counts × f²; level, trend, season kept; bursts¹ |
//! | `moving-window`      | chosen: Σ points held in the windows                               | points kept (unweighted; they age out); bursts¹  |
//! | `periodic`           | chosen: Σ points held in the histories                             | unchanged: only a raw history, no evidence to scale |
//!
//! ¹ Burst classifiers: per resource the one with the longer observed span is chosen; a
//! decay scales its histogram and decayed times (their ratio, the high fraction, is kept).
//!
//! ² A count scaled by `f` is rounded, and never drops below the least of itself and the
//! count the model needs before it forecasts (its `min_samples`, `min_residuals`, …): a
//! decayed profile must still forecast.
//!
//! ³ Four residual members share the family name `residual`, so members are paired by
//! position, and the names must agree there. One member list may extend the other (an
//! extra model appended in a newer build): the extra members are kept as they are. Lists
//! that disagree otherwise cannot be merged, as no factory could restore the result.
//!
//! Settings saved inside a state (each family's `config`) are chosen by the same JSON
//! order where they differ; restore replaces most of them by the running settings anyway.
//!
//! **Versions.** Merging and decaying work on the typed state of each family, so the
//! packed arrays of the current layouts (see `crate::codec`) are decoded and re-encoded
//! with the rest. A state saved in an older layout its family still reads is first
//! rewritten in the current one, so a profile saved before an upgrade merges with one
//! saved after it, and every result is in the current layout.
//!
//! **Associativity.** Chosen parts are exact maxima; added parts are sums, so
//! `merge(merge(a, b), c)` equals `merge(a, merge(b, c))` up to floating-point rounding
//! in the added weights. Histograms with different reference times are aligned to the
//! younger one by exact powers of two (see [`DecayingHistogram::merge`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::RangeInclusive;

use presage_core::{Resource, ResourceMap};
use serde::{Deserialize, Serialize};

use crate::{DecayingHistogram, ForecastError, ModelState, ensemble, ewma, models, residual};

/// Merges two saved states of one model family into one (see the module docs for the rule
/// of each family). Fails when the families or versions differ, when the family has no
/// known rule, or when the states' shapes disagree (bucket layouts, segmentations,
/// ensemble members).
pub fn merge_states(a: &ModelState, b: &ModelState) -> Result<ModelState, ForecastError> {
    if a.model != b.model {
        return Err(unmergeable(a, b, "model", "families differ"));
    }
    // A profile saved before a layout change merges with one saved after it.
    let (a, b) = (&*current(a)?, &*current(b)?);
    if a.version != b.version {
        return Err(unmergeable(a, b, "version", "state versions differ"));
    }
    use models::{histogram_model, holt_winters, periodic, segmented, window};
    match a.model.as_str() {
        histogram_model::NAME => histogram_model::merge(a, b),
        segmented::NAME => segmented::merge(a, b),
        ensemble::NAME => ensemble::merge(a, b),
        ewma::NAME => choose(a, b, ewma::observations),
        residual::NAME => residual::merge(a, b),
        holt_winters::NAME => choose(a, b, holt_winters::observations),
        window::NAME => choose(a, b, window::observations),
        periodic::NAME => choose(a, b, periodic::observations),
        _ => Err(ForecastError::UnknownModel {
            model: a.model.clone(),
            operation: "merge",
        }),
    }
}

/// The state as a weaker prior: its additive evidence scaled by `factor` in (0, 1], its
/// levels kept (see the module docs for each family). `factor` 1 changes nothing.
pub fn decay_state(s: &ModelState, factor: f64) -> Result<ModelState, ForecastError> {
    if !(factor > 0.0 && factor <= 1.0) {
        return Err(ForecastError::InvalidSetting {
            field: "decay factor",
            value: factor.to_string(),
            reason: "must be in (0, 1]",
        });
    }
    use models::{histogram_model, holt_winters, periodic, segmented, window};
    match s.model.as_str() {
        histogram_model::NAME => histogram_model::decay(s, factor),
        segmented::NAME => segmented::decay(s, factor),
        ensemble::NAME => ensemble::decay(s, factor),
        ewma::NAME => ewma::decay(s, factor),
        residual::NAME => residual::decay(s, factor),
        holt_winters::NAME => holt_winters::decay(s, factor),
        window::NAME => window::decay(s, factor),
        periodic::NAME => periodic::decay(s, factor),
        _ => Err(ForecastError::UnknownModel {
            model: s.model.clone(),
            operation: "decay",
        }),
    }
}

/// `s` in the layout this build writes: a state of an older version its family still
/// reads is decoded and written anew; any other (the current version, a newer one, a
/// family without older layouts or unknown here) is returned as it is. Decaying needs no
/// such step: every family's decay decodes and writes its state anyway.
fn current(s: &ModelState) -> Result<Cow<'_, ModelState>, ForecastError> {
    use models::{histogram_model, holt_winters, periodic, segmented, window};
    match s.model.as_str() {
        histogram_model::NAME => histogram_model::upgrade(s),
        segmented::NAME => segmented::upgrade(s),
        residual::NAME => residual::upgrade(s),
        holt_winters::NAME => holt_winters::upgrade(s),
        window::NAME => window::upgrade(s),
        periodic::NAME => periodic::upgrade(s),
        _ => Ok(Cow::Borrowed(s)),
    }
}

/// `state` decoded as `T` and encoded at the last of `versions` when it is of an earlier
/// one of them; as it is otherwise.
pub(crate) fn upgraded<'a, T: Serialize + for<'de> Deserialize<'de>>(
    state: &'a ModelState,
    model: &str,
    versions: RangeInclusive<u32>,
) -> Result<Cow<'a, ModelState>, ForecastError> {
    let latest = *versions.end();
    if state.model != model || state.version >= latest || !versions.contains(&state.version) {
        return Ok(Cow::Borrowed(state));
    }
    let decoded: T = state.decode_versions(model, versions)?;
    ModelState::encode(model, latest, &decoded).map(Cow::Owned)
}

/// The error for two states that cannot be merged, naming both.
pub(crate) fn unmergeable(
    a: &ModelState,
    b: &ModelState,
    field: &'static str,
    reason: impl Into<String>,
) -> ForecastError {
    ForecastError::Unmergeable {
        left: format!("{} v{}", a.model, a.version),
        right: format!("{} v{}", b.model, b.version),
        field,
        reason: reason.into(),
    }
}

fn json_text<T: Serialize>(model: &str, value: &T) -> Result<String, ForecastError> {
    serde_json::to_string(value).map_err(|source| ForecastError::Malformed {
        model: model.to_owned(),
        source,
    })
}

/// The larger of `a` and `b` by `key`, ties going to the larger JSON text: a maximum over
/// a total order, hence associative and commutative (equal texts are equal values).
pub(crate) fn larger<T: Serialize, K: Ord>(
    model: &str,
    a: T,
    b: T,
    key: impl Fn(&T) -> K,
) -> Result<T, ForecastError> {
    let a_wins = match key(&a).cmp(&key(&b)) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => json_text(model, &a)? >= json_text(model, &b)?,
    };
    Ok(if a_wins { a } else { b })
}

/// The state with more `observations` (see [`larger`]), returned as saved: a chosen state
/// restores exactly as it did on its own host.
pub(crate) fn choose(
    a: &ModelState,
    b: &ModelState,
    observations: impl Fn(&ModelState) -> Result<u64, ForecastError>,
) -> Result<ModelState, ForecastError> {
    let (x, y) = ((observations(a)?, a), (observations(b)?, b));
    larger(&a.model, x, y, |(n, _)| *n).map(|(_, s)| s.clone())
}

/// Per resource: the side present alone, or `both` of the two.
pub(crate) fn merge_maps<T: Clone>(
    a: &ResourceMap<Option<T>>,
    b: &ResourceMap<Option<T>>,
    mut both: impl FnMut(Resource, &T, &T) -> Result<T, ForecastError>,
) -> Result<ResourceMap<Option<T>>, ForecastError> {
    let mut out = ResourceMap::none();
    for r in Resource::ALL {
        let merged = match (a.get(r), b.get(r)) {
            (Some(x), Some(y)) => Some(both(r, x, y)?),
            (x, y) => x.as_ref().or(y.as_ref()).cloned(),
        };
        out.set(r, merged);
    }
    Ok(out)
}

/// Every sample of both histograms in one. Two empty ones (which may still differ in
/// reference time) are chosen between, so the result does not depend on the order.
pub(crate) fn merged_histogram(
    model: &str,
    a: &DecayingHistogram,
    b: &DecayingHistogram,
) -> Result<DecayingHistogram, ForecastError> {
    if a.is_empty() && b.is_empty() {
        return larger(model, a, b, |_| ()).cloned();
    }
    let mut merged = a.clone();
    merged.merge(b)?;
    Ok(merged)
}

/// The histogram with every sample's weight times `factor` (in (0, 1]).
///
/// Scaling the stored weights alone could push them under the histogram's emptiness
/// threshold ([`crate::HISTOGRAM_EPSILON`]) for small factors. Weights are stored
/// relative to a reference time instead, so the reference moves back `k` half-lives
/// (each sample then means `2^−k` of what it did) and the weights are scaled by
/// `factor · 2^k`, which stays in (½, 1]: the same decay, with the stored numbers intact.
pub(crate) fn scaled_histogram(
    h: &DecayingHistogram,
    factor: f64,
) -> Result<DecayingHistogram, ForecastError> {
    let mut c = h.checkpoint();
    let mut multiplier = factor;
    if let Some(half_life_ms) = c.half_life_ms {
        let k = (-factor.log2()).floor().clamp(0.0, 1100.0) as i64;
        if let Some(reference) = half_life_ms
            .checked_mul(k)
            .and_then(|back| c.reference_ms.checked_sub(back))
        {
            c.reference_ms = reference;
            // In two halves: 2^k alone overflows for subnormal factors.
            let half = (k / 2) as i32;
            multiplier = factor * 2f64.powi(half) * 2f64.powi(k as i32 - half);
        }
    }
    c.total_weight *= multiplier;
    for (_, w) in &mut c.buckets {
        *w *= multiplier;
    }
    DecayingHistogram::from_checkpoint(&c)
}

/// `count × factor`, rounded, but never below `min(count, keep)` — `keep` being what the
/// model needs before it forecasts.
pub(crate) fn scaled_count<T>(count: T, factor: f64, keep: T) -> T
where
    T: Copy + Ord + Into<u64> + TryFrom<u64>,
{
    let scaled = (count.into() as f64 * factor).round() as u64;
    // `scaled` is at most `count` (factor ≤ 1), so it fits `T`.
    T::try_from(scaled).unwrap_or(count).max(keep.min(count))
}

#[cfg(test)]
mod tests;
