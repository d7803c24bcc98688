//! The agent's side of `[[policies]]`: which policy each managed workload has, time
//! windows opening and closing, and reloading the policies without a restart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use presage_core::{Timestamp, WorkloadId, WorkloadKey};
use presage_linux::WorkloadKind;
use presage_policy::WorkloadPolicy;
use serde::Serialize;
use tracing::{info, warn};

use super::{Agent, now};
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::policies::{self, WorkloadFacts};

/// Seconds between two checks of the time windows: a window opens within this long of
/// its hour, and the check costs one selector walk per workload.
pub(super) const WINDOW_CHECK_S: f64 = 10.0;

/// What the agent knows about the policies in force.
#[derive(Debug, Default)]
pub(super) struct PolicyState {
    assigned: HashMap<WorkloadId, Assigned>,
    loaded_at_ms: i64,
    last_error: Option<String>,
    last_window_check: Option<Timestamp>,
}

impl PolicyState {
    pub(super) fn loaded(at: Timestamp) -> PolicyState {
        PolicyState {
            loaded_at_ms: at.unix_ms(),
            ..PolicyState::default()
        }
    }
}

/// One managed workload's policy inputs and the name of the policy it has.
#[derive(Debug)]
struct Assigned {
    facts: WorkloadFacts,
    /// The policy of its registration (or explicit adoption), if it came with one.
    own: Option<WorkloadPolicy>,
    name: String,
}

/// What a workload brought to its adoption besides its cgroup.
#[derive(Debug, Clone)]
pub(crate) struct Given {
    pub key: WorkloadKey,
    pub policy: WorkloadPolicy,
    pub labels: BTreeMap<String, String>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReloadSummary {
    /// The file read (`None`: embedded defaults or a config built in code).
    pub source: Option<String>,
    /// The policies now in force, in match order (`default` last).
    pub policies: Vec<String>,
    /// Workloads whose policy changed.
    pub changed: Vec<PolicyChange>,
    /// Settings that differ in the new config but take a restart to change; they keep
    /// their running values.
    pub ignored: Vec<String>,
}

/// One workload's policy change on reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyChange {
    /// The workload (its cgroup).
    pub workload: String,
    /// The policy it had.
    pub from: String,
    /// The policy it has now.
    pub to: String,
}

/// The label `kind` discovery would give `cgroup`; `None` when the path says nothing.
fn kind_label(cgroup: &str) -> Option<&'static str> {
    match WorkloadKind::classify(cgroup) {
        WorkloadKind::Presage => Some("presage"),
        WorkloadKind::Service => Some("service"),
        WorkloadKind::Scope => Some("scope"),
        WorkloadKind::Container => Some("container"),
        WorkloadKind::Vm => Some("vm"),
        WorkloadKind::Other => None,
    }
}

/// What selectors see of a workload. The automatic `kind` label wins over a registered
/// one: it is a fact of the path, and a user must not pose as a service to get its
/// policy.
pub(super) fn facts_of(
    cgroup: &str,
    key: &WorkloadKey,
    mut labels: BTreeMap<String, String>,
) -> WorkloadFacts {
    if let Some(kind) = kind_label(cgroup) {
        labels.insert("kind".to_string(), kind.to_string());
    }
    WorkloadFacts {
        cgroup: cgroup.to_string(),
        user: key.user().to_string(),
        code_id: key.code_id().to_string(),
        labels,
    }
}

impl Agent {
    /// The name and policy `facts` get now under the current config.
    pub(super) fn resolve_policy(
        &self,
        facts: &WorkloadFacts,
        own: Option<&WorkloadPolicy>,
        at: Timestamp,
    ) -> (String, WorkloadPolicy) {
        policies::resolve(
            &self.config.policies,
            &self.config.default_policy,
            facts,
            own,
            at,
        )
    }

    /// Remembers what chose the policy of a newly adopted workload.
    pub(super) fn note_assigned(
        &mut self,
        id: WorkloadId,
        facts: WorkloadFacts,
        own: Option<WorkloadPolicy>,
        name: String,
    ) {
        self.policies
            .assigned
            .insert(id, Assigned { facts, own, name });
    }

    /// Forgets a released workload.
    pub(super) fn forget_assigned(&mut self, id: &WorkloadId) {
        self.policies.assigned.remove(id);
    }

    /// The name of the policy in force for `id`: a `[[policies]]` name (`name@window`
    /// while one of its windows is open), `registration` for a registered workload no
    /// entry matched, `default` otherwise.
    pub fn policy_name(&self, id: &WorkloadId) -> &str {
        self.policies
            .assigned
            .get(id)
            .map_or(policies::DEFAULT_NAME, |a| a.name.as_str())
    }

    /// The policies in force, for the API.
    pub fn policy_status(&self) -> crate::surface::PolicyStatus {
        let mut names: Vec<String> = self
            .config
            .policies
            .iter()
            .map(|r| r.name.clone())
            .collect();
        names.push(policies::DEFAULT_NAME.to_string());
        crate::surface::PolicyStatus {
            source: self.config.source.as_ref().map(|p| p.display().to_string()),
            names,
            loaded_at_ms: self.policies.loaded_at_ms,
            last_error: self.policies.last_error.clone(),
        }
    }

    /// Re-resolves every workload's policy when the windows are due for a check (every
    /// [`WINDOW_CHECK_S`]), handing changed ones to the engine.
    pub(super) fn refresh_windows(&mut self, at: Timestamp) {
        let due = self
            .policies
            .last_window_check
            .is_none_or(|t| at.secs_since(t) >= WINDOW_CHECK_S || at < t);
        let any_windows = self.config.policies.iter().any(|r| !r.windows.is_empty());
        if !due || !any_windows {
            return;
        }
        self.policies.last_window_check = Some(at);
        self.reassign(at);
    }

    /// Resolves every managed workload's policy again and applies the changed ones.
    fn reassign(&mut self, at: Timestamp) -> Vec<PolicyChange> {
        let mut changes = Vec::new();
        let ids: Vec<WorkloadId> = self.policies.assigned.keys().cloned().collect();
        for id in ids {
            let Some(a) = self.policies.assigned.get(&id) else {
                continue;
            };
            let (name, policy) = self.resolve_policy(&a.facts, a.own.as_ref(), at);
            let same_policy = self
                .engine
                .workload(&id)
                .is_some_and(|w| *w.policy == policy);
            if name == a.name && same_policy {
                continue;
            }
            if !same_policy {
                self.engine.set_policy(&id, policy);
            }
            if let Some(a) = self.policies.assigned.get_mut(&id)
                && a.name != name
            {
                info!(workload = %id, from = %a.name, to = %name, "policy changed");
                changes.push(PolicyChange {
                    workload: id.to_string(),
                    from: std::mem::replace(&mut a.name, name.clone()),
                    to: name,
                });
            }
        }
        changes.sort_by(|a, b| a.workload.cmp(&b.workload));
        changes
    }

    /// Takes the policies (`[default_policy]`, `[[policies]]`) and the other settings
    /// that can change while running (`[discovery]`, `rediscover_every_s`, `[retention]`)
    /// from `config`, re-matches every managed workload and applies the changes. Settings
    /// that take a restart are listed in the summary as ignored. If `config` does not
    /// validate, nothing changes: the error is returned and kept as the status's
    /// `last_error`.
    pub fn reload_policies(&mut self, config: AgentConfig) -> Result<ReloadSummary, AgentError> {
        if let Err(e) = config.validate() {
            self.policies.last_error = Some(e.to_string());
            warn!(error = %e, "policy reload refused; the old policies stay");
            return Err(e);
        }
        let ignored = self
            .config
            .restart_only_changes(&config)
            .into_iter()
            .map(str::to_string)
            .collect();
        let AgentConfig {
            default_policy,
            policies: rules,
            discovery,
            rediscover_every_s,
            retention,
            source,
            ..
        } = config;
        self.config.default_policy = default_policy;
        self.config.policies = rules;
        if self.config.discovery != discovery {
            // New patterns take effect at the next discovery, which is made due now.
            self.config.discovery = discovery;
            self.last_discovery = None;
        }
        self.config.rediscover_every_s = rediscover_every_s;
        self.config.retention = retention;
        self.config.source = source;
        let at = now();
        self.policies.loaded_at_ms = at.unix_ms();
        self.policies.last_error = None;
        self.policies.last_window_check = Some(at);
        let changed = self.reassign(at);
        let status = self.policy_status();
        info!(policies = ?status.names, changed = changed.len(), "policies reloaded");
        Ok(ReloadSummary {
            source: status.source,
            policies: status.names,
            changed,
            ignored,
        })
    }

    /// [`Agent::reload_policies`] with the config file at `path` (`None`: the embedded
    /// defaults). A file that cannot be read or parsed is refused the same way.
    pub fn reload_from_file(&mut self, path: Option<&Path>) -> Result<ReloadSummary, AgentError> {
        let loaded = match path {
            Some(p) => AgentConfig::load(p),
            None => AgentConfig::embedded(),
        };
        match loaded {
            Ok(config) => self.reload_policies(config),
            Err(e) => {
                self.policies.last_error = Some(e.to_string());
                warn!(error = %e, "policy reload refused; the old policies stay");
                Err(e)
            }
        }
    }
}
