//! Two profiles of one key — learned on two hosts, or one imported — made one.
//!
//! The rule, field by field: the sample counts add (the merged profile has learned from
//! both); the version and the update time are the larger; the models merge by their
//! family's rule (`presage_forecast::merge_states`: histograms add, other states are
//! chosen by evidence). Every part is associative and commutative, so merging a fleet's
//! profiles gives one answer whatever order they arrive in.

use presage_engine::{Profile, StoreError};

/// `a` and `b` merged; their keys must be equal.
pub fn merge_profiles(a: &Profile, b: &Profile) -> Result<Profile, StoreError> {
    if a.key != b.key {
        return Err(StoreError {
            context: format!("merging the profiles of {} and {}", a.key, b.key),
            source: "only profiles of the same key merge".into(),
        });
    }
    let model = match (&a.model, &b.model) {
        (Some(x), Some(y)) => {
            Some(
                presage_forecast::merge_states(x, y).map_err(|e| StoreError {
                    context: format!("merging the models of {}", a.key),
                    source: Box::new(e),
                })?,
            )
        }
        (Some(x), None) | (None, Some(x)) => Some(x.clone()),
        (None, None) => None,
    };
    Ok(Profile {
        key: a.key.clone(),
        version: a.version.max(b.version),
        samples: a.samples.saturating_add(b.samples),
        updated_at: a.updated_at.max(b.updated_at),
        model,
    })
}

/// Folds `incoming` into `existing` key by key: profiles of keys already present merge,
/// the others are added. Returns the profiles to save.
pub fn merge_into(
    existing: impl IntoIterator<Item = Profile>,
    incoming: impl IntoIterator<Item = Profile>,
) -> Result<Vec<Profile>, StoreError> {
    let mut by_key: std::collections::BTreeMap<_, Profile> =
        existing.into_iter().map(|p| (p.key.clone(), p)).collect();
    let mut touched = std::collections::BTreeSet::new();
    for p in incoming {
        let merged = match by_key.get(&p.key) {
            Some(old) => merge_profiles(old, &p)?,
            None => p,
        };
        touched.insert(merged.key.clone());
        by_key.insert(merged.key.clone(), merged);
    }
    Ok(by_key
        .into_iter()
        .filter(|(k, _)| touched.contains(k))
        .map(|(_, p)| p)
        .collect())
}
