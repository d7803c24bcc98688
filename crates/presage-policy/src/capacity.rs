//! Fitting a node's workloads into its capacity.
//!
//! When the limits the allocators want add up to more than the node has, the guaranteed
//! allocations are divided by **weighted max-min fairness**: nobody gets more than they
//! want, every workload keeps its floor (for memory: what it holds now plus the margin —
//! taking that away is an OOM kill, not an allocation), and what is left is shared in
//! proportion to the workloads' weights (× their VIP multiplier), the satisfied ones'
//! unused share going to the rest. What cannot be fitted is reported as a shortfall: the
//! node needs that much more (seed 003's "request additional resources").

use presage_core::Resource;
use serde::{Deserialize, Serialize};

/// A node's capacity per resource (absent: not constrained).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeCapacity {
    /// CPU cores.
    pub cpu_cores: Option<f64>,
    /// Memory bytes.
    pub memory_bytes: Option<f64>,
}

impl NodeCapacity {
    /// The capacity of `resource`, if constrained.
    pub fn of(&self, resource: Resource) -> Option<f64> {
        match resource {
            Resource::Cpu => self.cpu_cores,
            Resource::Memory => self.memory_bytes,
            _ => None,
        }
    }

    /// Whether any resource is constrained.
    pub fn is_set(&self) -> bool {
        self.cpu_cores.is_some() || self.memory_bytes.is_some()
    }
}

/// One workload's claim on a resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    /// What its allocator wants.
    pub want: f64,
    /// What it cannot be given less than.
    pub floor: f64,
    /// Its weight (× VIP multiplier).
    pub weight: f64,
}

/// The outcome of fitting claims into a capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// What each claim is granted, in order.
    pub granted: Vec<f64>,
    /// How much more the node would need to grant every claim in full (0 when it fits).
    pub shortfall: f64,
}

/// Splits `capacity` among `wants` by max-min fairness weighted by `weights`: nobody gets
/// more than they want, and what the satisfied leave over is shared among the rest.
pub fn weighted_max_min(capacity: f64, wants: &[f64], weights: &[f64]) -> Vec<f64> {
    let mut share = vec![0.0; wants.len()];
    let weight = |i: usize| weights.get(i).copied().unwrap_or(1.0).max(1e-12);
    let mut open: Vec<usize> = (0..wants.len()).filter(|&i| wants[i] > 0.0).collect();
    let mut left = capacity.max(0.0);
    while !open.is_empty() && left > 1e-12 {
        let total_weight: f64 = open.iter().map(|&i| weight(i)).sum();
        let per_weight = left / total_weight;
        let mut still_open = Vec::with_capacity(open.len());
        let mut given = 0.0;
        for &i in &open {
            let need = wants[i] - share[i];
            if need <= per_weight * weight(i) {
                share[i] = wants[i];
                given += need;
            } else {
                still_open.push(i);
            }
        }
        if still_open.len() == open.len() {
            for &i in &open {
                share[i] += per_weight * weight(i);
            }
            break;
        }
        left -= given;
        open = still_open;
    }
    share
}

/// Fits `claims` into `capacity`: in full when they fit; otherwise every claim keeps its
/// floor and the rest of the capacity goes by weighted max-min to what each wants above
/// its floor. Floors are never cut, even when they alone exceed the capacity.
pub fn fit(capacity: f64, claims: &[Claim]) -> Fit {
    let wanted: f64 = claims.iter().map(|c| c.want.max(c.floor)).sum();
    if wanted <= capacity {
        return Fit {
            granted: claims.iter().map(|c| c.want.max(c.floor)).collect(),
            shortfall: 0.0,
        };
    }
    let floors: f64 = claims.iter().map(|c| c.floor).sum();
    let extra: Vec<f64> = claims.iter().map(|c| (c.want - c.floor).max(0.0)).collect();
    let weights: Vec<f64> = claims.iter().map(|c| c.weight).collect();
    let shares = weighted_max_min(capacity - floors, &extra, &weights);
    Fit {
        granted: claims
            .iter()
            .zip(shares)
            .map(|(c, s)| c.floor + s)
            .collect(),
        shortfall: wanted - capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_min_fairness_by_hand() {
        // 10 cores, wants 2, 5, 8 with equal weights: 2 is satisfied, 8 left for two → 4 each.
        assert_eq!(
            weighted_max_min(10.0, &[2.0, 5.0, 8.0], &[1.0, 1.0, 1.0]),
            vec![2.0, 4.0, 4.0]
        );
        // Weights 1:3 on 8 cores, both wanting 10: 2 and 6.
        assert_eq!(
            weighted_max_min(8.0, &[10.0, 10.0], &[1.0, 3.0]),
            vec![2.0, 6.0]
        );
        // Enough for everyone: everyone gets what they want.
        assert_eq!(
            weighted_max_min(100.0, &[1.0, 2.0], &[1.0, 1.0]),
            vec![1.0, 2.0]
        );
    }

    #[test]
    fn floors_are_kept_and_the_rest_is_shared_by_weight() {
        let claims = [
            Claim {
                want: 6.0,
                floor: 2.0,
                weight: 1.0,
            },
            Claim {
                want: 6.0,
                floor: 1.0,
                weight: 3.0,
            },
        ];
        // 7 units: floors take 3, the 4 left go 1:3 → 2 + 1 and 1 + 3.
        let f = fit(7.0, &claims);
        assert_eq!(f.granted, vec![3.0, 4.0]);
        assert_eq!(f.shortfall, 5.0);
        // It fits: everyone in full, no shortfall.
        let f = fit(20.0, &claims);
        assert_eq!((f.granted, f.shortfall), (vec![6.0, 6.0], 0.0));
        // Floors alone exceed the node: floors are granted, the shortfall says by how much.
        let f = fit(2.5, &claims);
        assert_eq!(f.granted, vec![2.0, 1.0]);
        assert_eq!(f.shortfall, 9.5);
    }

    #[test]
    fn the_granted_total_never_exceeds_capacity_above_the_floors() {
        for cap in [0.0, 1.0, 3.0, 10.0, 100.0] {
            let claims: Vec<Claim> = (0..7)
                .map(|i| Claim {
                    want: f64::from(i) * 1.5,
                    floor: 0.1,
                    weight: 1.0 + f64::from(i % 3),
                })
                .collect();
            let f = fit(cap, &claims);
            let total: f64 = f.granted.iter().sum();
            let floors: f64 = claims.iter().map(|c| c.floor).sum();
            assert!(total <= cap.max(floors) + 1e-9, "cap {cap}: {total}");
            for (g, c) in f.granted.iter().zip(&claims) {
                assert!(*g >= c.floor - 1e-12 && *g <= c.want.max(c.floor) + 1e-12);
            }
        }
    }
}
