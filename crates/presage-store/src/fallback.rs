//! A store that never stops the agent: when the database cannot be opened or written (a
//! full disk, a read-only file, a PostgreSQL server away), writes wait in memory and are
//! retried, and loads fall back to what this process saved.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use presage_core::{Alert, Decision, Fingerprint, Sample, Timestamp, WorkloadKey};
use presage_engine::{
    Execution, Prior, PriorSource, Profile, ProfileStore, ResponseEvent, Retention,
    RetentionReport, StoreError, TickWrite,
};
use tracing::{info, warn};

use crate::{AdminStore, StoreUrl, open};

/// How long to wait between attempts to reach a store that failed.
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// Samples kept in memory while the store is away; older ticks are dropped beyond it
/// (an hour of 100 workloads at 1 Hz): history is worth less than the agent's memory.
const MAX_PENDING_SAMPLES: usize = 360_000;

#[derive(Debug, Default)]
struct OwnedTick {
    samples: Vec<Sample>,
    decisions: Vec<Decision>,
    alerts: Vec<Alert>,
    responses: Vec<ResponseEvent>,
}

/// Writes that have not reached the store yet.
#[derive(Debug, Default)]
struct Pending {
    profiles: BTreeMap<WorkloadKey, Profile>,
    ticks: VecDeque<OwnedTick>,
    samples: usize,
    executions: Vec<Execution>,
    fingerprints: BTreeMap<String, Fingerprint>,
    dropped_samples: u64,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.profiles.is_empty()
            && self.ticks.is_empty()
            && self.executions.is_empty()
            && self.fingerprints.is_empty()
    }

    fn push_tick(&mut self, tick: TickWrite<'_>) {
        self.samples += tick.samples.len();
        self.ticks.push_back(OwnedTick {
            samples: tick.samples.to_vec(),
            decisions: tick.decisions.to_vec(),
            alerts: tick.alerts.to_vec(),
            responses: tick.responses.to_vec(),
        });
        while self.samples > MAX_PENDING_SAMPLES {
            let Some(old) = self.ticks.front_mut() else {
                break;
            };
            // Keep the oldest tick's audit rows: decisions are the record of what was
            // done to a workload and are small.
            let n = old.samples.len();
            old.samples.clear();
            self.samples -= n;
            self.dropped_samples += n as u64;
            if old.decisions.is_empty() && old.alerts.is_empty() && old.responses.is_empty() {
                self.ticks.pop_front();
            }
            if n == 0 {
                break;
            }
        }
    }
}

/// The store at a URL, or memory while it cannot be reached.
#[derive(Debug)]
pub struct FallbackStore {
    url: StoreUrl,
    inner: Option<Box<dyn AdminStore>>,
    pending: Pending,
    /// Everything this process saved, so a workload released and re-adopted while the
    /// store is away still starts from its profile.
    saved: BTreeMap<WorkloadKey, Profile>,
    next_attempt: Instant,
    retry_every: Duration,
    failing: Option<String>,
}

impl FallbackStore {
    /// Opens the store at `url`; when it cannot be opened, starts in memory and keeps
    /// trying.
    pub fn open(url: StoreUrl) -> FallbackStore {
        FallbackStore::with_retry(url, RETRY_EVERY)
    }

    /// [`FallbackStore::open`], retrying a failed store every `retry_every`.
    pub fn with_retry(url: StoreUrl, retry_every: Duration) -> FallbackStore {
        let mut store = FallbackStore {
            url,
            inner: None,
            pending: Pending::default(),
            saved: BTreeMap::new(),
            next_attempt: Instant::now(),
            retry_every,
            failing: None,
        };
        store.reach();
        store
    }

    /// Whether writes are reaching the store right now.
    pub fn is_connected(&self) -> bool {
        self.inner.is_some() && self.failing.is_none()
    }

    /// The latest failure, while the store is failing.
    pub fn last_error(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// Samples dropped because the store was away too long.
    pub fn dropped_samples(&self) -> u64 {
        self.pending.dropped_samples
    }

    /// The store's description (its URL).
    pub fn describe(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(|| format!("{:?} (unreachable)", self.url), |s| s.describe())
    }

    /// Opens the store if it is not open and the retry delay has passed.
    fn reach(&mut self) -> bool {
        if self.inner.is_some() {
            return true;
        }
        if Instant::now() < self.next_attempt {
            return false;
        }
        match open(&self.url) {
            Ok(store) => {
                info!(store = %store.describe(), "profile store open");
                self.inner = Some(store);
                true
            }
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    fn fail(&mut self, e: &StoreError) {
        let message = e.to_string();
        if self.failing.as_deref() != Some(message.as_str()) {
            warn!(error = %message, "profile store unavailable; keeping writes in memory and retrying");
        }
        self.failing = Some(message);
        self.next_attempt = Instant::now() + self.retry_every;
    }

    /// Writes everything pending, oldest first; stops at the first failure.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        if self.failing.is_some() && Instant::now() < self.next_attempt {
            return false;
        }
        let Some(store) = self.inner.as_mut() else {
            return false;
        };
        let result = flush_into(store.as_mut(), &mut self.pending);
        match result {
            Ok(()) => {
                if self.failing.take().is_some() {
                    info!("profile store reachable again; caught up");
                }
                true
            }
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }
}

fn flush_into(store: &mut dyn AdminStore, p: &mut Pending) -> Result<(), StoreError> {
    if !p.profiles.is_empty() {
        let all: Vec<Profile> = p.profiles.values().cloned().collect();
        store.save(&all)?;
        p.profiles.clear();
    }
    for (code_id, fp) in &p.fingerprints {
        store.save_fingerprint(code_id, fp)?;
    }
    p.fingerprints.clear();
    while let Some(tick) = p.ticks.front() {
        store.record(TickWrite {
            samples: &tick.samples,
            decisions: &tick.decisions,
            alerts: &tick.alerts,
            responses: &tick.responses,
        })?;
        p.samples -= tick.samples.len();
        p.ticks.pop_front();
    }
    while let Some(e) = p.executions.first() {
        store.record_execution(e)?;
        p.executions.remove(0);
    }
    Ok(())
}

impl ProfileStore for FallbackStore {
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError> {
        if let Some(profile) = self.saved.get(key) {
            return Ok(Some(profile.clone()));
        }
        if !self.reach() {
            return Ok(None);
        }
        let Some(store) = self.inner.as_mut() else {
            return Ok(None);
        };
        // Only the key itself: a prior would also search earlier versions and
        // fingerprints for a caller that wants none of them.
        match store.load(key) {
            Ok(profile) => Ok(profile),
            Err(e) => {
                self.fail(&e);
                Ok(None)
            }
        }
    }

    fn load_prior(
        &mut self,
        key: &WorkloadKey,
        fingerprint: Option<&Fingerprint>,
    ) -> Result<Option<Prior>, StoreError> {
        if let Some(profile) = self.saved.get(key) {
            return Ok(Some(Prior {
                profile: profile.clone(),
                source: PriorSource::Exact,
            }));
        }
        if !self.reach() {
            return Ok(None);
        }
        let Some(store) = self.inner.as_mut() else {
            return Ok(None);
        };
        match store.load_prior(key, fingerprint) {
            Ok(prior) => Ok(prior),
            Err(e) => {
                // A failing read is not a reason to refuse a workload: it starts cold.
                self.fail(&e);
                Ok(None)
            }
        }
    }

    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        for p in profiles {
            self.saved.insert(p.key.clone(), p.clone());
            self.pending.profiles.insert(p.key.clone(), p.clone());
        }
        self.reach();
        self.flush();
        Ok(())
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        if tick.is_empty() {
            return Ok(());
        }
        if self.reach()
            && self.flush()
            && let Some(store) = self.inner.as_mut()
        {
            match store.record(tick) {
                Ok(()) => return Ok(()),
                Err(e) => self.fail(&e),
            }
        }
        self.pending.push_tick(tick);
        Ok(())
    }

    fn save_fingerprint(&mut self, code_id: &str, fp: &Fingerprint) -> Result<(), StoreError> {
        self.pending
            .fingerprints
            .insert(code_id.to_owned(), fp.clone());
        self.reach();
        self.flush();
        Ok(())
    }

    fn record_execution(&mut self, execution: &Execution) -> Result<(), StoreError> {
        self.pending.executions.push(execution.clone());
        self.reach();
        self.flush();
        Ok(())
    }

    fn apply_retention(
        &mut self,
        now: Timestamp,
        retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        if !(self.reach() && self.flush()) {
            return Ok(RetentionReport::default());
        }
        let Some(store) = self.inner.as_mut() else {
            return Ok(RetentionReport::default());
        };
        match store.apply_retention(now, retention) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.fail(&e);
                Ok(RetentionReport::default())
            }
        }
    }
}
