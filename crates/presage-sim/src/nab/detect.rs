//! presage's streaming anomaly detector on NAB: each series is fed, one value at a time
//! and with no look-ahead, to the same univariate detector core the live anomaly scorer
//! runs per resource ([`presage_policy::anomaly::StreamDetector`]). An alert fires when
//! the detector's likelihood z-score crosses a fixed threshold, then the series stays
//! quiet for a refractory span: NAB counts only the first detection in a window, and
//! every later one outside it costs.

use presage_policy::anomaly::{StreamDetector, StreamSettings};
use serde::Serialize;

/// The detector's settings: fixed before any run, the same for every series. Every span
/// is in steps (rows), not seconds, because NAB's series step at 5 min, 30 min and 1 h
/// and the detector should treat them alike.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DetectorSettings {
    /// The streaming detector core's settings.
    pub stream: StreamSettings,
    /// Alert when the likelihood z-score reaches this.
    pub z_threshold: f64,
    /// Steps after an alert in which no other alert fires.
    pub refractory_steps: usize,
}

impl Default for DetectorSettings {
    /// The settings every reported run uses (docs/EVALUATION.md says why these).
    fn default() -> Self {
        DetectorSettings {
            // NAB's series run for weeks: a weekly season beside the daily one (the live
            // scorer keeps it off).
            stream: StreamSettings {
                second_season: true,
                ..StreamSettings::default()
            },
            z_threshold: 2.5,
            refractory_steps: 144,
        }
    }
}

/// Runs the detector over one series' values; returns the row indices that alert and
/// each row's anomaly score (the z-score relative to the threshold, so ≥ 1 means "over
/// the threshold").
pub fn detect(values: &[f64], settings: &DetectorSettings) -> (Vec<usize>, Vec<f64>) {
    let mut detector = StreamDetector::new(settings.stream);
    let mut alerts = Vec::new();
    let mut scores = Vec::with_capacity(values.len());
    let mut quiet_until = 0usize;
    let threshold = settings.z_threshold.max(f64::EPSILON);
    for (i, &x) in values.iter().enumerate() {
        let score = detector.update(x).z / threshold;
        scores.push(score);
        if i >= quiet_until && score >= 1.0 {
            alerts.push(i);
            quiet_until = i + settings.refractory_steps.max(1);
        }
    }
    (alerts, scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nab_detector_flags_a_spike_once_and_not_a_flat_series() {
        let mut values: Vec<f64> = (0..1000)
            .map(|i| 10.0 + ((i * 7919) % 13) as f64 * 0.05)
            .collect();
        let (flat, _) = detect(&values, &DetectorSettings::default());
        assert!(flat.is_empty(), "{flat:?}");
        values[600] = 50.0;
        values[601] = 50.0;
        let (alerts, _) = detect(&values, &DetectorSettings::default());
        assert_eq!(alerts, vec![600]);
    }

    #[test]
    fn nab_detector_is_causal() {
        // Changing the future never changes past verdicts.
        let a: Vec<f64> = (0..800)
            .map(|i| ((i as f64) * 0.3).sin() * 5.0 + 20.0)
            .collect();
        let mut b = a.clone();
        for v in &mut b[500..] {
            *v += 100.0;
        }
        let (_, sa) = detect(&a, &DetectorSettings::default());
        let (_, sb) = detect(&b, &DetectorSettings::default());
        assert_eq!(sa[..500], sb[..500]);
        assert_ne!(sa[500], sb[500]);
    }
}
