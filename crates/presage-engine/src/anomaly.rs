//! The anomaly step of a workload's tick: feed the scorer, and turn a reading over the
//! policy's threshold into an alert — at once on the first crossing, then at most once
//! per `realert_s` while the same kind of anomaly persists, so a sustained anomaly does
//! not alert every tick yet the responder still hears of it often enough to escalate.

use presage_core::{Alert, AlertKind, Forecast, Sample, Severity, Timestamp, WorkloadId};
use presage_policy::anomaly::{AnomalyPolicy, AnomalyScorer, Component};

/// One workload's anomaly state in the engine.
#[derive(Debug, Clone, Default)]
pub(crate) struct AnomalyState {
    scorer: AnomalyScorer,
    /// The last alert raised per kind (kinds re-alert independently: a leak that starts
    /// during a fork bomb is news).
    last: Vec<(AlertKind, Timestamp)>,
    /// The latest combined score (0–1), for views.
    pub(crate) score: f64,
}

fn kind_of(component: Component) -> AlertKind {
    match component {
        Component::Leak => AlertKind::MemoryLeak,
        Component::ProcessExplosion => AlertKind::ProcessExplosion,
        Component::Envelope | Component::Shift(_) | Component::Joint | Component::SustainedCpu => {
            AlertKind::Anomaly
        }
    }
}

/// Updates `state` with `sample` and the forecast made before it; returns the alert to
/// raise, if any.
pub(crate) fn score_anomaly(
    state: &mut AnomalyState,
    id: &WorkloadId,
    sample: &Sample,
    previous: Option<&Forecast>,
    policy: &AnomalyPolicy,
) -> Option<Alert> {
    if !policy.enabled {
        return None;
    }
    let reading = state.scorer.update(sample, previous, policy);
    state.score = reading.score;
    let component = reading.component?;
    if reading.score < policy.alert_score {
        return None;
    }
    let kind = kind_of(component);
    let now = sample.at();
    let due = state
        .last
        .iter()
        .find(|(k, _)| *k == kind)
        .is_none_or(|(_, t)| now.secs_since(*t) >= policy.realert_s);
    if !due {
        return None;
    }
    state.last.retain(|(k, _)| *k != kind);
    state.last.push((kind, now));
    Some(Alert {
        workload: id.clone(),
        at: now,
        kind,
        // Four times over a threshold (score 0.8) is worth acting on.
        severity: if reading.score >= 0.8 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        score: reading.score,
        message: format!(
            "anomaly score {:.2} ({:.1}× threshold), driven by {}: {}",
            reading.score,
            reading.ratio,
            component.describe(),
            reading.detail
        ),
    })
}

#[cfg(test)]
mod tests {
    use presage_core::{Events, Resource, Usage};

    use super::*;

    fn sample(t: i64, processes: u32) -> Sample {
        let usage = Usage::empty()
            .with(Resource::Cpu, 0.2 + 0.01 * (t % 3) as f64)
            .and_then(|u| u.with(Resource::Memory, 1e8))
            .expect("usage");
        Sample::new(
            Timestamp::from_unix_secs(t),
            WorkloadId::new("w").expect("id"),
            1000,
            usage,
        )
        .expect("sample")
        .with_events(Events {
            processes: Some(processes),
            ..Events::default()
        })
        .expect("events")
    }

    #[test]
    fn a_sustained_anomaly_alerts_at_once_then_once_per_realert_span() {
        let policy = AnomalyPolicy::default();
        let id = WorkloadId::new("w").expect("id");
        let mut state = AnomalyState::default();
        let mut alerts = Vec::new();
        for t in 0..400 {
            let n = if t >= 200 { 500 } else { 3 };
            if let Some(a) = score_anomaly(&mut state, &id, &sample(t, n), None, &policy) {
                alerts.push(a);
            }
        }
        let times: Vec<i64> = alerts.iter().map(|a| a.at.unix_ms() / 1000).collect();
        // 200 s of explosion at a 30 s re-alert span: 200, 230, …, 380.
        assert_eq!(times, (200..400).step_by(30).collect::<Vec<i64>>());
        assert!(alerts.iter().all(|a| a.kind == AlertKind::ProcessExplosion));
        assert!(
            alerts[0].message.contains("process explosion"),
            "{}",
            alerts[0].message
        );
        assert!(alerts.iter().all(|a| (0.5..1.0).contains(&a.score)));
    }

    #[test]
    fn a_disabled_policy_never_alerts() {
        let policy = AnomalyPolicy {
            enabled: false,
            ..AnomalyPolicy::default()
        };
        let id = WorkloadId::new("w").expect("id");
        let mut state = AnomalyState::default();
        for t in 0..300 {
            let n = if t >= 200 { 500 } else { 3 };
            assert!(score_anomaly(&mut state, &id, &sample(t, n), None, &policy).is_none());
        }
    }
}
