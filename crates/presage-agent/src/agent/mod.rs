//! The live harness: the engine driving real cgroups. Discovery finds workloads, the
//! sampler reads them, the engine decides, the actuator writes; the ledger remembers
//! what to put back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use presage_core::{Fingerprint, Sample, Timestamp, WorkloadId, WorkloadKey};
use presage_engine::{
    Engine, EngineConfig, LadderResponder, MemoryStore, ProfileStore, TickReport, TickWrite,
    WorkloadSpec,
};
use presage_linux::{Cgroup, CgroupManager, Layout};
use presage_policy::WorkloadPolicy;
use presage_store::{FallbackStore, StoreUrl};
use tracing::{debug, info, warn};

use crate::actuator::{CgroupActuator, ModeCell, Registry, WriteLog, write_limits};
use crate::config::{AgentConfig, Mode};
use crate::error::AgentError;
use crate::fingerprint::FingerprintCache;
use crate::identity::{CodeIdCache, exe_of_process};
use crate::ledger::{Adoption, Ledger};
use crate::log::DecisionLog;
use crate::registration::Registration;
use crate::sampler::Reading;
use crate::webhook::{WebhookSink, WebhookStats};

mod control;
mod policies;
mod support;

use policies::{Given, PolicyState, facts_of};
pub use policies::{PolicyChange, ReloadSummary};

pub use support::{apply_initial_limits, build_policy, decision_log_path, file_budget};
use support::{decensored, merge, offer_webhooks, own_cgroups, sleep_until};

/// The current time as a presage timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp::from_unix_ms(ms)
}

/// Where an agent keeps its state.
#[derive(Debug, Clone, PartialEq)]
pub enum Persistence {
    /// Profiles (`presage.db`), ledger, decision log and registrations under this
    /// directory.
    DataDir(PathBuf),
    /// Profiles under this directory, nothing else (a standalone `presage run`: its
    /// cgroup is removed at exit, so there is nothing to restore or register).
    ProfilesOnly(PathBuf),
    /// Nothing on disk.
    Ephemeral,
}

/// The profile store `url` names. If it cannot be opened or written (a read-only or
/// full disk, a database away), the agent keeps managing from memory and catches up when
/// it can: managing the workloads matters more than remembering them.
fn profile_store(url: StoreUrl) -> Box<dyn ProfileStore> {
    Box::new(FallbackStore::open(url))
}

/// What one agent tick did, beyond the engine's own report.
#[derive(Debug, Default)]
pub struct AgentTick {
    /// The engine's report (decisions are empty in observe mode).
    pub report: TickReport,
    /// Workloads adopted in this tick.
    pub adopted: Vec<WorkloadId>,
    /// Workloads released (gone or no longer discovered).
    pub released: Vec<WorkloadId>,
    /// Seconds from reading a workload's sample to its limit being written, per write.
    pub latencies_s: Vec<f64>,
    /// Problems met (sampling, adoption) that did not stop the tick.
    pub problems: Vec<String>,
}

/// An explicitly managed workload (a `presage run` child) rather than a discovered one.
#[derive(Debug, Clone)]
pub struct Explicit {
    /// The cgroup, relative to the hierarchy root.
    pub cgroup: String,
    /// What it is.
    pub key: WorkloadKey,
    /// Its policy.
    pub policy: WorkloadPolicy,
    /// Its executable's fingerprint (for a cold start from similar code).
    pub fingerprint: Option<Fingerprint>,
    /// Labels `[policies.match]` selectors can test (`presage run --label`).
    pub labels: BTreeMap<String, String>,
}

/// The engine, wired to cgroups.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    layout: Layout,
    engine: Engine,
    sampler: crate::sampler::Sampler,
    registry: Registry,
    writes: WriteLog,
    ledger: Ledger,
    log: Option<DecisionLog>,
    registrations: Option<PathBuf>,
    codes: CodeIdCache,
    fingerprints: FingerprintCache,
    explicit: BTreeSet<WorkloadId>,
    discover: bool,
    last_discovery: Option<Timestamp>,
    /// `Some(last retention pass)` when samples are kept in the store.
    history: Option<Option<Timestamp>>,
    pending_samples: Vec<Sample>,
    /// Delivers the response ladder's alerts, when a webhook URL is configured.
    webhook: Option<WebhookSink>,
    /// The mode the actuator reads; `config.mode` follows it.
    mode: ModeCell,
    /// Where the decision log goes once the mode records decisions.
    log_path: Option<PathBuf>,
    /// Which policy each workload has, and when the policies were loaded.
    policies: PolicyState,
}

/// Seconds between two retention passes: roll-ups cover whole minutes, so anything more
/// often only adds work.
const RETENTION_EVERY_S: f64 = 600.0;

/// The longest the loop sleeps between two looks at its hooks: an operator's command
/// waits at most this long.
const IDLE_NAP: Duration = Duration::from_millis(50);

/// What the run loop calls besides ticking.
pub trait LoopHooks {
    /// After each tick, with how long it took.
    fn on_tick(&mut self, agent: &mut Agent, tick: &AgentTick, took: Duration);
    /// Between ticks, at most every 50 ms.
    fn idle(&mut self, _agent: &mut Agent) {}
}

/// How long shutdown waits for queued webhook alerts to leave.
const WEBHOOK_GRACE: Duration = Duration::from_secs(3);

impl Agent {
    /// An agent with `config` (its mode, policy, discovery, paths), keeping state as
    /// `persistence` says. `discover` off means only [`Agent::adopt_explicit`] workloads
    /// are managed.
    pub fn new(
        config: AgentConfig,
        persistence: Persistence,
        discover: bool,
    ) -> Result<Agent, AgentError> {
        config.validate()?;
        let layout = Layout::detect_at(&config.cgroup_root, &config.mountinfo)?;
        let parts = build_policy(&config)?;
        presage_linux::hold_files_open(file_budget());
        let registry: Registry = Arc::new(Mutex::new(HashMap::new()));
        let writes: WriteLog = Arc::new(Mutex::new(Vec::new()));
        let mode = ModeCell::new(config.mode);
        let actuator = CgroupActuator::new(mode.clone(), registry.clone(), writes.clone());
        let engine_config = EngineConfig {
            horizons_s: config.horizons_s.clone(),
            decide_every_s: config.decide_every_s,
            default_policy: config.default_policy.clone(),
            record_executions: persistence != Persistence::Ephemeral,
            ..EngineConfig::default()
        };
        let store = match &persistence {
            Persistence::DataDir(dir) | Persistence::ProfilesOnly(dir) => {
                profile_store(match &config.store {
                    Some(_) => config.store_url()?,
                    None => StoreUrl::in_data_dir(dir),
                })
            }
            Persistence::Ephemeral => Box::new(MemoryStore::new()),
        };
        let mut builder = Engine::builder(parts.allocator)
            .config(engine_config)
            .store(store)
            .actuator(Box::new(actuator))
            .responder(Box::new(LadderResponder::new()));
        if let Some(f) = parts.forecaster {
            builder = builder.forecaster(f);
        }
        let engine = builder.build()?;
        let webhook = WebhookSink::start(&config.response)?;
        let log_path = match &persistence {
            Persistence::DataDir(dir) => Some(dir.join("decisions.jsonl")),
            _ => None,
        };
        let (ledger, log, registrations) = match &persistence {
            Persistence::DataDir(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
                    context: format!("creating data dir {}", dir.display()),
                    source,
                })?;
                let log = match config.mode {
                    Mode::Observe => None,
                    _ => Some(DecisionLog::open(&dir.join("decisions.jsonl"))?),
                };
                (
                    Ledger::open(&dir.join("adopted.json"))?,
                    log,
                    Some(dir.join("registrations")),
                )
            }
            Persistence::ProfilesOnly(_) | Persistence::Ephemeral => {
                (Ledger::ephemeral(), None, None)
            }
        };
        let proc_root = config.network.then(|| config.proc_root.clone());
        let config_record_samples = config.record_samples;
        let persistence_keeps = persistence != Persistence::Ephemeral;
        info!(mode = %config.mode, layout = ?layout.mode(), policy = %config.policy, "agent ready");
        Ok(Agent {
            sampler: crate::sampler::Sampler::new(proc_root),
            config,
            layout,
            engine,
            registry,
            writes,
            ledger,
            log,
            registrations,
            codes: CodeIdCache::default(),
            fingerprints: FingerprintCache::default(),
            explicit: BTreeSet::new(),
            discover,
            last_discovery: None,
            history: (config_record_samples && persistence_keeps).then_some(None),
            pending_samples: Vec::new(),
            webhook,
            mode,
            log_path,
            policies: PolicyState::loaded(now()),
        })
    }

    /// The webhook's delivery counters, when one is configured.
    pub fn webhook_stats(&self) -> Option<WebhookStats> {
        self.webhook.as_ref().map(WebhookSink::stats)
    }

    /// The host's cgroup layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The engine (for views of the managed workloads).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The settings.
    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Manages the cgroup of `explicit` from now on, whatever discovery says. Returns
    /// its id and whether a stored profile of its code was restored.
    pub fn adopt_explicit(&mut self, explicit: Explicit) -> Result<(WorkloadId, bool), AgentError> {
        let id = WorkloadId::new(&explicit.cgroup)?;
        let given = Given {
            key: explicit.key,
            policy: explicit.policy,
            labels: explicit.labels,
        };
        let restored = self.adopt(&explicit.cgroup, Some(given), explicit.fingerprint)?;
        self.explicit.insert(id.clone());
        Ok((id, restored))
    }

    /// One pass: discover (when due), sample, decide, actuate, record.
    pub fn tick(&mut self, now: Timestamp) -> AgentTick {
        let mut tick = AgentTick::default();
        if self.discover
            && self
                .last_discovery
                .is_none_or(|t| now.secs_since(t) >= f64::from(self.config.rediscover_every_s))
        {
            self.last_discovery = Some(now);
            self.rediscover(now, &mut tick);
        }
        self.refresh_windows(now);
        // One workload at a time, read → decide → write, so each limit lands within
        // milliseconds of its sample rather than after the whole host was read. (The
        // agent sets no node capacity, so no decision couples two workloads.)
        let mut report = TickReport {
            now,
            ..TickReport::default()
        };
        let mut gone = Vec::new();
        for i in 0..self.sampler.len() {
            match self.sampler.read(i, now) {
                Reading::Sample(sample, read_at) => {
                    let sample = self.decensor(&sample);
                    let one = self.engine.tick(now, std::slice::from_ref(&sample));
                    self.note_latency(read_at, &mut tick);
                    merge(&mut report, one);
                    if self.history.is_some() {
                        self.pending_samples.push(sample);
                    }
                }
                Reading::Gone(id) => gone.push(id),
                Reading::Failed(id, message) => {
                    tick.problems.push(format!("sampling {id}: {message}"));
                }
                Reading::Nothing => {}
            }
        }
        self.sampler.drop_gone(&gone);
        for id in &gone {
            self.release(id, now, &mut tick);
        }
        self.write_history(now, &mut tick);
        if let Some(sink) = &self.webhook {
            offer_webhooks(sink, &report, &mut tick.problems);
        }
        if self.config.mode == Mode::Observe {
            report.decisions.clear();
        } else if let Some(log) = self.log.as_mut()
            && let Err(e) = log.append(self.config.mode, &report.decisions)
        {
            tick.problems.push(e.to_string());
        }
        tick.report = report;
        tick
    }

    /// Writes the tick's samples in one transaction, and rolls old samples up now and
    /// then.
    fn write_history(&mut self, now: Timestamp, tick: &mut AgentTick) {
        let Some(last_retention) = self.history else {
            return;
        };
        if !self.pending_samples.is_empty() {
            let write = TickWrite {
                samples: &self.pending_samples,
                ..TickWrite::default()
            };
            if let Err(e) = self.engine.store_mut().record(write) {
                tick.problems.push(e.to_string());
            }
            self.pending_samples.clear();
        }
        if last_retention.is_none_or(|t| now.secs_since(t) >= RETENTION_EVERY_S) {
            self.history = Some(Some(now));
            let retention = self.config.retention;
            match self.engine.store_mut().apply_retention(now, &retention) {
                Ok(r) => debug!(?r, "sample retention"),
                Err(e) => tick.problems.push(e.to_string()),
            }
        }
    }

    /// Ticks every `interval_s` until `stop` is set; `hooks` see each tick and get the
    /// agent between ticks (every 50 ms at most) to serve operators' commands.
    pub fn run_until(&mut self, stop: &AtomicBool, hooks: &mut dyn LoopHooks) {
        let interval = Duration::from_secs_f64(self.config.interval_s);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let tick = self.tick(now());
            hooks.on_tick(self, &tick, started.elapsed());
            next += interval;
            let behind = Instant::now().saturating_duration_since(next);
            if behind > interval {
                // Fell behind (a stalled host): skip the missed ticks instead of bursting.
                next = Instant::now();
            }
            while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                hooks.idle(self);
                sleep_until(next.min(Instant::now() + IDLE_NAP), stop);
            }
        }
    }

    /// Stops managing: restores adopted limits (enforce mode, when `restore`), saves
    /// profiles, and forgets what was restored. Returns problems met.
    pub fn shutdown(&mut self, restore: bool) -> Vec<String> {
        let at = now();
        let mut problems = Vec::new();
        // Workloads that ended since the last tick have nothing to restore.
        let mut pruned = AgentTick::default();
        for id in self.sampler.round(at).gone {
            self.release(&id, at, &mut pruned);
        }
        problems.extend(pruned.problems);
        if self.config.mode == Mode::Enforce && restore {
            let (done, issues) = self.engine.restore_adopted_limits(at);
            info!(restored = done.len(), "restored adopted limits");
            if let Some(log) = self.log.as_mut()
                && let Err(e) = log.append(self.config.mode, &done)
            {
                problems.push(e.to_string());
            }
            problems.extend(issues.into_iter().map(|i| i.message));
        }
        if let Err(e) = self.engine.save_profiles(at) {
            problems.push(e.to_string());
        }
        // Restored, or told to keep presage's limits: either way the ledger has nothing
        // left to put back on the next start.
        let cgroups: Vec<String> = self.engine.workloads().map(|w| w.id.to_string()).collect();
        if let Err(e) = self.ledger.forget(cgroups.iter().map(String::as_str)) {
            problems.push(e.to_string());
        }
        if let Some(sink) = self.webhook.take() {
            // A short grace so the last alerts (a kill's, say) usually leave; a receiver
            // that is down does not hold the exit longer than this.
            let stats = sink.close(WEBHOOK_GRACE);
            info!(?stats, "webhook deliveries");
        }
        problems
    }

    /// After an OOM kill the working set reads what the survivors hold, not what the
    /// workload asked for: the kernel killed at the limit, so the interval's demand
    /// reached it. Reported that way, a live OOM reads as a trace's does (usage clamped
    /// at the limit), and the allocator repairs from the limit, not from the survivors.
    fn decensor(&self, sample: &Sample) -> Sample {
        let limit = self
            .engine
            .workload(sample.workload())
            .and_then(|w| w.limits.memory_max_bytes());
        let used = sample.usage().memory_bytes();
        match (limit, used) {
            (Some(limit), Some(used)) if sample.events().oom_kills > 0 && used < limit => {
                decensored(sample, limit).unwrap_or_else(|| sample.clone())
            }
            _ => sample.clone(),
        }
    }

    fn rediscover(&mut self, now: Timestamp, tick: &mut AgentTick) {
        let found = match presage_linux::discover(&self.layout, &self.config.discovery) {
            Ok(found) => found,
            Err(e) => {
                tick.problems.push(format!("discovery: {e}"));
                return;
            }
        };
        let own = own_cgroups(&self.config.proc_root);
        let found: BTreeSet<String> = found
            .into_iter()
            .map(|d| d.relative)
            .filter(|r| !own.contains(r))
            .collect();
        let managed: Vec<WorkloadId> = self.engine.workloads().map(|w| w.id.clone()).collect();
        for id in managed {
            if !found.contains(id.as_str()) && !self.explicit.contains(&id) {
                self.release(&id, now, tick);
            }
        }
        for cgroup in found {
            let known =
                WorkloadId::new(&cgroup).is_ok_and(|id| self.engine.workload(&id).is_some());
            if known {
                continue;
            }
            match self.adopt(&cgroup, None, None) {
                Ok(_) => tick.adopted.extend(WorkloadId::new(&cgroup).ok()),
                Err(e) => tick.problems.push(format!("adopting {cgroup}: {e}")),
            }
        }
    }

    fn adopt(
        &mut self,
        cgroup: &str,
        given: Option<Given>,
        fingerprint: Option<Fingerprint>,
    ) -> Result<bool, AgentError> {
        let id = WorkloadId::new(cgroup)?;
        let cg = Arc::new(Cgroup::open(&self.layout, cgroup)?);
        let current = cg.read_limits()?;
        let registered = self.registration(cgroup);
        let (key, own, labels) = match given.or(registered) {
            Some(g) => (g.key, Some(g.policy), g.labels),
            None => (self.key_of(cg.as_ref(), cgroup)?, None, BTreeMap::new()),
        };
        let facts = facts_of(cgroup, &key, labels);
        let (policy_name, policy) = self.resolve_policy(&facts, own.as_ref(), now());
        let fingerprint = fingerprint.or_else(|| self.fingerprint_of(cg.as_ref()));
        if let Some(fp) = &fingerprint
            && let Err(e) = self.engine.store_mut().save_fingerprint(key.code_id(), fp)
        {
            warn!(cgroup, error = %e, "could not save the code's fingerprint");
        }
        let original = match self.ledger.get(cgroup) {
            // Adopted before a crash: put back what the operator had, then start over
            // from there, so the engine's idea of the limits matches the kernel's.
            Some(before) => {
                let original = before.limits;
                if original != current && self.config.mode == Mode::Enforce {
                    write_limits(cg.as_ref(), &current, &original)?;
                    info!(
                        cgroup,
                        "re-adopted after a restart; restored its original limits"
                    );
                }
                original
            }
            None => {
                self.ledger.record(Adoption {
                    cgroup: cgroup.to_string(),
                    limits: current,
                    adopted_at: now(),
                    key: key.clone(),
                })?;
                current
            }
        };
        let restored = self.engine.adopt(WorkloadSpec {
            id: id.clone(),
            key,
            limits: original,
            policy,
            fingerprint,
        })?;
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), cg.clone());
        self.sampler.track(id.clone(), cg);
        self.note_assigned(id, facts, own, policy_name);
        Ok(restored)
    }

    /// Stops managing `id`, which ended with `exit_status`: saves its profile and records
    /// the run. Returns the problems met.
    pub fn end(&mut self, id: &WorkloadId, exit_status: Option<i32>) -> Vec<String> {
        let mut tick = AgentTick::default();
        self.release_with(id, now(), exit_status, &mut tick);
        tick.problems
    }

    fn release(&mut self, id: &WorkloadId, now: Timestamp, tick: &mut AgentTick) {
        self.release_with(id, now, None, tick);
    }

    fn release_with(
        &mut self,
        id: &WorkloadId,
        now: Timestamp,
        exit_status: Option<i32>,
        tick: &mut AgentTick,
    ) {
        self.sampler.untrack(id);
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        self.explicit.remove(id);
        self.forget_assigned(id);
        if let Err(e) = self.engine.end(id, now, exit_status) {
            tick.problems.push(format!("releasing {id}: {e}"));
        }
        if let Err(e) = self.ledger.forget([id.as_str()]) {
            tick.problems.push(e.to_string());
        }
        tick.released.push(id.clone());
    }

    /// The fingerprint of the cgroup's first process's executable, when readable.
    fn fingerprint_of(&mut self, cg: &Cgroup) -> Option<Fingerprint> {
        let pid = cg.processes().ok()??.first().copied()?;
        let exe = exe_of_process(&self.config.proc_root, pid)?;
        match self.fingerprints.fingerprint(&exe) {
            Ok(fp) => Some(fp),
            Err(e) => {
                debug!(pid, error = %e, "no fingerprint");
                None
            }
        }
    }

    fn key_of(&mut self, cg: &Cgroup, cgroup: &str) -> Result<WorkloadKey, AgentError> {
        let first = cg.processes()?.and_then(|p| p.first().copied());
        if let Some(key) =
            first.and_then(|pid| self.codes.key_of_process(&self.config.proc_root, pid))
        {
            return Ok(key);
        }
        // No readable process (empty, kernel threads): the path is all we know.
        Ok(WorkloadKey::for_code(format!("cgroup:{cgroup}"))?)
    }

    fn registration(&self, cgroup: &str) -> Option<Given> {
        let dir = self.registrations.as_ref()?;
        match Registration::read(dir, cgroup) {
            Ok(Some(r)) => Some(Given {
                key: r.key,
                policy: r.policy,
                labels: r.labels,
            }),
            Ok(None) => None,
            Err(e) => {
                warn!(cgroup, error = %e, "ignoring unreadable registration");
                None
            }
        }
    }

    fn note_latency(&self, read_at: Instant, tick: &mut AgentTick) {
        let writes =
            std::mem::take(&mut *self.writes.lock().unwrap_or_else(PoisonError::into_inner));
        for (_, written) in writes {
            tick.latencies_s
                .push(written.saturating_duration_since(read_at).as_secs_f64());
        }
    }
}
