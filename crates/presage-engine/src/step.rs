//! One workload's pass through the loop within a tick: forecast → allocate → actuate →
//! score behaviour → respond. Kept apart from the engine's bookkeeping (adoption,
//! lookup, profile saving) so each reads on its own.

use std::borrow::Cow;

use presage_core::{
    Alert, AlertKind, Decision, Forecast, Limits, Reason, Resource, ResourceMap, Sample, Severity,
    Timestamp, WorkloadId,
};
use presage_policy::{AllocationInput, safety};

use crate::anomaly::score_anomaly;
use crate::respond::{Target, respond_to_alerts};
use crate::workload::Managed;
use crate::{Actuator, EngineConfig, Issue, Responder, TickReport};

/// What a step needs from the engine besides the workload itself.
pub(crate) struct StepContext<'a> {
    pub(crate) now: Timestamp,
    pub(crate) horizon_s: u32,
    pub(crate) config: &'a EngineConfig,
    pub(crate) actuator: &'a mut dyn Actuator,
    pub(crate) responder: &'a mut dyn Responder,
}

/// What a workload's allocator settled on in this tick, waiting for the node-level fit.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The limits to apply (after the safety rules), when they differ from the current.
    pub(crate) change: Option<Planned>,
    /// The forecast made before this tick's sample: what behaviour is judged against.
    pub(crate) previous: Option<Forecast>,
}

/// A limit change, before actuation.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) new: Limits,
    pub(crate) reason: Reason,
    pub(crate) model: Cow<'static, str>,
    pub(crate) risk: ResourceMap<Option<f64>>,
}

/// Forecast → allocate → safety rules, for a workload whose latest sample arrived in
/// this tick. Nothing is applied yet: the engine first fits every plan into the node.
pub(crate) fn plan(w: &mut Managed, cx: &StepContext<'_>) -> Plan {
    let Managed {
        spec,
        limits,
        forecaster,
        allocator,
        forecast,
        last_sample,
        last_decision_at,
        budget,
        samples,
        profile_samples,
        response_cap,
        override_hold,
        ..
    } = w;
    let previous = forecast.take();
    let Some(sample) = last_sample.as_ref() else {
        return Plan {
            change: None,
            previous,
        };
    };
    let now = cx.now;
    if let Some(f) = forecaster {
        *forecast = f.forecast(now, &cx.config.horizons_s);
    }
    let due = last_decision_at
        .is_none_or(|t| now.secs_since(t) >= f64::from(cx.config.decide_every_s))
        || sample.events().starved();
    let mut change = None;
    if due {
        *last_decision_at = Some(now);
        // Samples seen (here and in restored profiles) at this workload's cadence.
        let history_s =
            (*samples + *profile_samples) as f64 * f64::from(sample.interval_ms()) / 1000.0;
        let history_s = &history_s;
        let input = AllocationInput {
            now,
            sample,
            forecast: forecast.as_ref(),
            current: limits,
            policy: &spec.policy,
            horizon_s: cx.horizon_s,
            history_s: *history_s,
        };
        if let Some(proposal) = allocator.allocate(&input) {
            let new = safety::enforce(&proposal.limits, limits, sample.usage(), &spec.policy);
            if new != *limits {
                change = Some(Planned {
                    new,
                    reason: proposal.reason,
                    model: proposal.model,
                    risk: proposal.risk,
                });
            }
        }
    }
    // An operator's override replaces the allocator's proposal until it expires; the
    // safety rules, the budget and an anomaly throttle still bound it.
    if let Some((wanted, until)) = *override_hold {
        if now >= until {
            *override_hold = None;
            *last_decision_at = None;
        } else {
            let new = safety::enforce(&wanted, limits, sample.usage(), &spec.policy);
            change = (new != *limits).then(|| Planned {
                new,
                reason: Reason::Override,
                model: "operator".into(),
                risk: ResourceMap::none(),
            });
        }
    }
    // The CPU budget is a hard ceiling, checked at every tick (it tightens as the budget
    // is spent even when the allocator has nothing new to say).
    if let Some(cap) = budget.as_ref().and_then(|b| b.cpu_cap(now)) {
        let planned = change.as_ref().map_or(*limits, |c| c.new);
        if planned.cpu_quota_cores().is_none_or(|q| q > cap)
            && let Ok(new) = planned.with_hard(Resource::Cpu, cap)
        {
            change = Some(Planned {
                new,
                reason: Reason::Budget,
                model: change.map_or_else(|| "budget".into(), |c| c.model),
                risk: ResourceMap::none(),
            });
        }
    }
    // A throttle the responder set holds against the allocator until the ladder resets.
    if let Some(cap) = *response_cap {
        if now >= cap.until {
            *response_cap = None;
        } else {
            let planned = change.as_ref().map_or(*limits, |c| c.new);
            if planned.cpu_quota_cores().is_none_or(|q| q > cap.cpu_cores)
                && let Ok(new) = planned.with_hard(Resource::Cpu, cap.cpu_cores)
            {
                change = Some(Planned {
                    new,
                    reason: Reason::AnomalyResponse,
                    model: change.map_or_else(|| "responder".into(), |c| c.model),
                    risk: ResourceMap::none(),
                });
            }
        }
    }
    Plan { change, previous }
}

/// Applies a plan's change only (a workload cut to fit the node in a tick it had no
/// sample of its own: there is nothing new to score).
pub(crate) fn apply_only(
    w: &mut Managed,
    plan: Plan,
    cx: &mut StepContext<'_>,
    report: &mut TickReport,
) {
    if let Some(change) = plan.change
        && change.new != w.limits
    {
        let decision = Decision {
            workload: w.spec.id.clone(),
            at: cx.now,
            old: w.limits,
            new: change.new,
            reason: change.reason,
            risk: change.risk,
            model: change.model,
            behavior_score: Some(w.score.value()),
        };
        apply(cx.actuator, &w.spec.id, &mut w.limits, decision, report);
    }
}

/// Actuate → score behaviour → respond, once the plan has been fitted into the node.
pub(crate) fn finish(
    w: &mut Managed,
    plan: Plan,
    cx: &mut StepContext<'_>,
    report: &mut TickReport,
) {
    let Managed {
        spec,
        limits,
        forecast,
        score,
        anomaly,
        last_sample,
        response_cap,
        frozen,
        ..
    } = w;
    let now = cx.now;
    if let Some(change) = plan.change
        && change.new != *limits
    {
        let risk = match forecast.as_ref() {
            Some(fc) => ResourceMap::from_fn(|r| {
                change
                    .new
                    .hard(r)
                    .and_then(|limit| fc.risk(r, limit, cx.horizon_s))
            }),
            None => change.risk,
        };
        let decision = Decision {
            workload: spec.id.clone(),
            at: now,
            old: *limits,
            new: change.new,
            reason: change.reason,
            risk,
            model: change.model,
            behavior_score: Some(score.value()),
        };
        apply(cx.actuator, &spec.id, limits, decision, report);
    }
    let Some(sample) = last_sample.as_ref() else {
        return;
    };
    let first_alert = report.alerts.len();
    if let Some(prev) = plan.previous.as_ref() {
        let excess = score.update(sample, prev, &cx.config.behavior);
        if excess > 0.0
            && cx
                .config
                .behavior_alert_score
                .is_some_and(|at| score.value() >= at)
        {
            report.alerts.push(Alert {
                workload: spec.id.clone(),
                at: now,
                kind: AlertKind::OutsideEnvelope,
                severity: Severity::Warning,
                score: score.value(),
                message: format!(
                    "usage {excess:.1} spreads above the forecast p99 (model {}); behavioural score {:.0}",
                    prev.model(),
                    score.value()
                ),
            });
        }
    }
    if let Some(alert) = score_anomaly(
        anomaly,
        &spec.id,
        sample,
        plan.previous.as_ref(),
        &spec.policy.anomaly,
    ) {
        report.alerts.push(alert);
    }
    if sample.events().oom_kills > 0 {
        report.alerts.push(oom_alert(&spec.id, sample, limits, now));
    }
    if let Some(again) = frozen.as_mut().and_then(|f| f.due(now, &spec.policy)) {
        report.alerts.push(again);
    }
    let target = Target {
        spec,
        limits,
        cap: response_cap,
        frozen,
        usage: sample.usage(),
        behavior_score: score.value(),
    };
    respond_to_alerts(target, first_alert, cx, report);
}

fn oom_alert(id: &WorkloadId, sample: &Sample, limits: &Limits, now: Timestamp) -> Alert {
    Alert {
        workload: id.clone(),
        at: now,
        kind: AlertKind::OomKill,
        severity: Severity::Warning,
        score: f64::from(sample.events().oom_kills),
        message: format!(
            "{} process(es) OOM-killed at memory limit {:?} bytes",
            sample.events().oom_kills,
            limits.memory_max_bytes()
        ),
    }
}

/// Hands a decision to the actuator; on success the limits become what took effect, on
/// failure they stay and an alert says why.
fn apply(
    actuator: &mut dyn Actuator,
    id: &WorkloadId,
    limits: &mut Limits,
    decision: Decision,
    report: &mut TickReport,
) {
    match actuator.apply(&decision) {
        Ok(applied) => {
            *limits = applied;
            report.decisions.push(decision);
        }
        Err(e) => {
            report.alerts.push(Alert {
                workload: id.clone(),
                at: decision.at,
                kind: AlertKind::ActuationFailed,
                severity: Severity::Warning,
                score: 0.0,
                message: e.to_string(),
            });
            report.issues.push(Issue {
                workload: Some(id.clone()),
                message: e.to_string(),
            });
        }
    }
}
