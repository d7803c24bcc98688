//! What the agent shows and accepts from outside its loop (the HTTP API, `/metrics`, the
//! dashboard), without knowing HTTP.
//!
//! The loop is single-threaded and owns the engine; readers must never slow it down. So
//! after every tick the loop publishes an immutable [`Snapshot`] (readers clone an `Arc`,
//! never wait on the loop), appends to per-workload [`History`] rings, and drains
//! [`Command`]s that mutate it (mode, overrides, policy reload), each answered through a
//! reply channel once the loop has carried it out.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use presage_core::{Limits, WorkloadKey};
use presage_policy::WorkloadPolicy;
use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::webhook::WebhookStats;

mod build;

pub use build::{Published, SnapshotBuilder, history_point};

/// Everything a reader sees of the agent at one tick.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When the tick that produced it ran (unix milliseconds).
    pub at_ms: i64,
    /// What the agent may do now.
    pub mode: Mode,
    /// The control loop's health and cost.
    #[serde(rename = "loop")]
    pub loop_stats: LoopStats,
    /// Every managed workload, ordered by id.
    pub workloads: Vec<WorkloadSummary>,
    /// Decisions since start, by reason (`proactive_raise`, `release`, …).
    pub decisions_by_reason: BTreeMap<String, u64>,
    /// Alerts since start, by kind (`anomaly`, `memory_leak`, …).
    pub alerts_by_kind: BTreeMap<String, u64>,
    /// The webhook's delivery counters, when one is configured.
    pub webhook: Option<WebhookStats>,
    /// The policies in force and how the last reload went.
    pub policies: PolicyStatus,
}

impl Snapshot {
    /// The snapshot before the first tick: no workloads, the loop not yet running.
    pub fn empty(mode: Mode, interval_s: f64) -> Snapshot {
        Snapshot {
            at_ms: 0,
            mode,
            loop_stats: LoopStats {
                interval_s,
                ..LoopStats::default()
            },
            workloads: Vec::new(),
            decisions_by_reason: BTreeMap::new(),
            alerts_by_kind: BTreeMap::new(),
            webhook: None,
            policies: PolicyStatus::default(),
        }
    }

    /// The workload with this id.
    pub fn workload(&self, id: &str) -> Option<&WorkloadSummary> {
        self.workloads
            .binary_search_by(|w| w.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.workloads[i])
    }
}

/// The control loop's own numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopStats {
    /// Ticks run since start.
    pub ticks: u64,
    /// The configured seconds between ticks.
    pub interval_s: f64,
    /// How long the last tick took, seconds.
    pub last_duration_s: f64,
    /// The longest tick since start, seconds.
    pub max_duration_s: f64,
    /// Ticks that took longer than the interval.
    pub overruns: u64,
    /// Samples read since start.
    pub samples_read: u64,
    /// Problems met since start (sampling, adoption, store, actuation).
    pub errors: u64,
}

/// The policies in force.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PolicyStatus {
    /// Where they were read from (`None`: the embedded defaults).
    pub source: Option<String>,
    /// Their names, in match order (the default policy last).
    pub names: Vec<String>,
    /// When they were last loaded (unix milliseconds).
    pub loaded_at_ms: i64,
    /// Why the last reload was refused, if it was (the old policies stayed).
    pub last_error: Option<String>,
}

/// One managed workload as the API, metrics and dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSummary {
    /// Its cgroup, relative to the hierarchy root (the id in every URL).
    pub id: String,
    /// What it is.
    pub key: WorkloadKey,
    /// The name of the policy that matched it (`default` when none did).
    pub policy_name: String,
    /// The effective policy (after time windows).
    pub policy: WorkloadPolicy,
    /// The latest sample's usage, per resource measured (`cpu` cores, `memory` bytes,
    /// `io_read`/`io_write`/`net_rx`/`net_tx` bytes per second).
    pub usage: BTreeMap<String, f64>,
    /// When that sample was taken (unix milliseconds; 0 before the first).
    pub sampled_at_ms: i64,
    /// The limits in force.
    pub limits: Limits,
    /// The limits it had when adopted (what shutdown restores).
    pub adopted_limits: Limits,
    /// The latest forecast, per horizon.
    pub forecast: Vec<HorizonSummary>,
    /// Per resource, the probability that usage exceeds the current limit within the
    /// longest horizon (absent without a limit or a forecast).
    pub risk: BTreeMap<String, f64>,
    /// The highest of `risk` (0 when none).
    pub risk_max: f64,
    /// CPU and memory slack now: (limit − usage) / limit, absent without a limit.
    pub slack: BTreeMap<String, f64>,
    /// The behavioural score (0–100, 50 neutral).
    pub behavior_score: f64,
    /// The anomaly score (0–1; 0.5 is one component at its threshold).
    pub anomaly_score: f64,
    /// The model whose forecast is in use.
    pub model: Option<String>,
    /// Samples seen by this instance.
    pub samples: u64,
    /// An operator override in force: its limits and expiry.
    pub override_limits: Option<OverrideView>,
}

/// An operator's manual limits, held against the allocator until they expire.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverrideView {
    /// The limits set.
    pub limits: Limits,
    /// When the allocator takes over again (unix milliseconds).
    pub expires_at_ms: i64,
}

/// The forecast for one horizon: quantiles per resource.
#[derive(Debug, Clone, Serialize)]
pub struct HorizonSummary {
    /// Seconds ahead.
    pub horizon_s: u32,
    /// Resource name (`cpu`, `memory`, …) → its quantiles.
    pub resources: BTreeMap<String, QuantileSummary>,
}

/// A forecast distribution's quantiles, in the resource's unit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct QuantileSummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The most the model thinks possible.
    pub max: f64,
}

/// One tick of one workload, for the dashboard's chart (CPU and memory; `None` where
/// not measured, not limited or not forecast).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// Unix milliseconds.
    pub t_ms: i64,
    /// CPU used, cores.
    pub cpu: Option<f64>,
    /// CPU quota, cores.
    pub cpu_limit: Option<f64>,
    /// Forecast CPU at the first horizon: median and 99th percentile.
    pub cpu_p50: Option<f64>,
    /// See `cpu_p50`.
    pub cpu_p99: Option<f64>,
    /// Memory used, bytes.
    pub memory: Option<f64>,
    /// Memory hard limit, bytes.
    pub memory_limit: Option<f64>,
    /// Forecast memory at the first horizon: median and 99th percentile.
    pub memory_p50: Option<f64>,
    /// See `memory_p50`.
    pub memory_p99: Option<f64>,
}

/// A decision or an alert, marked on the chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    /// Unix milliseconds.
    pub t_ms: i64,
    /// `decision` or `alert`.
    pub kind: &'static str,
    /// The decision's reason or the alert's kind.
    pub label: String,
    /// A sentence for humans.
    pub detail: String,
}

/// The recent past of one workload, bounded.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<HistoryPoint>,
    markers: VecDeque<Marker>,
}

impl History {
    fn push_point(&mut self, point: HistoryPoint, cap: usize) {
        if self.points.len() >= cap {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    fn push_marker(&mut self, marker: Marker, cap: usize) {
        if self.markers.len() >= cap {
            self.markers.pop_front();
        }
        self.markers.push_back(marker);
    }

    /// Points and markers with `from_ms <= t_ms <= to_ms`.
    pub fn range(&self, from_ms: i64, to_ms: i64) -> (Vec<HistoryPoint>, Vec<Marker>) {
        let within = |t: i64| (from_ms..=to_ms).contains(&t);
        (
            self.points
                .iter()
                .filter(|p| within(p.t_ms))
                .copied()
                .collect(),
            self.markers
                .iter()
                .filter(|m| within(m.t_ms))
                .cloned()
                .collect(),
        )
    }
}

/// A change asked of the agent from outside.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Switch what the agent may do.
    SetMode(Mode),
    /// Hold these limits on the workload until `expires_at_ms`, against the allocator.
    Override {
        /// The workload's id.
        workload: String,
        /// The limits wanted (still bounded by the safety invariants).
        limits: Limits,
        /// When the allocator takes over again (unix milliseconds).
        expires_at_ms: i64,
    },
    /// End an override now.
    ClearOverride {
        /// The workload's id.
        workload: String,
    },
    /// Read the policies again from the config file.
    ReloadPolicies,
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// The request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request was understood but cannot be done (a bad policy file, say).
    #[error("{0}")]
    Rejected(String),
    /// The loop did not answer in time, or is gone.
    #[error("{0}")]
    Unavailable(String),
}

/// A command with the channel its answer goes back on.
#[derive(Debug)]
pub struct Request {
    /// What is asked.
    pub command: Command,
    /// Where the loop sends the outcome (a JSON body for the client).
    pub reply: SyncSender<Result<serde_json::Value, CommandError>>,
}

/// The state shared between the loop (writer) and the server (readers).
#[derive(Debug)]
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    history: Mutex<HashMap<String, History>>,
    commands: Mutex<Sender<Request>>,
    history_points: usize,
    history_markers: usize,
}

impl Shared {
    /// Shared state starting from `initial`, keeping `history_points` points per
    /// workload; and the receiving end of the command channel, for the loop.
    pub fn new(initial: Snapshot, history_points: usize) -> (Arc<Shared>, Receiver<Request>) {
        let (tx, rx) = mpsc::channel();
        let shared = Shared {
            snapshot: RwLock::new(Arc::new(initial)),
            history: Mutex::new(HashMap::new()),
            commands: Mutex::new(tx),
            history_points: history_points.max(1),
            history_markers: (history_points / 4).max(16),
        };
        (Arc::new(shared), rx)
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the snapshot (the loop, after a tick).
    pub fn publish(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// Appends a tick's points and markers, and forgets workloads no longer managed.
    pub fn record(
        &self,
        points: Vec<(String, HistoryPoint)>,
        markers: Vec<(String, Marker)>,
        gone: &[String],
    ) {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, point) in points {
            history
                .entry(id)
                .or_default()
                .push_point(point, self.history_points);
        }
        for (id, marker) in markers {
            history
                .entry(id)
                .or_default()
                .push_marker(marker, self.history_markers);
        }
        for id in gone {
            history.remove(id);
        }
    }

    /// The workload's points and markers within [`from_ms`, `to_ms`]; `None` for a
    /// workload with no history.
    pub fn history(
        &self,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Option<(Vec<HistoryPoint>, Vec<Marker>)> {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        history.get(id).map(|h| h.range(from_ms, to_ms))
    }

    /// Hands `command` to the loop and waits up to `timeout` for its outcome. Blocking:
    /// call it off the async runtime's worker threads.
    pub fn send(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<serde_json::Value, CommandError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Request { command, reply })
            .map_err(|_| CommandError::Unavailable("the control loop has stopped".into()))?;
        answer.recv_timeout(timeout).map_err(|_| {
            CommandError::Unavailable(format!(
                "the control loop did not answer within {:.1} s",
                timeout.as_secs_f64()
            ))
        })?
    }
}

/// The loop's side of the surface: publishes after every tick, serves commands between
/// ticks.
#[derive(Debug)]
pub struct Surface {
    shared: Arc<Shared>,
    commands: Receiver<Request>,
    builder: SnapshotBuilder,
}

impl Surface {
    /// A surface for an agent in `mode` ticking every `interval_s`, keeping
    /// `history_points` chart points per workload.
    pub fn new(mode: Mode, interval_s: f64, history_points: usize) -> Surface {
        let (shared, commands) = Shared::new(Snapshot::empty(mode, interval_s), history_points);
        Surface {
            shared,
            commands,
            builder: SnapshotBuilder::default(),
        }
    }

    /// What readers hold.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Publishes the state after `tick`.
    pub fn publish(&mut self, agent: &crate::Agent, tick: &crate::AgentTick, took: Duration) {
        let p = self.builder.build(agent, tick, took);
        self.shared.record(p.points, p.markers, &p.gone);
        self.shared.publish(p.snapshot);
    }

    /// Carries out the commands waiting, answering each. Returns how many there were.
    pub fn serve(&mut self, agent: &mut crate::Agent) -> usize {
        let mut served = 0;
        while let Ok(request) = self.commands.try_recv() {
            let outcome = agent.handle(request.command);
            // The client may have given up waiting; the change stands either way.
            let _ = request.reply.send(outcome);
            // Readers see the new mode and policy status at once, not a tick later (the
            // workloads' own changes show with the next tick's snapshot).
            let mut snapshot = (*self.shared.snapshot()).clone();
            snapshot.mode = agent.config().mode;
            snapshot.policies = agent.policy_status();
            self.shared.publish(snapshot);
            served += 1;
        }
        served
    }
}
