use std::collections::HashMap;
use std::sync::Arc;

use presage_core::{
    Decision, Limits, Reason, ResourceMap, Sample, Timestamp, WorkloadId, WorkloadKey,
};
use presage_forecast::ForecasterFactory;
use presage_policy::capacity::NodeCapacity;
use presage_policy::{
    AllocatorFactory, BehaviorConfig, BehaviorScore, BudgetTracker, PolicyError, WorkloadPolicy,
};
use thiserror::Error;
use tracing::{debug, warn};

use crate::execution::RunTally;
use crate::fit;
use crate::profile::{prior_weight, profile_of, weakened};
use crate::step::{self, StepContext};
use crate::workload::Managed;
use crate::{
    Actuator, Issue, MemoryStore, PriorSource, Profile, ProfileStore, RecordOnly, Responder,
    Source, SourceError, StoreError, TickReport, TickWrite, WorkloadSpec, WorkloadView,
};

/// Settings of the control loop.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Horizons, in seconds, that forecasts are made for (positive, increasing).
    pub horizons_s: Vec<u32>,
    /// Seconds between allocation decisions for a workload (0: every tick). Starvation
    /// (an OOM kill, throttling) triggers a decision at once regardless.
    pub decide_every_s: u32,
    /// Seconds between a decision and the moment it takes effect; decisions look past it.
    pub actuation_delay_s: u32,
    /// Behavioural score settings.
    pub behavior: BehaviorConfig,
    /// Behavioural score at or above which a sample outside its forecast raises an
    /// `OutsideEnvelope` alert (`None`, the default: the score is reported, not alerted
    /// on). The score moves on single samples, so while a periodic workload is still
    /// being learnt its peaks push it up; the anomaly scorer (`WorkloadPolicy::anomaly`),
    /// which averages the excess, waits out a warm-up and tests trends, is what alerts.
    pub behavior_alert_score: Option<f64>,
    /// Seconds between profile saves (`None`: only when asked or on release).
    pub save_every_s: Option<u32>,
    /// Policy for workloads the engine first meets through a sample.
    pub default_policy: WorkloadPolicy,
    /// The node's capacity: when set, guaranteed allocations are fitted into it each
    /// tick (weighted max-min) and a shortfall raises a capacity request.
    pub node_capacity: NodeCapacity,
    /// Write every accepted sample to the store with its tick's decisions (a harness that
    /// ticks once per batch; the agent, which ticks per workload, batches samples itself).
    /// The simulator replays its samples from the trace and leaves it off.
    pub record_samples: bool,
    /// Record every released workload's run in the executions table (runs ended with an
    /// exit status always are).
    pub record_executions: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            horizons_s: vec![60, 300, 900],
            decide_every_s: 0,
            actuation_delay_s: 0,
            behavior: BehaviorConfig::default(),
            behavior_alert_score: None,
            save_every_s: Some(300),
            default_policy: WorkloadPolicy::default(),
            node_capacity: NodeCapacity::default(),
            record_samples: false,
            record_executions: false,
        }
    }
}

/// Why the engine refused a request.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A workload's policy is invalid.
    #[error("workload {workload}: {source}")]
    InvalidPolicy {
        /// The workload.
        workload: WorkloadId,
        /// What is wrong with the policy.
        source: PolicyError,
    },
    /// The engine's settings are invalid.
    #[error("engine setting {field}: {reason}")]
    InvalidConfig {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The workload is already managed.
    #[error("workload {0} is already managed")]
    AlreadyManaged(WorkloadId),
    /// The profile store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds an [`Engine`]; only the allocation rule is required.
#[derive(Debug)]
pub struct EngineBuilder {
    config: EngineConfig,
    forecaster: Option<Arc<dyn ForecasterFactory>>,
    allocator: Arc<dyn AllocatorFactory>,
    actuator: Option<Box<dyn Actuator>>,
    store: Box<dyn ProfileStore>,
    responder: Box<dyn Responder>,
}

impl EngineBuilder {
    /// The loop's settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The forecasting model (ignored if the allocator does not read forecasts).
    pub fn forecaster(mut self, factory: Arc<dyn ForecasterFactory>) -> Self {
        self.forecaster = Some(factory);
        self
    }

    /// Where decisions are applied (required).
    pub fn actuator(mut self, actuator: Box<dyn Actuator>) -> Self {
        self.actuator = Some(actuator);
        self
    }

    /// Where profiles and the audit trail go (default: in memory).
    pub fn store(mut self, store: Box<dyn ProfileStore>) -> Self {
        self.store = store;
        self
    }

    /// What to do about alerts (default: record them).
    pub fn responder(mut self, responder: Box<dyn Responder>) -> Self {
        self.responder = responder;
        self
    }

    /// The engine, once the settings check out.
    pub fn build(self) -> Result<Engine, EngineError> {
        let config = self.config;
        if config.horizons_s.is_empty() || config.horizons_s.windows(2).any(|w| w[0] >= w[1]) {
            return Err(EngineError::InvalidConfig {
                field: "horizons_s",
                reason: format!("{:?} must be non-empty and increasing", config.horizons_s),
            });
        }
        if config.horizons_s[0] == 0 {
            return Err(EngineError::InvalidConfig {
                field: "horizons_s",
                reason: "horizons must be positive".into(),
            });
        }
        config
            .default_policy
            .validate()
            .map_err(|e| EngineError::InvalidConfig {
                field: "default_policy",
                reason: e.to_string(),
            })?;
        let actuator = self.actuator.ok_or_else(|| EngineError::InvalidConfig {
            field: "actuator",
            reason: "an engine needs an actuator".into(),
        })?;
        let forecaster = self.forecaster.filter(|_| self.allocator.uses_forecast());
        Ok(Engine {
            config,
            forecaster,
            allocator: self.allocator,
            actuator,
            store: self.store,
            responder: self.responder,
            workloads: Vec::new(),
            index: HashMap::new(),
            touched: Vec::new(),
            accepted: Vec::new(),
            last_save: None,
            cursor: 0,
        })
    }
}

/// The control loop. See the crate documentation.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    forecaster: Option<Arc<dyn ForecasterFactory>>,
    allocator: Arc<dyn AllocatorFactory>,
    actuator: Box<dyn Actuator>,
    store: Box<dyn ProfileStore>,
    responder: Box<dyn Responder>,
    workloads: Vec<Managed>,
    index: HashMap<WorkloadId, usize>,
    touched: Vec<usize>,
    /// This tick's accepted samples, when they are recorded.
    accepted: Vec<Sample>,
    last_save: Option<Timestamp>,
    /// Where the previous sample's workload sat: sources deliver workloads in a stable
    /// order, so the next sample usually belongs to the next slot and the hash lookup
    /// can be skipped.
    cursor: usize,
}

impl Engine {
    /// Starts building an engine that allocates with `allocator`.
    pub fn builder(allocator: Arc<dyn AllocatorFactory>) -> EngineBuilder {
        EngineBuilder {
            config: EngineConfig::default(),
            forecaster: None,
            allocator,
            actuator: None,
            store: Box::new(MemoryStore::new()),
            responder: Box::new(RecordOnly),
        }
    }

    /// The loop's settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The profile store (for the harness's own writes: fingerprints, retention).
    pub fn store_mut(&mut self) -> &mut dyn ProfileStore {
        self.store.as_mut()
    }

    /// The allocation rule's name.
    pub fn allocator_name(&self) -> &'static str {
        self.allocator.name()
    }

    /// Starts managing a workload. Its forecaster starts from the best prior the store
    /// has for its key (its own profile, else an earlier version's, else the nearest
    /// known code's by fingerprint — the last two weakened, see [`prior_weight`]); a
    /// corrupt or foreign profile is logged and ignored. Returns whether a profile was
    /// restored.
    pub fn adopt(&mut self, spec: WorkloadSpec) -> Result<bool, EngineError> {
        if self.index.contains_key(&spec.id) {
            return Err(EngineError::AlreadyManaged(spec.id));
        }
        spec.policy
            .validate()
            .map_err(|source| EngineError::InvalidPolicy {
                workload: spec.id.clone(),
                source,
            })?;
        let prior = self
            .store
            .load_prior(&spec.key, spec.fingerprint.as_ref())?;
        let weight = prior.as_ref().map_or(1.0, |p| prior_weight(&p.source));
        let mut restored = false;
        let forecaster = self.forecaster.as_ref().map(|factory| {
            let saved = prior
                .as_ref()
                .and_then(|p| p.profile.model.as_ref())
                .map(|state| weakened(state, weight));
            match saved.map(|state| factory.restore(&state)) {
                Some(Ok(f)) => {
                    restored = true;
                    f
                }
                Some(Err(e)) => {
                    warn!(workload = %spec.id, key = %spec.key, error = %e, "stored profile not usable; starting fresh");
                    factory.create()
                }
                None => factory.create(),
            }
        });
        let own = prior
            .as_ref()
            .filter(|p| p.source == PriorSource::Exact)
            .map(|p| &p.profile);
        let profile_samples = prior.as_ref().map_or(0, |p| {
            // Truncation is fine: the count only gates warm-up and confidence.
            (p.profile.samples as f64 * weight) as u64
        });
        let managed = Managed {
            limits: spec.limits,
            allocator: self.allocator.create(&spec.id, &spec.limits),
            forecaster,
            forecast: None,
            score: BehaviorScore::default(),
            anomaly: crate::anomaly::AnomalyState::default(),
            last_sample: None,
            last_decision_at: None,
            samples: 0,
            profile_version: own.map_or(0, |p| p.version),
            profile_samples,
            touched: false,
            budget: spec.policy.budget.map(BudgetTracker::new),
            run: RunTally::new(restored.then(|| prior.map(|p| p.source)).flatten()),
            response_cap: None,
            frozen: None,
            override_hold: None,
            spec,
        };
        debug!(workload = %managed.spec.id, restored, "adopted");
        self.index
            .insert(managed.spec.id.clone(), self.workloads.len());
        self.workloads.push(managed);
        Ok(restored)
    }

    /// Stops managing a workload (it ended, or was excluded) after saving its profile.
    /// Returns the spec it was adopted with.
    pub fn release(
        &mut self,
        id: &WorkloadId,
        now: Timestamp,
    ) -> Result<Option<WorkloadSpec>, EngineError> {
        self.end(id, now, None)
    }

    /// [`Engine::release`] for a workload that ended with `exit_status`: also records
    /// the run (peaks, totals, how good its prior was) in the executions table.
    pub fn end(
        &mut self,
        id: &WorkloadId,
        now: Timestamp,
        exit_status: Option<i32>,
    ) -> Result<Option<WorkloadSpec>, EngineError> {
        let Some(idx) = self.index.remove(id) else {
            return Ok(None);
        };
        let managed = self.workloads.swap_remove(idx);
        self.responder.forget(id);
        if let Some(moved) = self.workloads.get(idx) {
            self.index.insert(moved.spec.id.clone(), idx);
        }
        if let Some(profile) = profile_of(&managed, now) {
            self.store.save(&[profile])?;
        }
        let Managed { spec, run, .. } = managed;
        if self.config.record_executions || exit_status.is_some() {
            let execution = run.finish(spec.id.clone(), spec.key.clone(), now, exit_status);
            self.store.record_execution(&execution)?;
        }
        Ok(Some(spec))
    }

    /// Holds `limits` on `id` until `until` against the allocator (an operator's manual
    /// override), from its next sample on. The safety rules still bound them: the
    /// policy's [min, max], the budget, the memory floor above usage. `None` ends an
    /// override. Returns whether the workload is managed.
    pub fn set_override(&mut self, id: &WorkloadId, hold: Option<(Limits, Timestamp)>) -> bool {
        match self.index.get(id) {
            Some(&i) => {
                let w = &mut self.workloads[i];
                w.override_hold = hold;
                // The next sample decides at once, whatever the cadence.
                w.last_decision_at = None;
                true
            }
            None => false,
        }
    }

    /// Replaces the policy of `id` (a policy reload, a time window opening or closing).
    /// Returns whether the workload is managed.
    pub fn set_policy(&mut self, id: &WorkloadId, policy: WorkloadPolicy) -> bool {
        match self.index.get(id) {
            Some(&i) => {
                let w = &mut self.workloads[i];
                if w.spec.policy != policy {
                    w.spec.policy = policy;
                    w.last_decision_at = None;
                }
                true
            }
            None => false,
        }
    }

    /// The managed workloads.
    pub fn workloads(&self) -> impl Iterator<Item = WorkloadView<'_>> {
        self.workloads.iter().map(Managed::view)
    }

    /// One managed workload.
    pub fn workload(&self, id: &WorkloadId) -> Option<WorkloadView<'_>> {
        self.index.get(id).map(|&i| self.workloads[i].view())
    }

    /// Runs one pass of the loop over the samples observed up to `now`. Samples dated after
    /// `now`, or not newer than their workload's previous sample, are refused and counted.
    /// Samples of unknown workloads adopt them with the default policy.
    pub fn tick(&mut self, now: Timestamp, samples: &[Sample]) -> TickReport {
        let mut report = TickReport {
            now,
            ..TickReport::default()
        };
        self.touched.clear();
        for sample in samples {
            self.observe(now, sample, &mut report);
        }
        let touched = std::mem::take(&mut self.touched);
        self.step_all(&touched, now, &mut report);
        for &idx in &touched {
            self.workloads[idx].touched = false;
        }
        self.touched = touched;
        let accepted = std::mem::take(&mut self.accepted);
        let write = TickWrite {
            samples: &accepted,
            decisions: &report.decisions,
            alerts: &report.alerts,
            responses: &report.responses,
        };
        let failed = if write.is_empty() {
            None
        } else {
            self.store.record(write).err()
        };
        self.accepted = accepted;
        self.accepted.clear();
        if let Some(e) = failed {
            report.issues.push(Issue {
                workload: None,
                message: e.to_string(),
            });
        }
        if let Some(every) = self.config.save_every_s
            && self
                .last_save
                .is_none_or(|t| now.secs_since(t) >= f64::from(every))
        {
            self.last_save = Some(now);
            if let Err(e) = self.save_profiles(now) {
                report.issues.push(Issue {
                    workload: None,
                    message: e.to_string(),
                });
            }
        }
        report
    }

    /// Drives the loop from `source` until it is exhausted, calling `on_tick` after each
    /// tick. Stops at the first source error.
    pub fn run(
        &mut self,
        source: &mut dyn Source,
        mut on_tick: impl FnMut(&Engine, &TickReport),
    ) -> Result<u64, SourceError> {
        let mut ticks = 0;
        while let Some(batch) = source.next_batch() {
            let batch = batch?;
            let report = self.tick(batch.now, &batch.samples);
            on_tick(self, &report);
            ticks += 1;
        }
        Ok(ticks)
    }

    /// Saves every workload's profile now. Returns how many were saved.
    pub fn save_profiles(&mut self, now: Timestamp) -> Result<usize, StoreError> {
        let profiles: Vec<Profile> = self
            .workloads
            .iter_mut()
            .filter_map(|w| {
                let p = profile_of(w, now)?;
                w.profile_version = p.version;
                Some(p)
            })
            .collect();
        self.store.save(&profiles)?;
        Ok(profiles.len())
    }

    /// Puts every workload back to the limits it had when adopted (the agent's shutdown
    /// path). Returns the decisions applied and the problems met.
    pub fn restore_adopted_limits(&mut self, now: Timestamp) -> (Vec<Decision>, Vec<Issue>) {
        let mut done = Vec::new();
        let mut issues = Vec::new();
        for w in &mut self.workloads {
            if w.limits == w.spec.limits {
                continue;
            }
            let decision = Decision {
                workload: w.spec.id.clone(),
                at: now,
                old: w.limits,
                new: w.spec.limits,
                reason: Reason::Restore,
                risk: ResourceMap::none(),
                model: "restore".into(),
                behavior_score: Some(w.score.value()),
            };
            match self.actuator.apply(&decision) {
                Ok(applied) => {
                    w.limits = applied;
                    done.push(decision);
                }
                Err(e) => issues.push(Issue {
                    workload: Some(w.spec.id.clone()),
                    message: e.to_string(),
                }),
            }
        }
        (done, issues)
    }

    fn observe(&mut self, now: Timestamp, sample: &Sample, report: &mut TickReport) {
        if sample.at() > now {
            report.samples_from_future += 1;
            return;
        }
        let idx = match self.find(sample.workload()) {
            Some(idx) => idx,
            None => match self.adopt_default(sample.workload().clone()) {
                Ok(idx) => {
                    report.adopted.push(sample.workload().clone());
                    idx
                }
                Err(e) => {
                    report.issues.push(Issue {
                        workload: Some(sample.workload().clone()),
                        message: e.to_string(),
                    });
                    return;
                }
            },
        };
        let w = &mut self.workloads[idx];
        if w.last_sample
            .as_ref()
            .is_some_and(|prev| sample.at() <= prev.at())
        {
            report.samples_out_of_order += 1;
            return;
        }
        // Before the forecaster learns from it: the tally asks the prior what it expected.
        let first_horizon = self.config.horizons_s.first().copied().unwrap_or(60);
        w.run
            .observe(sample, w.forecaster.as_deref(), first_horizon);
        if let Some(f) = w.forecaster.as_mut() {
            f.observe(sample);
        }
        w.allocator.observe(sample, &w.limits);
        if let Some(budget) = w.budget.as_mut() {
            budget.observe(sample);
        }
        if self.config.record_samples {
            self.accepted.push(sample.clone());
        }
        w.last_sample = Some(sample.clone());
        w.samples += 1;
        report.samples_used += 1;
        if !w.touched {
            w.touched = true;
            self.touched.push(idx);
        }
    }

    fn find(&mut self, id: &WorkloadId) -> Option<usize> {
        for guess in [self.cursor, self.cursor + 1] {
            if let Some(w) = self.workloads.get(guess)
                && (w.spec.id.same_instance(id) || w.spec.id == *id)
            {
                self.cursor = guess;
                return Some(guess);
            }
        }
        let idx = *self.index.get(id)?;
        self.cursor = idx;
        Some(idx)
    }

    fn adopt_default(&mut self, id: WorkloadId) -> Result<usize, EngineError> {
        let key = WorkloadKey::for_code(id.as_str()).map_err(|e| EngineError::InvalidConfig {
            field: "workload id",
            reason: e.to_string(),
        })?;
        self.adopt(WorkloadSpec {
            id,
            key,
            limits: Limits::unlimited(),
            policy: self.config.default_policy.clone(),
            fingerprint: None,
        })?;
        Ok(self.workloads.len() - 1)
    }

    /// Plan every touched workload (forecast → allocate → safety rules), fit the plans
    /// into the node when its capacity is known, then actuate → score → respond.
    fn step_all(&mut self, touched: &[usize], now: Timestamp, report: &mut TickReport) {
        let mut cx = StepContext {
            now,
            horizon_s: self.decision_horizon_s(),
            config: &self.config,
            actuator: self.actuator.as_mut(),
            responder: self.responder.as_mut(),
        };
        if !cx.config.node_capacity.is_set() {
            // The common case: nothing couples the workloads, so each goes start to end.
            for &idx in touched {
                let plan = step::plan(&mut self.workloads[idx], &cx);
                step::finish(&mut self.workloads[idx], plan, &mut cx, report);
            }
            return;
        }
        let mut plans: Vec<Option<step::Plan>> = (0..self.workloads.len()).map(|_| None).collect();
        for &idx in touched {
            plans[idx] = Some(step::plan(&mut self.workloads[idx], &cx));
        }
        fit::fit_node(
            &self.workloads,
            &mut plans,
            &cx.config.node_capacity,
            now,
            report,
        );
        for (idx, plan) in plans.into_iter().enumerate() {
            let Some(plan) = plan else { continue };
            if self.workloads[idx].touched {
                step::finish(&mut self.workloads[idx], plan, &mut cx, report);
            } else {
                // Cut to fit, without a sample of its own this tick: apply only.
                step::apply_only(&mut self.workloads[idx], plan, &mut cx, report);
            }
        }
    }

    fn decision_horizon_s(&self) -> u32 {
        let first = self.config.horizons_s.first().copied().unwrap_or(1);
        self.config.decide_every_s.max(first) + self.config.actuation_delay_s
    }
}
