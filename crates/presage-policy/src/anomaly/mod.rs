//! Anomaly detection: the per-workload [`AnomalyScorer`] the engine runs after every
//! sample, its settings [`AnomalyPolicy`] (part of each `WorkloadPolicy`), and the
//! univariate [`StreamDetector`] core it runs per resource — the same core that
//! `presage evaluate-anomaly` scores on NAB.

mod scorer;
mod settings;
mod stream;
pub mod trend;

#[cfg(test)]
mod tests;

pub use scorer::{AnomalyReading, AnomalyScorer, Component, MAX_RATIO, score_of};
pub use settings::AnomalyPolicy;
pub use stream::{StreamDetector, StreamScore, StreamSettings, normal_tail};
