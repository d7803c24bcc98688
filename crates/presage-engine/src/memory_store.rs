use std::collections::HashMap;

use presage_core::{Alert, Decision, WorkloadKey};

use crate::{Profile, ProfileStore, ResponseEvent, StoreError, TickWrite};

/// A profile store in memory: for the simulator and tests, and as the agent's fallback when
/// its database cannot be written.
#[derive(Debug, Default)]
pub struct MemoryStore {
    profiles: HashMap<WorkloadKey, Profile>,
    decisions: Vec<Decision>,
    alerts: Vec<Alert>,
    responses: Vec<ResponseEvent>,
    keep_audit: bool,
}

impl MemoryStore {
    /// A store that keeps profiles only (the simulator's choice: audit trails of millions
    /// of decisions are not worth the memory).
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store that also keeps every decision, alert and response.
    pub fn with_audit() -> Self {
        MemoryStore {
            keep_audit: true,
            ..MemoryStore::default()
        }
    }

    /// The recorded decisions (empty unless built [`MemoryStore::with_audit`]).
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// The recorded alerts (empty unless built [`MemoryStore::with_audit`]).
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// The recorded responses (empty unless built [`MemoryStore::with_audit`]).
    pub fn responses(&self) -> &[ResponseEvent] {
        &self.responses
    }

    /// Every stored profile.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }
}

impl ProfileStore for MemoryStore {
    fn load(&mut self, key: &WorkloadKey) -> Result<Option<Profile>, StoreError> {
        Ok(self.profiles.get(key).cloned())
    }

    fn save(&mut self, profiles: &[Profile]) -> Result<(), StoreError> {
        for p in profiles {
            self.profiles.insert(p.key.clone(), p.clone());
        }
        Ok(())
    }

    fn record(&mut self, tick: TickWrite<'_>) -> Result<(), StoreError> {
        // Samples are not kept: the simulator replays them from the trace.
        if self.keep_audit {
            self.decisions.extend_from_slice(tick.decisions);
            self.alerts.extend_from_slice(tick.alerts);
            self.responses.extend_from_slice(tick.responses);
        }
        Ok(())
    }
}
