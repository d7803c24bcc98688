//! The behavioural score of seed 000: it falls while a workload stays inside its predicted
//! bounds and rises when it exceeds them, decaying toward neutral in between.
//!
//! The scale is 0–100 with 50 neutral. A sample inside the forecast's p99 at the shortest
//! horizon lowers the score by `reward`; a sample above it raises the score by `penalty`
//! per unit of *normalised excess*, (usage − p99) / (p99 − p50), capped at `max_excess`, so
//! a workload is judged against its own spread rather than in absolute units.

use presage_core::{Forecast, Resource, Sample, Timestamp};
use serde::{Deserialize, Serialize};

/// Neutral score.
pub const NEUTRAL: f64 = 50.0;

/// Settings of the behavioural score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BehaviorConfig {
    /// Points removed per sample inside the forecast bounds.
    pub reward: f64,
    /// Points added per unit of normalised excess above p99.
    pub penalty: f64,
    /// Largest normalised excess one sample can count for.
    pub max_excess: f64,
    /// Seconds for the distance to neutral to halve.
    pub half_life_s: f64,
}

impl Default for BehaviorConfig {
    fn default() -> Self {
        BehaviorConfig {
            reward: 0.5,
            penalty: 5.0,
            max_excess: 10.0,
            half_life_s: 3600.0,
        }
    }
}

/// One workload's behavioural score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BehaviorScore {
    value: f64,
    updated_at: Option<Timestamp>,
    /// The largest normalised excess seen in the last update (0 when inside bounds).
    last_excess: f64,
}

impl Default for BehaviorScore {
    fn default() -> Self {
        BehaviorScore {
            value: NEUTRAL,
            updated_at: None,
            last_excess: 0.0,
        }
    }
}

impl BehaviorScore {
    /// The score, 0 (exemplary) – 100 (far outside its profile).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The largest normalised excess over p99 in the last update.
    pub fn last_excess(&self) -> f64 {
        self.last_excess
    }

    /// Judges `sample` against `forecast` (made before the sample was seen). Returns the
    /// normalised excess of the worst resource (0 when inside bounds).
    pub fn update(&mut self, sample: &Sample, forecast: &Forecast, config: &BehaviorConfig) -> f64 {
        if let Some(prev) = self.updated_at {
            let dt = sample.at().secs_since(prev).max(0.0);
            let keep = (-dt / config.half_life_s).exp2();
            self.value = NEUTRAL + (self.value - NEUTRAL) * keep;
        }
        self.updated_at = Some(sample.at());
        let mut worst: Option<f64> = None;
        for resource in Resource::ALL {
            let (Some(used), Some(q)) = (
                sample.usage().get(resource),
                forecast
                    .horizons()
                    .first()
                    .and_then(|h| h.quantiles[resource]),
            ) else {
                continue;
            };
            let spread = (q.p99() - q.p50()).max(q.p99() * 0.05).max(f64::EPSILON);
            let excess = ((used - q.p99()) / spread).clamp(0.0, config.max_excess);
            worst = Some(worst.map_or(excess, |w| w.max(excess)));
        }
        let Some(excess) = worst else {
            self.last_excess = 0.0;
            return 0.0;
        };
        self.value = if excess > 0.0 {
            self.value + config.penalty * excess
        } else {
            self.value - config.reward
        }
        .clamp(0.0, 100.0);
        self.last_excess = excess;
        excess
    }
}

#[cfg(test)]
mod tests {
    use presage_core::{HorizonForecast, Quantiles, ResourceMap, Usage, WorkloadId};

    use super::*;

    fn forecast() -> Forecast {
        let mut quantiles = ResourceMap::none();
        quantiles.set(
            Resource::Cpu,
            Some(Quantiles::new([0.5, 1.0, 1.2, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.5]).expect("q")),
        );
        Forecast::new(
            Timestamp::from_unix_secs(0),
            "m",
            vec![HorizonForecast {
                horizon_s: 60,
                quantiles,
            }],
        )
        .expect("forecast")
    }

    fn sample(t: i64, cpu: f64) -> Sample {
        let usage = Usage::empty().with(Resource::Cpu, cpu).expect("usage");
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("id"),
            60_000,
            usage,
        )
        .expect("sample")
    }

    #[test]
    fn falls_inside_rises_outside_and_decays_to_neutral() {
        let config = BehaviorConfig::default();
        let mut s = BehaviorScore::default();
        for t in 0..10 {
            s.update(&sample(t, 1.0), &forecast(), &config);
        }
        assert!((s.value() - (NEUTRAL - 5.0)).abs() < 0.01, "{}", s.value());
        // 3.0 is (3 − 2) / (2 − 1) = 1 unit of excess above p99.
        let excess = s.update(&sample(10, 3.0), &forecast(), &config);
        assert!((excess - 1.0).abs() < 1e-12);
        let high = s.value();
        assert!(high > NEUTRAL - 5.0);
        // Ten half-lives later, with one more in-bounds sample, it is back near neutral.
        s.update(&sample(10 + 36_000, 1.0), &forecast(), &config);
        assert!(
            (s.value() - (NEUTRAL - config.reward)).abs() < 0.1,
            "{}",
            s.value()
        );
    }

    #[test]
    fn stays_bounded() {
        let config = BehaviorConfig::default();
        let mut s = BehaviorScore::default();
        for t in 0..100 {
            s.update(&sample(t, 1e6), &forecast(), &config);
        }
        assert_eq!(s.value(), 100.0);
    }
}
