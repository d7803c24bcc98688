//! How a store picks a starting profile for a key it has never seen; shared by the
//! backends so SQLite and PostgreSQL answer alike.

use presage_core::{Fingerprint, WorkloadKey};
use presage_engine::Profile;

/// The least [`Fingerprint::similarity`] at which a neighbour's profile is a better start
/// than the default. Below it, imports and sections overlap about as much as any two
/// programs linked against the same libc do (measured in the fingerprint tests: `ls`
/// against `cat` scores well above, `ls` against an unrelated interpreter well below).
pub const NEIGHBOUR_MIN_SIMILARITY: f64 = 0.6;

/// The known code most similar to `fingerprint`, other than `own_code_id`, when it is at
/// least [`NEIGHBOUR_MIN_SIMILARITY`]. Ties go to the smaller code id, so every backend
/// and every host picks the same neighbour.
pub fn nearest<'a>(
    fingerprint: &Fingerprint,
    own_code_id: &str,
    known: impl IntoIterator<Item = (&'a str, &'a Fingerprint)>,
) -> Option<(String, f64)> {
    let mut best: Option<(&str, f64)> = None;
    for (code_id, other) in known {
        if code_id == own_code_id {
            continue;
        }
        let s = fingerprint.similarity(other);
        if s < NEIGHBOUR_MIN_SIMILARITY {
            continue;
        }
        let better = match best {
            None => true,
            Some((b_id, b_s)) => s > b_s || (s == b_s && code_id < b_id),
        };
        if better {
            best = Some((code_id, s));
        }
    }
    best.map(|(id, s)| (id.to_owned(), s))
}

/// A fingerprints row as both backends store it (features as a JSON array of strings).
pub(crate) fn fingerprint_from_row(
    code_id: String,
    kind: String,
    size: i64,
    features: &str,
) -> Result<(String, Fingerprint), presage_engine::StoreError> {
    let features = serde_json::from_str(features).map_err(crate::json_err(format!(
        "the features of fingerprint {code_id}"
    )))?;
    Ok((
        code_id,
        Fingerprint {
            kind,
            size: u64::try_from(size).unwrap_or(0),
            features,
        },
    ))
}

/// Of the profiles of one code, the best stand-in for `key`: the same inputs and user
/// first, then the same user, then the one learned from the most samples.
pub fn closest_profile(key: &WorkloadKey, candidates: Vec<Profile>) -> Option<Profile> {
    candidates.into_iter().max_by(|a, b| {
        rank(key, a)
            .cmp(&rank(key, b))
            .then(a.samples.cmp(&b.samples))
            .then(a.updated_at.cmp(&b.updated_at))
            // Deterministic last resort: the larger key.
            .then(a.key.cmp(&b.key))
    })
}

fn rank(key: &WorkloadKey, p: &Profile) -> u8 {
    let same_user = p.key.user() == key.user();
    let same_inputs = p.key.input_hash() == key.input_hash();
    u8::from(same_user) * 2 + u8::from(same_inputs && same_user)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use presage_core::Timestamp;

    use super::*;

    fn fp(features: &[&str]) -> Fingerprint {
        Fingerprint {
            kind: "elf".into(),
            size: 1000,
            features: features
                .iter()
                .map(|s| (*s).to_string())
                .collect::<BTreeSet<_>>(),
        }
    }

    #[test]
    fn the_nearest_close_enough_other_code_wins() {
        let me = fp(&["a", "b", "c", "d"]);
        let twin = fp(&["a", "b", "c", "d", "e"]);
        let cousin = fp(&["a", "b", "c", "x", "y"]);
        let stranger = fp(&["z"]);
        let known = [
            ("me", &me),
            ("twin", &twin),
            ("cousin", &cousin),
            ("s", &stranger),
        ];
        let (id, s) = nearest(&me, "me", known).unwrap();
        assert_eq!(id, "twin");
        assert!((s - 0.8).abs() < 1e-9, "{s}");
        assert_eq!(nearest(&me, "me", [("s", &stranger)]), None);
    }

    #[test]
    fn the_same_inputs_and_user_are_preferred_then_more_samples() {
        let key = WorkloadKey::new("new", "", "in", "1000").unwrap();
        let p = |inputs: &str, user: &str, samples: u64| Profile {
            key: WorkloadKey::new("old", "", inputs, user).unwrap(),
            version: 1,
            samples,
            updated_at: Timestamp::from_unix_secs(1),
            model: None,
        };
        let chosen = closest_profile(
            &key,
            vec![p("x", "0", 900), p("in", "1000", 5), p("y", "1000", 50)],
        );
        assert_eq!(chosen.unwrap().samples, 5);
        let chosen = closest_profile(&key, vec![p("x", "0", 900), p("y", "1000", 50)]);
        assert_eq!(chosen.unwrap().samples, 50);
        assert_eq!(closest_profile(&key, vec![]), None);
    }
}
