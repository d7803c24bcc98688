//! The seeds' "code characteristics (static analysis)": what an executable looks like
//! from outside, so code never seen before can start from the profile of the most
//! similar code that has been seen.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A static fingerprint of one executable (or script).
///
/// Features are namespaced strings — `section:.text`, `needed:libssl.so.3`,
/// `import:malloc`, `interp:/usr/bin/python3` — so one set carries every kind and
/// similarity is a plain set comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// `elf`, `script` or `other`.
    pub kind: String,
    /// The file's size in bytes.
    pub size: u64,
    /// The namespaced features.
    pub features: BTreeSet<String>,
}

impl Fingerprint {
    /// How alike two fingerprints are, in [0, 1]: 0 for different kinds, else the
    /// Jaccard index of the features scaled by how close the sizes are (a rebuilt
    /// binary keeps its sections and imports and nearly its size; a different program
    /// linked against the same libc shares some imports but rarely the size).
    pub fn similarity(&self, other: &Fingerprint) -> f64 {
        if self.kind != other.kind {
            return 0.0;
        }
        let union = self.features.union(&other.features).count();
        let jaccard = if union == 0 {
            1.0
        } else {
            self.features.intersection(&other.features).count() as f64 / union as f64
        };
        let (small, large) = if self.size <= other.size {
            (self.size, other.size)
        } else {
            (other.size, self.size)
        };
        let size_ratio = if large == 0 {
            1.0
        } else {
            small as f64 / large as f64
        };
        // The square root keeps a 2× size difference from halving the score: sizes
        // drift across versions far more than imports do.
        jaccard * size_ratio.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(kind: &str, size: u64, features: &[&str]) -> Fingerprint {
        Fingerprint {
            kind: kind.into(),
            size,
            features: features.iter().map(|s| (*s).to_string()).collect(),
        }
    }

    #[test]
    fn identical_is_one_and_other_kinds_are_zero() {
        let a = fp("elf", 100, &["import:malloc", "section:.text"]);
        assert!((a.similarity(&a) - 1.0).abs() < 1e-12);
        assert_eq!(a.similarity(&fp("script", 100, &["import:malloc"])), 0.0);
    }

    #[test]
    fn shared_features_and_close_sizes_score_higher() {
        let a = fp(
            "elf",
            1000,
            &["import:a", "import:b", "import:c", "needed:libc"],
        );
        let near = fp(
            "elf",
            1100,
            &[
                "import:a",
                "import:b",
                "import:c",
                "needed:libc",
                "import:d",
            ],
        );
        let far = fp("elf", 9000, &["import:x", "needed:libc"]);
        assert!(a.similarity(&near) > 0.7);
        assert!(a.similarity(&far) < 0.2);
        assert!((a.similarity(&near) - near.similarity(&a)).abs() < 1e-12);
    }
}
