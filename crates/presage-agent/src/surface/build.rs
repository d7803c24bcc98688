//! Turning the engine's state after a tick into the [`Snapshot`] readers see.

use std::collections::BTreeMap;
use std::time::Duration;

use presage_core::{Forecast, Resource};
use presage_engine::WorkloadView;

use super::{
    HistoryPoint, HorizonSummary, LoopStats, Marker, OverrideView, QuantileSummary, Snapshot,
    WorkloadSummary,
};
use crate::agent::{Agent, AgentTick};

/// Keeps the counters that outlive one tick and builds each tick's snapshot.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    loop_stats: LoopStats,
    decisions_by_reason: BTreeMap<String, u64>,
    alerts_by_kind: BTreeMap<String, u64>,
}

/// What one tick adds to the shared state.
#[derive(Debug)]
pub struct Published {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// One chart point per workload sampled.
    pub points: Vec<(String, HistoryPoint)>,
    /// The tick's decisions and alerts, as chart markers.
    pub markers: Vec<(String, Marker)>,
    /// Workloads released in the tick.
    pub gone: Vec<String>,
}

impl SnapshotBuilder {
    /// Counts `tick` (which took `took`) and builds the snapshot of `agent` after it.
    pub fn build(&mut self, agent: &Agent, tick: &AgentTick, took: Duration) -> Published {
        self.count(agent, tick, took);
        // One pass over the engine: each workload's summary, and its chart point when it
        // was sampled in this tick.
        let now_ms = tick.report.now.unix_ms();
        let mut points = Vec::new();
        let mut workloads: Vec<WorkloadSummary> = agent
            .engine()
            .workloads()
            .map(|w| {
                let summary = summarize(agent, &w);
                if summary.sampled_at_ms == now_ms {
                    points.push((summary.id.clone(), history_point(&w)));
                }
                summary
            })
            .collect();
        workloads.sort_by(|a, b| a.id.cmp(&b.id));
        Published {
            snapshot: Snapshot {
                at_ms: tick.report.now.unix_ms(),
                mode: agent.config().mode,
                loop_stats: self.loop_stats.clone(),
                workloads,
                decisions_by_reason: self.decisions_by_reason.clone(),
                alerts_by_kind: self.alerts_by_kind.clone(),
                webhook: agent.webhook_stats(),
                policies: agent.policy_status(),
            },
            points,
            markers: markers(tick),
            gone: tick.released.iter().map(ToString::to_string).collect(),
        }
    }

    fn count(&mut self, agent: &Agent, tick: &AgentTick, took: Duration) {
        let s = &mut self.loop_stats;
        let took = took.as_secs_f64();
        s.ticks += 1;
        s.interval_s = agent.config().interval_s;
        s.last_duration_s = took;
        s.max_duration_s = s.max_duration_s.max(took);
        s.overruns += u64::from(took > s.interval_s);
        s.samples_read += tick.report.samples_used as u64;
        s.errors += (tick.problems.len() + tick.report.issues.len()) as u64;
        for d in &tick.report.decisions {
            *self
                .decisions_by_reason
                .entry(d.reason.to_string())
                .or_default() += 1;
        }
        for a in &tick.report.alerts {
            *self.alerts_by_kind.entry(snake(&a.kind)).or_default() += 1;
        }
    }
}

/// A value's serde name (`memory_leak` for `AlertKind::MemoryLeak`).
fn snake(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

fn summarize(agent: &Agent, w: &WorkloadView<'_>) -> WorkloadSummary {
    let usage = w.last_sample.map(|s| *s.usage());
    let longest = agent.config().horizons_s.last().copied().unwrap_or(0);
    let mut risk = BTreeMap::new();
    let mut slack = BTreeMap::new();
    let mut used = BTreeMap::new();
    for r in Resource::ALL {
        let value = usage.and_then(|u| u.get(r));
        if let Some(v) = value {
            used.insert(r.name().to_string(), v);
        }
        let Some(limit) = w.limits.hard(r) else {
            continue;
        };
        if let Some(p) = w.forecast.and_then(|f| f.risk(r, limit, longest)) {
            risk.insert(r.name().to_string(), p);
        }
        if let (Some(v), Resource::Cpu | Resource::Memory) = (value, r) {
            slack.insert(r.name().to_string(), ((limit - v) / limit).max(0.0));
        }
    }
    let risk_max = risk.values().copied().fold(0.0, f64::max);
    WorkloadSummary {
        id: w.id.to_string(),
        key: w.key.clone(),
        policy_name: agent.policy_name(w.id).to_string(),
        policy: w.policy.clone(),
        usage: used,
        sampled_at_ms: w.last_sample.map_or(0, |s| s.at().unix_ms()),
        limits: *w.limits,
        adopted_limits: *w.adopted_limits,
        forecast: w.forecast.map(horizons).unwrap_or_default(),
        risk,
        risk_max,
        slack,
        behavior_score: w.score,
        anomaly_score: w.anomaly_score,
        model: w.forecast.map(|f| f.model().to_string()),
        samples: w.samples,
        override_limits: w.override_hold.map(|(limits, until)| OverrideView {
            limits,
            expires_at_ms: until.unix_ms(),
        }),
    }
}

fn horizons(f: &Forecast) -> Vec<HorizonSummary> {
    f.horizons()
        .iter()
        .map(|h| HorizonSummary {
            horizon_s: h.horizon_s,
            resources: h
                .quantiles
                .present()
                .map(|(r, q)| {
                    (
                        r.name().to_string(),
                        QuantileSummary {
                            p50: q.p50(),
                            p90: q.p90(),
                            p95: q.p95(),
                            p99: q.p99(),
                            max: q.max(),
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// The chart point of a workload now: usage, limit and the first horizon's forecast.
pub fn history_point(w: &WorkloadView<'_>) -> HistoryPoint {
    let usage = w.last_sample.map(|s| *s.usage());
    let first = w.forecast.and_then(|f| f.horizons().first());
    let q = |r: Resource| first.and_then(|h| h.quantiles.get(r).as_ref());
    HistoryPoint {
        t_ms: w.last_sample.map_or(0, |s| s.at().unix_ms()),
        cpu: usage.and_then(|u| u.cpu_cores()),
        cpu_limit: w.limits.hard(Resource::Cpu),
        cpu_p50: q(Resource::Cpu).map(|q| q.p50()),
        cpu_p99: q(Resource::Cpu).map(|q| q.p99()),
        memory: usage.and_then(|u| u.memory_bytes()),
        memory_limit: w.limits.hard(Resource::Memory),
        memory_p50: q(Resource::Memory).map(|q| q.p50()),
        memory_p99: q(Resource::Memory).map(|q| q.p99()),
    }
}

fn markers(tick: &AgentTick) -> Vec<(String, Marker)> {
    let decisions = tick.report.decisions.iter().map(|d| {
        (
            d.workload.to_string(),
            Marker {
                t_ms: d.at.unix_ms(),
                kind: "decision",
                label: d.reason.to_string(),
                detail: format!(
                    "{} → {} ({})",
                    limits_text(&d.old),
                    limits_text(&d.new),
                    d.model
                ),
            },
        )
    });
    let alerts = tick.report.alerts.iter().map(|a| {
        (
            a.workload.to_string(),
            Marker {
                t_ms: a.at.unix_ms(),
                kind: "alert",
                label: snake(&a.kind),
                detail: a.message.clone(),
            },
        )
    });
    decisions.chain(alerts).collect()
}

fn limits_text(l: &presage_core::Limits) -> String {
    let cpu = l
        .hard(Resource::Cpu)
        .map_or("cpu ∞".to_string(), |c| format!("cpu {c:.2}"));
    let mem = l.hard(Resource::Memory).map_or("mem ∞".to_string(), |m| {
        format!("mem {:.0} MiB", m / 1_048_576.0)
    });
    format!("{cpu}, {mem}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_names_are_serde_names() {
        assert_eq!(snake(&presage_core::AlertKind::MemoryLeak), "memory_leak");
        assert_eq!(snake(&Resource::NetRx), "net_rx");
    }

    #[test]
    fn limits_text_reads_unlimited_as_infinity() {
        let l = presage_core::Limits::unlimited()
            .with_hard(Resource::Cpu, 0.5)
            .unwrap();
        assert_eq!(limits_text(&l), "cpu 0.50, mem ∞");
    }
}
