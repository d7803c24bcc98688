//! What an operator changes in a running agent: its mode and manual overrides (policy
//! reloads live with the policies).

use presage_core::{Limits, Timestamp, WorkloadId};
use presage_linux::CgroupManager;
use serde_json::json;
use tracing::info;

use super::{Agent, now};
use crate::actuator::write_limits;
use crate::config::Mode;
use crate::error::AgentError;
use crate::log::DecisionLog;
use crate::surface::{Command, CommandError};

/// Longest override an operator may set: a forgotten override must not pin a workload
/// for ever.
pub(crate) const MAX_OVERRIDE_S: i64 = 7 * 24 * 3600;

impl Agent {
    /// Carries out an operator's command, answering with a JSON body for the client.
    pub fn handle(&mut self, command: Command) -> Result<serde_json::Value, CommandError> {
        match command {
            Command::SetMode(mode) => {
                let before = self.config.mode;
                let problems = self
                    .set_mode(mode)
                    .map_err(|e| CommandError::Rejected(e.to_string()))?;
                Ok(json!({"mode": mode, "previous": before, "problems": problems}))
            }
            Command::Override {
                workload,
                limits,
                expires_at_ms,
            } => self.set_override(&workload, limits, expires_at_ms),
            Command::ClearOverride { workload } => {
                let id = self.managed_id(&workload)?;
                self.engine.set_override(&id, None);
                Ok(json!({"workload": workload, "override": null}))
            }
            Command::ReloadPolicies => {
                let source = self.config.source.clone();
                let summary = self
                    .reload_from_file(source.as_deref())
                    .map_err(|e| CommandError::Rejected(e.to_string()))?;
                serde_json::to_value(&summary)
                    .map_err(|e| CommandError::Rejected(format!("reporting the reload: {e}")))
            }
        }
    }

    /// Switches the mode. Leaving enforce puts back the limits each workload was adopted
    /// with (as a shutdown does: an operator who stops presage acting expects their own
    /// limits, not presage's last ones); entering enforce writes the limits presage
    /// believes in (its recommendations) to the kernel at once. Returns the problems met
    /// on workloads that could not be switched.
    pub fn set_mode(&mut self, mode: Mode) -> Result<Vec<String>, AgentError> {
        let before = self.config.mode;
        if before == mode {
            return Ok(Vec::new());
        }
        let mut problems = Vec::new();
        if before == Mode::Enforce {
            let (done, issues) = self.engine.restore_adopted_limits(now());
            self.append_log(before, &done, &mut problems);
            problems.extend(issues.into_iter().map(|i| i.message));
        }
        self.mode.set(mode);
        self.config.mode = mode;
        if mode == Mode::Enforce {
            self.enforce_beliefs(&mut problems);
        }
        if mode != Mode::Observe
            && self.log.is_none()
            && let Some(path) = &self.log_path
        {
            self.log = Some(DecisionLog::open(path)?);
        }
        info!(from = %before, to = %mode, "mode switched");
        Ok(problems)
    }

    /// Writes the limits the engine holds for every workload where the kernel's differ.
    fn enforce_beliefs(&mut self, problems: &mut Vec<String>) {
        let cgroups: Vec<_> = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(id, cg)| (id.clone(), cg.clone()))
            .collect();
        for (id, cg) in cgroups {
            let Some(belief) = self.engine.workload(&id).map(|w| *w.limits) else {
                continue;
            };
            let result = cg
                .read_limits()
                .and_then(|actual| write_limits(cg.as_ref(), &actual, &belief));
            if let Err(e) = result {
                problems.push(format!("enforcing {id}: {e}"));
            }
        }
    }

    fn append_log(
        &mut self,
        mode: Mode,
        decisions: &[presage_core::Decision],
        problems: &mut Vec<String>,
    ) {
        if let Some(log) = self.log.as_mut()
            && let Err(e) = log.append(mode, decisions)
        {
            problems.push(e.to_string());
        }
    }

    fn set_override(
        &mut self,
        workload: &str,
        limits: Limits,
        expires_at_ms: i64,
    ) -> Result<serde_json::Value, CommandError> {
        let id = self.managed_id(workload)?;
        let now = now();
        let until = Timestamp::from_unix_ms(expires_at_ms);
        let ahead_s = until.secs_since(now);
        if !(ahead_s > 0.0 && ahead_s <= MAX_OVERRIDE_S as f64) {
            return Err(CommandError::Rejected(format!(
                "field `expires_at_ms`: the override must end within 7 days from now \
                 (it ends {ahead_s:.0} s from now)"
            )));
        }
        self.engine.set_override(&id, Some((limits, until)));
        Ok(json!({
            "workload": workload,
            "override": {"limits": limits, "expires_at_ms": expires_at_ms},
            "applied": "at the workload's next sample, bounded by its policy and the safety rules",
        }))
    }

    fn managed_id(&self, workload: &str) -> Result<WorkloadId, CommandError> {
        WorkloadId::new(workload)
            .ok()
            .filter(|id| self.engine.workload(id).is_some())
            .ok_or_else(|| CommandError::NotFound(format!("no managed workload {workload:?}")))
    }
}
