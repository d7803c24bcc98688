//! The agent's helpers that need none of its state: policy wiring, file budget, OOM
//! de-censoring, its own cgroups, pacing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use presage_core::{Limits, Resource, Sample};
use presage_engine::TickReport;
use presage_forecast::{ForecasterFactory, Periodic, PeriodicConfig};
use presage_linux::{Cgroup, CgroupManager};
use presage_policy::{PredictiveConfig, Rung};

use crate::actuator::write_limits;
use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::webhook::WebhookSink;

/// Adds one workload's tick report to the whole tick's.
pub(super) fn merge(into: &mut TickReport, one: TickReport) {
    into.samples_used += one.samples_used;
    into.samples_from_future += one.samples_from_future;
    into.samples_out_of_order += one.samples_out_of_order;
    into.adopted.extend(one.adopted);
    into.decisions.extend(one.decisions);
    into.alerts.extend(one.alerts);
    into.responses.extend(one.responses);
    into.issues.extend(one.issues);
}

/// Offers the tick's responses at or above the webhook rung to the webhook (a throttle,
/// freeze or kill is announced too); a full queue is a problem of the tick, never a wait.
pub(super) fn offer_webhooks(sink: &WebhookSink, report: &TickReport, problems: &mut Vec<String>) {
    for event in report.responses.iter().filter(|e| e.rung >= Rung::Webhook) {
        if !sink.offer(event) {
            problems.push(format!(
                "webhook queue full: dropped the {} alert of {}",
                event.rung, event.workload
            ));
        }
    }
}

/// The allocation rule and forecaster `config` asks for, tuned for the live cadence.
pub fn build_policy(
    config: &AgentConfig,
) -> Result<presage_policy::registry::PolicyParts, AgentError> {
    let bad = |message: String| AgentError::Policy {
        name: config.policy.clone(),
        message,
    };
    let info = presage_policy::registry::find(&config.policy)
        .ok_or_else(|| bad("unknown allocation rule".into()))?;
    let knob = config.knob.unwrap_or(info.default_knob);
    if info.name != "presage" {
        return (info.build)(knob).map_err(|e| bad(e.to_string()));
    }
    let tuning = config.presage;
    let mut predictive = PredictiveConfig::priced(knob, presage_policy::registry::MEMORY_PER_CORE)
        .map_err(|e| bad(e.to_string()))?;
    predictive.lookahead_s = tuning.lookahead_s;
    predictive.repair_hold_s = tuning.repair_hold_s;
    predictive.warmup_s = tuning.warmup_s;
    predictive.memory_repair_ratio = tuning.memory_repair_ratio;
    let mut extra: Vec<Arc<dyn ForecasterFactory>> = Vec::new();
    if tuning.periodic {
        extra.push(Arc::new(
            Periodic::new(PeriodicConfig::default()).map_err(|e| bad(e.to_string()))?,
        ));
    }
    presage_policy::registry::build_presage_configured(predictive, extra)
        .map_err(|e| bad(e.to_string()))
}

/// How many cgroup files the agent may keep open: the soft `RLIMIT_NOFILE`, raised to
/// the hard one, less a reserve for everything else the process opens.
pub fn file_budget() -> usize {
    const RESERVE: u64 = 512;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    let budget = lim.rlim_cur.saturating_sub(RESERVE).min(65_536);
    usize::try_from(budget).unwrap_or(0)
}

pub(super) fn decensored(sample: &Sample, memory: f64) -> Option<Sample> {
    let mut usage = *sample.usage();
    usage.set(Resource::Memory, memory).ok()?;
    Sample::new(
        sample.at(),
        sample.workload().clone(),
        sample.interval_ms(),
        usage,
    )
    .ok()?
    .with_pressure(*sample.pressure())
    .with_events(*sample.events())
    .ok()
}

/// The cgroups this process is in (every hierarchy): the agent never manages itself —
/// a limit it set on itself could starve the very loop that would lift it.
pub(super) fn own_cgroups(proc_root: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(proc_root.join("self/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .map(|p| p.trim_start_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

pub(super) fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    // Short naps so a signal is acted on within 50 ms even at long intervals.
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The limits a workload ends up with when adopted: for callers that set limits before
/// adoption (a `presage run` budget).
pub fn apply_initial_limits(cg: &Cgroup, limits: &Limits) -> Result<(), AgentError> {
    let current = cg.read_limits()?;
    write_limits(cg, &current, limits)?;
    Ok(())
}

/// The agent's data paths, for other commands that look at a running agent's state.
pub fn decision_log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("decisions.jsonl")
}

#[cfg(test)]
mod tests {
    use presage_core::{Timestamp, WorkloadId};

    use presage_core::{Events, Usage};

    use super::*;

    #[test]
    fn an_oom_interval_reads_at_least_the_limit() {
        let usage = Usage::empty()
            .with(Resource::Memory, 60e6)
            .unwrap()
            .with(Resource::Cpu, 0.3)
            .unwrap();
        let s = Sample::new(
            Timestamp::from_unix_secs(10),
            WorkloadId::new("w").unwrap(),
            1000,
            usage,
        )
        .unwrap()
        .with_events(Events {
            oom_kills: 1,
            ..Events::default()
        })
        .unwrap();
        let d = decensored(&s, 200e6).unwrap();
        assert_eq!(d.usage().memory_bytes(), Some(200e6));
        assert_eq!(d.usage().cpu_cores(), Some(0.3));
        assert_eq!(d.events().oom_kills, 1);
        assert_eq!(d.at(), s.at());
    }
}
