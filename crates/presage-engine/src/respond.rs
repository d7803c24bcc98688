//! Carrying out what the responder decided, and auditing it: every response becomes a
//! [`ResponseEvent`] with the alert and scores that caused it and how it went — done,
//! deferred to the harness (a webhook), refused (a protected workload, the policy's
//! bounds) or failed (the actuator's error).

use presage_core::{Alert, Decision, Limits, Reason, Resource, ResourceMap, Timestamp, Usage};
use presage_policy::{WorkloadPolicy, safety};

use crate::step::StepContext;
use crate::workload::WorkloadSpec;
use crate::{
    Actuator, Issue, Outcome, Response, ResponseEvent, ResponseInput, TickReport, anomaly_score_of,
};

/// A CPU ceiling the throttle rung set, held against the allocator (which would
/// otherwise undo it at its next decision as "throttling repair") until the ladder's
/// quiet period passes without a counted alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ResponseCap {
    pub(crate) cpu_cores: f64,
    pub(crate) until: Timestamp,
}

/// A workload the freeze rung stopped. A frozen workload cannot misbehave any further,
/// so no new alert would ever take the ladder past the freeze; instead the alert that
/// froze it is presented again once per freeze cooldown, and a ladder allowed to go on
/// kills (one that stops at freeze just repeats it, which changes nothing).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Frozen {
    pub(crate) alert: Alert,
    pub(crate) next_at: Timestamp,
}

impl Frozen {
    fn new(alert: Alert, now: Timestamp, policy: &WorkloadPolicy) -> Self {
        Frozen {
            alert,
            next_at: Self::after_cooldown(now, policy),
        }
    }

    fn after_cooldown(now: Timestamp, policy: &WorkloadPolicy) -> Timestamp {
        now.plus_secs(i64::from(policy.response.cooldown_s.freeze.max(1)))
    }

    /// The alert to present again at `now`, once the freeze cooldown has passed.
    pub(crate) fn due(&mut self, now: Timestamp, policy: &WorkloadPolicy) -> Option<Alert> {
        if now < self.next_at {
            return None;
        }
        self.next_at = Self::after_cooldown(now, policy);
        Some(Alert {
            at: now,
            message: format!("still frozen since: {}", self.alert.message),
            ..self.alert.clone()
        })
    }
}

/// The workload a step responds for.
pub(crate) struct Target<'a> {
    pub(crate) spec: &'a WorkloadSpec,
    pub(crate) limits: &'a mut Limits,
    pub(crate) cap: &'a mut Option<ResponseCap>,
    pub(crate) frozen: &'a mut Option<Frozen>,
    pub(crate) usage: &'a Usage,
    pub(crate) behavior_score: f64,
}

/// Asks the responder about each alert raised for the workload in this step (from
/// `first_alert` on), carries the responses out and audits them.
pub(crate) fn respond_to_alerts(
    mut target: Target<'_>,
    first_alert: usize,
    cx: &mut StepContext<'_>,
    report: &mut TickReport,
) {
    let end = report.alerts.len();
    for i in first_alert..end {
        let alert = report.alerts[i].clone();
        let spec: &WorkloadSpec = target.spec;
        let policy = &spec.policy;
        if policy.response.counts(&alert)
            && let Some(cap) = target.cap.as_mut()
        {
            // Still misbehaving: the throttle holds for another quiet period.
            cap.until = cx.now.plus_secs(i64::from(policy.response.reset_after_s));
        }
        let responses = cx.responder.respond(&ResponseInput {
            alert: &alert,
            policy,
            limits: &*target.limits,
            usage: target.usage,
            behavior_score: target.behavior_score,
        });
        for response in responses {
            let (outcome, message) = carry_out(cx.actuator, &mut target, &response, cx.now, report);
            if outcome == Outcome::Ok {
                match response {
                    Response::Freeze if target.frozen.is_none() => {
                        *target.frozen = Some(Frozen::new(alert.clone(), cx.now, policy));
                    }
                    Response::Kill => *target.frozen = None,
                    _ => {}
                }
            }
            if matches!(outcome, Outcome::Refused | Outcome::Failed) {
                report.issues.push(Issue {
                    workload: Some(spec.id.clone()),
                    message: format!("{} {outcome}: {message}", response.rung()),
                });
            }
            report.responses.push(ResponseEvent {
                workload: spec.id.clone(),
                at: cx.now,
                rung: response.rung(),
                response,
                anomaly_score: anomaly_score_of(&alert),
                alert: alert.clone(),
                behavior_score: target.behavior_score,
                outcome,
                message,
            });
        }
    }
}

/// Carries out one response. A protected workload is never frozen or killed, whatever
/// the responder returned.
fn carry_out(
    actuator: &mut dyn Actuator,
    target: &mut Target<'_>,
    response: &Response,
    now: Timestamp,
    report: &mut TickReport,
) -> (Outcome, String) {
    let spec = target.spec;
    match response {
        Response::Record => (Outcome::Ok, "recorded".into()),
        Response::Webhook => (
            Outcome::Deferred,
            "left to the harness to POST after the tick".into(),
        ),
        Response::Freeze | Response::Kill if spec.policy.protected => (
            Outcome::Refused,
            "the workload is protected: never frozen or killed".into(),
        ),
        Response::Freeze => match actuator.freeze(&spec.id, true) {
            Ok(()) => (Outcome::Ok, "frozen".into()),
            Err(e) => (Outcome::Failed, e.to_string()),
        },
        Response::Kill => match actuator.kill(&spec.id) {
            Ok(()) => (Outcome::Ok, "killed".into()),
            Err(e) => (Outcome::Failed, e.to_string()),
        },
        Response::Throttle { cpu_cores } => throttle(actuator, target, *cpu_cores, now, report),
    }
}

/// Lowers the CPU quota through the safety rules and the actuator, and holds it there
/// (see [`ResponseCap`]).
fn throttle(
    actuator: &mut dyn Actuator,
    target: &mut Target<'_>,
    cpu_cores: f64,
    now: Timestamp,
    report: &mut TickReport,
) -> (Outcome, String) {
    let spec = target.spec;
    let limits = *target.limits;
    // A throttle only ever lowers the quota.
    let wanted = limits
        .cpu_quota_cores()
        .map_or(cpu_cores, |q| q.min(cpu_cores));
    let proposed = match limits.with_hard(Resource::Cpu, wanted) {
        Ok(p) => p,
        Err(e) => return (Outcome::Failed, format!("CPU quota {wanted} cores: {e}")),
    };
    let new = safety::enforce(&proposed, &limits, target.usage, &spec.policy);
    if new.cpu_quota_cores() == limits.cpu_quota_cores() {
        return (
            Outcome::Refused,
            format!(
                "the policy's bounds and hysteresis keep the CPU quota at {} (asked {wanted:.3} cores)",
                quota_text(limits.cpu_quota_cores())
            ),
        );
    }
    let decision = Decision {
        workload: spec.id.clone(),
        at: now,
        old: limits,
        new,
        reason: Reason::AnomalyResponse,
        risk: ResourceMap::none(),
        model: "responder".into(),
        behavior_score: Some(target.behavior_score),
    };
    match actuator.apply(&decision) {
        // An actuator that only observes keeps the old limits: nothing was throttled.
        Ok(applied) if applied.cpu_quota_cores() == limits.cpu_quota_cores() => (
            Outcome::Refused,
            format!(
                "the actuator left the CPU quota at {} (it writes no limits in this mode)",
                quota_text(limits.cpu_quota_cores())
            ),
        ),
        Ok(applied) => {
            *target.limits = applied;
            report.decisions.push(decision);
            let quota = applied.cpu_quota_cores().unwrap_or(wanted);
            *target.cap = Some(ResponseCap {
                cpu_cores: quota,
                until: now.plus_secs(i64::from(spec.policy.response.reset_after_s)),
            });
            (
                Outcome::Ok,
                format!("CPU quota lowered to {quota:.3} cores"),
            )
        }
        Err(e) => (Outcome::Failed, e.to_string()),
    }
}

fn quota_text(quota: Option<f64>) -> String {
    quota.map_or_else(|| "unlimited".into(), |q| format!("{q:.3} cores"))
}
