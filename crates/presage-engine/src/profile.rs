//! What a workload's profile is made of, and how much of a borrowed one to trust.

use presage_core::Timestamp;
use presage_forecast::ModelState;
use tracing::warn;

use crate::workload::Managed;
use crate::{PriorSource, Profile};

pub(crate) fn profile_of(w: &Managed, now: Timestamp) -> Option<Profile> {
    let model = match w.forecaster.as_ref().map(|f| f.save()) {
        Some(Ok(state)) => Some(state),
        Some(Err(e)) => {
            warn!(workload = %w.spec.id, error = %e, "could not save model state");
            return None;
        }
        None => None,
    };
    if w.samples == 0 {
        return None;
    }
    Some(Profile {
        key: w.spec.key.clone(),
        version: w.profile_version + 1,
        samples: w.profile_samples + w.samples,
        updated_at: now,
        model,
    })
}

/// How much of a prior's evidence a new workload inherits: all of its own profile, half
/// of an earlier version's (the code changed, its behaviour may have), and half scaled
/// by similarity of a neighbour's (other code, only alike from outside).
pub(crate) fn prior_weight(source: &PriorSource) -> f64 {
    match source {
        PriorSource::Exact => 1.0,
        PriorSource::PreviousVersion { .. } => 0.5,
        PriorSource::Neighbour { similarity, .. } => 0.5 * similarity.clamp(0.0, 1.0),
    }
}

/// `state` with its evidence scaled by `weight` (levels kept, counts shrunk), so the new
/// workload's own samples outweigh the prior sooner.
pub(crate) fn weakened(state: &ModelState, weight: f64) -> ModelState {
    if weight >= 1.0 {
        return state.clone();
    }
    match presage_forecast::decay_state(state, weight) {
        Ok(s) => s,
        Err(e) => {
            warn!(model = %state.model, error = %e, "prior could not be weakened; used whole");
            state.clone()
        }
    }
}
