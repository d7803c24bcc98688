//! The simulated host: what a workload's demand turns into under the limits in force.
//!
//! CPU demand above the quota is throttled: the engine sees usage at the quota and the
//! throttled time as an event. Memory demand above the hard limit is an OOM kill: the
//! engine sees usage at the limit and the kill as an event; the workload then goes on as
//! the trace says (its demand is what it is). A decision takes effect when the actuator
//! applies it, `delay` after it was made, and governs the intervals that start after that.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use presage_core::{Decision, Events, Limits, Resource, Sample, Timestamp, Usage, WorkloadId};
use presage_engine::{ActuationError, Actuator};

use crate::metrics::Accumulators;
use crate::trace::TraceWorkload;

/// A change waiting to take effect.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) workload: WorkloadId,
    pub(crate) change: Change,
    pub(crate) apply_at: Timestamp,
}

/// What the actuator did to a simulated workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    /// New limits.
    Limits(Limits),
    /// Frozen (`true`) or thawed: a frozen workload runs nothing (no CPU) but keeps its
    /// memory.
    Frozen(bool),
    /// Killed: from then on it uses nothing.
    Killed,
}

/// The simulator's actuator: it queues each decision to take effect after the actuation
/// delay; the world applies it when its time comes.
#[derive(Debug, Clone)]
pub(crate) struct SimActuator {
    pub(crate) queue: Arc<Mutex<Vec<Pending>>>,
    pub(crate) delay_ms: i64,
}

impl SimActuator {
    fn push(
        &self,
        workload: &WorkloadId,
        change: Change,
        at: Timestamp,
    ) -> Result<(), ActuationError> {
        let mut queue = self.queue.lock().map_err(|_| ActuationError::Failed {
            workload: workload.clone(),
            message: "simulator queue poisoned by an earlier panic".into(),
        })?;
        queue.push(Pending {
            workload: workload.clone(),
            change,
            apply_at: at.plus_ms(self.delay_ms),
        });
        Ok(())
    }
}

impl Actuator for SimActuator {
    fn apply(&mut self, decision: &Decision) -> Result<Limits, ActuationError> {
        self.push(
            &decision.workload,
            Change::Limits(decision.new),
            decision.at,
        )?;
        Ok(decision.new)
    }

    // Freeze and kill take effect with the same delay as a limit change. The actuator
    // does not know the tick's time, so they are dated at the earliest (the epoch): the
    // world applies them before the next interval it plays (after any change queued
    // ahead of them), which is when a real freeze issued after this tick's sample bites.
    fn freeze(&mut self, workload: &WorkloadId, frozen: bool) -> Result<(), ActuationError> {
        self.push(workload, Change::Frozen(frozen), Timestamp::from_unix_ms(0))
    }

    fn kill(&mut self, workload: &WorkloadId) -> Result<(), ActuationError> {
        self.push(workload, Change::Killed, Timestamp::from_unix_ms(0))
    }
}

/// One usage-vs-limit point of a recorded timeline.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TimelinePoint {
    /// End of the interval, ms since the epoch.
    pub at_ms: i64,
    /// CPU demand (cores) and limit.
    pub cpu: (f64, Option<f64>),
    /// Memory demand (bytes) and limit.
    pub memory: (f64, Option<f64>),
}

/// One workload's state in the simulated world.
#[derive(Debug)]
pub(crate) struct SimWorkload<'a> {
    pub(crate) trace: &'a TraceWorkload,
    pub(crate) cursor: usize,
    pub(crate) limits: Limits,
    pending: VecDeque<(Timestamp, Change)>,
    /// Frozen by the responder: no CPU, memory kept.
    frozen: bool,
    /// Killed by the responder: nothing from then on.
    killed: bool,
    pub(crate) acc: Accumulators,
    first_interval_ms: u32,
    /// An OOM the node (not the workload's own limit) caused, delivered with the next sample.
    pub(crate) node_oom: bool,
    pub(crate) timeline: Option<Vec<TimelinePoint>>,
    /// CPU limit and demand per step, for workloads whose surges are known.
    pub(crate) trail: Option<crate::surges::CpuTrail>,
}

impl<'a> SimWorkload<'a> {
    pub(crate) fn new(trace: &'a TraceWorkload, record_timeline: bool) -> Self {
        SimWorkload {
            trace,
            cursor: 0,
            limits: trace.provisioned,
            pending: VecDeque::new(),
            frozen: false,
            killed: false,
            acc: Default::default(),
            first_interval_ms: first_interval_ms(trace),
            node_oom: false,
            timeline: record_timeline.then(Vec::new),
            trail: (!trace.surges.is_empty()).then(Default::default),
        }
    }

    /// The time of the next point, if any remain.
    pub(crate) fn next_at(&self) -> Option<Timestamp> {
        self.trace.points.get(self.cursor).map(|p| p.at)
    }

    /// The demand of the latest point at or before the cursor.
    pub(crate) fn current_demand(&self, resource: Resource) -> f64 {
        let i = self.cursor.min(self.trace.points.len().saturating_sub(1));
        self.trace
            .points
            .get(i)
            .and_then(|p| p.demand.get(resource))
            .unwrap_or(0.0)
    }

    pub(crate) fn enqueue(&mut self, apply_at: Timestamp, change: Change) {
        self.pending.push_back((apply_at, change));
    }

    /// Applies the changes that took effect before the interval of the current point
    /// began (at the previous point's time), counting each limit that moved.
    fn apply_due(&mut self) {
        let interval_start = match self.cursor {
            0 => self
                .trace
                .points
                .first()
                .map(|p| p.at.plus_ms(-i64::from(self.first_interval_ms))),
            i => self.trace.points.get(i - 1).map(|p| p.at),
        };
        let Some(start) = interval_start else {
            return;
        };
        while self.pending.front().is_some_and(|(at, _)| *at <= start) {
            let Some((_, change)) = self.pending.pop_front() else {
                break;
            };
            let new = match change {
                Change::Limits(new) => new,
                Change::Frozen(frozen) => {
                    self.frozen = frozen;
                    continue;
                }
                Change::Killed => {
                    self.killed = true;
                    continue;
                }
            };
            for r in Resource::ALL {
                if new.hard(r) != self.limits.hard(r) {
                    self.acc[r.index()].count_change();
                }
            }
            self.limits = new;
        }
    }

    /// Plays the current point: applies due changes, records the metrics, and appends
    /// what the host shows the engine to `out`. `cpu_available` is the node's share for
    /// this workload when the node is contended (`None`: only the quota limits it).
    pub(crate) fn play(&mut self, cpu_available: Option<f64>, out: &mut Vec<Sample>) {
        self.apply_due();
        let Some(point) = self.trace.points.get(self.cursor).copied() else {
            return;
        };
        let interval_ms = match self.cursor {
            0 => self.first_interval_ms,
            i => interval_between(self.trace.points[i - 1].at, point.at),
        };
        self.cursor += 1;
        let mut observed = Usage::empty();
        let mut events = Events::default();
        for (resource, demand) in point.demand.iter() {
            // A stopped workload demands nothing (a frozen one still holds its memory).
            let demand = match resource {
                _ if self.killed => 0.0,
                Resource::Memory => demand,
                _ if self.frozen => 0.0,
                _ => demand,
            };
            let limit = self.limits.hard(resource);
            self.acc[resource.index()].record(point.at, demand, limit);
            let mut cap = limit.unwrap_or(f64::INFINITY);
            if resource == Resource::Cpu {
                cap = cap.min(cpu_available.unwrap_or(f64::INFINITY));
            }
            let shown = demand.min(cap);
            if demand > cap {
                match resource {
                    Resource::Cpu => {
                        let share = (demand - cap) / demand;
                        events.cpu_throttled_s = share * f64::from(interval_ms) / 1000.0;
                        // CFS periods are 100 ms; count the throttled share of them.
                        events.cpu_throttled_periods =
                            ((events.cpu_throttled_s * 10.0).ceil() as u64).max(1);
                    }
                    Resource::Memory => {
                        events.oom_kills += 1;
                        self.acc[resource.index()].count_oom();
                    }
                    _ => {}
                }
            }
            // Values come from a validated trace and `min` keeps them finite and ≥ 0.
            let _ = observed.set(resource, shown);
        }
        if std::mem::take(&mut self.node_oom) {
            events.oom_kills += 1;
            self.acc[Resource::Memory.index()].count_oom();
        }
        if let (Some(trail), Some(demand)) = (self.trail.as_mut(), point.demand.cpu_cores()) {
            trail.at_ms.push(point.at.unix_ms());
            trail.demand.push(demand);
            trail
                .limit
                .push(self.limits.cpu_quota_cores().unwrap_or(f64::INFINITY));
        }
        if let Some(timeline) = self.timeline.as_mut() {
            let pair = |r: Resource| (point.demand.get(r).unwrap_or(0.0), self.limits.hard(r));
            timeline.push(TimelinePoint {
                at_ms: point.at.unix_ms(),
                cpu: pair(Resource::Cpu),
                memory: pair(Resource::Memory),
            });
        }
        // Valid by construction: a positive interval, finite non-negative throttled time.
        if let Ok(mut sample) = Sample::new(point.at, self.trace.id.clone(), interval_ms, observed)
            && sample.set_events(events).is_ok()
        {
            out.push(sample);
        }
    }

    /// Workload-days this workload covers.
    pub(crate) fn days(&self) -> f64 {
        match (self.trace.points.first(), self.trace.points.last()) {
            (Some(a), Some(b)) => {
                (b.at.secs_since(a.at) + f64::from(self.first_interval_ms) / 1000.0) / 86_400.0
            }
            _ => 0.0,
        }
    }
}

fn interval_between(a: Timestamp, b: Timestamp) -> u32 {
    (b.unix_ms() - a.unix_ms()).clamp(1, i64::from(u32::MAX)) as u32
}

/// The interval before a workload's first point: a sample's interval is explicit, never
/// assumed, so it is taken from the first step that follows (one minute for a workload
/// of a single point).
pub(crate) fn first_interval_ms(trace: &TraceWorkload) -> u32 {
    match trace.points.as_slice() {
        [a, b, ..] => interval_between(a.at, b.at),
        _ => 60_000,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use presage_core::WorkloadKey;

    use super::*;
    use crate::run::deliver;
    use crate::trace::TracePoint;

    fn trace() -> TraceWorkload {
        let points = (1..=6)
            .map(|k| {
                let demand = Usage::empty()
                    .with(Resource::Cpu, 2.0)
                    .unwrap()
                    .with(Resource::Memory, 1e9)
                    .unwrap();
                TracePoint {
                    at: Timestamp::from_unix_secs(k * 60),
                    demand,
                }
            })
            .collect();
        TraceWorkload {
            id: WorkloadId::new("w").unwrap(),
            key: WorkloadKey::for_code("w").unwrap(),
            provisioned: Limits::unlimited(),
            points,
            origin: PathBuf::new(),
            surges: Vec::new(),
        }
    }

    fn shown(w: &mut SimWorkload<'_>) -> (Option<f64>, Option<f64>) {
        let mut out = Vec::new();
        w.play(None, &mut out);
        let s = out.pop().unwrap();
        (s.usage().cpu_cores(), s.usage().memory_bytes())
    }

    #[test]
    fn frozen_runs_nothing_but_keeps_memory_and_killed_uses_nothing() {
        let t = trace();
        let mut world = vec![SimWorkload::new(&t, false)];
        let queue = Arc::new(Mutex::new(Vec::new()));
        let mut act = SimActuator {
            queue: queue.clone(),
            delay_ms: 0,
        };
        let id = WorkloadId::new("w").unwrap();
        assert_eq!(shown(&mut world[0]), (Some(2.0), Some(1e9)));
        act.freeze(&id, true).unwrap();
        deliver(&queue, &mut world);
        assert_eq!(shown(&mut world[0]), (Some(0.0), Some(1e9)));
        act.freeze(&id, false).unwrap();
        deliver(&queue, &mut world);
        assert_eq!(shown(&mut world[0]), (Some(2.0), Some(1e9)));
        act.kill(&id).unwrap();
        deliver(&queue, &mut world);
        assert_eq!(shown(&mut world[0]), (Some(0.0), Some(0.0)));
        assert_eq!(shown(&mut world[0]), (Some(0.0), Some(0.0)), "stays dead");
    }
}
